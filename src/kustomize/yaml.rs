//! Reading YAML into the JSON data model kustomize's output is built from,
//! as kustomize reads it (go-yaml v3 into `map[string]interface{}`): plain
//! scalars resolve to null, booleans, numbers (YAML 1.1 octals `0644` and
//! `1_000` included) or strings; quoted ones stay strings; `<<` merges
//! maps; folded text changes as go-yaml's emitter changes it. Limits make
//! hostile input an error instead of exhausting memory: a size cap per
//! file, 128 levels of nesting and a budget for values repeated by aliases.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::libyaml::{Event, Parser, Scalar, Style};
use super::{scalar, Error};

/// Largest manifest or kustomization file kedge reads (64 MiB).
pub const MAX_FILE_BYTES: usize = 64 << 20;

/// Deepest nesting an object may reach through patches and replacements
/// (YAML input is already limited to 128 levels); deeper
/// values could overflow the stack when written out or dropped.
pub const MAX_DEPTH: usize = 512;

/// How deeply a value nests, counted without recursion.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// One step of the way to a value inside a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// A manifest document and where it has keys written without a value
/// (`key:`), which kustomize treats unlike an explicit `~` or `null` (see
/// `smp::drop_empty_nulls`).
#[derive(Debug)]
pub struct Document {
    pub value: Value,
    pub empty_nulls: Vec<Vec<Step>>,
    /// Strings written quoted (or as blocks) that hold `${`: a
    /// substitution keeps them strings, as Flux's kyaml keeps their style.
    pub quoted_templates: std::collections::BTreeSet<String>,
}

/// Parses every document of a (multi-document) YAML text. Empty documents
/// are dropped, like kustomize does.
pub fn parse_documents(file: &Path, text: &str) -> Result<Vec<Value>, Error> {
    Ok(parse_manifests(file, text)?
        .into_iter()
        .map(|d| d.value)
        .collect())
}

/// Like [`parse_documents`], keeping where keys have no value.
pub fn parse_manifests(file: &Path, text: &str) -> Result<Vec<Document>, Error> {
    parse(file, text, Dialect::Manifest)
}

/// Parses a single YAML document (an inline patch, a kustomization file).
pub fn parse_one(file: &Path, text: &str) -> Result<Value, Error> {
    single(file, parse_documents(file, text)?)
}

/// Parses a kustomization file. Unlike manifests, a key given twice is
/// not an error there: the last one wins, as in kustomize.
pub fn parse_kustomization(file: &Path, text: &str) -> Result<Value, Error> {
    let docs = parse(file, text, Dialect::Kustomization)?;
    single(file, docs.into_iter().map(|d| d.value).collect())
}

fn single(file: &Path, mut docs: Vec<Value>) -> Result<Value, Error> {
    match docs.len() {
        0 => Ok(Value::Null),
        1 => Ok(docs.remove(0)),
        n => Err(Error::Yaml {
            file: file.to_path_buf(),
            line: None,
            message: format!("expected one YAML document, found {n}"),
        }),
    }
}

/// kustomize reads manifests with go-yaml v3 into a
/// `map[string]interface{}` and then encodes them as JSON: a key given
/// twice is an error, and so is a nested map with a key that is not a
/// string (`1:`, `true:`), which Go's JSON encoder refuses. Kustomization
/// files go through sigs.k8s.io/yaml: the last of two keys wins and keys
/// become strings.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Manifest,
    Kustomization,
}

/// Deepest nesting a YAML document may have (serde_yaml's limit, kept).
const MAX_YAML_DEPTH: usize = 128;

fn parse(file: &Path, text: &str, dialect: Dialect) -> Result<Vec<Document>, Error> {
    if text.len() > MAX_FILE_BYTES {
        return Err(Error::Yaml {
            file: file.to_path_buf(),
            line: None,
            message: format!("file is larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    let mut builder = Builder {
        parser: Parser::new(text),
        dialect,
        anchors: HashMap::new(),
        // Aliases may repeat values, within reason: an alias bomb stops here.
        budget: text.len() + 1_000_000,
        path: Vec::new(),
        empty_nulls: Vec::new(),
        quoted_templates: Default::default(),
        line: 1,
    };
    builder.documents().map_err(|(line, message)| Error::Yaml {
        file: file.to_path_buf(),
        line: Some(line),
        message,
    })
}

type BuildError = (usize, String);

/// Turns libyaml's events into JSON values the way kustomize reads them:
/// go-yaml v3 resolving plain scalars into a `map[string]interface{}`.
struct Builder<'a> {
    parser: Parser<'a>,
    dialect: Dialect,
    anchors: HashMap<String, (Value, usize)>,
    budget: usize,
    path: Vec<Step>,
    empty_nulls: Vec<Vec<Step>>,
    quoted_templates: std::collections::BTreeSet<String>,
    line: usize,
}

impl Builder<'_> {
    fn next(&mut self) -> Result<Event, BuildError> {
        let (event, line) = self.parser.next_event().map_err(|e| (e.line, e.message))?;
        self.line = line;
        Ok(event)
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, BuildError> {
        Err((self.line, message.into()))
    }

    fn documents(&mut self) -> Result<Vec<Document>, BuildError> {
        let mut docs = Vec::new();
        loop {
            match self.next()? {
                Event::StreamStart | Event::DocumentEnd => {}
                Event::DocumentStart => {
                    self.anchors.clear();
                    self.empty_nulls.clear();
                    self.quoted_templates.clear();
                    let event = self.next()?;
                    let value = self.node(event, 0)?;
                    if !value.is_null() {
                        docs.push(Document {
                            value,
                            empty_nulls: std::mem::take(&mut self.empty_nulls),
                            quoted_templates: std::mem::take(&mut self.quoted_templates),
                        });
                    }
                }
                Event::StreamEnd => return Ok(docs),
                other => return self.fail(format!("unexpected {other:?}")),
            }
        }
    }

    fn spend(&mut self, nodes: usize) -> Result<(), BuildError> {
        match self.budget.checked_sub(nodes) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => self.fail("too many values: aliases repeat more than the file holds"),
        }
    }

    fn node(&mut self, event: Event, depth: usize) -> Result<Value, BuildError> {
        if depth > MAX_YAML_DEPTH {
            return self.fail(format!("nesting deeper than {MAX_YAML_DEPTH} levels"));
        }
        let (value, anchor, size) = match event {
            Event::Scalar(scalar) => {
                self.spend(1)?;
                if is_empty_null(&scalar) {
                    self.empty_nulls.push(self.path.clone());
                }
                let anchor = scalar.anchor.clone();
                (self.scalar(scalar)?, anchor, 1)
            }
            Event::Alias(name) => {
                let Some((value, size)) = self.anchors.get(&name).cloned() else {
                    return self.fail(format!("unknown anchor '{name}'"));
                };
                self.spend(size)?;
                return Ok(value);
            }
            Event::SequenceStart { anchor } => {
                let before = self.budget;
                let value = self.sequence(depth)?;
                (value, anchor, before - self.budget)
            }
            Event::MappingStart { anchor } => {
                let before = self.budget;
                let value = self.mapping(depth)?;
                (value, anchor, before - self.budget)
            }
            other => return self.fail(format!("unexpected {other:?}")),
        };
        if let Some(anchor) = anchor {
            self.anchors.insert(anchor, (value.clone(), size.max(1)));
        }
        Ok(value)
    }

    fn sequence(&mut self, depth: usize) -> Result<Value, BuildError> {
        let mut items = Vec::new();
        loop {
            let event = self.next()?;
            if matches!(event, Event::SequenceEnd) {
                return Ok(Value::Array(items));
            }
            self.path.push(Step::Index(items.len()));
            let item = self.node(event, depth + 1);
            self.path.pop();
            items.push(item?);
        }
    }

    fn mapping(&mut self, depth: usize) -> Result<Value, BuildError> {
        let mut map = Map::new();
        let mut merged = Vec::new();
        loop {
            let key = match self.next()? {
                Event::MappingEnd => break,
                Event::Scalar(scalar) if is_merge_key(&scalar) => {
                    let event = self.next()?;
                    merged.push(self.node(event, depth + 1)?);
                    continue;
                }
                Event::Scalar(scalar) => {
                    self.spend(1)?;
                    let nested = depth > 0 && self.dialect == Dialect::Manifest;
                    if nested && !is_string_key(&scalar) {
                        return self.fail(format!(
                            "map key '{}' is not a string: kustomize cannot write it as JSON",
                            scalar.value
                        ));
                    }
                    scalar.value
                }
                Event::Alias(name) => match self.anchors.get(&name) {
                    Some((Value::String(s), _)) => s.clone(),
                    Some((v, _)) if !v.is_object() && !v.is_array() => v.to_string(),
                    _ => return self.fail(format!("alias '{name}' is not a valid map key")),
                },
                _ => return self.fail("map keys must be scalars"),
            };
            if self.dialect == Dialect::Manifest && map.contains_key(&key) {
                return self.fail(format!("mapping key \"{key}\" already defined"));
            }
            let event = self.next()?;
            self.path.push(Step::Key(key.clone()));
            let value = self.node(event, depth + 1);
            self.path.pop();
            map.insert(key, value?);
        }
        for source in merged {
            self.merge_into(&mut map, source)?;
        }
        Ok(Value::Object(map))
    }

    /// `<<: *base` (or a list of them): keys the map does not set itself
    /// come from the merged maps, earlier ones first, as go-yaml does.
    fn merge_into(&self, map: &mut Map<String, Value>, source: Value) -> Result<(), BuildError> {
        let sources = match source {
            Value::Object(m) => vec![m],
            Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::Object(m) => Ok(m),
                    _ => Err((
                        self.line,
                        "map merge requires a map or a list of maps".into(),
                    )),
                })
                .collect::<Result<_, _>>()?,
            _ => return self.fail("map merge requires a map or a list of maps"),
        };
        for source in sources {
            for (k, v) in source {
                map.entry(k).or_insert(v);
            }
        }
        Ok(())
    }

    fn scalar(&mut self, scalar: Scalar) -> Result<Value, BuildError> {
        if scalar.style != Style::Plain && scalar.value.contains("${") {
            self.quoted_templates.insert(scalar.value.clone());
        }
        const CORE: &str = "tag:yaml.org,2002:";
        let resolve = match scalar.tag.as_deref() {
            None => scalar.style == Style::Plain,
            Some(tag) => ["int", "float", "bool", "null"]
                .iter()
                .any(|t| tag.strip_prefix(CORE) == Some(t)),
        };
        if resolve {
            return resolve_plain(&scalar.value).or_else(|m| self.fail(m));
        }
        if scalar.style == Style::Folded {
            return Ok(Value::String(go_yaml_refold(&scalar.value)));
        }
        Ok(Value::String(scalar.value))
    }
}

fn is_empty_null(scalar: &Scalar) -> bool {
    scalar.style == Style::Plain && scalar.tag.is_none() && scalar.value.is_empty()
}

fn is_string_key(scalar: &Scalar) -> bool {
    scalar.style != Style::Plain
        || scalar.tag.is_some()
        || (resolve_plain(&scalar.value).is_ok_and(|v| v.is_string())
            && timestamp(&scalar.value).is_none())
}

fn is_merge_key(scalar: &Scalar) -> bool {
    scalar.style == Style::Plain && scalar.tag.is_none() && scalar.value == "<<"
}

/// A plain scalar as go-yaml v3 resolves it: YAML 1.2 null and booleans,
/// timestamps (which Go's JSON encoder then writes in RFC 3339), integers
/// as Go's `strconv.ParseInt(s, 0, 64)` reads them once `_` are removed
/// (so YAML 1.1 octals `0644`, `1_000` and `0b101` are numbers), floats;
/// everything else is a string.
fn resolve_plain(text: &str) -> Result<Value, String> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => {
            return Err(format!("number {text} has no JSON form"));
        }
        _ => {}
    }
    if !text.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '.')) {
        return Ok(Value::String(text.to_string()));
    }
    if let Some(time) = timestamp(text) {
        return Ok(Value::String(time));
    }
    let plain = text.replace('_', "");
    if let Some(n) = scalar::go_parse_int(&plain) {
        if let Ok(i) = i64::try_from(n) {
            return Ok(Value::from(i));
        }
        if let Ok(u) = u64::try_from(n) {
            return Ok(Value::from(u));
        }
    }
    if scalar::float_regex().is_match(&plain) {
        if let Some(n) = plain
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
        {
            return Ok(Value::Number(n));
        }
    }
    Ok(Value::String(text.to_string()))
}

/// A timestamp in one of go-yaml v3's formats (`2006-1-2`,
/// `2006-1-2T15:4:5.999999999Z07:00` with `T` or `t`, `2006-1-2 15:4:5.9`
/// in UTC), written as Go's JSON encoder writes a time (RFC 3339 with
/// nanoseconds, trailing zeros dropped, `Z` for UTC).
fn timestamp(text: &str) -> Option<String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(
            r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:[Tt]([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:\.([0-9]+))?(Z|[+-][0-9]{2}:[0-9]{2})| ([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:\.([0-9]+))?)?$",
        )
        .expect("static regex")
    });
    let c = re.captures(text)?;
    let number = |i: usize| c.get(i).map_or(Some(0), |m| m.as_str().parse::<u32>().ok());
    let (year, month, day) = (number(1)?, number(2)?, number(3)?);
    let (hour, minute, second, fraction, zone) = if c.get(4).is_some() {
        (
            number(4)?,
            number(5)?,
            number(6)?,
            c.get(7),
            c.get(8).map(|m| m.as_str()),
        )
    } else {
        (number(9)?, number(10)?, number(11)?, c.get(12), None)
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let fraction = fraction
        .map(|f| f.as_str().chars().take(9).collect::<String>())
        .map(|f| f.trim_end_matches('0').to_string())
        .filter(|f| !f.is_empty())
        .map(|f| format!(".{f}"))
        .unwrap_or_default();
    let zone = match zone {
        None | Some("Z") | Some("+00:00") | Some("-00:00") => "Z",
        Some(offset) => offset,
    };
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{zone}"
    ))
}

/// What a folded (`>`) scalar becomes in kustomize: kyaml writes the node
/// back out with go-yaml v3 before decoding it, and go-yaml's emitter
/// decides whether a line break needs an extra blank line by looking at
/// the value's first line instead of the next one (libyaml looks at the
/// next one). Before a more-indented line, whose break folding keeps, that
/// extra blank line stays: `<a>\n  <b>` reads back as `<a>\n\n  <b>`.
fn go_yaml_refold(value: &str) -> String {
    if !folded_style_kept(value) {
        // go-yaml falls back to a double-quoted scalar, which is exact.
        return value.to_string();
    }
    let is_break = |c: char| matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}');
    let first_is_blank = value
        .chars()
        .find(|c| !is_break(*c))
        .is_none_or(|c| c == ' ' || c == '\t');
    let mut text = String::from("k: >");
    if value.starts_with(|c: char| c == ' ' || is_break(c)) {
        text.push('2');
    }
    let trailing = value.chars().rev().take_while(|c| is_break(*c)).count();
    match trailing {
        0 => text.push('-'),
        1 if value.chars().count() > 1 => {}
        _ => text.push('+'),
    }
    text.push('\n');
    let (mut breaks, mut leading_spaces) = (true, true);
    for c in value.chars() {
        if is_break(c) {
            if !breaks && !leading_spaces && c == '\n' && !first_is_blank {
                text.push('\n');
            }
            text.push(c);
            breaks = true;
        } else {
            if breaks {
                text.push_str("  ");
                leading_spaces = c == ' ' || c == '\t';
            }
            text.push(c);
            breaks = false;
        }
    }
    if !breaks {
        text.push('\n');
    }
    reread_folded(&text).unwrap_or_else(|| value.to_string())
}

/// go-yaml keeps a block style unless the text has trailing spaces, a
/// space before a line break, or characters it must escape.
fn folded_style_kept(value: &str) -> bool {
    !value.ends_with(' ') && !value.contains(" \n") && value.chars().all(scalar::is_printable)
}

fn reread_folded(text: &str) -> Option<String> {
    let mut parser = Parser::new(text);
    let mut scalars = 0;
    while let Ok((event, _)) = parser.next_event() {
        match event {
            Event::Scalar(s) => {
                scalars += 1;
                if scalars == 2 {
                    return Some(s.value);
                }
            }
            Event::StreamEnd => return None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Value>, Error> {
        parse_documents(Path::new("t.yaml"), text)
    }

    #[test]
    fn empty_documents_are_dropped() {
        let docs = parse("---\na: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn bad_yaml_names_file_and_line() {
        let err = parse("a: 1\nb: [\n").unwrap_err().to_string();
        assert!(err.contains("t.yaml"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(parse(&text).is_err());
        let text = (0..10_000)
            .map(|i| format!("{}a:\n", "  ".repeat(i)))
            .collect::<String>();
        assert!(parse(&text).is_err());
    }

    #[test]
    fn alias_bomb_is_an_error() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(parse(&text).is_err());
    }

    #[test]
    fn duplicate_keys_are_an_error() {
        assert!(parse("a: 1\na: 2\n").is_err());
    }

    #[test]
    fn plain_scalars_resolve_like_go_yaml_v3() {
        // What kubectl kustomize v5.5.0 prints for these values.
        let doc = "a: 0644\nb: -0755\nc: 1_000\nd: 09\ne: 0b101\nf: '0644'\ng: 1.10\nh: 1.2.3\ni: !!str 7\nj:\nk: ~\n";
        let v = &parse(doc).unwrap()[0];
        assert_eq!(v["a"], 420);
        assert_eq!(v["b"], -493);
        assert_eq!(v["c"], 1000);
        assert_eq!(v["d"], 9.0);
        assert_eq!(v["e"], 5);
        assert_eq!(v["f"], "0644");
        assert_eq!(v["g"], 1.1);
        assert_eq!(v["h"], "1.2.3");
        assert_eq!(v["i"], "7");
        assert!(v["j"].is_null() && v["k"].is_null());
    }

    #[test]
    fn timestamps_are_written_as_go_writes_a_time() {
        assert_eq!(
            timestamp("2024-1-2").as_deref(),
            Some("2024-01-02T00:00:00Z")
        );
        assert_eq!(
            timestamp("2001-12-14t21:59:43.10-05:00").as_deref(),
            Some("2001-12-14T21:59:43.1-05:00")
        );
        assert_eq!(
            timestamp("2001-12-14 1:2:3").as_deref(),
            Some("2001-12-14T01:02:03Z")
        );
        assert_eq!(timestamp("2024-01-02T10:00:00"), None);
        assert_eq!(timestamp("2024-02-30"), None);
    }

    #[test]
    fn valueless_keys_are_remembered_with_their_path() {
        let docs = parse_manifests(Path::new("t.yaml"), "a:\n  b:\n  c: ~\nl:\n- x:\n").unwrap();
        let key = |k: &str| Step::Key(k.into());
        assert_eq!(
            docs[0].empty_nulls,
            vec![
                vec![key("a"), key("b")],
                vec![key("l"), Step::Index(0), key("x")]
            ]
        );
    }

    #[test]
    fn folded_text_gets_go_yamls_extra_line_before_more_indented_lines() {
        assert_eq!(go_yaml_refold("<a>\n  <b>\n</a>\n"), "<a>\n\n  <b>\n</a>\n");
        assert_eq!(go_yaml_refold("one two\nthree\n"), "one two\nthree\n");
        assert_eq!(go_yaml_refold("  lead\nless\n"), "  lead\nless\n");
    }

    #[test]
    fn nested_keys_must_be_strings_in_manifests_only() {
        assert!(parse("data:\n  8080: http\n").is_err());
        assert!(parse("data:\n  \"8080\": http\n").is_ok());
        let k = parse_kustomization(Path::new("k.yaml"), "images:\n- 1: x\n");
        assert!(k.is_ok());
    }

    #[test]
    fn merge_keys_fill_in_what_the_map_does_not_set() {
        let v = &parse("b: &b {p: 1, q: 2}\nm:\n  <<: *b\n  q: 3\n").unwrap()[0];
        assert_eq!(v["m"], serde_json::json!({"p": 1, "q": 3}));
    }

    #[test]
    fn small_aliases_still_work() {
        let docs = parse("a: &x {b: 1}\nc: *x\n").unwrap();
        assert_eq!(docs[0]["c"]["b"], 1);
    }
}

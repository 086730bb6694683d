//! Writing objects as YAML exactly as `kubectl kustomize` prints them.
//!
//! kustomize turns every object into JSON and prints it with go-yaml v2
//! (`sigs.k8s.io/yaml.JSONToYAML`), so the output is fully normalised:
//! map keys sorted with go-yaml's "natural" order (digit runs compared as
//! numbers, letters after other characters), 2-space indentation, sequences
//! under a key not indented (`- ` at the key's column), empty maps and lists
//! as `{}` / `[]`, strings quoted only when go-yaml would read them back as
//! something else, multi-line strings as literal blocks, and long lines
//! folded at column 80. Input styles (quotes, flow lists, comments) are
//! therefore never kept. Scalars follow libyaml's style rules, see
//! [`super::scalar`].

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::scalar::{write_string, Context};

/// One YAML document (no `---` separator) for a JSON value.
pub fn to_yaml_document(value: &Value) -> String {
    let mut out = Out::default();
    match value {
        Value::Object(map) if !map.is_empty() => out.map(map, 0, false),
        Value::Array(seq) if !seq.is_empty() => out.seq(seq, 0, false),
        scalar => {
            out.scalar(scalar, 0, Context::Value);
            out.end_line();
        }
    }
    out.text
}

#[derive(Default)]
pub(crate) struct Out {
    pub(crate) text: String,
    line_start: usize,
}

impl Out {
    pub(crate) fn column(&self) -> usize {
        self.text[self.line_start..].chars().count()
    }

    pub(crate) fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    pub(crate) fn push_char(&mut self, c: char) {
        self.text.push(c);
        if c == '\n' {
            self.line_start = self.text.len();
        }
    }

    /// Starts a new line indented to `indent` (libyaml's write_indent).
    pub(crate) fn newline_indent(&mut self, indent: usize) {
        if self.line_start != self.text.len() {
            self.push_char('\n');
        }
        for _ in 0..indent {
            self.text.push(' ');
        }
    }

    fn end_line(&mut self) {
        if self.line_start != self.text.len() {
            self.push_char('\n');
        }
    }

    fn map(&mut self, map: &Map<String, Value>, indent: usize, inline_first: bool) {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort_by(|a, b| natural_cmp(a, b));
        for (i, key) in keys.into_iter().enumerate() {
            if i > 0 || !inline_first {
                self.newline_indent(indent);
            }
            if key.len() > 128 {
                // libyaml writes keys longer than 128 bytes as complex keys.
                self.push("? ");
                write_string(self, key, indent + 2, Context::Value);
                self.newline_indent(indent);
            } else {
                write_string(self, key, indent + 2, Context::Key);
            }
            self.push(":");
            self.value_after_indicator(&map[key], indent, true);
        }
    }

    fn seq(&mut self, seq: &[Value], indent: usize, inline_first: bool) {
        for (i, item) in seq.iter().enumerate() {
            if i > 0 || !inline_first {
                self.newline_indent(indent);
            }
            self.push("-");
            self.value_after_indicator(item, indent, false);
        }
    }

    /// Writes a value after `key:` or `-`; `indent` is the column of the key
    /// or dash.
    fn value_after_indicator(&mut self, value: &Value, indent: usize, in_map: bool) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                if in_map {
                    self.end_line();
                    self.map(map, indent + 2, false);
                } else {
                    self.push(" ");
                    self.map(map, indent + 2, true);
                }
            }
            Value::Array(seq) if !seq.is_empty() => {
                if in_map {
                    self.end_line();
                    self.seq(seq, indent, false);
                } else {
                    self.push(" ");
                    self.seq(seq, indent + 2, true);
                }
            }
            scalar => {
                self.push(" ");
                self.scalar(scalar, indent + 2, Context::Value);
                self.end_line();
            }
        }
    }

    fn scalar(&mut self, value: &Value, indent: usize, context: Context) {
        match value {
            Value::Null => self.push("null"),
            Value::Bool(b) => self.push(if *b { "true" } else { "false" }),
            Value::Number(n) => self.push(&format_number(n)),
            Value::String(s) => write_string(self, s, indent, context),
            Value::Object(_) => self.push("{}"),
            Value::Array(_) => self.push("[]"),
        }
    }
}

/// Numbers as they come out of Go's JSON encoder read back by go-yaml v2:
/// integral values print as integers, others like Go's `%g` (shortest).
pub(crate) fn format_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e18 {
        return format!("{f:.0}");
    }
    go_format_g(f)
}

fn go_format_g(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+.inf".into()
        } else {
            "-.inf".into()
        };
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1;
    if point <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
    } else if (point as usize) >= digits.len() {
        format!(
            "{sign}{digits}{}",
            "0".repeat(point as usize - digits.len())
        )
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    }
}

/// go-yaml v2's key order: runs of digits compare as numbers, letters sort
/// after any other character.
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an.wrapping_mul(10).wrapping_add(ar[ai] as i64 - '0' as i64);
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn.wrapping_mul(10).wrapping_add(br[bi] as i64 - '0' as i64);
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_sort_naturally_with_letters_last() {
        let mut keys = vec!["a10", "a2", "ab", "a.b", "B", "a"];
        keys.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(keys, vec!["B", "a", "a.b", "a2", "a10", "ab"]);
    }

    #[test]
    fn sequences_under_keys_are_not_indented() {
        let doc = json!({"b": [{"y": 1, "x": "s"}, []], "a": {}});
        assert_eq!(
            to_yaml_document(&doc),
            "a: {}\nb:\n- x: s\n  \"y\": 1\n- []\n"
        );
    }

    #[test]
    fn floats_print_like_go() {
        assert_eq!(go_format_g(0.5), "0.5");
        assert_eq!(go_format_g(1.25e-7), "1.25e-07");
        assert_eq!(go_format_g(1234567.5), "1.2345675e+06");
        assert_eq!(go_format_g(-0.001), "-0.001");
    }
}

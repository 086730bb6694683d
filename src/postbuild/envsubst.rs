//! Bash-style `${var}` expansion as Flux runs it (fluxcd/pkg/envsubst, a
//! fork of drone/envsubst): `${var}`, defaults (`${var:-x}`, `${var:=x}`,
//! `${var=x}`, and `${var:+x}`, `${var:?x}`, which drone treats as defaults
//! too; `${var-x}` is an error there, and here), `${#var}`, casing (`^ ^^ , ,,`), substrings
//! (`${var:1:2}`), prefix and suffix removal (`# ## % %%`, glob patterns)
//! and replacement (`/ // /# /%`). `$$` writes `$`, so `$${var}` is the
//! literal `${var}`; a lone `$var` is left as it is.
//!
//! # Design
//! A scanner over the characters with the same modes as drone's (which
//! tokens it recognises, which characters it accepts, which escapes it
//! removes), so odd inputs expand as they do under Flux; a small tree of
//! text and function nodes; evaluation against a lookup that says whether
//! a variable is defined.

/// Why a text cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("bad substitution")]
    BadSubstitution,
    #[error("missing closing brace")]
    MissingClosingBrace,
    #[error("unable to parse variable name")]
    VariableName,
    #[error("unable to parse substitution within function")]
    FunctionSubstitution,
    #[error("unable to parse default function")]
    DefaultFunction,
    /// Strict mode: a variable used without a value or a default.
    #[error("variable {0:?} is not set (strict)")]
    NotSet(String),
}

/// Expands `text`; `lookup` gives a variable's value, `None` when it is not
/// defined. Undefined variables expand to "" unless `strict`.
pub fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    strict: bool,
) -> Result<String, Error> {
    let mut parser = Parser {
        scanner: Scanner::new(text),
    };
    let nodes = parser.any()?;
    let mut out = String::with_capacity(text.len());
    for node in &nodes {
        node.eval(lookup, strict, &mut out)?;
    }
    Ok(out)
}

#[derive(Debug)]
enum Node {
    Text(String),
    Func {
        /// The variable.
        param: String,
        /// The operator (`""` for a bare `${var}`).
        op: String,
        args: Vec<Node>,
    },
}

impl Node {
    fn eval(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
        strict: bool,
        out: &mut String,
    ) -> Result<(), Error> {
        match self {
            Node::Text(text) => out.push_str(text),
            Node::Func { param, op, args } => {
                let mut evaluated = Vec::with_capacity(args.len());
                for arg in args {
                    let mut text = String::new();
                    arg.eval(lookup, strict, &mut text)?;
                    evaluated.push(text);
                }
                let value = match lookup(param) {
                    Some(value) => value,
                    None if strict && !is_default_op(op) => {
                        return Err(Error::NotSet(param.clone()))
                    }
                    None => String::new(),
                };
                out.push_str(&apply(op, &value, &evaluated));
            }
        }
        Ok(())
    }
}

/// Operators that supply a value for an unset variable: strict mode lets
/// them through.
fn is_default_op(op: &str) -> bool {
    matches!(op, "-" | "+" | "=" | "?" | ":-" | ":+" | ":=" | ":?")
}

fn apply(op: &str, value: &str, args: &[String]) -> String {
    match op {
        "," => map_first(value, |c| c.to_lowercase().collect()),
        ",," => value.to_lowercase(),
        "^" => map_first(value, |c| c.to_uppercase().collect()),
        "^^" => value.to_uppercase(),
        "#" if args.is_empty() => value.len().to_string(),
        "#" => trim_prefix(value, &args[0], false),
        "##" => trim_prefix(value, args.first().map_or("", String::as_str), true),
        "%" => trim_suffix(value, args.first().map_or("", String::as_str), false),
        "%%" => trim_suffix(value, args.first().map_or("", String::as_str), true),
        ":" => substring(value, args),
        "/#" => match args {
            [pattern, replacement] if value.starts_with(pattern.as_str()) => {
                value.replacen(pattern.as_str(), replacement, 1)
            }
            _ => value.to_string(),
        },
        "/%" => match args {
            [pattern, replacement] if value.ends_with(pattern.as_str()) => {
                format!("{}{replacement}", &value[..value.len() - pattern.len()])
            }
            _ => value.to_string(),
        },
        "/" => replace(value, args, Some(1)),
        "//" => replace(value, args, None),
        // Every default-like operator, and a bare ${var}: the value, or
        // the arguments when it is empty.
        _ if value.is_empty() && !args.is_empty() => args.concat(),
        _ => value.to_string(),
    }
}

fn map_first(value: &str, map: impl Fn(char) -> String) -> String {
    let mut chars = value.chars();
    match chars.next() {
        Some(first) => map(first) + chars.as_str(),
        None => String::new(),
    }
}

fn replace(value: &str, args: &[String], count: Option<usize>) -> String {
    let (pattern, replacement) = match args {
        [] => return value.to_string(),
        [pattern] => (pattern.as_str(), ""),
        [pattern, replacement, ..] => (pattern.as_str(), replacement.as_str()),
    };
    match count {
        // Go's strings.Replace with an empty pattern inserts between runes.
        Some(n) => value.replacen(pattern, replacement, n),
        None => value.replace(pattern, replacement),
    }
}

/// `${var:offset}` and `${var:offset:length}` over bytes, like Go; an
/// argument that is not a number leaves the value as it is, like bash.
fn substring(value: &str, args: &[String]) -> String {
    let Some(Ok(offset)) = args.first().map(|a| a.parse::<i64>()) else {
        return value.to_string();
    };
    let len = value.len() as i64;
    let start = if offset < 0 {
        (len + offset).max(0)
    } else {
        offset
    };
    if start >= len {
        return if args.len() == 1 {
            String::new()
        } else {
            value
                .get(start.min(len) as usize..)
                .unwrap_or("")
                .to_string()
        };
    }
    let rest = || value.get(start as usize..).unwrap_or("").to_string();
    let Some(length) = args.get(1) else {
        return rest();
    };
    let Ok(length) = length.parse::<i64>() else {
        return value.to_string();
    };
    if start + length >= len {
        return rest();
    }
    value
        .get(start as usize..(start + length).max(start) as usize)
        .unwrap_or("")
        .to_string()
}

/// `#`/`##`: removes the shortest (longest) prefix matching the glob.
fn trim_prefix(value: &str, pattern: &str, longest: bool) -> String {
    let ends: Vec<usize> = char_ends(value);
    // Candidates from the whole value down to its first character, as drone tries them.
    let mut matched = None;
    for &end in ends.iter().rev() {
        match glob_match(pattern, &value[..end]) {
            Err(()) => return value.to_string(),
            Ok(true) if longest => return value[end..].to_string(),
            Ok(true) => matched = Some(end),
            Ok(false) => {}
        }
    }
    match matched {
        Some(end) => value[end..].to_string(),
        None => value.to_string(),
    }
}

/// `%`/`%%`: the same on the reversed value and pattern, as drone does.
fn trim_suffix(value: &str, pattern: &str, longest: bool) -> String {
    let reversed: String = value.chars().rev().collect();
    let pattern: String = pattern.chars().rev().collect();
    trim_prefix(&reversed, &pattern, longest)
        .chars()
        .rev()
        .collect()
}

/// Byte offsets after each character: the non-empty prefixes of `value`.
fn char_ends(value: &str) -> Vec<usize> {
    value
        .char_indices()
        .map(|(at, c)| at + c.len_utf8())
        .collect()
}

/// drone's glob (its own `path` package): `*` any run of characters, `/`
/// included, `?` one, `[...]` classes, `\` escapes; `Err` for a malformed
/// pattern.
fn glob_match(pattern: &str, name: &str) -> Result<bool, ()> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_from(&p, &n)
}

fn glob_from(p: &[char], n: &[char]) -> Result<bool, ()> {
    match p.first() {
        None => Ok(n.is_empty()),
        Some('*') => {
            for skip in 0..=n.len() {
                if glob_from(&p[1..], &n[skip..])? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Some('?') => match n.first() {
            Some(_) => glob_from(&p[1..], &n[1..]),
            None => Ok(false),
        },
        Some('[') => {
            let (matched, rest) = class(&p[1..], n.first().copied())?;
            if matched {
                glob_from(rest, &n[1..])
            } else {
                Ok(false)
            }
        }
        Some('\\') => match (p.get(1), n.first()) {
            (None, _) => Err(()),
            (Some(a), Some(b)) if a == b => glob_from(&p[2..], &n[1..]),
            _ => Ok(false),
        },
        Some(&c) => match n.first() {
            Some(&d) if c == d => glob_from(&p[1..], &n[1..]),
            _ => Ok(false),
        },
    }
}

/// A `[...]` class after its `[`: whether `c` matches, and the pattern after `]`.
fn class(p: &[char], c: Option<char>) -> Result<(bool, &[char]), ()> {
    let negated = p.first() == Some(&'^');
    let mut i = usize::from(negated);
    let mut matched = false;
    let mut first = true;
    loop {
        let Some(&lo) = p.get(i) else { return Err(()) };
        if lo == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = if lo == '\\' {
            i += 1;
            *p.get(i).ok_or(())?
        } else {
            lo
        };
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&h| h != ']') {
            hi = p[i + 1];
            i += 2;
        }
        if c.is_some_and(|c| lo <= c && c <= hi) {
            matched = true;
        }
    }
    Ok((c.is_some() && matched != negated, &p[i..]))
}

/// Which tokens the scanner recognises in its current state.
#[derive(Clone, Copy)]
struct Mode {
    ident: bool,
    lbrack: bool,
    rbrack: bool,
    escape: bool,
}

impl Mode {
    const TEXT: Mode = Mode {
        ident: true,
        lbrack: true,
        rbrack: false,
        escape: true,
    };
    const IDENT: Mode = Mode {
        ident: true,
        lbrack: false,
        rbrack: false,
        escape: false,
    };
    const RBRACK: Mode = Mode {
        ident: false,
        lbrack: false,
        rbrack: true,
        escape: false,
    };
}

#[derive(Debug, PartialEq)]
enum Token {
    Eof,
    Lbrack,
    Rbrack,
    Ident,
    Illegal,
}

/// Accepts a character at index `i` of the token.
type Accept = fn(char, usize) -> bool;

struct Scanner {
    buf: Vec<char>,
    pos: usize,
    start: usize,
    mode: Mode,
    /// Outside `${}` only `$$` is an escape; inside, `\\` and `\/` too.
    escape_backslash: bool,
    accept: Accept,
}

impl Scanner {
    fn new(text: &str) -> Scanner {
        Scanner {
            buf: text.chars().collect(),
            pos: 0,
            start: 0,
            mode: Mode::TEXT,
            escape_backslash: false,
            accept: |_, _| true,
        }
    }

    fn read(&mut self) -> Option<char> {
        let c = self.buf.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn unread(&mut self) {
        self.pos -= 1;
    }

    fn peek(&self) -> Option<char> {
        self.buf.get(self.pos).copied()
    }

    /// Drops the character just read: the first of an escape pair.
    fn skip(&mut self) {
        self.buf.remove(self.pos - 1);
    }

    fn text(&self) -> String {
        self.buf[self.start..self.pos].iter().collect()
    }

    fn set(&mut self, accept: Accept, mode: Mode) {
        self.accept = accept;
        self.mode = mode;
    }

    fn scan(&mut self) -> Token {
        self.start = self.pos;
        let Some(c) = self.read() else {
            return Token::Eof;
        };
        if self.lbrack(c) {
            Token::Lbrack
        } else if self.mode.rbrack && c == '}' {
            Token::Rbrack
        } else if self.ident(c) {
            Token::Ident
        } else {
            Token::Illegal
        }
    }

    fn lbrack(&mut self, c: char) -> bool {
        if !self.mode.lbrack || c != '$' {
            return false;
        }
        if self.read() == Some('{') {
            return true;
        }
        if self.pos > self.start + 1 {
            self.unread();
        }
        false
    }

    fn escaped(&self, c: char) -> bool {
        if !self.mode.escape {
            return false;
        }
        match c {
            '$' => self.peek() == Some('$'),
            '\\' if self.escape_backslash => matches!(self.peek(), Some('/' | '\\')),
            _ => false,
        }
    }

    fn ident(&mut self, c: char) -> bool {
        if !self.mode.ident {
            return false;
        }
        if self.escaped(c) {
            self.skip();
        } else if !(self.accept)(c, self.pos - self.start) {
            return false;
        }
        loop {
            let before = self.pos;
            let Some(c) = self.read() else { break };
            if self.mode.lbrack && c == '$' && self.peek() == Some('{') {
                self.pos = before;
                break;
            }
            if self.escaped(c) {
                self.skip();
                continue;
            }
            if !(self.accept)(c, self.pos - self.start) {
                self.unread();
                break;
            }
        }
        true
    }
}

struct Parser {
    scanner: Scanner,
}

fn accept_ident(c: char, _: usize) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl Parser {
    fn any(&mut self) -> Result<Vec<Node>, Error> {
        let mut nodes = Vec::new();
        loop {
            self.scanner.set(|_, _| true, Mode::TEXT);
            self.scanner.escape_backslash = false;
            match self.scanner.scan() {
                Token::Ident => nodes.push(Node::Text(self.scanner.text())),
                Token::Eof => return Ok(nodes),
                Token::Lbrack => nodes.push(self.func()?),
                Token::Rbrack | Token::Illegal => return Err(Error::BadSubstitution),
            }
        }
    }

    fn func(&mut self) -> Result<Node, Error> {
        self.scanner.escape_backslash = true;
        if self.scanner.peek() == Some('#') {
            return self.length();
        }
        self.scanner.set(accept_ident, Mode::IDENT);
        if self.scanner.scan() != Token::Ident {
            return Err(Error::VariableName);
        }
        let param = self.scanner.text();
        match self.scanner.peek() {
            Some(':') => return self.default_or_substring(param),
            Some('=') => return self.default(param),
            Some(',' | '^') => {
                return self.operator_only(param, |c, i| (c == ',' || c == '^') && i < 3)
            }
            Some('/') => return self.replace(param),
            Some('#') => return self.remove(param, |c, i| c == '#' && i < 3),
            Some('%') => return self.remove(param, |c, i| c == '%' && i < 3),
            _ => {}
        }
        self.scanner.set(accept_ident, Mode::RBRACK);
        match self.scanner.scan() {
            Token::Rbrack => Ok(Node::Func {
                param,
                op: String::new(),
                args: Vec::new(),
            }),
            _ => Err(Error::MissingClosingBrace),
        }
    }

    fn param(&mut self, accept: Accept, mode: Mode) -> Result<Node, Error> {
        self.scanner.set(
            accept,
            Mode {
                lbrack: true,
                ..mode
            },
        );
        match self.scanner.scan() {
            Token::Lbrack => self.func(),
            Token::Ident | Token::Rbrack => Ok(Node::Text(self.scanner.text())),
            Token::Eof | Token::Illegal => Err(Error::FunctionSubstitution),
        }
    }

    fn op(&mut self, accept: Accept, error: Error) -> Result<String, Error> {
        self.scanner.set(accept, Mode::IDENT);
        if self.scanner.scan() != Token::Ident {
            return Err(error);
        }
        Ok(self.scanner.text())
    }

    fn close(&mut self) -> Result<(), Error> {
        self.scanner.mode = Mode::RBRACK;
        match self.scanner.scan() {
            Token::Rbrack => Ok(()),
            _ => Err(Error::BadSubstitution),
        }
    }

    fn default_or_substring(&mut self, param: String) -> Result<Node, Error> {
        let after_colon = self.scanner.buf.get(self.scanner.pos + 1).copied();
        match after_colon {
            Some('=' | '-' | '?' | '+') => self.default(param),
            _ => self.substring(param),
        }
    }

    fn substring(&mut self, param: String) -> Result<Node, Error> {
        let op = self.op(|c, i| i == 1 && c == ':', Error::BadSubstitution)?;
        let mut args = vec![self.param(|c, _| c != ':' && c != '}', Mode::IDENT)?];
        self.scanner.set(
            |c, _| c == ':',
            Mode {
                rbrack: true,
                ..Mode::IDENT
            },
        );
        match self.scanner.scan() {
            Token::Rbrack => return Ok(Node::Func { param, op, args }),
            Token::Ident => {}
            _ => return Err(Error::BadSubstitution),
        }
        args.push(self.param(|c, _| c != '}', Mode::IDENT)?);
        self.close()?;
        Ok(Node::Func { param, op, args })
    }

    fn remove(&mut self, param: String, accept: Accept) -> Result<Node, Error> {
        let op = self.op(accept, Error::BadSubstitution)?;
        let args = vec![self.param(|c, _| c != '}', Mode::IDENT)?];
        self.close()?;
        Ok(Node::Func { param, op, args })
    }

    fn replace(&mut self, param: String) -> Result<Node, Error> {
        let op = self.op(
            |c, i| (i == 1 && c == '/') || (i == 2 && matches!(c, '/' | '#' | '%')),
            Error::BadSubstitution,
        )?;
        let escaping = Mode {
            escape: true,
            ..Mode::IDENT
        };
        let mut args = Vec::new();
        if self.scanner.peek() == Some('/') {
            args.push(Node::Text(String::new()));
        } else {
            args.push(self.param(|c, _| c != '/', escaping)?);
        }
        self.op(|c, _| c == '/', Error::BadSubstitution)?;
        if self.scanner.peek() == Some('}') {
            self.close()?;
            return Ok(Node::Func { param, op, args });
        }
        args.push(self.param(|c, _| c != '}', escaping)?);
        self.close()?;
        Ok(Node::Func { param, op, args })
    }

    fn default(&mut self, param: String) -> Result<Node, Error> {
        let accept: Accept = if self.scanner.peek() == Some('=') {
            |c, i| i == 1 && c == '='
        } else {
            |c, i| (i == 1 && c == ':') || (i == 2 && matches!(c, '=' | '-' | '?' | '+'))
        };
        let op = self.op(accept, Error::DefaultFunction)?;
        let mut args = Vec::new();
        loop {
            if self.scanner.peek() == Some('}') {
                self.close()?;
                return Ok(Node::Func { param, op, args });
            }
            args.push(self.param(|c, _| c != '}', Mode::IDENT)?);
        }
    }

    fn operator_only(&mut self, param: String, accept: Accept) -> Result<Node, Error> {
        let op = self.op(accept, Error::BadSubstitution)?;
        self.close()?;
        Ok(Node::Func {
            param,
            op,
            args: Vec::new(),
        })
    }

    fn length(&mut self) -> Result<Node, Error> {
        let op = self.op(|c, i| c == '#' && i == 1, Error::BadSubstitution)?;
        self.scanner.set(accept_ident, Mode::IDENT);
        if self.scanner.scan() != Token::Ident {
            return Err(Error::BadSubstitution);
        }
        let param = self.scanner.text();
        self.close()?;
        Ok(Node::Func {
            param,
            op,
            args: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn with(vars: &[(&str, &str)], text: &str, strict: bool) -> Result<String, Error> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        expand(text, &|name| vars.get(name).cloned(), strict)
    }

    fn ok(vars: &[(&str, &str)], text: &str) -> String {
        with(vars, text, false).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// Flux's own cases (fluxcd/pkg envsubst, after tldp.org's bash guide).
    #[test]
    fn expands_like_flux() {
        let v = [("var01", "abcdEFGH28ij")];
        assert_eq!(ok(&[], "abcdEFGH28ij"), "abcdEFGH28ij");
        assert_eq!(ok(&v, "${#var01}"), "12");
        assert_eq!(ok(&v, "${var01^}"), "AbcdEFGH28ij");
        assert_eq!(ok(&v, "${var01^^}"), "ABCDEFGH28IJ");
        assert_eq!(
            ok(&[("var01", "ABCDEFGH28IJ")], "${var01,}"),
            "aBCDEFGH28IJ"
        );
        assert_eq!(
            ok(&[("var01", "ABCDEFGH28IJ")], "${var01,,}"),
            "abcdefgh28ij"
        );
        let p = [("path_name", "/home/bozo/ideas/thoughts.for.today")];
        assert_eq!(ok(&p, "${path_name:11}"), "ideas/thoughts.for.today");
        assert_eq!(ok(&p, "${path_name:11:5}"), "ideas");
        assert_eq!(ok(&[("var", "abc")], "${var=xyz}"), "abc");
        assert_eq!(ok(&[], "${var=xyz}"), "xyz");
        assert_eq!(
            ok(&[("default_var", "foo")], "something ${var=${default_var}}"),
            "something foo"
        );
        assert_eq!(
            ok(
                &[("default_var", "foo1")],
                "foo: ${var=${default_var}-suffix}"
            ),
            "foo: foo1-suffix"
        );
        assert_eq!(
            ok(
                &[("default_var", "foo1")],
                "foo: ${var=prefix${default_var}-suffix}"
            ),
            "foo: prefixfoo1-suffix"
        );
        assert_eq!(ok(&[], "${var:=xyz}"), "xyz");
        assert_eq!(ok(&[], "${var:-xyz}"), "xyz");
        assert_eq!(ok(&[("var", "")], "${var:-xyz}"), "xyz");
        let z = [("stringZ", "abcABC123ABCabc")];
        assert_eq!(ok(&z, "${stringZ/%abc/XYZ}"), "abcABC123ABCXYZ");
        assert_eq!(ok(&z, "${stringZ/#abc/XYZ}"), "XYZABC123ABCabc");
        assert_eq!(
            ok(&[("stringZ", "somevalue")], "${stringZ/#/prefix-}"),
            "prefix-somevalue"
        );
        assert_eq!(
            ok(&[("stringZ", "somevalue")], "${stringZ/%/-suffix}"),
            "somevalue-suffix"
        );
        assert_eq!(ok(&z, "${stringZ//abc/xyz}"), "xyzABC123ABCxyz");
        assert_eq!(ok(&z, "${stringZ/abc/xyz}"), "xyzABC123ABCabc");
        assert_eq!(
            ok(&[("filename", "bash.string.txt")], "${filename#*.}"),
            "string.txt"
        );
        assert_eq!(
            ok(&[("filename", "path/to/file")], "${filename#*/}"),
            "to/file"
        );
        assert_eq!(
            ok(&[("filename", "/path/to/file")], "${filename#*/}"),
            "path/to/file"
        );
        assert_eq!(
            ok(&[("filename", "bash.string.txt")], "${filename##*.}"),
            "txt"
        );
        assert_eq!(
            ok(&[("filename", "path/to/file")], "${filename##*/}"),
            "file"
        );
        assert_eq!(
            ok(&[("filename", "bash.string.txt")], "${filename%.*}"),
            "bash.string"
        );
        assert_eq!(
            ok(&[("filename", "bash.string.txt")], "${filename%%.*}"),
            "bash"
        );
        assert_eq!(ok(&v, "${var=${var01^^}}"), "ABCDEFGH28IJ");
        assert_eq!(ok(&[("stringZ", "foo/bar")], r"${stringZ/\//-}"), "foo-bar");
        assert_eq!(
            ok(&[("stringZ", "foo/bar/baz")], r"${stringZ//\//-}"),
            "foo-bar-baz"
        );
        assert_eq!(
            ok(
                &[("default_var", "foo")],
                r"\\something ${var=${default_var}}"
            ),
            r"\\something foo"
        );
        assert_eq!(ok(&[("stringZ", "foo.bar")], "${stringZ/./}"), "foobar");
    }

    #[test]
    fn dollar_dollar_escapes_and_lone_dollars_stay() {
        let v = [("var01", "abcdEFGH28ij")];
        assert_eq!(ok(&v, "$${var01}"), "${var01}");
        assert_eq!(
            ok(&v, "some text ${var01}$${var$${var01}$var01${var01}"),
            "some text abcdEFGH28ij${var${var01}$var01abcdEFGH28ij"
        );
        assert_eq!(
            ok(
                &[("default_var", "foo")],
                "something $${var=${default_var}}"
            ),
            "something ${var=foo}"
        );
        assert_eq!(
            ok(&v, "echo $HOME and $var01 cost $5"),
            "echo $HOME and $var01 cost $5"
        );
    }

    #[test]
    fn undefined_variables_are_empty_unless_strict() {
        assert_eq!(ok(&[], "a${missing}b"), "ab");
        assert_eq!(
            with(&[], "${missing}", true),
            Err(Error::NotSet("missing".into()))
        );
        assert_eq!(with(&[("foo", "")], "${foo}", true), Ok(String::new()));
        for transform in [
            "${#missing}",
            "${missing^^}",
            "${missing,}",
            "${missing:0:10}",
            "${missing//a/b}",
            "${missing%%p}",
        ] {
            assert_eq!(
                with(&[], transform, true),
                Err(Error::NotSet("missing".into())),
                "{transform}"
            );
        }
        for default in [
            "${missing:-fallback}",
            "${missing:=fallback}",
            "${missing=fallback}",
        ] {
            assert_eq!(
                with(&[], default, true).as_deref(),
                Ok("fallback"),
                "{default}"
            );
        }
    }

    #[test]
    fn malformed_expressions_are_errors() {
        assert_eq!(with(&[], "${", false), Err(Error::VariableName));
        assert_eq!(with(&[], "${ var}", false), Err(Error::VariableName));
        assert_eq!(with(&[], "${var", false), Err(Error::MissingClosingBrace));
        assert_eq!(
            with(&[], "${var-x}", false),
            Err(Error::MissingClosingBrace)
        );
        assert_eq!(
            with(&[], "${var:-x", false),
            Err(Error::FunctionSubstitution)
        );
    }
}

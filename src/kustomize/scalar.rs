//! Strings in go-yaml v2's output: which style (plain, single-quoted,
//! double-quoted, literal block) and how long lines fold. This follows
//! libyaml's emitter, which go-yaml v2 is a port of: go-yaml asks for plain
//! style unless the text would read back as another type (`"true"`, `"1"`,
//! `""`, `"y"`), or a literal block for multi-line text; libyaml then falls
//! back to single and then double quotes when a style cannot hold the text.

use std::sync::OnceLock;

use regex::Regex;

use super::emit::Out;

const BEST_WIDTH: usize = 80;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// A mapping key: never folded, never a block scalar.
    Key,
    /// A mapping value or sequence item.
    Value,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// Writes `s` at the current position; `indent` is where folded lines and
/// block scalar lines start.
pub fn write_string(out: &mut Out, s: &str, indent: usize, context: Context) {
    let style = select_style(s, context);
    let breaks = context == Context::Value;
    match style {
        Style::Plain => write_plain(out, s, indent, breaks),
        Style::Single => write_single(out, s, indent, breaks),
        Style::Double => write_double(out, s, indent, breaks),
        Style::Literal => write_literal(out, s, indent),
    }
}

fn select_style(s: &str, context: Context) -> Style {
    let requested = if s.contains('\n') {
        Style::Literal
    } else if resolves_to_string(s) && !is_base60_float(s) {
        Style::Plain
    } else {
        Style::Double
    };
    let a = analyze(s);
    let mut style = requested;
    if style == Style::Plain
        && (!a.block_plain_allowed || (s.is_empty() && context == Context::Key))
    {
        style = Style::Single;
    }
    if style == Style::Single && !a.single_quoted_allowed {
        style = Style::Double;
    }
    if style == Style::Literal && (!a.block_allowed || context == Context::Key) {
        style = Style::Double;
    }
    style
}

struct Analysis {
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

pub(crate) fn is_printable(c: char) -> bool {
    matches!(c as u32, 0x0A | 0x20..=0x7E | 0xA0..=0xD7FF | 0xE000..=0xFFFD) && c != '\u{FEFF}'
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_blank_or_end(c: Option<&char>) -> bool {
    match c {
        None => true,
        Some(c) => *c == ' ' || *c == '\t' || is_break(*c),
    }
}

fn analyze(s: &str) -> Analysis {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return Analysis {
            block_plain_allowed: false,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let (mut special, mut line_breaks) = (false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    let mut preceded_by_whitespace = true;
    for (i, &c) in chars.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == chars.len();
        let followed_by_whitespace = is_blank_or_end(chars.get(i + 1));
        if first {
            if "#,[]{}&*!|>'\"%@`".contains(c) {
                block_indicators = true;
            }
            if (c == '?' || c == ':' || c == '-') && followed_by_whitespace {
                block_indicators = true;
            }
        } else {
            if c == ':' && followed_by_whitespace {
                block_indicators = true;
            }
            if c == '#' && preceded_by_whitespace {
                block_indicators = true;
            }
        }
        if !is_printable(c) {
            special = true;
        }
        if is_break(c) {
            line_breaks = true;
        }
        if c == ' ' {
            leading_space |= first;
            trailing_space |= last;
            break_space |= previous_break;
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            leading_break |= first;
            trailing_break |= last;
            space_break |= previous_space;
            previous_break = true;
            previous_space = false;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = c == ' ' || c == '\t' || is_break(c);
    }
    let mut a = Analysis {
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
        a.block_allowed = false;
    }
    if line_breaks || block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

fn write_plain(out: &mut Out, s: &str, indent: usize, allow_breaks: bool) {
    let chars: Vec<char> = s.chars().collect();
    let mut spaces = false;
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let next_is_space = chars.get(i + 1) == Some(&' ');
            if allow_breaks && !spaces && out.column() > BEST_WIDTH && !next_is_space {
                out.newline_indent(indent);
            } else {
                out.push_char(c);
            }
            spaces = true;
        } else {
            out.push_char(c);
            spaces = false;
        }
    }
}

fn write_single(out: &mut Out, s: &str, indent: usize, allow_breaks: bool) {
    let chars: Vec<char> = s.chars().collect();
    out.push_char('\'');
    let mut spaces = false;
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let inner = i != 0 && i + 1 != chars.len();
            let next_is_space = chars.get(i + 1) == Some(&' ');
            if allow_breaks && !spaces && out.column() > BEST_WIDTH && inner && !next_is_space {
                out.newline_indent(indent);
            } else {
                out.push_char(c);
            }
            spaces = true;
        } else {
            if c == '\'' {
                out.push_char('\'');
            }
            out.push_char(c);
            spaces = false;
        }
    }
    out.push_char('\'');
}

fn write_double(out: &mut Out, s: &str, indent: usize, allow_breaks: bool) {
    let chars: Vec<char> = s.chars().collect();
    out.push_char('"');
    let mut spaces = false;
    for (i, &c) in chars.iter().enumerate() {
        if !is_printable(c) || is_break(c) || c == '"' || c == '\\' {
            out.push(&escape(c));
            spaces = false;
        } else if c == ' ' {
            let inner = i != 0 && i + 1 != chars.len();
            if allow_breaks && !spaces && out.column() > BEST_WIDTH && inner {
                out.newline_indent(indent);
                if chars.get(i + 1) == Some(&' ') {
                    out.push_char('\\');
                }
            } else {
                out.push_char(c);
            }
            spaces = true;
        } else {
            out.push_char(c);
            spaces = false;
        }
    }
    out.push_char('"');
}

fn escape(c: char) -> String {
    let short = match c {
        '\0' => "0",
        '\u{7}' => "a",
        '\u{8}' => "b",
        '\t' => "t",
        '\n' => "n",
        '\u{b}' => "v",
        '\u{c}' => "f",
        '\r' => "r",
        '\u{1b}' => "e",
        '"' => "\"",
        '\\' => "\\",
        '\u{85}' => "N",
        '\u{a0}' => "_",
        '\u{2028}' => "L",
        '\u{2029}' => "P",
        _ => "",
    };
    if !short.is_empty() {
        return format!("\\{short}");
    }
    let v = c as u32;
    if v <= 0xFF {
        format!("\\x{v:02X}")
    } else if v <= 0xFFFF {
        format!("\\u{v:04X}")
    } else {
        format!("\\U{v:08X}")
    }
}

fn write_literal(out: &mut Out, s: &str, indent: usize) {
    out.push("|");
    if s.starts_with(' ') || s.starts_with(is_break) {
        out.push("2");
    }
    let trailing_breaks = s.chars().rev().take_while(|c| is_break(*c)).count();
    match trailing_breaks {
        0 => out.push("-"),
        1 if s.chars().count() > 1 => {}
        _ => out.push("+"),
    }
    out.push_char('\n');
    let mut at_line_start = true;
    for c in s.chars() {
        if is_break(c) {
            out.push_char('\n');
            at_line_start = true;
        } else {
            if at_line_start {
                out.newline_indent(indent);
                at_line_start = false;
            }
            out.push_char(c);
        }
    }
}

/// Whether go-yaml v2 reads the plain text `s` back as a string.
pub(crate) fn resolves_to_string(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
        "-.Inf", "-.INF", "<<",
    ];
    if SPECIAL.contains(&s) {
        return false;
    }
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_digit() || first == '+' || first == '-' || first == '.') {
        return true;
    }
    if first.is_ascii_digit() && is_timestamp(s) {
        return false;
    }
    let plain = s.replace('_', "");
    if go_parse_int(&plain).is_some() {
        return false;
    }
    if float_regex().is_match(&plain) {
        return false;
    }
    let binary = plain.strip_prefix('-').unwrap_or(&plain);
    if let Some(bits) = binary.strip_prefix("0b") {
        if !bits.is_empty() && bits.chars().all(|c| c == '0' || c == '1') {
            return false;
        }
    }
    true
}

/// The value of `s` as Go's strconv.ParseInt or ParseUint(s, 0, 64) read
/// it (decimal, `0x`, `0o`, `0b`, or octal after a leading `0`).
pub(crate) fn go_parse_int(s: &str) -> Option<i128> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (digits, radix) = if let Some(h) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (h, 16)
    } else if let Some(o) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        (o, 8)
    } else if let Some(b) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
        (b, 2)
    } else if body.len() > 1 && body.starts_with('0') {
        (&body[1..], 8)
    } else {
        (body, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u128::from_str_radix(digits, radix).ok()?;
    match negative {
        false if magnitude <= u64::MAX as u128 => Some(magnitude as i128),
        true if magnitude <= 1u128 << 63 => Some(-(magnitude as i128)),
        _ => None,
    }
}

pub(crate) fn float_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$").expect("static regex")
    })
}

fn is_base60_float(s: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$").expect("static regex")
    });
    re.is_match(s)
}

/// go-yaml v2's timestamp formats: `2006-1-2`, with `T`/`t`/space time.
fn is_timestamp(s: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(
            r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:(?:[Tt]|[ ])[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})?)?$",
        )
        .expect("static regex")
    });
    re.is_match(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> String {
        let mut out = Out::default();
        out.push("key: ");
        write_string(&mut out, s, 2, Context::Value);
        out.text
    }

    #[test]
    fn strings_that_read_back_as_other_types_are_double_quoted() {
        assert_eq!(value("true"), "key: \"true\"");
        assert_eq!(value("1"), "key: \"1\"");
        assert_eq!(value(""), "key: \"\"");
        assert_eq!(value("y"), "key: \"y\"");
        assert_eq!(value("1.5e3"), "key: \"1.5e3\"");
        assert_eq!(value("0x1F"), "key: \"0x1F\"");
        assert_eq!(value("2020-01-01"), "key: \"2020-01-01\"");
        assert_eq!(value("abc"), "key: abc");
        assert_eq!(value("1.2.3"), "key: 1.2.3");
    }

    #[test]
    fn strings_with_indicators_are_single_quoted() {
        assert_eq!(value(": test"), "key: ': test'");
        assert_eq!(value("*/1 * * * *"), "key: '*/1 * * * *'");
        assert_eq!(value("it's #x"), "key: 'it''s #x'");
    }

    #[test]
    fn multi_line_strings_are_literal_blocks() {
        assert_eq!(value("a\nb\n"), "key: |\n  a\n  b\n");
        assert_eq!(value("a\n\nb"), "key: |-\n  a\n\n  b");
        assert_eq!(value(" a\nb"), "key: |2-\n   a\n  b");
        assert_eq!(value("a \nb"), "key: \"a \\nb\"");
        assert_eq!(value("tab\there"), "key: \"tab\\there\"");
    }

    #[test]
    fn long_plain_lines_fold_after_column_80() {
        let s = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. Maecenas suscipit ex non molestie varius.";
        let mut out = Out::default();
        out.push("          value: ");
        write_string(&mut out, s, 12, Context::Value);
        assert_eq!(
            out.text,
            "          value: Lorem ipsum dolor sit amet, consectetur adipiscing elit. Maecenas\n            suscipit ex non molestie varius."
        );
    }
}

//! Reading and writing properties files such as `conf/ember-defaults.conf`.
//!
//! Spark counterpart: `Utils.getPropertiesFromFile`, which loads `spark-defaults.conf` with Java's
//! `Properties.load` (UTF-8) and trims each value. This is a Rust reading of the same format:
//!
//! * a line is `key value`, `key=value` or `key: value`; the key ends at the first unescaped
//!   `=`, `:` or blank, and blanks around the separator are skipped;
//! * blank lines, and lines whose first non-blank character is `#` or `!`, are comments;
//! * a line ending in an odd number of backslashes continues on the next line, whose leading
//!   blanks are dropped;
//! * escapes: `\t`, `\n`, `\r`, `\f`, `\uXXXX` (surrogate pairs combine), and `\` before any
//!   other character stands for that character (`\\`, `\=`, `\:`, `\ `, `\#`);
//! * unescaped whitespace and control characters at either end of a value are trimmed (as Spark
//!   does), escaped ones are kept;
//! * lines may end with `\n`, `\r\n` or `\r`; a UTF-8 byte-order mark is ignored; when a key
//!   repeats, the last line wins.
//!
//! Choices where Java's parser is lenient: a key alone is a key with an empty value (as in Java),
//! but a value with no key (`=value`) is refused; a bad `\u` escape or a line that is not UTF-8 is
//! refused with the file and line number rather than read approximately.

use std::fmt;
use std::iter::Peekable;
use std::path::Path;
use std::str::Chars;
use std::sync::Arc;

use super::error::{ConfError, MalformedReason, redact_value};

/// One `key = value` of a properties file.
#[derive(Clone, PartialEq, Eq)]
pub struct Property {
    /// The key, unescaped.
    pub key: String,
    /// The value, unescaped and trimmed.
    pub value: String,
    /// The 1-based number of the line where the entry starts.
    pub line: usize,
}

impl fmt::Debug for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Property")
            .field("key", &self.key)
            .field("value", &redact_value(&self.key, &self.value))
            .field("line", &self.line)
            .finish()
    }
}

/// Reads and parses the properties file at `path`. A missing or unreadable file is a
/// [`ConfError::PropertiesFile`] naming the path and the OS error.
pub fn read_properties_file(path: &Path) -> Result<Vec<Property>, ConfError> {
    let bytes = std::fs::read(path).map_err(|source| ConfError::PropertiesFile {
        path: path.to_owned(),
        source: Arc::new(source),
    })?;
    parse_properties(&bytes, path)
}

/// Parses the contents of a properties file; `path` only names the file in errors.
pub fn parse_properties(bytes: &[u8], path: &Path) -> Result<Vec<Property>, ConfError> {
    let malformed = |line, reason| ConfError::MalformedLine {
        path: path.to_owned(),
        line,
        reason,
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut properties = Vec::new();
    // The logical line being assembled, and the number of the line it started on.
    let mut pending: Option<(String, usize)> = None;
    for (index, raw) in physical_lines(bytes).enumerate() {
        let number = index + 1;
        let text = std::str::from_utf8(raw)
            .map_err(|_| malformed(number, MalformedReason::InvalidUtf8))?;
        let text = text.trim_start_matches(is_blank);
        let (mut logical, start) = match pending.take() {
            Some((logical, start)) => (logical, start),
            None if text.is_empty() || text.starts_with(['#', '!']) => continue,
            None => (String::new(), number),
        };
        let trailing_backslashes = text.len() - text.trim_end_matches('\\').len();
        if trailing_backslashes % 2 == 1 {
            logical.push_str(&text[..text.len() - 1]);
            pending = Some((logical, start));
            continue;
        }
        logical.push_str(text);
        if let Some(property) =
            parse_logical_line(&logical, start).map_err(|r| malformed(start, r))?
        {
            properties.push(property);
        }
    }
    // A backslash on the last line continues into nothing.
    if let Some((logical, start)) = pending
        && let Some(property) =
            parse_logical_line(&logical, start).map_err(|r| malformed(start, r))?
    {
        properties.push(property);
    }
    Ok(properties)
}

/// The physical lines of `bytes`, split at `\n`, `\r\n` or `\r`, without their terminators.
fn physical_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            None => Some(std::mem::take(&mut rest)),
            Some(at) => {
                let line = &rest[..at];
                let skip = if rest[at..].starts_with(b"\r\n") {
                    2
                } else {
                    1
                };
                rest = &rest[at + skip..];
                Some(line)
            }
        }
    })
}

/// The blanks that separate keys from values, as in Java: space, tab, form feed.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{c}')
}

/// What is trimmed from either end of a value: blanks and control characters other than line
/// breaks (which can only be there escaped), as Spark's `trimExceptCRLF`.
fn is_trimmed(c: char) -> bool {
    c <= ' ' && c != '\r' && c != '\n'
}

/// Parses one logical line (leading blanks removed, continuations joined). `None` for a line that
/// ended up empty, such as a lone backslash.
fn parse_logical_line(line: &str, number: usize) -> Result<Option<Property>, MalformedReason> {
    if line.is_empty() {
        return Ok(None);
    }
    let mut chars = line.chars().peekable();
    let mut key = String::new();
    let mut separated = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => unescape(&mut chars, &mut key)?,
            '=' | ':' => {
                separated = true;
                break;
            }
            c if is_blank(c) => break,
            c => key.push(c),
        }
    }
    while chars.next_if(|&c| is_blank(c)).is_some() {}
    if !separated {
        chars.next_if(|&c| c == '=' || c == ':');
    }
    while chars.next_if(|&c| is_trimmed(c)).is_some() {}

    let mut value = String::new();
    // Bytes of `value` up to and including the last escaped character: never trimmed.
    let mut kept = 0;
    while let Some(c) = chars.next() {
        if c == '\\' {
            unescape(&mut chars, &mut value)?;
            kept = value.len();
        } else {
            value.push(c);
        }
    }
    let trimmed = value.trim_end_matches(is_trimmed).len().max(kept);
    value.truncate(trimmed);

    if key.is_empty() {
        return Err(MalformedReason::EmptyKey);
    }
    Ok(Some(Property {
        key,
        value,
        line: number,
    }))
}

/// Reads the escape after a backslash and pushes the character it stands for.
fn unescape(chars: &mut Peekable<Chars<'_>>, out: &mut String) -> Result<(), MalformedReason> {
    match chars.next() {
        // A backslash at the very end (only possible at the end of the file) stands for nothing.
        None => {}
        Some('t') => out.push('\t'),
        Some('n') => out.push('\n'),
        Some('r') => out.push('\r'),
        Some('f') => out.push('\u{c}'),
        Some('u') => {
            let unit = hex4(chars)?;
            let code = match unit {
                0xD800..=0xDBFF => {
                    // A high surrogate must be followed by an escaped low one.
                    if chars.next() != Some('\\') || chars.next() != Some('u') {
                        return Err(MalformedReason::BadUnicodeEscape);
                    }
                    let low = hex4(chars)?;
                    if !(0xDC00..=0xDFFF).contains(&low) {
                        return Err(MalformedReason::BadUnicodeEscape);
                    }
                    0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                }
                code => code,
            };
            out.push(char::from_u32(code).ok_or(MalformedReason::BadUnicodeEscape)?);
        }
        Some(c) => out.push(c),
    }
    Ok(())
}

fn hex4(chars: &mut Peekable<Chars<'_>>) -> Result<u32, MalformedReason> {
    let mut code = 0;
    for _ in 0..4 {
        let digit = chars
            .next()
            .and_then(|c| c.to_digit(16))
            .ok_or(MalformedReason::BadUnicodeEscape)?;
        code = code * 16 + digit;
    }
    Ok(code)
}

/// Writes pairs as properties-file text that [`parse_properties`] reads back to the same pairs
/// (keys must not be empty). Each pair is one `key=value` line; only what must be escaped is.
pub fn format_properties<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (key, value) in pairs {
        for c in key.chars() {
            match c {
                '=' | ':' | ' ' | '#' | '!' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c => escape_char(c, &mut out),
            }
        }
        out.push('=');
        let start = value.len() - value.trim_start_matches(is_trimmed).len();
        let end = value.trim_end_matches(is_trimmed).len().max(start);
        for (at, c) in value.char_indices() {
            let at_edge = at < start || at >= end;
            match c {
                '\\' => out.push_str("\\\\"),
                ' ' if at_edge => out.push_str("\\ "),
                c => escape_char(c, &mut out),
            }
        }
        out.push('\n');
    }
    out
}

/// Pushes `c`, escaping control characters.
fn escape_char(c: char, out: &mut String) {
    match c {
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\u{c}' => out.push_str("\\f"),
        // Control characters, and a byte-order mark that would be dropped at the start of a file.
        c if c.is_control() || c == '\u{feff}' => {
            out.push_str(&format!("\\u{:04X}", u32::from(c)));
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Vec<(String, String)> {
        parse_properties(text.as_bytes(), Path::new("test.conf"))
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|p| (p.key, p.value))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_three_separators_and_comments() {
        let text = "\
# a comment
! another comment
   # indented comment

ember.a 1
ember.b=2
ember.c: 3
ember.d   =   4
ember.e:5:6
ember.f = a=b
  ember.g\t\tvalue with spaces   \t
";
        assert_eq!(
            parse(text),
            pairs(&[
                ("ember.a", "1"),
                ("ember.b", "2"),
                ("ember.c", "3"),
                ("ember.d", "4"),
                ("ember.e", "5:6"),
                ("ember.f", "a=b"),
                ("ember.g", "value with spaces"),
            ])
        );
    }

    #[test]
    fn a_key_alone_has_an_empty_value() {
        assert_eq!(
            parse("ember.a\nember.b=\nember.c :  \n"),
            pairs(&[("ember.a", ""), ("ember.b", ""), ("ember.c", "")])
        );
    }

    #[test]
    fn continuation_lines_join() {
        let text = "ember.list = a,\\\n    b,\\\n\tc\nember.next=1\n";
        assert_eq!(
            parse(text),
            pairs(&[("ember.list", "a,b,c"), ("ember.next", "1")])
        );
        // An even number of backslashes is an escaped backslash, not a continuation.
        assert_eq!(parse("ember.p=C:\\\\\n"), pairs(&[("ember.p", "C:\\")]));
        // A continuation into a line that looks like a comment is not a comment.
        assert_eq!(parse("ember.a=x\\\n#y\n"), pairs(&[("ember.a", "x#y")]));
        // A comment ending in a backslash does not continue.
        assert_eq!(parse("# c \\\nember.a=1\n"), pairs(&[("ember.a", "1")]));
        // A backslash at the end of the file continues into nothing.
        assert_eq!(parse("ember.a=1\\"), pairs(&[("ember.a", "1")]));
    }

    #[test]
    fn escapes() {
        let text = r"ember.a=tab\there\nnewline
ember\=odd\:key\ name = v
ember.b=\\back\=\:
ember.c=\u00e9\u0041\uD83D\uDE00
ember.d=\ \ padded\ \ 
ember.e=\q
";
        assert_eq!(
            parse(text),
            pairs(&[
                ("ember.a", "tab\there\nnewline"),
                ("ember=odd:key name", "v"),
                ("ember.b", "\\back=:"),
                ("ember.c", "éA😀"),
                ("ember.d", "  padded  "),
                ("ember.e", "q"),
            ])
        );
    }

    #[test]
    fn line_endings_bom_and_repeats() {
        let text = "\u{feff}ember.a=1\r\nember.b=2\rember.a=3\n";
        assert_eq!(
            parse(text),
            pairs(&[("ember.a", "1"), ("ember.b", "2"), ("ember.a", "3")])
        );
        let lines: Vec<usize> = parse_properties(b"\n\nember.a=1\\\n2\nember.b=3", Path::new("f"))
            .unwrap()
            .iter()
            .map(|p| p.line)
            .collect();
        assert_eq!(lines, vec![3, 5]);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let cases: [(&[u8], usize, MalformedReason); 5] = [
            (b"ember.a=1\n=value\n", 2, MalformedReason::EmptyKey),
            (b"ember.a=1\n: value\n", 2, MalformedReason::EmptyKey),
            (b"\n\nember.a=\\u12\n", 3, MalformedReason::BadUnicodeEscape),
            (b"ember.a=\\uD800x\n", 1, MalformedReason::BadUnicodeEscape),
            (
                b"ember.a=1\nember.b=\xff\n",
                2,
                MalformedReason::InvalidUtf8,
            ),
        ];
        for (bytes, want_line, want_reason) in cases {
            match parse_properties(bytes, Path::new("/etc/ember.conf")) {
                Err(ConfError::MalformedLine { path, line, reason }) => {
                    assert_eq!(path, Path::new("/etc/ember.conf"));
                    assert_eq!((line, reason), (want_line, want_reason));
                }
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
            }
        }
        let err = parse_properties(b"=x", Path::new("/etc/ember.conf")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/ember.conf:1: the line has a value but no key"
        );
    }

    #[test]
    fn missing_file_names_the_path_and_the_os_error() {
        let path = Path::new("/nonexistent/ember-defaults.conf");
        let err = read_properties_file(path).unwrap_err();
        assert!(matches!(err, ConfError::PropertiesFile { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("/nonexistent/ember-defaults.conf"), "{text}");
        assert!(text.contains("No such file"), "{text}");
    }

    #[test]
    fn debug_redacts_secret_values() {
        let parsed =
            parse_properties(b"ember.authenticate.secret=hunter2", Path::new("f")).unwrap();
        let shown = format!("{parsed:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn format_escapes_what_it_must() {
        let text = format_properties([("ember.a b", " x y\t"), ("#k", "a\\b\n")]);
        assert_eq!(text, "ember.a\\ b=\\ x y\\t\n\\#k=a\\\\b\\n\n");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_properties(&bytes, Path::new("p"));
        }

        #[test]
        fn property_shaped_text_never_panics(
            lines in proptest::collection::vec("[ \\t#!a-c=:\\\\u0-9DdEe\\r\\n]{0,24}", 0..12)
        ) {
            let _ = parse_properties(lines.join("\n").as_bytes(), Path::new("p"));
        }

        #[test]
        fn formatted_pairs_parse_back(
            entries in proptest::collection::vec((".{1,16}", ".{0,24}"), 0..8)
        ) {
            let text = format_properties(entries.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let parsed: Vec<(String, String)> = parse_properties(text.as_bytes(), Path::new("p"))
                .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?
                .into_iter()
                .map(|p| (p.key, p.value))
                .collect();
            prop_assert_eq!(parsed, entries);
        }
    }
}

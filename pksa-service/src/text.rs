//! Peer text in logs and terminal output: what an app, a relay or a node sends is data.

use std::fmt;

/// Displays peer text so it cannot forge log lines, log fields or terminal escape sequences:
/// control characters and bidirectional marks are escaped (`\u{1b}`), anything past 1,000
/// characters is cut, and text that holds a space, `=`, a quote or a backslash (or is empty)
/// is written in double quotes with `"` and `\` escaped, so `x decision=approve` cannot pass
/// for two fields of a log line.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

/// Longest text shown.
const MAX_CHARS: usize = 1000;

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202e}' | '\u{200e}' | '\u{200f}'
        )
}

fn needs_quotes(c: char) -> bool {
    c.is_whitespace() || matches!(c, '=' | '"' | '\\')
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quote = self.0.is_empty() || self.0.chars().any(needs_quotes);
        // The common case (a plain word, short): written as is.
        if !quote && self.0.len() <= MAX_CHARS && !self.0.chars().any(needs_escape) {
            return f.write_str(self.0);
        }
        if quote {
            f.write_str("\"")?;
        }
        for (n, c) in self.0.chars().enumerate() {
            if n == MAX_CHARS {
                write!(f, "…({} bytes in all)", self.0.len())?;
                break;
            }
            if needs_escape(c) {
                write!(f, "{}", c.escape_unicode())?;
            } else if quote && matches!(c, '"' | '\\') {
                write!(f, "\\{c}")?;
            } else {
                write!(f, "{c}")?;
            }
        }
        if quote {
            f.write_str("\"")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_fields_quoted_and_long_text_cut() {
        let s = Escaped("ok\u{1b}[31mred\nINFO forged line\r\u{202e}").to_string();
        assert_eq!(
            s,
            "\"ok\\u{1b}[31mred\\u{a}INFO forged line\\u{d}\\u{202e}\""
        );
        assert!(!s.chars().any(char::is_control));
        let long = "a".repeat(5000);
        let s = Escaped(&long).to_string();
        assert!(s.len() < 1100 && s.ends_with("(5000 bytes in all)"), "{s}");
        assert_eq!(Escaped("alice→bob").to_string(), "alice→bob");
        assert_eq!(Escaped("game").to_string(), "game");
        assert_eq!(
            Escaped("x decision=approve rule=\"admin\"").to_string(),
            "\"x decision=approve rule=\\\"admin\\\"\""
        );
        assert_eq!(Escaped("").to_string(), "\"\"");
    }
}

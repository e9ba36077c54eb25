//! Peer text in logs and terminal output: what an app, a relay or a node sends is data.

use std::fmt;

/// Displays text with control characters, quotes and backslashes escaped (`\u{1b}`, `\n`,
/// …) and anything past 1,000 characters cut: a peer cannot forge log lines or send
/// terminal escape sequences through the log.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

/// Longest text shown.
const MAX_CHARS: usize = 1000;

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, c) in self.0.chars().enumerate() {
            if n == MAX_CHARS {
                return write!(f, "…({} bytes in all)", self.0.len());
            }
            if c.is_control()
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{202e}' | '\u{200e}' | '\u{200f}'
                )
            {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_text_cut() {
        let s = Escaped("ok\u{1b}[31mred\nINFO forged line\r\u{202e}").to_string();
        assert_eq!(s, "ok\\u{1b}[31mred\\u{a}INFO forged line\\u{d}\\u{202e}");
        assert!(!s.chars().any(char::is_control));
        let long = "a".repeat(5000);
        let s = Escaped(&long).to_string();
        assert!(s.len() < 1100 && s.ends_with("(5000 bytes in all)"), "{s}");
        assert_eq!(Escaped("alice → bob").to_string(), "alice → bob");
    }
}

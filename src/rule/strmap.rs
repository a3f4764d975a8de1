//! Positions inside a TOML string value, mapped back to the rule file.

use crate::error::{pos_of_offset, Pos};

/// Maps positions inside a TOML string value back to the file, through its delimiters and
/// escapes (`\"`, `\uXXXX`, line-ending backslashes), so errors point at the right column.
pub(super) struct StrMap {
    /// File byte offset of each decoded character.
    offsets: Vec<usize>,
    /// File byte offset just after the last character.
    end: usize,
}

impl StrMap {
    pub(super) fn new(file: &str, span: std::ops::Range<usize>) -> StrMap {
        let (start, end) = (span.start.min(file.len()), span.end.min(file.len()));
        let raw = &file[start..end];
        let (delim, basic) = if raw.starts_with("\"\"\"") {
            (3, true)
        } else if raw.starts_with("'''") {
            (3, false)
        } else {
            (1, raw.starts_with('"'))
        };
        let body_end = end.saturating_sub(delim).max(start + delim.min(raw.len()));
        let mut i = (start + delim).min(body_end);
        if delim == 3 {
            if file[i..body_end].starts_with("\r\n") {
                i += 2;
            } else if file[i..body_end].starts_with('\n') {
                i += 1;
            }
        }
        let body = &file[i..body_end];
        let mut offsets = Vec::with_capacity(body.len());
        let mut chars = body.char_indices().peekable();
        while let Some((k, c)) = chars.next() {
            let at = i + k;
            if !(basic && c == '\\') {
                offsets.push(at);
                continue;
            }
            match chars.peek().map(|&(_, n)| n) {
                Some('u') => {
                    chars.nth(4);
                    offsets.push(at);
                }
                Some('U') => {
                    chars.nth(8);
                    offsets.push(at);
                }
                Some(n) if delim == 3 && n.is_whitespace() => {
                    // A line-ending backslash: the newline and the whitespace after it vanish.
                    while chars.peek().is_some_and(|&(_, w)| w.is_whitespace()) {
                        chars.next();
                    }
                }
                Some(_) => {
                    chars.next();
                    offsets.push(at);
                }
                None => offsets.push(at),
            }
        }
        StrMap { offsets, end: body_end }
    }

    /// File offset of the decoded character `index`.
    fn offset(&self, index: usize) -> usize {
        self.offsets.get(index).copied().unwrap_or(self.end)
    }

    /// File position of a 1-based SQL line and column (columns in characters).
    pub(super) fn sql_pos(&self, file: &str, sql: &str, line: u64, col: u64) -> Pos {
        let mut index = 0;
        for (n, l) in sql.split_inclusive('\n').enumerate() {
            if n as u64 + 1 >= line {
                break;
            }
            index += l.chars().count();
        }
        pos_of_offset(file, self.offset(index + col.saturating_sub(1) as usize))
    }

    /// File position of a byte offset into the decoded string `text`.
    pub(super) fn text_pos(&self, file: &str, text: &str, byte: usize) -> Pos {
        let byte = byte.min(text.len());
        let index = text.char_indices().take_while(|(b, _)| *b < byte).count();
        pos_of_offset(file, self.offset(index))
    }
}

//! Error types, one enum per layer. User-facing compile errors carry `path:line:col`.

use std::fmt;
use std::path::PathBuf;

/// A position in a rule file (1-based line and column, columns counted in characters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

/// A rule that does not compile: where, what, and a hint where one helps.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct CompileError {
    /// The rule file (or `<inline>`).
    pub path: PathBuf,
    /// Where in the file.
    pub pos: Pos,
    /// What is wrong, naming the offending text.
    pub message: String,
    /// A suggestion (`did you mean deviceName?`).
    pub hint: Option<String>,
    /// The source line, for display under the message.
    pub source_line: Option<String>,
}

impl fmt::Display for CompileError {
    /// `path:line:col: message[; hint]` — the contract of `sluice check`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.path.display(), self.pos.line, self.pos.col, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}

impl CompileError {
    /// The error with the offending source line and a caret under the column, rustc style.
    pub fn render(&self) -> String {
        let mut s = self.to_string();
        if let Some(line) = &self.source_line {
            let pad: String = line.chars().take(self.pos.col.saturating_sub(1)).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            s.push_str(&format!("\n    | {line}\n    | {pad}^"));
        }
        s
    }
}

/// An error evaluating a rule on one message. Never fatal: it becomes an error record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

impl EvalError {
    /// An error with a message.
    pub fn new(msg: impl Into<String>) -> Self {
        EvalError(msg.into())
    }
}

impl From<String> for EvalError {
    fn from(s: String) -> Self {
        EvalError(s)
    }
}

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid configuration.
    #[error("{path}:{line}:{col}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Line of the error.
        line: usize,
        /// Column of the error.
        col: usize,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{0}")]
    Value(String),
}

/// Source errors.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// I/O failure.
    #[error("source {source_name}: {error}")]
    Io {
        /// The source.
        source_name: String,
        /// The cause.
        error: std::io::Error,
    },
    /// Any other failure.
    #[error("source {source_name}: {message}")]
    Other {
        /// The source.
        source_name: String,
        /// What failed.
        message: String,
    },
}

/// Sink errors.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// I/O failure.
    #[error("sink {sink}: {error}")]
    Io {
        /// The sink.
        sink: String,
        /// The cause.
        error: std::io::Error,
    },
    /// Any other failure.
    #[error("sink {sink}: {message}")]
    Other {
        /// The sink.
        sink: String,
        /// What failed.
        message: String,
    },
}

/// Byte offset → 1-based line and column (in characters).
pub fn pos_of_offset(text: &str, offset: usize) -> Pos {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos { line, col: before[line_start..].chars().count() + 1 }
}

/// The text of 1-based line `line`.
pub fn line_text(text: &str, line: usize) -> Option<String> {
    text.lines().nth(line.checked_sub(1)?).map(str::to_string)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_lines_and_columns() {
        let t = "ab\ncdé\nf";
        assert_eq!(pos_of_offset(t, 0), Pos { line: 1, col: 1 });
        assert_eq!(pos_of_offset(t, 3), Pos { line: 2, col: 1 });
        assert_eq!(pos_of_offset(t, 7), Pos { line: 2, col: 4 });
        assert_eq!(pos_of_offset(t, 8), Pos { line: 3, col: 1 });
        assert_eq!(line_text(t, 2).as_deref(), Some("cdé"));
    }
}

/// Errors of the rule store (rules managed through the API or reloaded from the folder).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No rule has this name.
    #[error("no rule named `{0}`")]
    NotFound(String),
    /// A rule with this name exists already.
    #[error("a rule named `{0}` exists already (in {1})")]
    Conflict(String, PathBuf),
    /// The rule does not compile; nothing was changed.
    #[error("the rule does not compile ({} error(s)); nothing was changed", .0.len())]
    Invalid(Vec<CompileError>),
    /// The request itself is wrong (bad name, name mismatch…).
    #[error("{0}")]
    BadRequest(String),
    /// No rules folder is configured, so rules cannot be written.
    #[error("no rules folder is configured (rules.paths names files only), so rules cannot be created")]
    NoFolder,
    /// Reading or writing a rule file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

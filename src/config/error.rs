//! Errors of the config module: each problem names the file, the
//! line:column and the dotted key it is about.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// One problem found in a config file, located like a compiler diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    /// The dotted key the problem is about, e.g. `git.fleet.interval`.
    pub key: String,
    pub message: String,
}

/// Every problem of one config file, printed one per line as
/// `file:line:col: key: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        let noun = if count == 1 { "problem" } else { "problems" };
        write!(f, "{count} {noun} in {}", self.file.display())?;
        for problem in &self.problems {
            write!(
                f,
                "\n{}:{}:{}: {}: {}",
                self.file.display(),
                problem.line,
                problem.column,
                problem.key,
                problem.message
            )?;
        }
        Ok(())
    }
}

/// Errors of loading a config file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any config kedge accepts.
    #[error("config file {path} is larger than {limit} bytes, the most kedge reads")]
    TooLarge { path: PathBuf, limit: u64 },
    /// The file was read but is not a valid kedge config.
    #[error("{0}")]
    Invalid(Problems),
    /// The local file with fragments from `[agent] config_from` is not a
    /// valid config: the problems of each file in turn.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    InvalidLayers(Vec<Problems>),
}

/// Turns byte offsets of one file into 1-based line and column numbers.
pub(crate) struct Locator<'a> {
    text: &'a str,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self { text }
    }

    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |at| at + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    pub(crate) fn problem(
        &self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> Problem {
        let (line, column) = self.line_col(span.start);
        Problem {
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_columns() {
        let locator = Locator::new("a = 1\nbb = 2\n");
        assert_eq!(locator.line_col(0), (1, 1));
        assert_eq!(locator.line_col(6), (2, 1));
        assert_eq!(locator.line_col(11), (2, 6));
    }

    #[test]
    fn problems_print_one_per_line_with_file_and_position() {
        let problems = Problems {
            file: PathBuf::from("/etc/kedge/kedge.toml"),
            problems: vec![Problem {
                line: 3,
                column: 12,
                key: "git.fleet.interval".into(),
                message: "bad duration".into(),
            }],
        };
        assert_eq!(
            problems.to_string(),
            "1 problem in /etc/kedge/kedge.toml\n/etc/kedge/kedge.toml:3:12: git.fleet.interval: bad duration"
        );
    }
}

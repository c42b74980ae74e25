//! Errors a user sees. Each says what failed and what to do next; each maps to a documented exit code.

use crate::hsm::HsmError;
use std::path::Path;

/// Exit codes (README, "Exit codes").
pub mod exit {
    pub const OK: i32 = 0;
    /// A file could not be read or written, or another environment problem.
    pub const ENVIRONMENT: i32 = 1;
    /// The script, answers file or command line is invalid.
    pub const BAD_INPUT: i32 = 2;
    /// The ceremony was refused or aborted (dual control, pre-flight, a person's decision).
    pub const ABORTED: i32 = 3;
    /// The HSM (PKCS#11 module or token) failed.
    pub const HSM: i32 = 4;
    /// `keyrite verify` found a problem in the evidence bundle.
    pub const VERIFY_FAILED: i32 = 5;
    /// `keyrite verify`: the bundle is intact so far but INCOMPLETE (the run stopped early); it says
    /// which command finishes or closes the ceremony.
    pub const VERIFY_INCOMPLETE: i32 = 6;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Diagnostics were already printed, one per line.
    #[error("{file} has {}", crate::error::count(*.count, "error", "errors"))]
    Script { file: String, count: usize },
    #[error("{what} — {fix}")]
    Input { what: String, fix: String },
    #[error("{0}")]
    Hsm(#[from] HsmError),
    #[error("{what} — {fix}")]
    Environment { what: String, fix: String },
}

impl Error {
    pub fn input(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Input {
            what: what.into(),
            fix: fix.into(),
        }
    }

    pub fn env(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Error::Environment {
            what: what.into(),
            fix: fix.into(),
        }
    }

    /// An IO failure on `path`, phrased for the operator.
    pub fn io(action: &str, path: &Path, err: &std::io::Error) -> Self {
        let fix = match err.kind() {
            std::io::ErrorKind::NotFound => "check the path",
            std::io::ErrorKind::PermissionDenied => "check the file permissions",
            std::io::ErrorKind::AlreadyExists => {
                "choose a new output folder; evidence is never overwritten"
            }
            _ => "check the disk and the path, then retry",
        };
        Error::env(format!("could not {action} {}: {err}", path.display()), fix)
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Script { .. } | Error::Input { .. } => exit::BAD_INPUT,
            Error::Hsm(_) => exit::HSM,
            Error::Environment { .. } => exit::ENVIRONMENT,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// What failed and what to do, for the `error:` and `hint:` lines.
    pub fn parts(&self) -> (String, String) {
        match self {
            Error::Script { .. } => (
                self.to_string(),
                "fix the lines named above, then run `keyrite check` again".into(),
            ),
            Error::Input { what, fix } | Error::Environment { what, fix } => {
                (what.clone(), fix.clone())
            }
            Error::Hsm(e) if e.ckr.is_empty() => {
                (format!("{}: {}", e.function, e.what), e.fix.clone())
            }
            Error::Hsm(e) => (
                format!("{} returned {}: {}", e.function, e.ckr, e.what),
                e.fix.clone(),
            ),
        }
    }

    /// Print `error: …` and `hint: …` to stderr, each on its own lines, wrapped to the terminal.
    pub fn eprint(&self) {
        let (what, fix) = self.parts();
        eprint_problem(&what, &fix);
    }
}

/// Print an `error:` line and its `hint:` line to stderr, each wrapped to the terminal.
pub fn eprint_problem(what: &str, hint: &str) {
    let width = terminal_width();
    eprint!(
        "{}{}",
        wrap_labelled("error: ", what, width),
        wrap_labelled("hint: ", hint, width)
    );
}

/// Print a `warning:` line to stderr, wrapped to the terminal.
pub fn eprint_warning(text: &str) {
    eprint!("{}", wrap_labelled("warning: ", text, terminal_width()));
}

/// The width messages wrap to: `$COLUMNS` when set, else the terminal's when stderr is one; `None` (no
/// wrapping) when the output goes to a file or pipe, so logs keep one message per line.
pub fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal;
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
    {
        return Some(cols);
    }
    if !std::io::stderr().is_terminal() {
        return None;
    }
    ratatui::crossterm::terminal::size()
        .ok()
        .map(|(cols, _)| usize::from(cols))
}

/// `label` then `text`, wrapped at word boundaries to `width` characters; continuation lines are
/// indented by two spaces. Words longer than a line (paths, hashes) stay whole. Ends with a newline.
pub fn wrap_labelled(label: &str, text: &str, width: Option<usize>) -> String {
    const INDENT: &str = "  ";
    let Some(width) = width.filter(|w| *w > label.len() + 20) else {
        return format!("{label}{text}\n");
    };
    let mut out = String::new();
    let mut line = label.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        let len = line.chars().count();
        if !empty && len + 1 + word.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line = format!("{INDENT}{word}");
        } else {
            if !empty {
                line.push(' ');
            }
            line.push_str(word);
        }
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// `n` and the noun, in the singular for one: "1 step", "2 steps".
pub fn count(n: usize, singular: &str, plural: &str) -> String {
    if n == 1 {
        format!("1 {singular}")
    } else {
        format!("{n} {plural}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_wrap_at_words_with_a_hanging_indent() {
        let text = "could not read the answers file /tmp/answers.toml: No such file or directory";
        let wrapped = wrap_labelled("error: ", text, Some(40));
        assert_eq!(
            wrapped,
            "error: could not read the answers file\n  /tmp/answers.toml: No such file or\n  directory\n"
        );
        assert!(wrapped.lines().all(|l| l.chars().count() <= 40));
        assert_eq!(
            wrap_labelled("hint: ", "check the path", None),
            "hint: check the path\n"
        );
    }

    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(count(1, "step", "steps"), "1 step");
        assert_eq!(count(0, "step", "steps"), "0 steps");
        assert_eq!(count(10, "participant", "participants"), "10 participants");
    }
}

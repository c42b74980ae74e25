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
    #[error("{count} error(s) in {file}")]
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

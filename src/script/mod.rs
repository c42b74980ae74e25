//! The ceremony script: model, parsing with source locations, and the security-level policy.

pub mod action;
pub mod backup;
pub mod crl;
pub mod diagnostic;
pub mod keys;
pub mod model;
pub mod parse;
pub mod policy;
pub mod quorum;
pub mod signers;
pub mod signing;
pub mod tokens;

pub use backup::{BackupConfig, RestoreConfig};
pub use crl::{CrlKind, CrlProfile, RevocationReason, RevokedEntry};
pub use diagnostic::{has_errors, Diagnostic, KeyPath, Severity, Target};
pub use model::*;
pub use parse::{load, parse, LoadedScript, SUPPORTED_FORMATS};
pub use quorum::{QuorumCard, QuorumConfig, QuorumSet, ShareMedium};
pub use signing::{CaCertificate, ExistingKey, KeyQuery, NameSpec};
pub use tokens::{Activation, NamedHsm, TokenRef};

use std::path::Path;

/// Load a script and run the policy: what `keyrite check` shows. The script is returned when it parsed, even
/// if the policy found errors, so callers can still print it; they must not run it unless
/// `!has_errors(&diagnostics)`.
pub fn check_file(path: &Path) -> (Option<LoadedScript>, Vec<Diagnostic>) {
    match parse::load(path) {
        Ok(loaded) => {
            let diagnostics = policy::check(&loaded);
            (Some(loaded), diagnostics)
        }
        Err(diagnostics) => (None, diagnostics),
    }
}

/// [`check_file`] for `keyrite rehearse` (see [`policy::check_rehearsal`]).
pub fn check_file_rehearsal(path: &Path) -> (Option<LoadedScript>, Vec<Diagnostic>) {
    match parse::load(path) {
        Ok(loaded) => {
            let diagnostics = policy::check_rehearsal(&loaded);
            (Some(loaded), diagnostics)
        }
        Err(diagnostics) => (None, diagnostics),
    }
}

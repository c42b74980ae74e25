//! Everything that can be checked before the first step is checked before the bundle exists: a
//! refusal here leaves no --out folder behind, so there is never a half-made bundle to explain.
//!
//! Checked: the output folder is new, its disk has room, every attachment path given up front is a
//! readable file, the ceremony's PKCS#11 module loads and its token is present, and no key the
//! script generates already has its label on the token. (The personal cards and the signers CA are
//! checked by `personal_cards::open_all`, also before the bundle.) Custodian cards are not: they are
//! presented one by one at their step, often through a single reader.

use super::{Opener, RunMode};
use crate::error::{Error, Result};
use crate::evidence::bundle::Bundle;
use crate::script::{Action, Script};
use std::collections::BTreeMap;
use std::path::Path;

/// Free space the bundle's disk must have: a bundle is well under 1 MiB (logs, PEM files, a PDF);
/// the rest is the margin for a full-disk surprise halfway through.
pub const FREE_SPACE_NEEDED: u64 = 64 * 1024 * 1024;

const NOT_STARTED: &str = "nothing has started and no bundle was written";

pub(super) fn check(
    script: &Script,
    mode: &RunMode,
    out: &Path,
    attachments: &BTreeMap<String, String>,
    opener: &mut Opener<'_>,
) -> Result<()> {
    Bundle::refuse_used(out)?;
    check_free_space(out, FREE_SPACE_NEEDED)?;
    for (step, path) in attachments {
        check_attachment(step, Path::new(path))?;
    }
    check_token(script, mode, opener)
}

/// The nearest existing folder at or above `out` (where the bundle will be created) has `need`
/// bytes free for an unprivileged user.
pub fn check_free_space(out: &Path, need: u64) -> Result<()> {
    let absolute = std::path::absolute(out).map_err(|e| Error::io("resolve", out, &e))?;
    let Some(existing) = absolute.ancestors().find(|p| p.is_dir()) else {
        return Ok(());
    };
    let stat = rustix::fs::statvfs(existing).map_err(|e| {
        Error::env(
            format!(
                "could not read the free space of {}: {e}",
                existing.display()
            ),
            "check the disk that holds --out",
        )
    })?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free < need {
        return Err(Error::env(
            format!(
                "the disk of {} has {} MiB free; a ceremony needs at least {} MiB there; {NOT_STARTED}",
                existing.display(),
                free / (1024 * 1024),
                need / (1024 * 1024)
            ),
            "free space on that disk or choose --out on another one",
        ));
    }
    Ok(())
}

fn check_attachment(step: &str, path: &Path) -> Result<()> {
    let opened = std::fs::File::open(path).and_then(|f| f.metadata());
    match opened {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(Error::input(
            format!(
                "the file to attach at step \"{step}\", {}, is not a regular file; {NOT_STARTED}",
                path.display()
            ),
            "give the path of the file itself",
        )),
        Err(e) => Err(Error::input(
            format!(
                "the file to attach at step \"{step}\", {}, cannot be read: {e}; {NOT_STARTED}",
                path.display()
            ),
            "check the path (--attach STEP=PATH or the answers file's [attachments]) and the \
             file's permissions",
        )),
    }
}

/// Open the ceremony token without logging in: the module loads, the token is there, and the keys
/// to generate are not on it yet (public key objects are visible without a login). Skipped when the
/// first HSM step is a quorum split, which initialises a factory-fresh token itself.
/// Issue 12: every token of the script, each with the keys generated on it.
fn check_token(script: &Script, mode: &RunMode, opener: &mut Opener<'_>) -> Result<()> {
    for token in script.tokens() {
        let (module, selector) = match mode.tokens.get(token.name) {
            Some((m, t)) if !token.primary => (m.as_str(), t),
            _ => (mode.module.as_str(), &mode.token),
        };
        check_one_token(script, token.name, module, selector, opener)?;
    }
    Ok(())
}

fn check_one_token(
    script: &Script,
    name: &str,
    module: &str,
    selector: &crate::script::TokenSelector,
    opener: &mut Opener<'_>,
) -> Result<()> {
    let on_token = |s: &&crate::script::Step| script.step_token(s) == name;
    let first = script
        .steps
        .iter()
        .filter(on_token)
        .find(|s| s.action.uses_hsm());
    if first.is_none_or(|s| s.action == Action::SplitActivation) {
        return Ok(());
    }
    let mut hsm = opener(module, selector).map_err(|mut e| {
        e.fix = format!("{}; {NOT_STARTED}", e.fix);
        Error::Hsm(e)
    })?;
    let labels = script
        .steps
        .iter()
        .filter(on_token)
        .filter(|s| s.action == Action::GenerateKey)
        .filter_map(|s| s.key.as_deref());
    for label in labels {
        if hsm.label_exists(label).map_err(Error::Hsm)? {
            return Err(Error::Hsm(crate::hsm::HsmError::new(
                "C_FindObjects",
                format!(
                    "an object labelled \"{label}\", the key this ceremony generates, already \
                     exists on token \"{}\" (serial {}); {NOT_STARTED}",
                    hsm.identity().token_label,
                    hsm.identity().serial
                ),
                "choose a new key label in the script, or use a fresh token; an old key is removed \
                 only by a witnessed key-destruction ceremony",
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attachment_that_is_missing_or_a_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_attachment("video", &dir.path().join("missing.mp4")).unwrap_err();
        assert!(err.to_string().contains("cannot be read"), "{err}");
        let err = check_attachment("video", dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        std::fs::write(dir.path().join("v.mp4"), b"x").unwrap();
        check_attachment("video", &dir.path().join("v.mp4")).unwrap();
    }

    #[test]
    fn too_little_free_space_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("not-yet/out");
        check_free_space(&out, 1).unwrap();
        let err = check_free_space(&out, u64::MAX).unwrap_err();
        assert!(err.to_string().contains("MiB free"), "{err}");
    }
}

//! The `attach` action: hash a file kept outside the bundle (a video of the ceremony, a scanned
//! sign-in sheet) and record its SHA-256, size and description in the log, and so in the report.
//!
//! The file is read by keyrite itself, streamed through SHA-256; `sha256sum FILE` prints the same
//! hash. The file is not copied: recordings are large, and the hash binds them to the log.

use super::operator::{Notice, Operator};
use super::State;
use crate::error::Result;
use crate::evidence::events::{Record, RetryRecord};
use crate::script::Step;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// SHA-256 (lowercase hex) and size of the file at `path`.
#[cfg(test)]
fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    hash_file_with_progress(path, |_| {})
}

/// SHA-256 (lowercase hex) and size of the file at `path`, calling `progress` with the bytes read so
/// far after every block (recordings are gigabytes: the room sees that keyrite is still reading).
pub fn hash_file_with_progress(
    path: &Path,
    mut progress: impl FnMut(u64),
) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        progress(size);
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Ask for the path, hash the file and log it. A missing or unreadable file is asked again (each
/// retry logged); no path at all fails the step.
pub(super) fn perform(
    state: &mut State,
    step: &Step,
    operator: &mut dyn Operator,
) -> Result<std::result::Result<(), String>> {
    let description = step.attachment.as_deref().unwrap_or("attached file");
    let mut retries = 0u32;
    let (path, sha256, size) = loop {
        let Some(path) = operator.attachment(&step.id, description) else {
            return Ok(Err(format!(
                "no file was given for \"{description}\"; give it with `--attach {}=PATH` or in the \
                 answers file's [attachments]",
                step.id
            )));
        };
        let path = PathBuf::from(path);
        match hash_with_notices(&path, operator) {
            Ok((sha256, size)) => break (path, sha256, size),
            Err(e) => {
                retries += 1;
                // The log keeps why, not what was typed: a path box can receive a stray PIN.
                state.record(
                    Some(step.id.clone()),
                    vec![],
                    &Record::Retried(RetryRecord {
                        what: "attachment".into(),
                        attempt: retries,
                        reason: format!("the file given could not be read: {e}"),
                        sent_to_token: false,
                        token_reports: None,
                    }),
                )?;
                operator.notice(Notice::Warning {
                    text: &format!(
                        "could not read {} to attach it: {e}; check the path and that the file is \
                         readable, then give it again",
                        path.display()
                    ),
                });
            }
        }
    };
    let path = path.as_path();
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    operator.notice(Notice::Info {
        text: &format!("attached {file_name}: {size} bytes, SHA-256 {sha256}"),
    });
    state.record(
        Some(step.id.clone()),
        vec![],
        &Record::Attached {
            description: description.to_string(),
            file_name,
            sha256,
            size,
        },
    )?;
    Ok(Ok(()))
}

/// Hash `path`, telling the room every two seconds that keyrite is still reading.
fn hash_with_notices(path: &Path, operator: &mut dyn Operator) -> std::io::Result<(String, u64)> {
    let started = Instant::now();
    let mut shown = started;
    let what = format!("hashing {}", path.display());
    hash_file_with_progress(path, |_| {
        if shown.elapsed() >= Duration::from_secs(2) {
            shown = Instant::now();
            operator.notice(Notice::Working {
                what: &what,
                elapsed: started.elapsed(),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_like_sha256sum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc.txt");
        std::fs::write(&path, b"abc").unwrap();
        let (sha, size) = hash_file(&path).unwrap();
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(size, 3);
        assert!(hash_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn paths_come_from_the_command_line_first_then_the_answers_file() {
        use crate::driver::operator::{Answers, Headless, WithAttachments};
        let mut answers = Answers::default();
        answers
            .attachments
            .insert("video".into(), "/answers/video.mp4".into());
        answers
            .attachments
            .insert("sheet".into(), "/answers/sheet.pdf".into());
        let headless = Headless::new(answers, Vec::new());
        let mut op = WithAttachments {
            inner: Box::new(headless),
            paths: [("video".to_string(), "/cli/video.mp4".to_string())].into(),
        };
        assert_eq!(
            op.attachment("video", "v").as_deref(),
            Some("/cli/video.mp4")
        );
        assert_eq!(
            op.attachment("sheet", "s").as_deref(),
            Some("/answers/sheet.pdf")
        );
        assert_eq!(op.attachment("other", "o"), None);
    }
}

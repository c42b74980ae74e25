//! One keyrite at a time per bundle and per rehearsal environment: an exclusive flock(2) on the
//! folder itself, taken without waiting. The kernel drops it when the process ends, however it
//! ends (kill -9 and power loss included), so a stale lock never blocks the next keyrite.

use crate::error::{Error, Result};
use rustix::fs::{flock, FlockOperation};
use std::fs::File;
use std::path::Path;

/// Held while this keyrite uses the folder; released on drop or at exit.
#[derive(Debug)]
pub struct FolderLock {
    _folder: File,
}

impl FolderLock {
    /// Lock `folder` (which must exist); `what` names it for the message, e.g. "the --env folder".
    pub fn take(folder: &Path, what: &str) -> Result<FolderLock> {
        let file = File::open(folder).map_err(|e| Error::io("open", folder, &e))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(FolderLock { _folder: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::env(
                format!(
                    "{what} {} is in use by another keyrite that is still running",
                    folder.display()
                ),
                "wait until the other keyrite has finished (or stop it), then run this again; \
                 two keyrites on one folder would mix their evidence or lose token PINs",
            )),
            Err(e) => Err(Error::env(
                format!("could not lock {what} {}: {e}", folder.display()),
                "use a folder on a local disk that supports file locks",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = FolderLock::take(dir.path(), "the --env folder").unwrap();
        let err = FolderLock::take(dir.path(), "the --env folder").unwrap_err();
        assert!(
            err.to_string().contains("in use by another keyrite"),
            "{err}"
        );
        drop(first);
        FolderLock::take(dir.path(), "the --env folder").unwrap();
    }
}

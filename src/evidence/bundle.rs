//! The evidence bundle on disk: one folder per ceremony run. Every file is created exclusively and
//! fsynced, so evidence is never overwritten and survives a crash right after it was written.

use super::report::ArtifactRecord;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const SCRIPT_FILE: &str = "script.toml";
pub const LOG_FILE: &str = "audit.jsonl";
pub const REPORT_FILE: &str = "report.json";
/// report.pdf, rendered from report.json after it is written; `verify` re-renders and compares.
pub const REPORT_PDF_FILE: &str = "report.pdf";
pub const ARTIFACTS_DIR: &str = "artifacts";
/// Report signatures (signatures/<who>.<document>.p7s) and the signers CA.
pub const SIGNATURES_DIR: &str = "signatures";
/// The CA that issued the personal cards, as copied into the bundle.
pub const SIGNERS_CA_FILE: &str = "signatures/signers-ca.pem";
/// The report documents the required signers sign at the end, each only if the bundle has it
/// (report.json always does).
pub const SIGNED_DOCUMENTS: [&str; 2] = [REPORT_FILE, REPORT_PDF_FILE];

#[derive(Debug, Clone)]
pub struct Bundle {
    root: PathBuf,
}

impl Bundle {
    /// Create the bundle folder. It must not exist yet, or be empty: a second run never mixes its
    /// evidence into an earlier one.
    pub fn create(root: &Path) -> Result<Self> {
        Self::refuse_used(root)?;
        let artifacts = root.join(ARTIFACTS_DIR);
        fs::create_dir_all(&artifacts).map_err(|e| Error::io("create", &artifacts, &e))?;
        Ok(Bundle {
            root: root.to_path_buf(),
        })
    }

    /// An existing bundle (`keyrite abort` and `resume` go on writing into it).
    pub fn open(root: &Path) -> Self {
        Bundle {
            root: root.to_path_buf(),
        }
    }

    /// Refuse an output folder that already holds files: evidence is never overwritten.
    pub fn refuse_used(root: &Path) -> Result<()> {
        if root.exists() {
            let mut entries = fs::read_dir(root).map_err(|e| Error::io("read", root, &e))?;
            if entries.next().is_some() {
                return Err(Error::input(
                    format!("the output folder {} already holds files", root.display()),
                    "choose a new --out folder; keyrite never overwrites evidence",
                ));
            }
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Write a new file (relative path with `/`), fsync it, and return its hash record.
    pub fn write_new(&self, relative: &str, bytes: &[u8]) -> Result<ArtifactRecord> {
        self.write_new_with(relative, |w| w.write_all(bytes))
    }

    /// [`Self::write_new`] for contents that `write` produces piece by piece (report.pdf, written
    /// as its pages are laid out), hashed on the way.
    pub fn write_new_with(
        &self,
        relative: &str,
        write: impl FnOnce(&mut (dyn Write + Send)) -> std::io::Result<()>,
    ) -> Result<ArtifactRecord> {
        let written = self.write_new_unlisted(relative, write)?;
        let path = self.path(relative);
        sync_parent(&path).map_err(|e| Error::io("sync the folder of", &path, &e))?;
        Ok(written)
    }

    /// [`Self::write_new_with`] for one of several new files of one folder that nothing names
    /// before all are written: the file is fsynced, its folder's entry only by a later
    /// [`Self::sync_folder`], once for the batch. Until then a power cut can lose the file whole.
    pub fn write_new_unlisted(
        &self,
        relative: &str,
        write: impl FnOnce(&mut (dyn Write + Send)) -> std::io::Result<()>,
    ) -> Result<ArtifactRecord> {
        let path = self.path(relative);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, &e))?;
        let mut out = Hashing {
            out: std::io::BufWriter::with_capacity(1 << 16, file),
            sha: Sha256::new(),
            size: 0,
        };
        write(&mut out).map_err(|e| Error::io("write", &path, &e))?;
        let Hashing { out, sha, size } = out;
        let file = out
            .into_inner()
            .map_err(|e| Error::io("write", &path, e.error()))?;
        file.sync_all().map_err(|e| Error::io("sync", &path, &e))?;
        Ok(ArtifactRecord {
            path: relative.to_string(),
            sha256: hex::encode(sha.finalize()),
            size,
        })
    }

    /// Make the entries of the files written into folder `relative` ("" for the bundle's root)
    /// durable: fsync the folder.
    pub fn sync_folder(&self, relative: &str) -> Result<()> {
        let dir = self.path(relative);
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("sync", &dir, &e))
    }
}

/// A writer that hashes and counts what it passes on.
struct Hashing<W> {
    out: W,
    sha: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(data)?;
        self.sha.update(&data[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A new file's name lives in its folder: fsync the folder too, or a crash can lose the file.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_folder_with_files_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle::create(&dir.path().join("out")).unwrap();
        let rec = bundle.write_new("artifacts/a.pem", b"abc").unwrap();
        assert_eq!(
            rec.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(bundle.write_new("artifacts/a.pem", b"xyz").is_err());
        assert_eq!(fs::read(bundle.path("artifacts/a.pem")).unwrap(), b"abc");
        assert!(Bundle::create(bundle.root()).is_err());
    }
}

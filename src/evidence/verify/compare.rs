//! A bundle file compared with bytes verify produces (the rebuilt report.json, the re-rendered
//! report.pdf) as both stream past: neither the file nor a second copy of the expected bytes is held.

use crate::evidence::safe_read::{BundleDir, ReadError};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

/// The file's SHA-256 (lowercase hex) and whether its bytes are exactly the ones written.
pub(super) struct Compared {
    pub sha256: String,
    pub same: bool,
}

/// Where the expected bytes are written: a buffer in front of the comparison.
pub(super) type Sink<'a> = io::BufWriter<&'a mut Against<io::Take<std::fs::File>>>;

/// Read `rel` (a regular file inside the bundle, at most `limit` bytes) in step with what `write`
/// writes. Without `write`, the file is only hashed (and `same` is false).
pub(super) fn file(
    bundle: &BundleDir,
    rel: &str,
    limit: u64,
    write: Option<impl FnOnce(&mut Sink) -> io::Result<()>>,
) -> Result<Compared, ReadError> {
    let file = bundle.open_file(rel, limit)?;
    let mut against = Against {
        file: file.take(limit.saturating_add(1)),
        sha: Sha256::new(),
        same: write.is_some(),
        buf: Vec::new(),
        read: 0,
        error: None,
    };
    if let Some(write) = write {
        let mut buffered = io::BufWriter::with_capacity(1 << 16, &mut against);
        let written = write(&mut buffered).and_then(|()| buffered.flush());
        drop(buffered);
        if let Some(e) = against.error.take() {
            return Err(ReadError::Io(e));
        }
        // The expected bytes could not be made (an encoding error): they differ.
        if written.is_err() {
            against.same = false;
        }
    }
    // The rest of the file, if any, is a difference, and is hashed too.
    let mut rest = vec![0u8; 1 << 16];
    loop {
        let n = match against.file.read(&mut rest) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        against.same = false;
        against.sha.update(&rest[..n]);
        against.read += n as u64;
    }
    if against.read > limit {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(Compared {
        sha256: hex::encode(against.sha.finalize()),
        same: against.same,
    })
}

/// A writer that reads as many bytes from the file as it is given and compares them.
pub(super) struct Against<R> {
    file: R,
    sha: Sha256,
    same: bool,
    buf: Vec<u8>,
    read: u64,
    /// A read error of the file (kept apart from the writer's own errors).
    error: Option<io::Error>,
}

impl<R: Read> Write for Against<R> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.same {
            self.buf.resize(data.len(), 0);
            let mut got = 0;
            while got < data.len() {
                match self.file.read(&mut self.buf[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.error = Some(e);
                        self.same = false;
                        return Ok(data.len());
                    }
                }
            }
            self.sha.update(&self.buf[..got]);
            self.read += got as u64;
            self.same = self.buf[..got] == *data;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer that only hashes (a rendering's SHA-256, named when it differs from the file).
pub(super) struct Hashing(pub Sha256);

impl Write for Hashing {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.update(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_shorter_longer_and_different_files_are_told_apart_and_hashed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = BundleDir::open(dir.path()).unwrap();
        let expected = b"abcdef".repeat(50_000);
        let write = |w: &mut Sink| {
            for chunk in expected.chunks(7) {
                w.write_all(chunk)?;
            }
            Ok(())
        };
        let mut longer = expected.clone();
        longer.push(b'\n');
        let mut changed = expected.clone();
        changed[123_456] ^= 1;
        for (bytes, same) in [
            (&expected, true),
            (&expected[..expected.len() - 1].to_vec(), false),
            (&longer, false),
            (&changed, false),
        ] {
            std::fs::write(dir.path().join("f"), bytes).unwrap();
            let got = file(&bundle, "f", 1 << 20, Some(write)).unwrap();
            assert_eq!(got.same, same);
            assert_eq!(got.sha256, hex::encode(Sha256::digest(bytes)));
            let hashed = file(
                &bundle,
                "f",
                1 << 20,
                None::<fn(&mut Sink) -> io::Result<()>>,
            )
            .unwrap();
            assert!(!hashed.same);
            assert_eq!(hashed.sha256, got.sha256);
        }
        assert!(matches!(
            file(&bundle, "f", 1000, Some(write)),
            Err(ReadError::TooLarge(1000))
        ));
    }
}

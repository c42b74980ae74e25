//! rehearsal.toml's text as this process last read or wrote it, with what it parses to. A
//! rehearsed ceremony notes its records one at a time (a split's stages, a key, a certificate),
//! each a read, an edit and a write of the file, and parsing it again each time was about a
//! millisecond of a B1b rehearsal (docs/performance.md). The file is still read every time: only
//! text equal to the kept text, byte for byte, takes the kept result.

use super::RehearsalFile;
use crate::error::{Error, Result};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use zeroize::Zeroizing;

/// Text and result. The text holds the throw-away tokens' PINs, which the rehearsal's PIN source
/// holds for the whole run anyway; it is zeroised when replaced.
pub(super) struct Kept(Mutex<Option<(Zeroizing<String>, RehearsalFile)>>);

/// The process's rehearsal.toml.
pub(super) static LAST: Kept = Kept::new();

impl Kept {
    const fn new() -> Self {
        Kept(Mutex::new(None))
    }

    /// The file at `path`, `parse`d unless its text is the kept text.
    pub fn read(
        &self,
        path: &Path,
        parse: impl FnOnce(&str) -> Result<RehearsalFile>,
    ) -> Result<RehearsalFile> {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io("read", path, &e))?);
        if let Some((kept, file)) = self.lock().as_ref() {
            if *kept == text {
                return Ok(file.clone());
            }
        }
        let file = parse(&text)?;
        self.wrote(text, &file);
        Ok(file)
    }

    /// `text`, which encodes `file`, is now the file's.
    pub fn wrote(&self, text: Zeroizing<String>, file: &RehearsalFile) {
        *self.lock() = Some((text, file.clone()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Zeroizing<String>, RehearsalFile)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(text: &str) -> Result<RehearsalFile> {
        Ok(RehearsalFile {
            note: text.into(),
            ..RehearsalFile::default()
        })
    }

    #[test]
    fn only_the_same_text_takes_the_kept_result() {
        let kept = Kept::new();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rehearsal.toml");
        std::fs::write(&path, "first").unwrap();
        assert_eq!(kept.read(&path, note).unwrap().note, "first");
        let again = kept.read(&path, |_| panic!("parsed the text it holds"));
        assert_eq!(again.unwrap().note, "first");
        // Written by this process: its result, without a parse.
        std::fs::write(&path, "second").unwrap();
        kept.wrote(Zeroizing::new("second".into()), &note("second").unwrap());
        let again = kept.read(&path, |_| panic!("parsed the text it wrote"));
        assert_eq!(again.unwrap().note, "second");
        // Changed by anything else, even to the same length at once: parsed.
        std::fs::write(&path, "SECOND").unwrap();
        assert_eq!(kept.read(&path, note).unwrap().note, "SECOND");
        // A parse error is the caller's, and nothing wrong is kept.
        std::fs::write(&path, "broken").unwrap();
        let err = kept.read(&path, |_| Err(Error::input("bad", "fix it")));
        assert!(err.is_err());
        assert_eq!(kept.read(&path, note).unwrap().note, "broken");
        // A missing file is an error, whatever is kept.
        std::fs::remove_file(&path).unwrap();
        assert!(kept.read(&path, note).is_err());
    }
}

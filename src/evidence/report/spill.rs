//! A deferred report's confirmations, kept by the first pass in a compact temporary file so that
//! report.json's encoding and report.pdf's rendering take them from there instead of reading,
//! hashing, scanning and parsing the whole log again (about a fifth of a long verify's CPU,
//! docs/performance.md). Memory stays flat: a confirmation is about 40 bytes on disk and none is
//! held. The file is unlinked from the start (`tempfile::tempfile`, in `$TMPDIR`), so nothing
//! is left behind; readers read it at their own offsets.
//!
//! It is only a shortcut: a temporary file that cannot be made or written (no `$TMPDIR`, a full
//! disk) leaves the spill off, and the confirmations are read from the log again as before.
//! Every confirmation is the one the first pass parsed from a chain-checked line, so the filled
//! report is the one a full build makes (report/tests.rs compares).

use super::Confirmation;
use crate::script::Role;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// The first pass writing confirmations in log order.
#[derive(Debug)]
pub struct Writer {
    out: BufWriter<File>,
    names: Names,
    written: u64,
}

/// The strings confirmations repeat (people, their roles' words), each kept once and written as
/// an index. A role is written as its index in [`Role::ALL`].
#[derive(Debug, Default)]
struct Names {
    index: HashMap<String, u32>,
    list: Vec<String>,
}

impl Names {
    fn of(&mut self, name: &str) -> u32 {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        self.index.insert(name.to_string(), i);
        self.list.push(name.to_string());
        i
    }
}

impl Writer {
    /// A new temporary file, or why there is none.
    pub fn new() -> io::Result<Self> {
        Ok(Writer {
            out: BufWriter::with_capacity(1 << 16, tempfile::tempfile()?),
            names: Names::default(),
            written: 0,
        })
    }

    /// Append one confirmation.
    pub fn push(
        &mut self,
        person: &str,
        role: Role,
        counts_for: &str,
        time: &str,
        seq: u64,
    ) -> io::Result<()> {
        let time_len = u32::try_from(time.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a time too long"))?;
        // Every role is in Role::ALL; one that were not is refused, never written as another.
        let role = Role::ALL
            .iter()
            .position(|r| *r == role)
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "a role outside Role::ALL")
            })?;
        let (person, counts_for) = (self.names.of(person), self.names.of(counts_for));
        for n in [person, role, counts_for, time_len] {
            self.out.write_all(&n.to_le_bytes())?;
        }
        self.out.write_all(&seq.to_le_bytes())?;
        self.out.write_all(time.as_bytes())?;
        self.written += 1;
        Ok(())
    }

    /// The file for reading, once everything is on it.
    pub fn finish(self) -> io::Result<Arc<Spill>> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        Ok(Arc::new(Spill {
            file,
            names: self.names,
            count: self.written,
        }))
    }
}

/// The written file and the strings its indices name.
#[derive(Debug)]
pub struct Spill {
    file: File,
    names: Names,
    count: u64,
}

/// One reader of a spill, at its own offset.
pub struct Reader {
    from: BufReader<At>,
    read: u64,
}

/// The file read at an offset of its own (`pread`), so readers on two threads never share one.
struct At {
    spill: Arc<Spill>,
    offset: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.spill.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl Reader {
    pub fn new(spill: &Arc<Spill>) -> Self {
        let at = At {
            spill: Arc::clone(spill),
            offset: 0,
        };
        Reader {
            from: BufReader::with_capacity(1 << 16, at),
            read: 0,
        }
    }

    /// The next confirmation; `Ok(None)` after the last.
    pub fn next_confirmation(&mut self) -> io::Result<Option<Confirmation>> {
        if self.is_done() {
            return Ok(None);
        }
        let mut head = [0u8; 24];
        self.from.read_exact(&mut head)?;
        let word = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&head[i * 4..i * 4 + 4]);
            u32::from_le_bytes(b) as usize
        };
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&head[16..24]);
        let mut time = vec![0u8; word(3)];
        self.from.read_exact(&mut time)?;
        let names = &self.from.get_ref().spill.names;
        let name =
            |i: usize| {
                names.list.get(i).cloned().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "a name the spill lacks")
                })
            };
        let role = Role::ALL
            .get(word(1))
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a role the spill lacks"))?;
        let time = String::from_utf8(time)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a time not UTF-8"))?;
        self.read += 1;
        Ok(Some(Confirmation {
            person: name(word(0))?,
            role,
            counts_for: name(word(2))?,
            time,
            log_seq: u64::from_le_bytes(seq),
        }))
    }

    /// Were all confirmations read?
    pub fn is_done(&self) -> bool {
        self.read == self.from.get_ref().spill.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_come_back_as_written_to_every_reader() {
        let all: Vec<Confirmation> = (0..3000u64)
            .map(|i| Confirmation {
                person: format!("Op {}", i % 7),
                role: if i % 3 == 0 {
                    Role::Operator
                } else {
                    Role::IndependentWitness
                },
                counts_for: ["dual-control", "witness"][(i % 2) as usize].into(),
                time: format!("2026-12-03T11:{:02}:{:02}.{i}Z", i % 60, i % 59),
                log_seq: i * 3 + 1,
            })
            .collect();
        let mut w = Writer::new().unwrap();
        for c in &all {
            w.push(&c.person, c.role, &c.counts_for, &c.time, c.log_seq)
                .unwrap();
        }
        let spill = w.finish().unwrap();
        let mut a = Reader::new(&spill);
        let mut b = Reader::new(&spill);
        // Each reader at its own offset: the second starts at the first confirmation.
        for c in &all {
            assert_eq!(a.next_confirmation().unwrap().as_ref(), Some(c));
            assert!(!a.is_done() || c == all.last().unwrap());
        }
        for c in &all {
            assert_eq!(b.next_confirmation().unwrap().as_ref(), Some(c));
        }
        assert!(a.is_done() && b.is_done());
        assert_eq!(a.next_confirmation().unwrap(), None);
    }
}

//! Reading an evidence bundle that may be hostile: only regular files inside the bundle, never
//! through a symbolic link, never a FIFO or a device, and never more than a documented number of
//! bytes (docs/evidence-format.md, "Limits").
//!
//! Every path is walked from the bundle folder one component at a time with `openat(O_NOFOLLOW)`,
//! so neither the file nor a folder on the way can lead out of the bundle. The entry is looked at
//! with `lstat` before it is opened (a FIFO or a device is never opened at all), opened with
//! `O_NONBLOCK` (a FIFO swapped in after the look does not block the open), and the opened handle
//! is checked again with `fstat`.

use rustix::fs::{openat, statat, AtFlags, Dir, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// audit.jsonl: one line (one entry) at most 1 MiB; the whole log at most 4 GiB.
pub const LOG_LINE_LIMIT: u64 = 1 << 20;
pub const LOG_LIMIT: u64 = 4 << 30;
/// report.json and report.pdf: 256 MiB each.
pub const REPORT_LIMIT: u64 = 256 << 20;
/// script.toml: 1 MiB, as `keyrite check` reads it.
pub const SCRIPT_LIMIT: u64 = 1 << 20;
/// Each file in artifacts/ and signatures/: 16 MiB.
pub const FILE_LIMIT: u64 = 16 << 20;

/// What was wrong with a bundle entry; the caller names the file.
#[derive(Debug)]
pub enum ReadError {
    Missing,
    /// A symbolic link, here or in a folder on the way.
    Symlink,
    /// Not a regular file: "a FIFO (named pipe)", "a character device", …
    NotRegular(&'static str),
    /// A folder on the way is not a folder.
    NotFolder,
    TooLarge(u64),
    /// One line of the log is longer than [`LOG_LINE_LIMIT`] (1-based line number).
    LineTooLong(usize),
    Io(std::io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Missing => write!(f, "missing"),
            ReadError::Symlink => write!(
                f,
                "is a symbolic link (or lies behind one): a bundle holds only regular files, \
                 and verify never follows a link"
            ),
            ReadError::NotRegular(kind) => write!(
                f,
                "is {kind}, not a regular file: a bundle holds only regular files"
            ),
            ReadError::NotFolder => write!(f, "a folder on its path is not a folder"),
            ReadError::TooLarge(limit) => write!(
                f,
                "is larger than {limit} bytes, the limit for this file (docs/evidence-format.md)"
            ),
            ReadError::LineTooLong(line) => write!(
                f,
                "line {line} is longer than {LOG_LINE_LIMIT} bytes, the limit for one log entry"
            ),
            ReadError::Io(e) => write!(f, "unreadable: {e}"),
        }
    }
}

impl From<Errno> for ReadError {
    fn from(e: Errno) -> Self {
        match e {
            Errno::NOENT => ReadError::Missing,
            Errno::LOOP => ReadError::Symlink,
            Errno::NOTDIR => ReadError::NotFolder,
            other => ReadError::Io(other.into()),
        }
    }
}

/// The kind of a directory entry, as `lstat` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Folder,
    Other(&'static str),
}

fn describe(t: FileType) -> Kind {
    match t {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Folder,
        FileType::Symlink => Kind::Other("a symbolic link"),
        FileType::Fifo => Kind::Other("a FIFO (named pipe)"),
        FileType::CharacterDevice => Kind::Other("a character device"),
        FileType::BlockDevice => Kind::Other("a block device"),
        FileType::Socket => Kind::Other("a socket"),
        _ => Kind::Other("a special file"),
    }
}

fn check_kind(kind: Kind) -> Result<(), ReadError> {
    match kind {
        Kind::File => Ok(()),
        Kind::Folder => Err(ReadError::NotRegular("a folder")),
        Kind::Other("a symbolic link") => Err(ReadError::Symlink),
        Kind::Other(what) => Err(ReadError::NotRegular(what)),
    }
}

/// An open bundle folder; every path below it is relative, with `/` between components.
#[derive(Debug)]
pub struct BundleDir {
    fd: OwnedFd,
    root: PathBuf,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl BundleDir {
    /// Open the folder the user named (the path itself may be a link; what lies inside may not).
    pub fn open(root: &Path) -> Result<Self, ReadError> {
        let fd = openat(
            CWD,
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(BundleDir {
            fd,
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder holding `rel`'s last component, and that component. Refuses `..`, `.` and empty
    /// components: a name from a report can never climb out.
    fn parent_of<'a>(&self, rel: &'a str) -> Result<(Option<OwnedFd>, &'a str), ReadError> {
        let mut parts: Vec<&str> = rel.split('/').collect();
        let name = parts.pop().unwrap_or_default();
        let plain = |p: &str| !p.is_empty() && p != "." && p != "..";
        if !plain(name) || !parts.iter().all(|p| plain(p)) {
            return Err(ReadError::Io(std::io::Error::other(
                "not a plain relative path",
            )));
        }
        let mut dir: Option<OwnedFd> = None;
        for part in parts {
            let next = match &dir {
                None => openat(&self.fd, part, DIR_FLAGS, Mode::empty()),
                Some(d) => openat(d, part, DIR_FLAGS, Mode::empty()),
            };
            dir = Some(next.map_err(|e| self.why_not_a_folder(dir.as_ref(), part, e))?);
        }
        Ok((dir, name))
    }

    /// A folder on the way did not open: say whether it is a link (Linux answers ENOTDIR or ELOOP).
    fn why_not_a_folder(&self, dir: Option<&OwnedFd>, part: &str, e: Errno) -> ReadError {
        let stat = match dir {
            None => statat(&self.fd, part, AtFlags::SYMLINK_NOFOLLOW),
            Some(d) => statat(d, part, AtFlags::SYMLINK_NOFOLLOW),
        };
        match stat.map(|s| FileType::from_raw_mode(s.st_mode)) {
            Ok(FileType::Symlink) => ReadError::Symlink,
            _ => e.into(),
        }
    }

    /// What `rel` is, without following a link; `None` when it does not exist.
    pub fn kind(&self, rel: &str) -> Result<Option<Kind>, ReadError> {
        let (dir, name) = self.parent_of(rel)?;
        let stat = match &dir {
            None => statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW),
            Some(d) => statat(d, name, AtFlags::SYMLINK_NOFOLLOW),
        };
        match stat {
            Ok(s) => Ok(Some(describe(FileType::from_raw_mode(s.st_mode)))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Open `rel` for reading if it is a regular file inside the bundle no larger than `limit`.
    pub fn open_file(&self, rel: &str, limit: u64) -> Result<File, ReadError> {
        match self.kind(rel)? {
            None => return Err(ReadError::Missing),
            Some(kind) => check_kind(kind)?,
        }
        let (dir, name) = self.parent_of(rel)?;
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match &dir {
            None => openat(&self.fd, name, flags, Mode::empty()),
            Some(d) => openat(d, name, flags, Mode::empty()),
        }?;
        let stat = rustix::fs::fstat(&fd)?;
        check_kind(describe(FileType::from_raw_mode(stat.st_mode)))?;
        if u64::try_from(stat.st_size).unwrap_or(u64::MAX) > limit {
            return Err(ReadError::TooLarge(limit));
        }
        Ok(File::from(fd))
    }

    /// The bytes of `rel` (see [`Self::open_file`]); a file that grows past `limit` while being
    /// read is refused too.
    pub fn read(&self, rel: &str, limit: u64) -> Result<Vec<u8>, ReadError> {
        let file = self.open_file(rel, limit)?;
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(ReadError::Io)?;
        if bytes.len() as u64 > limit {
            return Err(ReadError::TooLarge(limit));
        }
        Ok(bytes)
    }

    /// The audit log, line by line: no line longer than [`LOG_LINE_LIMIT`], the whole no larger
    /// than [`LOG_LIMIT`]. The bytes are returned as read, including a last line without newline.
    pub fn read_log(&self, rel: &str) -> Result<Vec<u8>, ReadError> {
        let mut lines = self.open_log(rel)?;
        let (mut bytes, mut line) = (Vec::new(), Vec::new());
        while lines.next_line(&mut line)? {
            bytes.extend_from_slice(&line);
        }
        Ok(bytes)
    }

    /// The audit log as a stream of lines under the same limits as [`Self::read_log`], for a
    /// reader that holds one line at a time.
    pub fn open_log(&self, rel: &str) -> Result<LogLines, ReadError> {
        let file = self.open_file(rel, LOG_LIMIT)?;
        Ok(LogLines {
            reader: BufReader::with_capacity(1 << 16, file.take(LOG_LIMIT.saturating_add(1))),
            line: 0,
            total: 0,
        })
    }

    /// The names in folder `rel` (`""` for the bundle root) with their kinds, sorted. The folder
    /// itself must be a real folder inside the bundle.
    pub fn list(&self, rel: &str) -> Result<Vec<(String, Kind)>, ReadError> {
        let fd = if rel.is_empty() {
            openat(&self.fd, ".", DIR_FLAGS, Mode::empty())?
        } else {
            let (dir, name) = self.parent_of(rel)?;
            match &dir {
                None => openat(&self.fd, name, DIR_FLAGS, Mode::empty()),
                Some(d) => openat(d, name, DIR_FLAGS, Mode::empty()),
            }
            .map_err(|e| self.why_not_a_folder(dir.as_ref(), name, e))?
        };
        let mut names = Vec::new();
        for entry in Dir::read_from(&fd)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            let kind = match statat(&fd, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(s) => describe(FileType::from_raw_mode(s.st_mode)),
                Err(_) => Kind::Other("unreadable"),
            };
            names.push((name, kind));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(names)
    }
}

/// The lines of audit.jsonl, read one at a time ([`BundleDir::open_log`]).
pub struct LogLines {
    reader: BufReader<std::io::Take<File>>,
    /// Lines read so far.
    line: usize,
    /// Bytes read so far.
    total: u64,
}

impl LogLines {
    /// The next line into `buf` (cleared first), with its newline when it has one; `Ok(false)` at
    /// the end of the file. A line over [`LOG_LINE_LIMIT`] or a log over [`LOG_LIMIT`] is an error.
    pub fn next_line(&mut self, buf: &mut Vec<u8>) -> Result<bool, ReadError> {
        buf.clear();
        let n = (&mut self.reader)
            .take(LOG_LINE_LIMIT.saturating_add(1))
            .read_until(b'\n', buf)
            .map_err(ReadError::Io)?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        let ended = buf.last() == Some(&b'\n');
        if (buf.len() - usize::from(ended)) as u64 > LOG_LINE_LIMIT {
            return Err(ReadError::LineTooLong(self.line));
        }
        self.total += n as u64;
        if self.total > LOG_LIMIT {
            return Err(ReadError::TooLarge(LOG_LIMIT));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests;

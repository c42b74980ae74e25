//! The log pass on two threads. A reader thread reads audit.jsonl under safe_read's limits, hashes
//! every byte for the whole-file digest and checks the chain; the calling thread gets the checked
//! lines in batches and feeds them, parsed, to the checks. The reader does everything that decides
//! a finding of the log itself (read errors, the chain, a torn or unterminated last line), in the
//! order the one-thread pass did, and keeps its state in [`Lines`] for the caller to read after the
//! join; the consumer only sees intact entries, in log order, so neither can change the other's
//! findings. Memory stays flat: at most [`IN_FLIGHT`] batches queued, their buffers handed back.

use crate::evidence::log::canonical::Spans;
use crate::evidence::log::{self, AuditEntry, ChainCheck, ChainError};
use crate::evidence::report::{parse_checked, Parsed};
use crate::evidence::safe_read::{LogLines, ReadError};
use sha2::{Digest, Sha256};
use std::ops::Range;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

/// Batches filled but not yet taken: the reader runs this far ahead of the consumer at most.
const IN_FLIGHT: usize = 2;

/// When a batch is handed over: at this many lines or bytes, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub(in crate::evidence::verify) struct Batching {
    pub lines: usize,
    pub bytes: usize,
}

impl Default for Batching {
    fn default() -> Self {
        // A few hundred KB: large enough that the hand-over costs nothing per line, small enough
        // that the queued batches do not show in the peak RSS.
        Batching {
            lines: 2048,
            bytes: 256 << 10,
        }
    }
}

/// The lines of the log: the intact entries one by one; after a break in the chain, or the torn
/// last line, [`Lines::drain`] reads the rest of the file (its limits still apply).
pub(super) struct Lines {
    lines: LogLines,
    buf: Vec<u8>,
    /// The last intact line, once `buf` has moved on (`keep`: `buf` still holds it).
    last: Vec<u8>,
    keep: bool,
    /// Every byte read, in order.
    pub sha: Sha256,
    chain: ChainCheck,
    /// Lines read that end with a newline.
    pub terminated: usize,
    pub broken: Option<ChainError>,
    pub tail: Option<Vec<u8>>,
}

impl Lines {
    pub fn new(lines: LogLines) -> Self {
        Lines {
            lines,
            buf: Vec::with_capacity(4096),
            last: Vec::with_capacity(4096),
            keep: false,
            sha: Sha256::new(),
            chain: ChainCheck::default(),
            terminated: 0,
            broken: None,
            tail: None,
        }
    }

    /// The next intact entry, checked in place; `None` at the end, at a torn last line or at a
    /// break in the chain.
    fn next(&mut self) -> Result<Option<log::Checked<'_>>, ReadError> {
        if self.broken.is_some() || !self.read_line()? {
            return Ok(None);
        }
        // Split on LF only: a CR left in a line fails the canonical-form check.
        let line = &self.buf[..self.buf.len() - 1];
        match self.chain.check(line) {
            Ok(checked) => {
                self.keep = true;
                Ok(Some(checked))
            }
            Err(e) => {
                self.broken = Some(e);
                Ok(None)
            }
        }
    }

    /// Read the next line into `buf`; true when it is a whole (terminated) line.
    fn read_line(&mut self) -> Result<bool, ReadError> {
        if std::mem::take(&mut self.keep) {
            std::mem::swap(&mut self.buf, &mut self.last);
        }
        if !self.lines.next_line(&mut self.buf)? {
            return Ok(false);
        }
        self.sha.update(&self.buf);
        if self.buf.last() != Some(&b'\n') {
            self.tail = Some(std::mem::take(&mut self.buf));
            return Ok(false);
        }
        self.terminated += 1;
        Ok(true)
    }

    /// Read what is left of the file after the last entry returned.
    fn drain(&mut self) -> Result<(), ReadError> {
        while self.tail.is_none() && self.read_line()? {}
        Ok(())
    }

    /// The last intact line, without its newline.
    pub fn last_line(&self) -> &[u8] {
        let line = if self.keep { &self.buf } else { &self.last };
        line.strip_suffix(b"\n").unwrap_or(line)
    }
}

/// Read `lines` to the end on a second thread while `consume` takes its intact entries here. A
/// read error, once the reader stops at it, is the answer whatever `consume` made of the entries
/// before it (it wins over everything, as in the one-thread pass).
pub(super) fn pipelined<T>(
    lines: &mut Lines,
    batching: Batching,
    consume: impl FnOnce(&mut Entries) -> T,
) -> Result<T, ReadError> {
    let (tx, rx) = sync_channel(IN_FLIGHT);
    let (back, recycled) = channel();
    std::thread::scope(|s| {
        let reader = s.spawn(move || produce(lines, batching, tx, recycled));
        let mut entries = Entries {
            rx,
            back,
            batch: Batch::default(),
            at: 0,
        };
        let out = consume(&mut entries);
        // Whatever `consume` left unread, so the reader finishes the file (drain, limits, digest).
        while entries.rx.recv().is_ok() {}
        match reader.join() {
            Ok(read) => read.map(|()| out),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The reader thread: fill batches (reusing those handed back) until the entries end, then read
/// the rest of the file as the one-thread pass did.
fn produce(
    lines: &mut Lines,
    batching: Batching,
    tx: SyncSender<Batch>,
    recycled: Receiver<Batch>,
) -> Result<(), ReadError> {
    let mut more = true;
    while more {
        let mut batch = recycled.try_recv().unwrap_or_default();
        batch.text.clear();
        batch.items.clear();
        // At least one line a batch, whatever `batching` says.
        loop {
            let Some(checked) = lines.next()? else {
                more = false;
                break;
            };
            batch.push(checked);
            if batch.items.len() >= batching.lines || batch.text.len() >= batching.bytes {
                break;
            }
        }
        if !batch.items.is_empty() && tx.send(batch).is_err() {
            // The consumer is gone: it panicked, and the scope passes its panic on.
            return Ok(());
        }
    }
    lines.drain()
}

/// Checked lines copied one after another into `text`, with where each is and what it holds.
#[derive(Default)]
struct Batch {
    text: String,
    items: Vec<Item>,
}

struct Item {
    /// The line in `text` (empty for an entry the chain check parsed).
    line: Range<usize>,
    /// Taken when the consumer reaches it.
    entry: Option<Entry>,
}

/// A [`log::Checked`] without the borrow of the reader's line buffer.
enum Entry {
    Scanned(Spans),
    Parsed(Box<AuditEntry>),
}

impl Batch {
    fn push(&mut self, checked: log::Checked) {
        let start = self.text.len();
        let entry = match checked {
            log::Checked::Scanned(line) => {
                self.text.push_str(line.line);
                Entry::Scanned(line.spans())
            }
            log::Checked::Parsed(entry) => Entry::Parsed(entry),
        };
        self.items.push(Item {
            line: start..self.text.len(),
            entry: Some(entry),
        });
    }
}

/// The consumer's side: the intact entries in log order, each parsed.
pub(super) struct Entries {
    rx: Receiver<Batch>,
    back: Sender<Batch>,
    batch: Batch,
    at: usize,
}

impl Entries {
    /// The next intact entry and its parsed event; `None` once the reader has stopped.
    pub fn next(&mut self) -> Option<(log::Checked<'_>, Result<Parsed, String>)> {
        while self.at == self.batch.items.len() {
            let done = std::mem::replace(&mut self.batch, self.rx.recv().ok()?);
            // The reader may have finished and gone: then the buffer is simply dropped.
            let _ = self.back.send(done);
            self.at = 0;
        }
        let Batch { text, items } = &mut self.batch;
        let item = &mut items[self.at];
        self.at += 1;
        let checked = match item.entry.take()? {
            Entry::Scanned(spans) => log::Checked::Scanned(spans.line(&text[item.line.clone()])),
            Entry::Parsed(entry) => log::Checked::Parsed(entry),
        };
        let parsed = parse_checked(&checked);
        Some((checked, parsed))
    }
}

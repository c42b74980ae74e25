//! Each step's confirmations read from the log again while a deferred report (builder.rs) is
//! encoded as report.json or rendered as report.pdf: one step's confirmations are held at a time.
//!
//! A [`Filler`] reads audit.jsonl from the start, hashes every byte it reads, and hands out the
//! `confirmed` entries in log order, `counts[i]` of them to step `i`. That is the report the
//! builder would have made, provided the confirmations named the steps in plan order
//! ([`Deferred::in_order`]; otherwise the caller rebuilds the report in full) and the file is the
//! one the first pass checked: [`Filler::finish`] compares the SHA-256 of the whole file with
//! the first pass's.
//!
//! The filler is installed for the duration of one encoding or rendering ([`with_filler`]); the
//! report's serialisation and the PDF's sections ask it for each step ([`serialize_steps`],
//! [`filled`]). Without one installed they use the steps as they are.

use super::shared::Tap;
use super::{spill, Confirmation, Deferred, StepRecord};
use crate::evidence::log::canonical;
use crate::evidence::safe_read::LogLines;
use crate::script::Role;
use serde::ser::{Error as _, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

/// The confirmations of a deferred report, read again from the log, or from the first pass's
/// spill when it has one (spill.rs; then `lines` is `None`).
pub struct Filler {
    spill: Option<spill::Reader>,
    lines: Option<LogLines>,
    buf: Vec<u8>,
    sha: Sha256,
    /// The SHA-256 of audit.jsonl as the first pass read it.
    expected: String,
    counts: Vec<u32>,
    steps_confirmed: HashMap<String, usize>,
    error: Option<String>,
}

/// What went wrong reading the log again.
const CHANGED: &str = "changed while it was being verified";
/// What went wrong reading the first pass's confirmations back (the temporary file's disk, or a
/// keyrite defect), and what to do.
fn spill_error(detail: &str) -> String {
    format!(
        "the confirmations the first pass kept in a temporary file could not be read back ({detail}): \
         run keyrite verify again with TMPDIR naming a folder with free space; if it happens again, \
         report this keyrite defect"
    )
}

impl Filler {
    pub fn new(lines: LogLines, deferred: &Deferred, log_sha256: &str) -> Self {
        Self::with(None, Some(lines), deferred, log_sha256)
    }

    /// A filler from the first pass's spill, if it has one.
    pub fn from_spill(deferred: &Deferred) -> Option<Self> {
        let spill = spill::Reader::new(deferred.spill.as_ref()?);
        Some(Self::with(Some(spill), None, deferred, ""))
    }

    fn with(
        spill: Option<spill::Reader>,
        lines: Option<LogLines>,
        deferred: &Deferred,
        log_sha256: &str,
    ) -> Self {
        Filler {
            spill,
            lines,
            buf: Vec::with_capacity(4096),
            sha: Sha256::new(),
            expected: log_sha256.to_string(),
            counts: deferred.counts.clone(),
            steps_confirmed: deferred.steps_confirmed.clone(),
            error: None,
        }
    }

    /// Step `i` with its confirmations.
    fn fill(&mut self, i: usize, step: &StepRecord) -> StepRecord {
        let mut step = step.clone();
        self.confirmations(i, &mut step.confirmations);
        step
    }

    /// Step `i`'s confirmations appended to `to`.
    fn confirmations(&mut self, i: usize, to: &mut Vec<Confirmation>) {
        let n = self.counts.get(i).copied().unwrap_or(0);
        to.reserve(n as usize);
        for _ in 0..n {
            match self.next_confirmation() {
                Some(c) => to.push(c),
                None => break,
            }
        }
    }

    /// Step `i`'s confirmations, and the read's error after them (for a shared read).
    pub(super) fn step(&mut self, i: usize) -> super::shared::Step {
        let mut confirmations = Vec::new();
        self.confirmations(i, &mut confirmations);
        (confirmations, self.error.clone())
    }

    pub(super) fn steps_confirmed(&self) -> &HashMap<String, usize> {
        &self.steps_confirmed
    }

    fn next_confirmation(&mut self) -> Option<Confirmation> {
        if let Some(spill) = self.spill.as_mut() {
            // After an error the spill's offset is no longer a record's start: read no further.
            if self.error.is_some() {
                return None;
            }
            let next = spill.next_confirmation();
            return match next {
                Ok(Some(c)) => Some(c),
                Ok(None) => {
                    self.error = Some(spill_error("it ended early"));
                    None
                }
                Err(e) => {
                    self.error = Some(spill_error(&e.to_string()));
                    None
                }
            };
        }
        let Some(lines) = self.lines.as_mut() else {
            self.error = Some(spill_error("no source"));
            return None;
        };
        while self.error.is_none() {
            match lines.next_line(&mut self.buf) {
                Ok(true) => {}
                Ok(false) => {
                    self.error = Some(format!("{CHANGED}: it ended early"));
                    return None;
                }
                Err(e) => {
                    self.error = Some(e.to_string());
                    return None;
                }
            }
            self.sha.update(&self.buf);
            let line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
            // A line in the scanned subset (log/canonical.rs, nearly every line keyrite writes)
            // is located in place: a confirmation's members are read from it, any other line is
            // skipped. Either way only what a confirmation needs is read: the first pass parsed
            // this very line (the final hash comparison proves it) as the same event.
            match std::str::from_utf8(line).ok().and_then(canonical::scan) {
                Some(scanned) if scanned.kind == "confirmed" => {
                    if let Some(c) = scanned_confirmation(&scanned) {
                        return Some(c);
                    }
                }
                Some(_) => continue,
                // Other lines: in a canonical line a confirmation's event carries exactly this
                // member (a quote inside a string is escaped); lines without it are skipped.
                None if !contains(line, br#""kind":"confirmed""#) => continue,
                None => {}
            }
            let Ok(entry) = serde_json::from_slice::<ConfirmedLine>(line) else {
                self.error = Some(format!("{CHANGED}: a line no longer parses"));
                return None;
            };
            if entry.event.kind == "confirmed" {
                return Some(Confirmation {
                    person: entry.event.person,
                    role: entry.event.role,
                    counts_for: entry.event.counts_for,
                    time: entry.time,
                    log_seq: entry.seq,
                });
            }
        }
        None
    }

    /// Read the rest of the log and check it is the file the first pass read; from a spill, check
    /// that every confirmation was handed out.
    pub(super) fn finish(mut self) -> Result<(), String> {
        if let Some(spill) = &self.spill {
            return match self.error {
                Some(e) => Err(e),
                None if !spill.is_done() => Err(spill_error("confirmations left over")),
                None => Ok(()),
            };
        }
        let Some(lines) = self.lines.as_mut() else {
            return Err(spill_error("no source"));
        };
        while self.error.is_none() {
            match lines.next_line(&mut self.buf) {
                Ok(true) => self.sha.update(&self.buf),
                Ok(false) => break,
                Err(e) => self.error = Some(e.to_string()),
            }
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        if hex::encode(self.sha.finalize()) != self.expected {
            return Err(CHANGED.into());
        }
        Ok(())
    }
}

/// A `confirmed` entry as the second read needs it (other members are skipped).
#[derive(Deserialize)]
struct ConfirmedLine {
    seq: u64,
    time: String,
    event: ConfirmedEvent,
}

#[derive(Deserialize)]
struct ConfirmedEvent {
    kind: String,
    person: String,
    role: Role,
    counts_for: String,
}

/// The confirmation of a scanned line whose event is `confirmed`, its strings borrowed until
/// they are kept; `None` leaves the line to the full parse.
fn scanned_confirmation(scanned: &canonical::Line) -> Option<Confirmation> {
    let event: BorrowedConfirmed = serde_json::from_str(scanned.event).ok()?;
    Some(Confirmation {
        person: event.person.into_owned(),
        role: event.role,
        counts_for: event.counts_for.into_owned(),
        time: scanned.time.to_string(),
        log_seq: scanned.seq,
    })
}

/// [`ConfirmedEvent`] with its strings borrowed from the line where they need no unescaping.
#[derive(Deserialize)]
struct BorrowedConfirmed<'a> {
    #[serde(borrow)]
    person: Cow<'a, str>,
    role: Role,
    #[serde(borrow)]
    counts_for: Cow<'a, str>,
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What hands a thread's encoding or rendering each step's confirmations.
enum Installed {
    Own(Box<Filler>),
    /// A read shared with another thread (shared.rs).
    Tap {
        tap: Tap,
        /// The read's error as of the last step taken.
        error: Option<String>,
    },
}

impl Installed {
    fn fill(&mut self, i: usize, step: &StepRecord) -> StepRecord {
        match self {
            Installed::Own(filler) => filler.fill(i, step),
            Installed::Tap { tap, error } => {
                let (confirmations, read_error) = tap.step(i);
                *error = read_error;
                let mut step = step.clone();
                step.confirmations.extend(confirmations);
                step
            }
        }
    }

    fn error(&self) -> Option<&String> {
        match self {
            Installed::Own(filler) => filler.error.as_ref(),
            Installed::Tap { error, .. } => error.as_ref(),
        }
    }

    fn steps_confirmed(&self) -> &HashMap<String, usize> {
        match self {
            Installed::Own(filler) => &filler.steps_confirmed,
            Installed::Tap { tap, .. } => tap.steps_confirmed(),
        }
    }

    fn finish(self) -> Result<(), String> {
        match self {
            Installed::Own(filler) => filler.finish(),
            Installed::Tap { tap, .. } => tap.finish(),
        }
    }
}

thread_local! {
    static FILLER: RefCell<Option<Installed>> = const { RefCell::new(None) };
}

/// Run `f` (an encoding or a rendering of a deferred report) with `filler` handing each step its
/// confirmations; returns what `f` returned and whether the log read again was the same file
/// ([`Filler::finish`]).
pub fn with_filler<T>(filler: Filler, f: impl FnOnce() -> T) -> (T, Result<(), String>) {
    installed(Installed::Own(Box::new(filler)), f)
}

/// [`with_filler`] with one of two taps of a filler shared by two threads (shared.rs).
pub fn with_tap<T>(tap: Tap, f: impl FnOnce() -> T) -> (T, Result<(), String>) {
    installed(Installed::Tap { tap, error: None }, f)
}

fn installed<T>(source: Installed, f: impl FnOnce() -> T) -> (T, Result<(), String>) {
    /// Uninstalls on a panic in `f` too: a dropped tap no longer holds the other thread back.
    struct Uninstall;
    impl Drop for Uninstall {
        fn drop(&mut self) {
            let _ = FILLER.try_with(|cell| cell.borrow_mut().take());
        }
    }
    FILLER.with(|cell| *cell.borrow_mut() = Some(source));
    let uninstall = Uninstall;
    let out = f();
    let finished = match FILLER.with(|cell| cell.borrow_mut().take()) {
        Some(source) => source.finish(),
        None => Err("the log's second read was lost (a keyrite defect)".into()),
    };
    drop(uninstall);
    (out, finished)
}

/// Step `i` as the report holds it, or filled with its confirmations when a filler is installed.
pub fn filled(i: usize, step: &StepRecord) -> Cow<'_, StepRecord> {
    FILLER.with(|cell| match cell.borrow_mut().as_mut() {
        Some(source) => Cow::Owned(source.fill(i, step)),
        None => Cow::Borrowed(step),
    })
}

/// How many steps each person confirmed, when a filler is installed (the report's steps do not
/// hold their confirmations then).
pub fn steps_confirmed() -> Option<HashMap<String, usize>> {
    FILLER.with(|cell| cell.borrow().as_ref().map(|f| f.steps_confirmed().clone()))
}

/// `Report::steps`, each step filled when a filler is installed.
pub fn serialize_steps<S: Serializer>(steps: &[StepRecord], s: S) -> Result<S::Ok, S::Error> {
    let installed = FILLER.with(|cell| cell.borrow().is_some());
    if !installed {
        return steps.serialize(s);
    }
    let mut seq = s.serialize_seq(Some(steps.len()))?;
    for (i, step) in steps.iter().enumerate() {
        let step = filled(i, step);
        seq.serialize_element(step.as_ref())?;
    }
    let failed = FILLER.with(|cell| cell.borrow().as_ref().and_then(|f| f.error().cloned()));
    match failed {
        Some(e) => Err(S::Error::custom(format!("audit.jsonl: {e}"))),
        None => seq.end(),
    }
}

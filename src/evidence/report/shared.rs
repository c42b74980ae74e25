//! One later read of the log for both comparisons verify makes at once (report.json's encoding
//! on one thread, report.pdf's rendering on another): each used to read, hash, scan and parse the
//! whole log again with a [`Filler`] of its own.
//!
//! Each of the two [`Tap`]s asks for the steps in plan order. The one ahead reads a step from the
//! shared filler (without holding the lock) and queues a copy of its confirmations for the other,
//! which takes it from the queue. The queue is bounded ([`QUEUED_MAX`] confirmations, always at
//! least one step): the one ahead waits for the other to catch up, so memory does not grow with
//! the log. A tap that is done (or dropped unused) no longer holds the other back. The file's
//! final check ([`Filler::finish`]) runs once, when both are done, and both get its result.
//!
//! Both taps get exactly the steps, confirmations and error a filler of their own would have
//! given them (report/tests.rs compares), so the findings are those of two separate reads.

use super::stream::Filler;
use super::Confirmation;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Confirmations queued for the tap behind before the one ahead waits (a step always fits).
const QUEUED_MAX: usize = if cfg!(test) { 4 } else { 16_384 };

/// A step's confirmations as the filler read them, and its error after reading them.
pub(super) type Step = (Vec<Confirmation>, Option<String>);

/// One of the two readers of a shared filler.
pub struct Tap {
    shared: Arc<Shared>,
    me: usize,
    /// [`Tap::finish`] ran: the drop has nothing to do.
    finished: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    steps_confirmed: HashMap<String, usize>,
}

struct State {
    /// `None` while one tap reads a step.
    filler: Option<Filler>,
    /// Steps read so far.
    read: usize,
    /// Steps read by the tap ahead, for the other: (step, what it read).
    queue: VecDeque<(usize, Step)>,
    queued: usize,
    done: [bool; 2],
    finished: Option<Result<(), String>>,
}

/// Two taps of `filler`: one for each thread.
pub fn split(filler: Filler) -> (Tap, Tap) {
    let shared = Arc::new(Shared {
        steps_confirmed: filler.steps_confirmed().clone(),
        state: Mutex::new(State {
            filler: Some(filler),
            read: 0,
            queue: VecDeque::new(),
            queued: 0,
            done: [false; 2],
            finished: None,
        }),
        changed: Condvar::new(),
    });
    let tap = |me| Tap {
        shared: Arc::clone(&shared),
        me,
        finished: false,
    };
    (tap(0), tap(1))
}

/// Said when the taps are not used as designed (steps asked for out of order).
const DEFECT: &str = "the log's shared second read lost a step (a keyrite defect)";

impl Tap {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic on the other thread fails its own comparison; the state stays consistent.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.shared
            .changed
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn steps_confirmed(&self) -> &HashMap<String, usize> {
        &self.shared.steps_confirmed
    }

    /// Step `i`'s confirmations, and the read's error after them.
    pub(super) fn step(&mut self, i: usize) -> Step {
        let other = 1 - self.me;
        let mut state = self.lock();
        loop {
            if state.queue.front().is_some_and(|(step, _)| *step == i) {
                let Some((_, step)) = state.queue.pop_front() else {
                    break;
                };
                state.queued -= step.0.len();
                self.shared.changed.notify_all();
                return step;
            }
            if state.read > i {
                break;
            }
            let full = !state.queue.is_empty() && state.queued >= QUEUED_MAX;
            let filler = match state.filler.take() {
                Some(filler) if !full || state.done[other] => filler,
                taken => {
                    // The other tap reads, or has not caught up.
                    state.filler = taken;
                    state = self.wait(state);
                    continue;
                }
            };
            let k = state.read;
            drop(state);
            let mut filler = filler;
            let read = filler.step(k);
            state = self.lock();
            state.filler = Some(filler);
            state.read = k + 1;
            self.shared.changed.notify_all();
            // The other tap has not had step k (steps are read in order): a copy, unless done.
            if !state.done[other] {
                state.queued += read.0.len();
                state.queue.push_back((k, read.clone()));
            }
            if k == i {
                return read;
            }
        }
        (Vec::new(), Some(DEFECT.into()))
    }

    /// Done with the steps: once both taps are, the rest of the log is read and the file checked
    /// (by whichever tap is last); both get the result.
    pub(super) fn finish(mut self) -> Result<(), String> {
        self.finished = true;
        let other = 1 - self.me;
        let mut state = self.lock();
        state.done[self.me] = true;
        self.shared.changed.notify_all();
        loop {
            if let Some(finished) = &state.finished {
                return finished.clone();
            }
            if state.done[other] {
                let finished = match state.filler.take() {
                    Some(filler) => filler.finish(),
                    None => Err(DEFECT.into()),
                };
                state.finished = Some(finished.clone());
                self.shared.changed.notify_all();
                return finished;
            }
            state = self.wait(state);
        }
    }
}

impl Drop for Tap {
    /// A tap never used (its comparison never started) or abandoned (a panic) holds nothing back.
    fn drop(&mut self) {
        if !self.finished {
            let mut state = self.lock();
            state.done[self.me] = true;
            self.shared.changed.notify_all();
        }
    }
}

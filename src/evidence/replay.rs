//! Replay a logged ceremony through the engine built from the bundle's own script.toml.
//!
//! The hash chain proves the log was not edited after the fact only if nobody re-hashed it; the
//! replay proves something the chain cannot: that every logged decision is the one the engine makes
//! for this script. A log edited to drop a confirmation, add a stranger or skip a step no longer
//! replays, even when its hashes were recomputed.

use super::events::{Record, UnsignedConfirmation};
use super::log::{AuditEntry, EntryRef};
use super::report::{parse_event, Parsed};
use crate::engine::{Effect, Engine, Event, Input, UNRECOGNISED};
use crate::script::{Action, Script};
use std::collections::VecDeque;

/// Check the log against the script; the error names the log entry.
pub fn replay(script: &Script, entries: &[AuditEntry]) -> Result<usize, String> {
    let mut replay = Replay::new(script);
    for entry in entries {
        match parse_event(entry) {
            Ok(parsed) => replay.entry(entry, &parsed),
            Err(e) => replay.unparsable(e),
        }
    }
    replay.finish()
}

/// Where a log that may have been cut off leaves the ceremony (`keyrite abort` and `resume`).
pub struct LogEnd {
    pub engine: Engine,
    /// Events the engine produced with the last logged one that the log does not hold yet.
    pub owed: Vec<Event>,
    /// A `confirmation_unsigned` entry whose abort the log does not hold yet.
    pub must_abort: Option<u64>,
    pub events: usize,
}

/// [`replay`], accepting a log that ends early: every entry it holds must still follow the rules.
pub fn replay_partial(script: &Script, entries: &[AuditEntry]) -> Result<LogEnd, String> {
    let mut replay = Replay::new(script);
    for entry in entries {
        match parse_event(entry) {
            Ok(parsed) => replay.entry(entry, &parsed),
            Err(e) => replay.unparsable(e),
        }
    }
    replay.end()
}

/// [`replay`] one entry at a time, holding the engine and the few records it still expects instead
/// of the log. Two kinds of check run side by side: the entry-by-entry order checks (write-ahead,
/// unsigned confirmations, the plan) and the engine's replay. As when they ran one after the other,
/// the first order failure wins over any replay failure.
pub struct Replay<'s> {
    script: &'s Script,
    engine: Engine,
    /// Records the engine produced that the log has not shown yet, in order.
    expected: VecDeque<Event>,
    events: usize,
    hsm: HsmOrder<'s>,
    /// A `confirmation_unsigned` entry not yet followed by its abort.
    must_abort: Option<u64>,
    /// The last engine event when it is a confirmation: its seq, person and step (what a
    /// `confirmation_unsigned` must name), in buffers reused confirmation to confirmation.
    last_confirmed: Option<(u64, String, String)>,
    /// A `reopened` entry by `keyrite resume` not yet followed by its `step_resumed`.
    reopened: bool,
    order_error: Option<String>,
    engine_error: Option<String>,
}

impl<'s> Replay<'s> {
    pub fn new(script: &'s Script) -> Self {
        let mut engine = Engine::new(script);
        let expected = records(engine.start());
        Replay {
            script,
            engine,
            expected,
            events: 0,
            hsm: HsmOrder::new(script),
            must_abort: None,
            last_confirmed: None,
            reopened: false,
            order_error: None,
            engine_error: None,
        }
    }

    /// Let the engine drop each finished step's confirmers (verify's pass: nothing looks back).
    pub fn forget_finished_steps(&mut self) {
        self.engine.forget_finished_steps();
    }

    /// An entry whose event did not parse: the replay fails there.
    pub fn unparsable(&mut self, why: String) {
        self.order_error.get_or_insert(why);
    }

    pub fn entry<'a>(&mut self, entry: impl Into<EntryRef<'a>>, parsed: &Parsed) {
        if self.order_error.is_some() {
            return;
        }
        let entry = entry.into();
        let checked = match parsed {
            Parsed::Engine(event) => self.engine_event(entry.seq, event),
            Parsed::Record(record) => self.record(entry, record),
        };
        if let Err(e) = checked {
            self.order_error = Some(e);
        }
    }

    fn engine_event(&mut self, seq: u64, event: &Event) -> Result<(), String> {
        if matches!(event, Event::StepResumed { .. }) && !std::mem::take(&mut self.reopened) {
            return Err(format!(
                "log entry {seq}: step_resumed without the reopened entry of `keyrite resume`"
            ));
        }
        if let Some(unsigned) = self.must_abort.take() {
            if !matches!(event, Event::CeremonyAborted { .. }) {
                return Err(format!(
                    "log entry {seq}: the ceremony went on after the unsigned confirmation \
                     at entry {unsigned}; it must abort right there"
                ));
            }
        }
        self.hsm.engine_event(event);
        self.events += 1;
        match (event, &mut self.last_confirmed) {
            (Event::Confirmed { person, step, .. }, Some((at, p, s))) => {
                *at = seq;
                p.clone_from(person);
                s.clone_from(step);
            }
            (Event::Confirmed { person, step, .. }, last) => {
                *last = Some((seq, person.clone(), step.clone()))
            }
            (_, last) => *last = None,
        }
        if self.engine_error.is_none() {
            if let Err(e) = self.follow(seq, event) {
                self.engine_error = Some(e);
            }
        }
        Ok(())
    }

    /// The engine's side: the logged event must be the next record it produces.
    fn follow(&mut self, seq: u64, event: &Event) -> Result<(), String> {
        if self.expected.is_empty() {
            let input = input_for(event).ok_or_else(|| {
                format!(
                    "log entry {seq}: {} does not follow from anything the room did",
                    kind(event)
                )
            })?;
            self.expected = records(self.engine.handle(input));
            if self.expected.is_empty() {
                return Err(format!(
                    "log entry {seq}: {} is not possible at this point of the script",
                    kind(event)
                ));
            }
        }
        match self.expected.pop_front() {
            Some(wanted) if wanted == *event => Ok(()),
            Some(wanted) => Err(format!(
                "log entry {seq}: the log says {}, but the script's rules give {} here",
                describe(event),
                describe(&wanted)
            )),
            None => Ok(()),
        }
    }

    fn record(&mut self, entry: EntryRef, record: &Record) -> Result<(), String> {
        check_started(self.script, entry.seq, record)?;
        if let Record::Reopened(r) = record {
            self.reopened = r.by == "resume";
        }
        self.hsm.record(entry, record)?;
        if let Record::ConfirmationUnsigned(u) = record {
            check_unsigned(entry.seq, u, self.last_confirmed.as_ref())?;
            self.must_abort = Some(entry.seq);
        }
        Ok(())
    }

    /// Where a log that may have been cut off leaves the ceremony: every entry it holds must still
    /// follow the rules (`keyrite abort` and `resume`).
    pub fn end(self) -> Result<LogEnd, String> {
        if let Some(e) = self.order_error.or(self.engine_error) {
            return Err(e);
        }
        Ok(LogEnd {
            engine: self.engine,
            owed: self.expected.into_iter().collect(),
            must_abort: self.must_abort,
            events: self.events,
        })
    }

    /// After the last entry: the number of engine events replayed, or the first failure.
    pub fn finish(self) -> Result<usize, String> {
        if let Some(e) = self.order_error {
            return Err(e);
        }
        if let Some(unsigned) = self.must_abort {
            return Err(format!(
                "the log ends without the abort that must follow the unsigned confirmation at entry {unsigned}"
            ));
        }
        if let Some(e) = self.engine_error {
            return Err(e);
        }
        match self.expected.front() {
            Some(wanted) => Err(format!(
                "the log ends where the script's rules give {}",
                describe(wanted)
            )),
            None => Ok(self.events),
        }
    }
}

/// The records among the engine's effects, in order.
fn records(effects: Vec<Effect>) -> VecDeque<Event> {
    effects
        .into_iter()
        .filter_map(|effect| match effect {
            Effect::Record(event) => Some(event),
            _ => None,
        })
        .collect()
}

/// The input that makes the engine produce `event` first.
fn input_for(event: &Event) -> Option<Input> {
    Some(match event {
        Event::Confirmed { person, .. } => Input::Confirm {
            person: person.clone(),
        },
        Event::ConfirmationRefused { person, reason, .. }
            if person == UNRECOGNISED && reason.starts_with("an exception") =>
        {
            Input::Exception {
                person: person.clone(),
                text: String::new(),
            }
        }
        Event::ConfirmationRefused { person, .. } => Input::Confirm {
            person: person.clone(),
        },
        Event::StepRefused { .. } => Input::Proceed,
        Event::ExceptionRecorded { person, text, .. } => Input::Exception {
            person: person.clone(),
            text: text.clone(),
        },
        Event::StepCompleted { .. } => Input::ActionSucceeded,
        Event::StepFailed { reason, .. } => Input::ActionFailed {
            reason: reason.clone(),
        },
        Event::StepWithdrawn { reason, .. } => Input::ActionWithdrawn {
            reason: reason.clone(),
        },
        Event::StepResumed { .. } => Input::Resume,
        Event::CeremonyAborted { reason, .. } => Input::Abort {
            reason: reason.clone(),
        },
        // Proceed with dual control met.
        Event::StepAuthorised { .. } => Input::Proceed,
        Event::StepStarted { .. } | Event::CeremonyCompleted => return None,
    })
}

fn kind(event: &Event) -> String {
    serde_json::to_value(event)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
        .unwrap_or_default()
}

fn describe(event: &Event) -> String {
    match event {
        Event::Confirmed { person, step, .. } => format!("a confirmation by {person} at {step}"),
        Event::ConfirmationRefused { person, step, .. } => {
            format!("a refused confirmation by {person} at {step}")
        }
        Event::StepAuthorised {
            step, confirmed_by, ..
        } => {
            format!("{step} authorised by {}", confirmed_by.join(", "))
        }
        other => match other.step() {
            Some(step) => format!("{} at {step}", kind(other)),
            None => kind(other),
        },
    }
}

/// A `confirmation_unsigned` entry must name the engine event just before it: the `confirmed`
/// entry of that person at that step.
fn check_unsigned(
    seq: u64,
    unsigned: &UnsignedConfirmation,
    last: Option<&(u64, String, String)>,
) -> Result<(), String> {
    match last {
        Some((at, person, step))
            if *at == unsigned.confirmed_seq
                && *person == unsigned.person
                && *step == unsigned.step =>
        {
            Ok(())
        }
        _ => Err(format!(
            "log entry {seq}: confirmation_unsigned does not follow the confirmation by {} at {} \
             (entry {}) it names",
            unsigned.person, unsigned.step, unsigned.confirmed_seq
        )),
    }
}

/// The first entry's participants and steps must be the script's.
fn check_started(script: &Script, seq: u64, record: &Record) -> Result<(), String> {
    let Record::CeremonyStarted {
        ceremony_id,
        participants,
        steps,
        security_level,
        ..
    } = record
    else {
        return Ok(());
    };
    let same_people = participants.len() == script.participants.len()
        && participants
            .iter()
            .zip(&script.participants)
            .all(|(logged, p)| {
                logged.name == p.name && logged.roles == p.roles().collect::<Vec<_>>()
            });
    let same_steps = steps.len() == script.steps.len()
        && steps
            .iter()
            .zip(&script.steps)
            .all(|(logged, s)| logged.id == s.id && logged.action == s.action);
    if *ceremony_id != script.ceremony.id || *security_level != script.ceremony.security_level {
        return Err(format!(
            "log entry {seq}: the ceremony id or security level differs from script.toml"
        ));
    }
    if !same_people {
        return Err(format!(
            "log entry {seq}: the participants differ from script.toml"
        ));
    }
    if !same_steps {
        return Err(format!(
            "log entry {seq}: the steps differ from script.toml"
        ));
    }
    Ok(())
}

/// Every HSM result must come inside a step authorised for that action, after its write-ahead intent.
struct HsmOrder<'s> {
    authorised: Option<(String, Action)>,
    intent: Option<String>,
    /// Each token's session; after a `reopened` entry by resume, a token the interruption logged
    /// out may be logged in again in any authorised step.
    tokens: super::replay_tokens::TokenSessions<'s>,
    destroyed: super::destroy::DestroyCheck,
}

impl<'s> HsmOrder<'s> {
    fn new(script: &'s Script) -> Self {
        HsmOrder {
            authorised: None,
            intent: None,
            tokens: super::replay_tokens::TokenSessions::new(script),
            destroyed: Default::default(),
        }
    }

    fn engine_event(&mut self, event: &Event) {
        match event {
            Event::StepAuthorised { step, action, .. } => {
                self.authorised = Some((step.clone(), *action))
            }
            Event::StepCompleted { .. }
            | Event::StepFailed { .. }
            | Event::StepWithdrawn { .. }
            | Event::StepResumed { .. } => self.authorised = None,
            _ => {}
        }
    }

    fn record(&mut self, entry: EntryRef, record: &Record) -> Result<(), String> {
        let relogin = self.tokens.is_relogin(record);
        self.tokens.record(entry, record)?;
        self.destroyed.record(entry, record)?;
        let needs = match record {
            Record::HsmIntent { operation, .. } => {
                self.intent = Some(operation.clone());
                return Ok(());
            }
            // `keyrite resume` logs in again inside the first HSM step after the interruption.
            Record::Reopened(r) if r.by == "resume" => {
                self.tokens.resumed();
                return Ok(());
            }
            Record::HsmActivated { .. } if relogin && self.authorised.is_some() => {
                return match self.intent.take().as_deref() {
                    Some("open_and_login") => Ok(()),
                    _ => Err(format!(
                        "log entry {}: a login after the interruption without its intent",
                        entry.seq
                    )),
                };
            }
            Record::HsmActivated { .. } => (Action::ActivateHsm, "open_and_login"),
            Record::KeyGenerated { .. } => (Action::GenerateKey, "generate_key_pair"),
            Record::CertificateSigned(_) => (Action::SignCertificate, "sign_certificate"),
            // Issue 11: a certificate for another CA, inside its own kind of step.
            Record::CaCertificateSigned(r) if r.issued_as == "subordinate-ca" => {
                (Action::SignSubordinateCa, "sign_ca_certificate")
            }
            Record::CaCertificateSigned(_) => (Action::SignCrossCertificate, "sign_ca_certificate"),
            Record::CrlSigned(_) => (Action::SignCrl, "sign_crl"),
            Record::KeyDestroyed(_) => (Action::DestroyKey, "destroy_key"),
            Record::CertificateStored { .. } => (Action::SignCertificate, "store_certificate"),
            // Issue 12: the result of the last operation of a backup or a restore.
            Record::KeyBackedUp(_) => (Action::BackupKey, "destroy_kek"),
            Record::KeyRestored(_) => (Action::RestoreKey, "destroy_kek"),
            Record::RestoreUndone(_) => (Action::RestoreKey, "undo_restore"),
            Record::Attached { .. } => {
                let inside = self.authorised.as_ref().is_some_and(|(step, action)| {
                    *action == Action::Attach && entry.step == Some(step.as_str())
                });
                return match inside {
                    true => Ok(()),
                    false => Err(format!(
                        "log entry {}: an attachment outside a step authorised for attach",
                        entry.seq
                    )),
                };
            }
            Record::HsmDeactivated { .. } => {
                return match self.intent.take().as_deref() {
                    Some("logout") => Ok(()),
                    _ => Err(format!(
                        "log entry {}: a logout without its intent entry",
                        entry.seq
                    )),
                }
            }
            _ => return Ok(()),
        };
        let authorised = self.authorised.as_ref().is_some_and(|(step, action)| {
            // A split on a fresh token initialises it and logs in: it activates too.
            let activates = action.is_activation() || *action == Action::SplitActivation;
            let allowed = *action == needs.0 || (needs.0 == Action::ActivateHsm && activates);
            allowed && entry.step == Some(step.as_str())
        });
        if !authorised {
            return Err(format!(
                "log entry {}: an HSM result ({}) outside a step authorised for {}",
                entry.seq, entry.kind, needs.0
            ));
        }
        if self.intent.take().as_deref() != Some(needs.1) {
            return Err(format!(
                "log entry {}: {} has no write-ahead intent before it",
                entry.seq, entry.kind
            ));
        }
        Ok(())
    }
}

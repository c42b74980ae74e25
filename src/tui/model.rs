//! The TUI's state and its one transition function, `update`. No IO, no clock: the runtime feeds it
//! messages (keys, ticks, what the driver said, the audit-log tail) and carries out the commands it
//! returns (answer the driver, hand over a PIN, quit). No business rule lives here: whether a
//! confirmation counts, what is missing and why a step is refused all come from the engine.

use super::quorum::{CardAsk, QuorumView};
use crate::driver::cards::CardPresentation;
use crate::engine::{Input, StepPlan};
use crate::error::Error;
use crate::script::Script;
use ratatui::crossterm::event::KeyEvent;
use secrecy::SecretString;
use std::collections::VecDeque;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    Pending,
    Current,
    Done,
    Failed,
}

impl StepState {
    /// Shown next to each step, so the state never rests on colour alone.
    pub fn symbol(self) -> &'static str {
        match self {
            StepState::Pending => "·",
            StepState::Current => "▶",
            StepState::Done => "✓",
            StepState::Failed => "✗",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StepRow {
    pub id: String,
    pub title: String,
    pub state: StepState,
}

#[derive(Debug, Clone)]
pub struct ParticipantRow {
    pub name: String,
    pub roles: String,
}

/// One line of the audit log as the evidence pane shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRow {
    pub seq: u64,
    /// HH:MM:SS (UTC).
    pub time: String,
    pub kind: String,
    /// The first 8 hex digits of the entry's hash.
    pub hash: String,
    pub step: Option<String>,
    /// The `reason` of a step_failed or ceremony_aborted entry.
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Fingerprint {
    pub key: String,
    pub grouped_hash: String,
    pub words: Vec<&'static str>,
}

#[derive(Debug, Clone)]
pub struct Current {
    pub index: usize,
    pub total: usize,
    pub plan: StepPlan,
    pub instructions: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    Info,
    Warning,
    Refused,
}

#[derive(Debug, Clone)]
pub struct Note {
    pub kind: NoteKind,
    pub text: String,
    /// The step (1-based) on screen when the note came, so a note kept across steps says where.
    pub step: Option<usize>,
}

/// How the ceremony ended, for the final screen.
#[derive(Debug, Clone)]
pub struct Finished {
    pub completed: bool,
    pub reason: Option<String>,
    pub log_head: Option<String>,
    pub report_sha256: Option<String>,
    /// keyrite itself stopped (evidence could not be written, ...).
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Confirm,
    Exception,
}

/// What sits on top of the screen and takes the keys.
pub enum Modal {
    None,
    /// Choose who acts: the participant list, by number or arrows.
    Pick {
        purpose: Purpose,
        cursor: usize,
    },
    /// Free text of an exception, recorded for `person`.
    ExceptionText {
        person: String,
        text: super::line_edit::LineInput,
    },
    /// The PIN modal: masked, the buffer is zeroized when dropped. `warning` is the driver's warning
    /// that came just before this request (a card that refused the previous PIN).
    Pin {
        ask: PinAsk,
        warning: Option<String>,
        buffer: Zeroizing<String>,
    },
    /// The path of the file an `attach` step hashes (none came with `--attach STEP=PATH`).
    AttachPath {
        step: String,
        description: String,
        text: super::line_edit::LineInput,
    },
    /// Ctrl-C: ask before aborting.
    ConfirmAbort,
    Error {
        title: String,
        what: String,
        todo: String,
    },
}

/// Debug output never shows a PIN being typed.
impl std::fmt::Debug for Modal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Modal::None => f.write_str("None"),
            Modal::Pick { purpose, cursor } => f
                .debug_struct("Pick")
                .field("purpose", purpose)
                .field("cursor", cursor)
                .finish(),
            Modal::ExceptionText { person, text } => f
                .debug_struct("ExceptionText")
                .field("person", person)
                .field("text", &text.value())
                .finish(),
            Modal::Pin { ask, warning, .. } => f
                .debug_struct("Pin")
                .field("ask", ask)
                .field("warning", warning)
                .finish_non_exhaustive(),
            Modal::AttachPath {
                step,
                description,
                text,
            } => f
                .debug_struct("AttachPath")
                .field("step", step)
                .field("description", description)
                .field("text", &text.value())
                .finish(),
            Modal::ConfirmAbort => f.write_str("ConfirmAbort"),
            Modal::Error { title, what, todo } => f
                .debug_struct("Error")
                .field("title", title)
                .field("what", what)
                .field("todo", todo)
                .finish(),
        }
    }
}

/// Whose PIN the driver asks for: the HSM's, a custodian's quorum card's, or a participant's
/// personal signing card's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinKind {
    Hsm,
    HsmSecurityOfficer,
    CustodianCard,
    PersonalCard,
}

/// A PIN request as the TUI shows it: the driver's own prompt (`PinRequest::prompt`) and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinAsk {
    pub kind: PinKind,
    pub prompt: String,
}

impl PinAsk {
    pub fn of(request: &crate::driver::pins::PinRequest<'_>) -> Self {
        use crate::driver::pins::PinRequest;
        let kind = match request {
            PinRequest::HsmUser(_) => PinKind::Hsm,
            PinRequest::HsmSecurityOfficer(_) => PinKind::HsmSecurityOfficer,
            PinRequest::CustodianCard { .. } => PinKind::CustodianCard,
            PinRequest::PersonalCard { .. } => PinKind::PersonalCard,
        };
        PinAsk {
            kind,
            prompt: request.prompt(),
        }
    }
}

/// What the driver (on its own thread) tells the TUI; owned copies of the driver's notices.
#[derive(Debug, Clone)]
pub enum DriverEvent {
    StepStarted {
        index: usize,
        total: usize,
        plan: StepPlan,
        instructions: String,
    },
    Fingerprint {
        key: String,
        grouped_hash: String,
    },
    Refused(String),
    Working {
        what: String,
        secs: u64,
    },
    StepDone(StepPlan),
    Warning(String),
    Info(String),
    /// The driver waits for the next input at this step.
    NeedInput(StepPlan),
    /// The driver waits for a PIN.
    NeedPin(PinAsk),
    /// The driver waits for the path of the file `step` attaches (see `super::attach`).
    NeedAttachment {
        step: String,
        description: String,
    },
    /// The driver waits for the room to present a custodian card (see `super::quorum`).
    NeedCard(CardAsk),
    Finished(Finished),
}

#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    /// Clock tick (≤ 4 Hz): the UTC clock as shown, HH:MM:SS.
    Tick(String),
    Driver(DriverEvent),
    /// The tail of the audit log, re-read when the file grew.
    Evidence(Vec<EvidenceRow>),
}

/// What the runtime must do after an update.
#[derive(Debug)]
pub enum Command {
    /// Answer the driver's `next_input`.
    Reply(Input),
    /// Answer the driver's PIN request.
    Pin(Result<SecretString, Error>),
    /// Answer the driver's `attachment`: the path typed, or `None` when cancelled.
    Attachment(Option<String>),
    /// Answer the driver's `present_card`.
    Card(CardPresentation),
    Quit,
}

pub struct Model {
    pub name: String,
    pub kind: String,
    pub level: String,
    pub rehearsal: bool,
    pub bundle: String,
    pub clock: String,
    pub ticks: u64,
    pub color: bool,
    pub steps: Vec<StepRow>,
    pub participants: Vec<ParticipantRow>,
    pub current: Option<Current>,
    pub fingerprint: Option<Fingerprint>,
    pub quorum: Option<QuorumView>,
    /// Refusals, warnings and notes of the whole ceremony, oldest first; a step change keeps them.
    pub notes: Vec<Note>,
    /// How far the step's text is scrolled, in lines; reset when a step starts.
    pub scroll: u16,
    /// The furthest the step's text can scroll at the size last drawn: the view sets it, the scroll
    /// keys stop there.
    pub scroll_limit: std::cell::Cell<u16>,
    pub working: Option<(String, u64)>,
    pub evidence: Vec<EvidenceRow>,
    /// The driver waits in `next_input`.
    pub awaiting: bool,
    /// Inputs given while the driver was busy, with the step they were given at; sent when it next
    /// asks. A confirmation or go is only ever delivered to the step it was given for.
    pub queued: VecDeque<(Option<String>, Input)>,
    pub modal: Modal,
    /// A PIN request that came while another modal (a pick, an exception, Ctrl-C's question, an
    /// error) was open: the PIN modal opens when that one closes, so keys meant for it never land in
    /// the PIN.
    pub pending_pin: Option<(PinAsk, Option<String>)>,
    /// An attachment request (step, description) waiting, like `pending_pin`, for the screen.
    pub pending_attach: Option<(String, String)>,
    /// The driver's last event, when it was a warning: shown in a PIN modal that follows at once.
    pin_warning: Option<String>,
    /// Notices since the driver last asked for input (at the end: the report signatures, or why
    /// one is missing), for the final screen.
    pub closing: Vec<Note>,
    pub finished: Option<Finished>,
    last_seq: Option<u64>,
}

/// How many notes the notes pane keeps (it shows the newest that fit, oldest first).
const NOTES: usize = 200;

impl Model {
    pub fn new(script: &Script, rehearsal: bool, bundle: &str, color: bool) -> Self {
        Model {
            name: script.ceremony.name.clone(),
            kind: script.ceremony.kind.clone(),
            level: script.ceremony.security_level.to_string(),
            rehearsal,
            bundle: bundle.to_string(),
            clock: String::new(),
            ticks: 0,
            color,
            steps: script
                .steps
                .iter()
                .map(|s| StepRow {
                    id: s.id.clone(),
                    title: s.title.clone(),
                    state: StepState::Pending,
                })
                .collect(),
            participants: script
                .participants
                .iter()
                .map(|p| ParticipantRow {
                    name: p.name.clone(),
                    roles: p.roles().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
                })
                .collect(),
            current: None,
            fingerprint: None,
            quorum: None,
            notes: Vec::new(),
            scroll: 0,
            scroll_limit: std::cell::Cell::new(0),
            working: None,
            evidence: Vec::new(),
            awaiting: false,
            queued: VecDeque::new(),
            modal: Modal::None,
            pending_pin: None,
            pending_attach: None,
            pin_warning: None,
            closing: Vec::new(),
            finished: None,
            last_seq: None,
        }
    }

    pub(super) fn note(&mut self, kind: NoteKind, text: String) {
        let step = self.current.as_ref().map(|c| c.index + 1);
        self.notes.push(Note { kind, text, step });
        if self.notes.len() > NOTES {
            self.notes.remove(0);
        }
    }

    /// Hand an input to the driver now if it waits, or keep it for when it next asks.
    pub(super) fn send(&mut self, input: Input) -> Vec<Command> {
        if self.awaiting {
            self.awaiting = false;
            vec![Command::Reply(input)]
        } else {
            let step = self.current.as_ref().map(|c| c.plan.id.clone());
            self.queued.push_back((step, input));
            Vec::new()
        }
    }

    /// The ceremony is over and the final screen shows.
    pub fn is_final(&self) -> bool {
        self.finished.is_some() && matches!(self.modal, Modal::None)
    }
}

mod events;
use events::{driver, evidence};

pub fn update(model: &mut Model, msg: Msg) -> Vec<Command> {
    match msg {
        Msg::Tick(clock) => {
            model.clock = clock;
            model.ticks = model.ticks.wrapping_add(1);
            Vec::new()
        }
        Msg::Evidence(rows) => {
            evidence(model, rows);
            Vec::new()
        }
        Msg::Driver(event) => {
            let commands = driver(model, event);
            open_pending_pin(model);
            commands
        }
        Msg::Key(key) => {
            let commands = super::keys::key(model, key);
            open_pending_pin(model);
            commands
        }
    }
}

/// A PIN request waits while another modal is open; it opens as soon as the screen is free.
fn open_pending_pin(model: &mut Model) {
    if matches!(model.modal, Modal::None) && model.finished.is_none() {
        if let Some((ask, warning)) = model.pending_pin.take() {
            model.modal = Modal::Pin {
                ask,
                warning,
                // Reserved up front: growing the String would leave copies of the PIN behind.
                buffer: Zeroizing::new(String::with_capacity(
                    crate::driver::pin_input::MAX_LINE_BYTES,
                )),
            };
        }
    }
    super::attach::open_pending(model);
}

//! The terminal UI: what the people in the room see on the ceremony laptop. Elm-shaped: a
//! [`model::Model`], [`model::update`] (messages in, commands out) and a pure [`view::view`].
//!
//! The UI thread owns the terminal and never blocks on the HSM: the driver ([`crate::driver`]) runs
//! the same engine as a headless run on its own thread, and talks to the UI through
//! [`proxy::TuiOperator`] and [`proxy::TuiPins`] over channels. The UI wakes on a key, on a driver
//! message, or on a 4 Hz clock tick; there is no busy loop. The TUI carries no business rules.

mod attach;
mod keys;
mod line_edit;
pub mod model;
mod overlay_view;
mod pin_view;
pub mod proxy;
pub mod quorum;
mod quorum_keys;
mod quorum_view;
pub mod view;

#[cfg(test)]
mod card_tests;
#[cfg(test)]
mod quorum_tests;
#[cfg(test)]
mod room_tests;
#[cfg(test)]
mod tests;

use crate::driver::cards::CardPresentation;
use crate::driver::operator::WithAttachments;
use crate::driver::pins::PinSource;
use crate::driver::{Ceremony, Outcome, RunMode};
use crate::engine::Input;
use crate::error::{Error, Result};
use crate::evidence::bundle::LOG_FILE;
use crate::evidence::log::AuditEntry;
use crate::hsm::{Hsm, HsmError};
use crate::script::{LoadedScript, TokenSelector};
use model::{update, Command, DriverEvent, EvidenceRow, Finished, Model, Msg};
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

/// The clock tick: 4 Hz at most.
pub const TICK: Duration = Duration::from_millis(250);
/// How many audit-log entries the evidence pane keeps.
const EVIDENCE_TAIL: usize = 64;

pub type OpenFn = fn(&str, &TokenSelector) -> std::result::Result<Box<dyn Hsm + Send>, HsmError>;

/// Open the TUI? Only on an interactive terminal, and only when no answers file, `--auto` or
/// `--plain` asks for another front end.
pub fn wanted(answers: Option<&Path>, auto: bool, plain: bool) -> bool {
    answers.is_none()
        && !auto
        && !plain
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
}

/// NO_COLOR (https://no-color.org): set and not empty turns colour off.
pub fn colour_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Run the ceremony with the TUI in front. `pins` is `None` to ask for PINs in the TUI's modal
/// (`keyrite run`), or the rehearsal's PIN source. `attach`: the `--attach STEP=PATH` paths; an
/// attach step without one asks for its path in the TUI's path modal.
pub fn conduct(
    loaded: &LoadedScript,
    mode: RunMode,
    pins: Option<&mut (dyn PinSource + Send)>,
    attach: BTreeMap<String, String>,
    open: OpenFn,
    out: &Path,
) -> Result<Outcome> {
    let mut model = Model::new(
        &loaded.script,
        mode.rehearsal,
        &out.display().to_string(),
        colour_wanted(),
    );
    let (to_ui, from_all) = mpsc::channel::<Msg>();
    let (input_tx, input_rx) = mpsc::channel::<Input>();
    let (pin_tx, pin_rx) = mpsc::channel::<Result<SecretString>>();
    let (attach_tx, attach_rx) = mpsc::channel::<Option<String>>();
    let (card_tx, card_rx) = mpsc::channel::<CardPresentation>();
    // try_init enters the alternate screen and raw mode, and installs a panic hook that restores
    // the terminal before the panic message is printed.
    let mut terminal = ratatui::try_init().map_err(|e| {
        Error::env(
            format!("could not set up the terminal: {e}"),
            "run keyrite in a terminal, or use --plain",
        )
    })?;
    let stop = AtomicBool::new(false);
    let (ui, driven) = std::thread::scope(|s| {
        let driver_tx = to_ui.clone();
        let driver = s.spawn(move || {
            let mut operator = WithAttachments {
                inner: Box::new(proxy::TuiOperator {
                    to_ui: driver_tx.clone(),
                    inputs: input_rx,
                    attachments: attach_rx,
                    cards: card_rx,
                }),
                paths: attach,
            };
            let mut modal_pins = proxy::TuiPins {
                to_ui: driver_tx.clone(),
                pins: pin_rx,
            };
            let pins: &mut dyn PinSource = match pins {
                Some(p) => p,
                None => &mut modal_pins,
            };
            let mut opener = open;
            let result = Ceremony {
                loaded,
                mode,
                operator: &mut operator,
                pins,
                opener: &mut opener,
            }
            .run(out);
            let finished = match &result {
                Ok(o) => Finished {
                    completed: o.completed,
                    reason: o.reason.clone(),
                    log_head: Some(o.log_head.clone()),
                    report_sha256: Some(o.report_sha256.clone()),
                    error: None,
                },
                Err(e) => Finished {
                    completed: false,
                    reason: None,
                    log_head: None,
                    report_sha256: None,
                    error: Some(e.to_string()),
                },
            };
            let _ = driver_tx.send(Msg::Driver(DriverEvent::Finished(finished)));
            result
        });
        let keys_tx = to_ui.clone();
        let stop = &stop;
        s.spawn(move || read_terminal(keys_tx, stop));
        let ui = ui_loop(
            &mut terminal,
            &mut model,
            &from_all,
            Replies {
                input: input_tx,
                pin: pin_tx,
                attachment: attach_tx,
                card: card_tx,
            },
            &out.join(LOG_FILE),
            || driver.is_finished(),
        );
        stop.store(true, Ordering::Relaxed);
        (ui, driver.join())
    });
    let restored = ratatui::try_restore();
    let outcome = match driven {
        Ok(outcome) => outcome,
        // A panic on the driver thread is a keyrite defect: surface it, now that the terminal is back.
        Err(payload) => std::panic::resume_unwind(payload),
    };
    if let Err(e) = ui.and(restored) {
        crate::error::eprint_warning(&format!("the terminal UI failed: {e}"));
    }
    // The final screen is gone with the alternate screen: its notices (every report signature, or
    // why one is missing) and the ceremony's warnings stay in the terminal.
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout();
        for line in pin_view::summary(&model) {
            let _ = writeln!(stdout, "{line}");
        }
    }
    outcome
}

/// Forward key presses and resizes to the UI loop until told to stop.
fn read_terminal(tx: Sender<Msg>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match event::poll(TICK) {
            Ok(true) => {
                let msg = match event::read() {
                    Ok(Event::Key(key)) if key.kind == KeyEventKind::Press => Msg::Key(key),
                    Ok(Event::Resize(..)) => Msg::Tick(clock()),
                    Ok(_) => continue,
                    Err(_) => return,
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
            Ok(false) => {}
            Err(_) => return,
        }
    }
}

fn clock() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:02}:{:02}:{:02}", now.hour(), now.minute(), now.second())
}

/// The audit-log tail, re-read only when the file changed size.
struct LogTail<'p> {
    path: &'p Path,
    len: u64,
}

impl LogTail<'_> {
    fn poll(&mut self) -> Option<Vec<EvidenceRow>> {
        let len = std::fs::metadata(self.path).ok()?.len();
        if len == self.len {
            return None;
        }
        self.len = len;
        let text = std::fs::read_to_string(self.path).ok()?;
        Some(evidence_rows(&text))
    }
}

/// Parse the last entries of audit.jsonl for the evidence pane; a half-written last line is skipped.
pub fn evidence_rows(text: &str) -> Vec<EvidenceRow> {
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(EVIDENCE_TAIL);
    lines[skip..]
        .iter()
        .filter_map(|line| serde_json::from_str::<AuditEntry>(line).ok())
        .map(|e| EvidenceRow {
            seq: e.seq,
            time: e.time.get(11..19).unwrap_or(&e.time).to_string(),
            kind: e.kind().to_string(),
            hash: e.hash.chars().take(8).collect(),
            step: e.step.clone(),
            reason: e
                .event
                .get("reason")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
        })
        .collect()
}

/// Where the UI thread answers the driver's questions.
struct Replies {
    input: Sender<Input>,
    pin: Sender<Result<SecretString>>,
    attachment: Sender<Option<String>>,
    card: Sender<CardPresentation>,
}

fn ui_loop(
    terminal: &mut ratatui::DefaultTerminal,
    model: &mut Model,
    rx: &Receiver<Msg>,
    replies: Replies,
    log: &Path,
    driver_done: impl Fn() -> bool,
) -> std::io::Result<()> {
    let mut tail = LogTail { path: log, len: 0 };
    let mut next_tick = Instant::now();
    let mut carried: Option<Msg> = None;
    loop {
        let mut msgs: Vec<Msg> = carried.take().into_iter().collect();
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + TICK;
            msgs.push(Msg::Tick(clock()));
        }
        match rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(msg) => msgs.push(msg),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        loop {
            match rx.try_recv() {
                Ok(msg) => msgs.push(msg),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Ok(()),
            }
        }
        if let Some(rows) = tail.poll() {
            msgs.push(Msg::Evidence(rows));
        }
        for msg in msgs {
            for command in update(model, msg) {
                match command {
                    // A closed channel means the driver has finished; the final screen says how.
                    Command::Reply(input) => {
                        let _ = replies.input.send(input);
                    }
                    Command::Pin(pin) => {
                        let _ = replies.pin.send(pin);
                    }
                    Command::Attachment(path) => {
                        let _ = replies.attachment.send(path);
                    }
                    Command::Card(card) => {
                        let _ = replies.card.send(card);
                    }
                    Command::Quit => return Ok(()),
                }
            }
        }
        terminal.draw(|frame| view::view(model, frame))?;
        // The driver thread ended without saying so (a panic): leave, and let the caller report it.
        if model.finished.is_none() && driver_done() {
            match rx.try_recv() {
                Ok(msg) => carried = Some(msg),
                Err(_) => return Ok(()),
            }
        }
    }
}

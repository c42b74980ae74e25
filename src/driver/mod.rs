//! The one effect loop: engine ⇄ HSM ⇄ evidence ⇄ the people in the room ([`Operator`]).
//!
//! The engine decides; this loop only carries out its effects, stamps times, and writes evidence.
//! Every engine event and every HSM intent and result goes into the audit log before the loop moves on.

mod actions;
mod attach;
pub mod cards;
pub mod hsm_login;
pub mod kill_hook;
pub mod lock;
mod names;
pub mod operator;
pub mod personal_cards;
pub mod pin_input;
pub mod pins;
pub mod preflight;
pub mod prompt;
mod quorum;
mod quorum_cards;
mod quorum_checks;
mod quorum_finish;
mod quorum_pins;
mod quorum_reshare;
mod quorum_retire;
mod quorum_sealed;
#[cfg(test)]
mod quorum_tests;
pub mod rehearsal;
pub mod reopen;
pub mod resume;
#[cfg(test)]
mod resume_goldens;
pub mod resume_quorum;
pub mod startup;
pub mod tokens;

use crate::engine::{Effect, Engine, Event, Input};
use crate::error::{Error, Result};
use crate::evidence::bundle::{Bundle, LOG_FILE, REPORT_FILE, REPORT_PDF_FILE, SCRIPT_FILE};
use crate::evidence::events::{ConfirmationSource, ParticipantRecord, PlannedStep, Record};
use crate::evidence::log::AuditLog;
use crate::evidence::report;
use crate::hsm::{Hsm, HsmError, KeyPairInfo};
use crate::script::{LoadedScript, TokenSelector};
use operator::{Notice, Operator};
use pins::PinSource;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

pub use actions::Opener;
pub use personal_cards::CardSetup;

/// How a run differs between `run` and `rehearse`.
#[derive(Debug, Clone)]
pub struct RunMode {
    pub rehearsal: bool,
    /// Refuse the pre-flight while a non-loopback interface is up (`run` at high and very-high).
    pub enforce_offline: bool,
    /// The PKCS#11 module actually used (rehearsals replace the script's module with SoftHSM's).
    pub module: String,
    pub token: TokenSelector,
    /// The module and selector actually used for each `[[hsms]]` token, by name (rehearsals
    /// replace them with throw-away SoftHSM2 tokens); empty for a one-token script.
    pub tokens: BTreeMap<String, (String, TokenSelector)>,
    /// Where the confirmations come from; recorded so a report shows how dual control was given.
    pub confirmations: ConfirmationSource,
    /// Where the participants' personal cards are, and the CA that issued them.
    pub cards: CardSetup,
}

/// How the ceremony ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub completed: bool,
    pub reason: Option<String>,
    /// The abort came from the HSM (exit code 4) rather than from people or policy (exit code 3).
    pub hsm_failure: bool,
    pub report_sha256: String,
    /// Hash of the last log entry before report_written, for the paper script.
    pub log_head: String,
    /// Required report signatures that could not be made ("person (role): why"); the bundle is
    /// complete otherwise, and `keyrite verify` names them as missing.
    pub unsigned: Vec<String>,
}

/// Everything one run needs; [`Ceremony::run`] consumes it.
pub struct Ceremony<'a> {
    pub loaded: &'a LoadedScript,
    pub mode: RunMode,
    pub operator: &'a mut dyn Operator,
    pub pins: &'a mut dyn PinSource,
    pub opener: &'a mut Opener<'a>,
}

pub(crate) struct State {
    pub log: AuditLog,
    pub bundle: Bundle,
    pub hsm: Option<Box<dyn Hsm + Send>>,
    pub keys: BTreeMap<String, KeyPairInfo>,
    pub hsm_failure: bool,
    /// Open personal cards, by person.
    pub cards: BTreeMap<String, personal_cards::Card>,
    /// After activate_quorum: the combined secret and its commitments (for a reshare). Zeroized on drop.
    pub quorum: Option<(crate::quorum::Secret, crate::quorum::Commitments)>,
    /// Carded people whose card could not sign a confirmation (logged `confirmation_unsigned`),
    /// with the reason; they cannot sign the report either.
    pub unsigned_by: BTreeMap<String, String>,
    /// Set by an action the room withdrew from (Esc in the PIN dialog): the step goes back to its
    /// confirmations instead of failing.
    pub withdrawn: Option<String>,
    /// `keyrite resume`: the tokens the interrupted run had logged in (by log name, `None` the
    /// primary); the next action that needs a token's session logs it in again first (on the
    /// record). `true`: the session was the quorum's, so the cards are presented again.
    pub relogin: BTreeMap<Option<String>, bool>,
    /// Issue 12: keys whose `key_destroyed` is logged (skipped when existing keys are found).
    pub destroyed_keys: std::collections::BTreeSet<String>,
    /// `keyrite resume`: the destruction in flight at the interruption (actions/destroy.rs).
    pub destroying: Option<actions::destroy::Doomed>,
    /// `keyrite resume`: keys from earlier ceremonies the interrupted run logged as found
    /// (`existing_key_found`), by name, with the logged key hash. Their logged public key stands in
    /// `keys` until the token is logged in again; then they are found again and must have that hash.
    pub refind: BTreeMap<String, String>,
    /// The token whose session `hsm` holds (`None`: the primary); tokens.rs.
    pub current_token: Option<String>,
    /// The other tokens' sessions, by log name (tokens.rs).
    pub parked: BTreeMap<Option<String>, tokens::Parked>,
    /// `keyrite resume`: the key whose generation was in flight at the interruption, adopted if
    /// the token holds it.
    pub adopt: Option<String>,
    /// The step and operation of the last `hsm_intent` whose result is not logged yet, for the
    /// test-only crash hook's `after-OP` points.
    pub intent_open: Option<(String, String)>,
    /// Issue 11: the certificate for another CA that the current step will sign, built and shown
    /// to the room when the step started (actions/certs.rs).
    pub prepared: Option<actions::certs::PreparedIssue>,
    /// The folder of the script file, for input paths the script gives (None: the current folder).
    pub script_dir: Option<std::path::PathBuf>,
    /// CRLs whose `crl_signed` entry is in the log (`keyrite resume` does not sign them again).
    pub crls_signed: std::collections::BTreeSet<String>,
    /// Keys whose `key_uri` entry this run has written.
    pub key_uris_logged: std::collections::BTreeSet<String>,
    /// Issue 12: keys whose `key_backed_up` / `key_restored` entry is in the log (`keyrite resume`
    /// completes such a step without doing it again).
    pub backups_logged: std::collections::BTreeSet<String>,
    pub restores_logged: std::collections::BTreeSet<String>,
    /// Issue 12, `keyrite resume`: the key whose restore was interrupted; what it left on the target
    /// is destroyed before it runs again.
    pub restore_undo: Option<String>,
}

pub fn now_utc() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl State {
    /// A run's state over a bundle and its log, before anything is done.
    pub(crate) fn new(log: AuditLog, bundle: Bundle) -> State {
        State {
            log,
            bundle,
            hsm: None,
            keys: BTreeMap::new(),
            hsm_failure: false,
            cards: BTreeMap::new(),
            quorum: None,
            unsigned_by: BTreeMap::new(),
            withdrawn: None,
            relogin: BTreeMap::new(),
            current_token: None,
            destroyed_keys: Default::default(),
            destroying: None,
            refind: BTreeMap::new(),
            parked: BTreeMap::new(),
            adopt: None,
            intent_open: None,
            prepared: None,
            script_dir: None,
            crls_signed: Default::default(),
            key_uris_logged: Default::default(),
            backups_logged: Default::default(),
            restores_logged: Default::default(),
            restore_undo: None,
        }
    }

    /// The HSM answered the operation whose intent is open: the crash hook's `after-OP` point
    /// (also passed by the next log entry, whichever comes first).
    pub fn hsm_returned(&mut self) {
        if let Some((step, op)) = self.intent_open.take() {
            kill_hook::point(&step, &format!("after-{op}"));
        }
    }

    pub fn record(
        &mut self,
        step: Option<String>,
        actors: Vec<String>,
        event: &impl serde::Serialize,
    ) -> Result<()> {
        self.record_entry(step, actors, event).map(|_| ())
    }

    /// [`Self::record`], returning the entry as written.
    pub fn record_entry(
        &mut self,
        step: Option<String>,
        actors: Vec<String>,
        event: &impl serde::Serialize,
    ) -> Result<crate::evidence::log::AuditEntry> {
        let entry = self.record_unsynced(step, actors, event)?;
        // A result announces no action: the next sync (at the latest before the next action)
        // makes it durable with whatever follows it.
        if !crate::evidence::log::RESULT_KINDS.contains(&entry.kind()) {
            self.sync_log()?;
        }
        Ok(entry)
    }

    /// Make every entry written so far durable: before any action (HSM, card, file) they announce.
    pub fn sync_log(&mut self) -> Result<()> {
        let path = self.log.path().to_path_buf();
        self.log.sync().map_err(|e| Error::io("sync", &path, &e))
    }

    /// [`Self::record_entry`] without the fsync, for engine events: the next action syncs first.
    fn record_unsynced(
        &mut self,
        step: Option<String>,
        actors: Vec<String>,
        event: &impl serde::Serialize,
    ) -> Result<crate::evidence::log::AuditEntry> {
        let value = serde_json::to_value(event).map_err(|e| {
            Error::env(
                format!("could not encode a log event: {e}"),
                "report this keyrite defect",
            )
        })?;
        self.hsm_returned();
        let path = self.log.path().to_path_buf();
        self.log
            .append_unsynced(now_utc(), step, actors, value)
            .map_err(|e| Error::io("append to", &path, &e))
    }

    pub fn hsm_failed(&mut self, step: &str, operation: &str, err: &HsmError) -> Result<()> {
        self.hsm_failure = true;
        let rec = Record::HsmFailed {
            operation: operation.into(),
            function: err.function.clone(),
            ckr: err.ckr.clone(),
            what: err.what.clone(),
        };
        self.record(Some(step.into()), vec![], &rec)
    }
}

impl Ceremony<'_> {
    pub fn run(self, out: &Path) -> Result<Outcome> {
        let Ceremony {
            loaded,
            mode,
            operator,
            pins,
            opener,
        } = self;
        // Every refusal that can come before the first step comes before the bundle exists.
        let attachments = operator.given_attachments();
        startup::check(&loaded.script, &mode, out, &attachments, opener)?;
        let script_dir = Path::new(&loaded.file_name).parent();
        actions::certs::check_inputs_before_start(&loaded.script, script_dir, &attachments)?;
        let crl_inputs = actions::crl::read_inputs(loaded)?;
        let opened_cards = personal_cards::open_all(&loaded.script, &mode.cards, opener)?;
        let bundle = Bundle::create(out)?;
        // Held to the end of the run; the kernel drops it however keyrite ends.
        let _lock = lock::FolderLock::take(out, "the bundle folder")?;
        bundle.write_new(SCRIPT_FILE, loaded.source.as_bytes())?;
        let log_path = bundle.path(LOG_FILE);
        let log = AuditLog::create(&log_path).map_err(|e| Error::io("create", &log_path, &e))?;
        let mut state = State::new(log, bundle);
        state.script_dir = Path::new(&loaded.file_name).parent().map(Path::to_path_buf);
        state.record(None, vec![], &started_record(loaded, &mode))?;
        actions::crl::copy_inputs(&mut state, &loaded.script, &crl_inputs)?;
        let mut engine = Engine::new(&loaded.script);
        let registered = personal_cards::register(&mut state, &mode.cards, opened_cards);
        let mut io = Io {
            mode: &mode,
            operator,
            pins,
            opener,
        };
        let driven = registered.and_then(|()| {
            let start = engine.start();
            drive(&mut state, &mut engine, loaded, &mut io, start)
        });
        if let Err(err) = driven {
            // Evidence or the room failed mid-ceremony: still abort, log out and write the report
            // so the bundle stays verifiable, then report the original error.
            let reason = format!("keyrite stopped: {err}");
            for effect in engine.handle(Input::Abort { reason }) {
                if let Effect::Record(event) = effect {
                    let _ = state.record(event.step().map(str::to_string), event.actors(), &event);
                }
            }
            let _ = tokens::close_all(&mut state, None);
            let _ = finish(state, engine);
            return Err(err);
        }
        tokens::close_all(&mut state, None)?;
        // The report signatures come after report.json (and report.pdf) are final.
        let bundle = state.bundle.clone();
        let mut cards = std::mem::take(&mut state.cards);
        let refused = std::mem::take(&mut state.unsigned_by);
        let mut outcome = finish(state, engine)?;
        kill_hook::point("report", "before-signatures");
        outcome.unsigned = personal_cards::sign_reports(
            &bundle,
            &loaded.script,
            &mut cards,
            &refused,
            io.pins,
            io.operator,
        )?;
        Ok(outcome)
    }
}

/// The room and the HSM, as the effect loop reaches them.
pub(crate) struct Io<'m, 'a> {
    mode: &'m RunMode,
    operator: &'a mut dyn Operator,
    pins: &'a mut dyn PinSource,
    opener: &'a mut Opener<'a>,
}

/// The effect loop: carry out the engine's effects (`pending` first), then ask the room for the
/// next input.
fn drive(
    state: &mut State,
    engine: &mut Engine,
    loaded: &LoadedScript,
    io: &mut Io<'_, '_>,
    mut pending: Vec<Effect>,
) -> Result<()> {
    let script = &loaded.script;
    let total = engine.steps().len();
    let participant_names: Vec<String> =
        script.participants.iter().map(|p| p.name.clone()).collect();
    let mut step_started = Instant::now();
    loop {
        while let Some(effect) = (!pending.is_empty()).then(|| pending.remove(0)) {
            match effect {
                Effect::Record(event) => {
                    // Engine events announce no action: synced with the next one (below, or a record).
                    let entry = state.record_unsynced(
                        event.step().map(str::to_string),
                        event.actors(),
                        &event,
                    )?;
                    match &event {
                        Event::Confirmed {
                            step, person, role, ..
                        } => {
                            if state.cards.contains_key(person.as_str()) {
                                state.sync_log()?; // the card signs this entry
                            }
                            // A card that cannot sign stops the ceremony on the record.
                            if let Some(reason) = personal_cards::sign_confirmation(
                                state,
                                script,
                                &entry,
                                person,
                                *role,
                                step,
                                io.pins,
                                io.operator,
                            )? {
                                pending.extend(engine.handle(Input::Abort { reason }));
                            }
                        }
                        Event::StepStarted { .. } => {
                            step_started = Instant::now();
                            let index = position(engine);
                            let plan = &engine.steps()[index];
                            let instructions = &script.steps[index].instructions;
                            io.operator.notice(Notice::StepStarted {
                                index,
                                total,
                                step: plan,
                                instructions,
                            });
                            actions::on_step_started(state, script, io.mode, index, io.operator)?;
                        }
                        Event::StepWithdrawn { reason, .. } => {
                            io.operator.notice(Notice::Warning {
                                text: &format!(
                                "back at the step: {reason}; perform it again when ready, or abort"
                            ),
                            })
                        }
                        Event::ConfirmationRefused { reason, .. }
                        | Event::StepRefused { reason, .. } => {
                            io.operator.notice(Notice::Refused { reason })
                        }
                        Event::StepCompleted { step } => {
                            kill_hook::point(step, "after-step");
                            if let Some(plan) = engine.steps().iter().find(|s| &s.id == step) {
                                io.operator.notice(Notice::StepDone {
                                    step: plan,
                                    elapsed: step_started.elapsed(),
                                });
                            }
                        }
                        _ => {}
                    }
                }
                Effect::Perform { index, action } => {
                    // The authorisation is on disk before the action: synced here, or with the
                    // action's own first synced entry when nothing precedes that (actions.rs).
                    if !actions::syncs_before_any_effect(action)
                        || !state.relogin.is_empty()
                        || state.adopt.is_some()
                    {
                        state.sync_log()?;
                    }
                    let ctx = actions::Context {
                        script,
                        mode: io.mode,
                        step: &script.steps[index],
                    };
                    let input = match actions::perform(
                        state,
                        &ctx,
                        action,
                        io.operator,
                        io.pins,
                        io.opener,
                    )? {
                        Ok(()) => Input::ActionSucceeded,
                        Err(reason) => match state.withdrawn.take() {
                            Some(_) => Input::ActionWithdrawn { reason },
                            None => Input::ActionFailed { reason },
                        },
                    };
                    pending.extend(engine.handle(input));
                }
            }
        }
        if engine.is_finished() {
            return Ok(());
        }
        let input = match engine.current() {
            Some(step) => io.operator.next_input(step),
            None => return Ok(()),
        };
        let input = names::resolve(input, &participant_names, io.operator);
        pending.extend(engine.handle(input));
    }
}

fn position(engine: &Engine) -> usize {
    match engine.phase() {
        crate::engine::Phase::Confirming(i) | crate::engine::Phase::Performing(i) => i,
        _ => 0,
    }
}

fn started_record(loaded: &LoadedScript, mode: &RunMode) -> Record {
    let script = &loaded.script;
    Record::CeremonyStarted {
        ceremony_id: script.ceremony.id.clone(),
        name: script.ceremony.name.clone(),
        kind: script.ceremony.kind.clone(),
        place: script.ceremony.place.clone(),
        security_level: script.ceremony.security_level,
        rehearsal: mode.rehearsal,
        confirmations: mode.confirmations.clone(),
        script_file: SCRIPT_FILE.into(),
        script_sha256: loaded.sha256.clone(),
        tool: "keyrite".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        participants: script
            .participants
            .iter()
            .map(|p| ParticipantRecord {
                name: p.name.clone(),
                roles: p.roles().collect(),
                organisation: p.organisation.clone(),
            })
            .collect(),
        steps: script
            .steps
            .iter()
            .map(|s| PlannedStep {
                id: s.id.clone(),
                title: s.title.clone(),
                action: s.action,
            })
            .collect(),
    }
}

/// Write report.json from the log, then bind it with the final `report_written` entry.
fn finish(mut state: State, engine: Engine) -> Result<Outcome> {
    let log = std::fs::File::open(state.log.path())
        .map_err(|e| Error::io("read back", state.log.path(), &e))?;
    let report = crate::evidence::scan::report_of(std::io::BufReader::new(log))
        .map_err(|e| Error::env(e, "keep the bundle and report this keyrite defect"))?;
    // Encoded straight into the file: a long report is not held twice.
    let written = state
        .bundle
        .write_new_unlisted(REPORT_FILE, |w| report::write_json(&report, w))?;
    // report.pdf is a pure rendering of report.json; verify re-renders it and demands equality.
    // Written as its pages are laid out: the document is never held.
    state.bundle.write_new_unlisted(REPORT_PDF_FILE, |w| {
        crate::evidence::pdf::render_to(&report, &written.sha256, w)
    })?;
    // Both files' entries are on disk before the log names the report.
    state.bundle.sync_folder("")?;
    state.record(
        None,
        vec![],
        &Record::ReportWritten {
            report_sha256: written.sha256.clone(),
        },
    )?;
    Ok(Outcome {
        completed: engine.phase() == crate::engine::Phase::Completed,
        reason: report.abort_reason,
        hsm_failure: state.hsm_failure,
        report_sha256: written.sha256,
        log_head: report.log_head.hash,
        unsigned: Vec::new(),
    })
}

#[cfg(test)]
impl State {
    /// A fresh bundle at `out` with an empty log, for tests of single actions.
    pub(crate) fn for_tests(out: &Path) -> State {
        let bundle = Bundle::create(out).expect("a fresh bundle");
        let log = AuditLog::create(&bundle.path(LOG_FILE)).expect("a fresh log");
        State::new(log, bundle)
    }
}

#[cfg(test)]
mod retry_tests;
#[cfg(test)]
mod tests;

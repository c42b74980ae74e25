//! Taking up a ceremony whose keyrite stopped before its end (a kill, a power cut, a full disk).
//! `keyrite abort OUT --reason TEXT` closes it on the record; `keyrite resume OUT` carries it on.
//!
//! Both first check the bundle as far as it goes: the chain of every complete log line and the
//! replay of every logged decision. A bundle that fails is damaged or tampered with, not merely
//! interrupted, and is refused. What the interrupted keyrite left half-done is kept on the record
//! in a `reopened` entry: a torn last line (removed, its hash kept), the HSM operation in flight,
//! report files the log never bound (removed, their hashes kept).

use super::lock::FolderLock;
use super::operator::{Notice, Operator};
use super::personal_cards::{self, CardSetup};
use super::pins::PinSource;
use super::{finish, Opener, Outcome, State};
use crate::engine::{Effect, Engine, Event, Input, Phase};
use crate::error::{Error, Result};
use crate::evidence::bundle::{
    Bundle, ARTIFACTS_DIR, LOG_FILE, REPORT_FILE, REPORT_PDF_FILE, SCRIPT_FILE, SIGNERS_CA_FILE,
};
use crate::evidence::events::{DiscardedFile, Record, ReopenRecord, TornTail};
use crate::evidence::log::{read_chain, AuditEntry, AuditLog};
use crate::evidence::replay::{replay_partial, LogEnd};
use crate::evidence::report::{parse_event, Parsed};
use crate::script::LoadedScript;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// A bundle whose ceremony stopped before `report_written`, checked as far as it goes and locked.
pub struct Interrupted {
    pub loaded: LoadedScript,
    bundle: Bundle,
    entries: Vec<AuditEntry>,
    end: LogEnd,
    /// Bytes after the log's last newline.
    torn: Vec<u8>,
    _lock: FolderLock,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn refuse(out: &Path, what: String) -> Error {
    Error::input(
        format!("{}: {what}", out.display()),
        format!(
            "this is damage or tampering, not an interruption: keep the bundle as it is and check \
             it with `keyrite verify {}`",
            out.display()
        ),
    )
}

impl Interrupted {
    /// Lock `out`, check its script, log and replay, and refuse a bundle whose ceremony has ended.
    pub fn take_up(out: &Path) -> Result<Interrupted> {
        Self::take_up_or_ended(out)?.ok_or_else(|| {
            Error::input(
                format!(
                    "the ceremony in {} already ended with its report",
                    out.display()
                ),
                format!(
                    "nothing to take up; check it with `keyrite verify {}` (`keyrite resume` \
                     makes report signatures an interruption cut off)",
                    out.display()
                ),
            )
        })
    }

    /// [`Self::take_up`], or `None` when the log already ends with `report_written`.
    pub fn take_up_or_ended(out: &Path) -> Result<Option<Interrupted>> {
        let Checked {
            lock,
            bundle,
            entries,
            torn,
            loaded,
        } = Checked::read(out)?;
        if entries.last().is_some_and(|e| e.kind() == "report_written") {
            return Ok(None);
        }
        let end = replay_partial(&loaded.script, &entries)
            .map_err(|e| refuse(out, format!("the log does not replay: {e}")))?;
        Ok(Some(Interrupted {
            loaded,
            bundle,
            entries,
            end,
            torn,
            _lock: lock,
        }))
    }

    pub(super) fn entries(&self) -> &[AuditEntry] {
        &self.entries
    }

    pub(super) fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The id and action of the step the ceremony stands at.
    pub(super) fn current_step(&self) -> Option<(String, crate::script::Action)> {
        self.end.engine.current().map(|s| (s.id.clone(), s.action))
    }

    /// Where the ceremony stands once the events the log owes are written.
    pub fn phase(&self) -> Phase {
        match self.end.owed.last() {
            Some(Event::CeremonyCompleted) => Phase::Completed,
            Some(Event::CeremonyAborted { .. }) => Phase::Aborted,
            _ => self.end.engine.phase(),
        }
    }

    /// The operation and detail of the last `hsm_intent` not followed by a result.
    pub fn in_flight(&self) -> Option<(String, String)> {
        in_flight_of(&self.entries)
    }

    /// Persons whose card refused during the run: they cannot sign the report either.
    pub(super) fn refused_cards(&self) -> BTreeMap<String, String> {
        self.entries
            .iter()
            .filter_map(|e| match parse_event(e) {
                Ok(Parsed::Record(Record::ConfirmationUnsigned(u))) => Some((u.person, u.reason)),
                _ => None,
            })
            .collect()
    }

    /// Repair what the interrupted keyrite left half-written, open the log for appending, record
    /// `reopened` and the engine events the log owes. Returns the state and the engine.
    pub(super) fn continue_log(
        self,
        by: &str,
    ) -> Result<(State, Engine, LoadedScript, FolderLock)> {
        let Interrupted {
            loaded,
            bundle,
            entries,
            end,
            torn,
            _lock,
        } = self;
        let log_path = bundle.path(LOG_FILE);
        let torn_tail = (!torn.is_empty()).then(|| TornTail {
            bytes: torn.len() as u64,
            sha256: sha256_hex(&torn),
        });
        if torn_tail.is_some() {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&log_path)
                .map_err(|e| Error::io("open", &log_path, &e))?;
            let keep: u64 = std::fs::metadata(&log_path)
                .map_err(|e| Error::io("read", &log_path, &e))?
                .len()
                - torn.len() as u64;
            file.set_len(keep)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io("truncate the torn last line of", &log_path, &e))?;
        }
        let mut discarded = Vec::new();
        for name in unbound_files(&bundle, &entries) {
            // A certificate the HSM signed and keyrite saved, its record lost: the resumed step
            // adopts it (actions/certs_adopt.rs), so it is never signed twice.
            if by == "resume"
                && super::actions::certs_adopt::signed_by_intent(&bundle, &entries, &name)
            {
                continue;
            }
            let path = bundle.path(&name);
            if let Ok(bytes) = std::fs::read(&path) {
                discarded.push(DiscardedFile {
                    file: name,
                    sha256: sha256_hex(&bytes),
                });
                std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, &e))?;
            }
        }
        let last = entries
            .last()
            .ok_or_else(|| Error::env("the log is empty", "report this keyrite defect"))?;
        let log = AuditLog::continue_after(&log_path, last)
            .map_err(|e| Error::io("open", &log_path, &e))?;
        let in_flight = in_flight_of(&entries).map(|(op, _)| op);
        let mut state = State::new(log, bundle);
        state.record(
            None,
            vec![],
            &Record::Reopened(ReopenRecord {
                by: by.into(),
                after_seq: last.seq,
                after_time: last.time.clone(),
                in_flight,
                torn_tail,
                discarded,
            }),
        )?;
        for event in &end.owed {
            state.record(event.step().map(str::to_string), event.actors(), event)?;
        }
        Ok((state, end.engine, loaded, _lock))
    }
}

/// A locked bundle whose complete log lines chain and whose script is the one the log began with.
struct Checked {
    lock: FolderLock,
    bundle: Bundle,
    entries: Vec<AuditEntry>,
    /// Bytes after the log's last newline.
    torn: Vec<u8>,
    loaded: LoadedScript,
}

impl Checked {
    fn read(out: &Path) -> Result<Checked> {
        let lock = FolderLock::take(out, "the bundle folder")?;
        let bundle = Bundle::open(out);
        let log_path = bundle.path(LOG_FILE);
        let bytes = std::fs::read(&log_path).map_err(|e| Error::io("read", &log_path, &e))?;
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let (lines, torn) = bytes.split_at(whole);
        let entries = read_chain(lines)
            .map_err(|e| refuse(out, format!("log line {}: {}", e.line, e.what)))?;
        let script_path = bundle.path(SCRIPT_FILE);
        let source = std::fs::read_to_string(&script_path)
            .map_err(|e| Error::io("read", &script_path, &e))?;
        let started = match entries.first().map(parse_event) {
            Some(Ok(Parsed::Record(Record::CeremonyStarted { script_sha256, .. }))) => {
                script_sha256
            }
            _ => {
                return Err(refuse(
                    out,
                    "the log does not begin with ceremony_started".into(),
                ))
            }
        };
        if sha256_hex(source.as_bytes()) != started {
            return Err(refuse(
                out,
                "script.toml is not the script the log began with".into(),
            ));
        }
        let loaded = crate::script::parse(SCRIPT_FILE, &source)
            .map_err(|_| refuse(out, "script.toml does not parse".into()))?;
        Ok(Checked {
            lock,
            bundle,
            entries,
            torn: torn.to_vec(),
            loaded,
        })
    }
}

/// A bundle whose log ends with `report_written` (`keyrite resume` then only makes the report
/// signatures an interruption cut off).
pub struct Ended {
    pub loaded: LoadedScript,
    pub refused: BTreeMap<String, String>,
    pub completed: bool,
    pub reason: Option<String>,
    pub report_sha256: String,
    pub log_head: String,
    _lock: FolderLock,
}

impl Ended {
    pub fn take_up(out: &Path) -> Result<Ended> {
        let checked = Checked::read(out)?;
        let n = checked.entries.len();
        let (Some(last), Some(head)) = (
            checked.entries.last(),
            checked.entries.get(n.wrapping_sub(2)),
        ) else {
            return Err(refuse(out, "the log is too short".into()));
        };
        let text = |e: &AuditEntry, key: &str| {
            e.event
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let aborted = checked
            .entries
            .iter()
            .find(|e| e.kind() == "ceremony_aborted");
        let refused = checked
            .entries
            .iter()
            .filter_map(|e| match parse_event(e) {
                Ok(Parsed::Record(Record::ConfirmationUnsigned(u))) => Some((u.person, u.reason)),
                _ => None,
            })
            .collect();
        Ok(Ended {
            refused,
            completed: checked
                .entries
                .iter()
                .any(|e| e.kind() == "ceremony_completed"),
            reason: aborted.and_then(|e| text(e, "reason")),
            report_sha256: text(last, "report_sha256").unwrap_or_default(),
            log_head: head.hash.clone(),
            loaded: checked.loaded,
            _lock: checked.lock,
        })
    }
}

/// Files the interrupted run wrote that no log entry binds: the report (bound only by
/// `report_written`, which never came) and artifacts written just before their `artifact_written`.
fn unbound_files(bundle: &Bundle, entries: &[AuditEntry]) -> Vec<String> {
    let bound: Vec<String> = entries
        .iter()
        .filter_map(|e| match parse_event(e) {
            Ok(Parsed::Record(Record::ArtifactWritten(a))) => Some(a.path),
            _ => None,
        })
        .collect();
    let artifacts = std::fs::read_dir(bundle.path(ARTIFACTS_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .map(|f| format!("{ARTIFACTS_DIR}/{}", f.file_name().to_string_lossy()))
        .filter(|name| !bound.contains(name));
    [REPORT_FILE.to_string(), REPORT_PDF_FILE.to_string()]
        .into_iter()
        .chain(artifacts)
        .collect()
}

fn in_flight_of(entries: &[AuditEntry]) -> Option<(String, String)> {
    let probe = entries.iter().rposition(|e| e.kind() == "hsm_intent")?;
    let answered = entries[probe + 1..].iter().any(|e| {
        matches!(
            e.kind(),
            "hsm_failed"
                | "hsm_activated"
                | "hsm_deactivated"
                | "key_generated"
                | "crl_signed"
                | "key_destroyed"
        ) || e.kind().starts_with("certificate")
    });
    let event = &entries[probe].event;
    let operation = event.get("operation")?.as_str()?.to_string();
    let detail = event
        .get("detail")?
        .as_str()
        .unwrap_or_default()
        .to_string();
    (!answered).then_some((operation, detail))
}

/// The CA for the report signatures: the one given, else the bundle's own copy from the run; the
/// cards' module: the one given, else the script's.
pub fn cards_setup(out: &Path, mut setup: CardSetup, script: &crate::script::Script) -> CardSetup {
    if setup.module.is_empty() {
        setup.module =
            (script.hsm.cards_module.clone()).unwrap_or_else(|| script.hsm.module.clone());
    }
    if setup.ca_pem.is_none() {
        setup.ca_pem = std::fs::read_to_string(out.join(SIGNERS_CA_FILE)).ok();
    }
    setup
}

/// The key whose generation was in flight at the interruption, looked for on the HSM (`hsm`: its
/// module and token) with the user PIN: `Ok(Some((step, label, key hash)))` when the token holds
/// it, `Err(why)` when it could not be looked at.
fn inspect_in_flight(
    up: &Interrupted,
    hsm: Option<(&str, &crate::script::TokenSelector)>,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
) -> std::result::Result<Option<(String, String, String)>, String> {
    let Some(label) = up.in_flight().and_then(|(op, detail)| {
        (op == "generate_key_pair")
            .then(|| {
                detail
                    .strip_prefix("label ")?
                    .split(',')
                    .next()
                    .map(str::to_string)
            })
            .flatten()
    }) else {
        return Ok(None);
    };
    let step = up.current_step().map(|(id, _)| id).unwrap_or_default();
    let (module, token) = hsm.ok_or("no HSM module was given")?;
    let mut hsm = opener(module, token).map_err(|e| e.to_string())?;
    let pin = pins
        .pin(&super::pins::PinRequest::HsmUser(hsm.identity()))
        .map_err(|e| e.to_string())?;
    hsm.login(&pin).map_err(|e| e.to_string())?;
    drop(pin);
    let found = match hsm.label_exists(&label) {
        Ok(true) => hsm
            .key_pair(&label)
            .map_err(|e| e.to_string())
            .map(|info| Some((step, label, crate::hsm::spki::key_hash(&info.spki_der)))),
        Ok(false) => Ok(None),
        Err(e) => Err(e.to_string()),
    };
    let _ = hsm.logout();
    found
}

/// `keyrite abort OUT --reason TEXT`: close an interrupted ceremony on the record, write its report
/// (ABORTED) and have it signed by the cards the security level requires. A key whose generation was
/// in flight is looked for on the HSM (`hsm`) first, and recorded (`found_after_interruption`, with
/// its key hash) when the token holds it.
#[allow(clippy::too_many_arguments)]
pub fn abort(
    out: &Path,
    reason: &str,
    setup: CardSetup,
    hsm: Option<(&str, &crate::script::TokenSelector)>,
    pins: &mut dyn PinSource,
    operator: &mut dyn Operator,
    opener: &mut Opener<'_>,
) -> Result<Outcome> {
    if reason.trim().is_empty() {
        return Err(Error::input(
            "an abort needs a reason",
            "say why, e.g. --reason \"power cut during key generation; HSM sealed in bag TEB-9\"",
        ));
    }
    let up = Interrupted::take_up(out)?;
    if up.phase() == Phase::Completed {
        return Err(Error::input(
            format!(
                "the ceremony in {} completed; only its report was cut off",
                out.display()
            ),
            format!("finish it with `keyrite resume {}` instead", out.display()),
        ));
    }
    let refused = up.refused_cards();
    let setup = cards_setup(out, setup, &up.loaded.script);
    let cards = match personal_cards::open_all(&up.loaded.script, &setup, opener) {
        Ok(opened) => personal_cards::into_cards(opened),
        Err(e) => {
            operator.notice(Notice::Warning {
                text: &format!("the report is not signed by card: {e}"),
            });
            BTreeMap::new()
        }
    };
    let found = inspect_in_flight(&up, hsm, pins, opener);
    let (mut state, mut engine, loaded, _lock) = up.continue_log("abort")?;
    match found {
        Ok(Some((step, label, key_hash))) => {
            operator.notice(Notice::Warning {
                text: &format!(
                    "key {label} was generated before the interruption and is on the token (key \
                     hash {key_hash}); it is recorded, and the ceremony that replaces this one must \
                     destroy it or adopt it on the record"
                ),
            });
            state.record(
                Some(step),
                vec![],
                &Record::FoundAfterInterruption {
                    operation: "generate_key_pair".into(),
                    label,
                    key_hash,
                },
            )?;
        }
        Ok(None) => {}
        Err(why) => operator.notice(Notice::Warning {
            text: &format!(
                "the HSM was not inspected for the key whose generation was interrupted ({why}); \
                 check the token for it before the next ceremony"
            ),
        }),
    }
    let reason = format!("closed after an interruption with `keyrite abort`: {reason}");
    for effect in engine.handle(Input::Abort { reason }) {
        if let Effect::Record(event) = effect {
            state.record(event.step().map(str::to_string), event.actors(), &event)?;
        }
    }
    let bundle = state.bundle.clone();
    let mut cards = cards;
    let mut outcome = finish(state, engine)?;
    outcome.unsigned = personal_cards::sign_reports(
        &bundle,
        &loaded.script,
        &mut cards,
        &refused,
        pins,
        operator,
    )?;
    Ok(outcome)
}

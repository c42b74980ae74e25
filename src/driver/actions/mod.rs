//! Carrying out a step's action once the engine has authorised it. Every HSM mutation is preceded by
//! an `hsm_intent` entry (write-ahead) and followed by its result.

use super::operator::{Notice, Operator};
use super::pins::PinSource;
use super::{now_utc, preflight, RunMode, State};
use crate::error::Result;
use crate::evidence::events::Record;
use crate::hsm::spki::{grouped_hex, key_hash};
use crate::hsm::{Hsm, HsmError};
use crate::script::{Action, Script, Step};
use der::pem::LineEnding;
use secrecy::SecretString;
use std::time::{Duration, Instant};

pub use crate::hsm::HsmOpener as Opener;

mod backup;
pub(super) mod certs;
pub(super) mod certs_adopt;
mod certs_inputs;
pub(super) mod crl;
pub(super) mod destroy;
mod generate;
pub(super) use generate::key_generated;
mod hsm_checks;
pub(super) mod keys;
mod restore;
mod root_cert;
pub(super) mod token_objects;

/// CKA manufacturerID of SoftHSM2 tokens, also when reached through the p11-kit proxy.
pub(super) const SOFTHSM_MANUFACTURER: &str = "SoftHSM project";
/// Kryoptic's manufacturerID: the throw-away token of a rehearsal with ML-DSA keys.
const KRYOPTIC_MANUFACTURER: &str = "Kryoptic Project";

/// May a rehearsal use this token? SoftHSM2's, or Kryoptic's when the rehearsal runs on its folder's
/// private Kryoptic configuration (a script with ML-DSA keys).
pub(super) fn rehearsal_token(manufacturer: &str) -> bool {
    manufacturer == SOFTHSM_MANUFACTURER
        || (manufacturer == KRYOPTIC_MANUFACTURER && super::rehearsal::pqc::active())
}

pub(super) struct Context<'a> {
    pub script: &'a Script,
    pub mode: &'a RunMode,
    pub step: &'a Step,
}

/// The outer error stops everything (evidence could not be written); the inner one fails the step.
pub(super) type Performed = Result<std::result::Result<(), String>>;

/// Before confirmations: a fingerprint step shows the key hash the room must read aloud.
pub(super) fn on_step_started(
    state: &mut State,
    script: &Script,
    mode: &super::RunMode,
    index: usize,
    operator: &mut dyn Operator,
) -> Result<()> {
    let step = &script.steps[index];
    // What the room is shown comes from the token the step acts on.
    super::tokens::enter(state, mode, script, step);
    // Issue 11: the room sees what will be signed before it confirms.
    if step.action.issues_ca_certificate() {
        return certs::present(state, script, step, operator);
    }
    if step.action == Action::SignCrl {
        crl::on_step_started(state, script, step, operator);
        return Ok(());
    }
    if step.action != Action::ConfirmFingerprint {
        return Ok(());
    }
    let Some(label) = step.key.as_deref() else {
        return Ok(());
    };
    let info = match keys::known_key(state, script, &step.id, label, operator)? {
        Ok(info) => info,
        Err(why) => {
            // The step itself then fails when performed: nobody can confirm an unseen hash.
            operator.notice(Notice::Warning {
                text: &format!("no key hash to show: {why}"),
            });
            return Ok(());
        }
    };
    let hash = key_hash(&info.spki_der);
    state.record(
        Some(step.id.clone()),
        vec![],
        &Record::FingerprintPresented {
            key: label.into(),
            key_hash: hash.clone(),
        },
    )?;
    operator.notice(Notice::Fingerprint {
        key: label,
        grouped_hash: &grouped_hex(&hash),
    });
    Ok(())
}

/// Actions that do nothing outside the log before their first synced entry, so the driver need
/// not fsync their authorisation first (the later fsync makes it durable too, as the log is written
/// in order). Manual steps, the pre-flight and the fingerprint read-back change nothing outside the
/// log (they read the host or the token); key generation, root signing and deactivation only read
/// the token (C_FindObjects, C_GenerateRandom) before the `hsm_intent` they append with an fsync.
/// A power cut can then lose an authorisation, and the results after it, that nothing acted on;
/// the ceremony resumes at the confirmed step. Anything not listed syncs first, as does every
/// action while `keyrite resume` has a token to log in again or a key to adopt (the driver checks).
/// Exhaustive, so a new action is decided here, not left to a default.
pub(super) fn syncs_before_any_effect(action: Action) -> bool {
    match action {
        Action::Manual
        | Action::Preflight
        | Action::ConfirmFingerprint
        | Action::GenerateKey
        | Action::SignCertificate
        | Action::DeactivateHsm => true,
        // Cards, bundle files, token PINs or objects may change before their first synced entry.
        Action::ActivateHsm
        | Action::Attach
        | Action::SplitActivation
        | Action::ActivateQuorum
        | Action::ShareHealthCheck
        | Action::Reshare
        | Action::RetireShares
        | Action::SignTestMessage
        | Action::SignSubordinateCa
        | Action::SignCrossCertificate
        | Action::SignCrl
        | Action::DestroyKey
        | Action::BackupKey
        | Action::RestoreKey => false,
    }
}

pub(super) fn perform(
    state: &mut State,
    ctx: &Context<'_>,
    action: Action,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
) -> Performed {
    // Issue 12: the step's token's session comes forward, and its context names that token.
    let mode = super::tokens::enter(state, ctx.mode, ctx.script, ctx.step);
    let ctx = &super::tokens::context(ctx, mode.as_ref());
    // `keyrite resume`: the interrupted run had this token logged in; log in again, on the record.
    // An activation step logs the token in itself.
    if action.is_activation() {
        state.relogin.remove(&state.current_token);
    }
    let relogin = action.uses_hsm() && !action.is_activation();
    let by_quorum = relogin
        .then(|| state.relogin.remove(&state.current_token))
        .flatten();
    if let Some(by_quorum) = by_quorum {
        if action != Action::DeactivateHsm {
            let again = if by_quorum {
                super::quorum_cards::activate(state, ctx, operator, pins, opener)?
            } else {
                activate(state, ctx, operator, pins, opener)?
            };
            if let Err(why) = again {
                return Ok(Err(why));
            }
            // The keys the interrupted run found are found again, with the hashes it logged.
            let token = ctx.script.step_token(ctx.step);
            let found = keys::find_all_existing(state, ctx.script, token, &ctx.step.id, operator)?;
            if let Err(why) = found {
                return Ok(Err(why));
            }
        }
    }
    let performed = perform_action(state, ctx, action, operator, pins, opener)?;
    // Keys from earlier ceremonies are found as soon as the HSM is activated (keys.rs).
    if performed.is_ok() && action.is_activation() {
        let token = ctx.script.step_token(ctx.step);
        let found = keys::find_all_existing(state, ctx.script, token, &ctx.step.id, operator)?;
        if found.is_ok() {
            token_objects::log_existing_uris(state, ctx)?;
        }
        return Ok(found);
    }
    Ok(performed)
}

fn perform_action(
    state: &mut State,
    ctx: &Context<'_>,
    action: Action,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
) -> Performed {
    match action {
        Action::Manual => Ok(Ok(())),
        Action::ConfirmFingerprint => {
            let label = ctx.step.key.as_deref().unwrap_or_default();
            let found = keys::known_key(state, ctx.script, &ctx.step.id, label, operator)?;
            Ok(found.map(|_| ()))
        }
        Action::Preflight => preflight_step(state, ctx, operator),
        Action::ActivateHsm => activate(state, ctx, operator, pins, opener),
        Action::GenerateKey => generate::generate(state, ctx, operator, pins),
        Action::SignCertificate => root_cert::sign(state, ctx, operator),
        Action::DeactivateHsm => {
            close_hsm(state, Some(&ctx.step.id))?;
            Ok(Ok(()))
        }
        Action::Attach => super::attach::perform(state, ctx.step, operator),
        Action::SplitActivation => {
            super::quorum::split_activation(state, ctx, operator, pins, opener)
        }
        Action::ActivateQuorum => {
            close_hsm(state, Some(&ctx.step.id))?;
            super::quorum_cards::activate(state, ctx, operator, pins, opener)
        }
        Action::ShareHealthCheck => {
            super::quorum_cards::health_check(state, ctx, operator, pins, opener)
        }
        Action::Reshare => super::quorum_reshare::reshare(state, ctx, operator, pins, opener),
        Action::RetireShares => super::quorum_retire::retire(state, ctx, operator, pins, opener),
        Action::SignTestMessage => super::quorum::sign_test_message(state, ctx, operator),
        Action::SignSubordinateCa | Action::SignCrossCertificate => {
            certs::sign(state, ctx, operator)
        }
        Action::SignCrl => crl::perform(state, ctx, operator),
        Action::DestroyKey => destroy::perform(state, ctx, operator),
        Action::BackupKey => backup::backup(state, ctx, operator, pins, opener),
        Action::RestoreKey => restore::restore(state, ctx, operator, pins, opener),
    }
}

fn preflight_step(state: &mut State, ctx: &Context<'_>, operator: &mut dyn Operator) -> Performed {
    let host = preflight::gather(now_utc());
    let hsm_interface = ctx.script.hsm.network_interface.clone();
    let warnings = preflight::warnings(&host, hsm_interface.as_deref());
    let online = preflight::online_except(&host, hsm_interface.as_deref());
    for w in &warnings {
        operator.notice(Notice::Warning { text: w });
    }
    let offline = online.is_empty();
    state.record(
        Some(ctx.step.id.clone()),
        vec![],
        &Record::Preflight {
            host,
            offline,
            warnings,
            hsm_interface,
        },
    )?;
    if !offline && ctx.mode.enforce_offline {
        return Ok(Err(format!(
            "the pre-flight found network interface(s) up ({}); at security level {} the ceremony laptop must be offline — bring them down, then start a new run",
            online.join(", "),
            ctx.script.ceremony.security_level
        )));
    }
    Ok(Ok(()))
}

pub(super) fn intent(
    state: &mut State,
    ctx: &Context<'_>,
    operation: &str,
    detail: String,
) -> Result<()> {
    state.record(
        Some(ctx.step.id.clone()),
        vec![],
        &Record::HsmIntent {
            operation: operation.into(),
            detail,
        },
    )?;
    super::kill_hook::point(&ctx.step.id, &format!("before-{operation}"));
    state.intent_open = Some((ctx.step.id.clone(), operation.into()));
    Ok(())
}

pub(super) fn failed(
    state: &mut State,
    ctx: &Context<'_>,
    operation: &str,
    err: HsmError,
) -> Performed {
    let err = super::rehearsal::damaged_token_fix(ctx.mode.rehearsal, err);
    state.hsm_failed(&ctx.step.id, operation, &err)?;
    Ok(Err(err.to_string()))
}

fn activate(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
) -> Performed {
    // A second activation replaces the session: log the old one out first, on the record.
    close_hsm(state, Some(&ctx.step.id))?;
    let named = super::tokens::current(state)
        .map(|n| format!(" (the script's token \"{n}\")"))
        .unwrap_or_default();
    let detail = format!(
        "module {}, token {}{named}",
        ctx.mode.module, ctx.mode.token
    );
    let hsm = match open_hsm(state, ctx, operator, opener, detail)? {
        Ok(h) => h,
        Err(why) => return Ok(Err(why)),
    };
    let id = hsm.identity();
    let shown = format!(
        "HSM: {} {}, serial {}, firmware {}, token \"{}\" — compare with the label on the device",
        id.manufacturer, id.model, id.serial, id.firmware_version, id.token_label
    );
    operator.notice(Notice::Info { text: &shown });
    let mut hsm = hsm;
    let token = ctx.script.step_token(ctx.step);
    if let Err(e) = hsm_checks::check_token_on(ctx.script, token, hsm.as_mut()) {
        return failed(state, ctx, "open_and_login", e);
    }
    super::hsm_login::login_with_retries(state, ctx, hsm, operator, pins)
}

/// Open the ceremony's HSM token after a write-ahead `open_and_login` intent (`detail` says how).
/// A rehearsal refuses any token that is not SoftHSM2's (or, with ML-DSA keys, Kryoptic's). The inner `Err` is a failure already
/// logged as `hsm_failed`.
/// What the token's driver warns of (a serial it shares with another token) is shown and logged.
pub(super) fn open_hsm(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    opener: &mut Opener<'_>,
    detail: String,
) -> Result<std::result::Result<Box<dyn Hsm + Send>, String>> {
    intent(state, ctx, "open_and_login", detail)?;
    let refuse = |state: &mut State, err: HsmError| {
        let err = super::rehearsal::damaged_token_fix(ctx.mode.rehearsal, err);
        state.hsm_failed(&ctx.step.id, "open_and_login", &err)?;
        Ok(Err(err.to_string()))
    };
    let hsm = match opener(&ctx.mode.module, &ctx.mode.token) {
        Ok(h) => h,
        Err(e) => return refuse(state, e),
    };
    if ctx.mode.rehearsal && !rehearsal_token(&hsm.identity().manufacturer) {
        let err = HsmError::new(
            "select token",
            format!(
                "token \"{}\" is made by \"{}\"; rehearsals run only on throw-away SoftHSM2 tokens \
                 (Kryoptic ones for ML-DSA keys)",
                hsm.identity().token_label,
                hsm.identity().manufacturer
            ),
            "use `keyrite run` for a real HSM; rehearse with SoftHSM2",
        );
        return refuse(state, err);
    }
    for warning in hsm.warnings() {
        operator.notice(Notice::Warning { text: &warning });
        state.record(
            Some(ctx.step.id.clone()),
            vec![],
            &Record::TokenWarning {
                token_serial: hsm.identity().serial.clone(),
                hsm: super::tokens::current(state),
                warning,
            },
        )?;
    }
    Ok(Ok(hsm))
}

/// Log in with `pin`, which is dropped (zeroized) as soon as the HSM has seen it; keep the session
/// and record `hsm_activated`.
pub(super) fn login_hsm(
    state: &mut State,
    ctx: &Context<'_>,
    mut hsm: Box<dyn Hsm + Send>,
    pin: SecretString,
) -> Performed {
    let login = hsm.login(&pin);
    drop(pin);
    if let Err(e) = login {
        return failed(state, ctx, "open_and_login", e);
    }
    activated(state, ctx, hsm)
}

/// Keep the logged-in session and record `hsm_activated`.
pub(super) fn activated(
    state: &mut State,
    ctx: &Context<'_>,
    hsm: Box<dyn Hsm + Send>,
) -> Performed {
    let token = hsm.identity().clone();
    state.hsm = Some(hsm);
    state.record(
        Some(ctx.step.id.clone()),
        vec![],
        &Record::HsmActivated {
            token,
            hsm: super::tokens::current(state),
        },
    )?;
    Ok(Ok(()))
}

/// Run an HSM operation on a worker thread while the calling thread tells the room, once a second,
/// how long it has been going (RSA-4096 keygen takes seconds on SoftHSM, longer on real HSMs). The
/// caller blocks on a channel until the worker is done or the next second is due: no polling sleep
/// delays a fast operation.
fn with_elapsed<T: Send>(
    operator: &mut dyn Operator,
    what: &str,
    op: impl FnOnce() -> T + Send,
) -> T {
    use std::sync::mpsc::{channel, RecvTimeoutError};
    let start = Instant::now();
    let (done, finished) = channel::<()>();
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            let out = op();
            // The receiver lives until the join below; a failed send cannot happen and changes nothing.
            let _ = done.send(());
            out
        });
        let mut reported = 0;
        loop {
            let due = Duration::from_secs(reported + 1).saturating_sub(start.elapsed());
            match finished.recv_timeout(due) {
                // Disconnected: the worker panicked before sending; the join below surfaces it.
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    reported = start.elapsed().as_secs().max(reported + 1);
                    operator.notice(Notice::Working {
                        what,
                        elapsed: start.elapsed(),
                    });
                }
            }
        }
        match worker.join() {
            Ok(result) => result,
            // A panic in the worker is a keyrite defect: let it surface as one.
            Err(payload) => std::panic::resume_unwind(payload),
        }
    })
}

/// Write a new file into the bundle and log its hash.
pub(super) fn write_artifact(
    state: &mut State,
    ctx: &Context<'_>,
    file: &str,
    bytes: &[u8],
) -> Result<()> {
    let artifact = state.bundle.write_new(file, bytes)?;
    super::kill_hook::point(&ctx.step.id, "before-artifact_written");
    state.record(
        Some(ctx.step.id.clone()),
        vec![],
        &Record::ArtifactWritten(artifact),
    )
}

pub(super) fn spki_pem(spki_der: &[u8]) -> String {
    der::Document::try_from(spki_der)
        .ok()
        .and_then(|doc| doc.to_pem("PUBLIC KEY", LineEnding::LF).ok())
        .unwrap_or_default()
}

/// Log out and close the session, if one is open. Called by the deactivate step and at the end of
/// every run, so an aborted ceremony never leaves the token logged in.
pub(super) fn close_hsm(state: &mut State, step: Option<&str>) -> Result<()> {
    // The combined secret lives only as long as the session it activated.
    state.quorum = None;
    let Some(mut hsm) = state.hsm.take() else {
        return Ok(());
    };
    let token_serial = hsm.identity().serial.clone();
    state.record(
        step.map(str::to_string),
        vec![],
        &Record::HsmIntent {
            operation: "logout".into(),
            detail: format!("token {token_serial}"),
        },
    )?;
    if let Err(e) = hsm.logout() {
        state.hsm_failed(step.unwrap_or_default(), "logout", &e)?;
    }
    drop(hsm);
    state.record(
        step.map(str::to_string),
        vec![],
        &Record::HsmDeactivated {
            token_serial,
            hsm: super::tokens::current(state),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Input, StepPlan};
    use std::sync::mpsc;

    /// Counts the "working" notices.
    struct Counting(usize);

    impl Operator for Counting {
        fn next_input(&mut self, _: &StepPlan) -> Input {
            Input::Abort {
                reason: "not asked in this test".into(),
            }
        }
        fn notice(&mut self, notice: Notice<'_>) {
            if let Notice::Working { .. } = notice {
                self.0 += 1;
            }
        }
    }

    #[test]
    fn a_quick_operation_returns_its_result_without_a_working_notice() {
        let mut room = Counting(0);
        assert_eq!(with_elapsed(&mut room, "quick", || 42), 42);
        assert_eq!(room.0, 0);
    }

    #[test]
    fn a_long_operation_is_reported_each_second_until_it_ends() {
        let mut room = Counting(0);
        // A slow HSM call: 2.5 s, waited on a channel nobody sends to.
        let (_keep, never) = mpsc::channel::<()>();
        let out = with_elapsed(&mut room, "slow", move || {
            let _ = never.recv_timeout(Duration::from_millis(2500));
            "done"
        });
        assert_eq!(out, "done");
        // At 1 s and 2 s; a thread woken late may merge them, but never reports after the end.
        assert!((1..=2).contains(&room.0), "{} notices", room.0);
    }

    #[test]
    #[should_panic(expected = "worker defect")]
    fn a_panic_in_the_worker_surfaces() {
        let mut room = Counting(0);
        with_elapsed(&mut room, "boom", || -> u8 { panic!("worker defect") });
    }
}

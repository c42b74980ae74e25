//! `keyrite resume OUT`: carry an interrupted ceremony on to its end, as one ceremony on the record.
//!
//! The bundle is checked and taken up as for an abort (`reopen`). Then: report signing that was cut
//! off is finished; a ceremony whose steps all ran but whose report was not written gets its report;
//! otherwise the interrupted step starts over (`step_resumed`) and needs fresh confirmations, the HSM
//! is logged in again (on the record) when the interrupted run had it logged in, and a key whose
//! generation was in flight and that the token holds is adopted (`found_after_interruption`) instead
//! of generated twice. Each action states in [`resumption`] how it is taken up.

use super::operator::{Notice, Operator};
use super::personal_cards::{self, CardSetup};
use super::pins::PinSource;
use super::reopen::Interrupted;
use super::resume_quorum;
use super::{drive, finish, Io, Opener, Outcome, RunMode, State};
use crate::engine::{Effect, Input, Phase};
use crate::error::{Error, Result};
use crate::evidence::bundle::Bundle;
use crate::evidence::events::Record;
use crate::evidence::log::AuditEntry;
use crate::evidence::report::{parse_event, Parsed};
use crate::hsm::KeyPairInfo;
use crate::script::{Action, Script};
use der::DecodePem;
use std::collections::BTreeMap;
use std::path::Path;

/// How an action interrupted in its step is taken up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumption {
    /// It leaves nothing behind that a repeat would trip over: performed again.
    Again,
    /// Performed again, unless the object its intent names is already on the token: then adopted.
    AdoptOrAgain,
    /// It changes cards or PINs in several writes: performed again when its log entries show that
    /// nothing was written yet, or (a rehearsal's split) that its PIN change can be finished with the
    /// cards; otherwise resume refuses, naming the cards and PINs that changed and what to do
    /// ([`super::resume_quorum::refusal`]).
    AgainIfUntouched,
    /// Issue 12, key destruction: a destruction whose intent is logged is finished (whatever of the
    /// key remains is destroyed, and the read-back recorded); one whose `key_destroyed` is logged
    /// completes without touching the token; otherwise performed again.
    Finish,
    /// Issue 12 (restore_key): what the interrupted attempt may have put on the target under the
    /// key's label is destroyed and read back gone (`restore_undone`), then performed again.
    UndoThenAgain,
}

/// Every action decides (no catch-all: a new action does not compile until it does).
pub fn resumption(action: Action) -> Resumption {
    match action {
        Action::Manual
        | Action::ConfirmFingerprint
        | Action::Preflight
        | Action::Attach
        // Keys from earlier ceremonies are found and checked again after the new login.
        | Action::ActivateHsm
        | Action::DeactivateHsm
        // A signature made before the kill never left keyrite: the certificate is made again. With
        // `store_on_token`, a copy stored just before the kill stays on the token beside the new one
        // (certificate objects are public and can be deleted by the SO).
        | Action::SignCertificate
        | Action::SignTestMessage
        // Issue 11: the certificate is built, shown and confirmed again with a NEW serial from
        // the HSM's RNG (a serial is never reused); files written but never logged are discarded
        // by the reopen, and the certificate of the interrupted attempt never left keyrite.
        | Action::SignSubordinateCa
        | Action::SignCrossCertificate
        // No `crl_signed` in the log: signed again (a signature made before the kill never left
        // keyrite). Logged: the step completes without signing. Written and bound but not
        // logged: the file is read back, verified with the issuer and recorded.
        | Action::SignCrl
        // Reading shares changes nothing on the cards; the cards are presented again.
        | Action::ActivateQuorum
        | Action::ShareHealthCheck => Resumption::Again,
        Action::GenerateKey => Resumption::AdoptOrAgain,
        Action::DestroyKey => Resumption::Finish,
        // Issue 12: a backup whose `key_backed_up` is logged completes at once; one that wrote
        // KEK shares to cards but did not finish is refused by name (its KEK, a session object,
        // died with keyrite: no KEK is left on the token).
        Action::SplitActivation | Action::Reshare | Action::RetireShares | Action::BackupKey => {
            Resumption::AgainIfUntouched
        }
        Action::RestoreKey => Resumption::UndoThenAgain,
    }
}

/// The public key the interrupted run wrote to the bundle, as DER SubjectPublicKeyInfo.
fn logged_spki(bundle: &Bundle, file: &str) -> Result<Vec<u8>> {
    let path = bundle.path(file);
    let pem = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, &e))?;
    spki::SubjectPublicKeyInfoOwned::from_pem(pem.as_bytes())
        .ok()
        .and_then(|s| der::Encode::to_der(&s).ok())
        .ok_or_else(|| {
            Error::env(
                format!("{} is not a PEM public key", path.display()),
                "check the bundle with `keyrite verify`",
            )
        })
}

/// Keys from earlier ceremonies the interrupted run found, by name, with their logged key hash.
type LoggedExisting = BTreeMap<String, (KeyPairInfo, String)>;

/// The keys the interrupted run logged: generated (`key_generated`), and found from earlier
/// ceremonies (`existing_key_found`, the last per key, with its logged hash), read back from their
/// public key files. Keys destroyed, or being destroyed, are left out.
fn logged_keys(
    script: &Script,
    bundle: &Bundle,
    entries: &[AuditEntry],
    gone: &dyn Fn(&str) -> bool,
) -> Result<(Vec<KeyPairInfo>, LoggedExisting)> {
    let mut generated = Vec::new();
    let mut existing = BTreeMap::new();
    for entry in entries {
        match parse_event(entry) {
            Ok(Parsed::Record(Record::KeyGenerated {
                label,
                id,
                attributes,
                public_key_file,
                ..
            })) => {
                let Some(spec) = script.key(&label) else {
                    continue;
                };
                generated.push(KeyPairInfo {
                    spki_der: logged_spki(bundle, &public_key_file)?,
                    label,
                    id_hex: id,
                    algorithm: spec.algorithm,
                    attributes,
                });
            }
            Ok(Parsed::Record(Record::ExistingKeyFound(k))) => {
                let Some(spec) = script.key(&k.key).filter(|_| !gone(&k.key)) else {
                    continue;
                };
                let spki_der = logged_spki(bundle, &k.public_key_file)?;
                if crate::hsm::spki::key_hash(&spki_der) != k.key_hash {
                    return Err(Error::input(
                        format!(
                            "{} does not hold the key {} the log found (key hash {})",
                            k.public_key_file, k.key, k.key_hash
                        ),
                        "this is damage or tampering, not an interruption: keep the bundle as it \
                         is and check it with `keyrite verify`",
                    ));
                }
                let info = KeyPairInfo {
                    label: k.label,
                    id_hex: k.id,
                    algorithm: spec.algorithm,
                    spki_der,
                    attributes: k.attributes,
                };
                existing.insert(k.key, (info, k.key_hash));
            }
            _ => {}
        }
    }
    Ok((generated, existing))
}

/// `keyrite resume OUT`.
pub fn resume(
    out: &Path,
    mode: RunMode,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
) -> Result<Outcome> {
    let up = Interrupted::take_up_or_ended(out)?;
    let Some(up) = up else {
        return finish_signatures(out, &mode.cards, operator, pins, opener);
    };
    let script = up.loaded.script.clone();
    // Before cards are opened or anything is written: a refusal leaves the bundle as it was.
    if let Some((step, action)) = &up.current_step() {
        if action.issues_ca_certificate() {
            let given = operator.given_attachments();
            super::actions::certs_adopt::check_before_resume(
                &script,
                up.entries(),
                up.bundle(),
                step,
                &given,
            )
            .map_err(|r| {
                let out = out.display().to_string();
                Error::input(r.what(), r.fix().replace("OUT", &out))
            })?;
        }
    }
    let refused = up.refused_cards();
    let cards = personal_cards::into_cards(personal_cards::open_all(&script, &mode.cards, opener)?);
    let phase = up.phase();
    let current = up.current_step();
    let mut sessions = resume_quorum::sessions(&script, up.entries());
    if let Some((step, action)) = &current {
        if resumption(*action) == Resumption::AgainIfUntouched {
            let progress = resume_quorum::progress(up.entries(), step);
            if let Some(why) = resume_quorum::refusal(*action, &progress, mode.rehearsal) {
                return Err(Error::input(
                    format!(
                        "the ceremony was interrupted in its {action} step \"{step}\" after it had \
                         changed cards or PINs, so it cannot be resumed"
                    ),
                    why.replace("OUT", &out.display().to_string()),
                ));
            }
            // Finishing a split's PIN change opens the HSM itself, without the user PIN.
            if matches!(progress, resume_quorum::Progress::PinsChanging { .. }) {
                sessions.remove(&None);
            }
        }
    }
    let adopt = up
        .in_flight()
        .filter(|(op, _)| op == "generate_key_pair")
        .and_then(|(_, detail)| {
            detail
                .strip_prefix("label ")
                .and_then(|d| d.split(',').next())
                .map(str::to_string)
        });
    // Issue 12: destructions logged, and the one in flight at the interruption.
    let destroying = up
        .in_flight()
        .filter(|(op, _)| op == "destroy_key")
        .and_then(|(_, detail)| super::actions::destroy::Doomed::from_intent(&detail));
    let destroyed_keys = up
        .entries()
        .iter()
        .filter_map(|e| match parse_event(e) {
            Ok(Parsed::Record(Record::KeyDestroyed(d))) => Some(d.key),
            _ => None,
        })
        .collect::<std::collections::BTreeSet<String>>();
    let gone = |key: &str| {
        destroyed_keys.contains(key) || destroying.as_ref().is_some_and(|d| d.key == key)
    };
    let (keys, existing) = logged_keys(&script, up.bundle(), up.entries(), &gone)?;
    let crls_signed = up
        .entries()
        .iter()
        .filter_map(|e| match parse_event(e) {
            Ok(Parsed::Record(Record::CrlSigned(c))) => Some(c.name),
            _ => None,
        })
        .collect();
    let key_uris_logged = up
        .entries()
        .iter()
        .filter_map(|e| match parse_event(e) {
            Ok(Parsed::Record(Record::KeyUri { label, .. })) => Some(label),
            _ => None,
        })
        .collect();
    let logged = |kind: &str| -> std::collections::BTreeSet<String> {
        up.entries()
            .iter()
            .filter(|e| e.kind() == kind)
            .filter_map(|e| {
                e.event
                    .get("key")
                    .and_then(|k| k.as_str())
                    .map(str::to_string)
            })
            .collect()
    };
    let (backups_logged, restores_logged) = (logged("key_backed_up"), logged("key_restored"));
    let restore_undo = current
        .as_ref()
        .filter(|(_, a)| resumption(*a) == Resumption::UndoThenAgain)
        .and_then(|(step, _)| script.steps.iter().find(|s| &s.id == step))
        .and_then(|s| {
            s.key
                .clone()
                .or_else(|| script.restore.as_ref().map(|r| r.key.clone()))
        });
    let (mut state, mut engine, loaded, _lock) = up.continue_log("resume")?;
    state.backups_logged = backups_logged;
    state.restores_logged = restores_logged;
    state.restore_undo = restore_undo;
    state.cards = cards;
    state.unsigned_by = refused.clone();
    state.relogin = sessions
        .into_iter()
        .filter(|(_, s)| *s != resume_quorum::Session::Closed)
        .map(|(name, s)| (name, s == resume_quorum::Session::Quorum))
        .collect();
    state.adopt = adopt;
    state.destroying = destroying;
    state.destroyed_keys = destroyed_keys;
    state.crls_signed = crls_signed;
    state.key_uris_logged = key_uris_logged;
    for key in keys {
        state.keys.insert(key.label.clone(), key);
    }
    // Found again, and checked against the logged hash, when the token is logged in again
    // (actions/keys.rs); until then the room is shown the logged key.
    for (name, (info, hash)) in existing {
        state.keys.insert(name.clone(), info);
        state.refind.insert(name, hash);
    }
    if phase == Phase::Completed || phase == Phase::Aborted {
        operator.notice(Notice::Info {
            text: "every step had run; writing the report the interruption cut off",
        });
    } else {
        let resumed = engine.handle(Input::Resume);
        operator.notice(Notice::Info {
            text: "resumed after the interruption: the interrupted step starts over and needs \
                   fresh confirmations",
        });
        let mut io = Io {
            mode: &mode,
            operator,
            pins,
            opener,
        };
        let driven = drive(&mut state, &mut engine, &loaded, &mut io, resumed);
        if let Err(err) = driven {
            let reason = format!("keyrite stopped: {err}");
            for effect in engine.handle(Input::Abort { reason }) {
                if let Effect::Record(event) = effect {
                    let _ = state.record(event.step().map(str::to_string), event.actors(), &event);
                }
            }
            let _ = super::tokens::close_all(&mut state, None);
            let _ = finish(state, engine);
            return Err(err);
        }
        super::tokens::close_all(&mut state, None)?;
        let (op, pn) = (io.operator, io.pins);
        return end(state, engine, &loaded.script, refused, op, pn);
    }
    end(state, engine, &loaded.script, refused, operator, pins)
}

/// Write the report and have it signed, as a run ends.
fn end(
    mut state: State,
    engine: crate::engine::Engine,
    script: &Script,
    refused: std::collections::BTreeMap<String, String>,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
) -> Result<Outcome> {
    let bundle = state.bundle.clone();
    let mut cards = std::mem::take(&mut state.cards);
    let mut outcome = finish(state, engine)?;
    super::kill_hook::point("report", "before-signatures");
    outcome.unsigned =
        personal_cards::sign_reports(&bundle, script, &mut cards, &refused, pins, operator)?;
    Ok(outcome)
}

/// The report is written and bound; make the report signatures the interruption cut off.
fn finish_signatures(
    out: &Path,
    setup: &CardSetup,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
) -> Result<Outcome> {
    let ended = super::reopen::Ended::take_up(out)?;
    let mut cards = personal_cards::into_cards(personal_cards::open_all(
        &ended.loaded.script,
        setup,
        opener,
    )?);
    let unsigned = personal_cards::sign_reports(
        &Bundle::open(out),
        &ended.loaded.script,
        &mut cards,
        &ended.refused,
        pins,
        operator,
    )?;
    Ok(Outcome {
        completed: ended.completed,
        reason: ended.reason,
        hsm_failure: false,
        report_sha256: ended.report_sha256,
        log_head: ended.log_head,
        unsigned,
    })
}

/// The key whose generation was in flight at the interruption is on the token: record it as found
/// after the interruption, with its key hash, and log it as the step's key, instead of generating a
/// second one.
pub(super) fn adopt_key(
    state: &mut State,
    ctx: &super::actions::Context<'_>,
    label: &str,
    operator: &mut dyn Operator,
) -> super::actions::Performed {
    state.adopt = None;
    super::actions::intent(
        state,
        ctx,
        "generate_key_pair",
        format!("label {label}: adopt the key found after the interruption; nothing is generated"),
    )?;
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let info = match hsm.key_pair(label) {
        Ok(info) => info,
        Err(e) => return super::actions::failed(state, ctx, "generate_key_pair", e),
    };
    let hash = crate::hsm::spki::key_hash(&info.spki_der);
    operator.notice(Notice::Warning {
        text: &format!(
            "key {label} was generated before the interruption and is on the token: it is \
             adopted, not generated again (key hash {hash})"
        ),
    });
    state.record(
        Some(ctx.step.id.clone()),
        vec![],
        &Record::FoundAfterInterruption {
            operation: "generate_key_pair".into(),
            label: label.into(),
            key_hash: hash,
        },
    )?;
    super::actions::key_generated(state, ctx, label, info)
}

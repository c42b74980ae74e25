//! `keyrite abort` and `keyrite resume`: the commands that take up an interrupted ceremony.

use super::{ceremony_exit, enter_env, load_checked, open_pkcs11, operator_for, read_ca, Room};
use crate::driver::operator::{Answers, Headless};
use crate::driver::pins::Prompt;
use crate::driver::rehearsal::{self, rehearsal_label, RehearsalPins};
use crate::driver::{CardSetup, RunMode};
use crate::error::{exit, Error, Result};
use crate::hsm::spki::grouped_hex;
use crate::script::{SecurityLevel, TokenSelector};
use std::path::Path;

/// `keyrite abort OUT --reason TEXT`.
pub(super) fn abort(
    out: &Path,
    reason: &str,
    signers_ca: Option<&Path>,
    env: Option<&Path>,
) -> Result<i32> {
    let mut operator = Headless::new(Answers::default(), std::io::stdout());
    let mut opener = open_pkcs11;
    let outcome = match env {
        Some(dir) => {
            // The bundle's script says whether the rehearsal's HSM was a Kryoptic ML-DSA token (a
            // script that no longer loads is left to take_up below to report).
            let script = crate::script::check_file_rehearsal(
                &out.join(crate::evidence::bundle::SCRIPT_FILE),
            )
            .0;
            let label = script
                .as_ref()
                .map(|l| rehearsal_label(&l.script.hsm.token))
                .unwrap_or_default();
            let pqc = script
                .as_ref()
                .is_some_and(|l| rehearsal::pqc::needs_pqc(&l.script, dir, &label))
                .then_some(label.as_str());
            let (mut renv, _lock) = match enter_env(dir, pqc)? {
                Ok(entered) => entered,
                Err(code) => return Ok(code),
            };
            let up = crate::driver::reopen::Interrupted::take_up(out)?;
            let label = rehearsal_label(&up.loaded.script.hsm.token);
            let softhsm = rehearsal::find_softhsm()?;
            let hsm_module = match pqc {
                Some(_) => rehearsal::pqc::find_module()?,
                None => softhsm.clone(),
            };
            let cards = renv.ensure_cards(&softhsm, &up.loaded.script)?;
            drop(up);
            // Label and serial together: only the rehearsal's throw-away token matches.
            let token = renv.token(&label).map(|t| TokenSelector {
                label: Some(t.label.clone()),
                serial: Some(t.serial.clone()),
                uri: None,
            });
            let hsm = token.as_ref().map(|t| (hsm_module.as_str(), t));
            let mut pins = RehearsalPins(renv.tokens().to_vec());
            let (p, o) = (&mut pins, &mut operator);
            crate::driver::reopen::abort(out, reason, cards, hsm, p, o, &mut opener)?
        }
        None => {
            let setup = CardSetup {
                module: String::new(),
                tokens: Default::default(),
                ca_pem: read_ca(signers_ca)?,
                rehearsal_ca: false,
            };
            let script = crate::driver::reopen::Interrupted::take_up(out)?
                .loaded
                .script;
            let hsm = Some((script.hsm.module.as_str(), &script.hsm.token));
            let mut pins = Prompt;
            let (p, o) = (&mut pins, &mut operator);
            crate::driver::reopen::abort(out, reason, setup, hsm, p, o, &mut opener)?
        }
    };
    // The abort itself succeeded: the ceremony is closed on the record.
    println!(
        "ceremony closed as ABORTED on the record: {}",
        outcome.reason.as_deref().unwrap_or_default()
    );
    println!(
        "write on the paper script:\n  log head            {}\n  report.json SHA-256 {}",
        grouped_hex(&outcome.log_head),
        grouped_hex(&outcome.report_sha256)
    );
    println!("verify it with: keyrite verify {}", out.display());
    if outcome.unsigned.is_empty() {
        Ok(exit::OK)
    } else {
        eprintln!(
            "keyrite: report signatures missing: {}",
            outcome.unsigned.join("; ")
        );
        Ok(exit::HSM)
    }
}

/// `keyrite resume OUT`.
pub(super) fn resume(
    out: &Path,
    room: Room<'_>,
    env: Option<&Path>,
    signers_ca: Option<&Path>,
) -> Result<i32> {
    use crate::driver::reopen::cards_setup;
    let bundle_script = out.join(crate::evidence::bundle::SCRIPT_FILE);
    // A rehearsal's quorum commitments come from its folder's record, as when it ran.
    let loaded = match env {
        Some(_) => super::load_script(&bundle_script, false, crate::script::check_file_rehearsal)?,
        None => load_checked(&bundle_script)?,
    };
    let (mut operator, confirmations) = operator_for(room, &loaded)?;
    let mut opener = open_pkcs11;
    let outcome = match env {
        Some(dir) => {
            let label = rehearsal_label(&loaded.script.hsm.token);
            let pqc =
                rehearsal::pqc::needs_pqc(&loaded.script, dir, &label).then_some(label.as_str());
            let (mut renv, _lock) = match enter_env(dir, pqc)? {
                Ok(entered) => entered,
                Err(code) => return Ok(code),
            };
            let softhsm = rehearsal::find_softhsm()?;
            let hsm_module = match pqc {
                Some(_) => rehearsal::pqc::find_module()?,
                None => softhsm.clone(),
            };
            let token = renv.token(&label).cloned().ok_or_else(|| {
                Error::input(
                    format!("the rehearsal folder has no token \"{label}\""),
                    "give the --env folder the interrupted rehearsal used",
                )
            })?;
            let cards = renv.ensure_cards(&softhsm, &loaded.script)?;
            let tokens = crate::driver::tokens::rehearsal_tokens(
                &mut renv,
                &softhsm,
                &softhsm,
                &loaded.script,
                false,
            )?;
            let mode = RunMode {
                rehearsal: true,
                enforce_offline: false,
                module: hsm_module,
                token: TokenSelector {
                    label: Some(token.label.clone()),
                    serial: Some(token.serial.clone()),
                    uri: None,
                },
                tokens,
                confirmations,
                cards,
            };
            let mut pins = RehearsalPins(renv.tokens().to_vec());
            crate::driver::resume::resume(out, mode, operator.as_mut(), &mut pins, &mut opener)?
        }
        None => {
            let setup = CardSetup {
                module: String::new(),
                tokens: Default::default(),
                ca_pem: read_ca(signers_ca)?,
                rehearsal_ca: false,
            };
            let level = loaded.script.ceremony.security_level;
            let mode = RunMode {
                rehearsal: false,
                enforce_offline: level >= SecurityLevel::High,
                module: loaded.script.hsm.module.clone(),
                token: loaded.script.hsm.token.clone(),
                tokens: crate::driver::tokens::script_tokens(&loaded.script),
                confirmations,
                cards: cards_setup(out, setup, &loaded.script),
            };
            let mut pins = Prompt;
            crate::driver::resume::resume(out, mode, operator.as_mut(), &mut pins, &mut opener)?
        }
    };
    Ok(ceremony_exit(&outcome, out))
}

//! The HSM PIN change of a quorum split, reshare or finish, as a recorded state machine.
//!
//! Nothing is changed before both current PINs are proven (C_Login as user and as SO) and the
//! derived PINs are sized to the token. Then, SO PIN first — so that nobody who knows the old SO PIN
//! can C_InitPIN around the quorum once the cards hold their shares:
//!
//! | stage (`quorum_pins`) | SO PIN          | user PIN        |
//! |-----------------------|-----------------|-----------------|
//! | setting-so-pin        | old or derived  | old             |
//! | so-pin-set            | derived         | old             |
//! | setting-user-pin      | derived         | old or derived  |
//! | done                  | derived         | derived         |
//! | failed                | as recorded     | as recorded     |
//!
//! The user PIN is set by the SO with C_InitPIN, so finishing never needs the old user PIN: M cards
//! give the derived SO PIN (or, while the SO PIN is still old, the room types it), and C_InitPIN sets
//! the derived user PIN. Each stage goes into the log before the HSM call it announces, and into a
//! rehearsal folder's record of the split. The test-only crash hook (`kill_hook.rs`) has a point
//! `STEP:stage-STAGE` right after each stage is recorded.

use super::actions::{intent, Context};
use super::operator::{Notice, Operator};
use super::pins::{PinRequest, PinSource};
use super::rehearsal::{self, RehearsalSplit};
use super::State;
use crate::evidence::events::Record;
use crate::evidence::quorum::PinsRecord;
use crate::hsm::{Hsm, HsmError, PinChange, TokenIdentity};
use secrecy::SecretString;

/// A (user, SO) PIN pair.
pub(super) struct Pins {
    pub user: SecretString,
    pub so: SecretString,
}

impl Pins {
    /// The HSM PINs `secret` derives at the token's PIN length.
    pub(super) fn derived(secret: &crate::quorum::Secret, pin_length: usize) -> Self {
        let (user, so) = secret.hsm_pins(pin_length);
        Pins { user, so }
    }
}

/// What the SO PIN is when the change starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SoNow {
    /// The PIN before this change (typed, or derived from the old split in a reshare).
    Old,
    /// Already the target split's derived PIN (an interrupted change got that far).
    Derived,
    /// A C_SetPIN was in flight: try the derived PIN, then the old one.
    Unknown,
}

impl SoNow {
    pub(super) fn from_record(so_pin: &str) -> SoNow {
        match so_pin {
            "old" => SoNow::Old,
            "derived" => SoNow::Derived,
            _ => SoNow::Unknown,
        }
    }
}

/// The PIN change being made: for which split, on which token.
pub(super) struct PinJob<'a> {
    /// "split", "reshare" or "finish".
    pub purpose: &'static str,
    pub split_ceremony_id: &'a str,
    pub commitments_sha256: String,
    /// M of the split: how many cards finish an interrupted change.
    pub threshold: u16,
    pub token: TokenIdentity,
    pub pin_length: usize,
}

impl<'a> PinJob<'a> {
    /// The PIN change of the split whose commitments are given, on `token` (the ceremony's id names
    /// the split).
    pub(super) fn new(
        purpose: &'static str,
        ctx: &Context<'a>,
        commitments: &crate::quorum::Commitments,
        threshold: u16,
        token: TokenIdentity,
        pin_length: usize,
    ) -> Self {
        PinJob {
            purpose,
            split_ceremony_id: &ctx.script.ceremony.id,
            commitments_sha256: commitments.sha256_hex(),
            threshold,
            token,
            pin_length,
        }
    }

    fn record(
        &self,
        state: &mut State,
        ctx: &Context<'_>,
        stage: &str,
        so: &str,
        user: &str,
    ) -> crate::error::Result<Option<String>> {
        let next = (stage != "done").then(|| self.next_step(so, user));
        state.record(
            Some(ctx.step.id.clone()),
            vec![],
            &Record::QuorumPins(PinsRecord {
                purpose: self.purpose.into(),
                split_ceremony_id: self.split_ceremony_id.into(),
                commitments_sha256: self.commitments_sha256.clone(),
                token_serial: self.token.serial.clone(),
                stage: stage.into(),
                so_pin: so.into(),
                user_pin: user.into(),
                pin_length: self.pin_length,
                next: next.clone(),
            }),
        )?;
        if ctx.mode.rehearsal {
            let split = RehearsalSplit {
                ceremony_id: self.split_ceremony_id.into(),
                commitments_sha256: self.commitments_sha256.clone(),
                stage: stage.into(),
                so_pin: so.into(),
                user_pin: user.into(),
                replaced_by: None,
            };
            // A stage that announces a PIN change is on disk before the change; the others report
            // one already made (an earlier durable stage covers them after a power cut).
            let durability = match stage.starts_with("setting-") {
                true => rehearsal::Durability::Now,
                false => rehearsal::Durability::AtExit,
            };
            rehearsal::note_split(&split, None, durability)?;
        }
        super::kill_hook::point(&ctx.step.id, &format!("stage-{stage}"));
        Ok(next)
    }

    /// What the room does after an interruption at this point.
    fn next_step(&self, so: &str, user: &str) -> String {
        format!(
            "token {} now has the {so} SO PIN and the {user} user PIN (\"derived\" = derived from split {}); \
             the cards hold that split: finish the change with {} of its cards by a script whose first HSM step \
             is split_activation, with quorum.commitments_sha256 = \"{}\" (a rehearsal on the same --env finds it \
             itself) — docs/operator-guide.md, \"Finishing an interrupted split\"",
            self.token.serial,
            self.commitments_sha256,
            self.threshold,
            self.commitments_sha256
        )
    }
}

/// The length of the PINs to derive for this token; refuses a token with a PIN pad or PED.
pub(super) fn pin_length(hsm: &mut dyn Hsm) -> Result<usize, String> {
    let limits = hsm.pin_limits().map_err(|e| e.to_string())?;
    if limits.protected_path {
        return Err(format!(
            "token \"{}\" takes its PINs on its own PIN pad or PED (CKF_PROTECTED_AUTHENTICATION_PATH), so keyrite \
             cannot set a quorum-derived PIN on it; nothing was changed — use a token without a protected \
             authentication path for a keyrite quorum, or the HSM vendor's own M-of-N scheme",
            hsm.identity().token_label
        ));
    }
    crate::quorum::pin_length(limits.min_len, limits.max_len)
        .map_err(|e| format!("{e}; nothing was changed"))
}

/// Before a split writes any card: size the derived PINs, then log in with both current PINs. A
/// wrong PIN fails here, when nothing has changed. Ends logged in as user. Returns the PIN length.
pub(super) fn prove_current(
    state: &mut State,
    ctx: &Context<'_>,
    old: &Pins,
) -> crate::error::Result<Result<usize, String>> {
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let len = match pin_length(hsm.as_mut()) {
        Ok(l) => l,
        Err(why) => return Ok(Err(why)),
    };
    let token = hsm.identity().serial.clone();
    intent(
        state,
        ctx,
        "prove_pins",
        format!(
            "C_Login as user and as SO with the current PINs of token {token}, before any card is written"
        ),
    )?;
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err("the HSM session was lost".into()));
    };
    let proved = hsm
        .login(&old.user)
        .map_err(|e| ("user", e))
        .and_then(|()| hsm.login_so(&old.so).map_err(|e| ("SO", e)))
        .and_then(|()| hsm.logout().map_err(|e| ("SO", e)))
        .and_then(|()| hsm.login(&old.user).map_err(|e| ("user", e)));
    match proved {
        Ok(()) => Ok(Ok(len)),
        Err((which, e)) => {
            state.hsm_failed(&ctx.step.id, "prove_pins", &e)?;
            Ok(Err(format!(
                "the token refused its current {which} PIN ({e}); nothing was changed: no card was written and \
                 both HSM PINs are as they were — enter the token's current {which} PIN and start a new run"
            )))
        }
    }
}

/// Replace both HSM PINs with `new`, SO first, recording each stage before its HSM call. `old_so`
/// is the SO PIN before the change when the caller knows it (a reshare's old derived PIN); else it
/// is asked from `pins` when needed. On success the session is logged in as user with `new.user`.
#[allow(clippy::too_many_arguments)]
pub(super) fn change_pins(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    job: &PinJob<'_>,
    so_now: SoNow,
    old_so: Option<&SecretString>,
    new: &Pins,
) -> crate::error::Result<Result<(), String>> {
    let (serial, sha) = (&job.token.serial, &job.commitments_sha256);
    // 1. The SO PIN.
    let so_before = if so_now == SoNow::Derived {
        "derived"
    } else {
        "old or derived"
    };
    intent(
        state,
        ctx,
        "set_so_pin",
        format!(
            "C_Login as SO, then C_SetPIN unless already done: the SO PIN of token {serial} becomes the one derived from split {sha}"
        ),
    )?;
    job.record(state, ctx, "setting-so-pin", so_before, "old")?;
    if let Err((so_is, e)) = set_so_pin(state, pins, job, so_now, old_so, &new.so) {
        return stop(state, ctx, operator, job, so_is, "old", e);
    }
    job.record(state, ctx, "so-pin-set", "derived", "old")?;
    // 2. The user PIN, set by the SO.
    intent(
        state,
        ctx,
        "init_user_pin",
        format!(
            "C_InitPIN as SO: the user PIN of token {serial} becomes the one derived from split {sha}"
        ),
    )?;
    job.record(state, ctx, "setting-user-pin", "derived", "old or derived")?;
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err("the HSM session was lost".into()));
    };
    if let Err(e) = hsm.init_user_pin(&new.user) {
        return stop(state, ctx, operator, job, "derived", "old", e);
    }
    // 3. Proof: the new user PIN logs in.
    let proof = hsm.logout().and_then(|()| hsm.login(&new.user));
    if let Err(e) = proof {
        return stop(state, ctx, operator, job, "derived", "derived", e);
    }
    job.record(state, ctx, "done", "derived", "derived")?;
    Ok(Ok(()))
}

/// Log in as SO and make the SO PIN the derived one. On failure, says what the SO PIN now is.
fn set_so_pin(
    state: &mut State,
    pins: &mut dyn PinSource,
    job: &PinJob<'_>,
    so_now: SoNow,
    old_so: Option<&SecretString>,
    new_so: &SecretString,
) -> Result<(), (&'static str, HsmError)> {
    let hsm_lost = || HsmError::new("C_Login", "the HSM session was lost", "start a new run");
    let Some(hsm) = state.hsm.as_mut() else {
        return Err(("old or derived", hsm_lost()));
    };
    if so_now != SoNow::Old {
        match hsm.login_so(new_so) {
            Ok(()) => return Ok(()),
            Err(e) if so_now == SoNow::Derived || e.ckr != "CKR_PIN_INCORRECT" => {
                return Err(("old or derived", e))
            }
            // Not yet derived: the interrupted change stopped before its C_SetPIN took effect.
            Err(_) => {}
        }
    }
    let typed;
    let old = match old_so {
        Some(pin) => pin,
        None => {
            typed = pins
                .pin(&PinRequest::HsmSecurityOfficer(&job.token))
                .map_err(|e| {
                    let fix = "enter the token's current SO PIN";
                    ("old", HsmError::new("C_Login", e.to_string(), fix))
                })?;
            &typed
        }
    };
    hsm.login_so(old).map_err(|e| ("old", e))?;
    hsm.set_pin(PinChange { old, new: new_so })
        .map_err(|e| ("old", e))
}

/// A PIN change stopped: record exactly which PIN is which and tell the room what to do.
fn stop(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    job: &PinJob<'_>,
    so: &str,
    user: &str,
    e: HsmError,
) -> crate::error::Result<Result<(), String>> {
    state.hsm_failed(&ctx.step.id, "set_pins", &e)?;
    let next = job
        .record(state, ctx, "failed", so, user)?
        .unwrap_or_default();
    operator.notice(Notice::Warning { text: &next });
    Ok(Err(format!("the PIN change stopped: {e}; {next}")))
}

//! Logging in to the ceremony's HSM token, with the room's mistakes asked again instead of ending
//! the ceremony: a wrong PIN is retried with what the token reports (COUNT_LOW, FINAL_TRY), a PIN
//! keyrite knows the token must refuse (empty, too short, too long) is never sent, a LOCKED token
//! stops with what to do, and Esc in the PIN dialog goes back to the step. Each retry is logged as
//! `retried`; the PIN itself never is.

use super::actions::{failed, intent, Context, Performed};
use super::operator::{Notice, Operator};
use super::pins::{self, PinRequest, PinSource};
use super::State;
use crate::evidence::events::{Record, RetryRecord};
use crate::hsm::{Hsm, HsmError, PinState};

/// Retries before keyrite itself gives up (SoftHSM2 never locks a PIN; real tokens lock sooner).
pub(super) const MAX_PIN_RETRIES: u32 = 5;

/// What the token's flags mean for the person typing the PIN.
pub fn token_says(flags: &PinState) -> Option<&'static str> {
    if flags.locked {
        Some("the token reports its user PIN LOCKED")
    } else if flags.final_try {
        Some("the token reports FINAL TRY: one more wrong PIN locks it")
    } else if flags.count_low {
        Some("the token reports COUNT_LOW: a wrong PIN was entered since the last good one")
    } else {
        None
    }
}

fn locked_error(hsm: &dyn Hsm) -> HsmError {
    let mut err = HsmError::new(
        "C_Login",
        format!(
            "the user PIN of token \"{}\" (serial {}) is LOCKED; keyrite sends it no further PIN",
            hsm.identity().token_label,
            hsm.identity().serial
        ),
        "stop here: only the token's security officer can unlock the user PIN (C_InitPIN, e.g. \
         `pkcs11-tool --init-pin --login --login-type so`); then start a new run",
    );
    err.ckr = "CKR_PIN_LOCKED".into();
    err
}

/// Ask the user PIN and log in, until the login succeeds, the token locks, the room withdraws
/// (Esc: the step goes back to its confirmations) or [`MAX_PIN_RETRIES`] retries are used up. A token
/// with a protected authentication path (PIN pad, PED) is never asked a PIN here: the room is told
/// to type it on the device, and C_Login goes without one.
pub(super) fn login_with_retries(
    state: &mut State,
    ctx: &Context<'_>,
    mut hsm: Box<dyn Hsm + Send>,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
) -> Performed {
    let limits = hsm.pin_limits().ok();
    let lengths = limits.map(|l| (l.min_len, l.max_len));
    let pad = limits.is_some_and(|l| l.protected_path);
    let mut retries = 0u32;
    loop {
        let flags = hsm.pin_state().ok();
        if flags.is_some_and(|f| f.locked) {
            return failed(state, ctx, "open_and_login", locked_error(hsm.as_ref()));
        }
        // Some(login result) when a login was tried; None when keyrite refused the PIN unsent.
        let (login, unsent) = if pad {
            let text = format!(
                "token \"{}\" takes its PIN on its own PIN pad or PED: the operator types the user \
                 PIN there now (keyrite asks for none and never sees it)",
                hsm.identity().token_label
            );
            operator.notice(Notice::Info { text: &text });
            (Some(hsm.login_protected()), None)
        } else {
            let pin = match pins.pin(&PinRequest::HsmUser(hsm.identity())) {
                Ok(pin) => pin,
                Err(e) if pins::is_cancelled(&e) => {
                    let reason =
                        "the HSM PIN entry was cancelled; the step waits to be performed again"
                            .to_string();
                    state.withdrawn = Some(reason.clone());
                    return Ok(Err(reason));
                }
                Err(e) => return Ok(Err(e.to_string())),
            };
            match pins::refused_before_login(&pin, lengths) {
                Some(why) => (None, Some(why)),
                None => {
                    let login = hsm.login(&pin);
                    drop(pin);
                    (Some(login), None)
                }
            }
        };
        let (reason, sent) = match (login, unsent) {
            (Some(Ok(())), _) => {
                state.hsm_returned();
                return super::actions::activated(state, ctx, hsm);
            }
            (Some(Err(e)), _) if e.ckr == "CKR_PIN_INCORRECT" || e.ckr == "CKR_PIN_LEN_RANGE" => {
                (format!("{} returned {}", e.function, e.ckr), true)
            }
            (Some(Err(e)), _) if e.ckr == "CKR_PIN_LOCKED" => {
                return failed(state, ctx, "open_and_login", locked_error(hsm.as_ref()))
            }
            (Some(Err(e)), _) => return failed(state, ctx, "open_and_login", e),
            (None, why) => (why.unwrap_or_default(), false),
        };
        retries += 1;
        let flags = if sent { hsm.pin_state().ok() } else { flags };
        state.record(
            Some(ctx.step.id.clone()),
            vec![],
            &Record::Retried(RetryRecord {
                what: "hsm_user_pin".into(),
                attempt: retries,
                reason: reason.clone(),
                sent_to_token: sent,
                token_reports: flags,
            }),
        )?;
        if flags.is_some_and(|f| f.locked) {
            return failed(state, ctx, "open_and_login", locked_error(hsm.as_ref()));
        }
        if retries >= MAX_PIN_RETRIES {
            let mut err = HsmError::new(
                "C_Login",
                format!("{retries} PINs in a row were refused; keyrite asks no further one"),
                "find the right user PIN (the token may be near locking), then start a new run",
            );
            err.ckr = "CKR_PIN_INCORRECT".into();
            return failed(state, ctx, "open_and_login", err);
        }
        let says = flags.as_ref().and_then(token_says);
        let text = match says {
            _ if pad => format!(
                "the PIN typed on the PIN pad was refused ({reason}){}; type it there again",
                says.map(|s| format!("; {s}")).unwrap_or_default()
            ),
            Some(says) => format!("wrong HSM PIN ({reason}); {says}; enter it again"),
            None if sent => format!("wrong HSM PIN ({reason}); enter it again"),
            None => format!("{reason}; enter the HSM PIN again"),
        };
        operator.notice(Notice::Warning { text: &text });
        if sent {
            // The next C_Login gets its own write-ahead entry.
            intent(
                state,
                ctx,
                "open_and_login",
                format!("login attempt {} on the open session", retries + 1),
            )?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_flags_are_read_out() {
        let mut f = PinState::default();
        assert_eq!(token_says(&f), None);
        f.count_low = true;
        assert!(token_says(&f).unwrap().contains("COUNT_LOW"));
        f.final_try = true;
        assert!(token_says(&f).unwrap().contains("FINAL TRY"));
        f.locked = true;
        assert!(token_says(&f).unwrap().contains("LOCKED"));
    }

    #[test]
    fn pins_the_token_must_refuse_are_never_sent() {
        use secrecy::SecretString;
        let refused = |p: &str, l| pins::refused_before_login(&SecretString::from(p), l);
        assert!(refused("", None).unwrap().contains("no PIN"));
        assert!(refused("123", Some((4, 8))).unwrap().contains("shorter"));
        assert!(refused("123456789", Some((4, 8)))
            .unwrap()
            .contains("longer"));
        assert_eq!(refused("1234", Some((4, 8))), None);
        assert_eq!(refused("123", None), None);
    }
}

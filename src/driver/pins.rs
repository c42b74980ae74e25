//! Where PINs come from. A PIN lives in a `SecretString`, is never logged or printed, and is dropped
//! (zeroized) right after C_Login.

use crate::error::{Error, Result};
use crate::hsm::TokenIdentity;
use secrecy::SecretString;
use std::io::IsTerminal;
use zeroize::Zeroizing;

/// Whose PIN is asked for. Every token keyrite logs in to is named by its identity, so a PIN source
/// (the rehearsal's rehearsal.toml, a prompt, the TUI's PIN modal) can look it up or say whose it is.
#[derive(Debug, Clone, Copy)]
pub enum PinRequest<'a> {
    /// The HSM token's user PIN (a token without a quorum split).
    HsmUser(&'a TokenIdentity),
    /// The HSM token's current SO PIN, asked once by a split_activation step that replaces it.
    HsmSecurityOfficer(&'a TokenIdentity),
    /// A custodian's quorum card.
    CustodianCard {
        holder: &'a str,
        card: &'a TokenIdentity,
    },
    /// A participant's personal signing card.
    PersonalCard {
        person: &'a str,
        card: &'a TokenIdentity,
    },
}

impl PinRequest<'_> {
    pub fn token(&self) -> &TokenIdentity {
        match self {
            PinRequest::HsmUser(token) | PinRequest::HsmSecurityOfficer(token) => token,
            PinRequest::CustodianCard { card, .. } | PinRequest::PersonalCard { card, .. } => card,
        }
    }

    /// The question put to the person at the keyboard.
    pub fn prompt(&self) -> String {
        match self {
            PinRequest::HsmUser(t) => format!(
                "User PIN for token \"{}\" (serial {}): ",
                t.token_label, t.serial
            ),
            PinRequest::HsmSecurityOfficer(t) => format!(
                "Current SO PIN for token \"{}\" (serial {}); it is replaced by a quorum-derived PIN: ",
                t.token_label, t.serial
            ),
            PinRequest::CustodianCard { holder, card } => format!(
                "{holder}, enter the PIN of your card \"{}\" (serial {}): ",
                card.token_label, card.serial
            ),
            PinRequest::PersonalCard { person, card } => format!(
                "{person}, enter the PIN of your personal card \"{}\" (serial {}): ",
                card.token_label, card.serial
            ),
        }
    }
}

/// What a PIN source answers when the person withdraws from the PIN dialog (Esc).
const PIN_CANCELLED: &str = "PIN entry was cancelled";

/// The error a PIN source returns for Esc: the HSM activation goes back to its step.
pub fn cancelled() -> Error {
    Error::input(
        PIN_CANCELLED,
        "perform the step again when ready (its confirmations stand), or abort",
    )
}

/// Whether `err` is [`cancelled`].
pub fn is_cancelled(err: &Error) -> bool {
    matches!(err, Error::Input { what, .. } if what == PIN_CANCELLED)
}

/// Why keyrite refuses `pin` without sending it to the token: it is empty, or its length is outside
/// the token's limits (`lengths`: ulMinPinLen and ulMaxPinLen, in bytes, when the token says).
pub fn refused_before_login(pin: &SecretString, lengths: Option<(usize, usize)>) -> Option<String> {
    use secrecy::ExposeSecret;
    let len = pin.expose_secret().len();
    match lengths {
        _ if len == 0 => Some("no PIN was entered".into()),
        Some((min, _)) if len < min => Some(format!(
            "the PIN entered is shorter than the token's minimum of {min} characters; it was not sent"
        )),
        Some((_, max)) if max > 0 && len > max => Some(format!(
            "the PIN entered is longer than the token's maximum of {max} characters; it was not sent"
        )),
        _ => None,
    }
}

pub trait PinSource {
    fn pin(&mut self, request: &PinRequest<'_>) -> Result<SecretString>;
}

/// `keyrite run`: ask the person at the keyboard, without echo. When stdin is not a terminal (a
/// scripted run), read one line from stdin instead, as `sudo -S` does, unbuffered.
pub struct Prompt;

impl PinSource for Prompt {
    fn pin(&mut self, request: &PinRequest<'_>) -> Result<SecretString> {
        let prompt = request.prompt();
        let stdin = std::io::stdin();
        let pin = if stdin.is_terminal() {
            Zeroizing::new(rpassword::prompt_password(prompt).map_err(|e| {
                Error::env(
                    format!("could not read the PIN from the terminal: {e}"),
                    "run keyrite in an interactive terminal",
                )
            })?)
        } else {
            eprint!("{prompt}");
            // Unbuffered (super::pin_input): std's stdin buffer would keep a copy of the PIN.
            let line = super::pin_input::stdin_line()
                .map_err(|e| {
                    Error::env(
                        format!("could not read the PIN from stdin: {e}"),
                        "pipe the PIN on one line, or run interactively",
                    )
                })?
                .unwrap_or_default();
            eprintln!();
            let pin = std::str::from_utf8(&line).map_err(|_| {
                Error::input(
                    "the PIN is not valid UTF-8",
                    "enter the PIN that was asked for",
                )
            })?;
            Zeroizing::new(pin.to_string())
        };
        if pin.is_empty() {
            return Err(Error::input(
                "no PIN was entered",
                "enter the PIN that was asked for",
            ));
        }
        Ok(SecretString::from(pin.as_str()))
    }
}

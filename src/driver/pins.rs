//! Where PINs come from. A PIN lives in a `SecretString`, is never logged or printed, and is dropped
//! (zeroized) right after C_Login.

use crate::error::{Error, Result};
use crate::hsm::TokenIdentity;
use secrecy::SecretString;
use std::io::{BufRead, IsTerminal};
use zeroize::Zeroizing;

pub trait PinSource {
    fn user_pin(&mut self, token: &TokenIdentity) -> Result<SecretString>;
}

/// `keyrite run`: ask the person at the keyboard, without echo. When stdin is not a terminal (a
/// scripted run), read one line from stdin instead, as `sudo -S` does.
pub struct Prompt;

impl PinSource for Prompt {
    fn user_pin(&mut self, token: &TokenIdentity) -> Result<SecretString> {
        let prompt = format!(
            "User PIN for token \"{}\" (serial {}): ",
            token.token_label, token.serial
        );
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
            let mut line = Zeroizing::new(String::new());
            stdin.lock().read_line(&mut line).map_err(|e| {
                Error::env(
                    format!("could not read the PIN from stdin: {e}"),
                    "pipe the PIN on one line, or run interactively",
                )
            })?;
            eprintln!();
            Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string())
        };
        if pin.is_empty() {
            return Err(Error::input(
                "no PIN was entered",
                "enter the token's user PIN",
            ));
        }
        Ok(SecretString::from(pin.as_str()))
    }
}

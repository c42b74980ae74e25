//! Issue 12: the replay's view of each token's session. An `hsm_activated` entry must name the
//! token its step acts on; after `keyrite resume` each token the interrupted run had logged in may
//! be logged in again once, in any authorised step; and in a script with several tokens every HSM
//! result must come while the token of its step is logged in.

use super::events::Record;
use super::log::EntryRef;
use crate::script::Script;
use std::collections::BTreeSet;

pub(super) struct TokenSessions<'s> {
    script: &'s Script,
    /// Tokens logged in now, by log name (`None`: the primary).
    open: BTreeSet<Option<String>>,
    /// Tokens whose session the interruption ended, not logged in again yet.
    lost: BTreeSet<Option<String>>,
}

impl<'s> TokenSessions<'s> {
    pub(super) fn new(script: &'s Script) -> Self {
        TokenSessions {
            script,
            open: BTreeSet::new(),
            lost: BTreeSet::new(),
        }
    }

    /// The log name of the token the entry's step acts on.
    fn step_token(&self, entry: EntryRef) -> Option<Option<String>> {
        let id = entry.step?;
        let step = self.script.steps.iter().find(|s| s.id == id)?;
        Some(self.script.token_record_name(self.script.step_token(step)))
    }

    /// `keyrite resume` took the ceremony up: every session ended with the interrupted process.
    pub(super) fn resumed(&mut self) {
        let open = std::mem::take(&mut self.open);
        self.lost.extend(open);
    }

    /// True when this `hsm_activated` logs in again a token the interruption logged out.
    pub(super) fn is_relogin(&self, record: &Record) -> bool {
        matches!(record, Record::HsmActivated { hsm, .. } if self.lost.contains(hsm))
    }

    /// Follow logins and logouts; refuse a login on another token than its step's, and an HSM
    /// result while its step's token is not logged in.
    pub(super) fn record(&mut self, entry: EntryRef, record: &Record) -> Result<(), String> {
        let seq = entry.seq;
        match record {
            Record::HsmActivated { hsm, token } => {
                if let Some(step_token) = self.step_token(entry) {
                    if step_token != *hsm {
                        return Err(format!(
                            "log entry {seq}: token {} (serial {}) was logged in as {} in a step \
                             that acts on {}",
                            token.token_label,
                            token.serial,
                            self.describe(hsm),
                            self.describe(&step_token)
                        ));
                    }
                }
                self.lost.remove(hsm);
                self.open.insert(hsm.clone());
            }
            Record::HsmDeactivated { hsm, .. } => {
                self.open.remove(hsm);
            }
            Record::KeyGenerated { .. }
            | Record::CertificateSigned(_)
            | Record::CaCertificateSigned(_)
            | Record::CrlSigned(_)
            | Record::CertificateStored { .. }
            | Record::KeyDestroyed(_)
                if self.script.has_several_tokens() =>
            {
                let Some(step_token) = self.step_token(entry) else {
                    return Ok(());
                };
                if !self.open.contains(&step_token) {
                    return Err(format!(
                        "log entry {seq}: {} in a step on {}, which is not logged in there",
                        entry.kind,
                        self.describe(&step_token)
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn describe(&self, name: &Option<String>) -> String {
        match name {
            Some(n) => format!("token \"{n}\""),
            None => format!("the primary token \"{}\"", self.script.primary_token()),
        }
    }
}

//! How `keyrite resume` takes up a quorum step (split, reshare, retire) that was interrupted, and
//! how it logs in again when the interrupted run's session was opened by the quorum.
//!
//! A quorum step changes cards and PINs in several writes, each announced by a write-ahead entry
//! (`hsm_intent` write_share / destroy_share / init_token, `quorum_pins` stages). Those entries say
//! how far it got: nothing lasting yet (performed again), or exactly which cards and PINs changed
//! (the room is told what to do, by name).

use crate::evidence::log::AuditEntry;
use crate::script::{Action, Script};
use std::collections::BTreeMap;

/// How far an interrupted quorum step got, read from its own log entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// No card written, no PIN changed, no token initialised: it can simply run again.
    Untouched,
    /// A split initialised a factory-fresh token with throw-away PINs that died with keyrite.
    FreshTokenInitialised,
    /// These cards (as the intents describe them) may hold shares of a split the HSM never got.
    CardsWritten(Vec<String>),
    /// The HSM PIN change started; `next` is what its `quorum_pins` record told the room to do.
    PinsChanging { next: String },
    /// Old shares were destroyed on these cards before the interruption.
    SharesDestroyed(Vec<String>),
}

/// The entries of the interrupted step `step` since it last started (or was resumed).
fn step_entries<'a>(entries: &'a [AuditEntry], step: &str) -> &'a [AuditEntry] {
    let start = entries
        .iter()
        .rposition(|e| {
            matches!(e.kind(), "step_started" | "step_resumed") && e.step.as_deref() == Some(step)
        })
        // Not started yet (the kill came between steps): it has done nothing.
        .map_or(entries.len(), |i| i + 1);
    &entries[start..]
}

fn text<'a>(entry: &'a AuditEntry, key: &str) -> &'a str {
    entry
        .event
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}

/// What the interrupted step `step` left behind.
pub fn progress(entries: &[AuditEntry], step: &str) -> Progress {
    let mine = step_entries(entries, step);
    // Issue 12: a backup logged complete left nothing half-done; resuming completes the step.
    if mine.iter().any(|e| e.kind() == "key_backed_up") {
        return Progress::Untouched;
    }
    if let Some(pins) = mine.iter().rev().find(|e| e.kind() == "quorum_pins") {
        let next = text(pins, "next");
        let next = if next.is_empty() {
            "the PIN change reached its last stage: finish it with the cards (docs/operator-guide.md, \
             \"Finishing an interrupted split\")"
        } else {
            next
        };
        return Progress::PinsChanging { next: next.into() };
    }
    let intents = |op: &str| -> Vec<String> {
        mine.iter()
            .filter(|e| e.kind() == "hsm_intent" && text(e, "operation") == op)
            .map(|e| text(e, "detail").to_string())
            .collect()
    };
    let destroyed = intents("destroy_share");
    if !destroyed.is_empty() {
        return Progress::SharesDestroyed(destroyed);
    }
    let written = intents("write_share");
    if !written.is_empty() {
        return Progress::CardsWritten(written);
    }
    if !intents("init_token").is_empty() {
        return Progress::FreshTokenInitialised;
    }
    Progress::Untouched
}

/// Why resume cannot carry on, and what the room does instead; `None`: performed again.
pub fn refusal(action: Action, progress: &Progress, rehearsal: bool) -> Option<String> {
    const ABORT: &str = "close the ceremony with `keyrite abort OUT --reason …`";
    match progress {
        Progress::Untouched => None,
        // A rehearsal's folder recorded the split at each stage: running the split again finishes
        // that split with its cards (quorum_finish.rs) instead of making a new one.
        Progress::PinsChanging { .. } if rehearsal && action == Action::SplitActivation => None,
        Progress::PinsChanging { next } => Some(format!(
            "the HSM PIN change of this {action} was interrupted; {ABORT}, then: {next}"
        )),
        Progress::FreshTokenInitialised => Some(format!(
            "the split initialised the token with throw-away PINs that ended with the interrupted \
             keyrite, and no card was written; {ABORT}, have the token re-initialised (the vendor's \
             factory reset; in a rehearsal, a new --env) and run the ceremony again"
        )),
        Progress::CardsWritten(cards) if action == Action::BackupKey => Some(format!(
            "the interrupted backup_key had written shares of a new key-encryption key ({}); its KEK was a \
             session object and ended with keyrite, so no KEK is on the token, and any blob it wrapped \
             was not recorded; {ABORT}, have the security officer delete the objects labelled \
             keyrite-share:<ceremony id>/kek and keyrite-commitments:<ceremony id>/kek from those cards \
             (pkcs11-tool --delete-object --type data --label …), then back the key up in a new ceremony \
             that names it as an existing key (docs/operator-guide.md, \"Backing up a root key\")",
            cards.join("; ")
        )),
        Progress::CardsWritten(cards) => Some(format!(
            "the interrupted {action} had started writing shares ({}) and had not changed the HSM \
             PINs, so the HSM still opens with its PINs from before the step and those shares \
             open nothing; {ABORT}, have the security officer delete the objects labelled \
             keyrite-share:<ceremony id> and keyrite-commitments:<ceremony id> from those cards \
             (pkcs11-tool --delete-object --type data --label …), move away the share envelopes \
             the run wrote for sealed cards, then run the ceremony again",
            cards.join("; ")
        )),
        Progress::SharesDestroyed(cards) => Some(format!(
            "the interrupted {action} had destroyed old shares ({}); the new cards of the reshare \
             hold the activation secret; {ABORT}, run a share-health-check on the old cards and \
             record which still hold a share, then retire those in a new ceremony",
            cards.join("; ")
        )),
    }
}

/// How the interrupted run's HSM session was logged in, so resume logs in the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    Closed,
    /// With the user PIN (typed, or the rehearsal's).
    UserPin,
    /// With the PIN the quorum's cards derive: the cards are presented again.
    Quorum,
}

/// The primary token's session the log leaves open (see [`sessions`]).
pub fn session(script: &Script, entries: &[AuditEntry]) -> Session {
    sessions(script, entries)
        .remove(&None)
        .unwrap_or(Session::Closed)
}

/// Per token (by log name, `None` the primary), the session the log leaves open: the last
/// `hsm_activated` not followed by `hsm_deactivated`. A split or reshare that changed the PINs
/// after it makes it a quorum session.
pub fn sessions(script: &Script, entries: &[AuditEntry]) -> BTreeMap<Option<String>, Session> {
    let mut all = BTreeMap::new();
    for entry in entries {
        // Logins and logouts name their token; the quorum's entries act on their step's.
        let token = match entry.kind() {
            "hsm_activated" | "hsm_deactivated" => Some(text(entry, "hsm"))
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            _ => entry
                .step
                .as_deref()
                .and_then(|id| script.steps.iter().find(|s| s.id == id))
                .and_then(|s| script.token_record_name(script.step_token(s))),
        };
        let session = all.entry(token).or_insert(Session::Closed);
        match entry.kind() {
            "hsm_activated" => {
                let action = script
                    .steps
                    .iter()
                    .find(|s| Some(&s.id) == entry.step.as_ref())
                    .map(|s| s.action);
                *session = match action {
                    Some(Action::ActivateQuorum | Action::SplitActivation) => Session::Quorum,
                    _ => Session::UserPin,
                };
            }
            "hsm_deactivated" => *session = Session::Closed,
            "quorum_split" if *session != Session::Closed => *session = Session::Quorum,
            "quorum_pins"
                if *session != Session::Closed && text(entry, "stage") != "setting-so-pin" =>
            {
                *session = Session::Quorum
            }
            _ => {}
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::resume::{resumption, Resumption};
    use Resumption::*;

    /// Every action with its policy rule (dual control, HSM, activation), its replay rule (the HSM
    /// result that must come inside a step authorised for it) and its resume rule.
    const TABLE: &[(Action, bool, bool, bool, &str, Resumption)] = &[
        (Action::Manual, false, false, false, "-", Again),
        (Action::Preflight, false, false, false, "-", Again),
        (
            Action::ActivateHsm,
            true,
            true,
            true,
            "hsm_activated",
            Again,
        ),
        (
            Action::GenerateKey,
            true,
            true,
            false,
            "key_generated",
            AdoptOrAgain,
        ),
        (Action::ConfirmFingerprint, false, false, false, "-", Again),
        (
            Action::SignCertificate,
            true,
            true,
            false,
            "certificate_signed",
            Again,
        ),
        (
            Action::DeactivateHsm,
            false,
            true,
            false,
            "hsm_deactivated",
            Again,
        ),
        (Action::Attach, false, false, false, "attached", Again),
        (
            Action::SplitActivation,
            true,
            true,
            false,
            "hsm_activated",
            AgainIfUntouched,
        ),
        (
            Action::ActivateQuorum,
            true,
            true,
            true,
            "hsm_activated",
            Again,
        ),
        (Action::ShareHealthCheck, false, false, false, "-", Again),
        (Action::Reshare, true, true, false, "-", AgainIfUntouched),
        (
            Action::RetireShares,
            true,
            false,
            false,
            "-",
            AgainIfUntouched,
        ),
        (Action::SignTestMessage, true, true, false, "-", Again),
        (Action::SignCrl, true, true, false, "crl_signed", Again),
        (
            Action::SignSubordinateCa,
            true,
            true,
            false,
            "ca_certificate_signed",
            Again,
        ),
        (
            Action::SignCrossCertificate,
            true,
            true,
            false,
            "ca_certificate_signed",
            Again,
        ),
        (
            Action::BackupKey,
            true,
            true,
            false,
            "key_backed_up",
            AgainIfUntouched,
        ),
        (
            Action::RestoreKey,
            true,
            true,
            false,
            "key_restored",
            UndoThenAgain,
        ),
        (
            Action::DestroyKey,
            true,
            true,
            false,
            "key_destroyed",
            Finish,
        ),
    ];

    /// The row of each action: no catch-all, so a new action does not compile until it has one.
    fn row(action: Action) -> usize {
        match action {
            Action::Manual => 0,
            Action::Preflight => 1,
            Action::ActivateHsm => 2,
            Action::GenerateKey => 3,
            Action::ConfirmFingerprint => 4,
            Action::SignCertificate => 5,
            Action::DeactivateHsm => 6,
            Action::Attach => 7,
            Action::SplitActivation => 8,
            Action::ActivateQuorum => 9,
            Action::ShareHealthCheck => 10,
            Action::Reshare => 11,
            Action::RetireShares => 12,
            Action::SignTestMessage => 13,
            Action::SignCrl => 14,
            Action::SignSubordinateCa => 15,
            Action::SignCrossCertificate => 16,
            Action::BackupKey => 17,
            Action::RestoreKey => 18,
            Action::DestroyKey => 19,
        }
    }

    #[test]
    fn every_action_has_its_policy_replay_and_resume_rule() {
        for (i, (action, sensitive, hsm, activation, _replay, resume)) in TABLE.iter().enumerate() {
            assert_eq!(row(*action), i, "{action}: its row");
            assert_eq!(action.is_sensitive(), *sensitive, "{action}: dual control");
            assert_eq!(action.uses_hsm(), *hsm, "{action}: uses the HSM");
            assert_eq!(action.is_activation(), *activation, "{action}: activation");
            assert_eq!(resumption(*action), *resume, "{action}: resume rule");
        }
    }

    fn entry(seq: u64, step: &str, event: serde_json::Value) -> AuditEntry {
        AuditEntry {
            seq,
            time: "2026-01-01T00:00:00Z".into(),
            step: Some(step.into()),
            actors: vec![],
            event,
            prev: String::new(),
            hash: String::new(),
        }
    }

    fn intent(seq: u64, step: &str, op: &str) -> AuditEntry {
        let e = serde_json::json!({"kind": "hsm_intent", "operation": op, "detail": format!("{op} {seq}")});
        entry(seq, step, e)
    }

    #[test]
    fn a_quorum_step_resumes_only_while_it_has_written_nothing() {
        let started = entry(1, "split", serde_json::json!({"kind": "step_started"}));
        let other = intent(0, "earlier", "write_share");
        let none = [other.clone(), started.clone()];
        assert_eq!(progress(&none, "split"), Progress::Untouched);
        // Not started yet: the earlier step's writes are not this step's.
        assert_eq!(
            progress(std::slice::from_ref(&other), "split"),
            Progress::Untouched
        );
        assert_eq!(
            refusal(Action::SplitActivation, &Progress::Untouched, false),
            None
        );
        let written = [started.clone(), intent(2, "split", "write_share")];
        let p = progress(&written, "split");
        assert_eq!(p, Progress::CardsWritten(vec!["write_share 2".into()]));
        let why = refusal(Action::SplitActivation, &p, true).unwrap();
        assert!(
            why.contains("write_share 2") && why.contains("keyrite abort"),
            "{why}"
        );
        let pins = entry(
            3,
            "split",
            serde_json::json!({"kind": "quorum_pins", "stage": "so-pin-set", "next": "finish it with 2 cards"}),
        );
        let changing = [started.clone(), intent(2, "split", "write_share"), pins];
        let p = progress(&changing, "split");
        assert!(matches!(p, Progress::PinsChanging { .. }), "{p:?}");
        // A rehearsal's split finishes its PIN change with the cards; elsewhere the room is told.
        assert_eq!(refusal(Action::SplitActivation, &p, true), None);
        let why = refusal(Action::Reshare, &p, true).unwrap();
        assert!(why.contains("finish it with 2 cards"), "{why}");
        let fresh = [started.clone(), intent(2, "split", "init_token")];
        assert_eq!(progress(&fresh, "split"), Progress::FreshTokenInitialised);
        let retire = [started, intent(2, "split", "destroy_share")];
        let p = progress(&retire, "split");
        assert!(refusal(Action::RetireShares, &p, false)
            .unwrap()
            .contains("destroy_share 2"));
    }
}

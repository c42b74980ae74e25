//! Issue 12: policy rules for `[backup]`, `[restore]` and their steps.

use super::{root, step_path, Checker};
use crate::script::diagnostic::Target;
use crate::script::model::Action;
use crate::script::signing::normalize_hash;

impl Checker<'_> {
    pub(super) fn backups(&mut self) {
        let steps: Vec<(usize, Action, Option<String>)> = self
            .s
            .steps
            .iter()
            .enumerate()
            .filter(|(_, st)| matches!(st.action, Action::BackupKey | Action::RestoreKey))
            .map(|(i, st)| (i, st.action, st.key.clone()))
            .collect();
        for (i, action, key) in steps {
            let name = self.step_name(i);
            let (section, scripted) = match action {
                Action::BackupKey => ("[backup]", self.s.backup.as_ref().map(|b| b.key.clone())),
                _ => ("[restore]", self.s.restore.as_ref().map(|r| r.key.clone())),
            };
            match (scripted, key) {
                (None, _) => {
                    let what = format!("{name} ({action}) needs a {section} section in the script");
                    let fix = "add the section (docs/script-format.md, \"Backup and restore\")";
                    self.error(&step_path(i).key("action"), Target::Value, what, fix);
                }
                (Some(k), Some(step_key)) if k != step_key => {
                    let what =
                        format!("{name} names key \"{step_key}\", but {section} names \"{k}\"");
                    let fix = format!("use key = \"{k}\" on the step");
                    self.error(&step_path(i).key("key"), Target::Value, what, fix);
                }
                _ => {}
            }
        }
        if let Some(b) = &self.s.backup {
            let at = root().key("backup");
            if self.s.key(&b.key).is_some_and(|k| k.algorithm.is_ml_dsa()) {
                let what = format!(
                    "[backup] names ML-DSA key \"{}\"; keyrite backs up RSA and EC keys only",
                    b.key
                );
                let fix = "back up an RSA or EC key, or remove [backup] (an ML-DSA key then never leaves its token)";
                self.error(&at.clone().key("key"), Target::Value, what, fix);
            }
            if self.s.key(&b.key).is_none() {
                let what = format!(
                    "[backup] names key \"{}\", which no [[keys]] entry defines",
                    b.key
                );
                let fix = "name the key this ceremony generates";
                self.error(&at.clone().key("key"), Target::Value, what, fix);
            }
            let generated = self.s.steps.iter().any(|s| {
                s.action == Action::GenerateKey && s.key.as_deref() == Some(b.key.as_str())
            });
            let backed = self.s.steps.iter().any(|s| s.action == Action::BackupKey);
            if !backed && generated {
                let what = format!(
                    "[backup] makes key \"{}\" extractable under a trusted wrap, but no backup_key step backs it up",
                    b.key
                );
                let fix = "add a backup_key step after the key is generated, or remove [backup]";
                self.error(&at.clone().key("key"), Target::Value, what, fix);
            }
            self.kek_cards(&at, b.threshold, b.cards.len());
        }
        if let Some(r) = &self.s.restore {
            let at = root().key("restore");
            if self.s.key(&r.key).is_some_and(|k| k.algorithm.is_ml_dsa()) {
                let what = format!(
                    "[restore] names ML-DSA key \"{}\"; keyrite restores RSA and EC keys only",
                    r.key
                );
                self.error(
                    &at.clone().key("key"),
                    Target::Value,
                    what,
                    "restore an RSA or EC key",
                );
            }
            if self.s.key(&r.key).is_none() {
                let what = format!(
                    "[restore] names key \"{}\", which no [[keys]] entry defines",
                    r.key
                );
                let fix = format!(
                    "add a [[keys]] entry with label = \"{}\" and the key's algorithm",
                    r.key
                );
                self.error(&at.clone().key("key"), Target::Value, what, fix);
            }
            if self.s.steps.iter().any(|s| {
                s.action == Action::GenerateKey && s.key.as_deref() == Some(r.key.as_str())
            }) {
                let what = format!("key \"{}\" is both generated and restored", r.key);
                let fix = "a restored key is never generated: remove the generate_key step";
                self.error(&at.clone().key("key"), Target::Value, what, fix);
            }
            // A run pins what the backup report says; a rehearsal may take it from its folder.
            if !self.rehearsal {
                for (field, value) in [("blob_sha256", &r.blob_sha256), ("key_hash", &r.key_hash)] {
                    if normalize_hash(value).is_none() {
                        let what = format!(
                            "[restore] {field} \"{value}\" is not a SHA-256 (64 hex digits)"
                        );
                        let fix = "copy it from the backup ceremony's report (backups[])";
                        self.error(&at.clone().key(field), Target::Value, what, fix);
                    }
                }
                if r.commitments_sha256
                    .as_deref()
                    .and_then(normalize_hash)
                    .is_none()
                {
                    let what = "[restore] has no commitments_sha256 of the KEK split".to_string();
                    let fix = "copy backups[].kek_split.commitments_sha256 from the backup report: cards of another split are then refused";
                    self.error(&at.clone().key("threshold"), Target::Key, what, fix);
                }
            }
            self.kek_cards(&at, r.threshold, r.cards.len());
        }
    }

    fn kek_cards(&mut self, at: &crate::script::KeyPath, m: u16, n: usize) {
        if m < 2 || n < usize::from(m) {
            let what = format!("the KEK quorum is {m} of {n} cards");
            let fix = "give threshold ≥ 2 and at least that many cards";
            self.error(&at.clone().key("threshold"), Target::Value, what, fix);
        }
    }
}

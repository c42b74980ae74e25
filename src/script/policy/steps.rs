//! Policy rules about steps: ids, who confirms and witnesses, key and certificate references, HSM session
//! order, the offline pre-flight and the key fingerprint read-back.

use super::{quoted, root, step_path, Checker};
use crate::script::diagnostic::{KeyPath, Severity, Target};
use crate::script::model::{Action, Step};
use std::collections::HashMap;

impl Checker<'_> {
    pub(super) fn steps(&mut self) {
        if self.s.steps.is_empty() {
            let fix = "add [[steps]] entries: the script is the procedure the room follows";
            self.error(
                &root().key("steps"),
                Target::Value,
                "the script has no steps".into(),
                fix,
            );
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, st) in self.s.steps.iter().enumerate() {
            let at = step_path(i);
            let name = self.step_name(i);
            let id = st.id.trim();
            if id.is_empty() {
                let fix = "give the step a short unique id, e.g. id = \"generate-root-key\"; the log and the answers file use it";
                self.error(
                    &at.clone().key("id"),
                    Target::Value,
                    "step id is empty".into(),
                    fix,
                );
            } else if let Some(&first) = seen.get(id) {
                let line = self.line_of(&step_path(first).key("id"));
                let what = format!("step id \"{id}\" is used twice (first on line {line})");
                self.error(
                    &at.clone().key("id"),
                    Target::Value,
                    what,
                    "give each step a distinct id",
                );
            } else {
                seen.insert(id, i);
            }
            if st.instructions.trim().is_empty() {
                let fix = "write, in plain language, what the people in the room must do; a non-specialist must be able to follow it";
                self.error(
                    &at.clone().key("instructions"),
                    Target::Value,
                    format!("{name} has no instructions"),
                    fix,
                );
            }
            self.confirmers(st, &at, &name);
        }
    }

    /// Who confirms and witnesses a step, and whether enough people can.
    fn confirmers(&mut self, st: &Step, at: &KeyPath, name: &str) {
        let action = st.action;
        let confirm_by = at.clone().key("confirm_by");
        if st.confirm_by.is_empty() {
            let what = format!("{name} has nobody to confirm it");
            let fix = "list the roles whose holders confirm it, e.g. confirm_by = [\"operator\"]";
            self.error(&confirm_by, Target::Value, what, fix);
        }
        // A role nobody holds already explains a shortfall; counting heads on top of it is noise.
        let mut unheld = false;
        for (j, &role) in st.confirm_by.iter().enumerate() {
            let item = confirm_by.clone().index(j);
            // On every step, not only sensitive ones: a confirmation records that a trusted person did or
            // checked something, and a witness only attests (witnessed_by).
            if role.is_witness() {
                let what = format!(
                    "confirm_by of {name} lists the witness role \"{role}\"; a witness attests a step and never \
                     counts as a confirmer"
                );
                let fix = if st.witnessed_by.contains(&role) {
                    format!("remove \"{role}\" from confirm_by; witnessed_by already lists it")
                } else {
                    format!("move \"{role}\" to witnessed_by")
                };
                self.error(&item, Target::Value, what, fix);
            } else if self.holders(role) == 0 {
                unheld = true;
                let what = format!("no participant holds the role \"{role}\", so nobody can confirm {name} in that role");
                let fix = format!(
                    "add a participant with role = \"{role}\", or remove it from confirm_by"
                );
                self.error(&item, Target::Value, what, fix);
            }
        }
        for (j, &role) in st.witnessed_by.iter().enumerate() {
            let item = at.clone().key("witnessed_by").index(j);
            if !role.is_witness() {
                let what = format!("\"{role}\" in witnessed_by of {name} is not a witness role");
                let fix = "witnessed_by takes internal-witness and independent-witness only; list operational roles in confirm_by";
                self.error(&item, Target::Value, what, fix);
            } else if self.holders(role) == 0 {
                let what = format!(
                    "no participant holds the role \"{role}\", so nobody can witness {name}"
                );
                let fix = format!(
                    "add a participant with role = \"{role}\", or remove it from witnessed_by"
                );
                self.error(&item, Target::Value, what, fix);
            }
        }
        let min_path = at.clone().key("min_confirmations");
        match st.min_confirmations {
            Some(m) if action.is_sensitive() && m < 2 => {
                let what = format!("{name} ({action}) is sensitive and needs dual control, but min_confirmations = {m}");
                let fix = "set min_confirmations = 2 or more, or remove the line (sensitive steps default to 2 different people)";
                self.error(&min_path, Target::Value, what, fix);
            }
            Some(0) => {
                let what = format!("min_confirmations = 0 for {name}: every step is confirmed by at least one person");
                self.error(
                    &min_path,
                    Target::Value,
                    what,
                    "set min_confirmations = 1 or more, or remove the line",
                );
            }
            _ => {}
        }
        // With only witness roles listed, the witness error above already says nobody can confirm.
        if st.confirm_by.iter().all(|r| r.is_witness()) || unheld {
            return;
        }
        let need = st.required_confirmations();
        let confirmations = if need == 1 {
            "confirmation"
        } else {
            "confirmations"
        };
        let eligible: Vec<&str> = self
            .s
            .participants
            .iter()
            .filter(|p| !p.is_witness() && st.confirm_by.iter().any(|&r| p.holds(r)))
            .map(|p| p.name.as_str())
            .collect();
        if (eligible.len() as u64) < u64::from(need) {
            let floor = if action.is_sensitive() { 2 } else { 1 };
            let who = if eligible.is_empty() {
                String::new()
            } else {
                format!(" ({})", quoted(&eligible))
            };
            let only = match eligible.len() {
                0 => "no participant qualifies".to_owned(),
                1 => format!("only 1 participant qualifies{who}"),
                n => format!("only {n} participants qualify{who}"),
            };
            let what = format!(
                "{name} needs {need} {confirmations} by distinct non-witness persons holding a confirm_by role, but {only}"
            );
            let lower = if need > floor {
                ", or lower min_confirmations"
            } else {
                ""
            };
            let fix = format!("add roles to confirm_by or participants who hold them{lower}");
            let target = if self.l.spans.contains(&min_path) {
                min_path
            } else {
                confirm_by
            };
            self.error(&target, Target::Value, what, fix);
        }
    }

    /// `key` and `certificate` on steps: present where needed, absent elsewhere, and keys generated before use.
    pub(super) fn step_references(&mut self) {
        let mut generated: HashMap<&str, usize> = HashMap::new();
        for (i, st) in self.s.steps.iter().enumerate() {
            let (at, name, action) = (step_path(i), self.step_name(i), st.action);
            let key_path = at.clone().key("key");
            let cert_path = at.clone().key("certificate");
            let uses_key = matches!(
                action,
                Action::GenerateKey
                    | Action::ConfirmFingerprint
                    | Action::SignTestMessage
                    | Action::DestroyKey
                    | Action::BackupKey
                    | Action::RestoreKey
            );
            match (&st.key, uses_key) {
                (None, true) => {
                    let what = format!("{name} ({action}) does not say which key");
                    let fix = format!("add key = \"…\"; {}", self.known_keys_fix("…"));
                    self.error(&key_path, Target::Value, what, fix);
                }
                (Some(k), true) if self.s.key(k).is_none() => {
                    let what =
                        format!("{name} refers to key \"{k}\", which no [[keys]] entry defines");
                    let fix = self.known_keys_fix(k);
                    self.error(&key_path, Target::Value, what, fix);
                }
                (Some(k), true) if action == Action::GenerateKey => {
                    if let Some(&first) = generated.get(k.as_str()) {
                        let what = format!(
                            "key \"{k}\" is generated twice (first by {})",
                            self.step_name(first)
                        );
                        let fix = "generate each key once; the HSM refuses a second key with the same label";
                        self.error(&key_path, Target::Value, what, fix);
                    } else {
                        generated.insert(k, i);
                    }
                }
                (Some(_), false) => {
                    let what = format!("`key` has no meaning for a {action} step");
                    let fix = "remove the line; only generate_key and confirm_fingerprint steps name a key";
                    self.error(&key_path, Target::Key, what, fix);
                }
                _ => {}
            }
            // Issue 11: their `certificate` names a [[ca_certificates]] entry (policy/issued.rs).
            if action.issues_ca_certificate() {
                continue;
            }
            match (&st.certificate, action == Action::SignCertificate) {
                (None, true) => {
                    let known = quoted(self.s.certificates.iter().map(|c| &c.name));
                    let what = format!("{name} (sign_certificate) does not say which certificate");
                    let fix = format!(
                        "add certificate = \"…\" naming a [[certificates]] entry ({known})"
                    );
                    self.error(&cert_path, Target::Value, what, fix);
                }
                (Some(c), true) => match self.s.certificate(c) {
                    None => {
                        let what = format!("{name} refers to certificate \"{c}\", which no [[certificates]] entry defines");
                        let known = quoted(self.s.certificates.iter().map(|c| &c.name));
                        let fix = format!("use one of the certificate names ({known}), or add a [[certificates]] entry");
                        self.error(&cert_path, Target::Value, what, fix);
                    }
                    // A key from an earlier ceremony is found, not generated (existing.rs).
                    Some(cert)
                        if self.s.key(&cert.key).is_some_and(|k| k.existing.is_none())
                            && !generated.contains_key(cert.key.as_str()) =>
                    {
                        let what = format!(
                            "{name} signs certificate \"{c}\" with key \"{}\", but no earlier generate_key step creates that key",
                            cert.key
                        );
                        let fix = format!(
                            "put a generate_key step with key = \"{}\" before this step",
                            cert.key
                        );
                        self.error(&cert_path, Target::Value, what, fix);
                    }
                    Some(_) => {}
                },
                (Some(_), false) => {
                    let what = format!("`certificate` has no meaning for a {action} step");
                    let fix = "remove the line; only sign_certificate steps name a certificate";
                    self.error(&cert_path, Target::Key, what, fix);
                }
                (None, false) => {}
            }
        }
    }

    pub(super) fn preflight(&mut self) {
        let steps = &self.s.steps;
        let Some(first_hsm) = steps.iter().position(|s| s.action.uses_hsm()) else {
            return;
        };
        if steps[..first_hsm]
            .iter()
            .any(|s| s.action == Action::Preflight)
        {
            return;
        }
        let level = self.s.ceremony.security_level;
        let hsm_step = self.step_name(first_hsm);
        let what = match self.level_severity() {
            Severity::Error => format!(
                "no preflight step comes before {hsm_step}, the first HSM step; security level {level} requires the offline pre-flight"
            ),
            Severity::Warning => format!(
                "no preflight step comes before {hsm_step}, the first HSM step, so the report cannot show the host was offline"
            ),
        };
        let fix = match steps.iter().position(|s| s.action == Action::Preflight) {
            Some(late) => format!("move {} before {hsm_step}", self.step_name(late)),
            None => format!("add a step with action = \"preflight\" before {hsm_step}"),
        };
        let severity = self.level_severity();
        self.push(severity, &step_path(first_hsm), Target::Value, what, fix);
    }

    pub(super) fn fingerprints(&mut self) {
        let level = self.s.ceremony.security_level;
        let severity = self.level_severity();
        let why = match severity {
            Severity::Error => {
                format!("security level {level} requires a second person to confirm the key hash")
            }
            Severity::Warning => {
                "a second person should confirm the key hash (required from level high)".to_owned()
            }
        };
        for (i, st) in self.s.steps.iter().enumerate() {
            let Some(key) = st
                .key
                .as_deref()
                .filter(|_| st.action == Action::GenerateKey)
            else {
                continue;
            };
            if self.s.key(key).is_none() {
                continue;
            }
            let mut read_backs = self
                .s
                .steps
                .iter()
                .enumerate()
                .skip(i + 1)
                .filter(|(_, s)| {
                    s.action == Action::ConfirmFingerprint && s.key.as_deref() == Some(key)
                });
            let first = read_backs.clone().next();
            if read_backs.any(|(_, s)| s.required_confirmations() >= 2) {
                continue;
            }
            let name = self.step_name(i);
            let (path, what, fix) = match first {
                Some((j, s)) => (
                    step_path(j).key("min_confirmations"),
                    format!(
                        "{} confirms the fingerprint of key \"{key}\" with {} confirmation only; {why}",
                        self.step_name(j),
                        s.required_confirmations()
                    ),
                    "set min_confirmations = 2".to_owned(),
                ),
                None => (
                    step_path(i),
                    format!("no confirm_fingerprint step for key \"{key}\" follows {name}; {why}"),
                    format!(
                        "add a step with action = \"confirm_fingerprint\", key = \"{key}\" and min_confirmations = 2 after {name}"
                    ),
                ),
            };
            self.push(severity, &path, Target::Value, what, fix);
        }
    }
}

//! Policy rules for `[[crls]]` and `sign_crl` steps, the root profile's explicit validity and
//! policies, and per-role confirmation minimums (`min_per_role`).

use super::{is_safe_file_name, quoted, root, step_path, Checker};
use crate::script::crl::{parse_serial, parse_utc};
use crate::script::diagnostic::Target;
use crate::script::model::Action;
use std::collections::HashMap;

/// The RFC 5280 "no well-defined expiration date" notAfter.
pub const NEVER_EXPIRES: &str = "9999-12-31T23:59:59Z";

impl Checker<'_> {
    pub(super) fn crls(&mut self) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut files: HashMap<String, String> = HashMap::new();
        for k in &self.s.keys {
            files.insert(
                k.public_key_file().to_ascii_lowercase(),
                format!("key \"{}\"", k.label),
            );
        }
        for c in &self.s.certificates {
            files.insert(
                c.file().to_ascii_lowercase(),
                format!("certificate \"{}\"", c.name),
            );
        }
        for (i, crl) in self.s.crls.iter().enumerate() {
            let at = root().key("crls").index(i);
            let name = at.clone().key("name");
            if !is_safe_file_name(&crl.name) {
                let what = format!("CRL name \"{}\" is not a safe file name", crl.name);
                let fix = "use letters, digits, '.', '_' and '-' only, not starting with '.'; the CRL is written to artifacts/<name>.crl.pem";
                self.error(&name, Target::Value, what, fix);
            } else if let Some(&first) = names.get(crl.name.as_str()) {
                let line = self.line_of(&root().key("crls").index(first).key("name"));
                let what = format!(
                    "CRL name \"{}\" is used twice (first on line {line})",
                    crl.name
                );
                self.error(&name, Target::Value, what, "give each CRL a distinct name");
            } else {
                names.insert(&crl.name, i);
                for file in [crl.file(), crl.issuer_file(), crl.previous_file()] {
                    if let Some(owner) = files.get(&file.to_ascii_lowercase()) {
                        let what = format!(
                            "CRL \"{}\" would write {file}, the file of {owner}",
                            crl.name
                        );
                        self.error(
                            &name,
                            Target::Value,
                            what,
                            "rename the CRL or the other entry",
                        );
                    }
                }
            }
            let pinned_or_generated = self.s.key(&crl.key).is_some_and(|k| {
                k.existing.is_some()
                    || self.s.steps.iter().any(|st| {
                        st.action == Action::GenerateKey
                            && st.key.as_deref() == Some(k.label.as_str())
                    })
            });
            if !crl.key.trim().is_empty() && !pinned_or_generated {
                let what = format!(
                    "CRL \"{}\" is signed with key \"{}\", which this script neither generates nor pins by its hash: keyrite would use whatever key the token holds under that label (the issuer certificate must still match it)",
                    crl.name, crl.key
                );
                let fix = format!(
                    "add a [[keys]] entry with label = \"{}\" and existing = {{ key_hash = \"…\" }}, copied from the report of the ceremony that generated it",
                    crl.key
                );
                self.push(
                    crate::script::diagnostic::Severity::Warning,
                    &at.clone().key("key"),
                    Target::Value,
                    what,
                    fix,
                );
            }
            if crl.key.trim().is_empty() {
                let what = format!("CRL \"{}\" names no signing key", crl.name);
                let fix = "set key = \"…\" to the CA key's label on the token";
                self.error(&at.clone().key("key"), Target::Value, what, fix);
            }
            if crl.issuer_certificate.trim().is_empty() {
                let what = format!("CRL \"{}\" names no issuer certificate", crl.name);
                let fix = "set issuer_certificate to the CA certificate's PEM file, relative to the script";
                self.error(
                    &at.clone().key("issuer_certificate"),
                    Target::Value,
                    what,
                    fix,
                );
            }
            let this = self.time(&at.clone().key("this_update"), &crl.this_update);
            let next = self.time(&at.clone().key("next_update"), &crl.next_update);
            if let (Some(this), Some(next)) = (this, next) {
                let days = (next - this).whole_seconds() as f64 / 86_400.0;
                let max = crl.profile.max_days();
                if next <= this {
                    let what = format!(
                        "next_update {} is not after this_update {}",
                        crl.next_update, crl.this_update
                    );
                    self.error(
                        &at.clone().key("next_update"),
                        Target::Value,
                        what,
                        "set next_update after this_update",
                    );
                } else if days > max as f64 {
                    let what = format!(
                        "next_update {} is {days:.1} days after this_update; the {} CRL profile allows at most {max} days",
                        crl.next_update,
                        crl.profile.as_str()
                    );
                    let latest = this + time::Duration::days(max);
                    let fix = format!(
                        "set next_update no later than {}",
                        crate::x509::crl::rfc3339(latest)
                    );
                    self.error(&at.clone().key("next_update"), Target::Value, what, fix);
                }
            }
            let mut serials: HashMap<Vec<u8>, usize> = HashMap::new();
            for (j, r) in crl.revoked.iter().enumerate() {
                let entry = at.clone().key("revoked").index(j);
                match parse_serial(&r.serial) {
                    Ok(s) => {
                        if let Some(&first) = serials.get(&s) {
                            let what = format!(
                                "serial {} is revoked twice in CRL \"{}\" (entries #{} and #{})",
                                r.serial,
                                crl.name,
                                first + 1,
                                j + 1
                            );
                            self.error(
                                &entry.clone().key("serial"),
                                Target::Value,
                                what,
                                "list each certificate once",
                            );
                        } else {
                            serials.insert(s, j);
                        }
                    }
                    Err(why) => {
                        let fix =
                            "write the serial in hex, as `openssl x509 -noout -serial` prints it";
                        self.error(&entry.clone().key("serial"), Target::Value, why, fix);
                    }
                }
                if let (Some(date), Some(this)) =
                    (self.time(&entry.clone().key("date"), &r.date), this)
                {
                    if date > this {
                        let what = format!(
                            "revocation date {} is after this_update {}",
                            r.date, crl.this_update
                        );
                        self.error(
                            &entry.key("date"),
                            Target::Value,
                            what,
                            "a CRL lists revocations that happened before it was issued",
                        );
                    }
                }
            }
        }
        for (i, st) in self.s.steps.iter().enumerate() {
            let path = step_path(i).key("crl");
            let name = self.step_name(i);
            match (&st.crl, st.action == Action::SignCrl) {
                (None, true) => {
                    let known = quoted(self.s.crls.iter().map(|c| &c.name));
                    let what = format!("{name} (sign_crl) does not say which CRL");
                    let fix = format!("add crl = \"…\" naming a [[crls]] entry ({known})");
                    self.error(&path, Target::Value, what, fix);
                }
                (Some(c), true) if self.s.crl(c).is_none() => {
                    let known = quoted(self.s.crls.iter().map(|c| &c.name));
                    let what =
                        format!("{name} refers to CRL \"{c}\", which no [[crls]] entry defines");
                    let fix =
                        format!("use one of the CRL names ({known}), or add a [[crls]] entry");
                    self.error(&path, Target::Value, what, fix);
                }
                (Some(_), false) => {
                    let action = st.action;
                    let what = format!("`crl` has no meaning for a {action} step");
                    self.error(
                        &path,
                        Target::Key,
                        what,
                        "remove the line; only sign_crl steps name a CRL",
                    );
                }
                _ => {}
            }
            self.min_per_role(i);
        }
    }

    /// A time the script gives: RFC 3339 in UTC, or an error at `path`.
    fn time(
        &mut self,
        path: &crate::script::diagnostic::KeyPath,
        text: &str,
    ) -> Option<time::OffsetDateTime> {
        match parse_utc(text) {
            Ok(t) => Some(t),
            Err(why) => {
                let fix = "write the time in UTC as RFC 3339, e.g. \"2026-12-01T00:00:00Z\"";
                self.error(path, Target::Value, why, fix);
                None
            }
        }
    }

    /// `min_per_role`: each role confirms the step, someone holds it often enough, and no witness.
    fn min_per_role(&mut self, i: usize) {
        let st = &self.s.steps[i];
        let name = self.step_name(i);
        for (&role, &need) in &st.min_per_role {
            let path = step_path(i).key("min_per_role").key(role.as_str());
            let held = self
                .s
                .participants
                .iter()
                .filter(|p| p.holds(role) && !p.is_witness())
                .count();
            let (what, fix) = if role.is_witness() {
                (
                    format!("min_per_role of {name} names the witness role \"{role}\"; witnesses attest and never confirm"),
                    "list witnesses in witnessed_by".to_owned(),
                )
            } else if !st.confirm_by.contains(&role) {
                (
                    format!("min_per_role of {name} asks for confirmations as {role}, but confirm_by does not list \"{role}\""),
                    format!("add \"{role}\" to confirm_by, or remove it from min_per_role"),
                )
            } else if need == 0 {
                (
                    format!("min_per_role of {name} asks for 0 confirmations as {role}"),
                    "remove the entry, or ask for 1 or more".to_owned(),
                )
            } else if held < need as usize {
                (
                    format!(
                        "{name} needs {need} confirmations as {role}, but only {held} participant(s) hold the role"
                    ),
                    format!(
                        "add participants with role = \"{role}\", or lower min_per_role.{role}"
                    ),
                )
            } else {
                continue;
            };
            self.error(&path, Target::Value, what, fix);
        }
    }

    /// A root profile's explicit validity, policies and extra subject attributes.
    pub(super) fn root_profile(&mut self, i: usize) {
        let c = &self.s.certificates[i];
        let at = root().key("certificates").index(i);
        match (c.validity_days.is_some(), c.not_after.is_some()) {
            (true, true) => {
                let what = format!(
                    "certificate \"{}\" gives both validity_days and not_after",
                    c.name
                );
                self.error(
                    &at.clone().key("not_after"),
                    Target::Key,
                    what,
                    "keep one of them",
                );
            }
            (false, false) => {
                let what = format!(
                    "certificate \"{}\" gives neither validity_days nor not_after",
                    c.name
                );
                let fix = format!("add validity_days = 9125 (25 years), or not_after = \"{NEVER_EXPIRES}\" for RFC 5280's no expiration date");
                self.error(&at.clone().key("validity_days"), Target::Key, what, fix);
            }
            _ => {}
        }
        let before = c
            .not_before
            .as_deref()
            .and_then(|t| self.time(&at.clone().key("not_before"), t));
        let after = c
            .not_after
            .as_deref()
            .and_then(|t| self.time(&at.clone().key("not_after"), t));
        if let (Some(b), Some(a)) = (before, after) {
            if a <= b {
                let what = format!(
                    "not_after of certificate \"{}\" is not after its not_before",
                    c.name
                );
                self.error(
                    &at.clone().key("not_after"),
                    Target::Value,
                    what,
                    "set not_after after not_before",
                );
            }
        }
        for (j, oid) in c.extensions.policies.iter().enumerate() {
            if der::asn1::ObjectIdentifier::new(oid).is_err() {
                let what = format!("policy \"{oid}\" is not a dotted OID");
                let fix = "write the policy OID in dotted form, e.g. \"1.3.6.1.4.1.55555.1.1\"";
                self.error(
                    &at.clone().key("extensions").key("policies").index(j),
                    Target::Value,
                    what,
                    fix,
                );
            }
        }
        if let Some(uri) = &c.extensions.cps_uri {
            let path = at.clone().key("extensions").key("cps_uri");
            if c.extensions.policies.is_empty() {
                let what = "cps_uri is given but no policies".to_owned();
                self.error(
                    &path,
                    Target::Key,
                    what,
                    "add policies = [\"…\"], or remove cps_uri",
                );
            } else if !(uri.starts_with("http://") || uri.starts_with("https://"))
                || !uri.is_ascii()
            {
                let what = format!("cps_uri \"{uri}\" is not an http(s) URI in ASCII");
                self.error(&path, Target::Value, what, "give the CPS's web address");
            }
        }
        let subject = at.clone().key("subject");
        for (short, value) in c.subject.attributes() {
            if matches!(short, "C" | "O" | "CN") {
                continue;
            }
            let chars = value.chars().count();
            if value.trim().is_empty() || chars > 128 {
                let what = format!("subject {short} must be 1 to 128 characters, not {chars}");
                self.error(
                    &subject.clone().key(short),
                    Target::Value,
                    what,
                    format!("write the {short} or remove the line"),
                );
            }
        }
    }

    /// Custodian cards whose holders are not participants stay in their bags: enough holders must be
    /// in the room to reach the threshold.
    pub(super) fn presented_here(
        &mut self,
        at: &crate::script::diagnostic::KeyPath,
        threshold: u16,
        cards: &[crate::script::quorum::QuorumCard],
        writes: bool,
    ) {
        if writes {
            return;
        }
        let present = cards
            .iter()
            .filter(|c| self.s.participant(&c.holder).is_some())
            .count();
        if present < usize::from(threshold) && present < cards.len() {
            let absent = quoted(
                cards
                    .iter()
                    .filter(|c| self.s.participant(&c.holder).is_none())
                    .map(|c| &c.holder),
            );
            let what = format!(
                "only {present} card holder(s) are participants, but the quorum needs {threshold}; holders not listed as participants ({absent}) are not in the room and cannot present their cards"
            );
            let fix = "list enough of the card holders as participants with role = \"custodian\"";
            self.error(&at.clone().key("cards"), Target::Key, what, fix);
        }
    }
}

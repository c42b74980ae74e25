//! Policy rules about certificates issued to other CAs (`[[ca_certificates]]`, issue 11): names,
//! the issuing key, validity, extension values, and the steps that sign them.

use super::{is_safe_file_name, quoted, root, step_path, Checker, MAX_VALIDITY_DAYS};
use crate::script::diagnostic::Target;
use crate::script::model::{HashAlgorithm, KeyAlgorithm};
use crate::script::signing::{eku_oid, parse_utc};
use std::collections::HashMap;

impl Checker<'_> {
    pub(super) fn ca_certificates(&mut self) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, c) in self.s.ca_certificates.iter().enumerate() {
            let at = root().key("ca_certificates").index(i);
            let name_path = at.clone().key("name");
            let clash = self.s.certificates.iter().any(|r| r.name == c.name)
                || self.s.keys.iter().any(|k| k.label == c.name);
            if !is_safe_file_name(&c.name) {
                let what = format!(
                    "ca_certificates name \"{}\" is not a safe file name",
                    c.name
                );
                let fix = "use letters, digits, '.', '_' and '-' only, not starting with '.'; the certificate is written to artifacts/<name>.pem";
                self.error(&name_path, Target::Value, what, fix);
            } else if names.insert(&c.name, i).is_some() || clash {
                let what = format!(
                    "the name \"{}\" is used twice among [[keys]], [[certificates]] and [[ca_certificates]]",
                    c.name
                );
                self.error(&name_path, Target::Value, what, "give each a distinct name");
            }
            match self.s.key(&c.issuer_key) {
                None => {
                    let what = format!(
                        "ca_certificates \"{}\" is signed by key \"{}\", which no [[keys]] entry defines",
                        c.name, c.issuer_key
                    );
                    let fix = self.known_keys_fix(&c.issuer_key);
                    self.error(&at.clone().key("issuer_key"), Target::Value, what, fix);
                }
                Some(key) => {
                    let wanted = match key.algorithm {
                        KeyAlgorithm::P256 => Some(HashAlgorithm::Sha256),
                        KeyAlgorithm::P384 => Some(HashAlgorithm::Sha384),
                        _ => None,
                    };
                    if let (Some(hash), Some(wanted)) = (c.signature_hash, wanted) {
                        if hash != wanted {
                            let what = format!(
                                "a {} issuer key signs with {wanted} only (CA/B Forum BR 7.1.3.2.2), not {hash}",
                                key.algorithm
                            );
                            let fix = "remove signature_hash: the default matches the curve";
                            self.error(&at.clone().key("signature_hash"), Target::Value, what, fix);
                        }
                    }
                }
            }
            self.issued_validity(i);
            for (j, e) in c.extended_key_usage.iter().enumerate() {
                if let Err(why) = eku_oid(e) {
                    let path = at.clone().key("extended_key_usage").index(j);
                    self.error(
                        &path,
                        Target::Value,
                        why,
                        "use a name listed, or a dotted OID",
                    );
                }
            }
            for (j, p) in c.certificate_policies.iter().enumerate() {
                if p.parse::<const_oid::ObjectIdentifier>().is_err() {
                    let path = at.clone().key("certificate_policies").index(j);
                    let what = format!("certificate policy \"{p}\" is not a dotted OID");
                    let fix = "write the policy OID, e.g. \"2.23.140.1.2.1\"";
                    self.error(&path, Target::Value, what, fix);
                }
            }
            for field in ["ca_issuers", "ocsp", "crl_distribution_points"] {
                let urls = match field {
                    "ca_issuers" => &c.ca_issuers,
                    "ocsp" => &c.ocsp,
                    _ => &c.crl_distribution_points,
                };
                for (j, u) in urls.iter().enumerate() {
                    let scheme = u.starts_with("http://")
                        || u.starts_with("https://")
                        || u.starts_with("ldap://");
                    if !scheme || !u.is_ascii() || u.contains(char::is_whitespace) {
                        let what = format!(
                            "\"{u}\" in {field} is not an ASCII http://, https:// or ldap:// URL"
                        );
                        let fix = "write the URL as relying parties fetch it, e.g. \"http://crl.example.com/root.crl\"";
                        self.error(&at.clone().key(field).index(j), Target::Value, what, fix);
                    }
                }
            }
            if let Some(subject) = &c.subject {
                let bad_country = subject
                    .country
                    .as_ref()
                    .is_some_and(|c| !(c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())));
                if bad_country {
                    let what = "subject C is not a two-letter country code in capitals".to_string();
                    self.error(
                        &at.clone().key("subject").key("C"),
                        Target::Value,
                        what,
                        "e.g. C = \"DE\"",
                    );
                }
                let cn = subject.common_name.chars().count();
                if subject.common_name.trim().is_empty() || cn > 64 {
                    let what = format!("subject CN must have 1 to 64 characters, not {cn}");
                    self.error(
                        &at.clone().key("subject").key("CN"),
                        Target::Value,
                        what,
                        "write the CA's name",
                    );
                }
            }
        }
        self.issuing_steps();
    }

    fn issued_validity(&mut self, i: usize) {
        let c = &self.s.ca_certificates[i];
        let at = root().key("ca_certificates").index(i);
        let fix = "give validity_days = N, or not_before and not_after (RFC 3339 UTC, e.g. \"2026-12-01T00:00:00Z\")";
        match (&c.not_before, &c.not_after, c.validity_days) {
            (None, None, Some(days)) if (1..=MAX_VALIDITY_DAYS).contains(&days) => {}
            (None, None, Some(days)) => {
                let what =
                    format!("validity_days = {days}; it must be between 1 and {MAX_VALIDITY_DAYS}");
                self.error(&at.key("validity_days"), Target::Value, what, fix);
            }
            (Some(nb), Some(na), None) => match (parse_utc(nb), parse_utc(na)) {
                (Ok(b), Ok(a)) if b < a => {}
                (Ok(_), Ok(_)) => {
                    let what = "not_before must come before not_after".to_string();
                    self.error(&at.key("not_after"), Target::Value, what, fix);
                }
                (Err(why), _) => self.error(&at.key("not_before"), Target::Value, why, fix),
                (_, Err(why)) => self.error(&at.key("not_after"), Target::Value, why, fix),
            },
            _ => {
                let what = format!(
                    "ca_certificates \"{}\" needs either validity_days or both not_before and not_after",
                    c.name
                );
                self.error(&at.key("name"), Target::Value, what, fix);
            }
        }
    }

    /// Steps that sign for another CA name an entry, and its issuer key exists by then.
    fn issuing_steps(&mut self) {
        let mut generated: Vec<&str> = Vec::new();
        for (i, st) in self.s.steps.iter().enumerate() {
            if st.action == crate::script::Action::GenerateKey {
                generated.extend(st.key.as_deref());
            }
            if !st.action.issues_ca_certificate() {
                continue;
            }
            let (name, action) = (self.step_name(i), st.action);
            let path = step_path(i).key("certificate");
            let known = quoted(self.s.ca_certificates.iter().map(|c| &c.name));
            let Some(c) = st.certificate.as_deref() else {
                let what = format!("{name} ({action}) does not say which certificate");
                let fix =
                    format!("add certificate = \"…\" naming a [[ca_certificates]] entry ({known})");
                self.error(&step_path(i), Target::Value, what, fix);
                continue;
            };
            let Some(spec) = self.s.ca_certificate(c) else {
                let what =
                    format!("{name} refers to \"{c}\", which no [[ca_certificates]] entry defines");
                let fix = format!("use one of ({known}), or add a [[ca_certificates]] entry");
                self.error(&path, Target::Value, what, fix);
                continue;
            };
            let Some(key) = self.s.key(&spec.issuer_key) else {
                continue;
            };
            if key.existing.is_none() && !generated.contains(&key.label.as_str()) {
                let what = format!(
                    "{name} signs with key \"{}\", which is neither generated before it nor declared as an existing key",
                    key.label
                );
                let fix = format!(
                    "add existing = {{ key_hash = \"…\" }} to the [[keys]] entry \"{}\" (from the report of the ceremony that generated it)",
                    key.label
                );
                self.error(&path, Target::Value, what, fix);
            }
        }
    }
}

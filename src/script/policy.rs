//! The security-level policy (docs/script-format.md, "Policy rules"): checks on a parsed script that serde
//! cannot express. Each finding points at the most specific key or value and says what to do.

use super::diagnostic::{Diagnostic, KeyPath, Severity, Target};
use super::model::{
    file_stem, pin_attribute, redact_token_uri, Role, Script, SecurityLevel, TokenSelector,
};
use super::parse::LoadedScript;
use std::collections::HashMap;
use std::path::Path;

/// X.520 upper bound for organizationName and commonName.
const MAX_NAME_CHARS: usize = 64;
/// 100 years: longer is certainly a typo, and beyond what relying parties handle well.
const MAX_VALIDITY_DAYS: u32 = 36525;

mod artifacts;
mod attach;
mod backup;
mod cards;
mod crl;
mod destroy;
mod existing;
mod issued;
mod participants;
mod quorum;
mod steps;
mod text;
mod tokens;

/// All policy findings for `loaded`, sorted by position in the file.
pub fn check(loaded: &LoadedScript) -> Vec<Diagnostic> {
    check_as(loaded, false)
}

/// [`check`] for `keyrite rehearse`: a rehearsal takes a quorum's commitments from its folder's
/// record of the split, so a missing `quorum.commitments_sha256` is not an error there.
pub fn check_rehearsal(loaded: &LoadedScript) -> Vec<Diagnostic> {
    check_as(loaded, true)
}

fn check_as(loaded: &LoadedScript, rehearsal: bool) -> Vec<Diagnostic> {
    let mut c = Checker {
        l: loaded,
        s: &loaded.script,
        out: Vec::new(),
        rehearsal,
    };
    c.ceremony();
    c.participants();
    c.roles_present();
    c.cards();
    c.steps();
    c.keys_and_certificates();
    c.step_references();
    c.existing_keys();
    c.ca_certificates();
    c.hsm_order();
    c.tokens();
    c.destructions();
    c.hsm_config();
    c.subjects();
    c.preflight();
    c.fingerprints();
    c.attachments();
    c.quorum();
    c.crls();
    c.backups();
    c.displayed_text();
    // Stable: findings at the same place keep the order of the rules above.
    c.out.sort_by_key(|d| (d.line, d.col));
    c.out
}

fn root() -> KeyPath {
    KeyPath::root()
}

fn step_path(i: usize) -> KeyPath {
    root().key("steps").index(i)
}

fn quoted(values: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    values
        .into_iter()
        .map(|v| format!("\"{}\"", v.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A safe artifact file name: `[A-Za-z0-9._-]+`, not starting with '.' (no hidden files, no `..`).
fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

struct Checker<'a> {
    l: &'a LoadedScript,
    s: &'a Script,
    out: Vec<Diagnostic>,
    /// Checking for `keyrite rehearse` (see [`check_rehearsal`]).
    rehearsal: bool,
}

impl Checker<'_> {
    fn push(
        &mut self,
        severity: Severity,
        path: &KeyPath,
        target: Target,
        what: String,
        fix: String,
    ) {
        self.out.push(match severity {
            Severity::Error => self.l.error(path, target, what, fix),
            Severity::Warning => self.l.warning(path, target, what, fix),
        });
    }

    fn error(&mut self, path: &KeyPath, target: Target, what: String, fix: impl Into<String>) {
        self.push(Severity::Error, path, target, what, fix.into());
    }

    /// An error at an exact position, for carets inside a string value (see [`Self::locate_inside`]).
    fn error_at(&mut self, at: (usize, usize), what: String, fix: impl Into<String>) {
        let file = &self.l.file_name;
        self.out.push(Diagnostic::error(file, at, what, fix.into()));
    }

    /// Position of the part of a string value that `pick` finds in the value's source text (quotes
    /// included), so the caret lands on the offending character. Falls back to the value's start when
    /// `pick` finds nothing, e.g. when the character was written as an escape.
    fn locate_inside(
        &self,
        path: &KeyPath,
        pick: impl Fn(&str) -> Option<usize>,
    ) -> (usize, usize) {
        self.l
            .spans
            .value_span(path)
            .and_then(|r| Some(r.start + pick(self.l.source.get(r)?)?))
            .map_or_else(
                || self.l.locate(path, Target::Value),
                |offset| self.l.spans.position(offset),
            )
    }

    fn line_of(&self, path: &KeyPath) -> usize {
        self.l.locate(path, Target::Value).0
    }

    /// Required at high and very-high, advice at medium.
    fn level_severity(&self) -> Severity {
        if self.s.ceremony.security_level >= SecurityLevel::High {
            Severity::Error
        } else {
            Severity::Warning
        }
    }

    fn step_name(&self, i: usize) -> String {
        match self.s.steps.get(i).map(|s| s.id.trim()) {
            Some(id) if !id.is_empty() => format!("step \"{id}\""),
            _ => format!("step #{}", i + 1),
        }
    }

    fn holders(&self, role: Role) -> usize {
        self.s.participants.iter().filter(|p| p.holds(role)).count()
    }

    fn ceremony(&mut self) {
        let c = &self.s.ceremony;
        let fields = [
            ("id", &c.id, "give the ceremony a stable identifier, e.g. id = \"ACME-ROOT-2026-01\"; every log entry carries it"),
            ("name", &c.name, "give the ceremony a name people recognise, e.g. name = \"ACME Root CA G1 key generation\""),
            ("place", &c.place, "write where the ceremony takes place (site and room); the report records it as evidence"),
        ];
        for (field, value, fix) in fields {
            if value.trim().is_empty() {
                self.error(
                    &root().key("ceremony").key(field),
                    Target::Value,
                    format!("`ceremony.{field}` is empty"),
                    fix,
                );
            }
        }
    }

    fn keys_and_certificates(&mut self) {
        // Entries with a label or name error of their own stay out of the artifact clash check: one
        // message per problem.
        let (mut sound_keys, mut sound_certs) = (Vec::new(), Vec::new());
        let mut labels: HashMap<&str, usize> = HashMap::new();
        for (i, k) in self.s.keys.iter().enumerate() {
            let at = root().key("keys").index(i).key("label");
            if k.label.trim().is_empty() {
                let fix = "give the key a label, e.g. label = \"acme-root-g1\"; it becomes CKA_LABEL on the HSM";
                self.error(&at, Target::Value, "key label is empty".into(), fix);
            } else if file_stem(&k.label).is_empty() {
                let what = format!(
                    "key label \"{}\" leaves no file name for its public key (artifacts/<label>.pub.pem)",
                    k.label
                );
                let fix = "use letters or digits in the label, e.g. label = \"acme-root-g1\"";
                self.error(&at, Target::Value, what, fix);
            } else if let Some(&first) = labels.get(k.label.as_str()) {
                let line = self.line_of(&root().key("keys").index(first).key("label"));
                let what = format!(
                    "key label \"{}\" is used twice (first on line {line})",
                    k.label
                );
                self.error(&at, Target::Value, what, "give each key a distinct label");
            } else {
                labels.insert(&k.label, i);
                sound_keys.push(i);
            }
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, c) in self.s.certificates.iter().enumerate() {
            let at = root().key("certificates").index(i);
            if !is_safe_file_name(&c.name) {
                let what = format!("certificate name \"{}\" is not a safe file name", c.name);
                let fix = "use letters, digits, '.', '_' and '-' only, not starting with '.'; the certificate is written to artifacts/<name>.pem";
                self.error(&at.clone().key("name"), Target::Value, what, fix);
            } else if let Some(&first) = names.get(c.name.as_str()) {
                let line = self.line_of(&root().key("certificates").index(first).key("name"));
                let what = format!(
                    "certificate name \"{}\" is used twice (first on line {line})",
                    c.name
                );
                self.error(
                    &at.clone().key("name"),
                    Target::Value,
                    what,
                    "give each certificate a distinct name",
                );
            } else {
                names.insert(&c.name, i);
                sound_certs.push(i);
            }
            if self.s.key(&c.key).is_none() {
                let what = format!(
                    "certificate \"{}\" names key \"{}\", which no [[keys]] entry defines",
                    c.name, c.key
                );
                let fix = self.known_keys_fix(&c.key);
                self.error(&at.key("key"), Target::Value, what, fix);
            }
        }
        self.artifact_clashes(&sound_keys, &sound_certs);
        self.signature_hashes();
        self.ml_dsa_without_hash();
    }

    fn known_keys_fix(&self, wanted: &str) -> String {
        if self.s.keys.is_empty() {
            format!("add a [[keys]] entry with label = \"{wanted}\"")
        } else {
            format!(
                "use one of the key labels {}, or add a [[keys]] entry",
                quoted(self.s.keys.iter().map(|k| &k.label))
            )
        }
    }

    fn hsm_config(&mut self) {
        let hsm = &self.s.hsm;
        self.hsm_module(&root().key("hsm").key("module"), &hsm.module, "hsm.module");
        let token = root().key("hsm").key("token");
        let selector = hsm.token.clone();
        self.token_selector(&token, &selector, "[hsm.token]");
    }

    /// A token's module: an absolute path (`field` names it in the messages).
    fn hsm_module(&mut self, module: &KeyPath, path: &str, field: &str) {
        let example = "e.g. module = \"/usr/lib/softhsm/libsofthsm2.so\"";
        if path.trim().is_empty() {
            let fix = format!("give the absolute path of the PKCS#11 module, {example}");
            self.error(module, Target::Value, format!("`{field}` is empty"), fix);
        } else if !Path::new(path).is_absolute() {
            let what = format!("`{field}` \"{path}\" is a relative path");
            let fix = format!(
                "give the absolute path, {example}, so the library loaded is the one you inspected and not one found on a search path"
            );
            self.error(module, Target::Value, what, fix);
        }
    }

    /// Exactly one of label, serial or uri, none empty, and a URI without a PIN. `name` says whose
    /// selector it is in the messages ("[hsm.token]", "card").
    fn token_selector(&mut self, token: &KeyPath, t: &TokenSelector, name: &str) {
        let set: Vec<(&str, &String)> =
            [("label", &t.label), ("serial", &t.serial), ("uri", &t.uri)]
                .into_iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
                .collect();
        match set.as_slice() {
            [] => {
                let fix = "set exactly one of label, serial or uri, e.g. token = { label = \"acme-root\" }";
                self.error(
                    token,
                    Target::Value,
                    format!("{name} does not say which token to use"),
                    fix,
                );
            }
            [(first, _), (second, _), ..] => {
                let what = format!("{name} sets both {first} and {second}");
                let fix = "keep exactly one of label, serial or uri, so there is no doubt which token is used";
                self.error(&token.clone().key(second), Target::Key, what, fix);
            }
            [_] => {}
        }
        for (k, v) in set {
            let at = token.clone().key(k);
            if v.trim().is_empty() {
                self.error(
                    &at,
                    Target::Value,
                    format!("token {k} is empty"),
                    format!("write the token's {k}"),
                );
            } else if k == "uri" {
                self.token_uri(&at, v);
            }
        }
    }

    /// The URI is echoed redacted only: its query may hold `pin-value`, and diagnostics end up in terminals,
    /// logs and tickets.
    fn token_uri(&mut self, at: &KeyPath, uri: &str) {
        let shown = redact_token_uri(uri);
        // RFC 3986: the scheme is case-insensitive, and the HSM layer reads `PKCS11:` too.
        if !uri
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("pkcs11:"))
        {
            let what = format!("token uri \"{shown}\" is not a PKCS#11 URI");
            let fix = "write an RFC 7512 URI that starts with pkcs11:, e.g. uri = \"pkcs11:token=acme-root\"";
            self.error(at, Target::Value, what, fix);
        }
        let why = "a PIN must never be written in a script, which is copied byte for byte into the evidence \
                   bundle; keyrite asks for the activation data in the room";
        if let Some(q) = uri.find('?') {
            let fix = format!("remove everything from '?' on: {why}");
            let what = format!(
                "token uri \"{shown}\" has a query part (from '?' on), which can carry pin-value or pin-source"
            );
            // The caret goes on the '?' itself; the decoded and the written text agree up to it unless an
            // escape precedes it, and then the caret falls back to the value's start.
            let written_before = format!("\"{}", &uri[..q]);
            let pos = self.locate_inside(at, |raw| {
                raw.starts_with(&written_before)
                    .then_some(written_before.len())
            });
            self.error_at(pos, what, fix);
        } else if let Some(name) = uri.split(';').find_map(pin_attribute) {
            // RFC 7512 puts pin-value in the query; in the path it is malformed, but a PIN all the same.
            let what = format!("token uri \"{shown}\" carries a PIN in its {name} attribute");
            let fix = format!("remove the {name} attribute: {why}");
            self.error(at, Target::Value, what, fix);
        }
    }

    fn subjects(&mut self) {
        for (i, c) in self.s.certificates.iter().enumerate() {
            let at = root().key("certificates").index(i);
            let subject = at.clone().key("subject");
            let country = &c.subject.country;
            if !(country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase())) {
                let what =
                    format!("subject C \"{country}\" is not a two-letter country code in capitals");
                let fix = if country.len() == 2 && country.bytes().all(|b| b.is_ascii_alphabetic())
                {
                    format!("write C = \"{}\"", country.to_ascii_uppercase())
                } else {
                    "use the ISO 3166-1 alpha-2 code of the organization's country, e.g. C = \"DE\""
                        .to_owned()
                };
                self.error(&subject.clone().key("C"), Target::Value, what, fix);
            }
            for (field, long, value) in [
                ("O", "organization", &c.subject.organization),
                ("CN", "common name", &c.subject.common_name),
            ] {
                let path = subject.clone().key(field);
                let chars = value.chars().count();
                if value.trim().is_empty() {
                    let what = format!("subject {field} ({long}) is empty");
                    self.error(
                        &path,
                        Target::Value,
                        what,
                        format!("write the {long}; a root certificate must name it"),
                    );
                } else if chars > MAX_NAME_CHARS {
                    let what = format!("subject {field} is {chars} characters long; X.520 allows at most {MAX_NAME_CHARS}");
                    self.error(
                        &path,
                        Target::Value,
                        what,
                        format!("shorten it to {MAX_NAME_CHARS} characters or fewer"),
                    );
                }
            }
            match c.validity_days {
                Some(days) if days == 0 || days > MAX_VALIDITY_DAYS => {
                    let what = format!("validity_days = {days} must be between 1 and {MAX_VALIDITY_DAYS} days (100 years)");
                    let fix = "set the validity in days; root CAs commonly use 20 to 25 years (7300 to 9125 days)";
                    self.error(&at.clone().key("validity_days"), Target::Value, what, fix);
                }
                _ => {}
            }
            self.root_profile(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::parse::parse;

    const GOOD: &str = include_str!("../../tests/scripts/good/minimal-medium.toml");

    fn check_with_token(token: &str) -> Vec<String> {
        let src = GOOD.replace("token = { serial = \"0123456789abcdef\" }", token);
        assert_ne!(src, GOOD, "the fixture's token line changed");
        let loaded = parse("t.toml", &src).unwrap();
        check(&loaded).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_pin_anywhere_in_the_token_uri_is_refused_and_never_shown() {
        assert!(check_with_token("token = { uri = \"PKCS11:token=lab\" }").is_empty());
        let found = check_with_token("token = { uri = \"pkcs11:token=lab;pin-value=97531\" }");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0]
            .contains("\"pkcs11:token=lab;pin-value=…\" carries a PIN in its pin-value attribute"));
        let found = check_with_token("token = { uri = \"token=lab?pin-source=/x/97531\" }");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found
            .iter()
            .all(|d| d.contains("\"token=lab?…\"") && !d.contains("97531")));
    }
}

//! The security-level policy (docs/script-format.md, "Policy rules"): checks on a parsed script that serde
//! cannot express. Each finding points at the most specific key or value and says what to do.

use super::diagnostic::{Diagnostic, KeyPath, Severity, Target};
use super::model::{Role, Script, SecurityLevel};
use super::parse::LoadedScript;
use std::collections::HashMap;
use std::path::Path;

/// X.520 upper bound for organizationName and commonName.
const MAX_NAME_CHARS: usize = 64;
/// 100 years: longer is certainly a typo, and beyond what relying parties handle well.
const MAX_VALIDITY_DAYS: u32 = 36525;

mod steps;

/// All policy findings for `loaded`, sorted by position in the file.
pub fn check(loaded: &LoadedScript) -> Vec<Diagnostic> {
    let mut c = Checker {
        l: loaded,
        s: &loaded.script,
        out: Vec::new(),
    };
    c.ceremony();
    c.participants();
    c.roles_present();
    c.steps();
    c.keys_and_certificates();
    c.step_references();
    c.hsm_order();
    c.hsm_config();
    c.subjects();
    c.preflight();
    c.fingerprints();
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

    fn participants(&mut self) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, p) in self.s.participants.iter().enumerate() {
            let at = root().key("participants").index(i);
            let name = p.name.trim();
            if name.is_empty() {
                let fix = "write the person's full name as it will appear in the report";
                self.error(
                    &at.clone().key("name"),
                    Target::Value,
                    "participant name is empty".into(),
                    fix,
                );
            } else if let Some(&first) = seen.get(&name.to_lowercase()) {
                let line = self.line_of(&root().key("participants").index(first).key("name"));
                let what = format!("participant \"{name}\" is listed twice (first on line {line})");
                let fix = "list each person once; give a person a second role with `also` where policy.allow_role_pairs allows it";
                self.error(&at.clone().key("name"), Target::Value, what, fix);
            } else {
                seen.insert(name.to_lowercase(), i);
            }
            let Some(second) = p.also else { continue };
            let (first, also) = (p.role, at.key("also"));
            let allowed = self
                .s
                .policy
                .allow_role_pairs
                .iter()
                .any(|&[a, b]| (a, b) == (first, second) || (b, a) == (first, second));
            if first == second {
                let what =
                    format!("`also` repeats the role \"{first}\" that \"{name}\" already holds");
                self.error(&also, Target::Value, what, "remove the `also` line");
            } else if first.is_witness() != second.is_witness() {
                let note = if allowed {
                    " (policy.allow_role_pairs cannot allow this pair)"
                } else {
                    ""
                };
                let what = format!(
                    "\"{name}\" cannot be both {first} and {second}{note}: a witness never counts as an operator, \
                     so one person cannot both act and attest"
                );
                self.error(
                    &also,
                    Target::Value,
                    what,
                    format!("give the {second} role to another person"),
                );
            } else if !allowed {
                let what = format!(
                    "\"{name}\" holds two roles, {first} and {second}, but policy.allow_role_pairs does not allow that pair"
                );
                let fix = format!(
                    "give the {second} role to another person (one person, one role), or add \
                     [\"{first}\", \"{second}\"] to policy.allow_role_pairs if your procedure allows it"
                );
                self.error(&also, Target::Value, what, fix);
            }
        }
        for (j, &[a, b]) in self.s.policy.allow_role_pairs.iter().enumerate() {
            if a.is_witness() != b.is_witness() {
                let at = root().key("policy").key("allow_role_pairs").index(j);
                let what = format!("the pair [\"{a}\", \"{b}\"] has no effect: a witness role is never paired with a non-witness role");
                self.out.push(self.l.warning(
                    &at,
                    Target::Value,
                    what,
                    "remove it: a witness never counts as an operator",
                ));
            }
        }
    }

    fn roles_present(&mut self) {
        let level = self.s.ceremony.security_level;
        let mut needed = vec![
            (Role::MasterOfCeremony, 1, ""),
            (Role::Operator, 2, " (dual control needs two)"),
        ];
        if level >= SecurityLevel::High {
            needed.push((Role::SecurityOfficer, 1, ""));
        }
        if level >= SecurityLevel::VeryHigh {
            needed.push((
                Role::IndependentWitness,
                1,
                ", such as an auditor or a notary",
            ));
        }
        let at = root().key("ceremony").key("security_level");
        for (role, count, hint) in needed {
            let held = self.holders(role);
            if held >= count {
                continue;
            }
            let article = if role.as_str().starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            let what = match (count, held) {
                (1, _) => format!("security level {level} needs {article} {role}, but no participant holds that role"),
                (n, 0) => format!("security level {level} needs at least {n} {role}s, but no participant holds that role"),
                (n, h) => format!("security level {level} needs at least {n} {role}s, but only {h} participant holds that role"),
            };
            let fix = format!("add a [[participants]] entry with role = \"{role}\"{hint}");
            self.error(&at, Target::Value, what, fix);
        }
    }

    fn keys_and_certificates(&mut self) {
        let mut labels: HashMap<&str, usize> = HashMap::new();
        for (i, k) in self.s.keys.iter().enumerate() {
            let at = root().key("keys").index(i).key("label");
            if k.label.trim().is_empty() {
                let fix = "give the key a label, e.g. label = \"acme-root-g1\"; it becomes CKA_LABEL on the HSM";
                self.error(&at, Target::Value, "key label is empty".into(), fix);
            } else if let Some(&first) = labels.get(k.label.as_str()) {
                let line = self.line_of(&root().key("keys").index(first).key("label"));
                let what = format!(
                    "key label \"{}\" is used twice (first on line {line})",
                    k.label
                );
                self.error(&at, Target::Value, what, "give each key a distinct label");
            } else {
                labels.insert(&k.label, i);
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
        let module = root().key("hsm").key("module");
        let example = "e.g. module = \"/usr/lib/softhsm/libsofthsm2.so\"";
        if hsm.module.trim().is_empty() {
            let fix = format!("give the absolute path of the PKCS#11 module, {example}");
            self.error(&module, Target::Value, "`hsm.module` is empty".into(), fix);
        } else if !Path::new(&hsm.module).is_absolute() {
            let what = format!("`hsm.module` \"{}\" is a relative path", hsm.module);
            let fix = format!(
                "give the absolute path, {example}, so the library loaded is the one you inspected and not one found on a search path"
            );
            self.error(&module, Target::Value, what, fix);
        }
        let token = root().key("hsm").key("token");
        let t = &hsm.token;
        let set: Vec<(&str, &String)> =
            [("label", &t.label), ("serial", &t.serial), ("uri", &t.uri)]
                .into_iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
                .collect();
        match set.as_slice() {
            [] => {
                let fix = "set exactly one of label, serial or uri, e.g. token = { label = \"acme-root\" }";
                self.error(
                    &token,
                    Target::Value,
                    "[hsm.token] does not say which token to use".into(),
                    fix,
                );
            }
            [(first, _), (second, _), ..] => {
                let what = format!("[hsm.token] sets both {first} and {second}");
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
            } else if k == "uri" && !v.starts_with("pkcs11:") {
                let what = format!("token uri \"{v}\" is not a PKCS#11 URI");
                let fix = "write an RFC 7512 URI that starts with pkcs11:, e.g. uri = \"pkcs11:token=acme-root\"";
                self.error(&at, Target::Value, what, fix);
            }
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
            let days = c.validity_days;
            if days == 0 || days > MAX_VALIDITY_DAYS {
                let what = format!("validity_days = {days} is outside 1..={MAX_VALIDITY_DAYS}");
                let fix = "set the validity in days; root CAs commonly use 20 to 25 years (7300 to 9125 days)";
                self.error(&at.key("validity_days"), Target::Value, what, fix);
            }
        }
    }
}

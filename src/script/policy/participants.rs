//! Policy rules about people: names the room can type without doubt, one role per person unless the
//! procedure allows a pair, and the roles each security level needs.

use super::{root, Checker};
use crate::script::diagnostic::{is_hidden_char, Target};
use crate::script::model::{Role, SecurityLevel};
use std::collections::HashMap;

/// Said in every name fix: the engine matches what people type in the room against these names.
const TYPED: &str = "names are typed by people in the room and must be unambiguous";

/// Finds the offending part of a name in its source text (quotes included) and the decoded name: a byte
/// offset into the source text, or `None` when it was written as an escape.
type Caret = fn(&str, &str) -> Option<usize>;

/// What is wrong with a non-empty participant name, and where the caret should go. `None` when the name is
/// fine.
fn name_problem(name: &str) -> Option<(String, Caret)> {
    fn first_char(raw: &str, name: &str) -> Option<usize> {
        let bad = name
            .chars()
            .find(|&c| is_hidden_char(c) || is_odd_space(c))?;
        super::text::written_at(raw, bad)
    }
    fn first_space(raw: &str, _: &str) -> Option<usize> {
        raw.find(' ')
    }
    fn last_space(raw: &str, _: &str) -> Option<usize> {
        raw.rfind(' ')
    }
    fn double_space(raw: &str, _: &str) -> Option<usize> {
        raw.find("  ")
    }
    if let Some(c) = name.chars().find(|&c| is_hidden_char(c)) {
        let kind = super::text::char_kind(c);
        return Some((
            format!("contains U+{:04X}, {kind}", u32::from(c)),
            first_char,
        ));
    }
    if let Some(c) = name.chars().find(|&c| is_odd_space(c)) {
        let what = format!(
            "contains U+{:04X}, a space character other than a plain space",
            u32::from(c)
        );
        return Some((what, first_char));
    }
    if name.starts_with(' ') {
        return Some(("starts with a space".into(), first_space));
    }
    if name.ends_with(' ') {
        return Some(("ends with a space".into(), last_space));
    }
    if name.contains("  ") {
        return Some(("has two spaces in a row".into(), double_space));
    }
    None
}

/// Whitespace that looks like a space (or a line break) but is not U+0020.
fn is_odd_space(c: char) -> bool {
    c.is_whitespace() && c != ' '
}

impl Checker<'_> {
    pub(super) fn participants(&mut self) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, p) in self.s.participants.iter().enumerate() {
            let at = root().key("participants").index(i);
            let name_path = at.clone().key("name");
            let name = p.name.as_str();
            if name.trim().is_empty() {
                let fix = "write the person's full name as it will appear in the report";
                let what = "participant name is empty".into();
                self.error(&name_path, Target::Value, what, fix);
            } else if let Some((problem, pick)) = name_problem(name) {
                let pos = self.locate_inside(&name_path, |raw| pick(raw, name));
                let what = format!("participant name \"{name}\" {problem}");
                let fix = format!(
                    "retype the name with visible letters and single plain spaces only; {TYPED}"
                );
                self.error_at(pos, what, fix);
            } else {
                // "ÉVA" and "éva", NFC and NFD, Cyrillic "а" and Latin "a": one person to whoever
                // reads or types the name.
                let folded = super::text::name_key(name);
                if let Some(&first) = seen.get(&folded) {
                    let first_path = root().key("participants").index(first).key("name");
                    let line = self.line_of(&first_path);
                    let earlier = &self.s.participants[first].name;
                    let as_written = match super::text::look_alike(earlier, name) {
                        _ if earlier == name => String::new(),
                        Some(how) => format!(" as \"{earlier}\"; {how}"),
                        None => format!(" as \"{earlier}\""),
                    };
                    let what = format!(
                        "participant \"{name}\" is listed twice (first on line {line}{as_written})"
                    );
                    let fix = format!(
                        "list each person once, and give different people names that differ in more than \
                         letter case or look-alike letters ({TYPED}); give a person a second role with `also` where \
                         policy.allow_role_pairs allows it"
                    );
                    self.error(&name_path, Target::Value, what, fix);
                } else {
                    seen.insert(folded, i);
                }
            }
            self.role_pair(i);
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

    /// One person, one role, unless `policy.allow_role_pairs` names the pair; never a witness who also acts.
    fn role_pair(&mut self, i: usize) {
        let p = &self.s.participants[i];
        let Some(second) = p.also else { return };
        let (name, first) = (p.name.trim(), p.role);
        let also = root().key("participants").index(i).key("also");
        let allowed = self
            .s
            .policy
            .allow_role_pairs
            .iter()
            .any(|&[a, b]| (a, b) == (first, second) || (b, a) == (first, second));
        if first == second {
            let what = format!("`also` repeats the role \"{first}\" that \"{name}\" already holds");
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
            let fix = format!("give the {second} role to another person");
            self.error(&also, Target::Value, what, fix);
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

    pub(super) fn roles_present(&mut self) {
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
                (n, 1) => format!("security level {level} needs at least {n} {role}s, but only 1 participant holds that role"),
                (n, h) => format!("security level {level} needs at least {n} {role}s, but only {h} participants hold that role"),
            };
            let fix = format!("add a [[participants]] entry with role = \"{role}\"{hint}");
            self.error(&at, Target::Value, what, fix);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_people_can_type_unambiguously() {
        assert!(name_problem("Zoë Ångström-Ødegaard").is_none());
        assert!(name_problem("李 小龍").is_none());
        for bad in [
            "Al\u{200B}ice",
            "Al\u{AD}ice",
            "Ali\u{202E}ecila",
            "Ann\u{FEFF}",
            "\u{3164}",
            "Bob\u{1b}[31m",
            "Ann\u{A0}Lee",
            "Ann\tLee",
            " Ann",
            "Ann ",
            "Ann  Lee",
        ] {
            assert!(name_problem(bad).is_some(), "{bad:?} was accepted");
        }
    }
}

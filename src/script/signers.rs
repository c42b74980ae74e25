//! Who must sign the ceremony report, by security level, and where their signatures go.
//!
//! - medium: the security officer(s);
//! - high: the security officer(s) and the independent witness(es);
//! - very-high: the security officer(s), the independent witness(es), and every participant with a
//!   personal card.
//!
//! Only people with a `card` can sign. The policy makes the holders of these roles carry a card at
//! very-high (an error) and advises it at medium and high (a warning); below very-high a role holder
//! without a card is therefore simply not a signer.

use super::model::{Role, Script, SecurityLevel};

/// One person who must sign the report, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredSigner {
    pub person: String,
    /// The role that makes the signature required, e.g. "security-officer", or "carded participant".
    pub reason: String,
    /// File-name stem: signatures/<stem>.report.json.p7s.
    pub stem: String,
}

/// Roles whose holders sign the report at `level` (besides every carded participant at very-high).
pub fn signing_roles(level: SecurityLevel) -> &'static [Role] {
    match level {
        SecurityLevel::Medium => &[Role::SecurityOfficer],
        _ => &[Role::SecurityOfficer, Role::IndependentWitness],
    }
}

/// The required report signers of `script`, in participant order.
pub fn required_report_signers(script: &Script) -> Vec<RequiredSigner> {
    let level = script.ceremony.security_level;
    let roles = signing_roles(level);
    script
        .participants
        .iter()
        .filter(|p| p.card.is_some())
        .filter_map(|p| {
            let reason = match roles.iter().find(|r| p.holds(**r)) {
                Some(role) => role.to_string(),
                None if level == SecurityLevel::VeryHigh => {
                    format!("carded participant ({})", p.role)
                }
                None => return None,
            };
            Some(RequiredSigner {
                person: p.name.clone(),
                reason,
                stem: signer_stem(script, &p.name),
            })
        })
        .collect()
}

/// The file-name stem for `person`: the name in lower case, every run of characters other than
/// a-z and 0-9 turned into one '-' ("Sven Lindqvist" → "sven-lindqvist"). When two participants would
/// share a stem, the later one gets "-2", "-3", … by participant order.
pub fn signer_stem(script: &Script, person: &str) -> String {
    let mut taken: Vec<String> = Vec::new();
    for p in &script.participants {
        let base = slug(&p.name);
        let mut stem = base.clone();
        let mut n = 2;
        while taken.contains(&stem) {
            stem = format!("{base}-{n}");
            n += 1;
        }
        if p.name == person {
            return stem;
        }
        taken.push(stem);
    }
    slug(person)
}

fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "participant".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_plain_and_unique() {
        assert_eq!(slug("Sven Lindqvist"), "sven-lindqvist");
        assert_eq!(slug("Zoë  O'Neil"), "zo-o-neil");
        assert_eq!(slug("李"), "participant");
    }
}

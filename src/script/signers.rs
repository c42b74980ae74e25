//! Who must sign the ceremony report, by security level, and where their signatures go.
//!
//! - medium: the security officer(s);
//! - high: the security officer(s) and the independent witness(es);
//! - very-high: the security officer(s), the independent witness(es), and every participant with a
//!   personal card.
//!
//! Only people with a `card` can sign. The policy makes the holders of these roles carry a card at
//! high and very-high (an error) and advises it at medium (a warning); at medium a role holder
//! without a card is therefore simply not a signer.
//!
//! `keyrite verify` asks [`signers_by_role`] instead: it takes the role holders from the level and
//! the roles, carded or not, so a script stripped of its cards cannot shrink the list of signers.

use super::model::{Participant, Role, Script, SecurityLevel};

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

/// Whether every participant with a personal card signs the report at `level`, whatever their role.
pub fn every_carded_participant_signs(level: SecurityLevel) -> bool {
    level == SecurityLevel::VeryHigh
}

/// A participant as the signer rule sees them. The script gives these at run time; report.json gives
/// the same facts afterwards (its participants in script order, and its personal cards), so the
/// ceremony, `keyrite verify` and report.pdf all apply one rule.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub name: &'a str,
    /// The main role first, then the paired one, if any.
    pub roles: &'a [Role],
    pub carded: bool,
}

/// The required report signers among `people` (every participant, in script order) at `level`.
pub fn required_signers(level: SecurityLevel, people: &[Candidate<'_>]) -> Vec<RequiredSigner> {
    let roles = signing_roles(level);
    let names: Vec<&str> = people.iter().map(|p| p.name).collect();
    let stems = stems(&names);
    people
        .iter()
        .zip(stems)
        .filter(|(p, _)| p.carded)
        .filter_map(|(p, stem)| {
            let reason = match roles.iter().find(|r| p.roles.contains(r)) {
                Some(role) => role.to_string(),
                None if every_carded_participant_signs(level) => format!(
                    "{} with a personal card",
                    p.roles.first().map_or("participant", |r| r.as_str())
                ),
                None => return None,
            };
            Some(RequiredSigner {
                person: p.name.to_string(),
                reason,
                stem,
            })
        })
        .collect()
}

/// The required report signers of `script`, in participant order.
pub fn required_report_signers(script: &Script) -> Vec<RequiredSigner> {
    signers_counting_as_carded(script, |p, _| p.card.is_some())
}

/// The report signers `script`'s level requires by role, whether or not the script gives them a
/// card, plus (at very-high) every carded participant; each with whether they hold a card.
pub fn signers_by_role(script: &Script) -> Vec<(RequiredSigner, bool)> {
    let roles = signing_roles(script.ceremony.security_level);
    // A role holder counts as carded for the rule, so that they are listed whatever the script says.
    signers_counting_as_carded(script, |p, held| {
        p.card.is_some() || roles.iter().any(|r| held.contains(r))
    })
    .into_iter()
    .map(|signer| {
        let carded = script
            .participants
            .iter()
            .any(|p| p.name == signer.person && p.card.is_some());
        (signer, carded)
    })
    .collect()
}

/// [`required_signers`] over the script's participants, `carded` deciding who counts as carded.
fn signers_counting_as_carded(
    script: &Script,
    carded: impl Fn(&Participant, &[Role]) -> bool,
) -> Vec<RequiredSigner> {
    let roles: Vec<Vec<Role>> = script
        .participants
        .iter()
        .map(|p| p.roles().collect())
        .collect();
    let people: Vec<Candidate<'_>> = script
        .participants
        .iter()
        .zip(&roles)
        .map(|(p, roles)| Candidate {
            name: &p.name,
            roles,
            carded: carded(p, roles),
        })
        .collect();
    required_signers(script.ceremony.security_level, &people)
}

/// The file-name stem for `person`: the name in lower case, every run of characters other than
/// a-z and 0-9 turned into one '-' ("Sven Lindqvist" → "sven-lindqvist"). When two participants would
/// share a stem, the later one gets "-2", "-3", … by participant order.
pub fn signer_stem(script: &Script, person: &str) -> String {
    let names: Vec<&str> = script
        .participants
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    stem_among(&names, person)
}

/// Every participant's stem ([`signer_stem`]), in script order, in one pass: a check over all
/// participants (verify's report signatures) would otherwise redo the pass for each of them.
pub fn signer_stems(script: &Script) -> Vec<String> {
    let names: Vec<&str> = script
        .participants
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    stems(&names)
}

/// [`signer_stem`] over the participants' names in script order.
pub fn stem_among(names: &[&str], person: &str) -> String {
    match names.iter().position(|name| *name == person) {
        Some(at) => stems(&names[..=at]).pop().unwrap_or_else(|| slug(person)),
        None => slug(person),
    }
}

/// The stem of each of `names`, in order: a later name whose stem is taken gets "-2", "-3", ….
fn stems(names: &[&str]) -> Vec<String> {
    let mut taken = std::collections::HashSet::with_capacity(names.len());
    names
        .iter()
        .map(|name| {
            let base = slug(name);
            let mut stem = base.clone();
            let mut n = 2;
            while taken.contains(&stem) {
                stem = format!("{base}-{n}");
                n += 1;
            }
            taken.insert(stem.clone());
            stem
        })
        .collect()
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

    #[test]
    fn a_taken_stem_gets_the_next_free_number_and_one_pass_agrees_with_each_lookup() {
        let names = [
            "Sven Lindqvist",
            "sven lindqvist",
            "Sven-Lindqvist-2",
            "李",
            "Ana",
            "李",
        ];
        let all = stems(&names);
        assert_eq!(
            all,
            [
                "sven-lindqvist",
                "sven-lindqvist-2",
                "sven-lindqvist-2-2",
                "participant",
                "ana",
                "participant-2"
            ]
        );
        // A name given twice is looked up as its first holder.
        for (at, name) in names.iter().enumerate().take(5) {
            assert_eq!(stem_among(&names, name), all[at]);
        }
        assert_eq!(stem_among(&names, "Nobody Here"), "nobody-here");
    }
}

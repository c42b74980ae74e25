//! One step's dual-control bookkeeping: who may confirm, who has, and what is still missing.

use super::Person;
use crate::script::{Action, Role, Step};

/// A step's per-role minimums and what has been counted towards them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerRole {
    /// Distinct confirmers needed per role (`min_per_role`), in role order.
    pub need: Vec<(Role, u32)>,
    /// The role each of `confirmed_by` counted under, in the same order.
    pub counted: Vec<Role>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPlan {
    pub id: String,
    pub title: String,
    pub action: Action,
    pub confirm_by: Vec<Role>,
    pub required: u32,
    pub witnessed_by: Vec<Role>,
    /// `min_per_role` and the role each confirmer counted under (boxed: plans travel in TUI messages).
    pub per_role: Box<PerRole>,
    /// Persons whose confirmation counts (distinct, in order).
    pub confirmed_by: Vec<String>,
    /// (witness role, person) attestations.
    pub witnessed: Vec<(Role, String)>,
}

impl StepPlan {
    pub fn from_step(step: &Step) -> Self {
        StepPlan {
            id: step.id.clone(),
            title: step.title.clone(),
            action: step.action,
            confirm_by: step.confirm_by.clone(),
            required: step.required_confirmations(),
            witnessed_by: step.witnessed_by.clone(),
            per_role: Box::new(PerRole {
                need: step.min_per_role.iter().map(|(r, n)| (*r, *n)).collect(),
                counted: Vec::new(),
            }),
            confirmed_by: Vec::new(),
            witnessed: Vec::new(),
        }
    }

    pub(super) fn has_acted(&self, name: &str) -> bool {
        self.confirmed_by.iter().any(|p| p == name) || self.witnessed.iter().any(|(_, p)| p == name)
    }

    /// Accept `person`'s confirmation or say why not: the role it counts under and whether it is a
    /// dual-control confirmation or a witness attestation. `acted`: whether the person confirmed
    /// or witnessed this step already (the engine keeps that by person, rather than searching the
    /// step's lists).
    pub(super) fn accept_checked(
        &mut self,
        person: &Person,
        acted: bool,
    ) -> Result<(Role, &'static str), String> {
        if acted {
            return Err(format!(
                "{} has already confirmed this step; one person never counts twice",
                person.name
            ));
        }
        // A witness attests; it never stands in for a confirmer.
        if let Some(role) =
            person.roles.iter().copied().find(|r| {
                self.witnessed_by.contains(r) && !self.witnessed.iter().any(|(w, _)| w == r)
            })
        {
            self.witnessed.push((role, person.name.clone()));
            return Ok((role, "witness"));
        }
        // A person holding two eligible roles counts under one whose minimum is still unmet.
        let mut roles = person
            .roles
            .iter()
            .copied()
            .filter(|r| self.confirm_by.contains(r));
        let eligible = roles
            .clone()
            .find(|r| self.still_needed(*r) > 0)
            .or_else(|| roles.next());
        match eligible {
            Some(_) if person.is_witness() => Err(format!(
                "{} is a witness; a witness attests and never counts as a confirmer (dual control)",
                person.name
            )),
            Some(role) => {
                self.confirmed_by.push(person.name.clone());
                self.per_role.counted.push(role);
                Ok((role, "dual-control"))
            }
            None => Err(format!(
                "{} holds {}; this step is confirmed by {}{}",
                person.name,
                join(&person.roles),
                join(&self.confirm_by),
                if self.witnessed_by.is_empty() {
                    String::new()
                } else {
                    format!(" and witnessed by {}", join(&self.witnessed_by))
                }
            )),
        }
    }

    /// How many more confirmers `role` needs to meet its `min_per_role`.
    pub fn still_needed(&self, role: Role) -> u32 {
        let need = self
            .per_role
            .need
            .iter()
            .find(|(r, _)| *r == role)
            .map_or(0, |(_, n)| *n);
        // Most roles have no minimum: no count of the step's confirmers (a long step has hundreds).
        if need == 0 {
            return 0;
        }
        let have = self.per_role.counted.iter().filter(|r| **r == role).count() as u32;
        need.saturating_sub(have)
    }

    pub fn is_authorised(&self) -> bool {
        self.missing().is_none()
    }

    /// What dual control or witnessing still lacks, in words for the room; `None` when complete.
    pub fn missing(&self) -> Option<String> {
        let mut gaps = Vec::new();
        let have = self.confirmed_by.len() as u32;
        if have < self.required {
            let who = if self.confirmed_by.is_empty() {
                "nobody yet".to_string()
            } else {
                self.confirmed_by.join(", ")
            };
            let rule = if self.action.is_sensitive() {
                " (dual control)"
            } else {
                ""
            };
            let need = match self.required {
                1 => {
                    let roles = join(&self.confirm_by);
                    let article = if roles.starts_with(['a', 'e', 'i', 'o', 'u']) {
                        "an"
                    } else {
                        "a"
                    };
                    format!("a confirmation from {article} {roles}")
                }
                n => format!(
                    "confirmations from {n} different people, each {}",
                    join(&self.confirm_by)
                ),
            };
            gaps.push(format!(
                "{} needs {need}{rule}; confirmed by {who}",
                self.action
            ));
        }
        for &(role, need) in &self.per_role.need {
            let short = self.still_needed(role);
            if short > 0 {
                let have = need - short;
                let people = if need == 1 { "person" } else { "people" };
                gaps.push(format!(
                    "{} needs {need} {people} confirming as {role}; {have} so far",
                    self.action
                ));
            }
        }
        for role in &self.witnessed_by {
            if !self.witnessed.iter().any(|(r, _)| r == role) {
                gaps.push(format!("the {role} has not witnessed it"));
            }
        }
        (!gaps.is_empty()).then(|| gaps.join("; "))
    }
}

fn join(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

//! Several tokens in one ceremony (issue 12): the `[[hsms]]` entries, the token each step and key
//! names, each token's activation, and the session order per token (no step uses a token before
//! its activation or after its deactivation).

use super::{quoted, root, step_path, Checker};
use crate::script::diagnostic::{KeyPath, Target};
use crate::script::model::{Action, Step};
use crate::script::tokens::Activation;
use std::collections::HashMap;

impl Checker<'_> {
    pub(super) fn tokens(&mut self) {
        self.token_entries();
        self.token_references();
        self.activations();
    }

    /// The script's token names, each once (a duplicate name is refused on its own).
    fn token_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for t in self.s.tokens() {
            if !names.iter().any(|n| n == t.name) {
                names.push(t.name.to_string());
            }
        }
        names
    }

    fn known_tokens_fix(&self) -> String {
        let names = self.token_names();
        format!(
            "use one of the script's tokens ({}), or add a [[hsms]] entry with that name",
            quoted(&names)
        )
    }

    /// How messages name a token: "the HSM" while the script has only one.
    fn token_noun(&self, name: &str) -> String {
        if self.s.has_several_tokens() {
            format!("token \"{name}\"")
        } else {
            "the HSM".to_owned()
        }
    }

    /// Names unique and non-empty, modules absolute, selectors valid, no token selected twice.
    fn token_entries(&mut self) {
        if let Some(n) = self.s.hsm.name.as_deref().filter(|n| n.trim().is_empty()) {
            let what = format!("`hsm.name` \"{n}\" is empty");
            let fix = "name the primary token, e.g. name = \"primary\", or remove the line";
            self.error(&root().key("hsm").key("name"), Target::Value, what, fix);
        }
        let mut seen: HashMap<String, String> = HashMap::new();
        seen.insert(self.s.primary_token().to_owned(), "[hsm]".to_owned());
        let mut selected: Vec<(String, String, String)> = vec![(
            self.s.hsm.module.clone(),
            self.s.hsm.token.to_string(),
            "[hsm]".to_owned(),
        )];
        for (i, h) in self.s.hsms.iter().enumerate() {
            let at = root().key("hsms").index(i);
            let name = h.name.trim();
            let entry = format!("[[hsms]] \"{name}\"");
            if name.is_empty() {
                let what = "a [[hsms]] entry has an empty name".to_owned();
                let fix = "give each token a short name steps can use, e.g. name = \"backup\"";
                self.error(&at.clone().key("name"), Target::Value, what, fix);
            } else if let Some(first) = seen.get(name) {
                let what = format!("token name \"{name}\" is used twice (first by {first})");
                let fix = "give each token its own name; steps and keys choose a token by it";
                self.error(&at.clone().key("name"), Target::Value, what, fix);
            } else {
                seen.insert(name.to_owned(), entry.clone());
            }
            self.hsm_module(&at.clone().key("module"), &h.module, "hsms.module");
            let sel = h.token.clone();
            self.token_selector(&at.clone().key("token"), &sel, &format!("{entry} token"));
            let key = (h.module.clone(), h.token.to_string());
            if let Some((_, _, first)) =
                selected.iter().find(|(m, t, _)| (m, t) == (&key.0, &key.1))
            {
                let what = format!(
                    "{entry} selects the same token as {first} ({} in {}); one token cannot be two \
                     of the ceremony's tokens",
                    h.token, h.module
                );
                let fix = "select each token by its own label, serial or URI";
                self.error(&at.clone().key("token"), Target::Value, what, fix);
            } else {
                selected.push((key.0, key.1, entry));
            }
        }
    }

    /// `hsm` on steps and keys names a token; a step acts on the token of the key it uses; the
    /// quorum's split, reshare, retirement and health check stay on the primary.
    fn token_references(&mut self) {
        for (i, k) in self.s.keys.iter().enumerate() {
            if let Some(h) = k.hsm.as_deref() {
                if self.s.token_named(h).is_none() {
                    let at = root().key("keys").index(i).key("hsm");
                    let what = format!(
                        "key \"{}\" lives on token \"{h}\", which the script does not name",
                        k.label
                    );
                    let fix = self.known_tokens_fix();
                    self.error(&at, Target::Value, what, fix);
                }
            }
        }
        for (i, st) in self.s.steps.iter().enumerate() {
            let at = step_path(i).key("hsm");
            let (name, action) = (self.step_name(i), st.action);
            if let Some(h) = st.hsm.as_deref() {
                if self.s.token_named(h).is_none() {
                    let what =
                        format!("{name} acts on token \"{h}\", which the script does not name");
                    let fix = self.known_tokens_fix();
                    self.error(&at, Target::Value, what, fix);
                    continue;
                }
                if !action.uses_hsm() && st.key.is_none() {
                    let what = format!(
                        "`hsm` has no meaning for a {action} step: it does not use a token"
                    );
                    self.error(&at, Target::Key, what, "remove the line");
                    continue;
                }
                let quorum_only_primary =
                    matches!(action, Action::SplitActivation | Action::Reshare);
                if quorum_only_primary && h != self.s.primary_token() {
                    let what = format!(
                        "{name} ({action}) acts on token \"{h}\"; the quorum's split and reshare \
                         set the primary token's PINs only"
                    );
                    let fix = "remove the line; a [[hsms]] token may still be activated by the quorum (activation = \"quorum\") when it carries the PINs the quorum derives";
                    self.error(&at, Target::Value, what, fix);
                    continue;
                }
            }
            self.step_key_token(i, st);
        }
    }

    /// The key a step uses must live on the token the step acts on.
    fn step_key_token(&mut self, i: usize, st: &Step) {
        if !(st.action.uses_hsm() || st.action == Action::ConfirmFingerprint) {
            return;
        }
        let Some(key) = self.s.step_key(st).and_then(|k| self.s.key(k)) else {
            return;
        };
        let (acts_on, lives_on) = (self.s.step_token(st), self.s.key_token_of(key));
        if acts_on == lives_on || self.s.token_named(lives_on).is_none() {
            return;
        }
        let name = self.step_name(i);
        let what = format!(
            "{name} ({}) acts on token \"{acts_on}\", but its key \"{}\" lives on token \"{lives_on}\"",
            st.action, key.label
        );
        let fix =
            format!("add hsm = \"{lives_on}\" to the step, or correct the key's hsm in [[keys]]");
        let at = if st.hsm.is_some() {
            step_path(i).key("hsm")
        } else {
            step_path(i).key("action")
        };
        self.error(&at, Target::Value, what, fix);
    }

    /// A token's `activation` matches the step that activates it.
    fn activations(&mut self) {
        for (i, st) in self.s.steps.iter().enumerate() {
            let by = match st.action {
                Action::ActivateHsm => Activation::Pin,
                Action::ActivateQuorum | Action::SplitActivation => Activation::Quorum,
                _ => continue,
            };
            let Some(token) = self.s.token_named(self.s.step_token(st)) else {
                continue;
            };
            let Some(declared) = token.activation.filter(|a| *a != by) else {
                continue;
            };
            let what = format!(
                "{} ({}) activates token \"{}\" by {by}, but the token declares activation = \"{declared}\"",
                self.step_name(i),
                st.action,
                token.name
            );
            let fix = match declared {
                Activation::Pin => "use action = \"activate_hsm\" for a PIN-activated token, or declare activation = \"quorum\"",
                Activation::Quorum => "use action = \"activate_quorum\" for a quorum-activated token, or declare activation = \"pin\"",
            };
            self.error(&step_path(i).key("action"), Target::Value, what, fix);
        }
    }

    /// Per token: no step uses it before its activation or after its deactivation, and it is not
    /// activated twice.
    pub(super) fn hsm_order(&mut self) {
        let names = self.token_names();
        for token in &names {
            self.hsm_order_of(token);
        }
    }

    fn hsm_order_of(&mut self, token: &str) {
        let noun = self.token_noun(token);
        let mut activated_by: Option<usize> = None;
        let mut deactivated_by: Option<usize> = None;
        for (i, st) in self.s.steps.iter().enumerate() {
            if self.s.step_token(st) != token {
                continue;
            }
            let action = st.action;
            let active = activated_by.is_some();
            // A split on a factory-fresh token initialises it and logs in: it activates.
            if action == Action::SplitActivation && !active && deactivated_by.is_none() {
                activated_by = Some(i);
                continue;
            }
            let at = step_path(i).key("action");
            if action.is_activation() {
                // A second login on an open session is an HSM error mid-ceremony, and it usually means a
                // deactivate_hsm step was forgotten or moved.
                if let Some(on) = activated_by {
                    let (name, on) = (self.step_name(i), self.step_name(on));
                    let what = format!(
                        "{name} activates {noun}, but it is already active: {on} activated it and no \
                         deactivate_hsm step comes in between"
                    );
                    let fix =
                        format!("remove {name}, or add a deactivate_hsm step between {on} and it");
                    self.error(&at, Target::Value, what, fix);
                } else {
                    activated_by = Some(i);
                }
                continue;
            }
            if !action.uses_hsm() {
                continue;
            }
            if !active {
                self.used_inactive(i, &at, &noun, deactivated_by);
            }
            if action == Action::DeactivateHsm {
                activated_by = None;
                deactivated_by = Some(i);
            }
        }
    }

    fn used_inactive(&mut self, i: usize, at: &KeyPath, noun: &str, deactivated_by: Option<usize>) {
        let (name, action) = (self.step_name(i), self.s.steps[i].action);
        let on = if self.s.has_several_tokens() {
            format!(" with hsm = \"{}\"", self.s.step_token(&self.s.steps[i]))
        } else {
            String::new()
        };
        let uses = if self.s.has_several_tokens() {
            format!("uses {noun}")
        } else {
            "uses the HSM".to_owned()
        };
        let (what, fix) = match deactivated_by {
            Some(d) => {
                let off = self.step_name(d);
                (
                    format!("{name} ({action}) {uses} after {off} deactivated it"),
                    format!("move it before {off}, or add an activate_hsm step{on} before it"),
                )
            }
            None => (
                format!("{name} ({action}) {uses}, but no activate_hsm step{on} comes before it"),
                format!("add an activate_hsm step{on} before it"),
            ),
        };
        self.error(at, Target::Value, what, fix);
    }
}

//! Policy rules about keys from earlier ceremonies (`[[keys]] existing`): a well-formed pinned hash
//! and lookup, never generated, and a warning for keys used but neither generated nor pinned.

use super::{root, step_path, Checker};
use crate::script::diagnostic::{Severity, Target};
use crate::script::model::Action;
use crate::script::signing::key_query;
use std::collections::HashSet;

impl Checker<'_> {
    pub(super) fn existing_keys(&mut self) {
        for (i, k) in self.s.keys.iter().enumerate() {
            let Some(existing) = &k.existing else {
                continue;
            };
            let at = root().key("keys").index(i).key("existing");
            if existing.normalized_hash().is_none() {
                let what = format!(
                    "key_hash of existing key \"{}\" is not a SHA-256: 64 hex digits are needed",
                    k.label
                );
                let fix =
                    "copy the key hash from the report of the ceremony that generated the key \
                           (SHA-256 of its public key; spaces between groups of 4 are fine)";
                self.error(&at.clone().key("key_hash"), Target::Value, what, fix);
            }
            if existing.id.is_some() && existing.uri.is_some() {
                let what = format!("existing key \"{}\" gives both an id and a uri", k.label);
                let fix = "keep one: the id (CKA_ID in hex) or the pkcs11: URI";
                self.error(&at.clone().key("uri"), Target::Key, what, fix);
            } else if let Err(why) = key_query(&k.label, existing) {
                let field = if existing.uri.is_some() { "uri" } else { "id" };
                let what = format!("existing key \"{}\": {why}", k.label);
                let fix = "write the CKA_ID as hex (id = \"9f8e…\"), or the URI as \
                           pkcs11:object=LABEL;id=%9f%8e…;type=private (RFC 7512)";
                self.error(&at.clone().key(field), Target::Value, what, fix);
            }
        }
        let mut generated = HashSet::new();
        for (i, st) in self.s.steps.iter().enumerate() {
            let Some(label) = st.key.as_deref() else {
                continue;
            };
            let Some(spec) = self.s.key(label) else {
                continue;
            };
            let name = self.step_name(i);
            let path = step_path(i).key("key");
            match (st.action, &spec.existing) {
                (Action::GenerateKey, Some(_)) => {
                    let what = format!(
                        "{name} generates key \"{label}\", but its [[keys]] entry says it comes from an \
                         earlier ceremony (existing)"
                    );
                    let fix = "remove the generate_key step to use the existing key, or remove \
                               `existing` to generate a new one";
                    self.error(&path, Target::Value, what, fix);
                }
                // Issue 12: a restored key is pinned by the backup report's hash.
                (Action::GenerateKey | Action::RestoreKey, None) => {
                    generated.insert(label);
                }
                // Issue 12: only a key pinned by its hash is destroyed, never "whatever the
                // token holds under that label".
                (Action::DestroyKey, None) => {
                    let what = format!(
                        "{name} destroys key \"{label}\", which is not pinned by its hash: keyrite \
                         destroys only a key from an earlier ceremony whose hash the script gives"
                    );
                    let fix = format!(
                        "add existing = {{ key_hash = \"…\" }} to the [[keys]] entry \"{label}\", \
                         copied from the report of the ceremony that generated it"
                    );
                    self.error(&path, Target::Value, what, fix);
                }
                (Action::ConfirmFingerprint | Action::SignTestMessage, None)
                    if !generated.contains(label) =>
                {
                    let what = format!(
                        "{name} uses key \"{label}\", which this script neither generates nor pins by \
                         its hash: keyrite would use whatever key the token holds under that label"
                    );
                    let fix = format!(
                        "add existing = {{ key_hash = \"…\" }} to the [[keys]] entry \"{label}\", \
                         copied from the report of the ceremony that generated it"
                    );
                    self.push(Severity::Warning, &path, Target::Value, what, fix);
                }
                _ => {}
            }
        }
    }
}

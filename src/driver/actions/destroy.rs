//! Key destruction (issue 12, item 4). The step names a key from an earlier ceremony
//! (`[[keys]] existing`, pinned by its hash and found at activation like any existing key). After
//! the write-ahead `destroy_key` intent, every object carrying the key's CKA_ID or CKA_LABEL is
//! destroyed, the private key first, one at a time; then the token is read back, and
//! `key_destroyed` records what was destroyed and what the read-back found (nothing, or the step
//! fails naming what remains). A key that is not on the token fails the step before the intent:
//! nothing changed.
//!
//! Resume (`Resumption::Finish`): a `key_destroyed` already logged completes the step without
//! touching the token; an interrupted destruction (its intent logged, no result) is finished from
//! the intent's CKA_ID, label and key hash: what remains is destroyed and the read-back recorded,
//! with `finished_after_interruption`.

use super::super::operator::{Notice, Operator};
use super::super::State;
use super::{failed, intent, keys, Context, Performed};
use crate::evidence::destroy::KeyDestroyedRecord;
use crate::evidence::events::Record;
use crate::hsm::spki::{grouped_hex, key_hash};
use crate::hsm::{HsmError, TokenObject};

/// The key to destroy, as found and pinned, or as the interrupted run's intent named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Doomed {
    pub key: String,
    pub label: String,
    pub id: String,
    pub key_hash: String,
}

impl Doomed {
    fn detail(&self) -> String {
        format!(
            "key {}, label {}, CKA_ID {}, key hash {}: destroy every object with that CKA_ID or \
             CKA_LABEL",
            self.key, self.label, self.id, self.key_hash
        )
    }

    /// The key an interrupted `destroy_key` intent named (its detail, as [`Doomed::detail`] wrote it).
    pub(in crate::driver) fn from_intent(detail: &str) -> Option<Doomed> {
        let head = detail.split(": destroy").next()?;
        let mut parts = head.split(", ");
        let key = parts.next()?.strip_prefix("key ")?.to_string();
        let label = parts.next()?.strip_prefix("label ")?.to_string();
        let id = parts.next()?.strip_prefix("CKA_ID ")?.to_string();
        let key_hash = parts.next()?.strip_prefix("key hash ")?.to_string();
        Some(Doomed {
            key,
            label,
            id,
            key_hash,
        })
    }
}

/// The private key goes first: once it is gone, nothing can sign with the key any more.
fn order(class: &str) -> u8 {
    match class {
        "private-key" => 0,
        "public-key" => 1,
        "certificate" => 2,
        _ => 3,
    }
}

pub(super) fn perform(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
) -> Performed {
    let name = ctx.step.key.as_deref().unwrap_or_default();
    if state.destroyed_keys.contains(name) {
        operator.notice(Notice::Info {
            text: &format!(
                "key {name} was destroyed before the interruption (key_destroyed is in the log); \
                 nothing more to do"
            ),
        });
        return Ok(Ok(()));
    }
    let interrupted = state.destroying.take().filter(|d| d.key == name);
    let doomed = match keys::known_key(state, ctx.script, &ctx.step.id, name, operator)? {
        Ok(info) => Doomed {
            key: name.to_string(),
            label: info.label.clone(),
            id: info.id_hex.clone(),
            key_hash: key_hash(&info.spki_der),
        },
        // Part of it is gone already: the interrupted run found and pinned it before its intent.
        Err(why) => match interrupted.clone() {
            Some(d) => d,
            None => return Ok(Err(format!("{why}; nothing was destroyed"))),
        },
    };
    let token = match state.hsm.as_ref() {
        Some(h) => h.identity().clone(),
        None => return Ok(Err("the HSM is not activated; nothing was destroyed".into())),
    };
    operator.notice(Notice::Info {
        text: &format!(
            "destroying key {name} on token \"{}\" (serial {}): label \"{}\", CKA_ID {}, key hash {}",
            token.token_label,
            token.serial,
            doomed.label,
            doomed.id,
            grouped_hex(&doomed.key_hash)
        ),
    });
    intent(state, ctx, "destroy_key", doomed.detail())?;
    let step = ctx.step.id.clone();
    let done = match destroy_all(state, &doomed, &step) {
        Ok(done) => done,
        Err(e) => return failed(state, ctx, "destroy_key", e),
    };
    let (destroyed, remaining) = done;
    let record = KeyDestroyedRecord {
        key: name.to_string(),
        label: doomed.label.clone(),
        id: doomed.id.clone(),
        key_hash: doomed.key_hash.clone(),
        token_label: token.token_label.clone(),
        token_serial: token.serial.clone(),
        destroyed: destroyed.clone(),
        remaining: remaining.clone(),
        finished_after_interruption: interrupted.is_some(),
    };
    state.record(Some(step), vec![], &Record::KeyDestroyed(record))?;
    state.keys.remove(name);
    state.destroyed_keys.insert(name.to_string());
    if !remaining.is_empty() {
        return Ok(Err(format!(
            "after the destruction, {} object(s) with the key's CKA_ID or label remain on token \
             \"{}\": {} — the token refused to destroy them (CKA_DESTROYABLE false?); ask its \
             security officer, then run a new destruction ceremony",
            remaining.len(),
            token.token_label,
            describe(&remaining)
        )));
    }
    operator.notice(Notice::Info {
        text: &format!(
            "key {name} destroyed: {} object(s) ({}); read back: no object with CKA_ID {} or label \
             \"{}\" remains",
            destroyed.len(),
            describe(&destroyed),
            doomed.id,
            doomed.label
        ),
    });
    Ok(Ok(()))
}

fn describe(objects: &[TokenObject]) -> String {
    objects
        .iter()
        .map(|o| format!("{} \"{}\"", o.class, o.label))
        .collect::<Vec<_>>()
        .join(", ")
}

type Destroyed = (Vec<TokenObject>, Vec<TokenObject>);

/// Destroy each object of the key (crash hook `destroyed-object` after each), then read back.
fn destroy_all(state: &mut State, doomed: &Doomed, step: &str) -> Result<Destroyed, HsmError> {
    let Some(hsm) = state.hsm.as_mut() else {
        return Err(HsmError::new(
            "destroy key",
            "the HSM is not activated",
            "activate the HSM first",
        ));
    };
    let mut objects = hsm.key_objects(&doomed.label, &doomed.id)?;
    objects.sort_by_key(|o| order(&o.class));
    let mut destroyed = Vec::new();
    for object in objects {
        if hsm.destroy_object(&doomed.label, &doomed.id, &object)? > 0 {
            destroyed.push(object);
        }
        super::super::kill_hook::point(step, "destroyed-object");
    }
    let remaining = hsm.key_objects(&doomed.label, &doomed.id)?;
    Ok((destroyed, remaining))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intent_detail_names_the_key_again() {
        let d = Doomed {
            key: "root".into(),
            label: "root-2026".into(),
            id: "a1b2".into(),
            key_hash: "00ff".into(),
        };
        assert_eq!(Doomed::from_intent(&d.detail()), Some(d));
        assert_eq!(Doomed::from_intent("label x"), None);
    }
}

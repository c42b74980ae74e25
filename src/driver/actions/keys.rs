//! Keys from earlier ceremonies: a `[[keys]]` entry with an `existing` table is never generated; it
//! is found on the token after activation (by PIN or by quorum) and must have the hash the script
//! pins. No match, more than one match, another algorithm or another hash stops the step before
//! anything is signed. The key found is logged (`existing_key_found`) with its hash and public key,
//! so the report says which key signed what.

use super::super::operator::{Notice, Operator};
use super::super::rehearsal;
use super::super::State;
use crate::error::Result;
use crate::evidence::events::Record;
use crate::evidence::signing::ExistingKeyRecord;
use crate::hsm::spki::{grouped_hex, key_hash};
use crate::hsm::KeyPairInfo;
use crate::script::signing::key_query;
use crate::script::{ExistingKey, KeyQuery, KeySpec, Script};

/// The inner `Err` fails the step with its reason; the outer one stops the run (evidence unwritable).
type Found = Result<std::result::Result<KeyPairInfo, String>>;

/// The key a step uses: generated or found earlier in this run, an existing key (found and checked
/// now), or, for a key the script neither generates nor pins, whatever the token holds under its
/// label (the policy warns about such scripts).
pub(in crate::driver) fn known_key(
    state: &mut State,
    script: &Script,
    step: &str,
    label: &str,
    operator: &mut dyn Operator,
) -> Found {
    if let Some(info) = state.keys.get(label) {
        return Ok(Ok(info.clone()));
    }
    if let Some(spec) = script.key(label) {
        if let Some(existing) = &spec.existing {
            return find_existing(state, step, spec, existing, operator);
        }
    }
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err(format!(
            "key {label} was not generated in this ceremony and the HSM is not activated"
        )));
    };
    let info = match hsm.key_pair(label) {
        Ok(info) => info,
        Err(e) => return Ok(Err(e.to_string())),
    };
    state.keys.insert(label.to_string(), info.clone());
    Ok(Ok(info))
}

/// Right after an activation (or `keyrite resume`'s login again): find every existing key of the
/// script now, so a wrong token or a wrong key stops the ceremony before any step signs.
/// Issue 12: only the keys that live on the token just activated (`token`).
pub(in crate::driver) fn find_all_existing(
    state: &mut State,
    script: &Script,
    token: &str,
    step: &str,
    operator: &mut dyn Operator,
) -> Result<std::result::Result<(), String>> {
    let on_token = |k: &&KeySpec| k.existing.is_some() && script.key_token_of(k) == token;
    // A key destroyed (or being destroyed when keyrite was interrupted) is not looked for again.
    let gone = |k: &&KeySpec| {
        state.destroyed_keys.contains(&k.label)
            || state.destroying.as_ref().is_some_and(|d| d.key == k.label)
    };
    let wanted: Vec<&KeySpec> = script.keys.iter().filter(on_token).collect();
    let wanted: Vec<&KeySpec> = wanted.into_iter().filter(|k| !gone(k)).collect();
    for spec in wanted {
        // `keyrite resume`: the key the interrupted run found is looked for on the token again.
        if state.refind.contains_key(&spec.label) {
            state.keys.remove(&spec.label);
        }
        if let Err(why) = known_key(state, script, step, &spec.label, operator)? {
            return Ok(Err(why));
        }
    }
    Ok(Ok(()))
}

/// The hash the key must have: in a rehearsal, the one recorded for the throw-away key a rehearsed
/// ceremony generated under that label in the same --env folder; otherwise the script's.
fn expected_hash(
    spec: &KeySpec,
    existing: &ExistingKey,
    label_on_token: &str,
    operator: &mut dyn Operator,
) -> std::result::Result<(String, String), String> {
    let pinned = existing.normalized_hash().ok_or_else(|| {
        format!(
            "key {}: key_hash \"{}\" is not a SHA-256 (64 hex digits); run `keyrite check`",
            spec.label, existing.key_hash
        )
    })?;
    let recorded = rehearsal::recorded_key(label_on_token).map_err(|e| e.to_string())?;
    let Some(rec) = recorded else {
        return Ok((pinned, "script".into()));
    };
    if rec.key_hash != pinned {
        operator.notice(Notice::Info {
            text: &format!(
                "rehearsal: key {} is the throw-away key ceremony {} generated in this folder; it is \
                 checked against that key's hash {}, not the script's {} (the real key's)",
                spec.label,
                rec.ceremony_id,
                grouped_hex(&rec.key_hash),
                grouped_hex(&pinned)
            ),
        });
    }
    Ok((rec.key_hash, "rehearsal folder".into()))
}

fn describe_matches(matches: &[(String, String)]) -> String {
    matches
        .iter()
        .map(|(label, id)| format!("\"{label}\" (CKA_ID {id})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn find_existing(
    state: &mut State,
    step: &str,
    spec: &KeySpec,
    existing: &ExistingKey,
    operator: &mut dyn Operator,
) -> Found {
    let name = &spec.label;
    let query = match key_query(name, existing) {
        Ok(q) => q,
        Err(why) => return Ok(Err(format!("key {name}: {why}; run `keyrite check`"))),
    };
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err(format!(
            "key {name} comes from an earlier ceremony and is found only after activation: put an \
             activate_hsm or activate_quorum step before this one"
        )));
    };
    let token = hsm.identity().token_label.clone();
    let stop = "nothing was signed or destroyed";
    let matches = match hsm.find_private_keys(&query) {
        Ok(m) => m,
        Err(e) => return Ok(Err(format!("key {name}: {e}"))),
    };
    let (label, id) = match matches.as_slice() {
        [one] => one.clone(),
        [] => {
            return Ok(Err(format!(
            "key {name}: token \"{token}\" has no private key with {query}; {stop} — check that \
                 this is the token of ceremony {}, and the key's label, id or URI in the script \
                 (pkcs11-tool --list-objects shows them after login)",
            existing.ceremony.as_deref().unwrap_or("that generated it")
        )))
        }
        many => {
            return Ok(Err(format!(
                "key {name}: {} private keys on token \"{token}\" match {query}: {}; {stop} — name \
                 the key unambiguously (existing.id or existing.uri with its CKA_ID)",
                many.len(),
                describe_matches(many)
            )))
        }
    };
    // Signing goes by CKA_LABEL, so the label must name this key alone.
    let by_label = KeyQuery {
        label: Some(label.clone()),
        id: None,
    };
    if label.is_empty() {
        return Ok(Err(format!(
            "key {name}: the private key with CKA_ID {id} has no CKA_LABEL, and keyrite signs by \
             label; {stop} — give it a unique label on the token (pkcs11-tool --label) in a \
             witnessed procedure"
        )));
    }
    match hsm.find_private_keys(&by_label) {
        Ok(same) if same.len() == 1 => {}
        Ok(same) => {
            return Ok(Err(format!(
                "key {name}: its label \"{label}\" is shared by {} private keys ({}), and keyrite \
                 signs by label; {stop} — resolve the duplicate labels before the ceremony",
                same.len(),
                describe_matches(&same)
            )))
        }
        Err(e) => return Ok(Err(format!("key {name}: {e}"))),
    }
    let info = match hsm.key_pair(&label) {
        Ok(info) => info,
        Err(e) => return Ok(Err(format!("key {name}: {e}"))),
    };
    let hash = key_hash(&info.spki_der);
    let (expected, expected_from) = match expected_hash(spec, existing, &label, operator) {
        Ok(e) => e,
        Err(why) => return Ok(Err(why)),
    };
    if hash != expected {
        return Ok(Err(format!(
            "key {name} on token \"{token}\" (label \"{label}\", CKA_ID {id}) has key hash {}, but \
             the {expected_from} pins {}; {stop} — this is not the key the script names: check the \
             token and the key_hash copied from the earlier ceremony's report",
            grouped_hex(&hash),
            grouped_hex(&expected)
        )));
    }
    if let Some(logged) = state.refind.get(name).filter(|logged| **logged != hash) {
        return Ok(Err(format!(
            "key {name} on token \"{token}\" (label \"{label}\", CKA_ID {id}) has key hash {}, but \
             before the interruption this ceremony found the key with hash {}; {stop} — this is \
             not the key the ceremony started with: check the token, or close the ceremony with \
             `keyrite abort`",
            grouped_hex(&hash),
            grouped_hex(logged)
        )));
    }
    if info.algorithm != spec.algorithm {
        return Ok(Err(format!(
            "key {name} is a {} key, but the script says {}; {stop} — correct the algorithm in \
             the script",
            info.algorithm, spec.algorithm
        )));
    }
    let file = spec.public_key_file();
    let pem = super::spki_pem(&info.spki_der);
    if let Err(e) = write_public_key(state, step, &file, pem.as_bytes()) {
        return Ok(Err(e.to_string()));
    }
    operator.notice(Notice::Info {
        text: &format!(
            "found key {name} from an earlier ceremony: label \"{label}\", key hash {}, as pinned",
            grouped_hex(&hash)
        ),
    });
    state.record(
        Some(step.to_string()),
        vec![],
        &Record::ExistingKeyFound(ExistingKeyRecord {
            key: name.clone(),
            found_by: query.to_string(),
            label,
            id,
            algorithm: info.algorithm.to_string(),
            key_hash: hash,
            expected_from,
            generated_by: existing.ceremony.clone(),
            attributes: info.attributes.clone(),
            public_key_file: file,
        }),
    )?;
    state.refind.remove(name);
    state.keys.insert(name.clone(), info.clone());
    Ok(Ok(info))
}

/// Write the public key once: after `keyrite resume`, the file of the interrupted run is kept when
/// it holds the same bytes.
fn write_public_key(state: &mut State, step: &str, file: &str, pem: &[u8]) -> Result<()> {
    if std::fs::read(state.bundle.path(file)).is_ok_and(|old| old == pem) {
        return Ok(());
    }
    let artifact = state.bundle.write_new(file, pem)?;
    state.record(
        Some(step.to_string()),
        vec![],
        &Record::ArtifactWritten(artifact),
    )
}

/// Record a key generated in a rehearsal, so a later rehearsed ceremony in the same folder can use
/// it as an existing key.
pub(in crate::driver) fn note_generated(ceremony_id: &str, info: &KeyPairInfo) -> Result<()> {
    rehearsal::note_key(rehearsal::RehearsalKey {
        ceremony_id: ceremony_id.to_string(),
        label: info.label.clone(),
        key_hash: key_hash(&info.spki_der),
    })
}

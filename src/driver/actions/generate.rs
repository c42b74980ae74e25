//! The generate_key step: a new key pair inside the HSM, refused when its label is taken, and
//! adopted by `keyrite resume` when an interrupted run made it.

use super::super::operator::Operator;
use super::super::State;
use super::{
    failed, intent, keys, spki_pem, token_objects, with_elapsed, write_artifact, Context, Performed,
};
use crate::evidence::events::Record;
use crate::hsm::spki::key_hash;
use crate::hsm::{HsmError, KeyPairInfo};

pub(super) fn generate(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    pins: &mut dyn super::super::pins::PinSource,
) -> Performed {
    let Some(label) = ctx.step.key.as_deref() else {
        return Ok(Err("the step names no key".into()));
    };
    let Some(spec) = ctx.script.key(label) else {
        return Ok(Err(format!("key {label} is not in the script")));
    };
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err("the HSM is not activated".into()));
    };
    if state.keys.contains_key(label) {
        // `keyrite resume`: generated and logged before the interruption.
        return Ok(Ok(()));
    }
    let exists = hsm.label_exists(label);
    if state.adopt.as_deref() == Some(label) && exists == Ok(true) {
        return crate::driver::resume::adopt_key(state, ctx, label, operator);
    }
    match exists {
        Ok(true) => {
            let err = HsmError::new(
                "C_FindObjects",
                format!("an object labelled \"{label}\" already exists on the token; nothing was generated"),
                "choose a new key label in the script, or use a fresh token",
            );
            return failed(state, ctx, "generate_key_pair", err);
        }
        Err(e) => return failed(state, ctx, "generate_key_pair", e),
        Ok(false) => {}
    }
    // Issue 12: a key to back up is generated only where a trusted wrap is possible.
    let for_backup = ctx.script.backs_up(label);
    if for_backup {
        if let Err(why) = super::backup::check_token_can_back_up(state, ctx, pins)? {
            return Ok(Err(why));
        }
    }
    intent(
        state,
        ctx,
        "generate_key_pair",
        format!(
            "label {label}, {}{}",
            spec.algorithm,
            if for_backup {
                ", extractable only wrapped by a trusted key (CKA_WRAP_WITH_TRUSTED), for backup"
            } else {
                ""
            }
        ),
    )?;
    let what = format!("generating {} key in the HSM", spec.algorithm);
    let result = match state.hsm.as_mut() {
        Some(hsm) => with_elapsed(operator, &what, || {
            if for_backup {
                hsm.generate_backup_key_pair(label, spec.algorithm)
            } else {
                hsm.generate_key_pair(label, spec.algorithm)
            }
        }),
        None => return Ok(Err("the HSM is not activated".into())),
    };
    state.hsm_returned();
    let info = match result {
        Ok(info) => info,
        Err(e) => return failed(state, ctx, "generate_key_pair", e),
    };
    key_generated(state, ctx, label, info)
}

/// Write the public key, log `key_generated`, and check the evidence attributes.
pub(in crate::driver) fn key_generated(
    state: &mut State,
    ctx: &Context<'_>,
    label: &str,
    info: KeyPairInfo,
) -> Performed {
    let Some(spec) = ctx.script.key(label) else {
        return Ok(Err(format!("key {label} is not in the script")));
    };
    let hash = key_hash(&info.spki_der);
    let pem = spki_pem(&info.spki_der);
    let file = spec.public_key_file();
    if let Err(e) = write_artifact(state, ctx, &file, pem.as_bytes()) {
        return Ok(Err(e.to_string()));
    }
    state.record(
        Some(ctx.step.id.clone()),
        vec![],
        &Record::KeyGenerated {
            label: label.into(),
            algorithm: spec.algorithm.to_string(),
            bits: spec.algorithm.bits(),
            id: info.id_hex.clone(),
            key_hash: hash,
            attributes: info.attributes.clone(),
            public_key_file: file,
        },
    )?;
    token_objects::log_key_uri(state, &ctx.step.id, &info)?;
    // Issue 12: a key for backup proves the trusted-wrap-only attributes instead.
    let proven = if ctx.script.backs_up(label) {
        info.attributes.prove_backup_generation()
    } else {
        info.attributes.prove_in_hsm_generation()
    };
    if ctx.mode.rehearsal {
        keys::note_generated(&ctx.script.ceremony.id, &info)?;
    }
    state.keys.insert(label.into(), info);
    if !proven && ctx.script.backs_up(label) {
        return Ok(Err(format!(
            "the token does not confirm that key {label} was generated inside it, is sensitive and can leave it only wrapped by a trusted key (CKA_LOCAL, CKA_ALWAYS_SENSITIVE, CKA_EXTRACTABLE with CKA_WRAP_WITH_TRUSTED); do not use this key"
        )));
    }
    if !proven {
        return Ok(Err(format!(
            "the token does not confirm that key {label} was generated inside it and can never leave it (CKA_LOCAL, CKA_NEVER_EXTRACTABLE, CKA_ALWAYS_SENSITIVE); do not use this key"
        )));
    }
    Ok(Ok(()))
}

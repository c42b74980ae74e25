//! Issue 12: the backup_key step. The `[backup]` key was generated extractable only under a trusted
//! wrap (generate.rs asks [`check_token_can_back_up`] first). Here a fresh random scalar is split
//! M-of-N to the backup cards (the same Feldman machinery as the activation quorum); the AES-256 KEK
//! is derived from it on the host in zeroized memory, imported by the security officer as a
//! session-only trusted key, wraps the key once, and is destroyed. The blob goes into the bundle
//! with its SHA-256.
//!
//! Resume (resume.rs): `key_backed_up` logged → the step completes without redoing anything; no
//! card written yet → again; cards written → refused by name (resume_quorum.rs), because new shares
//! cannot replace the ones the cards already hold. The KEK is a session object: a kill at any point
//! takes it with the session, so no KEK is ever left on the token.

use super::super::operator::{Notice, Operator};
use super::super::pins::{PinRequest, PinSource};
use super::super::quorum::{counts, draw_and_split, write_cards};
use super::super::quorum_pins::pin_length;
use super::super::rehearsal;
use super::super::{Opener, State};
use super::{failed, intent, keys, write_artifact, Context, Performed};
use crate::evidence::backup::{BackupRecord, EXTRACTABLE_BY_DESIGN, KEK_HANDLING};
use crate::evidence::events::Record;
use crate::evidence::quorum::SplitRecord;
use crate::hsm::spki::key_hash;
use crate::hsm::{Hsm, HsmError, KekUse, WrapMechanism};
use crate::script::backup::kek_split_id;
use crate::script::file_stem;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// The one accessor every backup/restore action uses for "the step's token" (issue 12, item 1
/// will let a step name its token; until then it is the ceremony's HSM session).
pub(super) fn step_token<'s>(
    state: &'s mut State,
    _ctx: &Context<'_>,
) -> Option<&'s mut (dyn Hsm + Send + 'static)> {
    state.hsm.as_deref_mut()
}

/// CKA_LABEL of the session-only KEK object of the split `split_id`.
pub(super) fn kek_label(split_id: &str) -> String {
    format!("keyrite-kek:{split_id}")
}

/// The token's SO PIN: derived from the quorum secret when the quorum activated the token (its PINs
/// are the split's), else asked (the rehearsal's folder answers for a throw-away token).
pub(super) fn so_pin(
    state: &mut State,
    _ctx: &Context<'_>,
    pins: &mut dyn PinSource,
) -> Result<SecretString, String> {
    // The step's token (as step_token) and the quorum secret, borrowed side by side.
    let Some(hsm) = state.hsm.as_deref_mut() else {
        return Err("the HSM is not activated".into());
    };
    if let Some((secret, _)) = state.quorum.as_ref() {
        let len = pin_length(hsm)?;
        return Ok(secret.hsm_pins(len).1);
    }
    let token = hsm.identity().clone();
    pins.pin(&PinRequest::HsmSecurityOfficer(&token))
        .map_err(|e| e.to_string())
}

/// Before a key for backup is generated: the token must offer an AES key wrap keyrite can call, and
/// its security officer must be able to mark a key CKA_TRUSTED (a throw-away session key is made,
/// read back and destroyed). Refused here, nothing irreversible has happened.
pub(super) fn check_token_can_back_up(
    state: &mut State,
    ctx: &Context<'_>,
    pins: &mut dyn PinSource,
) -> Performed {
    let Some(hsm) = step_token(state, ctx) else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let token = hsm.identity().token_label.clone();
    match hsm.wrap_mechanism() {
        Ok(Some(_)) => {}
        Ok(None) => {
            let err = HsmError::new(
                "C_GetMechanismList",
                format!(
                    "token \"{token}\" offers no CKM_AES_KEY_WRAP_PAD for C_WrapKey and C_UnwrapKey, so the \
                     key cannot be backed up; nothing was generated"
                ),
                "use an HSM that offers CKM_AES_KEY_WRAP_PAD (docs/hsm-compatibility.md), or remove [backup] \
                 from the script to generate a key that can never leave the token",
            );
            return failed(state, ctx, "probe_trusted_kek", err);
        }
        Err(e) => return failed(state, ctx, "probe_trusted_kek", e),
    }
    let so = match so_pin(state, ctx, pins) {
        Ok(p) => p,
        Err(why) => return Ok(Err(why)),
    };
    let Some(hsm) = step_token(state, ctx) else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let probe = match hsm.random(32) {
        Ok(r) => zeroize::Zeroizing::new(r),
        Err(e) => return failed(state, ctx, "probe_trusted_kek", e),
    };
    let label = kek_label(&format!("{}/probe", ctx.script.ceremony.id));
    intent(
        state,
        ctx,
        "probe_trusted_kek",
        format!(
            "the security officer marks a throw-away session key \"{label}\" CKA_TRUSTED on token \"{token}\", \
             which is read back and destroyed (can this token back up a key?)"
        ),
    )?;
    let Some(hsm) = step_token(state, ctx) else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let imported = hsm.import_trusted_kek(&label, &probe, &so, KekUse::Wrap);
    drop((so, probe));
    let destroyed = hsm.destroy_labelled(&label, true);
    state.hsm_returned();
    if let Err(mut e) = imported {
        e.what = format!(
            "{}; token \"{token}\" cannot hold a trusted key-encryption key, so the key cannot be backed up; nothing was generated",
            e.what
        );
        return failed(state, ctx, "probe_trusted_kek", e);
    }
    if let Err(e) = destroyed {
        return failed(state, ctx, "probe_trusted_kek", e);
    }
    Ok(Ok(()))
}

pub(super) fn backup(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
) -> Performed {
    let Some(cfg) = ctx.script.backup.as_ref() else {
        return Ok(Err(
            "a backup_key step needs a [backup] section in the script".into(),
        ));
    };
    let label = ctx.step.key.as_deref().unwrap_or(cfg.key.as_str());
    if state.backups_logged.contains(label) {
        // `keyrite resume`: the backup was complete and logged before the interruption.
        return Ok(Ok(()));
    }
    let info = match keys::known_key(state, ctx.script, &ctx.step.id, label, operator)? {
        Ok(i) => i,
        Err(why) => return Ok(Err(why)),
    };
    if !info.attributes.prove_backup_generation() {
        return Ok(Err(format!(
            "key {label} was not generated for backup (its attributes do not show CKA_EXTRACTABLE with \
             CKA_WRAP_WITH_TRUSTED); nothing was written — a key generated never-extractable can never be \
             backed up, by design"
        )));
    }
    let set = cfg.set();
    let (m, n) = match counts(&set) {
        Ok(x) => x,
        Err(why) => return Ok(Err(why)),
    };
    let Some(hsm) = step_token(state, ctx) else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let mechanism = match hsm.wrap_mechanism() {
        Ok(Some(m)) => m,
        Ok(None) => {
            return Ok(Err(
                "the token offers no CKM_AES_KEY_WRAP_PAD; nothing was written".into(),
            ))
        }
        Err(e) => return failed(state, ctx, "wrap_key", e),
    };
    let token = hsm.identity().clone();
    // Every input is known (and the SO PIN obtained) before any card is written.
    let so = match so_pin(state, ctx, pins) {
        Ok(p) => p,
        Err(why) => return Ok(Err(why)),
    };
    let split_id = kek_split_id(&ctx.script.ceremony.id);
    let Some(hsm) = step_token(state, ctx) else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let (secret, shares, commitments) = match draw_and_split(hsm, &split_id, m, n) {
        Ok(Ok(x)) => x,
        Ok(Err(why)) => return Ok(Err(why)),
        Err(e) => return failed(state, ctx, "backup_key", e),
    };
    // The KEK is imported first: a wrong SO PIN is found before any card is written (the KEK is a
    // session object, so a failure below leaves nothing on the token either).
    let kek = match secret.kek(&split_id) {
        Ok(k) => k,
        Err(e) => return Ok(Err(e.to_string())),
    };
    drop(secret);
    let kek_name = kek_label(&split_id);
    intent(
        state,
        ctx,
        "import_kek",
        format!(
            "the security officer imports the KEK \"{kek_name}\" (session-only, CKA_TRUSTED, CKA_WRAP) into token \"{}\"",
            token.token_label
        ),
    )?;
    let Some(hsm) = step_token(state, ctx) else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let imported = hsm.import_trusted_kek(&kek_name, kek.as_slice(), &so, KekUse::Wrap);
    drop((kek, so));
    state.hsm_returned();
    if let Err(e) = imported {
        return failed(state, ctx, "import_kek", e);
    }
    operator.notice(Notice::Info {
        text: &format!(
            "backup of key {label}: the key-encryption key is split {m} of {n}; each custodian now writes one share"
        ),
    });
    // Every share is written and read back before the key is wrapped.
    let cards = match write_cards(
        state,
        ctx,
        operator,
        pins,
        opener,
        &set,
        &shares,
        &commitments,
    )? {
        Ok(c) => c,
        Err(why) => {
            if let Some(hsm) = step_token(state, ctx) {
                let _ = hsm.destroy_labelled(&kek_name, true);
            }
            return Ok(Err(format!("{why}; the key was not wrapped")));
        }
    };
    drop(shares);
    intent(
        state,
        ctx,
        "wrap_key",
        format!(
            "C_WrapKey of {label} under \"{kek_name}\" with {}",
            mechanism.name()
        ),
    )?;
    let Some(hsm) = step_token(state, ctx) else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let wrapped = hsm.wrap_key(&kek_name, label, mechanism);
    state.hsm_returned();
    let blob = match wrapped {
        Ok(b) => b,
        Err(e) => {
            if let Some(hsm) = step_token(state, ctx) {
                let _ = hsm.destroy_labelled(&kek_name, true);
            }
            return failed(state, ctx, "wrap_key", e);
        }
    };
    let blob_file = format!("artifacts/{}.wrapped.bin", file_stem(label));
    write_artifact(state, ctx, &blob_file, &blob)?;
    finish(
        state,
        ctx,
        label,
        &info,
        mechanism,
        blob,
        blob_file,
        commitments,
        cards,
        &kek_name,
        &token,
    )
}

#[allow(clippy::too_many_arguments)]
fn finish(
    state: &mut State,
    ctx: &Context<'_>,
    label: &str,
    info: &crate::hsm::KeyPairInfo,
    mechanism: WrapMechanism,
    blob: Vec<u8>,
    blob_file: String,
    commitments: crate::quorum::Commitments,
    cards: Vec<crate::evidence::quorum::CardRef>,
    kek_name: &str,
    token: &crate::hsm::TokenIdentity,
) -> Performed {
    intent(
        state,
        ctx,
        "destroy_kek",
        format!("C_DestroyObject of \"{kek_name}\", then no secret key may be left"),
    )?;
    let Some(hsm) = step_token(state, ctx) else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let destroyed = hsm
        .destroy_labelled(kek_name, true)
        .and_then(|_| hsm.secret_key_count())
        .and_then(|left| hsm.key_pair(label).map(|k| (left, k)));
    state.hsm_returned();
    let (left, after) = match destroyed {
        Ok(x) => x,
        Err(e) => return failed(state, ctx, "destroy_kek", e),
    };
    let blob_sha256 = hex::encode(Sha256::digest(&blob));
    let rec = BackupRecord {
        key: label.into(),
        key_hash: key_hash(&info.spki_der),
        key_id: info.id_hex.clone(),
        algorithm: info.algorithm.to_string(),
        token_label: token.token_label.clone(),
        token_serial: token.serial.clone(),
        attributes: after.attributes.clone(),
        statement: EXTRACTABLE_BY_DESIGN.into(),
        mechanism: mechanism.name().into(),
        blob_file,
        blob_sha256: blob_sha256.clone(),
        blob_size: blob.len() as u64,
        kek_split: SplitRecord {
            purpose: "backup-kek".into(),
            split_ceremony_id: commitments.split.ceremony_id.clone(),
            nonce: hex::encode(commitments.split.nonce),
            threshold: commitments.threshold,
            total: commitments.total,
            commitments: hex::encode(commitments.encode()),
            commitments_sha256: commitments.sha256_hex(),
            cards,
            hsm: None,
            replaces_commitments_sha256: None,
        },
        kek_handling: KEK_HANDLING.into(),
        secret_keys_left: left as u64,
    };
    state.record(
        Some(ctx.step.id.clone()),
        vec![],
        &Record::KeyBackedUp(rec.clone()),
    )?;
    if ctx.mode.rehearsal {
        rehearsal::note_split(
            &rehearsal::RehearsalSplit {
                ceremony_id: rec.kek_split.split_ceremony_id.clone(),
                commitments_sha256: rec.kek_split.commitments_sha256.clone(),
                stage: "done".into(),
                so_pin: "n/a (backup KEK)".into(),
                user_pin: "n/a (backup KEK)".into(),
                replaced_by: None,
            },
            None,
            rehearsal::Durability::AtExit,
        )?;
        rehearsal::note_backup(rehearsal::RehearsalBackup {
            ceremony_id: ctx.script.ceremony.id.clone(),
            key: label.into(),
            key_hash: rec.key_hash.clone(),
            blob_sha256,
        })?;
    }
    state.backups_logged.insert(label.into());
    if left != 0 {
        return Ok(Err(format!(
            "{left} secret key object(s) are still on the token after the KEK was destroyed; have the \
             security officer inspect the token (pkcs11-tool --list-objects --type secrkey)"
        )));
    }
    if !after.attributes.prove_backup_generation() {
        return Ok(Err(format!(
            "key {label}'s attributes read back after the wrap no longer show CKA_SENSITIVE with \
             CKA_WRAP_WITH_TRUSTED; do not use this key"
        )));
    }
    Ok(Ok(()))
}

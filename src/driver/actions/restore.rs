//! Issue 12: the restore_key step. Before anything touches the target: the blob's SHA-256 and the
//! certificate's key hash are checked against what the backup report pinned, and the target must
//! not hold the label yet. Then M custodians rebuild the KEK (each card checked against the split's
//! trusted commitments and Feldman-verified), the security officer imports it as a session-only
//! trusted unwrapping key, the blob is unwrapped sensitive and non-extractable, a challenge signed by
//! the unwrapped key must verify under the original certificate, the public key object is made from
//! that certificate, and the KEK is destroyed. Any failure after the unwrap destroys what the step
//! put on the target and reads back that nothing is left (`restore_undone`).
//!
//! Resume (resume.rs): `key_restored` logged → the step completes; otherwise the objects the
//! interrupted attempt may have left under the key's label are destroyed and read back gone
//! (`restore_undone`), then the restore runs again (cards presented again). The KEK, a session
//! object, died with the interrupted keyrite.

use super::super::operator::{Notice, Operator};
use super::super::pins::PinSource;
use super::super::quorum_cards::{combine_cards, Expect};
use super::super::rehearsal;
use super::super::{Opener, State};
use super::backup::{kek_label, so_pin, step_token};
use super::{failed, intent, write_artifact, Context, Performed};
use crate::evidence::backup::{RestoreRecord, RestoreUndone};
use crate::evidence::events::Record;
use crate::hsm::spki::key_hash;
use crate::hsm::KekUse;
use crate::script::backup::kek_split_id;
use crate::script::signing::normalize_hash;
use crate::script::{file_stem, RestoreConfig};
use crate::x509::{self, HsmKey};
use der::{DecodePem, Encode};
use sha2::{Digest, Sha256};

/// What the backup report pinned: (blob SHA-256, key hash, KEK commitments SHA-256). The script's
/// values, or in a rehearsal the --env folder's record of that backup when it has one.
fn pinned(
    cfg: &RestoreConfig,
    rehearsal_run: bool,
) -> Result<(String, String, Option<String>), String> {
    let split = kek_split_id(&cfg.backup_ceremony);
    let recorded = if rehearsal_run {
        rehearsal::recorded_backup(&cfg.backup_ceremony).map_err(|e| e.to_string())?
    } else {
        None
    };
    // A rehearsal's folder is the trusted source where it recorded the backup (as for existing
    // keys); otherwise the script's value, which must be a SHA-256.
    let pick = |script: &str, what: &str, rec: Option<&str>| {
        rec.map(str::to_string)
            .or_else(|| normalize_hash(script))
            .ok_or_else(|| {
                format!(
                    "[restore] {what} \"{script}\" is not a SHA-256 (64 hex digits): copy it from the backup \
                     report of ceremony \"{}\"",
                    cfg.backup_ceremony
                )
            })
    };
    let blob = pick(
        &cfg.blob_sha256,
        "blob_sha256",
        recorded.as_ref().map(|r| r.blob_sha256.as_str()),
    )?;
    let key = pick(
        &cfg.key_hash,
        "key_hash",
        recorded.as_ref().map(|r| r.key_hash.as_str()),
    )?;
    let commitments = if rehearsal_run {
        rehearsal::recorded_split(&split)
            .map_err(|e| e.to_string())?
            .map(|s| s.commitments_sha256)
    } else {
        None
    }
    .or_else(|| cfg.commitments_sha256.as_deref().and_then(normalize_hash));
    Ok((blob, key, commitments))
}

/// The blob and the certificate's SPKI, read and checked against the pins. Nothing is touched yet.
/// The blob, the certificate PEM and its SubjectPublicKeyInfo (DER).
type Inputs = (Vec<u8>, Vec<u8>, Vec<u8>);

/// `keyrite resume` reads the copies the interrupted run bound into the bundle (its script folder is
/// not known then).
fn inputs(
    state: &State,
    cfg: &RestoreConfig,
    copies: (&str, &str),
    blob_sha: &str,
    key_sha: &str,
) -> Result<Inputs, String> {
    let copied = state.bundle.path(copies.0).exists() && state.bundle.path(copies.1).exists();
    let path = |p: &str, copy: &str| match &state.script_dir {
        _ if copied => state.bundle.path(copy),
        Some(d) if std::path::Path::new(p).is_relative() => d.join(p),
        _ => std::path::PathBuf::from(p),
    };
    let blob_path = path(&cfg.blob, copies.0);
    let blob = std::fs::read(&blob_path)
        .map_err(|e| format!("cannot read the backup blob {}: {e}", blob_path.display()))?;
    let actual = hex::encode(Sha256::digest(&blob));
    if actual != blob_sha {
        return Err(format!(
            "the blob {} has SHA-256 {actual}, but the backup report says {blob_sha}: a wrong or tampered \
             blob is refused; nothing was done on the token — bring the blob named in the backup report",
            blob_path.display()
        ));
    }
    let cert_path = path(&cfg.certificate, copies.1);
    let pem = std::fs::read(&cert_path)
        .map_err(|e| format!("cannot read the certificate {}: {e}", cert_path.display()))?;
    let cert = x509_cert::Certificate::from_pem(&pem)
        .map_err(|e| format!("{} is not a PEM certificate: {e}", cert_path.display()))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    let hash = key_hash(&spki);
    if hash != key_sha {
        return Err(format!(
            "the certificate {} is for key {hash}, but the backup report's key hash is {key_sha}: it is \
             the certificate of another key; nothing was done on the token",
            cert_path.display()
        ));
    }
    Ok((blob, pem, spki))
}

/// Destroy every object the restore may have put on the target under `label` and the KEK, and read
/// back that none is left (logged as `restore_undone`).
fn undo(
    state: &mut State,
    ctx: &Context<'_>,
    label: &str,
    kek: &str,
    reason: &str,
) -> crate::error::Result<Result<(), String>> {
    intent(
        state,
        ctx,
        "undo_restore",
        format!(
            "destroy every key object labelled \"{label}\" and the KEK \"{kek}\" on the target"
        ),
    )?;
    let Some(hsm) = step_token(state, ctx) else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let result = hsm.destroy_labelled(label, false).and_then(|n| {
        let k = hsm.destroy_labelled(kek, true)?;
        let left = usize::from(hsm.label_exists(label)?);
        Ok((n + k, left, hsm.secret_key_count()?))
    });
    state.hsm_returned();
    let (destroyed, left, secrets) = match result {
        Ok(x) => x,
        Err(e) => {
            state.hsm_failed(&ctx.step.id, "undo_restore", &e)?;
            return Ok(Err(format!(
                "{e}; objects of the failed restore may be left on the target"
            )));
        }
    };
    state.record(
        Some(ctx.step.id.clone()),
        vec![],
        &Record::RestoreUndone(RestoreUndone {
            key: label.into(),
            reason: reason.into(),
            objects_destroyed: destroyed as u64,
            objects_left: left as u64,
            secret_keys_left: secrets as u64,
        }),
    )?;
    if left != 0 || secrets != 0 {
        return Ok(Err(format!(
            "objects are still on the target after the undo ({left} under \"{label}\", {secrets} secret keys); \
             have the security officer remove them"
        )));
    }
    Ok(Ok(()))
}

pub(super) fn restore(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
) -> Performed {
    let Some(cfg) = ctx.script.restore.as_ref() else {
        return Ok(Err(
            "a restore_key step needs a [restore] section in the script".into(),
        ));
    };
    let label = ctx.step.key.as_deref().unwrap_or(cfg.key.as_str());
    if state.restores_logged.contains(label) {
        return Ok(Ok(()));
    }
    let Some(spec) = ctx.script.key(label) else {
        return Ok(Err(format!("key {label} is not in the script's [[keys]]")));
    };
    let split = kek_split_id(&cfg.backup_ceremony);
    let kek = kek_label(&split);
    // `keyrite resume`: what the interrupted attempt left is removed first, on the record.
    if state.restore_undo.as_deref() == Some(label) {
        state.restore_undo = None;
        if let Err(why) = undo(
            state,
            ctx,
            label,
            &kek,
            "the restore was interrupted; it starts over",
        )? {
            return Ok(Err(why));
        }
    }
    let (blob_sha, key_sha, commitments) = match pinned(cfg, ctx.mode.rehearsal) {
        Ok(x) => x,
        Err(why) => return Ok(Err(why)),
    };
    let stem = file_stem(label);
    let blob_file = format!("artifacts/{stem}.restored-from.wrapped.bin");
    let cert_file = format!("artifacts/{stem}.original-certificate.pem");
    let copied = state.bundle.path(&blob_file).exists() && state.bundle.path(&cert_file).exists();
    let (blob, cert_pem, spki) =
        match inputs(state, cfg, (&blob_file, &cert_file), &blob_sha, &key_sha) {
            Ok(x) => x,
            Err(why) => return Ok(Err(why)),
        };
    if let Ok((alg, _)) = crate::hsm::spki::public_parts(&spki) {
        if alg != spec.algorithm {
            return Ok(Err(format!(
                "the certificate's key is {alg}, but [[keys]] \"{label}\" says {}; nothing was done",
                spec.algorithm
            )));
        }
    }
    let Some(hsm) = step_token(state, ctx) else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let token = hsm.identity().clone();
    match hsm.label_exists(label) {
        Ok(false) => {}
        Ok(true) => {
            return Ok(Err(format!(
                "token \"{}\" already holds an object labelled \"{label}\"; nothing was restored — restore into \
                 a token without that label",
                token.token_label
            )))
        }
        Err(e) => return failed(state, ctx, "unwrap_key", e),
    }
    let mechanism = match hsm.wrap_mechanism() {
        Ok(Some(m)) => m,
        Ok(None) => {
            return Ok(Err(format!(
                "token \"{}\" offers no CKM_AES_KEY_WRAP_PAD to unwrap the blob; nothing was done",
                token.token_label
            )))
        }
        Err(e) => return failed(state, ctx, "unwrap_key", e),
    };
    let so = match so_pin(state, ctx, pins) {
        Ok(p) => p,
        Err(why) => return Ok(Err(why)),
    };
    // The inputs go into the bundle, so `keyrite verify` can check them offline (once: a resumed
    // restore found them there).
    if !copied {
        write_artifact(state, ctx, &blob_file, &blob)?;
        write_artifact(state, ctx, &cert_file, &cert_pem)?;
    }
    operator.notice(Notice::Info {
        text: &format!(
            "restore of key {label}: {} custodians now present their cards to rebuild the key-encryption key",
            cfg.threshold
        ),
    });
    let exp = Expect::new(&split, commitments);
    let (secret, commitments) = match combine_cards(
        state,
        ctx,
        operator,
        pins,
        opener,
        exp,
        &cfg.cards,
        cfg.threshold,
    )? {
        Ok(x) => x,
        Err(why) => return Ok(Err(format!("{why}; nothing was restored"))),
    };
    let kek_bytes = match secret.kek(&split) {
        Ok(k) => k,
        Err(e) => return Ok(Err(e.to_string())),
    };
    drop(secret);
    intent(
        state,
        ctx,
        "import_kek",
        format!(
            "the security officer imports the KEK \"{kek}\" (session-only, CKA_TRUSTED, CKA_UNWRAP) into token \"{}\"",
            token.token_label
        ),
    )?;
    let Some(hsm) = step_token(state, ctx) else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let imported = hsm.import_trusted_kek(&kek, kek_bytes.as_slice(), &so, KekUse::Unwrap);
    drop((kek_bytes, so));
    state.hsm_returned();
    if let Err(e) = imported {
        return failed(state, ctx, "import_kek", e);
    }
    intent(
        state,
        ctx,
        "unwrap_key",
        format!("C_UnwrapKey of the blob ({blob_sha}) under \"{kek}\" into \"{label}\" (sensitive, non-extractable)"),
    )?;
    let Some(hsm) = step_token(state, ctx) else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let unwrapped = hsm.unwrap_key(&kek, &blob, label, spec.algorithm, mechanism);
    state.hsm_returned();
    let unwrapped = match unwrapped {
        Ok(u) => u,
        Err(e) => {
            state.hsm_failed(&ctx.step.id, "unwrap_key", &e)?;
            let why = format!("the blob does not unwrap under the rebuilt KEK ({e}): a tampered blob, or one made under another KEK");
            return Ok(undo(state, ctx, label, &kek, &why)?
                .and(Err(format!("{why}; nothing is left on the target"))));
        }
    };
    // The unwrapped key must be the backed-up key: it signs, the certificate's key verifies.
    let key = HsmKey::new(
        label,
        spec.algorithm,
        spec.algorithm.default_hash(),
        spki.clone(),
    );
    let message = format!(
        "keyrite restore proof: ceremony {}, step {}, backup {}",
        ctx.script.ceremony.id, ctx.step.id, cfg.backup_ceremony
    );
    let Some(hsm) = step_token(state, ctx) else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let signature = key.sign(hsm, message.as_bytes());
    let oid = key.signature_oid();
    let verified = signature.as_ref().map_err(|e| e.to_string()).and_then(|s| {
        x509::signer::verify_signature(&spki, &oid, message.as_bytes(), s)
            .map_err(|e| e.to_string())
    });
    if let Err(e) = verified {
        let why = format!(
            "the unwrapped key is not the key of the certificate (its signature does not verify: {e}): a blob for another key"
        );
        return Ok(undo(state, ctx, label, &kek, &why)?
            .and(Err(format!("{why}; nothing is left on the target"))));
    }
    intent(
        state,
        ctx,
        "create_public_key",
        format!("C_CreateObject of the public key \"{label}\" from the original certificate"),
    )?;
    let Some(hsm) = step_token(state, ctx) else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let created = hsm.create_public_key(label, &unwrapped.id_hex, &spki);
    state.hsm_returned();
    if let Err(e) = created {
        state.hsm_failed(&ctx.step.id, "create_public_key", &e)?;
        let why = format!("the public key object could not be made: {e}");
        return Ok(undo(state, ctx, label, &kek, &why)?.and(Err(why)));
    }
    intent(
        state,
        ctx,
        "destroy_kek",
        format!("C_DestroyObject of \"{kek}\", then no secret key may be left"),
    )?;
    let Some(hsm) = step_token(state, ctx) else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let done = hsm
        .destroy_labelled(&kek, true)
        .and_then(|_| hsm.secret_key_count())
        .and_then(|left| hsm.key_pair(label).map(|k| (left, k)));
    state.hsm_returned();
    let (left, info) = match done {
        Ok(x) => x,
        Err(e) => return failed(state, ctx, "destroy_kek", e),
    };
    let restored_hash = key_hash(&info.spki_der);
    let rec = RestoreRecord {
        key: label.into(),
        backup_ceremony: cfg.backup_ceremony.clone(),
        expected_key_hash: key_sha.clone(),
        key_hash: restored_hash.clone(),
        key_id: info.id_hex.clone(),
        algorithm: info.algorithm.to_string(),
        token_label: token.token_label.clone(),
        token_serial: token.serial.clone(),
        blob_file,
        blob_sha256: blob_sha,
        certificate_file: cert_file,
        mechanism: mechanism.name().into(),
        kek_commitments_sha256: commitments.sha256_hex(),
        attributes: unwrapped.attributes.clone(),
        proof_message: message,
        proof_signature_algorithm: x509::signer::algorithm_name(&oid),
        proof_signature: signature.map(hex::encode).unwrap_or_default(),
        proof_verified: true,
        secret_keys_left: left as u64,
    };
    state.record(Some(ctx.step.id.clone()), vec![], &Record::KeyRestored(rec))?;
    state.restores_logged.insert(label.into());
    state.keys.insert(label.into(), info);
    if left != 0 {
        return Ok(Err(format!(
            "{left} secret key object(s) are still on the target after the KEK was destroyed"
        )));
    }
    if restored_hash != key_sha {
        return Ok(Err(format!(
            "the restored key's hash {restored_hash} differs from the backup report's {key_sha}"
        )));
    }
    let a = &unwrapped.attributes;
    if a.sensitive != Some(true) || a.extractable != Some(false) {
        return Ok(Err(format!(
            "the restored key reads back CKA_SENSITIVE {:?}, CKA_EXTRACTABLE {:?}; do not use it",
            a.sensitive, a.extractable
        )));
    }
    Ok(Ok(()))
}

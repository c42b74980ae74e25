//! Issue 12, offline: every backup's blob is in the bundle with the SHA-256 the report gives, its
//! key is a key of this ceremony whose attributes allow only a trusted wrap, and no KEK was left;
//! every restore's blob and original certificate are in the bundle, the restored key's hash equals
//! the backup report's, and the proof signature verifies under the original certificate.

use super::{short, Verification};
use crate::evidence::backup::{BackupRecord, RestoreRecord};
use crate::evidence::report::Report;
use crate::evidence::safe_read::{BundleDir, FILE_LIMIT};
use crate::hsm::spki::key_hash;
use const_oid::db::rfc5912;
use der::{DecodePem, Encode};
use sha2::{Digest, Sha256};

pub(super) fn check_backups(v: &mut Verification, bundle: &BundleDir, report: &Report) {
    for b in &report.backups {
        check_backup(v, bundle, report, b);
    }
    for r in &report.restores {
        check_restore(v, bundle, r);
    }
}

/// The file's SHA-256, when the bundle has it.
fn file_sha256(bundle: &BundleDir, file: &str) -> Option<String> {
    bundle
        .read(file, FILE_LIMIT)
        .ok()
        .map(|bytes| hex::encode(Sha256::digest(bytes)))
}

fn check_backup(v: &mut Verification, bundle: &BundleDir, report: &Report, b: &BackupRecord) {
    let sha = file_sha256(bundle, &b.blob_file);
    v.check(
        sha.as_deref() == Some(b.blob_sha256.as_str()),
        &b.blob_file,
        format!(
            "wrapped key {} has the SHA-256 the backup records ({})",
            b.key,
            short(&b.blob_sha256)
        ),
        "the wrapped key is missing or its SHA-256 differs from the backup record",
    );
    let ours = report
        .keys
        .iter()
        .map(|k| (&k.label, &k.key_hash))
        .chain(report.existing_keys.iter().map(|k| (&k.label, &k.key_hash)))
        .any(|(l, h)| *l == b.key && *h == b.key_hash);
    v.check(
        ours,
        &b.blob_file,
        format!(
            "backed-up key {} is this ceremony's key {}",
            b.key,
            short(&b.key_hash)
        ),
        "the backed-up key's hash is not that of a key this ceremony generated or found",
    );
    v.check(
        b.attributes.prove_backup_generation() && b.secret_keys_left == 0,
        &b.blob_file,
        format!(
            "{} can leave its token only wrapped by a trusted key (CKA_WRAP_WITH_TRUSTED), stays sensitive, and no KEK was left",
            b.key
        ),
        "the backed-up key's attributes do not restrict it to a trusted wrap, or a secret key was left on the token",
    );
    let commitments = hex::decode(&b.kek_split.commitments)
        .map(|c| hex::encode(Sha256::digest(c)))
        .ok();
    v.check(
        commitments.as_deref() == Some(b.kek_split.commitments_sha256.as_str())
            && b.kek_split.cards.len() == usize::from(b.kek_split.total)
            && b.kek_split.threshold >= 2,
        &b.blob_file,
        format!(
            "KEK split {} of {}, commitments {}",
            b.kek_split.threshold,
            b.kek_split.total,
            short(&b.kek_split.commitments_sha256)
        ),
        "the KEK split's commitments, card count or threshold are inconsistent",
    );
}

fn oid_named(name: &str) -> Option<der::asn1::ObjectIdentifier> {
    [
        rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
        rfc5912::SHA_384_WITH_RSA_ENCRYPTION,
        rfc5912::ECDSA_WITH_SHA_256,
        rfc5912::ECDSA_WITH_SHA_384,
    ]
    .into_iter()
    .find(|oid| crate::x509::signer::algorithm_name(oid) == name)
}

fn check_restore(v: &mut Verification, bundle: &BundleDir, r: &RestoreRecord) {
    let sha = file_sha256(bundle, &r.blob_file);
    v.check(
        sha.as_deref() == Some(r.blob_sha256.as_str()),
        &r.blob_file,
        format!(
            "the restored blob has the backup report's SHA-256 ({})",
            short(&r.blob_sha256)
        ),
        "the restored blob is missing or its SHA-256 differs from the restore record",
    );
    let spki = bundle
        .read(&r.certificate_file, FILE_LIMIT)
        .ok()
        .and_then(|pem| x509_cert::Certificate::from_pem(&pem).ok())
        .and_then(|c| c.tbs_certificate().subject_public_key_info().to_der().ok());
    let Some(spki) = spki else {
        v.fail(
            &r.certificate_file,
            "the original certificate is missing or not PEM",
        );
        return;
    };
    let cert_hash = key_hash(&spki);
    v.check(
        cert_hash == r.expected_key_hash && r.key_hash == r.expected_key_hash,
        &r.certificate_file,
        format!(
            "restored key {} has the backup report's key hash {}, the original certificate's",
            r.key,
            short(&r.expected_key_hash)
        ),
        "the restored key's hash differs from the backup report's or from the original certificate's",
    );
    let verified = oid_named(&r.proof_signature_algorithm)
        .zip(hex::decode(&r.proof_signature).ok())
        .is_some_and(|(oid, sig)| {
            crate::x509::signer::verify_signature(&spki, &oid, r.proof_message.as_bytes(), &sig)
                .is_ok()
        });
    v.check(
        verified && r.proof_verified,
        &r.certificate_file,
        format!(
            "the restored key's proof signature verifies under the original certificate ({})",
            r.key
        ),
        "the restored key's proof signature does not verify under the original certificate",
    );
    v.check(
        r.attributes.sensitive == Some(true)
            && r.attributes.extractable == Some(false)
            && r.secret_keys_left == 0,
        &r.certificate_file,
        format!("restored key {} is sensitive and non-extractable; no KEK was left", r.key),
        "the restored key is not sensitive and non-extractable, or a secret key was left on the token",
    );
}

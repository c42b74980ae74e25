//! Signing with keys from earlier ceremonies (issue 11): each existing key's public key file hashes
//! to the hash the report records for it.

use super::{short, Verification};
use crate::evidence::report::Report;
use crate::evidence::safe_read::BundleDir;
use crate::hsm::spki::key_hash;

/// The SPKI DER of a PEM public key artifact, or a failure recorded against the file.
pub(super) fn read_public_key(
    v: &mut Verification,
    bundle: &BundleDir,
    file: &str,
) -> Option<Vec<u8>> {
    let read = super::artifacts::read_artifact(v, bundle, file)?;
    let der = read
        .ok()
        .and_then(|pem| String::from_utf8(pem).ok())
        .and_then(|pem| {
            der::Document::from_pem(&pem)
                .ok()
                .map(|(_, doc)| doc.as_bytes().to_vec())
        });
    if der.is_none() {
        v.fail(file, "not a PEM public key");
    }
    der
}

pub(super) fn check_existing_keys(v: &mut Verification, bundle: &BundleDir, report: &Report) {
    for key in &report.existing_keys {
        let file = &key.public_key_file;
        let Some(der) = read_public_key(v, bundle, file) else {
            continue;
        };
        let hash = key_hash(&der);
        v.check(
            hash == key.key_hash,
            file,
            format!(
                "public key of existing key {} hashes to the recorded key hash {}",
                key.key,
                short(&hash)
            ),
            format!(
                "public key hashes to {hash}, the report says {}",
                key.key_hash
            ),
        );
    }
}

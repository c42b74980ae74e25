//! The files the report (or, for an unfinished run, the log) lists in artifacts/: hashes, public
//! keys and certificates.

use super::{sha256_hex, short, Verification};
use crate::evidence::bundle::{ARTIFACTS_DIR, REPORT_FILE};
use crate::evidence::report::{ArtifactRecord, Report};
use crate::evidence::safe_read::{BundleDir, Kind, ReadError, FILE_LIMIT};
use crate::hsm::spki::key_hash;
use crate::x509::signer::verify_self_signed;
use der::{DecodePem, Encode};
use std::collections::BTreeMap;
use x509_cert::Certificate;

/// An artifact path from the report must name a plain file directly inside artifacts/.
fn safe_artifact_path(path: &str) -> bool {
    path.strip_prefix("artifacts/").is_some_and(|name| {
        !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    })
}

/// Read a file the report names, refusing (and failing) any path outside artifacts/.
pub(super) fn read_artifact(
    v: &mut Verification,
    bundle: &BundleDir,
    path: &str,
) -> Option<Result<Vec<u8>, ReadError>> {
    if !safe_artifact_path(path) {
        v.fail(
            REPORT_FILE,
            format!("names the file {path:?}, which is not a plain file inside artifacts/"),
        );
        return None;
    }
    Some(bundle.read(path, FILE_LIMIT))
}

/// Each listed file has its recorded hash and size; every file in artifacts/ is listed. `listed`
/// maps a path to (SHA-256, size); `source` says who lists them, for the messages.
fn check_listed(
    v: &mut Verification,
    bundle: &BundleDir,
    listed: &BTreeMap<String, (String, u64)>,
    source: &str,
    complete: bool,
) {
    for (path, (sha256, size)) in listed {
        match read_artifact(v, bundle, path) {
            Some(Ok(bytes)) => {
                let actual = sha256_hex(&bytes);
                v.check(
                    actual == *sha256 && bytes.len() as u64 == *size,
                    path,
                    format!("SHA-256 {} and size {size} match the {source}", short(&actual)),
                    format!(
                        "SHA-256 {actual} ({} bytes) differs from {sha256} ({size} bytes) in the {source}",
                        bytes.len(),
                    ),
                );
            }
            Some(Err(ReadError::Missing)) => {
                v.fail(path, format!("listed in the {source} but missing"))
            }
            Some(Err(e)) => v.fail(path, e.to_string()),
            None => {}
        }
    }
    let entries = match bundle.list(ARTIFACTS_DIR) {
        Ok(entries) => entries,
        Err(ReadError::Missing) => return,
        Err(e) => {
            v.fail(ARTIFACTS_DIR, e.to_string());
            return;
        }
    };
    for (name, kind) in entries {
        let rel = format!("{ARTIFACTS_DIR}/{name}");
        if listed.contains_key(&rel) {
            continue;
        }
        if kind != Kind::File {
            v.fail(&rel, super::progress::not_a_file(kind).to_string());
        } else if complete {
            v.fail(
                &rel,
                "not listed in the report: it was not produced by this ceremony",
            );
        } else {
            v.warn(
                &rel,
                "not recorded in the log, which ends early: written just before the run stopped, \
                 or added since; not checked",
            );
        }
    }
}

/// A finished run: the files the report lists.
pub(super) fn check_reported(v: &mut Verification, bundle: &BundleDir, report: &Report) {
    let listed = report
        .artifacts
        .iter()
        .map(|a| (a.path.clone(), (a.sha256.clone(), a.size)))
        .collect();
    check_listed(v, bundle, &listed, "report", true);
    check_keys_and_certificates(v, bundle, report);
    super::crls::check_crls(v, bundle, report);
    super::backup::check_backups(v, bundle, report);
    super::issued::check_existing_keys(v, bundle, report);
    super::issued::check_ca_certificates(v, bundle, report);
}

/// An unfinished run: the files the log's `artifact_written` entries record so far.
pub(super) fn check_logged(v: &mut Verification, bundle: &BundleDir, logged: &[ArtifactRecord]) {
    let listed = logged
        .iter()
        .map(|a| (a.path.clone(), (a.sha256.clone(), a.size)))
        .collect();
    check_listed(v, bundle, &listed, "log", false);
}

fn check_keys_and_certificates(v: &mut Verification, bundle: &BundleDir, report: &Report) {
    for key in &report.keys {
        let file = &key.public_key_file;
        let Some(read) = read_artifact(v, bundle, file) else {
            continue;
        };
        let spki = read
            .ok()
            .and_then(|pem| String::from_utf8(pem).ok())
            .and_then(|pem| {
                der::Document::from_pem(&pem)
                    .ok()
                    .map(|(_, doc)| doc.as_bytes().to_vec())
            });
        match spki {
            Some(der) => {
                let hash = key_hash(&der);
                v.check(
                    hash == key.key_hash,
                    file,
                    format!(
                        "public key of {} hashes to the recorded key hash {}",
                        key.label,
                        short(&hash)
                    ),
                    format!(
                        "public key hashes to {hash}, the report says {}",
                        key.key_hash
                    ),
                );
            }
            None => v.fail(file, "not a PEM public key"),
        }
        v.check(
            key.generated_in_hsm,
            REPORT_FILE,
            format!(
                "key {} was generated in the HSM and is non-extractable (attributes read back)",
                key.label
            ),
            format!(
                "key {} lacks proof of in-HSM generation: {:?}",
                key.label, key.attributes
            ),
        );
    }
    for cert in &report.certificates {
        let file = &cert.file;
        let Some(read) = read_artifact(v, bundle, file) else {
            continue;
        };
        let parsed = read.ok().and_then(|pem| Certificate::from_pem(&pem).ok());
        let Some(parsed) = parsed else {
            v.fail(file, "not a PEM certificate");
            continue;
        };
        let der = parsed.to_der().unwrap_or_default();
        let fingerprint = sha256_hex(&der);
        v.check(
            fingerprint == cert.sha256_fingerprint,
            file,
            format!(
                "SHA-256 fingerprint {} matches the report",
                short(&fingerprint)
            ),
            format!(
                "fingerprint {fingerprint} differs from {} in the report",
                cert.sha256_fingerprint
            ),
        );
        let spki = parsed
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap_or_default();
        let hash = key_hash(&spki);
        let recorded = report
            .keys
            .iter()
            .find(|k| k.label == cert.key)
            .map(|k| k.key_hash.as_str());
        v.check(
            Some(hash.as_str()) == recorded,
            file,
            format!(
                "certificate key hashes to key {}'s recorded hash {}",
                cert.key,
                short(&hash)
            ),
            format!(
                "certificate key hashes to {hash}; key {} was recorded as {recorded:?}",
                cert.key
            ),
        );
        // The issuer and extensions the report shows must be the certificate's own.
        let (issuer, extensions) = crate::x509::extensions::issuer_and_extensions(&parsed);
        if !cert.issuer.is_empty() || !cert.extensions.is_empty() {
            v.check(
                issuer == cert.issuer && extensions == cert.extensions,
                file,
                format!(
                    "issuer and {} extensions match the report",
                    extensions.len()
                ),
                "the certificate's issuer or extensions differ from the report",
            );
        }
        match verify_self_signed(&parsed) {
            Ok(()) => v.pass(file, "self-signature verifies"),
            Err(e) => v.fail(file, format!("self-signature does not verify: {e}")),
        }
    }
}

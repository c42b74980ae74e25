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

/// A PEM certificate artifact, parsed, or a failure recorded against the file.
fn read_certificate(
    v: &mut Verification,
    bundle: &BundleDir,
    file: &str,
) -> Option<(x509_cert::Certificate, Vec<u8>)> {
    use der::{DecodePem, Encode};
    let read = super::artifacts::read_artifact(v, bundle, file)?;
    let cert = read
        .ok()
        .and_then(|pem| x509_cert::Certificate::from_pem(&pem).ok());
    let Some(cert) = cert else {
        v.fail(file, "not a PEM certificate");
        return None;
    };
    let der = cert.to_der().unwrap_or_default();
    Some((cert, der))
}

/// Certificates issued to other CAs: the file is the one logged, it certifies the input's key, its
/// TBS is the one the room was shown, and it verifies with the issuer key and chains to the issuer
/// certificate kept in the chain file.
pub(super) fn check_ca_certificates(v: &mut Verification, bundle: &BundleDir, report: &Report) {
    use der::{DecodePem, Encode};
    for c in &report.ca_certificates {
        let file = &c.file;
        let Some((cert, der)) = read_certificate(v, bundle, file) else {
            continue;
        };
        let fingerprint = super::sha256_hex(&der);
        let tbs = cert.tbs_certificate().to_der().unwrap_or_default();
        let spki = cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap_or_default();
        v.check(
            fingerprint == c.sha256_fingerprint
                && super::sha256_hex(&tbs) == c.tbs_sha256
                && key_hash(&spki) == c.subject_key_hash,
            file,
            format!(
                "{} certificate {}: fingerprint {}, the TBS shown to the room, subject key {}",
                c.issued_as,
                c.name,
                short(&fingerprint),
                short(&c.subject_key_hash)
            ),
            "the certificate's fingerprint, TBS or key differs from the report",
        );
        // The input's key is the certificate's key (a request's, or the other CA's).
        if let Some(Ok(input)) = super::artifacts::read_artifact(v, bundle, &c.input_file) {
            let input_key = x509_cert::request::CertReq::from_pem(&input)
                .ok()
                .and_then(|r| r.info.public_key.to_der().ok())
                .or_else(|| {
                    x509_cert::Certificate::from_pem(&input)
                        .ok()
                        .and_then(|x| x.tbs_certificate().subject_public_key_info().to_der().ok())
                })
                .or_else(|| {
                    der::Document::from_pem(std::str::from_utf8(&input).unwrap_or_default())
                        .ok()
                        .map(|(_, d)| d.as_bytes().to_vec())
                });
            v.check(
                input_key.as_deref() == Some(spki.as_slice()),
                &c.input_file,
                format!("the {} carries the certified key", c.input_kind),
                format!("the {}'s key is not the certificate's key", c.input_kind),
            );
        }
        // The issuer key (from this ceremony's records) signed it; the chain ends in its certificate.
        let issuer_pub = report
            .existing_keys
            .iter()
            .find(|k| k.key == c.issuer_key)
            .map(|k| k.public_key_file.clone())
            .or_else(|| {
                report
                    .keys
                    .iter()
                    .find(|k| k.label == c.issuer_key)
                    .map(|k| k.public_key_file.clone())
            });
        let issuer_spki = issuer_pub.and_then(|f| read_public_key(v, bundle, &f));
        let signed = issuer_spki.as_ref().is_some_and(|key| {
            key_hash(key) == c.issuer_key_hash
                && cert.signature().as_bytes().is_some_and(|sig| {
                    crate::x509::signer::verify_signature(
                        key,
                        &cert.signature_algorithm().oid,
                        &tbs,
                        sig,
                    )
                    .is_ok()
                })
        });
        v.check(
            signed,
            file,
            format!(
                "signature verifies with issuer key {} ({})",
                c.issuer_key,
                short(&c.issuer_key_hash)
            ),
            format!(
                "the signature does not verify with issuer key {} as recorded",
                c.issuer_key
            ),
        );
        let chain = super::artifacts::read_artifact(v, bundle, &c.chain_file)
            .and_then(|r| r.ok())
            .and_then(|pem| x509_cert::Certificate::load_pem_chain(&pem).ok())
            .unwrap_or_default();
        let chained = match chain.as_slice() {
            [first, issuer] => {
                let issuer_der = issuer.to_der().unwrap_or_default();
                let issuer_key = issuer
                    .tbs_certificate()
                    .subject_public_key_info()
                    .to_der()
                    .unwrap_or_default();
                first.to_der().ok().as_deref() == Some(der.as_slice())
                    && super::sha256_hex(&issuer_der) == c.issuer_certificate_sha256
                    && key_hash(&issuer_key) == c.issuer_key_hash
                    && crate::x509::issued::verify_issued(&cert, issuer).is_ok()
            }
            _ => false,
        };
        v.check(
            chained,
            &c.chain_file,
            format!(
                "chain: {} then its issuer's certificate, which certifies the issuer key",
                c.name
            ),
            "the chain file is not the certificate and its issuer's certificate, or they do not chain",
        );
    }
}

//! Built-in lints on the to-be-signed certificate. They run before anything reaches the HSM, so a
//! malformed root is never signed. The external pkilint run in CI checks the same profile independently.

use super::signer::HsmKey;
use crate::script::CertificateProfile;
use const_oid::db::rfc4519::{COMMON_NAME, COUNTRY_NAME, ORGANIZATION_NAME};
use const_oid::db::rfc5280::ID_CE_EXT_KEY_USAGE;
use der::{Decode, Encode, Tag, Tagged};
use spki::DynSignatureAlgorithmIdentifier;
use std::collections::BTreeSet;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, SubjectKeyIdentifier,
};

/// Returns every finding; an empty list means the TBS may be signed.
pub fn lint_root_tbs(
    tbs_der: &[u8],
    profile: &CertificateProfile,
    key: &HsmKey,
) -> Result<(), Vec<String>> {
    let tbs = TbsCertificate::from_der(tbs_der)
        .map_err(|e| vec![format!("the TBS does not decode: {e}")])?;
    let mut findings = Vec::new();
    let mut check = |ok: bool, finding: &str| {
        if !ok {
            findings.push(finding.to_string());
        }
    };

    check(tbs.version() == Version::V3, "version is not v3");
    let serial = tbs.serial_number().as_bytes();
    check(
        !serial.is_empty() && serial.len() <= 20,
        "serial must be 1 to 20 bytes",
    );
    check(
        serial.first().is_some_and(|b| b & 0x80 == 0),
        "serial must be positive",
    );
    check(serial.iter().any(|b| *b != 0), "serial must not be zero");
    check(
        serial.len() >= 9,
        "serial must carry at least 64 random bits",
    );

    check(
        tbs.issuer() == tbs.subject(),
        "a root's issuer must equal its subject",
    );
    let order: Vec<_> = tbs
        .subject()
        .iter_rdn()
        .flat_map(|rdn| rdn.iter().map(|atv| atv.oid))
        .collect();
    let expected: Vec<_> = profile
        .subject
        .attributes()
        .iter()
        .map(|(short, _)| super::profile::attribute_oid(short))
        .collect();
    check(
        order == expected
            && order.first() == Some(&COUNTRY_NAME)
            && order.ends_with(&[ORGANIZATION_NAME, COMMON_NAME])
            && tbs.subject().iter_rdn().all(|r| r.len() == 1),
        "subject must be C, [ST, L, postalCode, street,] O, CN in that order, one attribute each",
    );
    let country_tag = tbs
        .subject()
        .iter()
        .find(|a| a.oid == COUNTRY_NAME)
        .map(|a| a.value.tag());
    check(
        country_tag == Some(Tag::PrintableString),
        "countryName must be a PrintableString",
    );
    check(
        tbs.subject()
            .country()
            .ok()
            .flatten()
            .is_some_and(|c| c.as_str() == profile.subject.country),
        "countryName differs from the profile",
    );

    let subject_text = |value: Option<x509_cert::ext::pkix::name::DirectoryString>| {
        value.map(|v| v.value().into_owned())
    };
    check(
        subject_text(tbs.subject().organization().ok().flatten()).as_deref()
            == Some(profile.subject.organization.as_str()),
        "organizationName differs from the profile",
    );
    check(
        subject_text(tbs.subject().common_name().ok().flatten()).as_deref()
            == Some(profile.subject.common_name.as_str()),
        "commonName differs from the profile",
    );

    let validity = tbs.validity();
    check(
        validity.not_before.to_unix_duration() < validity.not_after.to_unix_duration(),
        "notBefore must precede notAfter",
    );

    let spki = tbs.subject_public_key_info().to_der().unwrap_or_default();
    check(
        spki == key.as_ref().0,
        "the certificate's public key is not the HSM key's public key",
    );
    // The whole AlgorithmIdentifier: NULL parameters for RSA, absent for ECDSA and ML-DSA (RFC 9881).
    check(
        key.signature_algorithm_identifier().ok().as_ref() == Some(tbs.signature()),
        "the TBS signature algorithm (OID and parameters) does not match the key",
    );

    let exts = tbs.extensions().map(|e| e.as_slice()).unwrap_or_default();
    let mut seen = BTreeSet::new();
    check(
        exts.iter().all(|e| seen.insert(e.extn_id)),
        "an extension appears twice",
    );
    check(
        !exts.iter().any(|e| e.extn_id == ID_CE_EXT_KEY_USAGE),
        "a root must not carry extKeyUsage",
    );

    ca_extensions(
        &tbs,
        profile.extensions.path_len,
        profile.extensions.digital_signature,
        "a root",
        &mut check,
    );
    let ski = match tbs.get_extension::<SubjectKeyIdentifier>() {
        Ok(Some((critical, ski))) => {
            check(!critical, "subjectKeyIdentifier must not be critical");
            Some(ski.0)
        }
        _ => {
            check(false, "subjectKeyIdentifier is missing");
            None
        }
    };
    match tbs.get_extension::<AuthorityKeyIdentifier>() {
        Ok(Some((critical, aki))) => {
            check(!critical, "authorityKeyIdentifier must not be critical");
            check(
                aki.key_identifier.is_some() && aki.key_identifier == ski,
                "AKI keyIdentifier must equal the SKI",
            );
            check(
                aki.authority_cert_issuer.is_none() && aki.authority_cert_serial_number.is_none(),
                "AKI of a root must carry only the keyIdentifier",
            );
        }
        _ => check(false, "authorityKeyIdentifier is missing"),
    }
    if findings.is_empty() {
        Ok(())
    } else {
        Err(findings)
    }
}

/// basicConstraints and keyUsage of any CA certificate, root or issued: both critical, CA:TRUE,
/// the profile's pathLen, keyCertSign and cRLSign, and no encipherment uses.
pub(super) fn ca_extensions(
    tbs: &TbsCertificate,
    path_len: Option<u8>,
    digital_signature: bool,
    who: &str,
    check: &mut impl FnMut(bool, &str),
) {
    match tbs.get_extension::<BasicConstraints>() {
        Ok(Some((critical, bc))) => {
            check(critical, "basicConstraints must be critical");
            check(bc.ca, "basicConstraints must say CA:TRUE");
            check(
                bc.path_len_constraint == path_len,
                "pathLenConstraint differs from the profile",
            );
        }
        _ => check(false, "basicConstraints is missing"),
    }
    match tbs.get_extension::<KeyUsage>() {
        Ok(Some((critical, ku))) => {
            check(critical, "keyUsage must be critical");
            check(
                ku.key_cert_sign() && ku.crl_sign(),
                "keyUsage must include keyCertSign and cRLSign",
            );
            check(
                ku.digital_signature() == digital_signature,
                "digitalSignature in keyUsage differs from the profile",
            );
            check(
                !(ku.key_encipherment()
                    || ku.data_encipherment()
                    || ku.key_agreement()
                    || ku.non_repudiation()),
                &format!("keyUsage of {who} must not allow encipherment, key agreement or non-repudiation"),
            );
        }
        _ => check(false, "keyUsage is missing"),
    }
}

//! Detached CMS SignedData (RFC 5652) over a report file, signed by a personal card, and its check.
//!
//! Shape (what `openssl cms -verify -binary -inform DER` accepts): ContentInfo(id-signedData) holding
//! SignedData v1 with no eContent (detached, id-data), the signer's certificate, and one SignerInfo
//! v1 (issuerAndSerialNumber) whose signed attributes are content-type (id-data), signing-time and
//! message-digest (SHA-256 or SHA-384 of the file, as the card key's hash). The signature is over the
//! DER of the signed attributes as a SET OF.

use super::signer::{verify_signature, HsmKey};
use super::CertError;
use crate::hsm::Hsm;
use crate::script::HashAlgorithm;
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::db::rfc5911::{
    ID_CONTENT_TYPE, ID_DATA, ID_MESSAGE_DIGEST, ID_SIGNED_DATA, ID_SIGNING_TIME,
};
use const_oid::db::rfc5912::{ID_SHA_256, ID_SHA_384};
use der::asn1::{Any, ObjectIdentifier, OctetString, SetOfVec};
use der::{Decode, Encode};
use sha2::{Digest, Sha256, Sha384};
use spki::{AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier};
use std::time::SystemTime;
use x509_cert::attr::Attribute;
use x509_cert::time::Time;
use x509_cert::Certificate;

fn attribute(oid: ObjectIdentifier, value: Any) -> der::Result<Attribute> {
    let mut values = SetOfVec::new();
    values.insert(value)?;
    Ok(Attribute { oid, values })
}

fn digest(hash: HashAlgorithm, content: &[u8]) -> (ObjectIdentifier, Vec<u8>) {
    match hash {
        HashAlgorithm::Sha256 => (ID_SHA_256, Sha256::digest(content).to_vec()),
        HashAlgorithm::Sha384 => (ID_SHA_384, Sha384::digest(content).to_vec()),
    }
}

/// Sign `content` with the card key `key` (whose certificate is `cert_der`); returns the DER
/// ContentInfo to write as a `.p7s` file.
pub fn sign_detached(
    hsm: &mut dyn Hsm,
    key: &HsmKey,
    cert_der: &[u8],
    content: &[u8],
    signing_time: SystemTime,
) -> Result<Vec<u8>, CertError> {
    let build = |e: &dyn std::fmt::Display| CertError::Build(e.to_string());
    let cert = Certificate::from_der(cert_der).map_err(|e| build(&e))?;
    let (digest_oid, md) = digest(key.hash, content);
    let digest_alg = AlgorithmIdentifierOwned {
        oid: digest_oid,
        parameters: None,
    };
    let mut attrs = SetOfVec::new();
    let time = Time::try_from(signing_time).map_err(|e| build(&e))?;
    for attr in [
        attribute(
            ID_CONTENT_TYPE,
            Any::encode_from(&ID_DATA).map_err(|e| build(&e))?,
        ),
        attribute(
            ID_SIGNING_TIME,
            Any::encode_from(&time).map_err(|e| build(&e))?,
        ),
        attribute(
            ID_MESSAGE_DIGEST,
            Any::encode_from(&OctetString::new(md).map_err(|e| build(&e))?)
                .map_err(|e| build(&e))?,
        ),
    ] {
        attrs
            .insert(attr.map_err(|e| build(&e))?)
            .map_err(|e| build(&e))?;
    }
    let to_sign = attrs.to_der().map_err(|e| build(&e))?;
    let signature = key.sign(hsm, &to_sign)?;
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: cert.tbs_certificate().issuer().clone(),
            serial_number: cert.tbs_certificate().serial_number().clone(),
        }),
        digest_alg: digest_alg.clone(),
        signed_attrs: Some(attrs),
        signature_algorithm: key
            .signature_algorithm_identifier()
            .map_err(|e| build(&e))?,
        signature: OctetString::new(signature).map_err(|e| build(&e))?,
        unsigned_attrs: None,
    };
    let mut digests = SetOfVec::new();
    digests.insert(digest_alg).map_err(|e| build(&e))?;
    let mut certs = SetOfVec::new();
    certs
        .insert(CertificateChoices::Certificate(cert))
        .map_err(|e| build(&e))?;
    let mut infos = SetOfVec::new();
    infos.insert(signer_info).map_err(|e| build(&e))?;
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: digests,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(certs)),
        crls: None,
        signer_infos: SignerInfos(infos),
    };
    ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed).map_err(|e| build(&e))?,
    }
    .to_der()
    .map_err(|e| build(&e))
}

/// Check a detached signature over `content`: one signer, its certificate included, content-type
/// id-data, the message digest of `content`, and the signature over the signed attributes. Returns the
/// signer's certificate (the caller checks whose it is and who issued it).
pub fn verify_detached(p7s: &[u8], content: &[u8]) -> Result<Certificate, String> {
    let ci = ContentInfo::from_der(p7s).map_err(|e| format!("not a DER CMS ContentInfo: {e}"))?;
    if ci.content_type != ID_SIGNED_DATA {
        return Err(format!(
            "content type {} is not signed-data",
            ci.content_type
        ));
    }
    let sd: SignedData = ci
        .content
        .decode_as()
        .map_err(|e| format!("SignedData does not parse: {e}"))?;
    // As strict as `openssl cms -verify`, and stricter where a header is outside the signature: the
    // shape `sign_detached` writes, and nothing else.
    if sd.version != CmsVersion::V1 {
        return Err(format!(
            "SignedData version {:?}, expected 1 (a detached id-data signature by issuer and serial)",
            sd.version
        ));
    }
    if sd.encap_content_info.econtent_type != ID_DATA {
        return Err(format!(
            "eContentType {} is not id-data",
            sd.encap_content_info.econtent_type
        ));
    }
    if sd.encap_content_info.econtent.is_some() {
        return Err("the signature is not detached: it carries its own content".into());
    }
    let [si] = sd.signer_infos.0.as_slice() else {
        return Err(format!(
            "{} signers instead of one",
            sd.signer_infos.0.len()
        ));
    };
    if si.version != CmsVersion::V1 {
        return Err(format!("SignerInfo version {:?}, expected 1", si.version));
    }
    if sd.digest_algorithms.as_slice() != [si.digest_alg.clone()] {
        let listed: Vec<String> = sd
            .digest_algorithms
            .iter()
            .map(|a| a.oid.to_string())
            .collect();
        return Err(format!(
            "the digestAlgorithms set [{}] is not exactly the signer's digest algorithm {}",
            listed.join(", "),
            si.digest_alg.oid
        ));
    }
    let SignerIdentifier::IssuerAndSerialNumber(ias) = &si.sid else {
        return Err("the signer is not named by issuer and serial number".into());
    };
    let cert = sd
        .certificates
        .iter()
        .flat_map(|c| c.0.iter())
        .find_map(|c| match c {
            CertificateChoices::Certificate(c)
                if c.tbs_certificate().issuer() == &ias.issuer
                    && c.tbs_certificate().serial_number() == &ias.serial_number =>
            {
                Some(c.clone())
            }
            _ => None,
        })
        .ok_or("the signer's certificate is not included")?;
    let hash = match si.digest_alg.oid {
        ID_SHA_256 => HashAlgorithm::Sha256,
        ID_SHA_384 => HashAlgorithm::Sha384,
        other => return Err(format!("unsupported digest algorithm {other}")),
    };
    if si.digest_alg.parameters.is_some() {
        return Err("the digest algorithm carries parameters; SHA-2 takes none".into());
    }
    let attrs = si
        .signed_attrs
        .as_ref()
        .ok_or("no signed attributes (content-type and message-digest are required)")?;
    let value_of = |oid: ObjectIdentifier| {
        attrs
            .iter()
            .find(|a| a.oid == oid)
            .and_then(|a| a.values.get(0).cloned())
    };
    let ct: ObjectIdentifier = value_of(ID_CONTENT_TYPE)
        .ok_or("no content-type attribute")?
        .decode_as()
        .map_err(|e| format!("content-type attribute: {e}"))?;
    if ct != ID_DATA {
        return Err(format!("content-type attribute is {ct}, not id-data"));
    }
    let md: OctetString = value_of(ID_MESSAGE_DIGEST)
        .ok_or("no message-digest attribute")?
        .decode_as()
        .map_err(|e| format!("message-digest attribute: {e}"))?;
    if md.as_bytes() != digest(hash, content).1.as_slice() {
        return Err(
            "the message digest does not match the file: the file or the signature was changed"
                .into(),
        );
    }
    let signed = attrs.to_der().map_err(|e| e.to_string())?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    verify_signature(
        &spki,
        &si.signature_algorithm.oid,
        &signed,
        si.signature.as_bytes(),
    )
    .map_err(|e| format!("the signature does not verify with the included certificate: {e}"))?;
    Ok(cert)
}

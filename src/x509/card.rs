//! Rehearsal personal cards: a throw-away "participants CA" and the card certificates it issues, and
//! the chain check `keyrite verify` applies to every signer certificate.
//!
//! The CA's key lives in a SoftHSM token of the rehearsal folder, never in a file. Its subject says
//! plainly that it is for rehearsals only.

use super::{signer, CertError, HsmKey};
use crate::hsm::Hsm;
use const_oid::db::rfc4519::{COMMON_NAME, ORGANIZATION_NAME};
use der::asn1::{Any, BitString, Utf8StringRef};
use der::{Decode, Encode};
use spki::SubjectPublicKeyInfoRef;
use std::time::{Duration, SystemTime};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

pub const PARTICIPANTS_CA_CN: &str = "keyrite REHEARSAL participants CA - not for production";
pub const REHEARSAL_ORG: &str = "keyrite REHEARSAL - throw-away";

/// O and CN as UTF8Strings.
pub fn name(organization: &str, common_name: &str) -> der::Result<Name> {
    let mut rdns = RdnSequence::default();
    for (oid, value) in [
        (ORGANIZATION_NAME, organization),
        (COMMON_NAME, common_name),
    ] {
        let mut rdn = RelativeDistinguishedName::default();
        rdn.insert(AttributeTypeAndValue {
            oid,
            value: Any::from(Utf8StringRef::new(value)?),
        })?;
        rdns.push(rdn);
    }
    Name::from_der(&rdns.to_der()?)
}

struct Profile {
    subject: Name,
    issuer: Option<Name>,
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, subject: &Name) -> Name {
        self.issuer.clone().unwrap_or_else(|| subject.clone())
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let ca = self.issuer.is_none();
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        let aki_id = SubjectKeyIdentifier::try_from(issuer_spk)?;
        let mut extensions: Vec<Extension> = Vec::new();
        let bc = BasicConstraints {
            ca,
            path_len_constraint: ca.then_some(0),
        };
        extensions.push(bc.to_extension(tbs.subject(), &extensions)?);
        let usage = if ca {
            KeyUsages::KeyCertSign | KeyUsages::CRLSign
        } else {
            KeyUsages::DigitalSignature | KeyUsages::NonRepudiation
        };
        extensions.push(KeyUsage(usage).to_extension(tbs.subject(), &extensions)?);
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(aki_id.0),
            ..Default::default()
        };
        extensions.push(ski.to_extension(tbs.subject(), &extensions)?);
        extensions.push(aki.to_extension(tbs.subject(), &extensions)?);
        Ok(extensions)
    }
}

/// What a new certificate says about its subject.
pub struct Subject<'a> {
    pub name: Name,
    /// DER SubjectPublicKeyInfo; ignored for the self-signed CA certificate.
    pub spki: &'a [u8],
    pub serial: &'a [u8],
    pub not_before: SystemTime,
    pub days: u64,
}

/// Issue a certificate signed in `hsm` by `issuer_key`. `issuer` None: self-signed CA certificate of
/// `issuer_key` itself; else a card certificate for `subject.spki` issued by that CA certificate.
pub fn issue(
    hsm: &mut dyn Hsm,
    issuer_key: &HsmKey,
    issuer: Option<&Certificate>,
    subject: Subject<'_>,
) -> Result<Vec<u8>, CertError> {
    let Subject {
        name: subject,
        spki: subject_spki,
        serial,
        not_before,
        days,
    } = subject;
    let build = |e: &dyn std::fmt::Display| CertError::Build(e.to_string());
    let validity = Validity::new(
        Time::try_from(not_before).map_err(|e| build(&e))?,
        Time::try_from(not_before + Duration::from_secs(days * 86_400)).map_err(|e| build(&e))?,
    );
    let serial = SerialNumber::new(serial).map_err(|e| build(&e))?;
    let (profile, spki) = match issuer {
        None => (
            Profile {
                subject,
                issuer: None,
            },
            issuer_key.spki()?,
        ),
        Some(ca) => (
            Profile {
                subject,
                issuer: Some(ca.tbs_certificate().subject().clone()),
            },
            spki::SubjectPublicKeyInfoOwned::from_der(subject_spki).map_err(|e| build(&e))?,
        ),
    };
    let mut builder =
        CertificateBuilder::new(profile, serial, validity, spki).map_err(|e| build(&e))?;
    let tbs_der = builder.finalize(issuer_key).map_err(|e| build(&e))?;
    let signature = issuer_key.sign(hsm, &tbs_der)?;
    let bits = BitString::from_bytes(&signature).map_err(|e| build(&e))?;
    let cert = builder.assemble(bits, issuer_key).map_err(|e| build(&e))?;
    cert.to_der().map_err(|e| build(&e))
}

/// Check that `cert` was issued by `ca`: issuer name equals the CA's subject, and the CA's key
/// verifies the signature. Validity periods are not checked (a report is verified years later).
pub fn check_issued_by(cert: &Certificate, ca: &Certificate) -> Result<(), String> {
    let tbs = cert.tbs_certificate();
    if tbs.issuer() != ca.tbs_certificate().subject() {
        return Err(format!(
            "issued by \"{}\", not by the signers CA \"{}\"",
            tbs.issuer(),
            ca.tbs_certificate().subject()
        ));
    }
    let tbs_der = tbs.to_der().map_err(|e| e.to_string())?;
    let ca_spki = ca
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    let sig = cert
        .signature()
        .as_bytes()
        .ok_or("the signature BIT STRING has unused bits")?;
    signer::verify_signature(&ca_spki, &cert.signature_algorithm().oid, &tbs_der, sig)
        .map_err(|e| format!("the signers CA's signature on it does not verify: {e}"))
}

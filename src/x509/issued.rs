//! Certificates a CA key issues to other CAs (issue 11): a subordinate CA from its request, or a
//! cross-certificate for another CA's key. The profile comes from the script's `[[ca_certificates]]`
//! entry; the TBS is built with x509-cert's builder, linted (`issued_lint.rs`) before it reaches the
//! HSM, and the signature and the chain to the issuer are checked after.

use super::csr::CheckedInput;
use super::signer::{verify_signature, HsmKey};
use super::{describe, CertError, SignedCertificate};
use crate::hsm::Hsm;
use crate::script::signing::{eku_oid, CaCertificate, NameSpec};
use const_oid::db::rfc4519::{
    COMMON_NAME, COUNTRY_NAME, LOCALITY_NAME, ORGANIZATIONAL_UNIT_NAME, ORGANIZATION_NAME,
    ST as STATE_NAME,
};
use const_oid::db::rfc5280::{ID_AD_CA_ISSUERS, ID_AD_OCSP};
use der::asn1::{Any, BitString, Ia5String, PrintableStringRef, Utf8StringRef};
use der::{Decode, Encode};
use spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::certpolicy::PolicyInformation;
use x509_cert::ext::pkix::constraints::name::GeneralSubtree;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AccessDescription, AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints,
    CertificatePolicies, CrlDistributionPoints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    NameConstraints, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;
use x509_cert::Certificate;

/// The profile of one issued CA certificate, resolved from the script and the inputs.
pub struct IssuedProfile {
    pub subject: Name,
    pub issuer: Name,
    /// The issuer certificate's own SKI (the new certificate's AKI).
    pub issuer_key_id: Vec<u8>,
    /// The subject CA's existing key identifier (a cross-certificate keeps it), else RFC 5280 method 1.
    pub subject_key_id: Option<Vec<u8>>,
    pub spec: CaCertificate,
}

/// The subject a script writes: C, ST, L, O, OU, CN, one attribute per RDN.
pub fn name_from_spec(spec: &NameSpec) -> der::Result<Name> {
    let mut rdns = RdnSequence::default();
    let mut push = |oid, value: Any| -> der::Result<()> {
        let mut rdn = RelativeDistinguishedName::default();
        rdn.insert(AttributeTypeAndValue { oid, value })?;
        rdns.push(rdn);
        Ok(())
    };
    if let Some(c) = &spec.country {
        push(COUNTRY_NAME, Any::from(PrintableStringRef::new(c)?))?;
    }
    let utf8 = [
        (STATE_NAME, &spec.state),
        (LOCALITY_NAME, &spec.locality),
        (ORGANIZATION_NAME, &spec.organization),
        (ORGANIZATIONAL_UNIT_NAME, &spec.organizational_unit),
    ];
    for (oid, value) in utf8 {
        if let Some(v) = value {
            push(oid, Any::from(Utf8StringRef::new(v)?))?;
        }
    }
    push(
        COMMON_NAME,
        Any::from(Utf8StringRef::new(&spec.common_name)?),
    )?;
    Name::from_der(&rdns.to_der()?)
}

fn uri(url: &str) -> x509_cert::builder::Result<GeneralName> {
    Ok(GeneralName::UniformResourceIdentifier(Ia5String::new(url)?))
}

impl BuilderProfile for IssuedProfile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let spec = &self.spec;
        let subject = tbs.subject();
        let mut exts: Vec<Extension> = Vec::new();
        let bc = BasicConstraints {
            ca: true,
            path_len_constraint: spec.path_len,
        };
        exts.push(bc.to_extension(subject, &exts)?);
        let mut usage = KeyUsages::KeyCertSign | KeyUsages::CRLSign;
        if spec.digital_signature {
            usage |= KeyUsages::DigitalSignature;
        }
        exts.push(KeyUsage(usage).to_extension(subject, &exts)?);
        let ski = match &self.subject_key_id {
            Some(id) => SubjectKeyIdentifier(der::asn1::OctetString::new(id.clone())?),
            None => SubjectKeyIdentifier::try_from(spk)?,
        };
        exts.push(ski.to_extension(subject, &exts)?);
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(der::asn1::OctetString::new(self.issuer_key_id.clone())?),
            ..Default::default()
        };
        exts.push(aki.to_extension(subject, &exts)?);
        if !spec.extended_key_usage.is_empty() {
            let oids = spec
                .extended_key_usage
                .iter()
                .map(|e| {
                    eku_oid(e)
                        .map_err(|_| der::Error::from(der::Tag::ObjectIdentifier.value_error()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            exts.push(ExtendedKeyUsage(oids).to_extension(subject, &exts)?);
        }
        if !spec.certificate_policies.is_empty() {
            let policies = spec
                .certificate_policies
                .iter()
                .map(|p| {
                    let policy_identifier = p
                        .parse()
                        .map_err(|_| der::Error::from(der::Tag::ObjectIdentifier.value_error()))?;
                    Ok(PolicyInformation {
                        policy_identifier,
                        policy_qualifiers: None,
                    })
                })
                .collect::<der::Result<Vec<_>>>()?;
            exts.push(CertificatePolicies(policies).to_extension(subject, &exts)?);
        }
        let mut access = Vec::new();
        for url in &spec.ocsp {
            access.push(AccessDescription {
                access_method: ID_AD_OCSP,
                access_location: uri(url)?,
            });
        }
        for url in &spec.ca_issuers {
            access.push(AccessDescription {
                access_method: ID_AD_CA_ISSUERS,
                access_location: uri(url)?,
            });
        }
        if !access.is_empty() {
            exts.push(AuthorityInfoAccessSyntax(access).to_extension(subject, &exts)?);
        }
        if !spec.crl_distribution_points.is_empty() {
            let names = spec
                .crl_distribution_points
                .iter()
                .map(|u| uri(u))
                .collect::<x509_cert::builder::Result<Vec<_>>>()?;
            let dp = DistributionPoint {
                distribution_point: Some(DistributionPointName::FullName(names)),
                reasons: None,
                crl_issuer: None,
            };
            exts.push(CrlDistributionPoints(vec![dp]).to_extension(subject, &exts)?);
        }
        if let Some(nc) = &spec.name_constraints {
            let subtrees = |names: &[String]| -> x509_cert::builder::Result<Option<Vec<_>>> {
                if names.is_empty() {
                    return Ok(None);
                }
                let trees = names
                    .iter()
                    .map(|n| {
                        Ok(GeneralSubtree {
                            base: GeneralName::DnsName(Ia5String::new(n)?),
                            minimum: 0,
                            maximum: None,
                        })
                    })
                    .collect::<x509_cert::builder::Result<Vec<_>>>()?;
                Ok(Some(trees))
            };
            let constraints = NameConstraints {
                permitted_subtrees: subtrees(&nc.permitted_dns)?,
                excluded_subtrees: subtrees(&nc.excluded_dns)?,
            };
            exts.push(constraints.to_extension(subject, &exts)?);
        }
        Ok(exts)
    }
}

/// The issuer certificate's SKI, or RFC 5280 method 1 over its key when it has none.
pub fn key_id_of(cert: &Certificate) -> Result<Vec<u8>, String> {
    let tbs = cert.tbs_certificate();
    if let Ok(Some((_, ski))) = tbs.get_extension::<SubjectKeyIdentifier>() {
        return Ok(ski.0.as_bytes().to_vec());
    }
    let spki_der = tbs
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    let spki = SubjectPublicKeyInfoRef::from_der(&spki_der).map_err(|e| e.to_string())?;
    SubjectKeyIdentifier::try_from(spki)
        .map(|s| s.0.as_bytes().to_vec())
        .map_err(|e| e.to_string())
}

/// The TBS ready to sign, with its builder (the builder assembles the signed certificate).
pub struct Prepared {
    pub builder: CertificateBuilder<IssuedProfile>,
    pub tbs_der: Vec<u8>,
}

/// Build the TBS: `serial` from the HSM's RNG, `validity` already resolved by the caller.
pub fn prepare(
    profile: IssuedProfile,
    input: &CheckedInput,
    key: &HsmKey,
    serial: &[u8],
    validity: Validity,
) -> Result<Prepared, CertError> {
    let build = |e: &dyn std::fmt::Display| CertError::Build(e.to_string());
    let serial = SerialNumber::new(serial).map_err(|e| build(&e))?;
    let spki: SubjectPublicKeyInfoOwned = input.spki.clone();
    let mut builder =
        CertificateBuilder::new(profile, serial, validity, spki).map_err(|e| build(&e))?;
    let tbs_der = builder.finalize(key).map_err(|e| build(&e))?;
    Ok(Prepared { builder, tbs_der })
}

/// Sign the prepared TBS in the HSM, then check the signature with the issuer's key and the chain
/// to the issuer certificate.
pub fn sign(
    hsm: &mut dyn Hsm,
    prepared: Prepared,
    key: &HsmKey,
    issuer: &Certificate,
) -> Result<SignedCertificate, CertError> {
    let build = |e: &dyn std::fmt::Display| CertError::Build(e.to_string());
    let signature = key.sign(hsm, &prepared.tbs_der)?;
    let bits = BitString::from_bytes(&signature).map_err(|e| build(&e))?;
    let cert = prepared
        .builder
        .assemble(bits, key)
        .map_err(|e| build(&e))?;
    let der = cert.to_der().map_err(|e| build(&e))?;
    let cert = Certificate::from_der(&der).map_err(|e| build(&e))?;
    verify_issued(&cert, issuer).map_err(CertError::Verify)?;
    describe(&cert, &der)
}

/// `cert`'s signature verifies with `issuer`'s key, its issuer name and AKI are the issuer's, and
/// its validity lies within the issuer's. Also what `keyrite verify` checks offline.
pub fn verify_issued(cert: &Certificate, issuer: &Certificate) -> Result<(), String> {
    let tbs = cert.tbs_certificate();
    let itbs = issuer.tbs_certificate();
    if tbs.signature() != cert.signature_algorithm() {
        return Err("the signed and the outer signature algorithms differ".into());
    }
    let issuer_spki = itbs
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    let tbs_der = tbs.to_der().map_err(|e| e.to_string())?;
    let signature = cert
        .signature()
        .as_bytes()
        .ok_or("the signature BIT STRING has unused bits")?;
    verify_signature(
        &issuer_spki,
        &cert.signature_algorithm().oid,
        &tbs_der,
        signature,
    )
    .map_err(|e| format!("the signature does not verify with the issuer's key: {e}"))?;
    if tbs.issuer() != itbs.subject() {
        return Err("its issuer name is not the issuer certificate's subject".into());
    }
    let aki = tbs
        .get_extension::<AuthorityKeyIdentifier>()
        .ok()
        .flatten()
        .and_then(|(_, a)| a.key_identifier)
        .map(|k| k.as_bytes().to_vec());
    if aki != Some(key_id_of(issuer)?) {
        return Err("its authorityKeyIdentifier is not the issuer's key identifier".into());
    }
    let (v, iv) = (tbs.validity(), itbs.validity());
    if v.not_before.to_unix_duration() < iv.not_before.to_unix_duration()
        || v.not_after.to_unix_duration() > iv.not_after.to_unix_duration()
    {
        return Err("its validity is not within the issuer certificate's validity".into());
    }
    Ok(())
}

//! The root CA builder profile (CA/B Forum BR 7.1.2.1): subject C, O, CN in that order; critical
//! basicConstraints CA:TRUE; critical keyUsage keyCertSign + cRLSign; SKI (RFC 5280 method 1) and an
//! AKI carrying the same key identifier. The script may add ST, L, postalCode and street (in BR
//! 7.1.4.2 order between C and O) and certificatePolicies.

use crate::script::Subject;
use const_oid::db::rfc4519::{
    COMMON_NAME, COUNTRY_NAME, LOCALITY_NAME, ORGANIZATION_NAME, POSTAL_CODE,
    ST as STATE_OR_PROVINCE_NAME, STREET,
};
use der::asn1::{Any, PrintableStringRef, Utf8StringRef};
use der::{Decode, Encode};
use spki::SubjectPublicKeyInfoRef;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::certpolicy::{PolicyInformation, PolicyQualifierInfo};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CertificatePolicies, KeyUsage, KeyUsages,
    SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};

pub struct Root {
    pub subject: Name,
    pub path_len: Option<u8>,
    pub digital_signature: bool,
    /// certificatePolicies (OID, optional CPS URI); none means no extension.
    pub policies: Vec<(der::asn1::ObjectIdentifier, Option<String>)>,
}

/// The OID of each subject attribute keyrite writes, by the script's short name.
pub fn attribute_oid(short: &str) -> der::asn1::ObjectIdentifier {
    match short {
        "C" => COUNTRY_NAME,
        "ST" => STATE_OR_PROVINCE_NAME,
        "L" => LOCALITY_NAME,
        "postalCode" => POSTAL_CODE,
        "street" => STREET,
        "O" => ORGANIZATION_NAME,
        _ => COMMON_NAME,
    }
}

/// C (PrintableString), then the others as UTF8String, one attribute per RDN, in the order pkilint
/// expects.
pub fn subject_name(subject: &Subject) -> der::Result<Name> {
    let mut rdns = RdnSequence::default();
    for (short, text) in subject.attributes() {
        let value = match short {
            "C" => Any::from(PrintableStringRef::new(text)?),
            _ => Any::from(Utf8StringRef::new(text)?),
        };
        let mut rdn = RelativeDistinguishedName::default();
        rdn.insert(AttributeTypeAndValue {
            oid: attribute_oid(short),
            value,
        })?;
        rdns.push(rdn);
    }
    // Name's constructor from an RdnSequence is hazmat-gated; its DER decoder is not.
    Name::from_der(&rdns.to_der()?)
}

impl BuilderProfile for Root {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
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
        let ski = SubjectKeyIdentifier::try_from(spk)?;
        let mut extensions: Vec<Extension> = Vec::new();
        let bc = BasicConstraints {
            ca: true,
            path_len_constraint: self.path_len,
        };
        extensions.push(bc.to_extension(tbs.subject(), &extensions)?);
        let mut usage = KeyUsages::KeyCertSign | KeyUsages::CRLSign;
        if self.digital_signature {
            usage |= KeyUsages::DigitalSignature;
        }
        extensions.push(KeyUsage(usage).to_extension(tbs.subject(), &extensions)?);
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(ski.0.clone()),
            ..Default::default()
        };
        extensions.push(ski.to_extension(tbs.subject(), &extensions)?);
        extensions.push(aki.to_extension(tbs.subject(), &extensions)?);
        if !self.policies.is_empty() {
            let mut infos = Vec::new();
            for (oid, cps) in &self.policies {
                let qualifiers = match cps {
                    Some(uri) => Some(vec![PolicyQualifierInfo {
                        policy_qualifier_id: const_oid::db::rfc5280::ID_QT_CPS,
                        qualifier: Some(Any::from(der::asn1::Ia5StringRef::new(uri)?)),
                    }]),
                    None => None,
                };
                infos.push(PolicyInformation {
                    policy_identifier: *oid,
                    policy_qualifiers: qualifiers,
                });
            }
            let policies = CertificatePolicies(infos);
            extensions.push(policies.to_extension(tbs.subject(), &extensions)?);
        }
        Ok(extensions)
    }
}

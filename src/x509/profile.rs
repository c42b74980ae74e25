//! The root CA builder profile (CA/B Forum BR 7.1.2.1): subject C, O, CN in that order; critical
//! basicConstraints CA:TRUE; critical keyUsage keyCertSign + cRLSign; SKI (RFC 5280 method 1) and an
//! AKI carrying the same key identifier.

use crate::script::Subject;
use const_oid::db::rfc4519::{COMMON_NAME, COUNTRY_NAME, ORGANIZATION_NAME};
use der::asn1::{Any, PrintableStringRef, Utf8StringRef};
use der::{Decode, Encode};
use spki::SubjectPublicKeyInfoRef;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};

pub struct Root {
    pub subject: Name,
    pub path_len: Option<u8>,
    pub digital_signature: bool,
}

/// C (PrintableString), O and CN (UTF8String), one attribute per RDN, in the order pkilint expects.
pub fn subject_name(subject: &Subject) -> der::Result<Name> {
    let mut rdns = RdnSequence::default();
    let values = [
        (
            COUNTRY_NAME,
            Any::from(PrintableStringRef::new(&subject.country)?),
        ),
        (
            ORGANIZATION_NAME,
            Any::from(Utf8StringRef::new(&subject.organization)?),
        ),
        (
            COMMON_NAME,
            Any::from(Utf8StringRef::new(&subject.common_name)?),
        ),
    ];
    for (oid, value) in values {
        let mut rdn = RelativeDistinguishedName::default();
        rdn.insert(AttributeTypeAndValue { oid, value })?;
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
        Ok(extensions)
    }
}

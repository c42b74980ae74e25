//! X.509 certificate objects on a token: a personal card carries its signing key and the certificate
//! for it, linked by a shared CKA_ID (the PKCS#11 convention smart-card middleware follows).

use super::{Ck, Pkcs11Hsm};
use crate::hsm::HsmError;
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass};

impl Pkcs11Hsm {
    /// Store `der` as a public CKO_CERTIFICATE (CKC_X_509) object with the label and CKA_ID of the key
    /// pair labelled `key_label`.
    pub(super) fn store_cert(
        &mut self,
        key_label: &str,
        subject_der: &[u8],
        der: &[u8],
    ) -> Result<(), HsmError> {
        let doing = format!("store the certificate of \"{key_label}\"");
        self.require_login(&doing)?;
        let (private, _) = self.find_pair(key_label)?;
        let id = self.id_of(private, key_label)?;
        let template = [
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(key_label.as_bytes().to_vec()),
            Attribute::Id(id),
            Attribute::Subject(subject_der.to_vec()),
            Attribute::Value(der.to_vec()),
        ];
        self.session
            .create_object(&template)
            .ck("C_CreateObject", || doing.clone())?;
        Ok(())
    }

    /// The first X.509 certificate whose CKA_ID names a private key on the token: that key's label
    /// and the certificate's DER.
    pub(super) fn signing_cert(&mut self) -> Result<(String, Vec<u8>), HsmError> {
        let doing = "find the card's signing certificate";
        self.require_login(doing)?;
        let certs = self.find(
            &[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
            ],
            doing,
        )?;
        for cert in certs {
            let attrs = self.attributes(cert, &[AttributeType::Id, AttributeType::Value], doing)?;
            let (mut id, mut value) = (Vec::new(), Vec::new());
            for a in attrs {
                match a {
                    Attribute::Id(v) => id = v,
                    Attribute::Value(v) => value = v,
                    _ => {}
                }
            }
            if id.is_empty() || value.is_empty() {
                continue;
            }
            let keys = self.find(
                &[Attribute::Class(ObjectClass::PRIVATE_KEY), Attribute::Id(id)],
                doing,
            )?;
            let Some(key) = keys.first() else { continue };
            let label = self
                .attributes(*key, &[AttributeType::Label], doing)?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::Label(l) => Some(String::from_utf8_lossy(&l).into_owned()),
                    _ => None,
                })
                .unwrap_or_default();
            if !label.is_empty() {
                return Ok((label, value));
            }
        }
        Err(HsmError::new(
            doing,
            format!(
                "token \"{}\" holds no X.509 certificate whose CKA_ID matches a labelled private key",
                self.token()
            ),
            "put the signing key and its certificate on the card with the same CKA_ID \
             (pkcs11-tool --list-objects shows them), or use the card issued for this person",
        ))
    }
}

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

    /// Every X.509 certificate object on the token (public objects: no login needed), as
    /// (CKA_ID hex, DER), in the order the token lists them.
    pub(super) fn certs(&mut self) -> Result<Vec<(String, Vec<u8>)>, HsmError> {
        let doing = "list the certificates on the card";
        let found = self.find(
            &[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
            ],
            doing,
        )?;
        let mut out = Vec::new();
        for cert in found {
            let attrs = self.attributes(cert, &[AttributeType::Id, AttributeType::Value], doing)?;
            let (mut id, mut value) = (Vec::new(), Vec::new());
            for a in attrs {
                match a {
                    Attribute::Id(v) => id = v,
                    Attribute::Value(v) => value = v,
                    _ => {}
                }
            }
            if !value.is_empty() {
                out.push((hex::encode(id), value));
            }
        }
        Ok(out)
    }

    /// The CKA_LABEL of the private key with CKA_ID `id_hex` (needs a login).
    pub(super) fn label_for_id(&mut self, id_hex: &str) -> Result<String, HsmError> {
        let doing = format!("find the private key with CKA_ID {id_hex}");
        self.require_login(&doing)?;
        let id = hex::decode(id_hex)
            .map_err(|e| HsmError::new(&doing, e.to_string(), "report this keyrite defect"))?;
        let keys = self.find(
            &[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(id),
            ],
            &doing,
        )?;
        let label = match keys.as_slice() {
            [key] => self
                .attributes(*key, &[AttributeType::Label], &doing)?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::Label(l) => Some(String::from_utf8_lossy(&l).into_owned()),
                    _ => None,
                })
                .unwrap_or_default(),
            _ => String::new(),
        };
        if label.is_empty() {
            return Err(HsmError::new(
                doing,
                format!(
                    "token \"{}\" has no single labelled private key with the certificate's CKA_ID",
                    self.token()
                ),
                "put the signing key and its certificate on the card under one CKA_ID, and give the key a \
                 CKA_LABEL (pkcs11-tool --list-objects shows them)",
            ));
        }
        Ok(label)
    }
}

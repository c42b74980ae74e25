//! Key destruction (issue 12, item 4): every object of a key, found by its CKA_ID and by its
//! CKA_LABEL (private key, public key, certificate, and any other object sharing either), listed
//! and destroyed one at a time, so the driver can log each and a kill leaves a state resume can
//! finish from.

use super::{Ck, Pkcs11Hsm};
use crate::hsm::{HsmError, TokenObject};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};

fn class_name(class: ObjectClass) -> String {
    match class {
        ObjectClass::PRIVATE_KEY => "private-key".into(),
        ObjectClass::PUBLIC_KEY => "public-key".into(),
        ObjectClass::CERTIFICATE => "certificate".into(),
        ObjectClass::SECRET_KEY => "secret-key".into(),
        ObjectClass::DATA => "data".into(),
        other => format!("class {other}"),
    }
}

impl Pkcs11Hsm {
    /// Every object with CKA_ID `id_hex` or CKA_LABEL `label`, with its handle (never leaves here).
    fn key_object_handles(
        &self,
        label: &str,
        id_hex: &str,
    ) -> Result<Vec<(ObjectHandle, TokenObject)>, HsmError> {
        let doing = format!(
            "list the objects of key \"{label}\" (CKA_ID {id_hex}) on \"{}\"",
            self.token()
        );
        self.require_login(&doing)?;
        let mut handles = self.find(&[Attribute::Label(label.as_bytes().to_vec())], &doing)?;
        if let Ok(id) = hex::decode(id_hex) {
            if !id.is_empty() {
                for h in self.find(&[Attribute::Id(id)], &doing)? {
                    if !handles.contains(&h) {
                        handles.push(h);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for h in handles {
            let attrs = self
                .session
                .get_attributes(
                    h,
                    &[
                        AttributeType::Class,
                        AttributeType::Label,
                        AttributeType::Id,
                    ],
                )
                .ck("C_GetAttributeValue", || doing.clone())?;
            let mut object = TokenObject::default();
            for a in attrs {
                match a {
                    Attribute::Class(c) => object.class = class_name(c),
                    Attribute::Label(l) => object.label = String::from_utf8_lossy(&l).into(),
                    Attribute::Id(i) => object.id_hex = hex::encode(i),
                    _ => {}
                }
            }
            out.push((h, object));
        }
        Ok(out)
    }

    pub(super) fn list_key_objects(
        &self,
        label: &str,
        id_hex: &str,
    ) -> Result<Vec<TokenObject>, HsmError> {
        Ok(self
            .key_object_handles(label, id_hex)?
            .into_iter()
            .map(|(_, o)| o)
            .collect())
    }

    /// Destroy the objects of the key that match `object` (class, label and CKA_ID); how many.
    pub(super) fn destroy_key_object(
        &mut self,
        label: &str,
        id_hex: &str,
        object: &TokenObject,
    ) -> Result<usize, HsmError> {
        let doing = format!(
            "destroy the {} \"{}\" (CKA_ID {}) on \"{}\"",
            object.class,
            object.label,
            object.id_hex,
            self.token()
        );
        let mut n = 0;
        for (h, o) in self.key_object_handles(label, id_hex)? {
            if o == *object {
                self.session
                    .destroy_object(h)
                    .ck("C_DestroyObject", || doing.clone())?;
                n += 1;
            }
        }
        Ok(n)
    }
}

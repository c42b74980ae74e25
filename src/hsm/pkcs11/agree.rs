//! Sealed custodian shares on a card: the card's P-256 key-agreement key (CKA_DERIVE, never
//! extractable), generated on the card or found by label, and CKM_ECDH1_DERIVE with it.
//!
//! The ECDH output is derived as a session-only CKO_SECRET_KEY (CKK_GENERIC_SECRET, CKA_SENSITIVE
//! false, CKA_EXTRACTABLE true) so its CKA_VALUE can be read into Zeroizing memory; the object is
//! destroyed at once. A token that refuses extractable derived keys says so in the error.

use super::{Ck, Pkcs11Hsm};
use crate::hsm::{spki, AgreementKey, Hsm, HsmError, KeyAttributes};
use crate::script::KeyAlgorithm;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::types::Ulong;
use der::asn1::OctetString;
use der::Decode;
use zeroize::Zeroizing;

/// A bare uncompressed P-256 point from CKA_EC_POINT (a DER OCTET STRING around it on most tokens).
fn raw_point(ec_point: &[u8]) -> Option<Vec<u8>> {
    let point = match OctetString::from_der(ec_point) {
        Ok(os) if ec_point.len() == 67 => os.as_bytes().to_vec(),
        _ => ec_point.to_vec(),
    };
    (point.len() == 65 && point[0] == 0x04).then_some(point)
}

impl Pkcs11Hsm {
    /// Refuse, naming the card, a token whose mechanism list lacks CKM_ECDH1_DERIVE (tpm2-pkcs11
    /// 1.9, for one), before a key is generated or a derivation tried.
    fn require_ecdh(&self, doing: &str) -> Result<(), HsmError> {
        let ctx = super::module::loaded_module(&self.identity.module_path)?;
        let list = ctx
            .get_mechanism_list(self.slot)
            .ck("C_GetMechanismList", || doing.to_string())?;
        if list.contains(&MechanismType::ECDH1_DERIVE) {
            return Ok(());
        }
        Err(HsmError::new(
            doing,
            format!(
                "card \"{}\" does not offer CKM_ECDH1_DERIVE, so it cannot hold a sealed share",
                self.token()
            ),
            "use medium = \"data-object\" for this card (the default), or a card whose module offers ECDH",
        ))
    }

    fn agreement_private(&self, label: &str, doing: &str) -> Result<Vec<ObjectHandle>, HsmError> {
        self.require_login(doing)?;
        self.find(
            &[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::EC),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
            doing,
        )
    }

    pub(super) fn find_agreement_key(
        &mut self,
        label: &str,
    ) -> Result<Option<AgreementKey>, HsmError> {
        let doing = format!(
            "find the key-agreement key \"{label}\" on card \"{}\"",
            self.token()
        );
        match self.agreement_private(label, &doing)?.as_slice() {
            [] => Ok(None),
            [private] => self.describe_agreement(label, *private).map(Some),
            many => Err(HsmError::new(
                doing,
                format!(
                    "card \"{}\" has {} EC private keys labelled \"{label}\"",
                    self.token(),
                    many.len()
                ),
                "labels must be unique on the card: name the key by another label (quorum card key_label)",
            )),
        }
    }

    fn describe_agreement(
        &self,
        label: &str,
        private: ObjectHandle,
    ) -> Result<AgreementKey, HsmError> {
        use AttributeType as T;
        let doing = format!("read the key-agreement key \"{label}\"");
        let mut a = KeyAttributes::default();
        let mut derive = None;
        let wanted = [&super::keys::EVIDENCE[..], &[T::Derive][..]].concat();
        for attr in self.attributes(private, &wanted, label)? {
            match attr {
                Attribute::Derive(v) => derive = Some(v),
                other => super::keys::evidence(&mut a, &other),
            }
        }
        let id = self.id_of(private, label)?;
        let by = if id.is_empty() {
            Attribute::Label(label.as_bytes().to_vec())
        } else {
            Attribute::Id(id.clone())
        };
        let public = self.find_one(
            &[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::EC),
                by,
            ],
            "public key",
            label,
        )?;
        let (mut params, mut point) = (Vec::new(), Vec::new());
        for attr in self.attributes(public, &[T::EcParams, T::EcPoint], label)? {
            match attr {
                Attribute::EcParams(v) => params = v,
                Attribute::EcPoint(v) => point = v,
                _ => {}
            }
        }
        if spki::ec_params_der(KeyAlgorithm::P256).as_deref() != Some(params.as_slice()) {
            return Err(HsmError::new(
                doing,
                format!("\"{label}\" is not a P-256 key"),
                "sealed shares need a P-256 key-agreement key on the card",
            ));
        }
        let public_point = raw_point(&point).ok_or_else(|| {
            HsmError::new(
                doing.clone(),
                "the card's CKA_EC_POINT is not an uncompressed P-256 point",
                "report this to the card's vendor",
            )
        })?;
        Ok(AgreementKey {
            label: label.to_string(),
            id_hex: hex::encode(id),
            public_point,
            attributes: a,
            derive,
        })
    }

    /// A P-256 key pair on the card for key agreement only: token, private, sensitive, never
    /// extractable, CKA_DERIVE; it cannot sign, decrypt or unwrap.
    pub(super) fn new_agreement_key(&mut self, label: &str) -> Result<AgreementKey, HsmError> {
        let doing = format!(
            "generate the key-agreement key \"{label}\" on card \"{}\"",
            self.token()
        );
        if !self.agreement_private(label, &doing)?.is_empty() || self.label_exists(label)? {
            return Err(HsmError::new(
                doing,
                format!(
                    "card \"{}\" already has an object labelled \"{label}\"; nothing was generated",
                    self.token()
                ),
                "use that key (it is found by label) or name another key_label for the card",
            ));
        }
        self.require_ecdh(&doing)?;
        let id = self.random(super::KEY_ID_LEN)?;
        let common = |private: bool| super::keys::key_common(label, &id, private);
        let mut private = common(true);
        private.extend([
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Derive(true),
            Attribute::Sign(false),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
        ]);
        let mut public = common(false);
        public.push(Attribute::EcParams(
            spki::ec_params_der(KeyAlgorithm::P256).unwrap_or_default(),
        ));
        let (_, private) = self
            .session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .ck("C_GenerateKeyPair", || doing.clone())?;
        self.describe_agreement(label, private)
    }

    /// x(d·peer) with the card's key `label`: CKM_ECDH1_DERIVE (CKD_NULL) into a session-only
    /// generic secret, read and destroyed.
    pub(super) fn ecdh_derive(
        &mut self,
        label: &str,
        peer_point: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let doing = format!(
            "CKM_ECDH1_DERIVE with \"{label}\" on card \"{}\"",
            self.token()
        );
        let key = match self.agreement_private(label, &doing)?.as_slice() {
            [one] => *one,
            found => {
                return Err(HsmError::new(
                    doing,
                    format!(
                        "card \"{}\" has {} EC private keys labelled \"{label}\"",
                        self.token(),
                        found.len()
                    ),
                    "present the card the envelope was sealed to",
                ))
            }
        };
        self.require_ecdh(&doing)?;
        let len = Ulong::try_from(32usize).ck("C_DeriveKey", || doing.clone())?;
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::ValueLen(len),
        ];
        let derive = |public: &[u8]| {
            let params = Ecdh1DeriveParams::new(EcKdf::null(), public);
            self.session
                .derive_key(&Mechanism::Ecdh1Derive(params), key, &template)
        };
        // PKCS#11 says the raw point; some modules want it as a DER OCTET STRING (pkcs11-tool's
        // --derive-pass-der): try that when the raw form is refused as a bad argument.
        let derived = match derive(peer_point) {
            Err(CkError::Pkcs11(
                RvError::ArgumentsBad
                | RvError::MechanismParamInvalid
                | RvError::DomainParamsInvalid,
                _,
            )) if peer_point.len() == 65 => {
                let mut der = vec![0x04, 0x41];
                der.extend_from_slice(peer_point);
                derive(&der)
            }
            other => other,
        };
        let derived = derived.map_err(|e| {
            let mut err = super::hsm_error(e, "C_DeriveKey", doing.clone());
            err.fix = format!(
                "{} (keyrite reads the ECDH output as a session-only, extractable generic \
                     secret; a card that refuses that cannot open sealed shares)",
                err.fix
            );
            err
        })?;
        let read = self
            .session
            .get_attributes(derived, &[AttributeType::Value])
            .ck("C_GetAttributeValue", || doing.clone());
        let destroyed = self
            .session
            .destroy_object(derived)
            .ck("C_DestroyObject", || doing.clone());
        let mut value = None;
        for attr in read? {
            if let Attribute::Value(v) = attr {
                value = Some(Zeroizing::new(v));
            }
        }
        destroyed?;
        value.ok_or_else(|| {
            HsmError::new(
                doing,
                "the card did not return the derived secret's CKA_VALUE",
                "the card keeps derived keys sensitive; it cannot open sealed shares",
            )
        })
    }

    /// Destroy the key-agreement key pair `label` (private and public halves).
    pub(super) fn destroy_agreement(&mut self, label: &str) -> Result<usize, HsmError> {
        let doing = format!(
            "destroy the key-agreement key \"{label}\" on card \"{}\"",
            self.token()
        );
        self.require_login(&doing)?;
        let mut n = 0;
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            let found = self.find(
                &[
                    Attribute::Class(class),
                    Attribute::KeyType(KeyType::EC),
                    Attribute::Label(label.as_bytes().to_vec()),
                ],
                &doing,
            )?;
            for object in found {
                self.session
                    .destroy_object(object)
                    .ck("C_DestroyObject", || doing.clone())?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::raw_point;

    #[test]
    fn ec_point_is_unwrapped_from_its_octet_string() {
        let mut bare = vec![0x04];
        bare.extend([0x3f; 64]);
        assert_eq!(raw_point(&bare).as_deref(), Some(bare.as_slice()));
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend(&bare);
        assert_eq!(raw_point(&wrapped).as_deref(), Some(bare.as_slice()));
        assert!(raw_point(&bare[..64]).is_none());
    }
}

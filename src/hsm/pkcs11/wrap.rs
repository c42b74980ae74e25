//! Issue 12: key backup and restore on the token. A key made for backup is extractable only under
//! a trusted wrapping key; the KEK is imported as a session-only, public, trusted AES key by the
//! security officer (SoftHSM2 lets only the SO set CKA_TRUSTED, and only on a public object), used
//! for one C_WrapKey or C_UnwrapKey, and destroyed. Being a session object, it also dies with the
//! session if keyrite is killed.

use super::{keys, Ck, Pkcs11Hsm, KEY_ID_LEN};
use crate::hsm::spki::{public_parts, PublicParts};
use crate::hsm::{Hsm, HsmError, KekUse, KeyAttributes, KeyPairInfo, UnwrappedKey, WrapMechanism};
use crate::script::KeyAlgorithm;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use secrecy::SecretString;
use zeroize::Zeroize;

fn mechanism(m: WrapMechanism) -> Mechanism<'static> {
    match m {
        WrapMechanism::AesKeyWrapPad => Mechanism::AesKeyWrapPad,
    }
}

fn key_type(algorithm: KeyAlgorithm) -> KeyType {
    if algorithm.is_rsa() {
        KeyType::RSA
    } else {
        KeyType::EC
    }
}

impl Pkcs11Hsm {
    pub(super) fn offered_wrap(&mut self) -> Result<Option<WrapMechanism>, HsmError> {
        let ctx = super::module::loaded_module(&self.identity.module_path)?;
        let token = self.token().to_string();
        let doing = || format!("list the key-wrap mechanisms of token \"{token}\"");
        // cryptoki 0.12 drops mechanism numbers it does not know, CKM_AES_KEY_WRAP_KWP (0x210B)
        // among them: a token offering only KWP (Kryoptic) shows none here, and is refused.
        let listed = ctx
            .get_mechanism_list(self.slot)
            .ck("C_GetMechanismList", doing)?;
        if !listed.contains(&MechanismType::AES_KEY_WRAP_PAD) {
            return Ok(None);
        }
        let info = ctx
            .get_mechanism_info(self.slot, MechanismType::AES_KEY_WRAP_PAD)
            .ck("C_GetMechanismInfo", doing)?;
        Ok((info.wrap() && info.unwrap()).then_some(WrapMechanism::AesKeyWrapPad))
    }

    pub(super) fn backup_key_pair(
        &mut self,
        label: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<KeyPairInfo, HsmError> {
        let doing = format!("generate {algorithm} key pair \"{label}\" for backup");
        self.require_login(&doing)?;
        if label.is_empty() || self.label_exists(label)? {
            return Err(HsmError::new(
                doing,
                format!(
                    "token \"{}\" already has an object labelled \"{label}\" (or the label is empty); nothing was generated",
                    self.token()
                ),
                "choose a new key label in the script",
            ));
        }
        let id = self.random(KEY_ID_LEN)?;
        let (mech, public, mut private) =
            keys::templates(label, &id, algorithm).ck("C_GenerateKeyPair", || doing.clone())?;
        private.retain(|a| !matches!(a, Attribute::Extractable(_)));
        private.extend([
            Attribute::Extractable(true),
            Attribute::WrapWithTrusted(true),
        ]);
        let (public, private) = self
            .session
            .generate_key_pair(&mech, &public, &private)
            .ck("C_GenerateKeyPair", || doing.clone())?;
        let info = self.describe(label, private, public)?;
        let a = &info.attributes;
        if !a.prove_backup_generation() || info.algorithm != algorithm {
            return Err(HsmError::new(
                doing,
                format!(
                    "token \"{}\" generated \"{label}\" without the protection keyrite asked for \
                     (read back: CKA_LOCAL {:?}, CKA_SENSITIVE {:?}, CKA_ALWAYS_SENSITIVE {:?}, \
                     CKA_EXTRACTABLE {:?}, CKA_WRAP_WITH_TRUSTED {:?}; the key pair is on the token)",
                    self.token(),
                    a.local,
                    a.sensitive,
                    a.always_sensitive,
                    a.extractable,
                    a.wrap_with_trusted
                ),
                "stop: do not use this key; have the security officer destroy it, and use an HSM \
                 that honours CKA_WRAP_WITH_TRUSTED for a key that is backed up",
            ));
        }
        Ok(info)
    }

    pub(super) fn trusted_kek(
        &mut self,
        label: &str,
        kek: &[u8],
        so_pin: &SecretString,
        usage: KekUse,
    ) -> Result<(), HsmError> {
        let doing = format!(
            "import the key-encryption key \"{label}\" into token \"{}\" as a trusted key",
            self.token()
        );
        let Some(user_pin) = self.user_pin.clone() else {
            return Err(HsmError::new(
                doing,
                "the user was not logged in with a PIN keyrite holds, so it cannot log the user in \
                 again after the security officer marks the key trusted",
                "activate the HSM with its user PIN (or the quorum) before this step",
            ));
        };
        let mut template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Value(kek.to_vec()),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Trusted(true),
            Attribute::Wrap(usage == KekUse::Wrap),
            Attribute::Unwrap(usage == KekUse::Unwrap),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
        ];
        let created = self.so_login(so_pin).and_then(|()| {
            self.session
                .create_object(&template)
                .ck("C_CreateObject", || doing.clone())
        });
        // The template's copy of the KEK is wiped as soon as the token has it.
        for attr in template.iter_mut() {
            if let Attribute::Value(v) = attr {
                v.zeroize();
            }
        }
        let created = created.and_then(|kek| self.check_trusted(kek, label, &doing));
        // Back to the user in every case: the ceremony goes on (or fails) logged in as before.
        // (A refused SO login left nobody logged in: that logout's "not logged in" changes nothing.)
        let _ = self.session.logout();
        let back = Hsm::login(self, &user_pin);
        created?;
        back
    }

    fn check_trusted(&self, kek: ObjectHandle, label: &str, doing: &str) -> Result<(), HsmError> {
        let trusted = self
            .attributes(kek, &[AttributeType::Trusted], label)?
            .into_iter()
            .find_map(|a| match a {
                Attribute::Trusted(t) => Some(t),
                _ => None,
            });
        if trusted == Some(true) {
            return Ok(());
        }
        let _ = self.session.destroy_object(kek);
        Err(HsmError::new(
            doing,
            format!(
                "token \"{}\" did not mark the key-encryption key trusted (CKA_TRUSTED reads {trusted:?}); it was destroyed",
                self.token()
            ),
            "use an HSM whose security officer can mark a key CKA_TRUSTED",
        ))
    }

    pub(super) fn wrap(
        &mut self,
        kek_label: &str,
        key_label: &str,
        m: WrapMechanism,
    ) -> Result<Vec<u8>, HsmError> {
        let doing = format!(
            "wrap \"{key_label}\" under \"{kek_label}\" with {}",
            m.name()
        );
        self.require_login(&doing)?;
        let kek = self.find_one(
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(kek_label.as_bytes().to_vec()),
            ],
            "key-encryption key",
            kek_label,
        )?;
        let (private, _) = self.find_pair(key_label)?;
        self.session
            .wrap_key(&mechanism(m), kek, private)
            .ck("C_WrapKey", || doing)
    }

    pub(super) fn unwrap(
        &mut self,
        kek_label: &str,
        blob: &[u8],
        label: &str,
        algorithm: KeyAlgorithm,
        m: WrapMechanism,
    ) -> Result<UnwrappedKey, HsmError> {
        let doing = format!("unwrap \"{label}\" under \"{kek_label}\" with {}", m.name());
        self.require_login(&doing)?;
        let kek = self.find_one(
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(kek_label.as_bytes().to_vec()),
            ],
            "key-encryption key",
            kek_label,
        )?;
        let id = self.random(KEY_ID_LEN)?;
        let mut template = keys::key_common(label, &id, true);
        template.extend([
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(key_type(algorithm)),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            // A signing key only: SoftHSM2 would default these to true for an unwrapped key.
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
        ]);
        let key = self
            .session
            .unwrap_key(&mechanism(m), kek, blob, &template)
            .ck("C_UnwrapKey", || doing.clone())?;
        let mut a = KeyAttributes::default();
        for attr in self.attributes(key, &super::keys::EVIDENCE, label)? {
            super::keys::evidence(&mut a, &attr);
        }
        Ok(UnwrappedKey {
            id_hex: hex::encode(id),
            attributes: a,
        })
    }

    pub(super) fn public_key_object(
        &mut self,
        label: &str,
        id_hex: &str,
        spki_der: &[u8],
    ) -> Result<(), HsmError> {
        let doing = format!(
            "create the public key \"{label}\" on token \"{}\"",
            self.token()
        );
        let bad = |e: String| HsmError::new(doing.clone(), e, "check the certificate file");
        let (_, parts) = public_parts(spki_der).map_err(bad)?;
        let id = hex::decode(id_hex).map_err(|e| bad(e.to_string()))?;
        let mut template = keys::key_common(label, &id, false);
        template.push(Attribute::Class(ObjectClass::PUBLIC_KEY));
        match parts {
            PublicParts::Ec { params, point } => template.extend([
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(params),
                Attribute::EcPoint(point),
            ]),
            PublicParts::Rsa { modulus, exponent } => template.extend([
                Attribute::KeyType(KeyType::RSA),
                Attribute::Modulus(modulus),
                Attribute::PublicExponent(exponent),
            ]),
        }
        template.extend([
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
        ]);
        self.session
            .create_object(&template)
            .ck("C_CreateObject", || doing)
            .map(|_| ())
    }

    pub(super) fn destroy_all(&mut self, label: &str, secret: bool) -> Result<usize, HsmError> {
        let doing = format!(
            "destroy the objects labelled \"{label}\" on token \"{}\"",
            self.token()
        );
        let classes: &[ObjectClass] = if secret {
            &[ObjectClass::SECRET_KEY]
        } else {
            &[ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY]
        };
        let mut n = 0;
        for class in classes {
            let template = [
                Attribute::Class(*class),
                Attribute::Label(label.as_bytes().to_vec()),
            ];
            for object in self.find(&template, &doing)? {
                self.session
                    .destroy_object(object)
                    .ck("C_DestroyObject", || doing.clone())?;
                n += 1;
            }
        }
        Ok(n)
    }

    pub(super) fn secret_keys(&mut self) -> Result<usize, HsmError> {
        let doing = format!("look for secret keys on token \"{}\"", self.token());
        Ok(self
            .find(&[Attribute::Class(ObjectClass::SECRET_KEY)], &doing)?
            .len())
    }
}

//! An in-memory HSM for fast engine, driver and certificate tests. EC keys only (P-256, P-384);
//! keys are derived from the label so tests are repeatable. Never used outside tests and `--mock`-free
//! code paths: nothing in the CLI can select it.

use super::{
    Hsm, HsmError, KeyAttributes, KeyPairInfo, PinChange, PinLimits, SignMechanism, TokenIdentity,
    TokenObject,
};
use crate::script::KeyAlgorithm;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256, Sha384};
use spki::EncodePublicKey;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub struct MockHsm {
    identity: TokenIdentity,
    pin: String,
    /// Wrong user PINs since the last good one: 1 sets COUNT_LOW, 2 FINAL_TRY, 3 locks.
    wrong_pins: u32,
    /// The SO PIN: the user PIN given to [`MockHsm::new`] unless a test sets another.
    pub so_pin: String,
    logged_in: bool,
    so_logged_in: bool,
    /// What C_GetTokenInfo reports: SoftHSM2's limits unless a test sets others.
    pub limits: PinLimits,
    keys: BTreeMap<String, KeyAlgorithm>,
    counter: u64,
    /// Certificates stored with [`Hsm::store_certificate`], by key label.
    certs: BTreeMap<String, Vec<u8>>,
    /// What C_GetMechanismList/Info report; `None` (the default): the mock does not say.
    pub offered: Option<Vec<super::capabilities::Offered>>,
    /// Every mutating call, in order, so tests can prove what did (not) reach the HSM. Shared, so a
    /// test keeps a handle after the driver has taken the mock.
    pub calls: Arc<Mutex<Vec<String>>>,
    /// What [`Hsm::warnings`] says (none unless a test sets some).
    pub warnings: Vec<String>,
}

impl MockHsm {
    pub fn new(pin: &str) -> Self {
        MockHsm {
            identity: TokenIdentity {
                module_path: "mock".into(),
                library_description: "keyrite in-memory mock".into(),
                library_manufacturer: "keyrite".into(),
                library_version: "0.0".into(),
                token_label: "mock-token".into(),
                manufacturer: "keyrite".into(),
                model: "MockHSM".into(),
                serial: "0000000000000001".into(),
                hardware_version: "0.0".into(),
                firmware_version: "0.0".into(),
            },
            pin: pin.to_string(),
            wrong_pins: 0,
            so_pin: pin.to_string(),
            logged_in: false,
            so_logged_in: false,
            limits: PinLimits {
                min_len: 4,
                max_len: 255,
                protected_path: false,
            },
            keys: BTreeMap::new(),
            counter: 0,
            certs: BTreeMap::new(),
            offered: None,
            calls: Arc::default(),
            warnings: Vec::new(),
        }
    }

    fn call(&self, what: String) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(what);
        }
    }

    /// The calls so far.
    pub fn call_log(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn need_login(&self, function: &str) -> Result<(), HsmError> {
        if self.logged_in {
            Ok(())
        } else {
            let mut e = HsmError::new(function, "not logged in", "activate the HSM first");
            e.ckr = "CKR_USER_NOT_LOGGED_IN".into();
            Err(e)
        }
    }

    fn spki(label: &str, algorithm: KeyAlgorithm) -> Result<Vec<u8>, HsmError> {
        let err = |e: &dyn std::fmt::Display| HsmError::new("mock", e.to_string(), "mock defect");
        let der = match algorithm {
            KeyAlgorithm::P256 => {
                p256::ecdsa::SigningKey::from_slice(&Sha256::digest(label.as_bytes()))
                    .map_err(|e| err(&e))?
                    .verifying_key()
                    .to_public_key_der()
            }
            KeyAlgorithm::P384 => {
                p384::ecdsa::SigningKey::from_slice(&Sha384::digest(label.as_bytes()))
                    .map_err(|e| err(&e))?
                    .verifying_key()
                    .to_public_key_der()
            }
            other => {
                let mut e = HsmError::new(
                    "C_GenerateKeyPair",
                    format!("the mock has no {other}"),
                    "use an EC key in tests",
                );
                e.ckr = "CKR_MECHANISM_INVALID".into();
                return Err(e);
            }
        };
        der.map(|d| d.as_bytes().to_vec()).map_err(|e| err(&e))
    }

    fn info(&self, label: &str, algorithm: KeyAlgorithm) -> Result<KeyPairInfo, HsmError> {
        Ok(KeyPairInfo {
            label: label.to_string(),
            id_hex: hex::encode(&Sha256::digest(label.as_bytes())[..8]),
            algorithm,
            spki_der: Self::spki(label, algorithm)?,
            attributes: KeyAttributes {
                local: Some(true),
                never_extractable: Some(true),
                always_sensitive: Some(true),
                extractable: Some(false),
                sensitive: Some(true),
                wrap_with_trusted: None,
            },
        })
    }
}

impl Hsm for MockHsm {
    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
    fn identity(&self) -> &TokenIdentity {
        &self.identity
    }

    fn login(&mut self, pin: &SecretString) -> Result<(), HsmError> {
        self.call("C_Login".into());
        if self.wrong_pins >= 3 {
            let mut e = HsmError::new("C_Login", "the PIN is locked", "unlock it with the SO PIN");
            e.ckr = "CKR_PIN_LOCKED".into();
            return Err(e);
        }
        if pin.expose_secret() != self.pin {
            self.wrong_pins += 1;
            let mut e = HsmError::new("C_Login", "the PIN is incorrect", "re-enter the PIN");
            e.ckr = "CKR_PIN_INCORRECT".into();
            return Err(e);
        }
        self.wrong_pins = 0;
        self.logged_in = true;
        self.so_logged_in = false;
        Ok(())
    }

    fn pin_state(&mut self) -> Result<super::PinState, HsmError> {
        Ok(super::PinState {
            count_low: self.wrong_pins >= 1,
            final_try: self.wrong_pins == 2,
            locked: self.wrong_pins >= 3,
        })
    }

    fn logout(&mut self) -> Result<(), HsmError> {
        self.call("C_Logout".into());
        self.logged_in = false;
        self.so_logged_in = false;
        Ok(())
    }

    fn label_exists(&mut self, label: &str) -> Result<bool, HsmError> {
        Ok(self.keys.contains_key(label))
    }

    /// A key pair is a private and a public object (and its certificate, when stored).
    fn key_objects(&mut self, label: &str, id_hex: &str) -> Result<Vec<TokenObject>, HsmError> {
        self.need_login("C_FindObjects")?;
        let mut out = Vec::new();
        for (l, _) in self.keys.iter() {
            let id = hex::encode(&Sha256::digest(l.as_bytes())[..8]);
            if l == label || id == id_hex {
                for class in ["private-key", "public-key"] {
                    let (label, id_hex) = (l.clone(), id.clone());
                    out.push(TokenObject {
                        class: class.into(),
                        label,
                        id_hex,
                    });
                }
                if self.certs.contains_key(l) {
                    let (label, id_hex) = (l.clone(), id.clone());
                    out.push(TokenObject {
                        class: "certificate".into(),
                        label,
                        id_hex,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The mock keeps a key pair whole: destroying its private key destroys the pair.
    fn destroy_object(
        &mut self,
        label: &str,
        id_hex: &str,
        object: &TokenObject,
    ) -> Result<usize, HsmError> {
        let found = self.key_objects(label, id_hex)?.contains(object);
        self.call(format!("destroy_object {} {}", object.class, object.label));
        if found && object.class == "private-key" {
            self.keys.remove(&object.label);
        }
        if found && object.class == "certificate" {
            self.certs.remove(&object.label);
        }
        Ok(usize::from(found))
    }

    fn generate_key_pair(
        &mut self,
        label: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<KeyPairInfo, HsmError> {
        self.need_login("C_GenerateKeyPair")?;
        if self.keys.contains_key(label) {
            return Err(HsmError::new(
                "C_GenerateKeyPair",
                format!("label \"{label}\" exists"),
                "pick a new label",
            ));
        }
        let info = self.info(label, algorithm)?;
        self.call(format!("C_GenerateKeyPair {label}"));
        self.keys.insert(label.to_string(), algorithm);
        Ok(info)
    }

    fn key_pair(&mut self, label: &str) -> Result<KeyPairInfo, HsmError> {
        let algorithm = *self.keys.get(label).ok_or_else(|| {
            HsmError::new(
                "C_FindObjects",
                format!("no key \"{label}\""),
                "check the label",
            )
        })?;
        self.info(label, algorithm)
    }

    fn find_private_keys(
        &mut self,
        query: &crate::script::KeyQuery,
    ) -> Result<Vec<(String, String)>, HsmError> {
        self.need_login("C_FindObjects")?;
        let mut found = Vec::new();
        for (label, algorithm) in &self.keys {
            let info = self.info(label, *algorithm)?;
            let by_label = query.label.as_deref().is_none_or(|l| l == label);
            let by_id = query
                .id
                .as_ref()
                .is_none_or(|id| hex::encode(id) == info.id_hex);
            if by_label && by_id {
                found.push((info.label, info.id_hex));
            }
        }
        Ok(found)
    }

    fn sign(
        &mut self,
        label: &str,
        mechanism: SignMechanism,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        self.need_login("C_Sign")?;
        self.call(format!("C_Sign {label}"));
        let err = |e: &dyn std::fmt::Display| HsmError::new("C_Sign", e.to_string(), "mock defect");
        let algorithm = self.key_pair(label)?.algorithm;
        if mechanism != SignMechanism::EcdsaPrehashed {
            return Err(HsmError::new(
                "C_Sign",
                "the mock signs ECDSA only",
                "use an EC key in tests",
            ));
        }
        use signature::hazmat::PrehashSigner;
        match algorithm {
            KeyAlgorithm::P256 => {
                let key = p256::ecdsa::SigningKey::from_slice(&Sha256::digest(label.as_bytes()))
                    .map_err(|e| err(&e))?;
                let sig: p256::ecdsa::Signature = key.sign_prehash(data).map_err(|e| err(&e))?;
                Ok(sig.to_bytes().to_vec())
            }
            _ => {
                let key = p384::ecdsa::SigningKey::from_slice(&Sha384::digest(label.as_bytes()))
                    .map_err(|e| err(&e))?;
                let sig: p384::ecdsa::Signature = key.sign_prehash(data).map_err(|e| err(&e))?;
                Ok(sig.to_bytes().to_vec())
            }
        }
    }

    fn mechanisms(&mut self) -> Result<Option<Vec<super::capabilities::Offered>>, HsmError> {
        Ok(self.offered.clone())
    }

    /// The PIN pad always takes the right PIN here: the test is about who types it, not what.
    fn login_protected(&mut self) -> Result<(), HsmError> {
        self.call("C_Login(user, protected authentication path)".into());
        if !self.limits.protected_path {
            let mut e = HsmError::new("C_Login", "no PIN pad on this token", "type the PIN");
            e.ckr = "CKR_ARGUMENTS_BAD".into();
            return Err(e);
        }
        self.logged_in = true;
        Ok(())
    }

    fn pin_limits(&mut self) -> Result<PinLimits, HsmError> {
        Ok(self.limits)
    }

    fn login_so(&mut self, pin: &SecretString) -> Result<(), HsmError> {
        self.call("C_Login SO".into());
        self.logged_in = false;
        if pin.expose_secret() != self.so_pin {
            let mut e = HsmError::new("C_Login", "the SO PIN is incorrect", "re-enter it");
            e.ckr = "CKR_PIN_INCORRECT".into();
            return Err(e);
        }
        self.so_logged_in = true;
        Ok(())
    }

    fn set_pin(&mut self, change: PinChange<'_>) -> Result<(), HsmError> {
        let (current, which) = if self.so_logged_in {
            (&mut self.so_pin, "so")
        } else if self.logged_in {
            (&mut self.pin, "user")
        } else {
            return self.need_login("C_SetPIN");
        };
        if change.old.expose_secret() != current.as_str() {
            let mut e = HsmError::new("C_SetPIN", "the old PIN is incorrect", "re-enter it");
            e.ckr = "CKR_PIN_INCORRECT".into();
            return Err(e);
        }
        *current = change.new.expose_secret().to_string();
        self.call(format!("C_SetPIN {which}"));
        Ok(())
    }

    fn init_user_pin(&mut self, new: &SecretString) -> Result<(), HsmError> {
        if !self.so_logged_in {
            let mut e = HsmError::new("C_InitPIN", "not logged in as SO", "log in as SO");
            e.ckr = "CKR_USER_NOT_LOGGED_IN".into();
            return Err(e);
        }
        self.pin = new.expose_secret().to_string();
        self.call("C_InitPIN".into());
        Ok(())
    }

    fn random(&mut self, len: usize) -> Result<Vec<u8>, HsmError> {
        // Deterministic, distinct per call: good enough for a mock, never for a ceremony.
        self.counter += 1;
        let mut out = Vec::with_capacity(len);
        let mut block = 0u64;
        while out.len() < len {
            let mut h = Sha256::new();
            h.update(self.counter.to_be_bytes());
            h.update(block.to_be_bytes());
            out.extend_from_slice(&h.finalize());
            block += 1;
        }
        out.truncate(len);
        Ok(out)
    }

    fn store_certificate(
        &mut self,
        key_label: &str,
        _subject_der: &[u8],
        der: &[u8],
    ) -> Result<(), HsmError> {
        self.need_login("C_CreateObject")?;
        self.key_pair(key_label)?;
        self.call(format!("C_CreateObject certificate {key_label}"));
        self.certs.insert(key_label.to_string(), der.to_vec());
        Ok(())
    }

    fn certificates(&mut self) -> Result<Vec<(String, Vec<u8>)>, HsmError> {
        Ok(self
            .certs
            .iter()
            .map(|(label, der)| (hex::encode(label), der.clone()))
            .collect())
    }

    fn private_key_label(&mut self, id_hex: &str) -> Result<String, HsmError> {
        self.need_login("C_FindObjects")?;
        hex::decode(id_hex)
            .ok()
            .and_then(|l| String::from_utf8(l).ok())
            .filter(|l| self.keys.contains_key(l))
            .ok_or_else(|| HsmError::new("C_FindObjects", "no such key", "check the id"))
    }
}

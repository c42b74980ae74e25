//! PKCS#11 implementation of [`super::Hsm`] over cryptoki. The `pkcs11` module (this file and
//! `pkcs11/`) is the only place in keyrite that imports cryptoki: `module` loads modules and
//! provisions tokens, `keys` finds and reads key objects, and `select` (token selection) and `fixes`
//! (CKR names and fixes) are pure helpers.
//!
//! Object handles never outlive a call: handles to private objects die at logout, so every operation
//! finds its objects afresh by label and CKA_ID.

mod agree;
mod certs;
mod data;
mod destroy;
pub(super) mod fixes;
mod keys;
mod mechanisms;
mod module;
mod reauth;
mod select;
mod wrap;

pub use mechanisms::SignQuirks;
pub use module::{finalize_modules, finish_token, init_token, list_tokens, no_module_loaded};
pub use select::wanted_label;

use super::capabilities::{Mech, Offered};
use super::{
    AgreementKey, Hsm, HsmError, KeyPairInfo, PinChange, PinLimits, PinState, SignMechanism,
    TokenIdentity, TokenObject,
};
use crate::script::{KeyAlgorithm, TokenSelector};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;

/// CKA_ID length: random, so that two ceremonies never produce colliding IDs.
const KEY_ID_LEN: usize = 16;

/// An open R/W session on one token. `Send`, so a driver thread may own it; not `Sync`.
pub struct Pkcs11Hsm {
    session: Session,
    identity: TokenIdentity,
    slot: Slot,
    /// The token's ceremony mechanisms, read once (C_GetMechanismList/Info).
    offered: Option<Vec<super::capabilities::Offered>>,
    quirks: SignQuirks,
    /// Said once at activation (e.g. a serial other tokens share).
    warnings: Vec<String>,
    /// The PIN of the user login, for keys that need a context-specific login per signature
    /// (CKA_ALWAYS_AUTHENTICATE; `reauth`). Zeroized on drop.
    user_pin: Option<SecretString>,
}

const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Pkcs11Hsm>();
};

/// The one place a cryptoki error becomes an [`HsmError`]: the PKCS#11 function, the CKR name and the
/// operator's fix. `function` is used when cryptoki failed before reaching the module.
fn hsm_error(err: CkError, function: &str, what: String) -> HsmError {
    match err {
        CkError::Pkcs11(rv, f) => {
            let function = format!("C_{f:?}");
            let ckr = match rv {
                RvError::VendorDefined(code) => format!("CKR_VENDOR_DEFINED+0x{code:x}"),
                RvError::UnknownErrorCode(code) => format!("CKR 0x{code:x}"),
                other => fixes::ckr_from_variant(&format!("{other:?}")),
            };
            let fix = fixes::fix_for(&function, &ckr);
            HsmError {
                function,
                ckr,
                what,
                fix,
            }
        }
        other => HsmError::new(
            function,
            format!("{what}: {other}"),
            "keyrite and the PKCS#11 module disagree: check the module path and version, and \
             report it with the log",
        ),
    }
}

trait Ck<T> {
    fn ck(self, function: &str, what: impl FnOnce() -> String) -> Result<T, HsmError>;
}

impl<T> Ck<T> for cryptoki::error::Result<T> {
    fn ck(self, function: &str, what: impl FnOnce() -> String) -> Result<T, HsmError> {
        self.map_err(|e| hsm_error(e, function, what()))
    }
}

impl Pkcs11Hsm {
    /// Load the module (once per process), select exactly one initialised token and open a R/W session.
    pub fn open(module_path: &str, selector: &TokenSelector) -> Result<Pkcs11Hsm, HsmError> {
        super::timed::measure("open", || Self::open_untimed(module_path, selector))
    }

    /// [`Self::open`] wrapped so that every later call is timed too (B2 in docs/performance.md).
    pub fn open_timed(
        module_path: &str,
        selector: &TokenSelector,
    ) -> Result<super::timed::TimedHsm<Pkcs11Hsm>, HsmError> {
        Self::open(module_path, selector).map(super::timed::TimedHsm)
    }

    fn open_untimed(module_path: &str, selector: &TokenSelector) -> Result<Pkcs11Hsm, HsmError> {
        let filter = select::TokenFilter::from_selector(selector)?;
        let ctx = module::loaded_module(module_path)?;
        let tokens = module::initialised_tokens(&ctx, module_path)?;
        let matching: Vec<&(Slot, TokenIdentity)> =
            tokens.iter().filter(|(_, t)| filter.matches(t)).collect();
        let [(slot, identity)] = matching.as_slice() else {
            let seen: Vec<&TokenIdentity> = tokens.iter().map(|(_, t)| t).collect();
            let matching: Vec<&TokenIdentity> = matching.iter().map(|(_, t)| t).collect();
            return Err(select::selection_error(
                selector,
                module_path,
                &seen,
                &matching,
            ));
        };
        let session = ctx.open_rw_session(*slot).ck("C_OpenSession", || {
            format!("open token \"{}\"", identity.token_label)
        })?;
        let seen: Vec<&TokenIdentity> = tokens.iter().map(|(_, t)| t).collect();
        let warnings = select::duplicate_serial(&seen, identity)
            .into_iter()
            .collect();
        Ok(Pkcs11Hsm {
            session,
            identity: identity.clone(),
            slot: *slot,
            offered: None,
            quirks: SignQuirks::default(),
            warnings,
            user_pin: None,
        })
    }

    fn token(&self) -> &str {
        &self.identity.token_label
    }

    /// Private objects are invisible before login, so "not found" would mislead: say "log in" instead.
    fn require_login(&self, doing: &str) -> Result<(), HsmError> {
        let info = self
            .session
            .get_session_info()
            .ck("C_GetSessionInfo", || doing.into())?;
        match info.session_state() {
            SessionState::RwUser | SessionState::RoUser => Ok(()),
            _ => Err(HsmError::new(
                doing,
                format!("not logged in to token \"{}\" as user", self.token()),
                "log in (activate the token with the user PIN) before this step",
            )),
        }
    }
}

impl Hsm for Pkcs11Hsm {
    fn identity(&self) -> &TokenIdentity {
        &self.identity
    }

    /// A successful login always means this PIN was checked just now: if the token is already logged
    /// in (login state is per process and token), log out and log in again.
    fn login(&mut self, pin: &SecretString) -> Result<(), HsmError> {
        let what = || format!("log in to token \"{}\" as user", self.identity.token_label);
        let result = match self.session.login(UserType::User, Some(pin)) {
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                self.session.logout().ck("C_Logout", what)?;
                self.session
                    .login(UserType::User, Some(pin))
                    .ck("C_Login", what)
            }
            other => other.ck("C_Login", what),
        };
        self.user_pin = result.is_ok().then(|| pin.clone());
        result
    }

    fn logout(&mut self) -> Result<(), HsmError> {
        self.user_pin = None;
        match self.session.logout() {
            Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) => Ok(()),
            other => other.ck("C_Logout", || {
                format!("log out of token \"{}\"", self.token())
            }),
        }
    }

    fn label_exists(&mut self, label: &str) -> Result<bool, HsmError> {
        let found = self.find(
            &[Attribute::Label(label.as_bytes().to_vec())],
            &format!("look for \"{label}\""),
        )?;
        Ok(!found.is_empty())
    }

    fn generate_key_pair(
        &mut self,
        label: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<KeyPairInfo, HsmError> {
        let doing = format!("generate {algorithm} key pair \"{label}\"");
        self.require_login(&doing)?;
        if label.is_empty() {
            return Err(HsmError::new(
                doing,
                "the key label is empty",
                "give the key a label in the script",
            ));
        }
        if self.label_exists(label)? {
            return Err(HsmError::new(
                doing,
                format!(
                    "token \"{}\" already has an object labelled \"{label}\"; nothing was generated",
                    self.token()
                ),
                "choose a new key label in the script; an old key is removed only by a witnessed \
                 key-destruction ceremony",
            ));
        }
        let id = self.random(KEY_ID_LEN)?;
        let (mechanism, public_template, private_template) =
            keys::templates(label, &id, algorithm).ck("C_GenerateKeyPair", || doing.clone())?;
        let (public, private) = self
            .session
            .generate_key_pair(&mechanism, &public_template, &private_template)
            .ck("C_GenerateKeyPair", || doing.clone())?;
        self.check_key_protection(private, label)?;
        let info = self.describe(label, private, public).map_err(|mut e| {
            e.what = format!(
                "{} (the key pair was generated; inspect it before retrying)",
                e.what
            );
            e
        })?;
        if info.algorithm != algorithm {
            return Err(HsmError::new(
                doing,
                format!("the token generated a {} key instead", info.algorithm),
                "stop: the HSM does not honour the requested parameters; report it to the vendor",
            ));
        }
        Ok(info)
    }

    fn key_pair(&mut self, label: &str) -> Result<KeyPairInfo, HsmError> {
        self.require_login(&format!("read key pair \"{label}\""))?;
        let (private, public) = self.find_pair(label)?;
        self.describe(label, private, public)
    }

    fn find_private_keys(
        &mut self,
        query: &crate::script::KeyQuery,
    ) -> Result<Vec<(String, String)>, HsmError> {
        self.private_keys(query)
    }

    fn sign(
        &mut self,
        label: &str,
        mechanism: SignMechanism,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let doing = format!("sign with \"{label}\"");
        self.require_login(&doing)?;
        let (hashed, key_type) = match mechanism {
            SignMechanism::RsaPkcs1Sha256 => (Some(Mech::Sha256RsaPkcs), KeyType::RSA),
            SignMechanism::RsaPkcs1Sha384 => (Some(Mech::Sha384RsaPkcs), KeyType::RSA),
            // A message passed by mistake would be silently truncated into a valid-looking signature.
            SignMechanism::EcdsaPrehashed if ![32, 48, 64].contains(&data.len()) => {
                return Err(HsmError::new(
                    doing,
                    format!(
                        "ECDSA signs a SHA-256/384/512 digest, got {} bytes",
                        data.len()
                    ),
                    "hash the data on the host first (this is a keyrite bug if you see it)",
                ))
            }
            SignMechanism::EcdsaPrehashed => (None, KeyType::EC),
            SignMechanism::MlDsa => (None, KeyType::ML_DSA),
        };
        let template = [
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let key = self.find_one(&template, "private key", label)?;
        // SoftHSM answers a mismatch with CKR_GENERAL_ERROR from C_Sign, which reads like a broken
        // device: check the key type first and say what is actually wrong.
        if self.key_type(key, label)? != Some(key_type) {
            let kind = if key_type == KeyType::RSA {
                "RSA"
            } else if key_type == KeyType::ML_DSA {
                "ML-DSA"
            } else {
                "EC"
            };
            return Err(HsmError::new(
                doing,
                format!("\"{label}\" is not an {kind} key, so it cannot sign with {mechanism:?}"),
                "check that the script's signature algorithm matches the key's algorithm",
            ));
        }
        match hashed {
            Some(hashed) => self.sign_rsa(key, hashed, label, data),
            None if mechanism == SignMechanism::MlDsa => self.sign_ml_dsa(key, label, data),
            None => self.sign_ecdsa(key, data, label, &doing),
        }
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    fn mechanisms(&mut self) -> Result<Option<Vec<Offered>>, HsmError> {
        self.offered().map(Some)
    }

    /// No PIN from keyrite: C_Login with a NULL PIN, which the token takes on its own pad or PED.
    fn login_protected(&mut self) -> Result<(), HsmError> {
        let what = || {
            format!(
                "log in to token \"{}\" on its PIN pad",
                self.identity.token_label
            )
        };
        match self.session.login(UserType::User, None) {
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                self.session.logout().ck("C_Logout", what)?;
                self.session.login(UserType::User, None).ck("C_Login", what)
            }
            other => other.ck("C_Login", what),
        }
    }

    fn store_certificate(
        &mut self,
        key_label: &str,
        subject_der: &[u8],
        der: &[u8],
    ) -> Result<(), HsmError> {
        self.store_cert(key_label, subject_der, der)
    }

    fn certificates(&mut self) -> Result<Vec<(String, Vec<u8>)>, HsmError> {
        self.certs()
    }

    fn private_key_label(&mut self, id_hex: &str) -> Result<String, HsmError> {
        self.label_for_id(id_hex)
    }

    fn random(&mut self, len: usize) -> Result<Vec<u8>, HsmError> {
        let what = || {
            format!(
                "draw {len} random bytes from token \"{}\"",
                self.identity.token_label
            )
        };
        let n = u32::try_from(len)
            .map_err(|_| HsmError::new("C_GenerateRandom", what(), "ask for fewer random bytes"))?;
        self.session
            .generate_random_vec(n)
            .ck("C_GenerateRandom", what)
    }

    fn write_data(&mut self, label: &str, value: &[u8]) -> Result<(), HsmError> {
        self.write_data_object(label, value)
    }

    fn read_data(&mut self, label: &str) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, HsmError> {
        self.read_data_object(label)
    }

    fn data_labels(&mut self) -> Result<Vec<String>, HsmError> {
        self.quorum_data_labels()
    }

    fn destroy_data(&mut self, label: &str) -> Result<usize, HsmError> {
        self.destroy_data_objects(label)
    }

    fn key_objects(&mut self, label: &str, id_hex: &str) -> Result<Vec<TokenObject>, HsmError> {
        self.list_key_objects(label, id_hex)
    }

    fn destroy_object(
        &mut self,
        label: &str,
        id_hex: &str,
        object: &TokenObject,
    ) -> Result<usize, HsmError> {
        self.destroy_key_object(label, id_hex, object)
    }

    fn pin_state(&mut self) -> Result<PinState, HsmError> {
        self.token_pin_state()
    }

    fn pin_limits(&mut self) -> Result<PinLimits, HsmError> {
        self.token_pin_limits()
    }

    fn login_so(&mut self, pin: &SecretString) -> Result<(), HsmError> {
        self.so_login(pin)
    }

    fn set_pin(&mut self, change: PinChange<'_>) -> Result<(), HsmError> {
        self.session_set_pin(change)
    }

    fn init_user_pin(&mut self, new: &SecretString) -> Result<(), HsmError> {
        self.so_init_pin(new)
    }

    fn agreement_key(&mut self, label: &str) -> Result<Option<AgreementKey>, HsmError> {
        self.find_agreement_key(label)
    }

    fn generate_agreement_key(&mut self, label: &str) -> Result<AgreementKey, HsmError> {
        self.new_agreement_key(label)
    }

    fn ecdh(&mut self, label: &str, peer: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, HsmError> {
        self.ecdh_derive(label, peer)
    }

    fn destroy_agreement_key(&mut self, label: &str) -> Result<usize, HsmError> {
        self.destroy_agreement(label)
    }

    fn wrap_mechanism(&mut self) -> Result<Option<super::WrapMechanism>, HsmError> {
        self.offered_wrap()
    }

    fn generate_backup_key_pair(
        &mut self,
        label: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<KeyPairInfo, HsmError> {
        self.backup_key_pair(label, algorithm)
    }

    fn import_trusted_kek(
        &mut self,
        label: &str,
        kek: &[u8],
        so_pin: &SecretString,
        usage: super::KekUse,
    ) -> Result<(), HsmError> {
        self.trusted_kek(label, kek, so_pin, usage)
    }

    fn wrap_key(
        &mut self,
        kek_label: &str,
        key_label: &str,
        mechanism: super::WrapMechanism,
    ) -> Result<Vec<u8>, HsmError> {
        self.wrap(kek_label, key_label, mechanism)
    }

    fn unwrap_key(
        &mut self,
        kek_label: &str,
        blob: &[u8],
        label: &str,
        algorithm: KeyAlgorithm,
        mechanism: super::WrapMechanism,
    ) -> Result<super::UnwrappedKey, HsmError> {
        self.unwrap(kek_label, blob, label, algorithm, mechanism)
    }

    fn create_public_key(
        &mut self,
        label: &str,
        id_hex: &str,
        spki_der: &[u8],
    ) -> Result<(), HsmError> {
        self.public_key_object(label, id_hex, spki_der)
    }

    fn destroy_labelled(&mut self, label: &str, secret: bool) -> Result<usize, HsmError> {
        self.destroy_all(label, secret)
    }

    fn secret_key_count(&mut self) -> Result<usize, HsmError> {
        self.secret_keys()
    }
}

//! PKCS#11 implementation of [`super::Hsm`] over cryptoki. This file is the only one in keyrite that
//! imports cryptoki; `select` (token selection) and `fixes` (CKR names and fixes) are pure helpers.
//!
//! Object handles never outlive a call: handles to private objects die at logout, so every operation
//! finds its objects afresh by label and CKA_ID.

mod fixes;
mod select;

use super::{spki, Hsm, HsmError, KeyAttributes, KeyPairInfo, SignMechanism, TokenIdentity};
use crate::script::{KeyAlgorithm, TokenSelector};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Info, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::{Slot, TokenInfo};
use cryptoki::types::Ulong;
use secrecy::SecretString;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// CKA_ID length: random, so that two ceremonies never produce colliding IDs.
const KEY_ID_LEN: usize = 16;
/// CK_TOKEN_INFO.label is 32 bytes; cryptoki silently truncates longer labels.
const MAX_TOKEN_LABEL: usize = 32;

/// An open R/W session on one token. `Send`, so a driver thread may own it; not `Sync`.
pub struct Pkcs11Hsm {
    session: Session,
    identity: TokenIdentity,
}

const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Pkcs11Hsm>();
};

/// One initialised module, shared by every session in the process. A second C_Initialize would return
/// CKR_CRYPTOKI_ALREADY_INITIALIZED, and C_Finalize would kill everyone's sessions, so keyrite
/// initialises each module once and never finalizes it (the OS unloads it at exit).
#[derive(Clone)]
struct Module {
    ctx: Pkcs11,
    /// Serialises provisioning: two concurrent C_InitToken calls would pick the same free slot.
    provisioning: Arc<Mutex<()>>,
}

/// Keyed by canonical path, so two spellings of one library (symlinks) share one context.
fn loaded_module(module_path: &str) -> Result<Module, HsmError> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Module>>> = OnceLock::new();
    let path = Path::new(module_path);
    if !path.is_file() {
        let fix = if module_path.to_ascii_lowercase().contains("softhsm") {
            "install SoftHSM2 (Debian package softhsm2: apt-get install softhsm2), or correct the \
             module path in the script's [hsm] section"
        } else {
            "install the HSM vendor's PKCS#11 library, or correct the module path in the script's \
             [hsm] section"
        };
        return Err(HsmError::new(
            "load module",
            format!("the PKCS#11 module {module_path} does not exist"),
            fix,
        ));
    }
    let canonical = std::fs::canonicalize(path).map_err(|e| {
        HsmError::new(
            "load module",
            format!("cannot resolve {module_path}: {e}"),
            "check the module path and its permissions",
        )
    })?;
    // A poisoned lock only means another thread panicked; the map holds only fully set-up entries.
    let mut modules = MODULES.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(module) = modules.get(&canonical) {
        return Ok(module.clone());
    }
    let ctx = Pkcs11::new(&canonical).map_err(|e| {
        HsmError::new(
            "load module",
            format!("cannot load {module_path} as a PKCS#11 module: {e}"),
            "check that the file is the PKCS#11 library for this machine's architecture \
             (`file` and `ldd` on it show both)",
        )
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Something else in the process (e.g. a proxy loading the same library) got there first.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(hsm_error(e, "C_Initialize", format!("initialise {module_path}"))),
    }
    let module = Module { ctx, provisioning: Arc::new(Mutex::new(())) };
    modules.insert(canonical, module.clone());
    Ok(module)
}

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
            HsmError { function, ckr, what, fix }
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

fn version(v: cryptoki::types::Version) -> String {
    format!("{}.{}", v.major(), v.minor())
}

/// PKCS#11 strings are blank-padded (some tokens pad with NUL).
fn trimmed(s: &str) -> String {
    s.trim_end_matches([' ', '\0']).to_string()
}

fn identity(module_path: &str, lib: &Info, token: &TokenInfo) -> TokenIdentity {
    TokenIdentity {
        module_path: module_path.to_string(),
        library_description: trimmed(lib.library_description()),
        library_manufacturer: trimmed(lib.manufacturer_id()),
        library_version: version(lib.library_version()),
        token_label: trimmed(token.label()),
        manufacturer: trimmed(token.manufacturer_id()),
        model: trimmed(token.model()),
        serial: trimmed(token.serial_number()),
        hardware_version: version(token.hardware_version()),
        firmware_version: version(token.firmware_version()),
    }
}

/// Slots holding a token, with its info. A slot that vanishes between C_GetSlotList and
/// C_GetTokenInfo (SoftHSM renumbers slots when a token is initialised) is skipped.
fn present_tokens(ctx: &Pkcs11) -> Result<Vec<(Slot, TokenInfo)>, HsmError> {
    let slots = ctx.get_slots_with_token().ck("C_GetSlotList", || "list slots".into())?;
    let mut out = Vec::new();
    for slot in slots {
        match ctx.get_token_info(slot) {
            Ok(info) => out.push((slot, info)),
            Err(CkError::Pkcs11(
                RvError::SlotIdInvalid | RvError::TokenNotPresent | RvError::DeviceRemoved,
                _,
            )) => {}
            Err(e) => return Err(hsm_error(e, "C_GetTokenInfo", format!("read the token in {slot}"))),
        }
    }
    Ok(out)
}

/// Initialised tokens and who they are.
fn initialised_tokens(ctx: &Pkcs11, module_path: &str) -> Result<Vec<(Slot, TokenIdentity)>, HsmError> {
    let lib = ctx.get_library_info().ck("C_GetInfo", || format!("read {module_path}'s info"))?;
    Ok(present_tokens(ctx)?
        .into_iter()
        .filter(|(_, info)| info.token_initialized())
        .map(|(slot, info)| (slot, identity(module_path, &lib, &info)))
        .collect())
}

/// The initialised tokens a module shows, e.g. for `keyrite` to list choices.
pub fn list_tokens(module_path: &str) -> Result<Vec<TokenIdentity>, HsmError> {
    let module = loaded_module(module_path)?;
    Ok(initialised_tokens(&module.ctx, module_path)?.into_iter().map(|(_, t)| t).collect())
}

/// Rehearsal provisioning (SoftHSM throw-away tokens): initialise the first present but uninitialised
/// token with `label` and the SO PIN, set the user PIN, and return the new token's serial.
pub fn init_token(
    module_path: &str,
    label: &str,
    so_pin: &SecretString,
    user_pin: &SecretString,
) -> Result<String, HsmError> {
    const F: &str = "init token";
    if label.is_empty() || label.len() > MAX_TOKEN_LABEL {
        return Err(HsmError::new(
            F,
            format!("token label \"{label}\" must be 1 to {MAX_TOKEN_LABEL} bytes"),
            "choose a shorter token label",
        ));
    }
    let module = loaded_module(module_path)?;
    let _only_one = module.provisioning.lock().unwrap_or_else(PoisonError::into_inner);
    let ctx = &module.ctx;
    if initialised_tokens(ctx, module_path)?.iter().any(|(_, t)| t.token_label == label) {
        return Err(HsmError::new(
            F,
            format!("a token labelled \"{label}\" already exists in {module_path}"),
            "choose another token label; labels must be unique to select tokens by label",
        ));
    }
    let Some((free, _)) = present_tokens(ctx)?.into_iter().find(|(_, info)| !info.token_initialized())
    else {
        return Err(HsmError::new(
            F,
            format!("{module_path} shows no uninitialised token"),
            "free a slot: with SoftHSM, check directories.tokendir in SOFTHSM2_CONF is writable",
        ));
    };
    ctx.init_token(free, so_pin, label).ck("C_InitToken", || format!("initialise token \"{label}\""))?;
    // SoftHSM moves a newly initialised token to a new slot id: find it again by label.
    let Some((slot, token)) =
        initialised_tokens(ctx, module_path)?.into_iter().find(|(_, t)| t.token_label == label)
    else {
        return Err(HsmError::new(
            F,
            format!("token \"{label}\" was initialised but the module no longer shows it"),
            "list the tokens (pkcs11-tool -L) and check the module's configuration",
        ));
    };
    let session = ctx.open_rw_session(slot).ck("C_OpenSession", || format!("open token \"{label}\""))?;
    let what = || format!("set the user PIN of token \"{label}\"");
    session.login(UserType::So, Some(so_pin)).ck("C_Login", what)?;
    session.init_pin(user_pin).ck("C_InitPIN", what)?;
    session.logout().ck("C_Logout", what)?;
    Ok(token.serial)
}

impl Pkcs11Hsm {
    /// Load the module (once per process), select exactly one initialised token and open a R/W session.
    pub fn open(module_path: &str, selector: &TokenSelector) -> Result<Pkcs11Hsm, HsmError> {
        let filter = select::TokenFilter::from_selector(selector)?;
        let module = loaded_module(module_path)?;
        let tokens = initialised_tokens(&module.ctx, module_path)?;
        let matching: Vec<&(Slot, TokenIdentity)> =
            tokens.iter().filter(|(_, t)| filter.matches(t)).collect();
        let [(slot, identity)] = matching.as_slice() else {
            let seen: Vec<&TokenIdentity> = tokens.iter().map(|(_, t)| t).collect();
            let matching: Vec<&TokenIdentity> = matching.iter().map(|(_, t)| t).collect();
            return Err(select::selection_error(selector, module_path, &seen, &matching));
        };
        let session = module
            .ctx
            .open_rw_session(*slot)
            .ck("C_OpenSession", || format!("open token \"{}\"", identity.token_label))?;
        Ok(Pkcs11Hsm { session, identity: identity.clone() })
    }

    fn token(&self) -> &str {
        &self.identity.token_label
    }

    /// Private objects are invisible before login, so "not found" would mislead: say "log in" instead.
    fn require_login(&self, doing: &str) -> Result<(), HsmError> {
        let info = self.session.get_session_info().ck("C_GetSessionInfo", || doing.into())?;
        match info.session_state() {
            SessionState::RwUser | SessionState::RoUser => Ok(()),
            _ => Err(HsmError::new(
                doing,
                format!("not logged in to token \"{}\" as user", self.token()),
                "log in (activate the token with the user PIN) before this step",
            )),
        }
    }

    fn find(&self, template: &[Attribute], doing: &str) -> Result<Vec<ObjectHandle>, HsmError> {
        self.session.find_objects(template).ck("C_FindObjects", || doing.into())
    }

    fn find_one(&self, template: &[Attribute], what: &str, label: &str) -> Result<ObjectHandle, HsmError> {
        let doing = format!("find the {what} \"{label}\"");
        match self.find(template, &doing)?.as_slice() {
            [one] => Ok(*one),
            [] => Err(HsmError::new(
                doing,
                format!("token \"{}\" has no {what} labelled \"{label}\"", self.token()),
                "check the key label in the script (pkcs11-tool --list-objects shows the token's objects)",
            )),
            many => Err(HsmError::new(
                doing,
                format!("token \"{}\" has {} {what}s labelled \"{label}\"", self.token(), many.len()),
                "labels must be unique on the token: resolve the duplicates before the ceremony",
            )),
        }
    }

    /// The private key, then its public half by CKA_ID (by label when the key has no CKA_ID).
    fn find_pair(&self, label: &str) -> Result<(ObjectHandle, ObjectHandle), HsmError> {
        let label_attr = Attribute::Label(label.as_bytes().to_vec());
        let private = self.find_one(
            &[Attribute::Class(ObjectClass::PRIVATE_KEY), label_attr.clone()],
            "private key",
            label,
        )?;
        let id = self.id_of(private, label)?;
        let by = if id.is_empty() { label_attr } else { Attribute::Id(id) };
        let public = self.find_one(&[Attribute::Class(ObjectClass::PUBLIC_KEY), by], "public key", label)?;
        Ok((private, public))
    }

    fn attributes(
        &self,
        object: ObjectHandle,
        types: &[AttributeType],
        label: &str,
    ) -> Result<Vec<Attribute>, HsmError> {
        self.session
            .get_attributes(object, types)
            .ck("C_GetAttributeValue", || format!("read the attributes of \"{label}\""))
    }

    fn id_of(&self, object: ObjectHandle, label: &str) -> Result<Vec<u8>, HsmError> {
        let attrs = self.attributes(object, &[AttributeType::Id], label)?;
        Ok(attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::Id(id) => Some(id),
                _ => None,
            })
            .unwrap_or_default())
    }

    /// Public key as SPKI plus the evidence attributes of the private key.
    fn describe(&self, label: &str, private: ObjectHandle, public: ObjectHandle) -> Result<KeyPairInfo, HsmError> {
        use AttributeType as T;
        let doing = format!("read key pair \"{label}\"");
        let mut attributes =
            KeyAttributes { local: None, never_extractable: None, always_sensitive: None, extractable: None, sensitive: None };
        let mut id = Vec::new();
        let mut key_type = None;
        let wanted = [T::Id, T::KeyType, T::Local, T::NeverExtractable, T::AlwaysSensitive, T::Extractable, T::Sensitive];
        for attr in self.attributes(private, &wanted, label)? {
            match attr {
                Attribute::Id(v) => id = v,
                Attribute::KeyType(v) => key_type = Some(v),
                Attribute::Local(v) => attributes.local = Some(v),
                Attribute::NeverExtractable(v) => attributes.never_extractable = Some(v),
                Attribute::AlwaysSensitive(v) => attributes.always_sensitive = Some(v),
                Attribute::Extractable(v) => attributes.extractable = Some(v),
                Attribute::Sensitive(v) => attributes.sensitive = Some(v),
                _ => {}
            }
        }
        let unsupported = |what: String| {
            HsmError::new(
                doing.clone(),
                what,
                "keyrite handles RSA-3072, RSA-4096, P-256 and P-384 keys: name a key of one of those",
            )
        };
        let (algorithm, spki_der) = if key_type == Some(KeyType::EC) {
            let (mut params, mut point) = (Vec::new(), Vec::new());
            for attr in self.attributes(public, &[T::EcParams, T::EcPoint], label)? {
                match attr {
                    Attribute::EcParams(v) => params = v,
                    Attribute::EcPoint(v) => point = v,
                    _ => {}
                }
            }
            let algorithm = [KeyAlgorithm::P256, KeyAlgorithm::P384]
                .into_iter()
                .find(|alg| spki::ec_params_der(*alg).as_deref() == Some(params.as_slice()))
                .ok_or_else(|| unsupported(format!("\"{label}\" is on a curve keyrite does not support")))?;
            (algorithm, spki::ec_spki_der(algorithm, &point))
        } else if key_type == Some(KeyType::RSA) {
            let (mut modulus, mut exponent) = (Vec::new(), Vec::new());
            for attr in self.attributes(public, &[T::Modulus, T::PublicExponent], label)? {
                match attr {
                    Attribute::Modulus(v) => modulus = v,
                    Attribute::PublicExponent(v) => exponent = v,
                    _ => {}
                }
            }
            let algorithm = match rsa_bits(&modulus) {
                3072 => KeyAlgorithm::Rsa3072,
                4096 => KeyAlgorithm::Rsa4096,
                bits => return Err(unsupported(format!("\"{label}\" is an RSA-{bits} key"))),
            };
            (algorithm, spki::rsa_spki_der(&modulus, &exponent))
        } else {
            return Err(unsupported(format!("\"{label}\" is neither an RSA nor an EC key")));
        };
        let spki_der = spki_der.map_err(|e| {
            HsmError::new(doing.clone(), format!("the token's public key is malformed: {e}"), "report this to the HSM vendor")
        })?;
        Ok(KeyPairInfo { label: label.to_string(), id_hex: hex::encode(id), algorithm, spki_der, attributes })
    }
}

/// Bit length of a big-endian unsigned integer.
fn rsa_bits(modulus: &[u8]) -> usize {
    let digits = modulus.iter().skip_while(|b| **b == 0).collect::<Vec<_>>();
    digits.first().map_or(0, |top| digits.len() * 8 - top.leading_zeros() as usize)
}

impl Hsm for Pkcs11Hsm {
    fn identity(&self) -> &TokenIdentity {
        &self.identity
    }

    /// A successful login always means this PIN was checked just now: if the token is already logged
    /// in (login state is per process and token), log out and log in again.
    fn login(&mut self, pin: &SecretString) -> Result<(), HsmError> {
        let what = || format!("log in to token \"{}\" as user", self.identity.token_label);
        match self.session.login(UserType::User, Some(pin)) {
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                self.session.logout().ck("C_Logout", what)?;
                self.session.login(UserType::User, Some(pin)).ck("C_Login", what)
            }
            other => other.ck("C_Login", what),
        }
    }

    fn logout(&mut self) -> Result<(), HsmError> {
        match self.session.logout() {
            Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) => Ok(()),
            other => other.ck("C_Logout", || format!("log out of token \"{}\"", self.token())),
        }
    }

    fn label_exists(&mut self, label: &str) -> Result<bool, HsmError> {
        let found = self.find(&[Attribute::Label(label.as_bytes().to_vec())], &format!("look for \"{label}\""))?;
        Ok(!found.is_empty())
    }

    fn generate_key_pair(&mut self, label: &str, algorithm: KeyAlgorithm) -> Result<KeyPairInfo, HsmError> {
        let doing = format!("generate {algorithm} key pair \"{label}\"");
        self.require_login(&doing)?;
        if label.is_empty() {
            return Err(HsmError::new(doing, "the key label is empty", "give the key a label in the script"));
        }
        if self.label_exists(label)? {
            return Err(HsmError::new(
                doing,
                format!("token \"{}\" already has an object labelled \"{label}\"; nothing was generated", self.token()),
                "choose a new key label in the script; an old key is removed only by a witnessed \
                 key-destruction ceremony",
            ));
        }
        let id = self.random(KEY_ID_LEN)?;
        let common = |private: bool| {
            vec![
                Attribute::Token(true),
                Attribute::Private(private),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(id.clone()),
            ]
        };
        let mut private_template = common(true);
        private_template.extend([
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
        ]);
        let mut public_template = common(false);
        public_template.extend([Attribute::Verify(true), Attribute::Encrypt(false), Attribute::Wrap(false)]);
        let mechanism = match spki::ec_params_der(algorithm) {
            Some(params) => {
                public_template.push(Attribute::EcParams(params));
                Mechanism::EccKeyPairGen
            }
            None => {
                let bits = Ulong::try_from(algorithm.bits() as usize).ck("C_GenerateKeyPair", || doing.clone())?;
                public_template.push(Attribute::ModulusBits(bits));
                public_template.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
                Mechanism::RsaPkcsKeyPairGen
            }
        };
        let (public, private) = self
            .session
            .generate_key_pair(&mechanism, &public_template, &private_template)
            .ck("C_GenerateKeyPair", || doing.clone())?;
        let info = self.describe(label, private, public).map_err(|mut e| {
            e.what = format!("{} (the key pair was generated; inspect it before retrying)", e.what);
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

    fn sign(&mut self, label: &str, mechanism: SignMechanism, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        let doing = format!("sign with \"{label}\"");
        self.require_login(&doing)?;
        let (mech, key_type) = match mechanism {
            SignMechanism::RsaPkcs1Sha256 => (Mechanism::Sha256RsaPkcs, KeyType::RSA),
            SignMechanism::RsaPkcs1Sha384 => (Mechanism::Sha384RsaPkcs, KeyType::RSA),
            // A message passed by mistake would be silently truncated into a valid-looking signature.
            SignMechanism::EcdsaPrehashed if ![32, 48, 64].contains(&data.len()) => {
                return Err(HsmError::new(
                    doing,
                    format!("ECDSA signs a SHA-256/384/512 digest, got {} bytes", data.len()),
                    "hash the data on the host first (this is a keyrite bug if you see it)",
                ))
            }
            SignMechanism::EcdsaPrehashed => (Mechanism::Ecdsa, KeyType::EC),
        };
        let template = [Attribute::Class(ObjectClass::PRIVATE_KEY), Attribute::Label(label.as_bytes().to_vec())];
        let key = self.find_one(&template, "private key", label)?;
        // SoftHSM answers a mismatch with CKR_GENERAL_ERROR from C_Sign, which reads like a broken
        // device: check the key type first and say what is actually wrong.
        let actual = self.attributes(key, &[AttributeType::KeyType], label)?.into_iter().find_map(|a| match a {
            Attribute::KeyType(t) => Some(t),
            _ => None,
        });
        if actual != Some(key_type) {
            return Err(HsmError::new(
                doing,
                format!(
                    "\"{label}\" is not an {} key, so it cannot sign with {mechanism:?}",
                    if key_type == KeyType::RSA { "RSA" } else { "EC" }
                ),
                "check that the script's signature algorithm matches the key's algorithm",
            ));
        }
        self.session.sign(&mech, key, data).ck("C_Sign", || doing.clone())
    }

    fn random(&mut self, len: usize) -> Result<Vec<u8>, HsmError> {
        let what = || format!("draw {len} random bytes from token \"{}\"", self.identity.token_label);
        let n = u32::try_from(len)
            .map_err(|_| HsmError::new("C_GenerateRandom", what(), "ask for fewer random bytes"))?;
        self.session.generate_random_vec(n).ck("C_GenerateRandom", what)
    }
}

//! HSM access. `pkcs11.rs` is the only place in keyrite that imports cryptoki; everything else
//! talks to the [`Hsm`] trait, so the driver and tests can use the in-memory [`mock::MockHsm`].

pub mod capabilities;
pub mod faulty;
#[cfg(test)]
mod forwarding_tests;
pub mod mock;
pub mod pkcs11;
pub mod spki;
pub mod timed;

use crate::script::{KeyAlgorithm, KeyQuery, TokenSelector};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

/// A token's user-PIN state flags (CK_TOKEN_INFO), shown to a custodian after a wrong card PIN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinState {
    /// CKF_USER_PIN_COUNT_LOW: a wrong PIN was entered since the last successful login.
    pub count_low: bool,
    /// CKF_USER_PIN_FINAL_TRY: one more wrong PIN locks the token.
    pub final_try: bool,
    /// CKF_USER_PIN_LOCKED: the user PIN is locked.
    pub locked: bool,
}

impl PinState {
    /// What the token says about the remaining tries, when it says anything.
    pub fn describe(&self) -> Option<&'static str> {
        if self.locked {
            Some("the card's PIN is now LOCKED: only its security officer can unlock it")
        } else if self.final_try {
            Some("FINAL TRY: one more wrong PIN locks the card")
        } else if self.count_low {
            Some("the card reports a low PIN retry count (COUNT_LOW)")
        } else {
            None
        }
    }
}

fn unsupported(function: &str) -> HsmError {
    HsmError::new(
        function,
        "this token driver does not support quorum card operations",
        "use a PKCS#11 token (keyrite's PKCS#11 driver) for quorum cards",
    )
}

/// Who and what the HSM is, as the token and module report it. Goes into the log and the report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenIdentity {
    pub module_path: String,
    pub library_description: String,
    pub library_manufacturer: String,
    pub library_version: String,
    pub token_label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub hardware_version: String,
    pub firmware_version: String,
}

/// Attributes read back from the private key after generation: the evidence that the key was made
/// inside the HSM and can never leave it. `None` means the token did not report the attribute.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyAttributes {
    pub local: Option<bool>,
    pub never_extractable: Option<bool>,
    pub always_sensitive: Option<bool>,
    pub extractable: Option<bool>,
    pub sensitive: Option<bool>,
    /// Issue 12: CKA_WRAP_WITH_TRUSTED of a key generated for backup (only trusted keys may wrap
    /// it). Absent for keys that are never extractable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap_with_trusted: Option<bool>,
}

impl KeyAttributes {
    /// The attributes a ceremony key must show: generated on the token, never extractable, always sensitive.
    pub fn prove_in_hsm_generation(&self) -> bool {
        self.local == Some(true)
            && self.never_extractable == Some(true)
            && self.always_sensitive == Some(true)
            && self.extractable == Some(false)
            && self.sensitive == Some(true)
    }

    /// Issue 12: a key generated for backup: made on the token, sensitive, extractable ONLY wrapped
    /// by a trusted key (NEVER_EXTRACTABLE is false by design).
    pub fn prove_backup_generation(&self) -> bool {
        self.local == Some(true)
            && self.always_sensitive == Some(true)
            && self.sensitive == Some(true)
            && self.extractable == Some(true)
            && self.wrap_with_trusted == Some(true)
    }
}

/// A key pair on the token: its public half as DER SubjectPublicKeyInfo, plus the evidence attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairInfo {
    pub label: String,
    /// CKA_ID shared by the private and public objects, hex.
    pub id_hex: String,
    pub algorithm: KeyAlgorithm,
    pub spki_der: Vec<u8>,
    pub attributes: KeyAttributes,
}

/// Signature mechanisms keyrite uses. ECDSA is always "hash on the host, sign the digest" because
/// SoftHSM (and several real HSMs) lack CKM_ECDSA_SHA256/384.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMechanism {
    /// CKM_SHA256_RSA_PKCS over the message.
    RsaPkcs1Sha256,
    /// CKM_SHA384_RSA_PKCS over the message.
    RsaPkcs1Sha384,
    /// CKM_ECDSA over a digest computed by the caller; returns raw r‖s.
    EcdsaPrehashed,
    /// CKM_ML_DSA (pure ML-DSA, empty context as RFC 9881 requires) over the whole message.
    MlDsa,
}

/// The operations a ceremony needs from an HSM. Object handles never escape: keys are named by label.
pub trait Hsm {
    fn identity(&self) -> &TokenIdentity;
    /// C_Login as the user (activation).
    fn login(&mut self, pin: &SecretString) -> Result<(), HsmError>;
    /// C_Logout; a no-op when not logged in.
    fn logout(&mut self) -> Result<(), HsmError>;
    /// True when any object (public, private, data, ...) with this CKA_LABEL exists on the token.
    fn label_exists(&mut self, label: &str) -> Result<bool, HsmError>;
    /// Generate a key pair inside the HSM (Token, Private, Sensitive, Extractable=false, Sign) and read
    /// back the evidence attributes. Refuses a label that already exists.
    fn generate_key_pair(
        &mut self,
        label: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<KeyPairInfo, HsmError>;
    /// Look up an existing key pair by label (public key and evidence attributes).
    fn key_pair(&mut self, label: &str) -> Result<KeyPairInfo, HsmError>;
    /// Every private key matching `query` (CKA_LABEL and/or CKA_ID, AND-ed), as (CKA_LABEL, CKA_ID
    /// hex), so a caller can refuse an ambiguous lookup before anything is signed. Needs a login.
    fn find_private_keys(&mut self, query: &KeyQuery) -> Result<Vec<(String, String)>, HsmError> {
        Err(HsmError::new(
            "C_FindObjects",
            format!("this token driver cannot look up keys by {query}"),
            "use a PKCS#11 token",
        ))
    }
    /// Sign with the private key labelled `label`.
    fn sign(
        &mut self,
        label: &str,
        mechanism: SignMechanism,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError>;
    /// C_GenerateRandom.
    fn random(&mut self, len: usize) -> Result<Vec<u8>, HsmError>;
    /// Store an X.509 certificate (DER) for the key pair labelled `key_label`, with that key's label
    /// and CKA_ID (rehearsal personal cards).
    fn store_certificate(
        &mut self,
        key_label: &str,
        _subject_der: &[u8],
        _der: &[u8],
    ) -> Result<(), HsmError> {
        Err(HsmError::new(
            "store certificate",
            format!("this token cannot store a certificate for \"{key_label}\""),
            "use a PKCS#11 token",
        ))
    }
    /// Every X.509 certificate object on the token as (CKA_ID hex, DER); public, no login needed.
    fn certificates(&mut self) -> Result<Vec<(String, Vec<u8>)>, HsmError> {
        Ok(Vec::new())
    }
    /// The CKA_LABEL of the private key whose CKA_ID is `id_hex` (a personal card's signing key, found
    /// through its certificate). Needs a login.
    fn private_key_label(&mut self, id_hex: &str) -> Result<String, HsmError> {
        Err(HsmError::new(
            "find the card's signing key",
            format!("no private key with CKA_ID {id_hex}"),
            "use a PKCS#11 token as a personal card",
        ))
    }

    /// Quorum cards: create a token, private, non-modifiable CKO_DATA object (needs a user login).
    /// Refuses a label that already exists.
    fn write_data(&mut self, label: &str, value: &[u8]) -> Result<(), HsmError> {
        let _ = (label, value);
        Err(unsupported("write data object"))
    }
    /// The value of the data object labelled `label`, `None` when the token has none.
    fn read_data(&mut self, label: &str) -> Result<Option<Zeroizing<Vec<u8>>>, HsmError> {
        let _ = label;
        Err(unsupported("read data object"))
    }
    /// Labels of the keyrite quorum data objects on the token.
    fn data_labels(&mut self) -> Result<Vec<String>, HsmError> {
        Err(unsupported("list data objects"))
    }
    /// Destroy every data object labelled `label`; returns how many were destroyed.
    fn destroy_data(&mut self, label: &str) -> Result<usize, HsmError> {
        let _ = label;
        Err(unsupported("destroy data object"))
    }
    /// Key destruction: every object whose CKA_LABEL is `label` or whose CKA_ID is `id_hex` (any
    /// class), as the token lists them after a user login.
    fn key_objects(&mut self, label: &str, id_hex: &str) -> Result<Vec<TokenObject>, HsmError> {
        let _ = (label, id_hex);
        Err(unsupported("list a key's objects"))
    }
    /// Destroy the objects of [`Hsm::key_objects`] that equal `object`; returns how many.
    fn destroy_object(
        &mut self,
        label: &str,
        id_hex: &str,
        object: &TokenObject,
    ) -> Result<usize, HsmError> {
        let _ = (label, id_hex, object);
        Err(unsupported("destroy a key's object"))
    }
    /// The user-PIN flags as the token reports them now.
    fn pin_state(&mut self) -> Result<PinState, HsmError> {
        Err(unsupported("read token flags"))
    }
    /// The token's PIN-length limits and whether it takes PINs on its own pad (C_GetTokenInfo; no
    /// login needed).
    fn pin_limits(&mut self) -> Result<PinLimits, HsmError> {
        Err(unsupported("read the token's PIN limits"))
    }
    /// What the room should know about this token before it is used (e.g. its serial is shared).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
    /// The ceremony-key mechanisms the token offers, with their key sizes (C_GetMechanismList,
    /// C_GetMechanismInfo); `None` when this driver cannot tell.
    fn mechanisms(&mut self) -> Result<Option<Vec<capabilities::Offered>>, HsmError> {
        Ok(None)
    }
    /// C_Login as user with no PIN from keyrite: the person types it on the token's own PIN pad or
    /// PED (CKF_PROTECTED_AUTHENTICATION_PATH).
    fn login_protected(&mut self) -> Result<(), HsmError> {
        Err(unsupported("C_Login (protected authentication path)"))
    }
    /// C_Login as the security officer (any user login is ended first).
    fn login_so(&mut self, pin: &SecretString) -> Result<(), HsmError> {
        let _ = pin;
        Err(unsupported("C_Login (SO)"))
    }
    /// C_SetPIN in the current session: the user PIN in a user session, the SO PIN in an SO one.
    fn set_pin(&mut self, change: PinChange<'_>) -> Result<(), HsmError> {
        let _ = change;
        Err(unsupported("C_SetPIN"))
    }
    /// C_InitPIN in the current SO session: the user PIN becomes `new`.
    fn init_user_pin(&mut self, new: &SecretString) -> Result<(), HsmError> {
        let _ = new;
        Err(unsupported("C_InitPIN"))
    }

    /// Sealed shares: the card's P-256 key-agreement key labelled `label`, `None` when the card
    /// has none (needs a user login).
    fn agreement_key(&mut self, label: &str) -> Result<Option<AgreementKey>, HsmError> {
        let _ = label;
        Err(unsupported("find a key-agreement key"))
    }
    /// Generate a P-256 key-agreement key on the card (sensitive, never extractable, CKA_DERIVE
    /// only). Refuses a label that already exists.
    fn generate_agreement_key(&mut self, label: &str) -> Result<AgreementKey, HsmError> {
        let _ = label;
        Err(unsupported("generate a key-agreement key"))
    }
    /// CKM_ECDH1_DERIVE with the card key `label` and the uncompressed point `peer`: the shared
    /// secret's x-coordinate (32 bytes for P-256).
    fn ecdh(&mut self, label: &str, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let _ = (label, peer);
        Err(unsupported("CKM_ECDH1_DERIVE"))
    }
    /// Destroy the key-agreement key pair `label`; returns how many objects were destroyed.
    fn destroy_agreement_key(&mut self, label: &str) -> Result<usize, HsmError> {
        let _ = label;
        Err(unsupported("destroy a key-agreement key"))
    }

    // Issue 12: backup and restore (pkcs11/wrap.rs).
    /// The AES key-wrap mechanism with padding the token offers for C_WrapKey/C_UnwrapKey, `None`
    /// when it offers none keyrite can call.
    fn wrap_mechanism(&mut self) -> Result<Option<WrapMechanism>, HsmError> {
        Err(unsupported("list the key-wrap mechanisms"))
    }
    /// As [`Hsm::generate_key_pair`], but the private key is extractable ONLY under a trusted
    /// wrapping key (CKA_EXTRACTABLE=true, CKA_WRAP_WITH_TRUSTED=true); read back and checked.
    fn generate_backup_key_pair(
        &mut self,
        label: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<KeyPairInfo, HsmError> {
        let _ = (label, algorithm);
        Err(unsupported("generate a key pair for backup"))
    }
    /// Import `kek` (AES-256) as a session-only, public, sensitive, non-extractable secret key
    /// marked CKA_TRUSTED, which only the security officer may do: the user session is ended, the
    /// SO logs in with `so_pin`, creates it and logs out, and the user is logged in again with the
    /// PIN of the earlier user login. Session-only: it dies with the session, even in a crash.
    fn import_trusted_kek(
        &mut self,
        label: &str,
        kek: &[u8],
        so_pin: &SecretString,
        usage: KekUse,
    ) -> Result<(), HsmError> {
        let _ = (label, kek, so_pin, usage);
        Err(unsupported("import a trusted key-encryption key"))
    }
    /// C_WrapKey of the private key `key_label` under the secret key `kek_label`.
    fn wrap_key(
        &mut self,
        kek_label: &str,
        key_label: &str,
        mechanism: WrapMechanism,
    ) -> Result<Vec<u8>, HsmError> {
        let _ = (kek_label, key_label, mechanism);
        Err(unsupported("C_WrapKey"))
    }
    /// C_UnwrapKey of `blob` under `kek_label` into a token private key `label` (sensitive,
    /// non-extractable, sign), attributes read back.
    fn unwrap_key(
        &mut self,
        kek_label: &str,
        blob: &[u8],
        label: &str,
        algorithm: KeyAlgorithm,
        mechanism: WrapMechanism,
    ) -> Result<UnwrappedKey, HsmError> {
        let _ = (kek_label, blob, label, algorithm, mechanism);
        Err(unsupported("C_UnwrapKey"))
    }
    /// C_CreateObject of the public key `spki_der` as a token object `label` with CKA_ID `id_hex`.
    fn create_public_key(
        &mut self,
        label: &str,
        id_hex: &str,
        spki_der: &[u8],
    ) -> Result<(), HsmError> {
        let _ = (label, id_hex, spki_der);
        Err(unsupported("create a public key object"))
    }
    /// Destroy every object labelled `label` of the given kinds (`secret`: CKO_SECRET_KEY only;
    /// else private and public keys); returns how many were destroyed.
    fn destroy_labelled(&mut self, label: &str, secret: bool) -> Result<usize, HsmError> {
        let _ = (label, secret);
        Err(unsupported("destroy objects"))
    }
    /// How many CKO_SECRET_KEY objects this session sees (no KEK may be left after a backup or a
    /// restore).
    fn secret_key_count(&mut self) -> Result<usize, HsmError> {
        Err(unsupported("count secret keys"))
    }
}

/// Issue 12: the AES key-wrap mechanism a backup uses (RFC 5649, wrapping with padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WrapMechanism {
    /// CKM_AES_KEY_WRAP_PAD (0x210A), as SoftHSM2 offers it.
    #[serde(rename = "CKM_AES_KEY_WRAP_PAD")]
    AesKeyWrapPad,
}

impl WrapMechanism {
    pub fn name(self) -> &'static str {
        match self {
            WrapMechanism::AesKeyWrapPad => "CKM_AES_KEY_WRAP_PAD",
        }
    }
}

/// What a trusted KEK imported for a backup or a restore may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KekUse {
    /// CKA_WRAP only (the backup's token).
    Wrap,
    /// CKA_UNWRAP only (the restore's target).
    Unwrap,
}

/// A private key unwrapped onto the token: its CKA_ID and the attributes read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnwrappedKey {
    pub id_hex: String,
    pub attributes: KeyAttributes,
}

/// One object of a key on the token (key destruction): its class ("private-key", "public-key",
/// "certificate", …), CKA_LABEL and CKA_ID (hex).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TokenObject {
    pub class: String,
    pub label: String,
    pub id_hex: String,
}

/// A card's key-agreement key for sealed shares, with its attributes as the card reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementKey {
    pub label: String,
    pub id_hex: String,
    /// Uncompressed SEC1 point (65 bytes).
    pub public_point: Vec<u8>,
    pub attributes: KeyAttributes,
    /// CKA_DERIVE of the private key.
    pub derive: Option<bool>,
}

/// CK_TOKEN_INFO's PIN facts, read before a quorum split sizes the PINs it derives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinLimits {
    /// ulMinPinLen and ulMaxPinLen.
    pub min_len: usize,
    pub max_len: usize,
    /// CKF_PROTECTED_AUTHENTICATION_PATH: PINs are typed on the device (PIN pad, PED), so keyrite
    /// cannot set a derived PIN.
    pub protected_path: bool,
}

/// An old and a new PIN for [`Hsm::set_pin`].
#[derive(Clone, Copy)]
pub struct PinChange<'a> {
    pub old: &'a SecretString,
    pub new: &'a SecretString,
}

/// Opens an HSM session for a script's `[hsm]` section. The driver takes one of these so that tests can
/// hand it the mock.
pub type HsmOpener<'a> =
    dyn FnMut(&str, &TokenSelector) -> Result<Box<dyn Hsm + Send>, HsmError> + 'a;

/// A PKCS#11 failure, naming the function and the CKR code, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsmError {
    /// PKCS#11 function, e.g. "C_GenerateKeyPair", or a keyrite operation such as "select token".
    pub function: String,
    /// CKR code name, e.g. "CKR_PIN_INCORRECT"; empty when the failure is not a PKCS#11 return value.
    pub ckr: String,
    pub what: String,
    pub fix: String,
}

impl HsmError {
    pub fn new(
        function: impl Into<String>,
        what: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        HsmError {
            function: function.into(),
            ckr: String::new(),
            what: what.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for HsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ckr.is_empty() {
            write!(f, "{}: {} — {}", self.function, self.what, self.fix)
        } else {
            write!(
                f,
                "{} returned {}: {} — {}",
                self.function, self.ckr, self.what, self.fix
            )
        }
    }
}

impl std::error::Error for HsmError {}

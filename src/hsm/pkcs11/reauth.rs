//! Keys with CKA_ALWAYS_AUTHENTICATE (PIV signing keys, some HSM keys): each signature needs a
//! C_Login(CKU_CONTEXT_SPECIFIC) right after C_SignInit. keyrite keeps the user PIN of the session's
//! login (a SecretString, zeroized on drop) for exactly that.
//!
//! cryptoki's single-part `sign` calls C_SignInit and C_Sign back to back, so with such a key
//! keyrite signs in parts: C_SignInit, the context login, C_SignUpdate, C_SignFinal. PKCS#11 lets a
//! token refuse parts for raw mechanisms: SoftHSM2 does for CKM_ECDSA (RSA with a hash works), OpenSC
//! (PIV) buffers them.
//! A refusal is reported as such, naming the key and the mechanism.

use super::{Ck, Pkcs11Hsm};
use crate::hsm::HsmError;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::UserType;

impl Pkcs11Hsm {
    /// CKA_ALWAYS_AUTHENTICATE of a private key (false when the token does not report it).
    pub(super) fn always_authenticate(
        &self,
        key: ObjectHandle,
        label: &str,
    ) -> Result<bool, HsmError> {
        let attrs = self.attributes(key, &[AttributeType::AlwaysAuthenticate], label)?;
        Ok(attrs
            .iter()
            .any(|a| matches!(a, Attribute::AlwaysAuthenticate(true))))
    }

    /// Sign with `key`, with a context-specific login when the key demands one.
    pub(super) fn sign_object(
        &self,
        mech: &Mechanism,
        key: ObjectHandle,
        label: &str,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let doing = format!("sign with \"{label}\"");
        if !self.always_authenticate(key, label)? {
            return self.session.sign(mech, key, data).ck("C_Sign", || doing);
        }
        let Some(pin) = self.user_pin.as_ref() else {
            return Err(HsmError::new(
                doing,
                format!(
                    "\"{label}\" needs the PIN again for each signature (CKA_ALWAYS_AUTHENTICATE), \
                     and this session was not opened with a typed PIN"
                ),
                "log in with the user PIN (not a protected authentication path) to sign with this key",
            ));
        };
        self.session
            .sign_init(mech, key)
            .ck("C_SignInit", || doing.clone())?;
        self.session
            .login(UserType::ContextSpecific, Some(pin))
            .ck("C_Login", || {
                format!("{doing}: context-specific login (CKA_ALWAYS_AUTHENTICATE)")
            })?;
        let parts = self
            .session
            .sign_update(data)
            .and_then(|()| self.session.sign_final());
        match parts {
            // SoftHSM2 answers CKM_ECDSA parts with CKR_OPERATION_NOT_INITIALIZED (it ends the
            // operation); others say CKR_FUNCTION_NOT_SUPPORTED.
            Err(CkError::Pkcs11(
                RvError::FunctionNotSupported
                | RvError::MechanismInvalid
                | RvError::OperationNotInitialized,
                f,
            )) => Err(HsmError::new(
                format!("C_{f:?}"),
                format!(
                    "\"{label}\" needs the PIN again for each signature (CKA_ALWAYS_AUTHENTICATE); \
                     keyrite then signs in parts (C_SignUpdate/C_SignFinal), which token \"{}\" \
                     does not offer for {mech:?}",
                    self.token()
                ),
                "use a key without CKA_ALWAYS_AUTHENTICATE on this token, or a token whose module \
                 signs this mechanism in parts (OpenSC does for PIV cards)",
            )),
            other => other.ck("C_SignFinal", || doing.clone()),
        }
    }
}

//! Quorum-card and PIN operations: private, non-modifiable CKO_DATA objects holding a share, the
//! token's PIN flags and limits, and the SO login, C_SetPIN and C_InitPIN a quorum split needs.

use super::{module, Ck, Pkcs11Hsm};
use crate::hsm::{HsmError, PinChange, PinLimits, PinState};
use crate::quorum::SHARE_APPLICATION;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::UserType;
use secrecy::SecretString;
use zeroize::Zeroizing;

/// CKA_APPLICATION as keyrite writes it, or as OpenSC copies it (a C string, with its NUL).
fn is_share_application(value: &[u8]) -> bool {
    let value = value.strip_suffix(&[0]).unwrap_or(value);
    value == SHARE_APPLICATION.as_bytes()
}

/// CK_TOKEN_INFO's PIN lengths as keyrite uses them. Kryoptic reports ulMaxPinLen 0 and other tokens
/// CK_UNAVAILABLE_INFORMATION: both mean "no maximum stated", not "no PIN fits".
fn pin_limits(min_len: usize, max_len: usize, protected_path: bool) -> PinLimits {
    let max_len = if max_len == 0 || max_len < min_len {
        usize::MAX
    } else {
        max_len
    };
    PinLimits {
        min_len,
        max_len,
        protected_path,
    }
}

/// Template errors that mean "this token does not take that attribute" (CKA_MODIFIABLE=false).
fn attribute_refused(e: &HsmError) -> bool {
    matches!(
        e.ckr.as_str(),
        "CKR_ATTRIBUTE_VALUE_INVALID"
            | "CKR_ATTRIBUTE_TYPE_INVALID"
            | "CKR_ATTRIBUTE_READ_ONLY"
            | "CKR_TEMPLATE_INCONSISTENT"
    )
}

impl Pkcs11Hsm {
    fn data_template(label: &str) -> [Attribute; 2] {
        [
            Attribute::Class(ObjectClass::DATA),
            Attribute::Label(label.as_bytes().to_vec()),
        ]
    }

    /// Data objects are found by class and label, and CKA_APPLICATION is checked after reading:
    /// some tokens do not match it in a search template, and OpenSC stores it with a trailing NUL.
    fn share_objects(
        &self,
        template: &[Attribute],
        doing: &str,
    ) -> Result<Vec<(ObjectHandle, Vec<u8>)>, HsmError> {
        let mut out = Vec::new();
        for object in self.find(template, doing)? {
            let attrs = self
                .session
                .get_attributes(object, &[AttributeType::Application, AttributeType::Label])
                .ck("C_GetAttributeValue", || doing.to_string())?;
            let (mut application, mut label) = (None, Vec::new());
            for attr in attrs {
                match attr {
                    Attribute::Application(a) => application = Some(a),
                    Attribute::Label(l) => label = l,
                    _ => {}
                }
            }
            if application.as_deref().is_some_and(is_share_application) {
                out.push((object, label));
            }
        }
        Ok(out)
    }

    fn data_objects(&self, label: &str, doing: &str) -> Result<Vec<ObjectHandle>, HsmError> {
        self.require_login(doing)?;
        Ok(self
            .share_objects(&Self::data_template(label), doing)?
            .into_iter()
            .map(|(o, _)| o)
            .collect())
    }

    pub(super) fn write_data_object(&mut self, label: &str, value: &[u8]) -> Result<(), HsmError> {
        let doing = format!("write \"{label}\" to card \"{}\"", self.token());
        self.require_login(&doing)?;
        // Any data object with this label, keyrite's or not, would make the share ambiguous.
        if !self.find(&Self::data_template(label), &doing)?.is_empty() {
            return Err(HsmError::new(
                doing,
                format!(
                    "card \"{}\" already holds an object labelled \"{label}\"; nothing was written",
                    self.token()
                ),
                "use a card without a share of this ceremony (a reshare retires old shares after writing new ones)",
            ));
        }
        // CKA_MODIFIABLE=false is best-effort: a token that refuses it gets the object without it.
        let object = match self.create_share(label, value, true, &doing) {
            Err(e) if attribute_refused(&e) => self.create_share(label, value, false, &doing)?,
            other => other?,
        };
        // A token may ignore CKA_PRIVATE: a share readable without the card's PIN is refused.
        let private = self
            .session
            .get_attributes(object, &[AttributeType::Private])
            .ck("C_GetAttributeValue", || doing.clone())?
            .into_iter()
            .find_map(|a| match a {
                Attribute::Private(p) => Some(p),
                _ => None,
            });
        if private != Some(true) {
            let destroyed = self.session.destroy_object(object);
            return Err(HsmError::new(
                doing,
                format!(
                    "card \"{}\" stored the share as a public object (CKA_PRIVATE {}); {}",
                    self.token(),
                    private.map_or("not reported", |_| "false"),
                    if destroyed.is_ok() {
                        "keyrite destroyed it again"
                    } else {
                        "keyrite could NOT destroy it: wipe the card"
                    }
                ),
                "use a card that keeps private data objects (a token that refuses them is not a custodian card)",
            ));
        }
        Ok(())
    }

    fn create_share(
        &mut self,
        label: &str,
        value: &[u8],
        read_only: bool,
        doing: &str,
    ) -> Result<ObjectHandle, HsmError> {
        let mut template = Self::data_template(label).to_vec();
        template.extend([
            Attribute::Application(SHARE_APPLICATION.as_bytes().to_vec()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Value(value.to_vec()),
        ]);
        if read_only {
            template.push(Attribute::Modifiable(false));
        }
        let created = self.session.create_object(&template);
        // The template's copy of the value is the share itself: wipe it.
        for attr in template.iter_mut() {
            if let Attribute::Value(v) = attr {
                zeroize::Zeroize::zeroize(v);
            }
        }
        created.ck("C_CreateObject", || doing.to_string())
    }

    pub(super) fn read_data_object(
        &mut self,
        label: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, HsmError> {
        let doing = format!("read \"{label}\" from card \"{}\"", self.token());
        let found = self.data_objects(label, &doing)?;
        let object =
            match found.as_slice() {
                [] => return Ok(None),
                [one] => *one,
                many => return Err(HsmError::new(
                    doing,
                    format!(
                        "card \"{}\" holds {} objects labelled \"{label}\"",
                        self.token(),
                        many.len()
                    ),
                    "a card holds one share per split: have the security officer inspect the card",
                )),
            };
        let attrs = self
            .session
            .get_attributes(object, &[AttributeType::Value])
            .ck("C_GetAttributeValue", || doing.clone())?;
        for attr in attrs {
            if let Attribute::Value(v) = attr {
                return Ok(Some(Zeroizing::new(v)));
            }
        }
        Err(HsmError::new(
            doing,
            "the card did not return the object's value",
            "check that the object is readable after login (CKA_PRIVATE data objects need the card's user PIN)",
        ))
    }

    pub(super) fn quorum_data_labels(&mut self) -> Result<Vec<String>, HsmError> {
        let doing = format!("list the quorum objects of card \"{}\"", self.token());
        self.require_login(&doing)?;
        let template = [Attribute::Class(ObjectClass::DATA)];
        let mut labels: Vec<String> = self
            .share_objects(&template, &doing)?
            .into_iter()
            .map(|(_, l)| String::from_utf8_lossy(&l).into_owned())
            .collect();
        labels.sort();
        Ok(labels)
    }

    pub(super) fn destroy_data_objects(&mut self, label: &str) -> Result<usize, HsmError> {
        let doing = format!("destroy \"{label}\" on card \"{}\"", self.token());
        let found = self.data_objects(label, &doing)?;
        for object in &found {
            self.session
                .destroy_object(*object)
                .ck("C_DestroyObject", || doing.clone())?;
        }
        Ok(found.len())
    }

    pub(super) fn token_pin_state(&mut self) -> Result<PinState, HsmError> {
        let ctx = module::loaded_module(&self.identity.module_path)?;
        let info = ctx.get_token_info(self.slot).ck("C_GetTokenInfo", || {
            format!("read the flags of \"{}\"", self.token())
        })?;
        Ok(PinState {
            count_low: info.user_pin_count_low(),
            final_try: info.user_pin_final_try(),
            locked: info.user_pin_locked(),
        })
    }

    pub(super) fn token_pin_limits(&mut self) -> Result<PinLimits, HsmError> {
        let ctx = module::loaded_module(&self.identity.module_path)?;
        let info = ctx.get_token_info(self.slot).ck("C_GetTokenInfo", || {
            format!("read the PIN limits of \"{}\"", self.token())
        })?;
        Ok(pin_limits(
            info.min_pin_length(),
            info.max_pin_length(),
            info.protected_authentication_path(),
        ))
    }

    /// C_Login as SO. Login state is per token and process, so a user login is ended first.
    pub(super) fn so_login(&mut self, pin: &SecretString) -> Result<(), HsmError> {
        let token = self.token().to_string();
        let what = || format!("log in to \"{token}\" as security officer");
        match self.session.logout() {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) => {}
            Err(e) => return Err(super::hsm_error(e, "C_Logout", what())),
        }
        self.session
            .login(UserType::So, Some(pin))
            .ck("C_Login", what)
    }

    pub(super) fn session_set_pin(&mut self, change: PinChange<'_>) -> Result<(), HsmError> {
        let token = self.token().to_string();
        self.session
            .set_pin(change.old, change.new)
            .ck("C_SetPIN", || format!("change a PIN of \"{token}\""))
    }

    pub(super) fn so_init_pin(&mut self, new: &SecretString) -> Result<(), HsmError> {
        let token = self.token().to_string();
        self.session
            .init_pin(new)
            .ck("C_InitPIN", || format!("set the user PIN of \"{token}\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_application_is_accepted_as_written_and_as_a_c_string() {
        assert!(is_share_application(SHARE_APPLICATION.as_bytes()));
        let mut c = SHARE_APPLICATION.as_bytes().to_vec();
        c.push(0);
        assert!(is_share_application(&c));
        c.push(0);
        assert!(!is_share_application(&c));
        assert!(!is_share_application(b"keyrite"));
        assert!(!is_share_application(b""));
    }

    #[test]
    fn an_unstated_maximum_pin_length_is_no_maximum() {
        assert_eq!(pin_limits(8, 0, false).max_len, usize::MAX);
        assert_eq!(pin_limits(4, 255, false).max_len, 255);
        assert_eq!(pin_limits(0, 128, true).max_len, 128);
        let len = crate::quorum::pin_length(8, pin_limits(8, 0, false).max_len);
        assert!(len.is_ok(), "{len:?}");
    }
}

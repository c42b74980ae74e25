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

impl Pkcs11Hsm {
    fn data_template(label: &str) -> [Attribute; 3] {
        [
            Attribute::Class(ObjectClass::DATA),
            Attribute::Application(SHARE_APPLICATION.as_bytes().to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ]
    }

    fn data_objects(&self, label: &str, doing: &str) -> Result<Vec<ObjectHandle>, HsmError> {
        self.require_login(doing)?;
        self.find(&Self::data_template(label), doing)
    }

    pub(super) fn write_data_object(&mut self, label: &str, value: &[u8]) -> Result<(), HsmError> {
        let doing = format!("write \"{label}\" to card \"{}\"", self.token());
        if !self.data_objects(label, &doing)?.is_empty() {
            return Err(HsmError::new(
                doing,
                format!(
                    "card \"{}\" already holds an object labelled \"{label}\"; nothing was written",
                    self.token()
                ),
                "use a card without a share of this ceremony (a reshare retires old shares after writing new ones)",
            ));
        }
        let mut template = Self::data_template(label).to_vec();
        template.extend([
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Modifiable(false),
            Attribute::Value(value.to_vec()),
        ]);
        let created = self.session.create_object(&template);
        // The template's copy of the value is the share itself: wipe it.
        for attr in template.iter_mut() {
            if let Attribute::Value(v) = attr {
                zeroize::Zeroize::zeroize(v);
            }
        }
        created.ck("C_CreateObject", || doing.clone())?;
        Ok(())
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
        let template = [
            Attribute::Class(ObjectClass::DATA),
            Attribute::Application(SHARE_APPLICATION.as_bytes().to_vec()),
        ];
        let mut labels = Vec::new();
        for object in self.find(&template, &doing)? {
            let attrs = self
                .session
                .get_attributes(object, &[AttributeType::Label])
                .ck("C_GetAttributeValue", || doing.clone())?;
            for attr in attrs {
                if let Attribute::Label(l) = attr {
                    labels.push(String::from_utf8_lossy(&l).into_owned());
                }
            }
        }
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
        Ok(PinLimits {
            min_len: info.min_pin_length(),
            max_len: info.max_pin_length(),
            protected_path: info.protected_authentication_path(),
        })
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

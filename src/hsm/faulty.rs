//! Test-only HSM faults, for the fault matrix (softhsm-tests/fault_matrix.rs): with
//! `KEYRITE_TEST_HSM_FAULT=N:CKR_NAME` set, the Nth HSM call of the process (counting the opening
//! of each token as a call) fails with that CKR code, as a pulled cable or a tired device would.
//! `KEYRITE_TEST_HSM_FAULT=list` fails nothing and prints each call to stderr
//! (`keyrite test hook: hsm call N OPERATION`), so the matrix takes N's range from a dry run.
//!
//! Cannot be triggered in a real ceremony by accident: only `keyrite rehearse` (throw-away
//! SoftHSM2 tokens) wraps its tokens in [`FaultyHsm`], and only when the variable is set; `keyrite
//! run` never reads it. CKR codes other than the four below are refused, so a typo fails loudly.

use super::{
    AgreementKey, Hsm, HsmError, KekUse, KeyPairInfo, PinChange, PinLimits, PinState,
    SignMechanism, TokenIdentity, TokenObject, UnwrappedKey, WrapMechanism,
};
use crate::script::{KeyAlgorithm, TokenSelector};
use secrecy::SecretString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use zeroize::Zeroizing;

pub const VAR: &str = "KEYRITE_TEST_HSM_FAULT";
/// The stderr prefix of a listed call.
pub const LISTED: &str = "keyrite test hook: hsm call ";
/// The faults the matrix injects.
pub const CODES: [&str; 4] = [
    "CKR_DEVICE_ERROR",
    "CKR_SESSION_HANDLE_INVALID",
    "CKR_TOKEN_NOT_PRESENT",
    "CKR_PIN_INCORRECT",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    List,
    Fail { at: u64, ckr: &'static str },
}

fn parse(value: &str) -> Result<Plan, String> {
    if value == "list" {
        return Ok(Plan::List);
    }
    let bad = || format!("{VAR}={value}: expected N:CKR_NAME (CKR_NAME one of {CODES:?}) or list");
    let (n, name) = value.split_once(':').ok_or_else(bad)?;
    let at = n.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(bad)?;
    let ckr = CODES.iter().find(|c| **c == name).ok_or_else(bad)?;
    Ok(Plan::Fail { at, ckr })
}

fn plan() -> Option<&'static Plan> {
    static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let value = std::env::var(VAR).ok().filter(|v| !v.is_empty())?;
        match parse(&value) {
            Ok(plan) => Some(plan),
            Err(why) => {
                // A test that set the variable wrongly must not pass as "no fault happened".
                eprintln!("keyrite: {why}");
                std::process::exit(crate::error::exit::BAD_INPUT);
            }
        }
    })
    .as_ref()
}

/// Whether the variable is set (a rehearsal then wraps its tokens).
pub fn armed() -> bool {
    plan().is_some()
}

static CALLS: AtomicU64 = AtomicU64::new(0);

/// Count one HSM call; the planned one fails with its CKR code, as the PKCS#11 module would.
fn call(operation: &'static str, function: &str) -> Result<(), HsmError> {
    let Some(plan) = plan() else {
        return Ok(());
    };
    let n = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    match plan {
        Plan::List => {
            eprintln!("{LISTED}{n} {operation}");
            Ok(())
        }
        Plan::Fail { at, ckr } if *at == n => {
            eprintln!("keyrite: {VAR}: call {n} ({operation}) fails with {ckr} (test hook)");
            Err(HsmError {
                function: function.into(),
                ckr: (*ckr).into(),
                what: format!("{function} failed with {ckr} (injected by the test hook {VAR})"),
                fix: super::pkcs11::fixes::fix_for(function, ckr),
            })
        }
        Plan::Fail { .. } => Ok(()),
    }
}

/// Open a token through `open`, counting the opening as a call.
pub fn open(
    module: &str,
    selector: &TokenSelector,
    open: impl FnOnce(&str, &TokenSelector) -> Result<Box<dyn Hsm + Send>, HsmError>,
) -> Result<Box<dyn Hsm + Send>, HsmError> {
    call("open", "C_OpenSession")?;
    Ok(Box::new(FaultyHsm(open(module, selector)?)))
}

/// An [`Hsm`] whose calls are counted, one of which may fail.
pub struct FaultyHsm(pub Box<dyn Hsm + Send>);

impl Hsm for FaultyHsm {
    fn identity(&self) -> &TokenIdentity {
        self.0.identity()
    }
    fn login(&mut self, pin: &SecretString) -> Result<(), HsmError> {
        call("login", "C_Login")?;
        self.0.login(pin)
    }
    fn logout(&mut self) -> Result<(), HsmError> {
        call("logout", "C_Logout")?;
        self.0.logout()
    }
    fn label_exists(&mut self, label: &str) -> Result<bool, HsmError> {
        call("label_exists", "C_FindObjects")?;
        self.0.label_exists(label)
    }
    fn generate_key_pair(
        &mut self,
        label: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<KeyPairInfo, HsmError> {
        call("generate_key_pair", "C_GenerateKeyPair")?;
        self.0.generate_key_pair(label, algorithm)
    }
    fn key_pair(&mut self, label: &str) -> Result<KeyPairInfo, HsmError> {
        call("key_pair", "C_GetAttributeValue")?;
        self.0.key_pair(label)
    }
    fn sign(
        &mut self,
        label: &str,
        mechanism: SignMechanism,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        call("sign", "C_Sign")?;
        self.0.sign(label, mechanism, data)
    }
    fn random(&mut self, len: usize) -> Result<Vec<u8>, HsmError> {
        call("random", "C_GenerateRandom")?;
        self.0.random(len)
    }
    fn store_certificate(
        &mut self,
        key_label: &str,
        subject_der: &[u8],
        der: &[u8],
    ) -> Result<(), HsmError> {
        call("store_certificate", "C_CreateObject")?;
        self.0.store_certificate(key_label, subject_der, der)
    }
    fn certificates(&mut self) -> Result<Vec<(String, Vec<u8>)>, HsmError> {
        call("certificates", "C_FindObjects")?;
        self.0.certificates()
    }
    fn private_key_label(&mut self, id_hex: &str) -> Result<String, HsmError> {
        call("private_key_label", "C_FindObjects")?;
        self.0.private_key_label(id_hex)
    }
    fn write_data(&mut self, label: &str, value: &[u8]) -> Result<(), HsmError> {
        call("write_data", "C_CreateObject")?;
        self.0.write_data(label, value)
    }
    fn read_data(&mut self, label: &str) -> Result<Option<Zeroizing<Vec<u8>>>, HsmError> {
        call("read_data", "C_GetAttributeValue")?;
        self.0.read_data(label)
    }
    fn data_labels(&mut self) -> Result<Vec<String>, HsmError> {
        call("data_labels", "C_FindObjects")?;
        self.0.data_labels()
    }
    fn destroy_data(&mut self, label: &str) -> Result<usize, HsmError> {
        call("destroy_data", "C_DestroyObject")?;
        self.0.destroy_data(label)
    }
    fn key_objects(&mut self, label: &str, id_hex: &str) -> Result<Vec<TokenObject>, HsmError> {
        call("key_objects", "C_FindObjects")?;
        self.0.key_objects(label, id_hex)
    }
    fn destroy_object(
        &mut self,
        label: &str,
        id_hex: &str,
        object: &TokenObject,
    ) -> Result<usize, HsmError> {
        call("destroy_object", "C_DestroyObject")?;
        self.0.destroy_object(label, id_hex, object)
    }
    fn pin_state(&mut self) -> Result<PinState, HsmError> {
        call("pin_state", "C_GetTokenInfo")?;
        self.0.pin_state()
    }
    fn pin_limits(&mut self) -> Result<PinLimits, HsmError> {
        call("pin_limits", "C_GetTokenInfo")?;
        self.0.pin_limits()
    }
    fn warnings(&self) -> Vec<String> {
        self.0.warnings()
    }
    fn mechanisms(&mut self) -> Result<Option<Vec<super::capabilities::Offered>>, HsmError> {
        call("mechanisms", "C_GetMechanismList")?;
        self.0.mechanisms()
    }
    fn login_protected(&mut self) -> Result<(), HsmError> {
        call("login_protected", "C_Login")?;
        self.0.login_protected()
    }
    fn login_so(&mut self, pin: &SecretString) -> Result<(), HsmError> {
        call("login_so", "C_Login")?;
        self.0.login_so(pin)
    }
    fn set_pin(&mut self, change: PinChange<'_>) -> Result<(), HsmError> {
        call("set_pin", "C_SetPIN")?;
        self.0.set_pin(change)
    }
    fn init_user_pin(&mut self, new: &SecretString) -> Result<(), HsmError> {
        call("init_user_pin", "C_InitPIN")?;
        self.0.init_user_pin(new)
    }
    fn find_private_keys(
        &mut self,
        query: &crate::script::KeyQuery,
    ) -> Result<Vec<(String, String)>, HsmError> {
        call("find_private_keys", "C_FindObjects")?;
        self.0.find_private_keys(query)
    }
    fn agreement_key(&mut self, label: &str) -> Result<Option<AgreementKey>, HsmError> {
        call("agreement_key", "C_FindObjects")?;
        self.0.agreement_key(label)
    }
    fn generate_agreement_key(&mut self, label: &str) -> Result<AgreementKey, HsmError> {
        call("generate_agreement_key", "C_GenerateKeyPair")?;
        self.0.generate_agreement_key(label)
    }
    fn ecdh(&mut self, label: &str, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        call("ecdh", "C_DeriveKey")?;
        self.0.ecdh(label, peer)
    }
    fn destroy_agreement_key(&mut self, label: &str) -> Result<usize, HsmError> {
        call("destroy_agreement_key", "C_DestroyObject")?;
        self.0.destroy_agreement_key(label)
    }
    fn wrap_mechanism(&mut self) -> Result<Option<WrapMechanism>, HsmError> {
        call("wrap_mechanism", "C_GetMechanismList")?;
        self.0.wrap_mechanism()
    }
    fn generate_backup_key_pair(
        &mut self,
        label: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<KeyPairInfo, HsmError> {
        call("generate_backup_key_pair", "C_GenerateKeyPair")?;
        self.0.generate_backup_key_pair(label, algorithm)
    }
    fn import_trusted_kek(
        &mut self,
        label: &str,
        kek: &[u8],
        so_pin: &SecretString,
        usage: KekUse,
    ) -> Result<(), HsmError> {
        call("import_trusted_kek", "C_CreateObject")?;
        self.0.import_trusted_kek(label, kek, so_pin, usage)
    }
    fn wrap_key(
        &mut self,
        kek_label: &str,
        key_label: &str,
        mechanism: WrapMechanism,
    ) -> Result<Vec<u8>, HsmError> {
        call("wrap_key", "C_WrapKey")?;
        self.0.wrap_key(kek_label, key_label, mechanism)
    }
    fn unwrap_key(
        &mut self,
        kek_label: &str,
        blob: &[u8],
        label: &str,
        algorithm: KeyAlgorithm,
        mechanism: WrapMechanism,
    ) -> Result<UnwrappedKey, HsmError> {
        call("unwrap_key", "C_UnwrapKey")?;
        self.0
            .unwrap_key(kek_label, blob, label, algorithm, mechanism)
    }
    fn create_public_key(
        &mut self,
        label: &str,
        id_hex: &str,
        spki_der: &[u8],
    ) -> Result<(), HsmError> {
        call("create_public_key", "C_CreateObject")?;
        self.0.create_public_key(label, id_hex, spki_der)
    }
    fn destroy_labelled(&mut self, label: &str, secret: bool) -> Result<usize, HsmError> {
        call("destroy_labelled", "C_DestroyObject")?;
        self.0.destroy_labelled(label, secret)
    }
    fn secret_key_count(&mut self) -> Result<usize, HsmError> {
        call("secret_key_count", "C_FindObjects")?;
        self.0.secret_key_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_four_codes_and_list_are_accepted() {
        assert_eq!(parse("list"), Ok(Plan::List));
        assert_eq!(
            parse("3:CKR_DEVICE_ERROR"),
            Ok(Plan::Fail {
                at: 3,
                ckr: "CKR_DEVICE_ERROR"
            })
        );
        for bad in [
            "0:CKR_DEVICE_ERROR",
            "3",
            "x:CKR_PIN_INCORRECT",
            "3:CKR_OK",
            "3:ckr_device_error",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}

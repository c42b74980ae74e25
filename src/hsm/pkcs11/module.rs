//! Loading a PKCS#11 module once per process, enumerating its tokens, and provisioning throw-away
//! tokens for rehearsals.

use super::{hsm_error, Ck};
use crate::hsm::{HsmError, TokenIdentity};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Info, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::UserType;
use cryptoki::slot::{Slot, TokenInfo};
use secrecy::SecretString;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

/// CK_TOKEN_INFO.label is 32 bytes; cryptoki silently truncates longer labels.
const MAX_TOKEN_LABEL: usize = 32;

/// Serialises provisioning in the process: two concurrent C_InitToken calls would pick the same free
/// slot. One lock for all modules, because a proxy (p11-kit) and the library it wraps are two paths
/// to the same tokens.
static PROVISIONING: Mutex<()> = Mutex::new(());

static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();

/// C_Finalize every module this process initialised, once everything is done (`main`, before
/// exit): a module that talks to a daemon or a network HSM then closes its connection cleanly
/// instead of having it cut. A module that finalizes badly is reported, not fatal.
pub fn finalize_modules() {
    let Some(modules) = MODULES.get() else {
        return;
    };
    let drained: Vec<(PathBuf, Pkcs11)> = modules
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain()
        .collect();
    for (path, ctx) in drained {
        match ctx.finalize() {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiNotInitialized, _)) => {}
            Err(e) => eprintln!(
                "keyrite: C_Finalize of {} failed at exit: {e} (nothing is lost: the evidence was \
                 already written)",
                path.display()
            ),
        }
    }
}

/// Has this process loaded no PKCS#11 module yet (so a module's environment can still be set)?
pub fn no_module_loaded() -> bool {
    MODULES
        .get()
        .is_none_or(|m| m.lock().unwrap_or_else(PoisonError::into_inner).is_empty())
}

/// The initialised context for a module, shared by every session in the process. A second
/// C_Initialize would return CKR_CRYPTOKI_ALREADY_INITIALIZED, and C_Finalize would kill everyone's
/// sessions, so keyrite initialises each module once and finalizes it only at exit
/// ([`finalize_modules`]). Keyed by canonical path, so two spellings of one library (symlinks)
/// share one context.
pub(super) fn loaded_module(module_path: &str) -> Result<Pkcs11, HsmError> {
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
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
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
        Err(e) => {
            return Err(hsm_error(
                e,
                "C_Initialize",
                format!("initialise {module_path}"),
            ))
        }
    }
    modules.insert(canonical, ctx.clone());
    Ok(ctx)
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
    let slots = ctx
        .get_slots_with_token()
        .ck("C_GetSlotList", || "list slots".into())?;
    let mut out = Vec::new();
    for slot in slots {
        match ctx.get_token_info(slot) {
            Ok(info) => out.push((slot, info)),
            Err(CkError::Pkcs11(
                RvError::SlotIdInvalid | RvError::TokenNotPresent | RvError::DeviceRemoved,
                _,
            )) => {}
            Err(e) => {
                return Err(hsm_error(
                    e,
                    "C_GetTokenInfo",
                    format!("read the token in {slot}"),
                ))
            }
        }
    }
    Ok(out)
}

/// Initialised tokens and who they are.
pub(super) fn initialised_tokens(
    ctx: &Pkcs11,
    module_path: &str,
) -> Result<Vec<(Slot, TokenIdentity)>, HsmError> {
    let lib = ctx
        .get_library_info()
        .ck("C_GetInfo", || format!("read {module_path}'s info"))?;
    Ok(present_tokens(ctx)?
        .into_iter()
        .filter(|(_, info)| info.token_initialized())
        .map(|(slot, info)| (slot, identity(module_path, &lib, &info)))
        .collect())
}

/// The initialised tokens a module shows, e.g. for `keyrite` to list choices.
pub fn list_tokens(module_path: &str) -> Result<Vec<TokenIdentity>, HsmError> {
    crate::hsm::timed::measure("list_tokens", || list_tokens_untimed(module_path))
}

fn list_tokens_untimed(module_path: &str) -> Result<Vec<TokenIdentity>, HsmError> {
    let ctx = loaded_module(module_path)?;
    Ok(initialised_tokens(&ctx, module_path)?
        .into_iter()
        .map(|(_, t)| t)
        .collect())
}

/// Rehearsal provisioning (SoftHSM throw-away tokens): initialise the first present but uninitialised
/// token with `label` and the SO PIN, set the user PIN, and return the new token's serial.
pub fn init_token(
    module_path: &str,
    label: &str,
    so_pin: &SecretString,
    user_pin: &SecretString,
) -> Result<String, HsmError> {
    crate::hsm::timed::measure("init_token", || {
        init_token_untimed(module_path, label, so_pin, user_pin)
    })
}

fn init_token_untimed(
    module_path: &str,
    label: &str,
    so_pin: &SecretString,
    user_pin: &SecretString,
) -> Result<String, HsmError> {
    const F: &str = "init token";
    // Token labels are blank-padded: trailing blanks would be lost and the token never found again.
    if label.is_empty() || label.len() > MAX_TOKEN_LABEL || label.ends_with(' ') {
        return Err(HsmError::new(
            F,
            format!("token label \"{label}\" must be 1 to {MAX_TOKEN_LABEL} bytes, without trailing blanks"),
            "choose another token label",
        ));
    }
    let ctx = &loaded_module(module_path)?;
    let _only_one = PROVISIONING.lock().unwrap_or_else(PoisonError::into_inner);
    if initialised_tokens(ctx, module_path)?
        .iter()
        .any(|(_, t)| t.token_label == label)
    {
        return Err(HsmError::new(
            F,
            format!("a token labelled \"{label}\" already exists in {module_path}"),
            "choose another token label; labels must be unique to select tokens by label",
        ));
    }
    let free: Vec<Slot> = present_tokens(ctx)?
        .into_iter()
        .filter(|(_, info)| !info.token_initialized())
        .map(|(slot, _)| slot)
        .collect();
    let free = match free.as_slice() {
        [one] => *one,
        [] => return Err(HsmError::new(
            F,
            format!("{module_path} shows no uninitialised token"),
            "free a slot: with SoftHSM, check directories.tokendir in SOFTHSM2_CONF is writable",
        )),
        // C_InitToken erases a token: never guess which of several blank ones is the ceremony's.
        many => return Err(HsmError::new(
            F,
            format!(
                "{module_path} shows {} uninitialised tokens, so keyrite cannot tell which one is \
                     \"{label}\"; nothing was initialised",
                many.len()
            ),
            "connect only the ceremony's HSM (remove or initialise the other blank tokens), then \
                 perform the step again",
        )),
    };
    ctx.init_token(free, so_pin, label)
        .ck("C_InitToken", || format!("initialise token \"{label}\""))?;
    // SoftHSM moves a newly initialised token to a new slot id: find it again by label.
    let Some((slot, token)) = initialised_tokens(ctx, module_path)?
        .into_iter()
        .find(|(_, t)| t.token_label == label)
    else {
        return Err(HsmError::new(
            F,
            format!("token \"{label}\" was initialised but the module no longer shows it"),
            "list the tokens (pkcs11-tool -L) and check the module's configuration",
        ));
    };
    set_user_pin(ctx, slot, label, so_pin, user_pin)?;
    Ok(token.serial)
}

/// Rehearsal provisioning interrupted after its C_InitToken: if the module shows a token labelled
/// `label`, set its user PIN with `so_pin` (the SO PIN it was initialised with) and return its
/// serial; `None` if there is no such token (the interruption came before C_InitToken).
pub fn finish_token(
    module_path: &str,
    label: &str,
    so_pin: &SecretString,
    user_pin: &SecretString,
) -> Result<Option<String>, HsmError> {
    crate::hsm::timed::measure("finish_token", || {
        let ctx = &loaded_module(module_path)?;
        let _only_one = PROVISIONING.lock().unwrap_or_else(PoisonError::into_inner);
        let found = initialised_tokens(ctx, module_path)?
            .into_iter()
            .find(|(_, t)| t.token_label == label);
        let Some((slot, token)) = found else {
            return Ok(None);
        };
        set_user_pin(ctx, slot, label, so_pin, user_pin)?;
        Ok(Some(token.serial))
    })
}

/// Log in as SO and set the user PIN (C_InitPIN).
fn set_user_pin(
    ctx: &Pkcs11,
    slot: Slot,
    label: &str,
    so_pin: &SecretString,
    user_pin: &SecretString,
) -> Result<(), HsmError> {
    let session = ctx
        .open_rw_session(slot)
        .ck("C_OpenSession", || format!("open token \"{label}\""))?;
    let what = || format!("set the user PIN of token \"{label}\"");
    session
        .login(UserType::So, Some(so_pin))
        .ck("C_Login", what)?;
    session.init_pin(user_pin).ck("C_InitPIN", what)?;
    session.logout().ck("C_Logout", what)
}

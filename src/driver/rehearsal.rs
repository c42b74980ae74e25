//! Rehearsals on throw-away SoftHSM2 tokens: a private SOFTHSM2_CONF and token folder, tokens made
//! on demand with random PINs, and DIR/rehearsal.toml (mode 0600) as the only place those PINs are
//! written, so a later rehearsal ceremony can reuse the same tokens with `--env DIR`.

mod cards;
pub mod pqc;
mod records;
mod stored;

pub use cards::{card_tokens, CARD_KEY, CA_FILE, CA_TOKEN};
pub use records::{
    note_backup, note_certificate, note_key, note_split, recorded_backup, recorded_certificate,
    recorded_key, recorded_split, RehearsalBackup, RehearsalCertificate, RehearsalKey,
    RehearsalSplit,
};

use super::pins::{PinRequest, PinSource};
use crate::error::{Error, Result};
use crate::hsm::{pkcs11, HsmError};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Where Debian puts the module (the package `softhsm2`).
pub const SOFTHSM_MODULES: [&str; 2] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
];
pub const ENV_FILE: &str = "rehearsal.toml";
/// Set (with SOFTHSM2_CONF) once a process has entered a rehearsal folder: the folder it uses.
pub const DIR_VAR: &str = "KEYRITE_REHEARSAL_DIR";

/// The rehearsal token's label for a script's token selector: the label the script asks for, or one
/// derived from its serial (SoftHSM cannot be told which serial to give a new token).
pub fn rehearsal_label(selector: &crate::script::TokenSelector) -> String {
    pkcs11::wanted_label(selector).unwrap_or_else(|| {
        format!(
            "rehearsal-{}",
            selector.serial.as_deref().unwrap_or("token")
        )
    })
}

pub fn find_softhsm() -> Result<String> {
    SOFTHSM_MODULES
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
        .ok_or_else(|| {
            Error::env(
                format!(
                    "libsofthsm2.so was not found (looked in {})",
                    SOFTHSM_MODULES.join(", ")
                ),
                "install the Debian package softhsm2: sudo apt-get install softhsm2",
            )
        })
}

#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct RehearsalToken {
    pub label: String,
    /// Empty while the token is being made: its PINs are written before C_InitToken sets them.
    pub serial: String,
    /// For a custodian card: the holder named in the script's `[quorum]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    pub so_pin: String,
    pub user_pin: String,
}

/// Debug output never shows the PINs, even of throw-away tokens.
impl std::fmt::Debug for RehearsalToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RehearsalToken")
            .field("label", &self.label)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RehearsalFile {
    pub note: String,
    pub softhsm2_conf: String,
    #[serde(default)]
    pub tokens: Vec<RehearsalToken>,
    /// Personal cards made for carded participants (their PINs are under `tokens`, by serial).
    #[serde(default)]
    pub cards: Vec<RehearsalCard>,
    /// The quorum splits made in this folder: the trusted source of a rehearsal's commitments.
    #[serde(default)]
    pub splits: Vec<RehearsalSplit>,
    /// The keys generated in this folder: the trusted source of a rehearsal's existing-key hashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<RehearsalKey>,
    /// CA certificates signed in this folder: a later rehearsal's issuer certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<RehearsalCertificate>,
    /// Issue 12: backups made in this folder: a later rehearsed restore's pinned hashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<RehearsalBackup>,
}

/// The folder of the running rehearsal: [`DIR_VAR`] is set once the process entered it.
fn running() -> Option<PathBuf> {
    std::env::var_os(DIR_VAR).map(PathBuf::from)
}

/// The folder of the running rehearsal, if this process is one (sealed-share envelopes live there).
pub fn running_dir() -> Option<PathBuf> {
    running()
}

/// Whose throw-away personal card a token is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RehearsalCard {
    pub person: String,
    pub token_label: String,
    pub serial: String,
}

pub struct RehearsalEnv {
    pub dir: PathBuf,
    pub conf: PathBuf,
    file: RehearsalFile,
}

impl RehearsalEnv {
    /// Open (or lay out) the rehearsal folder.
    pub fn open(dir: &Path) -> Result<Self> {
        let tokens = dir.join("tokens");
        fs::create_dir_all(&tokens).map_err(|e| Error::io("create", &tokens, &e))?;
        let dir = fs::canonicalize(dir).map_err(|e| Error::io("resolve", dir, &e))?;
        let conf = dir.join("softhsm2.conf");
        if !conf.exists() {
            let text = format!(
                "# keyrite rehearsal: throw-away SoftHSM2 tokens\ndirectories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("tokens").display()
            );
            fs::write(&conf, text).map_err(|e| Error::io("write", &conf, &e))?;
        }
        let env_file = dir.join(ENV_FILE);
        let file = if env_file.exists() {
            stored::LAST.read(&env_file, |text| {
                toml::from_str(text).map_err(|e| {
                    Error::input(
                        format!("{}: {}", env_file.display(), e.message()),
                        "restore the file or use a new --env folder",
                    )
                })
            })?
        } else {
            RehearsalFile {
                note: "THROW-AWAY REHEARSAL TOKENS. These PINs protect SoftHSM2 test tokens only; never use them, or these tokens, for a real ceremony.".into(),
                softhsm2_conf: conf.display().to_string(),
                tokens: Vec::new(),
                cards: Vec::new(),
                splits: Vec::new(),
                keys: Vec::new(),
                certificates: Vec::new(),
                backups: Vec::new(),
            }
        };
        Ok(RehearsalEnv { dir, conf, file })
    }

    /// Does this process already run under the rehearsal's SOFTHSM2_CONF? SoftHSM reads the variable
    /// once, at C_Initialize, so otherwise the CLI sets it before any module is loaded (or
    /// re-executes itself with it set).
    /// With `kryoptic_conf` (an ML-DSA rehearsal), KRYOPTIC_CONF must name it too.
    pub fn is_active(&self, kryoptic_conf: Option<&Path>) -> bool {
        let set =
            |var: &str, want: &Path| std::env::var_os(var).is_some_and(|v| Path::new(&v) == want);
        set("SOFTHSM2_CONF", &self.conf) && kryoptic_conf.is_none_or(|k| set("KRYOPTIC_CONF", k))
    }

    /// Every token of the folder (the ceremony HSM, the participants CA, the cards).
    pub fn tokens(&self) -> &[RehearsalToken] {
        &self.file.tokens
    }

    /// The token labelled `label`, once made (not while its provisioning is unfinished).
    pub fn token(&self, label: &str) -> Option<&RehearsalToken> {
        self.file
            .tokens
            .iter()
            .find(|t| t.label == label && !t.serial.is_empty())
    }

    /// Does the folder hold an entry for `label`, made or being made?
    pub fn is_recorded(&self, label: &str) -> bool {
        self.file.tokens.iter().any(|t| t.label == label)
    }

    /// The token labelled `label`, made now with random PINs if the folder does not have it yet.
    pub fn ensure_token(&mut self, softhsm_module: &str, label: &str) -> Result<RehearsalToken> {
        self.provision(&[WantedToken::new(softhsm_module, label)])?;
        self.made(label)
    }

    fn made(&self, label: &str) -> Result<RehearsalToken> {
        self.token(label).cloned().ok_or_else(|| {
            Error::env(
                format!("the rehearsal token \"{label}\" was not made"),
                "report this keyrite defect",
            )
        })
    }

    /// Make every token of `wanted` the folder lacks, in one batch, and record holders and card
    /// owners. rehearsal.toml is written at most twice: the new tokens' random PINs, durably,
    /// before any C_InitToken sets them, then their serials (the folder's fsync deferred). A
    /// keyrite killed in between leaves entries without a serial, which the next provisioning
    /// finishes (a token already initialised under that label gets its user PIN set again with the
    /// recorded SO PIN) instead of orphaning it.
    pub fn provision(&mut self, wanted: &[WantedToken]) -> Result<()> {
        let mut changed = false;
        let unfinished: Vec<String> = self
            .file
            .tokens
            .iter()
            .filter(|t| t.serial.is_empty())
            .map(|t| t.label.clone())
            .collect();
        for w in wanted {
            match self.file.tokens.iter_mut().find(|t| t.label == w.label) {
                Some(t) => {
                    if w.holder.is_some() && t.holder != w.holder {
                        t.holder = w.holder.clone();
                        changed = true;
                    }
                }
                None => {
                    self.file.tokens.push(RehearsalToken {
                        label: w.label.clone(),
                        serial: String::new(),
                        holder: w.holder.clone(),
                        so_pin: random_pin()?,
                        user_pin: random_pin()?,
                    });
                    changed = true;
                }
            }
        }
        let to_make: Vec<&WantedToken> = wanted
            .iter()
            .filter(|w| self.token(&w.label).is_none())
            .collect();
        if !to_make.is_empty() {
            // The PINs are on disk before a token is initialised with them.
            self.save(Durability::Now)?;
            changed = false;
        }
        for w in to_make {
            let Some(i) = self.file.tokens.iter().position(|t| t.label == w.label) else {
                continue;
            };
            if !self.file.tokens[i].serial.is_empty() {
                continue; // wanted twice
            }
            let t = &self.file.tokens[i];
            let so = SecretString::from(t.so_pin.as_str());
            let user = SecretString::from(t.user_pin.as_str());
            let finished = match unfinished.contains(&w.label) {
                true => pkcs11::finish_token(&w.module, &w.label, &so, &user)?,
                false => None,
            };
            let serial = match finished {
                Some(serial) => serial,
                None => pkcs11::init_token(&w.module, &w.label, &so, &user)?,
            };
            self.file.tokens[i].serial = serial;
            changed = true;
        }
        for w in wanted {
            let Some(person) = &w.card_of else { continue };
            if self.file.cards.iter().any(|c| &c.person == person) {
                continue;
            }
            let token = self.made(&w.label)?;
            self.file.cards.push(RehearsalCard {
                person: person.clone(),
                token_label: token.label.clone(),
                serial: token.serial.clone(),
            });
            changed = true;
        }
        // Serials, holders and card owners record what is already done: a power cut that loses
        // them leaves entries without a serial, which the next provisioning finishes.
        if changed {
            self.save(Durability::AtExit)?;
        }
        Ok(())
    }

    /// Record a token that a quorum split initialised (its PINs are derived from the quorum secret
    /// and known to nobody, so none are written). No-op if the module does not show it.
    pub fn adopt_token(&mut self, module: &str, label: &str) -> Result<()> {
        if self.token(label).is_some() {
            return Ok(());
        }
        let found = pkcs11::list_tokens(module)?
            .into_iter()
            .find(|t| t.token_label == label);
        if let Some(t) = found {
            // The run that just ended may have recorded its split (and its keys) in the folder:
            // keep them.
            if let Ok(now) = RehearsalEnv::open(&self.dir) {
                self.file.splits = now.file.splits;
                self.file.keys = now.file.keys;
                self.file.certificates = now.file.certificates;
                self.file.backups = now.file.backups;
            }
            self.file.tokens.push(RehearsalToken {
                label: label.into(),
                serial: t.serial,
                holder: None,
                so_pin: String::new(),
                user_pin: String::new(),
            });
            self.save(Durability::Now)?;
        }
        Ok(())
    }

    /// Write rehearsal.toml atomically: a temporary file, fsync, rename over the old one. A kill
    /// or power cut at any moment leaves either an older file or the new one whole. With
    /// [`Durability::Now`] the folder is fsynced too, so the new file survives a power cut before
    /// this returns; with [`Durability::AtExit`] that fsync waits for [`sync_deferred`] or the next
    /// durable save.
    fn save(&self, durability: Durability) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join(ENV_FILE);
        let text = toml::to_string_pretty(&self.file)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| {
                Error::env(
                    format!("could not encode {ENV_FILE}: {e}"),
                    "report this keyrite defect",
                )
            })?;
        let tmp = self.dir.join(format!("{ENV_FILE}.new"));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io("write", &tmp, &e))?;
        // The data is fsynced before the rename: this file holds the only copy of the tokens' PINs
        // and the splits' records, and a power cut must not leave it empty.
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("write", &tmp, &e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("replace", &path, &e))?;
        stored::LAST.wrote(text, &self.file);
        let mut unsynced = UNSYNCED.lock().unwrap_or_else(PoisonError::into_inner);
        match durability {
            Durability::AtExit => {
                *unsynced = Some(self.dir.clone());
                Ok(())
            }
            // The rename is durable only once the folder's entry is on disk.
            Durability::Now => {
                sync_folder(&self.dir)?;
                *unsynced = None;
                Ok(())
            }
        }
    }
}

/// When a rehearsal.toml write must survive a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Before the write returns: what the next action depends on (PINs before C_InitToken, a split's
    /// stage before the PIN change it announces).
    Now,
    /// By the end of the process ([`sync_deferred`]): results of what was already done (a key, a
    /// certificate, a split's finished stage), which the next keyrite reads.
    AtExit,
}

/// A rehearsal folder whose newest rehearsal.toml was renamed in but not yet fsynced there.
static UNSYNCED: Mutex<Option<PathBuf>> = Mutex::new(None);

fn sync_folder(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync", dir, &e))
}

/// Make the last [`Durability::AtExit`] write durable (`main`, before exit).
pub fn sync_deferred() -> Result<()> {
    let dir = UNSYNCED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    dir.map_or(Ok(()), |dir| sync_folder(&dir))
}

/// A token a rehearsal needs, made by [`RehearsalEnv::provision`] if the folder lacks it.
#[derive(Debug, Clone)]
pub struct WantedToken {
    pub module: String,
    pub label: String,
    /// A custodian card's holder, as the script's `[quorum]` (or backup) names them.
    pub holder: Option<String>,
    /// The carded participant whose personal card this token is.
    pub card_of: Option<String>,
}

impl WantedToken {
    pub fn new(module: &str, label: &str) -> Self {
        WantedToken {
            module: module.into(),
            label: label.into(),
            holder: None,
            card_of: None,
        }
    }

    pub fn held_by(mut self, holder: &str) -> Self {
        self.holder = Some(holder.into());
        self
    }
}

/// One custodian card token per card of the script's quorum (and its reshares), backups and
/// restores, with its holder.
pub fn custodian_tokens(softhsm: &str, script: &crate::script::Script) -> Vec<WantedToken> {
    let quorum = script.quorum.iter().flat_map(|q| {
        q.cards
            .iter()
            .chain(q.reshare.iter().flat_map(|r| r.cards.iter()))
    });
    let backup = script.backup.iter().flat_map(|b| b.cards.iter());
    let restore = script.restore.iter().flat_map(|r| r.cards.iter());
    quorum
        .chain(backup)
        .chain(restore)
        .map(|c| WantedToken::new(softhsm, &rehearsal_label(&c.token)).held_by(&c.holder))
        .collect()
}

/// A SoftHSM2 token has no cable: the device and internal errors it returns mean its files are
/// damaged, most often by a keyrite killed while the token was being written. Say so.
pub fn damaged_token_fix(rehearsal: bool, mut err: HsmError) -> HsmError {
    let damaged = [
        "CKR_DEVICE_ERROR",
        "CKR_GENERAL_ERROR",
        "CKR_DEVICE_MEMORY",
        "CKR_FUNCTION_FAILED",
        "CKR_TOKEN_NOT_RECOGNIZED",
    ];
    if rehearsal && damaged.contains(&err.ckr.as_str()) {
        err.fix =
            "this throw-away SoftHSM2 token looks damaged, most likely by a keyrite that was \
                   killed while writing to it (there is no hardware to check): rehearse with a new \
                   --env folder, or delete the token's folder under --env/tokens and its entry in \
                   rehearsal.toml"
                .into();
    }
    err
}

/// 16 characters from the OS RNG over an unambiguous alphabet (~93 bits).
fn random_pin() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = zeroize::Zeroizing::new([0u8; 16]);
    getrandom::fill(bytes.as_mut())
        .map_err(|e| Error::env(format!("the OS RNG failed: {e}"), "check the system"))?;
    // 256 % 54 != 0 leaves a slight bias; irrelevant for throw-away rehearsal PINs.
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

/// PINs for rehearsal tokens, looked up by the token's serial.
pub struct RehearsalPins(pub Vec<RehearsalToken>);

impl PinSource for RehearsalPins {
    fn pin(&mut self, request: &PinRequest<'_>) -> Result<SecretString> {
        let token = request.token();
        self.0
            .iter()
            .find(|t| t.serial == token.serial)
            .map(|t| match request {
                PinRequest::HsmSecurityOfficer(_) => SecretString::from(t.so_pin.as_str()),
                _ => SecretString::from(t.user_pin.as_str()),
            })
            .ok_or_else(|| {
                Error::input(
                    format!(
                        "token \"{}\" (serial {}) is not a rehearsal token of this --env folder",
                        token.token_label, token.serial
                    ),
                    "rehearse against the tokens listed in rehearsal.toml",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rehearsal_token_error_blames_damaged_files_not_cabling() {
        let mut err = HsmError::new("C_Login", "log in", "check its cabling");
        err.ckr = "CKR_GENERAL_ERROR".into();
        let fixed = damaged_token_fix(true, err.clone());
        assert!(fixed.fix.contains("damaged") && !fixed.fix.contains("cabling"));
        assert_eq!(damaged_token_fix(false, err.clone()), err);
        err.ckr = "CKR_PIN_INCORRECT".into();
        assert_eq!(damaged_token_fix(true, err.clone()), err);
    }
}

//! Rehearsals on throw-away SoftHSM2 tokens: a private SOFTHSM2_CONF and token folder, tokens made
//! on demand with random PINs, and DIR/rehearsal.toml (mode 0600) as the only place those PINs are
//! written, so a later rehearsal ceremony can reuse the same tokens with `--env DIR`.

mod cards;
pub mod pqc;

pub use cards::{CARD_KEY, CA_FILE, CA_TOKEN};

use super::pins::{PinRequest, PinSource};
use crate::error::{Error, Result};
use crate::hsm::{pkcs11, HsmError};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Where Debian puts the module (the package `softhsm2`).
pub const SOFTHSM_MODULES: [&str; 2] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
];
pub const ENV_FILE: &str = "rehearsal.toml";
/// Set in the re-executed child: the rehearsal folder it must use.
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

/// A backup a rehearsed ceremony made: a rehearsed restore takes the blob and key hashes from here
/// where its script has none (the script cannot know a throw-away key's hashes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RehearsalBackup {
    pub ceremony_id: String,
    pub key: String,
    pub key_hash: String,
    pub blob_sha256: String,
}

/// The newest backup made by ceremony `ceremony_id` in the running rehearsal's folder.
pub fn recorded_backup(ceremony_id: &str) -> Result<Option<RehearsalBackup>> {
    let Some(dir) = running() else {
        return Ok(None);
    };
    let env = RehearsalEnv::open(&dir)?;
    Ok(env
        .file
        .backups
        .iter()
        .rev()
        .find(|b| b.ceremony_id == ceremony_id)
        .cloned())
}

/// Record a backup made in the running rehearsal's folder (nothing outside a rehearsal).
pub fn note_backup(backup: RehearsalBackup) -> Result<()> {
    let Some(dir) = running() else {
        return Ok(());
    };
    let mut env = RehearsalEnv::open(&dir)?;
    env.file.backups.push(backup);
    env.save()
}

/// A CA certificate a rehearsed ceremony signed, by the hash of the key it certifies: a later
/// rehearsal that issues with that key takes it as the issuer certificate, as a `run` reads the
/// script's `issuer_certificate` file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RehearsalCertificate {
    pub ceremony_id: String,
    pub key_hash: String,
    pub pem: String,
}

/// The newest CA certificate for the key with `key_hash` signed in the running rehearsal's folder.
pub fn recorded_certificate(key_hash: &str) -> Result<Option<RehearsalCertificate>> {
    let Some(dir) = running() else {
        return Ok(None);
    };
    let env = RehearsalEnv::open(&dir)?;
    Ok(env
        .file
        .certificates
        .iter()
        .rev()
        .find(|c| c.key_hash == key_hash)
        .cloned())
}

/// Record a CA certificate signed in the running rehearsal's folder (nothing outside a rehearsal).
pub fn note_certificate(cert: RehearsalCertificate) -> Result<()> {
    let Some(dir) = running() else {
        return Ok(());
    };
    let mut env = RehearsalEnv::open(&dir)?;
    env.file.certificates.push(cert);
    env.save()
}

/// A key a rehearsed ceremony generated on a token of this folder. A later rehearsal that uses it as
/// an existing key checks it against this hash, as a `run` checks against the script's `key_hash`
/// (the script cannot know a throw-away key's hash).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RehearsalKey {
    pub ceremony_id: String,
    pub label: String,
    pub key_hash: String,
}

/// The newest record of a key labelled `label` generated in the running rehearsal's folder.
pub fn recorded_key(label: &str) -> Result<Option<RehearsalKey>> {
    let Some(dir) = running() else {
        return Ok(None);
    };
    let env = RehearsalEnv::open(&dir)?;
    Ok(env
        .file
        .keys
        .iter()
        .rev()
        .find(|k| k.label == label)
        .cloned())
}

/// Record a key generated in the running rehearsal's folder (nothing outside a rehearsal).
pub fn note_key(key: RehearsalKey) -> Result<()> {
    let Some(dir) = running() else {
        return Ok(());
    };
    let mut env = RehearsalEnv::open(&dir)?;
    env.file.keys.retain(|k| k.label != key.label);
    env.file.keys.push(key);
    env.save()
}

/// The rehearsal folder's record of one quorum split (or reshare). A rehearsed activation, health
/// check, reshare or retirement takes the split's commitments from here, as a `run` takes them from
/// the script's `quorum.commitments_sha256`; an interrupted split is finished from `stage`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RehearsalSplit {
    pub ceremony_id: String,
    pub commitments_sha256: String,
    /// As the log's `quorum_pins.stage`: "done" once both HSM PINs are the split's.
    pub stage: String,
    /// "old", "derived" or "old or derived", as in `quorum_pins`.
    pub so_pin: String,
    pub user_pin: String,
    /// A reshare replaced this split: its shares no longer activate anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
}

/// The folder of the running rehearsal: the re-executed child has [`DIR_VAR`] set.
fn running() -> Option<PathBuf> {
    std::env::var_os(DIR_VAR).map(PathBuf::from)
}

/// The folder of the running rehearsal, if this process is one (sealed-share envelopes live there).
pub fn running_dir() -> Option<PathBuf> {
    running()
}

/// The newest record of a split made by `ceremony_id` in the running rehearsal's folder.
pub fn recorded_split(ceremony_id: &str) -> Result<Option<RehearsalSplit>> {
    let Some(dir) = running() else {
        return Ok(None);
    };
    let env = RehearsalEnv::open(&dir)?;
    Ok(env
        .file
        .splits
        .iter()
        .rev()
        .find(|s| s.ceremony_id == ceremony_id)
        .cloned())
}

/// Record (or update, by commitments) a split in the running rehearsal's folder; with `replaces`,
/// mark that older split as replaced by this one.
pub fn note_split(split: &RehearsalSplit, replaces: Option<&str>) -> Result<()> {
    let Some(dir) = running() else {
        return Ok(());
    };
    // Re-read: the folder is the record, not what this process loaded at its start.
    let mut env = RehearsalEnv::open(&dir)?;
    let splits = &mut env.file.splits;
    match splits
        .iter_mut()
        .find(|s| s.commitments_sha256 == split.commitments_sha256)
    {
        Some(s) => *s = split.clone(),
        None => splits.push(split.clone()),
    }
    if let Some(old) = replaces {
        for s in splits.iter_mut().filter(|s| s.commitments_sha256 == old) {
            s.replaced_by = Some(split.commitments_sha256.clone());
        }
    }
    env.save()
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
            let text =
                fs::read_to_string(&env_file).map_err(|e| Error::io("read", &env_file, &e))?;
            toml::from_str(&text).map_err(|e| {
                Error::input(
                    format!("{}: {}", env_file.display(), e.message()),
                    "restore the file or use a new --env folder",
                )
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
    /// once, at C_Initialize, so otherwise the CLI re-executes itself with it set.
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

    pub fn token(&self, label: &str) -> Option<&RehearsalToken> {
        self.file.tokens.iter().find(|t| t.label == label)
    }

    /// The token labelled `label`, made now with random PINs if the folder does not have it yet.
    pub fn ensure_token(&mut self, softhsm_module: &str, label: &str) -> Result<RehearsalToken> {
        if let Some(t) = self.token(label) {
            return Ok(t.clone());
        }
        let so_pin = random_pin()?;
        let user_pin = random_pin()?;
        let serial = pkcs11::init_token(
            softhsm_module,
            label,
            &SecretString::from(so_pin.as_str()),
            &SecretString::from(user_pin.as_str()),
        )?;
        let token = RehearsalToken {
            label: label.into(),
            serial,
            holder: None,
            so_pin,
            user_pin,
        };
        self.file.tokens.push(token.clone());
        self.save()?;
        Ok(token)
    }

    /// A custodian card's token, made now if needed, with its holder recorded in rehearsal.toml.
    pub fn ensure_card(
        &mut self,
        softhsm_module: &str,
        label: &str,
        holder: &str,
    ) -> Result<RehearsalToken> {
        let token = self.ensure_token(softhsm_module, label)?;
        if token.holder.as_deref() == Some(holder) {
            return Ok(token);
        }
        for t in self.file.tokens.iter_mut().filter(|t| t.label == label) {
            t.holder = Some(holder.to_string());
        }
        self.save()?;
        Ok(self.token(label).cloned().unwrap_or(token))
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
            self.save()?;
        }
        Ok(())
    }

    /// Write rehearsal.toml atomically: a temporary file, fsync, rename over the old one, fsync of
    /// the folder. A kill at any moment leaves either the old or the new file whole.
    fn save(&self) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join(ENV_FILE);
        let text = toml::to_string_pretty(&self.file).map_err(|e| {
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
        // The data is fsynced before the rename: after a split this file holds the only record of
        // the split's commitments and PIN-change stage, and a power cut must not leave it empty.
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("write", &tmp, &e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("replace", &path, &e))?;
        // The rename is durable only once the folder's entry is on disk: a power cut must leave the
        // old file or the new one, never neither.
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("sync", &self.dir, &e))
    }
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

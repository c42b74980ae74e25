//! Rehearsals of scripts with ML-DSA keys. SoftHSM2 2.6 has no ML-DSA, so the ceremony HSM of such a
//! rehearsal is a throw-away token of Kryoptic built with its `pqc` feature (OpenSSL 3.5 inside), with
//! a configuration private to the rehearsal folder, as SoftHSM's is: ENV/kryoptic/<token>.conf names one
//! SQLite slot, ENV/kryoptic/<token>.sql, set as KRYOPTIC_CONF when keyrite enters the folder (Kryoptic
//! reads it once, at C_Initialize). Custodian and personal cards stay on SoftHSM2.

use super::RehearsalEnv;
use crate::error::{Error, Result};
use crate::script::Script;
use std::fs;
use std::path::{Path, PathBuf};

/// Names the Kryoptic PQC module explicitly.
pub const MODULE_VAR: &str = "KEYRITE_KRYOPTIC_PQC_MODULE";
/// Where softhsm-tests/backends/build-kryoptic-pqc.sh leaves it, under the user's cache folder.
pub const CACHED_MODULE: &str =
    "keyrite/kryoptic-pqc/libkryoptic_pkcs11-1.5.4-pqc-openssl-3.5.5.so";

/// Does a rehearsal of `script` in `dir` need the ML-DSA token? When the script has ML-DSA keys, or
/// when an earlier rehearsal in the folder made its HSM token on Kryoptic (a later activation or
/// health-check script of the same quorum names no key).
pub fn needs_pqc(script: &Script, dir: &Path, label: &str) -> bool {
    script.keys.iter().any(|k| k.algorithm.is_ml_dsa()) || conf_path(dir, label).exists()
}

/// Is this process a rehearsal on its folder's private Kryoptic token (KRYOPTIC_CONF set by
/// [`RehearsalEnv::kryoptic_conf`] when keyrite entered the folder)?
pub fn active() -> bool {
    match (std::env::var_os("KRYOPTIC_CONF"), super::running()) {
        (Some(conf), Some(dir)) => Path::new(&conf).starts_with(dir.join("kryoptic")),
        _ => false,
    }
}

fn conf_path(dir: &Path, label: &str) -> PathBuf {
    let stem: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join("kryoptic").join(format!("{stem}.conf"))
}

/// The Kryoptic PQC module: $KEYRITE_KRYOPTIC_PQC_MODULE, else the build script's cache
/// ($XDG_CACHE_HOME or ~/.cache, then [`CACHED_MODULE`]).
pub fn find_module() -> Result<String> {
    let (path, how) = match std::env::var_os(MODULE_VAR) {
        Some(p) => (PathBuf::from(p), format!("${MODULE_VAR}")),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"));
            (cache.join(CACHED_MODULE), "the build cache".to_string())
        }
    };
    if path.is_file() {
        return Ok(path.display().to_string());
    }
    Err(Error::env(
        format!(
            "this script has ML-DSA keys, and the rehearsal needs a token that can generate and sign \
             with them (CKM_ML_DSA_KEY_PAIR_GEN, CKM_ML_DSA), which SoftHSM2 2.6 cannot; the Kryoptic \
             PQC module was not found at {} ({how})",
            path.display()
        ),
        format!(
            "build it once with `bash softhsm-tests/backends/build-kryoptic-pqc.sh` (about 4 minutes on 2 cores; \
             softhsm-tests/setup.sh does it), or set {MODULE_VAR} to a PKCS#11 module with ML-DSA"
        ),
    ))
}

impl RehearsalEnv {
    /// The private KRYOPTIC_CONF for the rehearsal token `label`, written the first time: one slot
    /// whose SQLite file is the token (uninitialised until keyrite or a quorum split initialises it).
    pub fn kryoptic_conf(&self, label: &str) -> Result<PathBuf> {
        let folder = self.dir.join("kryoptic");
        fs::create_dir_all(&folder).map_err(|e| Error::io("create", &folder, &e))?;
        let conf = conf_path(&self.dir, label);
        if !conf.exists() {
            let db = conf.with_extension("sql");
            let text = format!(
                "# keyrite rehearsal: a throw-away Kryoptic ML-DSA token\n[[slots]]\nslot = 1\n\
                 dbtype = \"sqlite\"\ndbargs = \"{}\"\n",
                db.display()
            );
            fs::write(&conf, text).map_err(|e| Error::io("write", &conf, &e))?;
        }
        Ok(conf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_private_kryoptic_conf_names_one_sqlite_slot_per_token() {
        let dir = tempfile::tempdir().unwrap();
        let renv = RehearsalEnv::open(dir.path()).unwrap();
        let conf = renv.kryoptic_conf("example hsm").unwrap();
        let text = fs::read_to_string(&conf).unwrap();
        assert!(
            text.contains("slot = 1") && text.contains("example_hsm.sql"),
            "{text}"
        );
        assert!(conf.ends_with("kryoptic/example_hsm.conf"));
    }
}

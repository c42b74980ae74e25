//! `keyrite rehearse`: the same script on throw-away SoftHSM2 tokens, in a rehearsal folder (--env)
//! that keeps them between rehearsals.

use super::{
    attach_paths, ceremony_exit, conduct, load_script, open_rehearsal, operator_for, Room,
};
use crate::driver::lock::FolderLock;
use crate::driver::rehearsal::{self, rehearsal_label, RehearsalEnv, RehearsalPins, WantedToken};
use crate::driver::RunMode;
use crate::error::{exit, Error, Result};
use crate::script::{self, TokenSelector};
use std::path::{Path, PathBuf};

pub(super) fn rehearse(
    path: &Path,
    out: &Path,
    room: Room<'_>,
    env: Option<&Path>,
    module: Option<String>,
) -> Result<i32> {
    // A child that enter_env (below) had to re-execute finds its folder here.
    let inherited = std::env::var_os(rehearsal::DIR_VAR).map(PathBuf::from);
    // The re-executed child checks the script again, but its warnings were printed by the parent.
    // The quorum's commitments come from the rehearsal folder's record of the split.
    let loaded = load_script(path, inherited.is_none(), script::check_file_rehearsal)?;
    let softhsm = rehearsal::find_softhsm()?;
    let (dir, _temp) = match (inherited, env) {
        (Some(dir), _) => (dir, None),
        (None, Some(dir)) => (dir.to_path_buf(), None),
        (None, None) => {
            let temp = tempfile::Builder::new()
                .prefix("keyrite-rehearsal-")
                .tempdir()
                .map_err(|e| {
                    Error::env(
                        format!("could not create a temporary folder: {e}"),
                        "check TMPDIR",
                    )
                })?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let label = rehearsal_label(&loaded.script.hsm.token);
    let pqc = rehearsal::pqc::needs_pqc(&loaded.script, &dir, &label).then_some(label.as_str());
    let (renv, _env_lock) = match enter_env(&dir, pqc)? {
        Ok(entered) => entered,
        Err(code) => return Ok(code),
    };
    let mut renv = renv;
    let (mut operator, confirmations) = operator_for(room, &loaded)?;
    // SoftHSM2 has no ML-DSA: such a script's HSM is a throw-away Kryoptic PQC token, unless
    // --module names another module to make it on (SoftHSM2's then refuses at activation).
    let (hsm_module, hsm_kind) = match (pqc, &module) {
        (Some(_), None) => (rehearsal::pqc::find_module()?, "Kryoptic ML-DSA"),
        (Some(_), Some(m)) => (m.clone(), "ML-DSA"),
        (None, _) => (softhsm.clone(), "SoftHSM2"),
    };
    // A script whose first HSM step is a quorum split starts from a factory-fresh token: the split
    // initialises it, so the rehearsal leaves a free slot instead of making the token.
    let fresh = loaded
        .script
        .steps
        .iter()
        .find(|s| s.action.uses_hsm())
        .is_some_and(|s| s.action == script::Action::SplitActivation)
        && !renv.is_recorded(&label);
    let module_used = module.unwrap_or(hsm_module.clone());
    // Every throw-away token the rehearsal needs, made in one batch: rehearsal.toml is written
    // twice, not once per token. Issue 12: one for each of the script's other tokens; an ML-DSA
    // rehearsal's Kryoptic has one slot, the primary token's, so the others stay on SoftHSM2.
    let others_module = if pqc.is_some() {
        &softhsm
    } else {
        &module_used
    };
    let mut wanted: Vec<WantedToken> = crate::driver::tokens::rehearsal_labels(&loaded.script)?
        .iter()
        .map(|(_, label)| WantedToken::new(&softhsm, label))
        .collect();
    if !fresh {
        wanted.insert(0, WantedToken::new(&hsm_module, &label));
    }
    wanted.extend(rehearsal::card_tokens(&softhsm, &loaded.script));
    // One per custodian card (and backup KEK card), each with its own random PIN.
    wanted.extend(rehearsal::custodian_tokens(&softhsm, &loaded.script));
    renv.provision(&wanted)?;
    let selector = if fresh {
        say!("REHEARSAL: the split initialises a fresh throw-away {hsm_kind} token \"{label}\"");
        TokenSelector {
            label: Some(label.clone()),
            serial: None,
            uri: None,
        }
    } else {
        let token = renv.ensure_token(&hsm_module, &label)?;
        say!(
            "REHEARSAL on throw-away {hsm_kind} token \"{}\" (serial {})",
            token.label,
            token.serial
        );
        // Label and serial together: only the throw-away token made for this rehearsal matches.
        TokenSelector {
            label: Some(token.label.clone()),
            serial: Some(token.serial.clone()),
            uri: None,
        }
    };
    let tokens = crate::driver::tokens::rehearsal_tokens(
        &mut renv,
        &softhsm,
        others_module,
        &loaded.script,
        true,
    )?;
    for (name, (_, sel)) in &tokens {
        say!(
            "REHEARSAL: the script's token \"{name}\" is the throw-away SoftHSM2 token {}",
            sel
        );
    }
    let cards = renv.ensure_cards(&softhsm, &loaded.script)?;
    if env.is_some() {
        say!(
            "rehearsal tokens and their PINs: {}",
            renv.dir.join(rehearsal::ENV_FILE).display()
        );
    }
    let mode = RunMode {
        rehearsal: true,
        enforce_offline: false,
        module: module_used.clone(),
        token: selector,
        tokens,
        confirmations,
        cards,
    };
    let mut pins = RehearsalPins(renv.tokens().to_vec());
    let code = if room.tui() {
        let attach = attach_paths(room.attach, &loaded.script)?;
        let outcome =
            crate::tui::conduct(&loaded, mode, Some(&mut pins), attach, open_rehearsal, out)?;
        ceremony_exit(&outcome, out)
    } else {
        conduct(
            &loaded,
            mode,
            operator.as_mut(),
            &mut pins,
            out,
            open_rehearsal,
        )?
    };
    if fresh {
        // Later rehearsals on this --env find the split's token; its PINs are the quorum's.
        renv.adopt_token(&module_used, &label)?;
    }
    Ok(code)
}

/// Enter the rehearsal folder `dir`: in this process when it already runs under the folder's
/// SOFTHSM2_CONF or can still set it (then locked against a second keyrite, and read under the
/// lock), else by running keyrite again with it set; `Err` is then that child's exit code.
/// `pqc` names the HSM token of a script with ML-DSA keys: its private KRYOPTIC_CONF is set too.
pub(crate) fn enter_env(
    dir: &Path,
    pqc: Option<&str>,
) -> Result<std::result::Result<(RehearsalEnv, FolderLock), i32>> {
    let renv = RehearsalEnv::open(dir)?;
    let kryoptic = pqc.map(|label| renv.kryoptic_conf(label)).transpose()?;
    if !renv.is_active(kryoptic.as_deref()) {
        let mut vars = vec![
            ("SOFTHSM2_CONF", renv.conf.clone()),
            (rehearsal::DIR_VAR, renv.dir.clone()),
        ];
        vars.extend(kryoptic.map(|conf| ("KRYOPTIC_CONF", conf)));
        // SoftHSM reads SOFTHSM2_CONF once, at C_Initialize. Before any module is loaded, and
        // while this is the process's only thread (nothing can read the environment while it
        // changes), set it here; else run ourselves again with it set.
        if crate::hsm::pkcs11::no_module_loaded() && only_thread() {
            for (var, value) in vars {
                std::env::set_var(var, value);
            }
        } else {
            return reexecute(&vars).map(Err);
        }
    }
    // One keyrite per --env: a second one would make or use the same tokens and lose their PINs.
    let lock = FolderLock::take(&renv.dir, "the rehearsal folder")?;
    let renv = RehearsalEnv::open(&renv.dir)?;
    Ok(Ok((renv, lock)))
}

/// Is this the process's only thread (Linux: one entry in /proc/self/task)? `false` when unknown.
fn only_thread() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|tasks| tasks.count() == 1)
}

/// Run keyrite again with the same arguments and `vars` set; its exit code.
fn reexecute(vars: &[(&str, PathBuf)]) -> Result<i32> {
    let exe = std::env::current_exe().map_err(|e| {
        Error::env(
            format!("cannot find the keyrite executable: {e}"),
            "run keyrite by its full path",
        )
    })?;
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .envs(vars.iter().map(|(var, value)| (*var, value)))
        .status()
        .map_err(|e| {
            Error::env(
                format!("could not start the rehearsal: {e}"),
                "check the keyrite executable",
            )
        })?;
    Ok(status.code().unwrap_or(exit::ENVIRONMENT))
}

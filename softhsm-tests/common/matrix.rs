//! Helpers of the crash, fault and full-disk matrices (softhsm-tests/matrices.rs): rehearsals on a
//! kept --env with the test hooks armed, copies of a rehearsal folder, the objects on its tokens as
//! pkcs11-tool lists them, and a small pool of worker threads (the CI machine has 2 cores).

use super::{root, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const KILL_VAR: &str = "KEYRITE_TEST_KILL_AT";
pub const KILL_LISTED: &str = "keyrite test hook: kill point ";
pub const FAULT_VAR: &str = "KEYRITE_TEST_HSM_FAULT";
pub const FAULT_LISTED: &str = "keyrite test hook: hsm call ";

/// `keyrite ARGS` from the repository root with `vars` set and no SoftHSM setting inherited.
pub fn keyrite_with(args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyrite"))
        .args(args)
        .current_dir(root())
        .env_remove("SOFTHSM2_CONF")
        .env_remove("KEYRITE_REHEARSAL_DIR")
        .env_remove(KILL_VAR)
        .env_remove(FAULT_VAR)
        .envs(vars.iter().copied())
        .output()
        .expect("keyrite runs")
}

/// `keyrite rehearse SCRIPT --auto --env ENV --out OUT` with `vars` set.
pub fn rehearse(script: &str, env: &Path, out: &Path, vars: &[(&str, &str)]) -> Output {
    keyrite_with(
        &[
            "rehearse",
            script,
            "--auto",
            "--env",
            env.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        vars,
    )
}

pub fn resume(env: &Path, out: &Path) -> Output {
    let (env, out) = (env.to_str().unwrap(), out.to_str().unwrap());
    keyrite_with(&["resume", out, "--auto", "--env", env], &[])
}

pub fn abort(env: &Path, out: &Path, reason: &str) -> Output {
    let (env, out) = (env.to_str().unwrap(), out.to_str().unwrap());
    keyrite_with(&["abort", out, "--reason", reason, "--env", env], &[])
}

/// `keyrite verify OUT`: its exit code and its text.
pub fn verify(out: &Path) -> (Option<i32>, String) {
    let v = keyrite_with(&["verify", out.to_str().unwrap()], &[]);
    (v.status.code(), text(&v))
}

/// The lines of stderr that start with `prefix`, without it.
pub fn listed(out: &Output, prefix: &str) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix(prefix).map(str::to_string))
        .collect()
}

/// Copy a rehearsal folder (its tokens and records) to `to`, pointing the copy's SoftHSM
/// configuration and records at the copy.
pub fn copy_env(from: &Path, to: &Path) {
    let cp = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(cp.status.success(), "cp: {}", text(&cp));
    for file in ["softhsm2.conf", "rehearsal.toml"] {
        let path = to.join(file);
        if let Ok(t) = std::fs::read_to_string(&path) {
            let from = from.display().to_string();
            std::fs::write(&path, t.replace(&from, &to.display().to_string())).unwrap();
        }
    }
}

/// The rehearsal folder's tokens: (label, user PIN).
pub fn tokens(env: &Path) -> Vec<(String, String)> {
    let Ok(t) = std::fs::read_to_string(env.join("rehearsal.toml")) else {
        return Vec::new();
    };
    let v: toml::Value = toml::from_str(&t).unwrap();
    v.get("tokens")
        .and_then(|t| t.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some((
                        t.get("label")?.as_str()?.to_string(),
                        t.get("user_pin")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every token label the folder's SoftHSM holds (also one a split initialised and the records do
/// not name yet), as `softhsm2-util --show-slots` lists them.
pub fn token_labels(env: &Path) -> Vec<String> {
    let o = Command::new("softhsm2-util")
        .arg("--show-slots")
        .env("SOFTHSM2_CONF", env.join("softhsm2.conf"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Label:"))
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The labels of the objects on `token`, listed by pkcs11-tool: logged in with `pin` when given
/// (and it works), else the public objects only.
pub fn object_labels(env: &Path, token: &str, pin: Option<&str>) -> Vec<String> {
    let list = |pin: Option<&str>| {
        let mut c = Command::new("pkcs11-tool");
        c.args([
            "--module",
            SOFTHSM,
            "--token-label",
            token,
            "--list-objects",
        ])
        .env("SOFTHSM2_CONF", env.join("softhsm2.conf"));
        if let Some(pin) = pin {
            c.args(["--login", "--pin", pin]);
        }
        c.output().unwrap()
    };
    let mut o = list(pin);
    if !o.status.success() && pin.is_some() {
        // The PIN changed (a quorum split): the public objects still show.
        o = list(None);
    }
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("label:"))
        .map(|l| l.trim().trim_matches('\'').to_string())
        .collect()
}

/// Does a log name the object `label` on `token`? A custodian card's share and commitments
/// (`keyrite-share:ID`, `keyrite-commitments:ID`) are named by the entry that writes to that card
/// for ceremony ID; any other object by its label.
fn named(logs: &str, token: &str, label: &str) -> bool {
    match label.split_once(':') {
        Some(("keyrite-share" | "keyrite-commitments", id)) => {
            logs.lines().any(|l| l.contains(token)) && logs.contains(id)
        }
        _ => logs.contains(label),
    }
}

/// Objects on the folder's tokens that none of `logs` names (by label, anywhere in an entry).
pub fn unnamed_objects(env: &Path, logs: &[PathBuf]) -> Vec<String> {
    let logs: String = logs
        .iter()
        .filter_map(|b| std::fs::read_to_string(b.join("audit.jsonl")).ok())
        .collect();
    let pins = tokens(env);
    let mut unnamed = Vec::new();
    for token in token_labels(env) {
        // Personal cards and their CA are made by the rehearsal, not by the ceremony.
        if token.starts_with("card-") || token == "keyrite-participants-ca" {
            continue;
        }
        let pin = pins
            .iter()
            .find(|(l, _)| *l == token)
            .map(|(_, p)| p.as_str());
        for label in object_labels(env, &token, pin) {
            if !named(&logs, &token, &label) {
                unnamed.push(format!("{token}: {label}"));
            }
        }
    }
    unnamed
}

/// Run `job` over `items` on `threads` worker threads; returns the results in item order.
pub fn pool<T: Sync, R: Send>(items: &[T], threads: usize, job: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                let r = job(item);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// Worker threads for the matrices: KEYRITE_MATRIX_THREADS, else 4. A rehearsal mostly waits for
/// fsync (about 0.15 s of CPU in 1.2 s), so 4 keep the CI machine's 2 cores busy.
pub fn threads() -> usize {
    std::env::var("KEYRITE_MATRIX_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

/// Every `step`-th item (always the first and last), unless KEYRITE_MATRIX_FULL=1: the CI sample.
pub fn sample<T: Clone>(all: &[T], step: usize) -> (Vec<T>, bool) {
    if std::env::var("KEYRITE_MATRIX_FULL").is_ok_and(|v| v == "1") || step <= 1 {
        return (all.to_vec(), true);
    }
    let n = all.len();
    let picked = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i + 1 == n)
        .map(|(_, x)| x.clone())
        .collect::<Vec<_>>();
    let full = picked.len() == n;
    (picked, full)
}

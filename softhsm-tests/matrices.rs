//! The crash, fault and full-disk matrices of issue 10 (item 7), on the real binary and SoftHSM2.
//!
//! - Crash: a dry run with `KEYRITE_TEST_KILL_AT=list` names every kill point the P-256 root
//!   ceremony, the quorum sequence (split, activation, health check, reshare and retire) and the
//!   key destruction after the P-256 root pass,
//!   so new actions are covered without editing this file. keyrite is then SIGKILLed at each: verify
//!   must say INCOMPLETE (exit 6); every object on the tokens must be named by a log; and `keyrite
//!   resume` must finish the bundle to one that verifies, or else `keyrite abort` close it as an
//!   honest abort.
//! - Fault: `KEYRITE_TEST_HSM_FAULT=N:CKR` fails the Nth HSM call of the root ceremony with each
//!   of four CKR codes: the run names the code, the log records it, and the bundle verifies (an
//!   abort on the record) or is INCOMPLETE and resumes.
//! - Full disk: --out on a tmpfs with too few inodes (root only; skipped with a message otherwise).
//!
//! CI runs a deterministic sample where the whole matrix would not fit its budget, and prints what
//! it covered; `KEYRITE_MATRIX_FULL=1 cargo test --test softhsm_matrices -- --nocapture`
//! runs every case (docs/operator-guide.md, "Testing the recovery paths").

mod common;

use common::matrix::*;
use common::{report, text};
use std::path::{Path, PathBuf};

const P256: &str = "ceremony-scripts/root-ca-p256.toml";
const QUORUM: [&str; 4] = [
    "ceremony-scripts/root-ca-quorum.toml",
    "ceremony-scripts/key-activation.toml",
    "ceremony-scripts/share-health-check.toml",
    "ceremony-scripts/reshare.toml",
];
const DESTRUCTION: [&str; 2] = [P256, "ceremony-scripts/key-destruction.toml"];

fn have_tools() -> bool {
    common::have("softhsm2-util") && common::have("pkcs11-tool") && Path::new(SOFTHSM).exists()
}

fn kinds(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["event"]["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    Resumed,
    Aborted,
}

/// After a kill at `point`: INCOMPLETE, no unnamed object; then resume, or abort when resume
/// refuses. `earlier`: bundles of the ceremonies before this one on the same tokens.
fn after_kill(
    point: &str,
    env: &Path,
    out: &Path,
    earlier: &[PathBuf],
) -> Result<(Closed, String), String> {
    let (code, t) = verify(out);
    if code != Some(6) || !t.contains("INCOMPLETE") {
        return Err(format!(
            "{point}: verify said {code:?}, not INCOMPLETE: {t}"
        ));
    }
    let mut logs = earlier.to_vec();
    logs.push(out.to_path_buf());
    let unnamed = unnamed_objects(env, &logs);
    if !unnamed.is_empty() {
        return Err(format!("{point}: objects no log names: {unnamed:?}"));
    }
    let r = resume(env, out);
    let resumed_text = text(&r);
    let (code, t) = verify(out);
    if r.status.success() {
        if code != Some(0) || report(out)["result"] != "completed" {
            return Err(format!("{point}: resumed, then verify {code:?}: {t}"));
        }
        let unnamed = unnamed_objects(env, &logs);
        if !unnamed.is_empty() {
            return Err(format!(
                "{point}: after resume, unnamed objects: {unnamed:?}"
            ));
        }
        return Ok((Closed::Resumed, String::new()));
    }
    // Resume refused (it says why and what to do) or stopped: close the ceremony on the record.
    let why = resumed_text
        .lines()
        .find(|l| l.contains("keyrite:") || l.contains("error"))
        .unwrap_or_default()
        .to_string();
    if code == Some(0) && report(out)["result"] == "aborted" {
        return Ok((Closed::Aborted, why)); // resume itself ended it on the record
    }
    let a = abort(env, out, "kill matrix: resume refused");
    let (code, t) = verify(out);
    if !a.status.success() || code != Some(0) || report(out)["result"] != "aborted" {
        return Err(format!(
            "{point}: resume refused ({resumed_text}); abort {:?}: {}; verify {code:?}: {t}",
            a.status.code(),
            text(&a)
        ));
    }
    Ok((Closed::Aborted, why))
}

/// Kill the run of `script` at `point`; the hook must fire.
fn killed(script: &str, env: &Path, out: &Path, point: &str) -> Result<(), String> {
    let r = rehearse(script, env, out, &[(KILL_VAR, point)]);
    if r.status.success() || !text(&r).contains("killed here") {
        return Err(format!("{point}: the hook did not fire: {}", text(&r)));
    }
    Ok(())
}

fn print_counts(
    what: &str,
    all: usize,
    ran: usize,
    full: bool,
    results: &[Result<(Closed, String), String>],
) {
    let resumed = results
        .iter()
        .filter(|r| matches!(r, Ok((Closed::Resumed, _))))
        .count();
    let aborted = results
        .iter()
        .filter(|r| matches!(r, Ok((Closed::Aborted, _))))
        .count();
    let failed = results.iter().filter(|r| r.is_err()).count();
    println!(
        "kill matrix, {what}: {all} kill points, {ran} killed{}; {resumed} resumed to a verified bundle, \
         {aborted} closed by abort; {failed} failed",
        if full { "" } else { " (CI sample; KEYRITE_MATRIX_FULL=1 for all)" }
    );
}

fn fail_on(results: &[Result<(Closed, String), String>]) {
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

#[test]
fn kill_matrix_root_ceremony() {
    if !have_tools() {
        eprintln!("skipping the kill matrix: SoftHSM2 or pkcs11-tool missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dry = rehearse(
        P256,
        &dir.path().join("env"),
        &dir.path().join("dry"),
        &[(KILL_VAR, "list")],
    );
    assert!(dry.status.success(), "{}", text(&dry));
    let points = listed(&dry, KILL_LISTED);
    assert!(
        points
            .iter()
            .any(|p| p == "generate-root-key:before-generate_key_pair"),
        "{points:?}"
    );
    assert!(
        points.iter().any(|p| p == "report:before-signatures"),
        "{points:?}"
    );
    let last_step = points
        .iter()
        .rev()
        .find(|p| p.ends_with(":after-step"))
        .cloned()
        .unwrap_or_default();
    let (chosen, full) = sample(&points, 1);
    let results = pool(&chosen, threads(), |point: &String| {
        let case = tempfile::tempdir().unwrap();
        let (env, out) = (case.path().join("env"), case.path().join("out"));
        killed(P256, &env, &out, point)?;
        let (env2, out2) = (case.path().join("env2"), case.path().join("out2"));
        copy_env(&env, &env2);
        copy_env(&out, &out2);
        let closed = after_kill(point, &env, &out, &[])?;
        if closed.0 == Closed::Resumed
            && kinds(&out).iter().filter(|k| *k == "key_generated").count() != 1
        {
            return Err(format!("{point}: the key was not logged exactly once"));
        }
        // The same interruption closed by abort instead; once every step has run (or the report
        // is written), abort refuses and points at resume.
        let a = abort(&env2, &out2, "kill matrix: closed instead of resumed");
        let (code, t) = verify(&out2);
        let ran_all = point.starts_with("report:") || *point == last_step;
        if ran_all {
            if a.status.success() || !text(&a).contains("keyrite resume") {
                return Err(format!("{point}: abort after the last step: {}", text(&a)));
            }
        } else if !a.status.success() || code != Some(0) || report(&out2)["result"] != "aborted" {
            return Err(format!(
                "{point}: abort: {}; verify {code:?}: {t}",
                text(&a)
            ));
        }
        Ok(closed)
    });
    print_counts(
        "P-256 root ceremony",
        points.len(),
        chosen.len(),
        full,
        &results,
    );
    fail_on(&results);
}

#[test]
fn kill_matrix_quorum_sequence() {
    kill_matrix_sequence("quorum sequence", &QUORUM, 0, true);
}

/// Issue 12: `key-destruction.toml` after the P-256 root it destroys; only the destruction's points
/// are killed (the root's are `kill_matrix_root_ceremony`'s). Every one resumes: nothing in it
/// changes cards or PINs, and the existing key is found again after the new login.
#[test]
fn kill_matrix_key_destruction() {
    kill_matrix_sequence("key destruction", &DESTRUCTION, 1, false);
}

/// Each ceremony of `scripts` in turn on one rehearsal folder; every kill point of the ceremonies
/// from `first` on is killed on a copy of the folder as that ceremony found it. `aborts`: whether a
/// point may close by an honest abort (resume refusing) rather than resume.
fn kill_matrix_sequence(what: &str, scripts: &[&str], first: usize, aborts: bool) {
    if !have_tools() {
        eprintln!("skipping the kill matrix: SoftHSM2 or pkcs11-tool missing");
        return;
    }
    // The dry run: each ceremony of the sequence on one folder, with a copy of the folder as each
    // ceremony found it.
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env");
    let mut cases: Vec<(usize, String)> = Vec::new();
    let mut bundles: Vec<PathBuf> = Vec::new();
    for (i, script) in scripts.iter().enumerate() {
        if i > 0 {
            copy_env(&env, &dir.path().join(format!("before-{i}")));
        }
        let out = dir.path().join(format!("dry-{i}"));
        let dry = rehearse(script, &env, &out, &[(KILL_VAR, "list")]);
        assert!(dry.status.success(), "{script}: {}", text(&dry));
        if i >= first {
            cases.extend(listed(&dry, KILL_LISTED).into_iter().map(|p| (i, p)));
        }
        bundles.push(out);
    }
    let all = cases.len();
    let (chosen, full) = sample(&cases, sample_step());
    let results = pool(&chosen, threads(), |(i, point): &(usize, String)| {
        let case = tempfile::tempdir().unwrap();
        let (env, out) = (case.path().join("env"), case.path().join("out"));
        if *i > 0 {
            copy_env(&dir.path().join(format!("before-{i}")), &env);
        }
        let name = format!(
            "{}:{point}",
            scripts[*i].trim_start_matches("ceremony-scripts/")
        );
        killed(scripts[*i], &env, &out, point).map_err(|e| format!("{name}: {e}"))?;
        after_kill(&name, &env, &out, &bundles[..*i])
    });
    print_counts(what, all, chosen.len(), full, &results);
    let mut aborted = Vec::new();
    for (case, r) in chosen.iter().zip(&results) {
        if let Ok((Closed::Aborted, why)) = r {
            let at = format!(
                "{}:{}: {why}",
                scripts[case.0].trim_start_matches("ceremony-scripts/"),
                case.1
            );
            println!("  aborted after {at}");
            aborted.push(at);
        }
    }
    fail_on(&results);
    assert!(
        aborts || aborted.is_empty(),
        "closed by abort, not resumed: {aborted:?}"
    );
}

/// CI samples every `KEYRITE_MATRIX_STEP`-th quorum kill point (default 1: all).
fn sample_step() -> usize {
    std::env::var("KEYRITE_MATRIX_STEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Faulted {
    /// Retried (a wrong PIN is asked again) and completed, the fault on the record.
    Retried,
    /// Completed, the failure on the record (a logout at the end: the session closes anyway).
    CompletedOnRecord,
    /// A card login refused while the report was signed (the log had closed): shown, asked again.
    ShownAfterReport,
    /// Stopped on the record (hsm_failed, then an ABORTED report that verifies).
    AbortedOnRecord,
    /// INCOMPLETE, and `keyrite resume` finished it.
    Resumed,
    /// Refused before the first step: no bundle.
    RefusedAtStart,
    /// A call whose answer is advice only (the token's PIN limits and flags, read to refuse
    /// impossible PINs and show tries left): the run completes without it.
    Advisory,
}

/// Calls whose failure costs only advice: their answer is shown, never relied on.
const ADVISORY: [&str; 2] = ["pin_limits", "pin_state"];

const FAULTS: [&str; 4] = [
    "CKR_DEVICE_ERROR",
    "CKR_SESSION_HANDLE_INVALID",
    "CKR_TOKEN_NOT_PRESENT",
    "CKR_PIN_INCORRECT",
];

fn fault_case(n: usize, op: &str, ckr: &str) -> Result<Faulted, String> {
    let case = tempfile::tempdir().unwrap();
    let (env, out) = (case.path().join("env"), case.path().join("out"));
    let var = format!("{n}:{ckr}");
    let at = format!("{var} ({op})");
    let r = rehearse(P256, &env, &out, &[(FAULT_VAR, &var)]);
    let shown = text(&r);
    if !shown.contains(&format!("call {n} (")) {
        return Err(format!("{at}: the fault was never injected: {shown}"));
    }
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap_or_default();
    if !out.join("audit.jsonl").exists() {
        // Before the bundle: a clear refusal naming the code, nothing left behind.
        if r.status.success() || !shown.contains(ckr) || out.exists() {
            return Err(format!("{at}: no bundle, and: {shown}"));
        }
        return Ok(Faulted::RefusedAtStart);
    }
    let (code, t) = verify(&out);
    if r.status.success() {
        if code == Some(0) && ADVISORY.contains(&op) {
            return Ok(Faulted::Advisory);
        }
        // A card login refused while signing the report: the log is closed (report_written), so
        // the refusal is shown, the login asked again, and the report signed.
        if code == Some(0) && !log.contains(ckr) && op == "login" && shown.contains(ckr) {
            return Ok(Faulted::ShownAfterReport);
        }
        // A wrong PIN is asked again; a failed logout at the end leaves nothing open. Either way
        // the failure is on the record.
        if code != Some(0) || !log.contains(ckr) {
            return Err(format!(
                "{at}: completed, the failure not on the record; verify {code:?}: {t}"
            ));
        }
        return Ok(match kinds(&out).iter().any(|k| k == "retried") {
            true => Faulted::Retried,
            false => Faulted::CompletedOnRecord,
        });
    }
    // The clear message: what failed (the code) and what to do.
    if !shown.contains(ckr) {
        return Err(format!("{at}: the message does not name {ckr}: {shown}"));
    }
    match code {
        Some(0) if report(&out)["result"] == "aborted" && log.contains(ckr) => {
            Ok(Faulted::AbortedOnRecord)
        }
        // After report_written (a report signature): the log is closed, the bundle INCOMPLETE.
        Some(6) => {
            let res = resume(&env, &out);
            let (code, t) = verify(&out);
            if !res.status.success() || code != Some(0) {
                return Err(format!(
                    "{at}: INCOMPLETE, resume: {}; verify {code:?}: {t}",
                    text(&res)
                ));
            }
            Ok(Faulted::Resumed)
        }
        _ => Err(format!("{at}: verify said {code:?}: {t}")),
    }
}

#[test]
fn fault_matrix_root_ceremony() {
    if !have_tools() {
        eprintln!("skipping the fault matrix: SoftHSM2 or pkcs11-tool missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dry = rehearse(
        P256,
        &dir.path().join("env"),
        &dir.path().join("dry"),
        &[(FAULT_VAR, "list")],
    );
    assert!(dry.status.success(), "{}", text(&dry));
    let calls = listed(&dry, FAULT_LISTED);
    assert!(
        calls.iter().any(|c| c.ends_with(" generate_key_pair")),
        "{calls:?}"
    );
    let mut cases = Vec::new();
    for ckr in FAULTS {
        for (i, call) in calls.iter().enumerate() {
            let op = call
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            cases.push((i + 1, op, ckr));
        }
    }
    let (chosen, full) = sample(&cases, fault_step());
    let results = pool(&chosen, threads(), |(n, op, ckr)| fault_case(*n, op, ckr));
    let count = |o: Faulted| {
        results
            .iter()
            .filter(|r| r.as_ref().ok() == Some(&o))
            .count()
    };
    println!(
        "fault matrix, P-256 root ceremony: {} HSM calls x {} codes = {} cases, {} run{}; {} retried and \
         completed, {} completed with the failure on the record, {} shown and retried after the report, {} aborted on the record, {} INCOMPLETE and resumed, {} refused before the first step, {} advisory \
         calls tolerated; {} failed",
        calls.len(),
        FAULTS.len(),
        cases.len(),
        chosen.len(),
        if full { "" } else { " (CI sample; KEYRITE_MATRIX_FULL=1 for all)" },
        count(Faulted::Retried),
        count(Faulted::CompletedOnRecord),
        count(Faulted::ShownAfterReport),
        count(Faulted::AbortedOnRecord),
        count(Faulted::Resumed),
        count(Faulted::RefusedAtStart),
        count(Faulted::Advisory),
        results.iter().filter(|r| r.is_err()).count()
    );
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

/// CI runs every `KEYRITE_FAULT_STEP`-th (code, N) case, 3 by default (about 180 of 548: every call
/// and every code, though not every pair; the offset moves from code to code); the whole matrix
/// with KEYRITE_MATRIX_FULL=1.
fn fault_step() -> usize {
    std::env::var("KEYRITE_FAULT_STEP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// --out on a tmpfs that runs out of inodes (files) part-way: the run says so, verify calls the
/// bundle INCOMPLETE (never tampered), and resume on a disk with space finishes it.
#[test]
fn a_full_disk_leaves_an_incomplete_bundle_that_resumes_elsewhere() {
    if !have_tools() {
        eprintln!("skipping the full-disk test: SoftHSM2 or pkcs11-tool missing");
        return;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipping the full-disk test: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // How many files and folders a finished bundle has.
    let dry = rehearse(P256, &dir.path().join("env0"), &dir.path().join("dry"), &[]);
    assert!(dry.status.success(), "{}", text(&dry));
    let files = common::quorum::walk(&dir.path().join("dry")).len();
    // Room for the bundle's folder and all but the last few of its files; the margin check passes
    // (bytes are plenty), the kernel refuses a new file part-way.
    for short in [2, 6] {
        let mnt = dir.path().join(format!("mnt-{short}"));
        std::fs::create_dir(&mnt).unwrap();
        let inodes = files + 4 - short; // + the tmpfs root, the bundle and its two folders
        let m = common::sh(&format!(
            "mount -t tmpfs -o size=80m,nr_inodes={inodes} tmpfs {}",
            mnt.display()
        ));
        assert!(m.status.success(), "mount: {}", text(&m));
        let env = dir.path().join(format!("env-{short}"));
        let out = mnt.join("bundle");
        let r = rehearse(P256, &env, &out, &[]);
        let shown = text(&r);
        let (code, t) = verify(&out);
        let moved = dir.path().join(format!("moved-{short}"));
        copy_env(&out, &moved);
        let u = common::sh(&format!("umount {}", mnt.display()));
        assert!(u.status.success(), "umount: {}", text(&u));
        assert!(
            !r.status.success(),
            "{short}: the run should not complete: {shown}"
        );
        assert!(
            shown.contains("No space left on device"),
            "{short}: {shown}"
        );
        assert_eq!(code, Some(6), "{short}: verify: {t}");
        assert!(t.contains("INCOMPLETE"), "{t}");
        let res = resume(&env, &moved);
        assert!(res.status.success(), "{short}: resume: {}", text(&res));
        let (code, t) = verify(&moved);
        assert_eq!(code, Some(0), "{short}: {t}");
        println!(
            "full disk ({short} files short): INCOMPLETE, then resumed on another disk: {}",
            report(&moved)["result"]
        );
    }
}

//! A ceremony survives the room's mistakes and refuses bad starts before anything happens, through
//! the real binary on SoftHSM2: a wrong HSM PIN then the right one, an unreadable attachment path
//! then a good one, the start-up refusals (none leaves a bundle behind), a second keyrite on the
//! same --env or --out, and `keyrite abort` closing an interrupted ceremony on the record.

mod common;

use common::{keyrite, root, run_on_softhsm_util_token, sh, text, tool};
use std::path::Path;
use std::process::{Command, Stdio};

const P256: &str = "ceremony-scripts/root-ca-p256.toml";

fn verify(out: &Path) -> std::process::Output {
    keyrite(&["verify", out.to_str().unwrap()])
}

fn log_events(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
        .collect()
}

#[test]
fn a_wrong_hsm_pin_is_asked_again_and_the_ceremony_completes() {
    let script = std::fs::read_to_string(root().join(P256)).unwrap();
    let medium = script.replace(
        "security_level = \"very-high\"",
        "security_level = \"medium\"",
    );
    const WRONG: &str = "97531864";
    // The PINs in the order they are asked: three card signatures over the confirmations before
    // the HSM's login (identify-participants, unseal-hsm, activate-hsm), then the HSM's: a wrong one
    // first, then the right one, and the cards' after it.
    let right = "24681357\n";
    let typed = format!("{}{WRONG}\n{}", right.repeat(3), right.repeat(64));
    let (_dir, out, result, _) = run_on_softhsm_util_token(&medium, &typed);
    let shown = text(&result);
    assert!(result.status.success(), "{shown}");
    assert!(shown.contains("wrong HSM PIN"), "{shown}");
    assert!(!shown.contains(WRONG), "the wrong PIN reached the output");
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    assert!(!log.contains(WRONG), "the wrong PIN reached the log");
    let retries: Vec<_> = log_events(&out)
        .into_iter()
        .filter(|e| e["kind"] == "retried")
        .collect();
    assert_eq!(retries.len(), 1, "{log}");
    assert_eq!(retries[0]["what"], "hsm_user_pin");
    assert_eq!(retries[0]["sent_to_token"], true);
    assert!(retries[0]["reason"]
        .as_str()
        .unwrap()
        .contains("CKR_PIN_INCORRECT"));
    let v = verify(&out);
    assert!(v.status.success(), "{}", text(&v));
}

const ATTACH: &str = r#"format = 1

[ceremony]
id = "ATTACH-RETRY-TEST"
name = "Attach retried"
type = "root-key-generation"
place = "Test room"
security_level = "medium"

[[participants]]
name = "Maria Keller"
role = "master-of-ceremony"

[[participants]]
name = "Omar Haddad"
role = "operator"

[[participants]]
name = "Olga Petrova"
role = "operator"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token = { label = "attach-retry" }

[[steps]]
id = "attach-video"
title = "Attach the video"
instructions = "Give keyrite the path of the recording."
action = "attach"
attachment = "video of the ceremony"
confirm_by = ["master-of-ceremony"]
"#;

#[test]
fn an_unreadable_attachment_path_is_asked_again_at_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("attach.toml");
    std::fs::write(&script, ATTACH).unwrap();
    let video = dir.path().join("video.mp4");
    std::fs::write(&video, b"not really a video\n".repeat(100)).unwrap();
    let out = dir.path().join("bundle");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyrite"))
        .args(["rehearse", script.to_str().unwrap(), "--plain"])
        .args(["--out", out.to_str().unwrap()])
        .current_dir(root())
        .env_remove("SOFTHSM2_CONF")
        .env_remove("KEYRITE_REHEARSAL_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let typed = format!(
        "Maria Keller\ngo\n{}\n{}\n",
        dir.path().join("no-such-video.mp4").display(),
        video.display()
    );
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(typed.as_bytes())
        .unwrap();
    let result = child.wait_with_output().unwrap();
    let shown = text(&result);
    assert!(result.status.success(), "{shown}");
    assert!(
        shown.contains("no-such-video.mp4") && shown.contains("give it again"),
        "{shown}"
    );
    let events = log_events(&out);
    let retried = events.iter().find(|e| e["kind"] == "retried").unwrap();
    assert_eq!(retried["what"], "attachment");
    let attached = events.iter().find(|e| e["kind"] == "attached").unwrap();
    if tool("sha256sum").is_some() {
        let sum = sh(&format!("sha256sum {}", video.display()));
        let sum = String::from_utf8_lossy(&sum.stdout);
        assert_eq!(attached["sha256"], sum.split_whitespace().next().unwrap());
    }
    let v = verify(&out);
    assert!(v.status.success(), "{}", text(&v));
}

/// `keyrite run` on a softhsm2-util token with `extra` arguments; returns the output and --out.
fn run_refused(
    dir: &Path,
    script_text: &str,
    extra: &[&str],
) -> (std::process::Output, std::path::PathBuf) {
    let conf = common::softhsm_util_token(dir, "87654321", "24681357");
    let script = dir.join("script.toml");
    std::fs::write(&script, script_text).unwrap();
    let out = dir.join("bundle");
    let answers = dir.join("answers.toml");
    std::fs::write(&answers, "").unwrap();
    let result = Command::new(env!("CARGO_BIN_EXE_keyrite"))
        .args(["run", script.to_str().unwrap(), "--plain"])
        .args(["--answers", answers.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .args(extra)
        .env("SOFTHSM2_CONF", &conf)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (result, out)
}

/// Each start-up refusal says what is wrong and leaves no bundle behind.
#[test]
fn start_up_refusals_leave_no_bundle() {
    let p256 = std::fs::read_to_string(root().join(P256)).unwrap();
    let medium = p256.replace(
        "security_level = \"very-high\"",
        "security_level = \"medium\"",
    );
    let no_cards: String = medium
        .lines()
        .filter(|l| !l.starts_with("card = "))
        .map(|l| format!("{l}\n"))
        .collect();
    // Personal cards in the script, and no --signers-ca.
    let dir = tempfile::tempdir().unwrap();
    let (r, out) = run_refused(dir.path(), &medium, &[]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r));
    assert!(text(&r).contains("--signers-ca"), "{}", text(&r));
    assert!(!out.exists(), "a refused start left {}", out.display());
    // A card the script names is not there.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    sh(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {}/ca.key \
         -out {} -days 30 -subj '/CN=card CA' 2>/dev/null",
        dir.path().display(),
        ca.display()
    ));
    let (r, out) = run_refused(dir.path(), &medium, &["--signers-ca", ca.to_str().unwrap()]);
    assert_ne!(r.status.code(), Some(0), "{}", text(&r));
    assert!(text(&r).contains("personal card of"), "{}", text(&r));
    assert!(!out.exists(), "a refused start left {}", out.display());
    // An attachment path that does not exist.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("attach.toml");
    std::fs::write(&script, ATTACH).unwrap();
    let out = dir.path().join("bundle");
    let missing = format!("attach-video={}", dir.path().join("missing.mp4").display());
    let r = keyrite(&[
        "rehearse",
        script.to_str().unwrap(),
        "--auto",
        "--attach",
        &missing,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r));
    assert!(
        text(&r).contains("missing.mp4") && text(&r).contains("cannot be read"),
        "{}",
        text(&r)
    );
    assert!(!out.exists(), "a refused start left {}", out.display());
    // A key label already on the token: the second rehearsal on one --env is refused at start.
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env");
    let rehearse_into = |out: &Path| {
        keyrite(&[
            "rehearse",
            P256,
            "--auto",
            "--env",
            env.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let first = rehearse_into(&dir.path().join("first"));
    assert!(first.status.success(), "{}", text(&first));
    let second_out = dir.path().join("second");
    let second = rehearse_into(&second_out);
    assert_eq!(second.status.code(), Some(4), "{}", text(&second));
    assert!(
        text(&second).contains("already exists"),
        "{}",
        text(&second)
    );
    assert!(!second_out.exists(), "a refused start left a bundle");
    // The same without personal cards: a run with a missing token module.
    let dir = tempfile::tempdir().unwrap();
    let bad_module = no_cards.replace(
        "/usr/lib/softhsm/libsofthsm2.so",
        "/nonexistent/libpkcs11.so",
    );
    let (r, out) = run_refused(dir.path(), &bad_module, &[]);
    assert_eq!(r.status.code(), Some(4), "{}", text(&r));
    assert!(!out.exists(), "a refused start left {}", out.display());
}

/// A keyrite holding --env (here: a rehearsal waiting at its prompt) refuses a second one on the
/// same folder; a keyrite holding --out refuses `keyrite abort` on it.
#[test]
fn a_second_keyrite_on_the_same_env_or_bundle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env");
    let out = dir.path().join("first");
    let script = dir.path().join("attach.toml");
    std::fs::write(&script, ATTACH).unwrap();
    let mut first = Command::new(env!("CARGO_BIN_EXE_keyrite"))
        .args(["rehearse", script.to_str().unwrap(), "--plain"])
        .args([
            "--env",
            env.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .current_dir(root())
        .env_remove("SOFTHSM2_CONF")
        .env_remove("KEYRITE_REHEARSAL_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first keyrite has written its log (and so holds both locks) once audit.jsonl exists.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !out.join("audit.jsonl").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first keyrite never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second_out = dir.path().join("second");
    let second = keyrite(&[
        "rehearse",
        script.to_str().unwrap(),
        "--auto",
        "--env",
        env.to_str().unwrap(),
        "--out",
        second_out.to_str().unwrap(),
    ]);
    assert_ne!(second.status.code(), Some(0), "{}", text(&second));
    assert!(
        text(&second).contains("in use by another keyrite"),
        "{}",
        text(&second)
    );
    assert!(!second_out.exists());
    let abort = keyrite(&["abort", out.to_str().unwrap(), "--reason", "test"]);
    assert!(
        text(&abort).contains("in use by another keyrite"),
        "{}",
        text(&abort)
    );
    drop(first.stdin.take());
    first.wait().unwrap();
}

/// Rehearse the P-256 root on a kept --env with keyrite killed (SIGKILL) at `kill_at`; returns the
/// bundle. The rehearsal's exit is not success: it died.
fn killed_rehearsal(dir: &Path, kill_at: &str) -> std::path::PathBuf {
    let out = dir.join(kill_at.replace(':', "_"));
    let env = dir.join("env");
    let r = Command::new(env!("CARGO_BIN_EXE_keyrite"))
        .args(["rehearse", P256, "--auto"])
        .args([
            "--env",
            env.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .current_dir(root())
        .env_remove("SOFTHSM2_CONF")
        .env_remove("KEYRITE_REHEARSAL_DIR")
        .env("KEYRITE_TEST_KILL_AT", kill_at)
        .output()
        .unwrap();
    assert!(
        !r.status.success(),
        "{kill_at}: the kill hook did not fire: {}",
        text(&r)
    );
    assert!(!text(&r).contains("ceremony completed"), "{}", text(&r));
    out
}

/// keyrite killed at several points of the P-256 root rehearsal: `keyrite abort` closes each on
/// the record, the cards sign the ABORTED report, and verify accepts the bundle.
#[test]
fn abort_closes_a_killed_ceremony_on_the_record() {
    for kill_at in [
        "activate-hsm:after-open_and_login",
        "generate-root-key:before-generate_key_pair",
        "generate-root-key:after-generate_key_pair",
        "generate-root-key:before-artifact_written",
        "confirm-root-key-hash:after-step",
        "sign-root-certificate:after-sign_certificate",
    ] {
        // A fresh --env each time: a key generated before a kill stays on the token.
        let dir = tempfile::tempdir().unwrap();
        let out = killed_rehearsal(dir.path(), kill_at);
        let env = dir.path().join("env");
        let abort = keyrite(&[
            "abort",
            out.to_str().unwrap(),
            "--reason",
            "power cut; HSM resealed in bag TEB-77",
            "--env",
            env.to_str().unwrap(),
        ]);
        assert!(abort.status.success(), "{kill_at}: {}", text(&abort));
        let v = verify(&out);
        assert!(v.status.success(), "{kill_at}: {}", text(&v));
        let report = common::report(&out);
        assert_eq!(report["result"], "aborted", "{kill_at}");
        assert!(
            report["abort_reason"]
                .as_str()
                .unwrap()
                .contains("power cut; HSM resealed in bag TEB-77"),
            "{kill_at}"
        );
        let events = log_events(&out);
        let reopened = events.iter().find(|e| e["kind"] == "reopened").unwrap();
        assert_eq!(reopened["by"], "abort", "{kill_at}");
        // A key generated before the kill and never logged is looked for and recorded.
        let found = events
            .iter()
            .find(|e| e["kind"] == "found_after_interruption");
        let made = kill_at.starts_with("generate-root-key:")
            && !kill_at.ends_with("before-generate_key_pair");
        assert_eq!(found.is_some(), made, "{kill_at}");
        if let Some(found) = found {
            assert_eq!(found["label"], "example-root-p256-2026", "{kill_at}");
            assert_eq!(
                found["key_hash"].as_str().map(str::len),
                Some(64),
                "{kill_at}"
            );
        }
        assert_eq!(
            events.last().unwrap()["kind"],
            "report_written",
            "{kill_at}"
        );
        // A second abort finds nothing to close.
        let again = keyrite(&["abort", out.to_str().unwrap(), "--reason", "again"]);
        assert_eq!(again.status.code(), Some(2), "{}", text(&again));
        assert!(text(&again).contains("already ended"), "{}", text(&again));
    }
}

/// A log whose chain is broken is damage or tampering: abort refuses to touch it.
#[test]
fn abort_refuses_a_tampered_log() {
    let dir = tempfile::tempdir().unwrap();
    let out = killed_rehearsal(dir.path(), "generate-root-key:before-generate_key_pair");
    let log = out.join("audit.jsonl");
    let text_before = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text_before.replacen("Omar Haddad", "Omar Hadad", 1)).unwrap();
    let abort = keyrite(&["abort", out.to_str().unwrap(), "--reason", "x"]);
    assert_eq!(abort.status.code(), Some(2), "{}", text(&abort));
    assert!(text(&abort).contains("tampering"), "{}", text(&abort));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        text_before.replacen("Omar Haddad", "Omar Hadad", 1),
        "the log is left as it was"
    );
}

/// keyrite killed at several points of the P-256 root rehearsal on a kept --env: `keyrite resume`
/// finishes each to a bundle that verifies as one ceremony, interruption included; a key generated
/// just before the kill is adopted (found after the interruption), never generated twice.
#[test]
fn resume_finishes_a_killed_ceremony_to_a_verified_bundle() {
    for kill_at in [
        "activate-hsm:after-open_and_login",
        // Nothing on the token yet: the generation is offered again.
        "generate-root-key:before-generate_key_pair",
        "generate-root-key:after-generate_key_pair",
        "generate-root-key:before-artifact_written",
        "confirm-root-key-hash:after-step",
        "sign-root-certificate:after-sign_certificate",
        "report:before-signatures",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = killed_rehearsal(dir.path(), kill_at);
        let env = dir.path().join("env");
        let resume = keyrite(&[
            "resume",
            out.to_str().unwrap(),
            "--auto",
            "--env",
            env.to_str().unwrap(),
        ]);
        assert!(resume.status.success(), "{kill_at}: {}", text(&resume));
        let v = verify(&out);
        assert!(v.status.success(), "{kill_at}: {}", text(&v));
        let report = common::report(&out);
        assert_eq!(report["result"], "completed", "{kill_at}");
        let events = log_events(&out);
        let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == "key_generated").count(),
            1,
            "{kill_at}: one key, logged once"
        );
        if kill_at != "report:before-signatures" {
            assert!(
                kinds.contains(&"reopened") && kinds.contains(&"step_resumed"),
                "{kill_at}"
            );
        }
        let found = kinds.contains(&"found_after_interruption");
        // Killed after the HSM made the key and before key_generated was logged.
        let made = kill_at.starts_with("generate-root-key:")
            && !kill_at.ends_with("before-generate_key_pair");
        assert_eq!(found, made, "{kill_at}");
        if tool("pkcs11-tool").is_some() {
            // One key pair on the token: a private and a public object with the key's label.
            let objects = sh(&format!(
                "SOFTHSM2_CONF={}/softhsm2.conf pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so \
                 --token-label example-root-hsm -O 2>/dev/null",
                env.display()
            ));
            let objects = String::from_utf8_lossy(&objects.stdout);
            assert_eq!(
                objects
                    .matches("label:      example-root-p256-2026")
                    .count(),
                1,
                "{kill_at}: the public key object, once: {objects}"
            );
        }
    }
}

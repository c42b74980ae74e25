//! Several tokens in one ceremony (issue 12, item 1): tests/scripts/good/two-tokens.toml rehearsed
//! on two throw-away SoftHSM2 tokens, a key generated on each. Checked from outside with
//! pkcs11-tool (each key on its own token and only there; its public key's SHA-256, by openssl, is
//! the report's key hash), and with `keyrite verify`. A kill while both tokens are logged in
//! resumes with each logged in again on the record. A provisioning cut off after it recorded the
//! tokens' PINs is finished by the next rehearsal on the same --env.

mod common;

use common::quorum::*;
use common::{report, root, sh, text};
use std::path::Path;

const SCRIPT: &str = "tests/scripts/good/two-tokens.toml";
const PRIMARY: &str = "lab-primary-hsm";
const SECOND: &str = "lab-second-hsm";

fn script() -> String {
    root().join(SCRIPT).display().to_string()
}

/// The labels of the objects on `token`, as pkcs11-tool lists them after a login.
fn labels(env: &Env, token: &str) -> Vec<String> {
    let out = env.p11(token, &env.pin(token), &["--list-objects"]);
    assert!(out.status.success(), "pkcs11-tool: {}", text(&out));
    text(&out)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("label:"))
        .map(|l| l.trim().to_string())
        .collect()
}

/// SHA-256 of the key's SubjectPublicKeyInfo as pkcs11-tool reads it and openssl encodes it.
fn outside_key_hash(env: &Env, token: &str, label: &str) -> String {
    let file = env.dir.path().join(format!("{label}.der"));
    let out = env.p11(
        token,
        &env.pin(token),
        &[
            "--read-object",
            "--type",
            "pubkey",
            "--label",
            label,
            "-o",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "pkcs11-tool read: {}", text(&out));
    let h = sh(&format!(
        "openssl pkey -pubin -inform DER -in {} -outform DER | sha256sum",
        file.display()
    ));
    assert!(h.status.success(), "{}", text(&h));
    text(&h).split_whitespace().next().unwrap().to_string()
}

fn key_hash(report: &serde_json::Value, label: &str) -> String {
    report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["label"] == label)
        .unwrap_or_else(|| panic!("no key {label} in the report"))["key_hash"]
        .as_str()
        .unwrap()
        .to_string()
}

fn serial(env: &Env, label: &str) -> String {
    env.tokens()
        .iter()
        .find(|t| t["label"].as_str() == Some(label))
        .and_then(|t| t["serial"].as_str())
        .unwrap()
        .to_string()
}

/// Each key on its own token and nowhere else; the report names each token with its identity.
fn check_tokens(env: &Env, out: &Path) {
    verify(out);
    let r = report(out);
    assert_eq!(r["result"], "completed");
    let primary = labels(env, PRIMARY);
    let second = labels(env, SECOND);
    assert!(primary.contains(&"lab-root".to_string()), "{primary:?}");
    assert!(
        !primary.contains(&"lab-second-key".to_string()),
        "{primary:?}"
    );
    assert!(second.contains(&"lab-second-key".to_string()), "{second:?}");
    assert!(!second.contains(&"lab-root".to_string()), "{second:?}");
    assert_eq!(
        outside_key_hash(env, PRIMARY, "lab-root"),
        key_hash(&r, "lab-root")
    );
    assert_eq!(
        outside_key_hash(env, SECOND, "lab-second-key"),
        key_hash(&r, "lab-second-key")
    );
    assert_eq!(r["hsm"]["token_label"], PRIMARY);
    assert_eq!(r["hsm"]["serial"].as_str().unwrap(), serial(env, PRIMARY));
    let tokens = r["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0]["name"], "second");
    assert_eq!(tokens[0]["token"]["token_label"], SECOND);
    assert_eq!(
        tokens[0]["token"]["serial"].as_str().unwrap(),
        serial(env, SECOND)
    );
    // The PDF lists both tokens (poppler's pdftotext, when installed).
    let pdf = sh(&format!("pdftotext -layout {}/report.pdf -", out.display()));
    if pdf.status.success() {
        let t = text(&pdf);
        assert!(t.contains("Token \"second\""), "{t}");
        assert!(t.contains(SECOND) && t.contains(PRIMARY), "{t}");
    }
}

#[test]
fn two_tokens_each_get_their_own_key_and_identity_record() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let (out, bundle) = env.rehearse(&script(), "two", None);
    assert!(out.status.success(), "{}", text(&out));
    check_tokens(&env, &bundle);
    // Each login and logout names its token in the log.
    let log = std::fs::read_to_string(bundle.join("audit.jsonl")).unwrap();
    let named = |kind: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("\"kind\":\"{kind}\"")) || l.contains(kind))
            .filter(|l| l.contains("\"hsm\":\"second\""))
            .count()
    };
    assert_eq!(named("hsm_activated"), 1, "{log}");
    assert_eq!(named("hsm_deactivated"), 1, "{log}");
}

#[test]
fn a_kill_with_both_tokens_logged_in_resumes_with_each_logged_in_again() {
    let Some(mut env) = Env::new() else {
        return;
    };
    // The second token's key is on it, its key_generated not logged: resume adopts it there.
    let kill = [(
        "KEYRITE_TEST_KILL_AT",
        "keygen-second:after-generate_key_pair",
    )];
    let (out, bundle) = env.rehearse_with(&script(), "killed", None, &kill);
    assert!(!out.status.success(), "{}", text(&out));
    let resumed = env.resume(&bundle, &[], &[]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    check_tokens(&env, &bundle);
    let log = std::fs::read_to_string(bundle.join("audit.jsonl")).unwrap();
    let after: Vec<&str> = log
        .lines()
        .skip_while(|l| !l.contains("\"by\":\"resume\""))
        .collect();
    let logins = |second: bool| {
        after
            .iter()
            .filter(|l| l.contains("hsm_activated"))
            .filter(|l| l.contains("\"hsm\":\"second\"") == second)
            .count()
    };
    // Each token the kill logged out is logged in again once, by the first step that needs it.
    assert_eq!(logins(true), 1, "{log}");
    assert_eq!(logins(false), 1, "{log}");
    assert!(
        after.iter().any(|l| l.contains("found_after_interruption")),
        "{log}"
    );
}

/// A rehearsal killed while it provisioned its tokens left rehearsal.toml with their PINs and no
/// serials (the PINs are written before any C_InitToken), the primary token initialised with the
/// recorded SO PIN but its user PIN not set yet, the second token not made. The next rehearsal on
/// the --env finishes the first with the recorded PINs (instead of refusing its label as taken),
/// makes the second, and runs.
#[test]
fn a_provisioning_cut_off_between_its_pins_and_its_serials_is_finished_next_time() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let dir = env.env_dir();
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    let conf = format!(
        "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
        dir.join("tokens").display()
    );
    std::fs::write(env.conf(), conf).unwrap();
    let (so, user) = ("Kq-owl-Lime-so-prim", "Kq-owl-Lime-user-prim");
    let init = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", PRIMARY, "--so-pin", so])
        .args(["--pin", "not-the-recorded-pin"])
        .env("SOFTHSM2_CONF", env.conf())
        .output()
        .unwrap();
    assert!(init.status.success(), "softhsm2-util: {}", text(&init));
    let pending = |label: &str, so: &str, user: &str| {
        format!("[[tokens]]\nlabel = \"{label}\"\nserial = \"\"\nso_pin = \"{so}\"\nuser_pin = \"{user}\"\n\n")
    };
    let record = format!(
        "note = \"throw-away\"\nsofthsm2_conf = \"{}\"\n\n{}{}",
        env.conf().display(),
        pending(PRIMARY, so, user),
        pending(SECOND, "Kq-owl-Lime-so-sec", "Kq-owl-Lime-user-sec")
    );
    std::fs::write(dir.join("rehearsal.toml"), record).unwrap();
    let (out, bundle) = env.rehearse(&script(), "finished", None);
    assert!(out.status.success(), "{}", text(&out));
    check_tokens(&env, &bundle);
    // One token per label, each with its serial now, opened by the PINs recorded before it was made.
    let shown = std::process::Command::new("softhsm2-util")
        .arg("--show-slots")
        .env("SOFTHSM2_CONF", env.conf())
        .output()
        .unwrap();
    let slots = text(&shown);
    for (label, user) in [(PRIMARY, user), (SECOND, "Kq-owl-Lime-user-sec")] {
        let labelled = slots
            .lines()
            .filter(|l| l.trim().strip_prefix("Label:").map(str::trim) == Some(label))
            .count();
        assert_eq!(labelled, 1, "{slots}");
        assert_eq!(env.pin(label), user);
        assert!(env.user_logs_in(label, user), "{label}");
        assert!(!serial(&env, label).is_empty(), "{label}");
        assert!(slots.contains(&serial(&env, label)), "{slots}");
    }
}

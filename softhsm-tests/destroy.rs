//! Key destruction (issue 12, item 4) on one rehearsal folder: root-ca-p256.toml, then the shipped
//! key-destruction.toml. Checked from outside with pkcs11-tool (no object of the key remains: the
//! private and public keys, and a certificate copy pkcs11-tool itself wrote beside them), with
//! `keyrite verify`, and against docs/report.schema.json. A key that is not on the token is refused
//! before anything is destroyed; a destruction killed half-way is finished by `keyrite resume`.

mod common;

use common::quorum::*;
use common::{report, root, schema_valid, sh, text};

const TOKEN: &str = "example-root-hsm";
const KEY: &str = "example-root-p256-2026";

/// Every object on the token as (class line, label), listed by pkcs11-tool after a login.
fn objects(env: &Env) -> Vec<String> {
    let out = env.p11(TOKEN, &env.pin(TOKEN), &["--list-objects"]);
    assert!(out.status.success(), "pkcs11-tool: {}", text(&out));
    text(&out)
        .lines()
        .filter(|l| l.contains("Object") || l.contains("label:") || l.contains("ID:"))
        .map(|l| l.trim().to_string())
        .collect()
}

/// The root ceremony, then a copy of its certificate written onto the token under the key's
/// CKA_ID and label by pkcs11-tool (the destruction must take it too). Returns the key's CKA_ID.
fn root_with_certificate_on_token(env: &mut Env) -> String {
    let (out, bundle) = env.rehearse("root-ca-p256.toml", "root", None);
    assert!(out.status.success(), "{}", text(&out));
    let listed = env.p11(
        TOKEN,
        &env.pin(TOKEN),
        &["--list-objects", "--type", "privkey"],
    );
    let id = text(&listed)
        .lines()
        .find_map(|l| l.trim().strip_prefix("ID:").map(|i| i.trim().to_string()))
        .expect("the root key's CKA_ID");
    let cert = bundle.join("artifacts").join(format!("{KEY}.pem"));
    let w = env.p11(
        TOKEN,
        &env.pin(TOKEN),
        &[
            "--write-object",
            cert.to_str().unwrap(),
            "--type",
            "cert",
            "--id",
            &id,
            "--label",
            KEY,
        ],
    );
    assert!(w.status.success(), "pkcs11-tool write: {}", text(&w));
    let before = objects(env);
    assert_eq!(
        before.iter().filter(|l| l.contains(KEY)).count(),
        3,
        "{before:?}"
    );
    id
}

fn assert_nothing_of_the_key_remains(env: &Env, id: &str) {
    let after = objects(env);
    assert!(
        !after.iter().any(|l| l.contains(KEY) || l.contains(id)),
        "objects left: {after:?}"
    );
}

#[test]
fn the_shipped_destruction_leaves_nothing_of_the_root_key() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let id = root_with_certificate_on_token(&mut env);
    let (out, bundle) = env.rehearse("key-destruction.toml", "destroy", None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("read back: no object with CKA_ID"),
        "{}",
        text(&out)
    );
    assert_nothing_of_the_key_remains(&env, &id);
    verify(&bundle);
    schema_valid(&bundle);
    let r = report(&bundle);
    let d = &r["destroyed_keys"][0];
    assert_eq!(d["key"], KEY);
    assert_eq!(d["id"], id.as_str());
    assert_eq!(d["remaining"].as_array().unwrap().len(), 0);
    let classes: Vec<&str> = d["destroyed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["class"].as_str().unwrap())
        .collect();
    assert_eq!(classes, ["private-key", "public-key", "certificate"]);
    // The destroyed key is the one the root ceremony generated.
    let root_report = report(&env.dir.path().join("root"));
    assert_eq!(d["key_hash"], root_report["keys"][0]["key_hash"]);
    let pdf = sh(&format!(
        "pdftotext -layout {}/report.pdf -",
        bundle.display()
    ));
    if pdf.status.success() {
        assert!(text(&pdf).contains("DESTROYED"), "{}", text(&pdf));
    }
}

#[test]
fn destroying_a_key_that_is_not_there_fails_clearly_and_changes_nothing() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let id = root_with_certificate_on_token(&mut env);
    let before = objects(&env);
    let shipped =
        std::fs::read_to_string(root().join("ceremony-scripts/key-destruction.toml")).unwrap();
    let script = env.dir.path().join("no-such-key.toml");
    std::fs::write(
        &script,
        shipped.replace(&format!("\"{KEY}\""), "\"no-such-key\""),
    )
    .unwrap();
    let (out, bundle) = env.rehearse(script.to_str().unwrap(), "missing", None);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("has no private key with label \"no-such-key\"")
            && said.contains("nothing was signed or destroyed"),
        "{said}"
    );
    assert_eq!(objects(&env), before, "the token changed");
    assert!(before.iter().any(|l| l.contains(&id)));
    verify(&bundle);
    assert!(report(&bundle)["destroyed_keys"].is_null());
}

#[test]
fn a_destruction_killed_half_way_is_finished_by_resume() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let id = root_with_certificate_on_token(&mut env);
    // The private key is destroyed, the public key and the certificate not yet, nothing logged.
    let point = "destroy-root-key:destroyed-object";
    let bundle = env.killed("key-destruction.toml", "killed", point, &[]);
    let half = objects(&env);
    assert_eq!(
        half.iter().filter(|l| l.contains(KEY)).count(),
        2,
        "{half:?}"
    );
    let resumed = env.resume(&bundle, &[], &[]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_nothing_of_the_key_remains(&env, &id);
    verify(&bundle);
    let d = &report(&bundle)["destroyed_keys"][0];
    assert_eq!(d["finished_after_interruption"], true);
    assert_eq!(d["destroyed"].as_array().unwrap().len(), 2, "{d}");
    assert_eq!(d["remaining"].as_array().unwrap().len(), 0);
}

#[test]
fn a_destruction_killed_after_its_intent_is_finished_by_resume() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let id = root_with_certificate_on_token(&mut env);
    // The intent is logged, nothing destroyed yet: resume finds the key whole, checks its hash again.
    let point = "destroy-root-key:before-destroy_key";
    let bundle = env.killed("key-destruction.toml", "killed", point, &[]);
    assert_eq!(objects(&env).iter().filter(|l| l.contains(KEY)).count(), 3);
    let resumed = env.resume(&bundle, &[], &[]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_nothing_of_the_key_remains(&env, &id);
    verify(&bundle);
    let d = &report(&bundle)["destroyed_keys"][0];
    assert_eq!(d["finished_after_interruption"], true);
    assert_eq!(d["destroyed"].as_array().unwrap().len(), 3, "{d}");
}

/// Killed after the activation step found and logged the key: resume shows the logged key, logs in
/// again and finds the key again by its logged hash before destroying it. A token whose key under
/// that label is another one is refused, and nothing is destroyed.
#[test]
fn a_destruction_killed_after_activation_finds_the_key_again_on_resume() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let id = root_with_certificate_on_token(&mut env);
    let bundle = env.killed(
        "key-destruction.toml",
        "killed",
        "activate-hsm:after-step",
        &[],
    );
    let found = |b: &std::path::Path| {
        std::fs::read_to_string(b.join("audit.jsonl"))
            .unwrap()
            .matches("\"existing_key_found\"")
            .count()
    };
    assert_eq!(found(&bundle), 1);
    // A copy of the interrupted bundle, for a token whose key is swapped.
    let swapped = env.dir.path().join("swapped");
    assert!(sh(&format!(
        "cp -a '{}' '{}'",
        bundle.display(),
        swapped.display()
    ))
    .status
    .success());
    let resumed = env.resume(&bundle, &[], &[]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert_nothing_of_the_key_remains(&env, &id);
    verify(&bundle);
    assert_eq!(report(&bundle)["result"], "completed");
    assert_eq!(found(&bundle), 2, "found again after the new login");
    let listed = &report(&bundle)["existing_keys"];
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "the key once: {listed}"
    );
    let d = &report(&bundle)["destroyed_keys"][0];
    assert_eq!(d["destroyed"].as_array().unwrap().len(), 3, "{d}");
    // The key is gone; another key under its label is not the one the log found.
    env.generate_p256(TOKEN, KEY, "42");
    let refused = env.resume(&swapped, &[], &[]);
    let said = text(&refused);
    assert!(
        said.contains("nothing was signed or destroyed") && said.contains("has key hash"),
        "{said}"
    );
    assert_eq!(report(&swapped)["result"], "aborted", "{said}");
    assert!(report(&swapped)["destroyed_keys"].is_null());
    assert_eq!(objects(&env).iter().filter(|l| l.contains(KEY)).count(), 2);
}

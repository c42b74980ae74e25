//! Signing with the root after its ceremony (issue 11), on one rehearsal environment: the root
//! ceremony, then later ceremonies that use its key from the token, pinned by hash. Outputs are
//! checked with openssl, pkcs11-tool and sha256sum; every bundle passes `keyrite verify`.

mod common;

use common::quorum::{verify, Env, SOFTHSM};
use common::{report, root, sh, text};
use std::path::{Path, PathBuf};

const ROOT_KEY: &str = "example-root-p256-2026";
const HSM: &str = "example-root-hsm";

/// A copy of a test script in the environment's folder with `KEY_HASH` replaced.
fn script_with_hash(env: &Env, name: &str, hash: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("softhsm-tests/signing").join(name)).unwrap();
    let path = env.dir.path().join(format!("{hash}-{name}"));
    std::fs::write(&path, text.replace("KEY_HASH", hash)).unwrap();
    path
}

/// openssl's key hash of a PEM public key file (the hash `keyrite` must report).
fn openssl_key_hash(pem: &Path) -> String {
    let out = sh(&format!(
        "openssl pkey -pubin -in {} -outform DER | sha256sum",
        pem.display()
    ));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The run failed at `step` with a message containing `says`, and nothing was signed.
fn stopped_before_signing(out: &std::process::Output, bundle: &Path, step: &str, says: &str) {
    assert!(!out.status.success(), "{}", text(out));
    assert!(text(out).contains(says), "{}", text(out));
    let log = std::fs::read_to_string(bundle.join("audit.jsonl")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("\"step_failed\"") && l.contains(step)),
        "{log}"
    );
    for signed in [
        "test_message_signed",
        "certificate_signed",
        "existing_key_found",
    ] {
        assert!(!log.contains(signed), "{signed} in {log}");
    }
    verify(bundle);
}

#[test]
fn an_existing_root_key_is_found_by_hash_and_a_wrong_or_ambiguous_key_stops_before_signing() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let (out, root_bundle) = env.rehearse("root-ca-p256.toml", "root", None);
    assert!(out.status.success(), "{}", text(&out));
    let r = report(&root_bundle);
    let root_hash = r["keys"][0]["key_hash"].as_str().unwrap().to_string();
    let pub_file = root_bundle.join(r["keys"][0]["public_key_file"].as_str().unwrap());
    assert_eq!(openssl_key_hash(&pub_file), root_hash);

    // The script pins the root key's hash, as copied from the root ceremony's report.
    let script = script_with_hash(&env, "existing-key.toml", &root_hash);
    let (out, bundle) = env.rehearse(script.to_str().unwrap(), "use", None);
    assert!(out.status.success(), "{}", text(&out));
    verify(&bundle);
    let r = report(&bundle);
    let found = &r["existing_keys"][0];
    assert_eq!(found["key"], ROOT_KEY);
    assert_eq!(found["label"], ROOT_KEY);
    assert_eq!(found["key_hash"], root_hash.as_str());
    assert_eq!(found["expected_from"], "rehearsal folder");
    let found_pub = bundle.join(found["public_key_file"].as_str().unwrap());
    assert_eq!(openssl_key_hash(&found_pub), root_hash, "openssl agrees");
    let signed = &r["test_signatures"][0];
    assert_eq!(signed["key_hash"], root_hash.as_str());
    assert_eq!(signed["verified"], true);
    // The log's signature verifies with openssl against the public key file.
    let log = std::fs::read_to_string(bundle.join("audit.jsonl")).unwrap();
    let entry: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"]["kind"] == "test_message_signed")
        .unwrap();
    let dir = env.dir.path();
    std::fs::write(dir.join("msg"), entry["event"]["message"].as_str().unwrap()).unwrap();
    std::fs::write(
        dir.join("sig"),
        hex::decode(entry["event"]["signature"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let v = sh(&format!(
        "openssl dgst -sha256 -verify {} -signature {} {}",
        found_pub.display(),
        dir.join("sig").display(),
        dir.join("msg").display()
    ));
    assert!(v.status.success(), "openssl dgst: {}", text(&v));

    // A key the rehearsal did not generate (pkcs11-tool made it) is checked against the script's
    // hash: the root's hash is not its hash.
    let pin = env.pin(HSM);
    let made = env.p11(
        HSM,
        &pin,
        &[
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            "other-key",
            "--id",
            "0b0b",
        ],
    );
    assert!(made.status.success(), "{}", text(&made));
    let wrong = std::fs::read_to_string(&script)
        .unwrap()
        .replace(
            "label = \"example-root-p256-2026\"",
            "label = \"other-key\"",
        )
        .replace("key = \"example-root-p256-2026\"", "key = \"other-key\"");
    let wrong_path = dir.join("wrong-key.toml");
    std::fs::write(&wrong_path, wrong).unwrap();
    let (out, bundle) = env.rehearse(wrong_path.to_str().unwrap(), "wrong", None);
    stopped_before_signing(&out, &bundle, "activate-hsm", "but the script pins");

    // A second private key under the root's label: the lookup is ambiguous.
    let made = env.p11(
        HSM,
        &pin,
        &[
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            ROOT_KEY,
            "--id",
            "0c0c",
        ],
    );
    assert!(made.status.success(), "{}", text(&made));
    let (out, bundle) = env.rehearse(script.to_str().unwrap(), "ambiguous", None);
    stopped_before_signing(&out, &bundle, "activate-hsm", "2 private keys");
    let _ = SOFTHSM;
}

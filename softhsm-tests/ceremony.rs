//! End-to-end ceremonies through the real `keyrite` binary against SoftHSM2, with the outputs checked
//! by tools keyrite's authors did not write: openssl, pkilint, pkcs11-tool and sha256sum.

mod common;

use common::{keyrite, report, root, run_on_softhsm_util_token, sh, text, tool};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const P256: &str = "ceremony-scripts/root-ca-p256.toml";
const RSA: &str = "ceremony-scripts/root-ca.toml";
const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
const P11KIT_PROXY: &str = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so";

/// The HSM's PIN, then the cards' (one line per request; all share it here).
fn pins() -> String {
    "24681357\n".repeat(64)
}

fn rehearse_auto(script: &str, extra: &[&str]) -> (tempfile::TempDir, PathBuf, Output) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle");
    let mut args = vec!["rehearse", script, "--auto", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let result = keyrite(&args);
    (dir, out, result)
}

/// openssl verify, pkilint, the openssl key hash in report.json, sha256sum of every artifact, and
/// `keyrite verify`.
fn check_root_bundle(out: &Path, rehearsal: bool) {
    let r = report(out);
    assert_eq!(r["result"], "completed", "{r:#}");
    assert_eq!(r["rehearsal"], rehearsal);
    let cert = out.join(r["certificates"][0]["file"].as_str().unwrap());
    let cert = cert.to_str().unwrap();

    if tool("openssl").is_some() {
        let v = sh(&format!(
            "openssl verify -x509_strict -CAfile {cert} {cert}"
        ));
        assert!(v.status.success(), "openssl verify: {}", text(&v));
        let hash = sh(&format!(
            "openssl x509 -in {cert} -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum"
        ));
        let hash = String::from_utf8_lossy(&hash.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        assert_eq!(hash.len(), 64);
        assert_eq!(
            r["keys"][0]["key_hash"],
            hash.as_str(),
            "openssl's key hash is in report.json"
        );
        let text_form = sh(&format!("openssl x509 -in {cert} -noout -text"));
        let t = String::from_utf8_lossy(&text_form.stdout);
        assert!(
            t.contains("CA:TRUE") && t.contains("Certificate Sign, CRL Sign"),
            "{t}"
        );
    }
    let pkilint = std::env::var("KEYRITE_PKILINT")
        .ok()
        .or_else(|| tool("lint_cabf_serverauth_cert"));
    if let Some(pkilint) = pkilint {
        let lint = sh(&format!("{pkilint} lint -t ROOT-CA -s WARNING {cert}"));
        assert!(lint.status.success(), "pkilint findings: {}", text(&lint));
    }
    if tool("sha256sum").is_some() {
        for a in r["artifacts"].as_array().unwrap() {
            let path = out.join(a["path"].as_str().unwrap());
            let sum = sh(&format!("sha256sum {}", path.display()));
            let sum = String::from_utf8_lossy(&sum.stdout)
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            assert_eq!(a["sha256"], sum.as_str());
        }
        let log = sh(&format!("sha256sum {}", out.join("report.json").display()));
        let sum = String::from_utf8_lossy(&log.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let last = std::fs::read_to_string(out.join("audit.jsonl"))
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .to_string();
        assert!(
            last.contains(&sum),
            "the log's last entry binds report.json's sha256sum"
        );
    }
    if tool("python3").is_some() {
        let chain = Command::new("python3")
            .arg(root().join("softhsm-tests/check_chain.py"))
            .arg(out.join("audit.jsonl"))
            .arg(out.join("report.json"))
            .output()
            .unwrap();
        assert!(
            chain.status.success(),
            "an independent chain check: {}",
            text(&chain)
        );
    }
    let v = keyrite(&["verify", out.to_str().unwrap()]);
    assert!(v.status.success(), "keyrite verify: {}", text(&v));
}

#[test]
fn p256_root_rehearsal_passes_openssl_pkilint_and_verify() {
    let (_dir, out, result) = rehearse_auto(P256, &[]);
    assert!(result.status.success(), "{}", text(&result));
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        stdout.contains("[5/9] generate-root-key"),
        "one line per step: {stdout}"
    );
    check_root_bundle(&out, true);
    let r = report(&out);
    let key = &r["keys"][0];
    for attr in [
        "local",
        "never_extractable",
        "always_sensitive",
        "sensitive",
    ] {
        assert_eq!(key["attributes"][attr], true, "{attr}");
    }
    assert_eq!(key["attributes"]["extractable"], false);
    assert_eq!(r["hsm"]["manufacturer"], "SoftHSM project");
    let generate = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "generate-root-key")
        .unwrap();
    let dual: Vec<_> = generate["confirmations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["counts_for"] == "dual-control")
        .collect();
    assert_eq!(dual.len(), 2);
    assert_ne!(dual[0]["person"], dual[1]["person"]);
}

#[test]
fn rsa4096_root_rehearsal_passes_openssl_and_pkilint() {
    let (_dir, out, result) = rehearse_auto(RSA, &[]);
    assert!(result.status.success(), "{}", text(&result));
    check_root_bundle(&out, true);
    assert_eq!(
        report(&out)["certificates"][0]["signature_algorithm"],
        "sha384WithRSAEncryption"
    );
}

#[test]
fn the_same_rehearsal_runs_through_the_p11_kit_proxy() {
    if !Path::new(P11KIT_PROXY).exists() {
        assert!(
            std::env::var_os("KEYRITE_REQUIRE_EXTERNAL").is_none(),
            "p11-kit-proxy.so is required in CI"
        );
        return;
    }
    let (_dir, out, result) = rehearse_auto(P256, &["--module", P11KIT_PROXY]);
    assert!(result.status.success(), "{}", text(&result));
    check_root_bundle(&out, true);
    assert_eq!(report(&out)["hsm"]["module_path"], P11KIT_PROXY);
}

#[test]
fn every_single_byte_change_fails_verify_naming_the_file() {
    let (dir, out, result) = rehearse_auto(P256, &[]);
    assert!(result.status.success(), "{}", text(&result));
    let r = report(&out);
    let cert = r["certificates"][0]["file"].as_str().unwrap().to_string();
    let pubkey = r["keys"][0]["public_key_file"]
        .as_str()
        .unwrap()
        .to_string();
    for file in [
        "audit.jsonl",
        "report.json",
        "report.pdf",
        "script.toml",
        cert.as_str(),
        pubkey.as_str(),
    ] {
        let len = std::fs::metadata(out.join(file)).unwrap().len() as usize;
        for at in [0, len / 3, len / 2, len - 2, len - 1] {
            let copy = dir
                .path()
                .join(format!("tampered-{}-{at}", file.replace('/', "_")));
            assert!(sh(&format!("cp -r {} {}", out.display(), copy.display()))
                .status
                .success());
            let target = copy.join(file);
            let mut bytes = std::fs::read(&target).unwrap();
            bytes[at] ^= 0x01;
            std::fs::write(&target, bytes).unwrap();
            let v = keyrite(&["verify", copy.to_str().unwrap()]);
            assert_eq!(
                v.status.code(),
                Some(5),
                "flipping byte {at} of {file} went unnoticed: {}",
                text(&v)
            );
            let fails: Vec<_> = String::from_utf8_lossy(&v.stdout)
                .lines()
                .filter(|l| l.starts_with("FAIL"))
                .map(str::to_string)
                .collect();
            assert!(
                fails.iter().any(|l| l.contains(file)),
                "verify must name {file}: {fails:?}"
            );
        }
    }
    // An extra file in artifacts/ is evidence nobody recorded.
    std::fs::write(out.join("artifacts/extra.pem"), "x").unwrap();
    let v = keyrite(&["verify", out.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(5));
    assert!(text(&v).contains("artifacts/extra.pem"));
}

fn list_objects(env: &Path, label: &str) -> String {
    let file = std::fs::read_to_string(env.join("rehearsal.toml")).unwrap();
    let parsed: toml::Value = toml::from_str(&file).unwrap();
    let token = parsed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"].as_str() == Some(label))
        .unwrap();
    let pin = token["user_pin"].as_str().unwrap();
    let out = Command::new("pkcs11-tool")
        .args([
            "--module",
            SOFTHSM,
            "--token-label",
            label,
            "--login",
            "--pin",
            pin,
            "--list-objects",
        ])
        .env("SOFTHSM2_CONF", env.join("softhsm2.conf"))
        .output()
        .expect("pkcs11-tool runs");
    assert!(out.status.success(), "pkcs11-tool: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn one_operator_alone_cannot_generate_a_key_and_nothing_reaches_the_hsm() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env");
    let out = dir.path().join("bundle");
    let answers = dir.path().join("answers.toml");
    let mut text_answers = String::new();
    for (id, who) in [
        ("preflight", r#"["Maria Keller", "Wiebke Janssen"]"#),
        (
            "identify-participants",
            r#"["Maria Keller", "Ines Moreau"]"#,
        ),
        ("unseal-hsm", r#"["Sven Lindqvist", "Wiebke Janssen"]"#),
        (
            "activate-hsm",
            r#"["Omar Haddad", "Olga Petrova", "Ines Moreau"]"#,
        ),
        // Omar twice and a witness: still one operator.
        (
            "generate-root-key",
            r#"["Omar Haddad", "Omar Haddad", "Ines Moreau", "Wiebke Janssen"]"#,
        ),
    ] {
        text_answers.push_str(&format!("[[steps]]\nid = \"{id}\"\nconfirm = {who}\n\n"));
    }
    std::fs::write(&answers, text_answers).unwrap();
    let result = keyrite(&[
        "rehearse",
        P256,
        "--answers",
        answers.to_str().unwrap(),
        "--env",
        env.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(result.status.code(), Some(3), "{}", text(&result));
    let t = text(&result);
    assert!(t.contains("never counts twice"), "{t}");
    assert!(t.contains("dual control"), "{t}");
    let r = report(&out);
    assert_eq!(r["result"], "aborted");
    assert!(r["keys"].as_array().unwrap().is_empty());
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    assert!(
        !log.contains("generate_key_pair"),
        "no HSM intent for keygen may be logged"
    );
    assert!(log.contains("step_refused"));
    if tool("pkcs11-tool").is_some() {
        let objects = list_objects(&env, "example-root-hsm");
        assert!(
            !objects.contains("example-root-p256-2026"),
            "no key may exist: {objects}"
        );
    }
    let v = keyrite(&["verify", out.to_str().unwrap()]);
    assert!(
        v.status.success(),
        "an aborted ceremony's bundle stays verifiable: {}",
        text(&v)
    );
}

#[test]
fn env_reuse_refuses_an_existing_label_and_keeps_pins_out_of_the_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env");
    let rehearse_into = |out: &Path| {
        let (env, out) = (env.to_str().unwrap(), out.to_str().unwrap());
        keyrite(&["rehearse", P256, "--auto", "--env", env, "--out", out])
    };
    let first = dir.path().join("first");
    let a = rehearse_into(&first);
    assert!(a.status.success(), "{}", text(&a));
    let second = dir.path().join("second");
    let b = rehearse_into(&second);
    assert_eq!(b.status.code(), Some(4), "{}", text(&b));
    assert!(text(&b).contains("already exists"), "{}", text(&b));
    if tool("pkcs11-tool").is_some() {
        let objects = list_objects(&env, "example-root-hsm");
        assert_eq!(
            objects
                .matches("label:      example-root-p256-2026")
                .count(),
            2,
            "one key pair only: {objects}"
        );
    }
    let env_text = std::fs::read_to_string(env.join("rehearsal.toml")).unwrap();
    let parsed: toml::Value = toml::from_str(&env_text).unwrap();
    let token = &parsed["tokens"][0];
    let pins = [
        token["so_pin"].as_str().unwrap(),
        token["user_pin"].as_str().unwrap(),
    ];
    for pin in pins {
        assert!(pin.len() >= 16);
        for out in [&a, &b] {
            assert!(!text(out).contains(pin), "a PIN reached stdout or stderr");
        }
        let grep = sh(&format!(
            "grep -rlF -- '{pin}' {} {}",
            first.display(),
            second.display()
        ));
        assert!(
            grep.stdout.is_empty(),
            "a PIN reached the evidence: {}",
            String::from_utf8_lossy(&grep.stdout)
        );
    }
    let mode = sh(&format!(
        "stat -c %a {}",
        env.join("rehearsal.toml").display()
    ));
    assert_eq!(String::from_utf8_lossy(&mode.stdout).trim(), "600");
}

#[test]
fn run_never_accepts_auto() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let r = keyrite(&["run", P256, "--auto", "--out", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(2));
    assert!(
        text(&r).contains("--auto is for rehearsals only"),
        "{}",
        text(&r)
    );
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn run_at_medium_completes_on_the_scripts_module() {
    let text_p256 = std::fs::read_to_string(root().join(P256)).unwrap();
    let medium = text_p256.replace(
        "security_level = \"very-high\"",
        "security_level = \"medium\"",
    );
    let (dir, out, result, _) = run_on_softhsm_util_token(&medium, &pins());
    assert!(result.status.success(), "{}", text(&result));
    let r = report(&out);
    assert_eq!(r["rehearsal"], false);
    assert_eq!(r["hsm"]["module_path"], SOFTHSM);
    check_root_bundle(&out, false);
    // Medium: the security officer signs the report with the card the organisation issued, found on
    // the token by the certificate's CKA_ID; the independent witness signs only confirmations.
    let p7s = out.join("signatures/sven-lindqvist.report.json.p7s");
    let v = sh(&format!(
        "openssl cms -verify -binary -inform DER -in {} -content {} -CAfile {} -purpose any -out /dev/null",
        p7s.display(),
        out.join("report.json").display(),
        dir.path().join("ca.pem").display()
    ));
    assert!(v.status.success(), "{}", text(&v));
    assert!(!out.join("signatures/ines-moreau.report.json.p7s").exists());
    assert!(!r["signed_confirmations"].as_array().unwrap().is_empty());
}

#[test]
fn run_at_very_high_refuses_while_online() {
    let text_p256 = std::fs::read_to_string(root().join(P256)).unwrap();
    let (_dir, out, result, online) = run_on_softhsm_util_token(&text_p256, &pins());
    if online.is_empty() {
        assert!(
            result.status.success(),
            "offline, so the run completes: {}",
            text(&result)
        );
        check_root_bundle(&out, false);
        return;
    }
    assert_eq!(result.status.code(), Some(3), "{}", text(&result));
    assert!(
        text(&result).contains("must be offline"),
        "{}",
        text(&result)
    );
    let r = report(&out);
    assert!(r["hsm"].is_null(), "the HSM was never opened");
    let first = online.lines().next().unwrap();
    let ifs = r["preflight"]["host"]["interfaces"].as_array().unwrap();
    assert!(
        ifs.iter().any(|i| i["name"] == first && i["up"] == true),
        "{ifs:?}"
    );
    let v = keyrite(&["verify", out.to_str().unwrap()]);
    assert!(v.status.success(), "{}", text(&v));
}

/// `[hsm] network_interface` (a network HSM's one interface) is allowed up at very-high, recorded in
/// the report, and every other interface still stops the run.
#[test]
fn a_network_hsms_interface_is_allowed_up_and_recorded() {
    let up = sh("for i in /sys/class/net/*; do [ \"$(cat $i/type)\" = 772 ] && continue; [ $(( $(cat $i/flags) & 1 )) -eq 1 ] && basename $i; done; true");
    let up = String::from_utf8_lossy(&up.stdout).to_string();
    let Some(first) = up.lines().next() else {
        eprintln!("skipping: no network interface is up to allow");
        return;
    };
    let src = std::fs::read_to_string(root().join(P256))
        .unwrap()
        .replacen(
            "[hsm]\n",
            &format!("[hsm]\nnetwork_interface = \"{first}\"\n"),
            1,
        );
    let (_dir, out, result, online) = run_on_softhsm_util_token(&src, &pins());
    let r = report(&out);
    assert_eq!(
        r["preflight"]["hsm_interface"], first,
        "{:#}",
        r["preflight"]
    );
    let others: Vec<&str> = online.lines().filter(|l| *l != first).collect();
    if others.is_empty() {
        assert!(result.status.success(), "{}", text(&result));
        assert_eq!(r["preflight"]["offline"], true);
        check_root_bundle(&out, false);
    } else {
        assert_eq!(result.status.code(), Some(3), "{}", text(&result));
        assert!(text(&result).contains(others[0]), "{}", text(&result));
        let v = keyrite(&["verify", out.to_str().unwrap()]);
        assert!(v.status.success(), "{}", text(&v));
    }
}

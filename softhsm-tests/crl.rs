//! CRL issuance and root profile control on one rehearsal environment: root ceremony with the
//! quorum split, then ceremony-scripts/crl-issuance.toml (quorum activation, CRL signed under
//! "2 operators and 1 security officer"), then a second CRL with the first as input. Checked with
//! openssl, pkilint's lint_crl and `keyrite verify`; the refusals leave no bundle behind.

mod common;

use common::quorum::*;
use common::{report, root, sh, text, tool};
use std::path::{Path, PathBuf};

const ROOT_CERT: &str = "example-root-quorum-2026.pem";
const CRL1: &str = "artifacts/example-root-quorum-2026-crl-1.crl.pem";

/// The folder of pkilint's commands: next to KEYRITE_PKILINT (run-all.sh), else on PATH.
fn pkilint(command: &str) -> Option<String> {
    if let Ok(p) = std::env::var("KEYRITE_PKILINT") {
        let dir = Path::new(&p)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        return Some(dir.join(command).display().to_string());
    }
    tool(command)
}

/// The shipped script (with `edit` applied), copied into a fresh folder next to its inputs.
fn script_in(env: &Env, name: &str, root_cert: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let dir = env.dir.path().join(format!("{name}-inputs"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(root_cert, dir.join(ROOT_CERT)).unwrap();
    let shipped =
        std::fs::read_to_string(root().join("ceremony-scripts/crl-issuance.toml")).unwrap();
    let script = dir.join("crl-issuance.toml");
    std::fs::write(&script, edit(shipped)).unwrap();
    script
}

fn second_crl(s: String, number: u32) -> String {
    s.replace("crl-1\"", "crl-2\"")
        .replace("number = 1\n", &format!("number = {number}\nprevious_crl = \"previous.crl.pem\"\n"))
        .replace("this_update = \"2026-12-01T00:00:00Z\"", "this_update = \"2027-01-10T00:00:00Z\"")
        .replace("next_update = \"2027-06-01T00:00:00Z\"", "next_update = \"2027-07-01T00:00:00Z\"")
        .replace(
            "serial = \"2a2b2c2d2e2f30313233343536373839\"\ndate = \"2026-11-15T09:30:00Z\"\nreason = \"cessation-of-operation\"",
            "serial = \"4c4d4e4f505152535455565758595a5b\"\ndate = \"2027-01-09T08:00:00Z\"\nreason = \"superseded\"",
        )
}

#[test]
fn crl_issuance_after_the_root_ceremony_and_a_second_crl_from_the_first() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let (out, root_bundle) = env.rehearse("root-ca-quorum.toml", "root", None);
    assert!(out.status.success(), "{}", text(&out));
    let root_cert = root_bundle.join("artifacts").join(ROOT_CERT);

    // 1. The shipped script, as shipped.
    let script = script_in(&env, "crl1", &root_cert, |s| s);
    let (out, crl1) = env.rehearse(script.to_str().unwrap(), "crl1", None);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("number:      1"), "{shown}");
    assert!(
        shown.contains("serial 1f2e3d4c5b6a79880102030405060708"),
        "{shown}"
    );
    verify(&crl1);
    let crl = crl1.join(CRL1);
    let ca = root_cert.display();
    let checked = sh(&format!(
        "openssl crl -in {} -CAfile {ca} -noout",
        crl.display()
    ));
    // openssl 3.0 prints "verify OK" on stderr and exits 0.
    assert!(checked.status.success(), "{}", text(&checked));
    assert!(text(&checked).contains("verify OK"), "{}", text(&checked));
    if let Some(lint) = pkilint("lint_crl") {
        let found = sh(&format!(
            "{lint} lint -t ARL -p BR -s WARNING {}",
            crl.display()
        ));
        assert!(
            found.status.success(),
            "lint_crl findings: {}",
            text(&found)
        );
        assert_eq!(String::from_utf8_lossy(&found.stdout).trim(), "");
    }
    let r = report(&crl1);
    // The root key was found as an existing key pinned by hash, and the report says where it lives.
    assert_eq!(r["existing_keys"].as_array().map(Vec::len), Some(1), "{r}");
    let uris = r["key_uris"].as_array().unwrap();
    assert_eq!(uris.len(), 1, "one URI per key, logged once");
    assert!(uris[0]["uri"]
        .as_str()
        .unwrap()
        .starts_with("pkcs11:token=example-quorum-hsm;serial="));
    assert!(uris[0]["uri"]
        .as_str()
        .unwrap()
        .ends_with(";object=example-root-quorum-2026;type=private"));
    let recorded = &r["crls"][0];
    assert_eq!(recorded["number"], 1);
    assert_eq!(recorded["revoked"].as_array().unwrap().len(), 2);
    let der_sum = sh(&format!(
        "openssl crl -in {} -outform DER | sha256sum",
        crl.display()
    ));
    let der_sum = String::from_utf8_lossy(&der_sum.stdout);
    assert!(der_sum.starts_with(recorded["sha256_fingerprint"].as_str().unwrap()));
    // The sign step counted 2 operators and the security officer.
    let sign = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "sign-crl")
        .unwrap();
    let roles: Vec<&str> = sign["confirmations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["counts_for"] == "dual-control")
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["operator", "operator", "security-officer"]);

    // 2. The next CRL with the first as input: its entries carry over, with the new one.
    let script = script_in(&env, "crl2", &root_cert, |s| second_crl(s, 2));
    std::fs::copy(&crl, script.parent().unwrap().join("previous.crl.pem")).unwrap();
    let (out, crl2) = env.rehearse(script.to_str().unwrap(), "crl2", None);
    assert!(out.status.success(), "{}", text(&out));
    verify(&crl2);
    let crl2_file = crl2.join("artifacts/example-root-quorum-2026-crl-2.crl.pem");
    let shown = sh(&format!(
        "openssl crl -in {} -CAfile {ca} -noout -text",
        crl2_file.display()
    ));
    let shown = text(&shown);
    for serial in [
        "1F2E3D4C5B6A79880102030405060708",
        "2A2B2C2D2E2F30313233343536373839",
        "4C4D4E4F505152535455565758595A5B",
    ] {
        assert!(shown.contains(serial), "{serial} missing:\n{shown}");
    }
    assert!(
        shown.contains("X509v3 CRL Number: \n                2"),
        "{shown}"
    );
    assert!(shown.contains("verify OK"), "{shown}");
    assert!(
        shown.contains("Key Compromise") && shown.contains("Superseded"),
        "{shown}"
    );
    assert_eq!(report(&crl2)["crls"][0]["previous_number"], 1);
    // report.json with its crls against docs/report.schema.json (run-all.sh names the Python).
    if let Ok(python) = std::env::var("KEYRITE_JSONSCHEMA_PYTHON") {
        let schema = root().join("docs/report.schema.json");
        let checked = sh(&format!(
            "{python} -c 'import json,sys,jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))' {} {}",
            crl2.join("report.json").display(),
            schema.display()
        ));
        assert!(checked.status.success(), "{}", text(&checked));
    }

    // 3. Refusals before anything is written: a number that does not increase ...
    let script = script_in(&env, "same-number", &root_cert, |s| second_crl(s, 1));
    std::fs::copy(&crl, script.parent().unwrap().join("previous.crl.pem")).unwrap();
    let (out, bundle) = env.rehearse(script.to_str().unwrap(), "same-number", None);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            "number = 1 does not increase: the previous CRL previous.crl.pem has number 1"
        ),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("set number = 2 or more"),
        "{}",
        text(&out)
    );
    assert!(!bundle.exists(), "no bundle after the refusal");

    // ... and a nextUpdate beyond the profile.
    let script = script_in(&env, "too-long", &root_cert, |s| {
        s.replace(
            "next_update = \"2027-06-01T00:00:00Z\"",
            "next_update = \"2028-01-01T00:00:00Z\"",
        )
    });
    let (out, bundle) = env.rehearse(script.to_str().unwrap(), "too-long", None);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            "is 396.0 days after this_update; the root-ca CRL profile allows at most 365 days"
        ),
        "{}",
        text(&out)
    );
    assert!(!bundle.exists(), "no bundle after the refusal");
}

/// Item 5: a root that never expires (notAfter 99991231235959Z as GeneralizedTime), with
/// certificate policies and a subject with ST and L, passes openssl -x509_strict and pkilint's
/// RFC 5280 lints.
#[test]
fn a_never_expiring_root_with_policies_passes_openssl_strict_and_pkilint() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let shipped =
        std::fs::read_to_string(root().join("ceremony-scripts/root-ca-p256.toml")).unwrap();
    let script = shipped
        .replace(
            "subject = { C = \"DE\", O = \"Example Trust Services GmbH\", CN = \"Example Root CA P-256 2026\" }",
            "subject = { C = \"DE\", ST = \"Berlin\", L = \"Berlin\", O = \"Example Trust Services GmbH\", CN = \"Example Root CA P-256 2026\" }",
        )
        .replace(
            "validity_days = 9131",
            "store_on_token = true\nnot_before = \"2026-12-01T00:00:00Z\"\nnot_after = \"9999-12-31T23:59:59Z\"\nextensions = { policies = [\"2.5.29.32.0\"], cps_uri = \"https://pki.example.com/cps\" }",
        );
    assert_ne!(script, shipped);
    let file = env.dir.path().join("never-expires.toml");
    std::fs::write(&file, script).unwrap();
    let (out, bundle) = env.rehearse(file.to_str().unwrap(), "never", None);
    assert!(out.status.success(), "{}", text(&out));
    verify(&bundle);
    let cert = bundle.join("artifacts/example-root-p256-2026.pem");
    let c = cert.display();
    let strict = sh(&format!("openssl verify -x509_strict -CAfile {c} {c}"));
    assert!(strict.status.success(), "{}", text(&strict));
    let dates = sh(&format!(
        "openssl x509 -in {c} -noout -startdate -enddate -subject -text"
    ));
    let dates = text(&dates);
    assert!(
        dates.contains("notBefore=Dec  1 00:00:00 2026 GMT"),
        "{dates}"
    );
    assert!(
        dates.contains("notAfter=Dec 31 23:59:59 9999 GMT"),
        "{dates}"
    );
    assert!(
        dates.contains("C = DE, ST = Berlin, L = Berlin, O = Example Trust Services GmbH"),
        "{dates}"
    );
    assert!(
        dates.contains("Policy: X509v3 Any Policy")
            && dates.contains("CPS: https://pki.example.com/cps"),
        "{dates}"
    );
    // GeneralizedTime (tag 0x18, 15 bytes) 99991231235959Z in the DER.
    let der = sh(&format!(
        "openssl x509 -in {c} -outform DER | od -An -tx1 | tr -d ' \\n'"
    ));
    let der = String::from_utf8_lossy(&der.stdout).to_string();
    assert!(
        der.contains(&format!("180f{}", hex::encode("99991231235959Z"))),
        "{der}"
    );
    if let Some(lint) = pkilint("lint_pkix_cert") {
        let found = sh(&format!("{lint} lint -s WARNING {c}"));
        assert!(
            found.status.success(),
            "lint_pkix_cert findings: {}",
            text(&found)
        );
    }
    let r = report(&bundle);
    assert_eq!(r["certificates"][0]["not_after"], "9999-12-31T23:59:59Z");

    // Item 5: the certificate is on the token under the key's CKA_ID, and the report's URI names
    // that key (token, serial, id, object), as pkcs11-tool lists it.
    let key = &r["keys"][0];
    let id = key["id"].as_str().unwrap();
    assert_eq!(r["certificates_on_token"][0]["id"], id);
    let uri = r["key_uris"][0]["uri"].as_str().unwrap();
    let pct: String = hex::decode(id)
        .unwrap()
        .iter()
        .map(|b| format!("%{b:02X}"))
        .collect();
    let serial = r["hsm"]["serial"].as_str().unwrap();
    assert_eq!(
        uri,
        format!("pkcs11:token=example-root-hsm;serial={serial};id={pct};object=example-root-p256-2026;type=private")
    );
    assert_eq!(r["key_uris"][0]["key_hash"], key["key_hash"]);
    let listed = env.p11(
        "example-root-hsm",
        &env.pin("example-root-hsm"),
        &["--list-objects", "--type", "cert"],
    );
    let listed = text(&listed);
    assert!(listed.contains("Certificate Object"), "{listed}");
    assert!(listed.contains(&format!("ID:         {id}")), "{listed}");
    let stored = env.p11(
        "example-root-hsm",
        &env.pin("example-root-hsm"),
        &["--read-object", "--type", "cert", "--id", id],
    );
    let on_token = sh(&format!("openssl x509 -in {c} -outform DER | sha256sum"));
    let ours = String::from_utf8_lossy(&on_token.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let theirs = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&stored.stdout))
    };
    assert_eq!(
        ours, theirs,
        "the token holds exactly the certificate in the bundle"
    );
}

/// resume.rs's rule for sign_crl: killed after the HSM signed (nothing logged) or after the file was
/// written (not yet bound), `keyrite resume` signs again and the bundle holds one verified CRL.
/// (A PIN-activated root: resume does not take up a session the quorum opened.)
#[test]
fn a_crl_step_killed_mid_way_is_resumed_to_one_verified_crl() {
    for kill_at in [
        "sign-crl:after-sign_crl",
        "sign-crl:before-artifact_written",
    ] {
        let Some(mut env) = Env::new() else {
            return;
        };
        let (out, root_bundle) = env.rehearse("root-ca-p256.toml", "root", None);
        assert!(out.status.success(), "{}", text(&out));
        let root_cert = root_bundle.join("artifacts/example-root-p256-2026.pem");
        let script = script_in(&env, "killed", &root_cert, |s| {
            // No [quorum]: the P-256 root's HSM is logged in with its user PIN.
            let (head, rest) = s.split_once("[quorum]").unwrap();
            let steps = &rest[rest.find("[[steps]]").unwrap()..];
            format!("{head}{steps}")
                .replace("example-root-quorum-2026", "example-root-p256-2026")
                .replace("example-quorum-hsm", "example-root-hsm")
                .replace("action = \"activate_quorum\"", "action = \"activate_hsm\"")
        });
        std::fs::copy(
            &root_cert,
            script.parent().unwrap().join("example-root-p256-2026.pem"),
        )
        .unwrap();
        let vars = [("KEYRITE_TEST_KILL_AT", kill_at)];
        let (out, bundle) = env.rehearse_with(script.to_str().unwrap(), "killed", None, &vars);
        assert!(
            !out.status.success(),
            "{kill_at}: the kill hook did not fire: {}",
            text(&out)
        );
        let resumed = env.resume(&bundle, &[], &[]);
        assert!(resumed.status.success(), "{kill_at}: {}", text(&resumed));
        verify(&bundle);
        let log = std::fs::read_to_string(bundle.join("audit.jsonl")).unwrap();
        assert_eq!(
            log.matches("\"kind\":\"crl_signed\"").count(),
            1,
            "{kill_at}"
        );
        assert!(log.contains("\"kind\":\"step_resumed\""), "{kill_at}");
        let crl = bundle.join("artifacts/example-root-p256-2026-crl-1.crl.pem");
        let checked = sh(&format!(
            "openssl crl -in {} -CAfile {} -noout",
            crl.display(),
            root_cert.display()
        ));
        assert!(
            text(&checked).contains("verify OK"),
            "{kill_at}: {}",
            text(&checked)
        );
    }
}

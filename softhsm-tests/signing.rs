//! Signing with the root after its ceremony (issue 11), on one rehearsal environment: the root
//! ceremony, then later ceremonies that use its key from the token, pinned by hash. Outputs are
//! checked with openssl, pkcs11-tool and sha256sum; every bundle passes `keyrite verify`.

#[path = "signing/adopt.rs"]
mod adopt;
mod common;

use common::quorum::{verify, Env, SOFTHSM};
use common::{ok, report, root, schema_valid, sh, text};
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
    let dir = env.dir.path().to_path_buf();
    let dir = dir.as_path();
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

    // Killed after the activation found the key: resume finds it again after the new login (by
    // the logged hash) and signs the test message with it.
    let killed = env.killed(
        script.to_str().unwrap(),
        "killed",
        "activate-hsm:after-step",
        &[],
    );
    let resumed = env.resume(&killed, &[], &[]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    verify(&killed);
    let r = report(&killed);
    assert_eq!(r["result"], "completed");
    assert_eq!(r["test_signatures"][0]["key_hash"], root_hash.as_str());
    assert_eq!(r["test_signatures"][0]["verified"], true);
    let found_again = Env::log(&killed)
        .iter()
        .filter(|e| e["event"]["kind"] == "existing_key_found")
        .count();
    assert_eq!(
        found_again, 2,
        "found, then found again after the new login"
    );

    // A key the rehearsal did not generate (pkcs11-tool made it) is checked against the script's
    // hash: the root's hash is not its hash.
    env.generate_p256(HSM, "other-key", "0b0b");
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
    env.generate_p256(HSM, ROOT_KEY, "0c0c");
    let (out, bundle) = env.rehearse(script.to_str().unwrap(), "ambiguous", None);
    stopped_before_signing(&out, &bundle, "activate-hsm", "2 private keys");
    let _ = SOFTHSM;
}

/// pkilint's CA/B linter at WARNING with `kind`; in CI a missing pkilint fails.
fn pkilint(kind: &str, cert: &Path) {
    let pkilint = std::env::var("KEYRITE_PKILINT")
        .ok()
        .map(|p| p.replace("lint_cabf_serverauth_cert", ""))
        .or_else(|| {
            let venv = root().join(".venv-pkilint/bin/");
            venv.exists().then(|| venv.display().to_string())
        })
        .or_else(|| common::tool("lint_cabf_serverauth_cert").map(|_| String::new()));
    let Some(dir) = pkilint else {
        return;
    };
    let lint = sh(&format!(
        "{dir}lint_cabf_serverauth_cert lint -t {kind} -s WARNING {}",
        cert.display()
    ));
    assert!(lint.status.success(), "pkilint {kind}: {}", text(&lint));
}

/// Root ceremony with the quorum split → a subordinate CA from an openssl request → a
/// cross-certificate for an openssl partner root; each bundle checked by openssl, pkilint and
/// `keyrite verify`; a bad-signature request, an RSA-1024 request and a tampered certificate are
/// refused.
#[test]
fn root_then_sub_ca_from_an_openssl_request_then_a_cross_certificate_then_a_crl() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let dir = env.dir.path().to_path_buf();
    let (out, root_bundle) = env.rehearse("root-ca-quorum.toml", "root", None);
    assert!(out.status.success(), "{}", text(&out));
    let root_pem = root_bundle.join("artifacts/example-root-quorum-2026.pem");
    let d = dir.display();

    // The issuing CA makes its key and request with openssl (RSA-3072, SHA-256).
    ok(&format!(
        "openssl req -new -newkey rsa:3072 -nodes -keyout {d}/sub.key -out {d}/sub.csr \
         -subj '/C=DE/O=Example Trust Services GmbH/CN=Example Issuing CA 2026'"
    ));
    let csr = dir.join("sub.csr");
    let (out, bundle) =
        env.rehearse_with_attach("sub-ca-signing.toml", "sub", "sign-issuing-ca", &csr);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("TO BE SIGNED"), "{}", text(&out));
    verify(&bundle);
    schema_valid(&bundle);
    let sub = bundle.join("artifacts/example-issuing-ca-2026.pem");
    ok(&format!(
        "openssl verify -x509_strict -CAfile {} {}",
        root_pem.display(),
        sub.display()
    ));
    let chain = bundle.join("artifacts/example-issuing-ca-2026.chain.pem");
    ok(&format!(
        "openssl verify -x509_strict -CAfile {} {}",
        root_pem.display(),
        chain.display()
    ));
    let cert_key = ok(&format!(
        "openssl x509 -in {} -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum",
        sub.display()
    ));
    let csr_key = ok(&format!(
        "openssl req -in {d}/sub.csr -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum"
    ));
    assert_eq!(cert_key, csr_key, "the sub-CA's key is the request's");
    pkilint("INTERNAL-UNCONSTRAINED-TLS-CA", &sub);
    let r = report(&bundle);
    let issued = &r["ca_certificates"][0];
    let csr_sha = ok(&format!("sha256sum {d}/sub.csr"));
    assert_eq!(
        issued["input_sha256"].as_str(),
        csr_sha.split_whitespace().next()
    );
    assert_eq!(
        issued["subject_key_hash"].as_str(),
        cert_key.split_whitespace().next()
    );
    assert_eq!(issued["issuer_key_hash"], r["existing_keys"][0]["key_hash"]);
    // report.pdf names the subordinate CA with the request's SHA-256 (poppler reads it back).
    if common::tool("pdftotext").is_some() {
        let pdf = ok(&format!(
            "pdftotext -layout {} -",
            bundle.join("report.pdf").display()
        ));
        let sha = issued["input_sha256"].as_str().unwrap();
        assert!(pdf.contains("Subordinate CA certificate"), "{pdf}");
        assert!(pdf.contains(&sha[..4]) && pdf.contains(&sha[60..]), "{pdf}");
    }
    let text_form = ok(&format!("openssl x509 -in {} -noout -text", sub.display()));
    for want in [
        "CA:TRUE, pathlen:0",
        "Certificate Sign, CRL Sign",
        "TLS Web Server Authentication",
        "2.23.140.1.2.2",
        "http://pki.example.com/example-root-quorum-2026.crl",
        "CA Issuers - URI:http://pki.example.com/example-root-quorum-2026.crt",
    ] {
        assert!(text_form.contains(want), "{want}: {text_form}");
    }
    // A certificate altered after the ceremony fails `keyrite verify`.
    let copy = dir.join("tampered");
    ok(&format!("cp -r {} {}", bundle.display(), copy.display()));
    let pem = std::fs::read_to_string(&sub).unwrap();
    let flipped = pem.replacen("MII", "MIJ", 1);
    std::fs::write(copy.join("artifacts/example-issuing-ca-2026.pem"), flipped).unwrap();
    let v = common::keyrite(&["verify", copy.to_str().unwrap()]);
    assert!(!v.status.success(), "{}", text(&v));

    // A request whose signature was altered, and an RSA-1024 request: refused before any bundle.
    let der = ok(&format!(
        "openssl req -in {d}/sub.csr -outform DER -out {d}/sub.der && echo done"
    ));
    assert!(der.contains("done"));
    let mut bytes = std::fs::read(dir.join("sub.der")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(dir.join("bad-signature.der"), bytes).unwrap();
    ok(&format!(
        "openssl req -new -newkey rsa:1024 -nodes -keyout {d}/weak.key -out {d}/weak.csr \
         -subj '/C=DE/O=Example/CN=Weak CA'"
    ));
    for (name, file, says) in [
        ("bad-sig", "bad-signature.der", "does not verify"),
        ("weak", "weak.csr", "RSA-1024, too weak"),
    ] {
        let (out, bundle) = env.rehearse_with_attach(
            "sub-ca-signing.toml",
            name,
            "sign-issuing-ca",
            &dir.join(file),
        );
        assert!(!out.status.success(), "{name}: {}", text(&out));
        assert!(text(&out).contains(says), "{name}: {}", text(&out));
        assert!(!bundle.exists(), "{name}: no bundle, no partial output");
    }

    // The partner CA's root (openssl, P-384) is cross-certified by our root.
    ok(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout {d}/partner.key \
         -out {d}/partner.pem -days 3650 -subj '/C=FR/O=Partner Trust SA/CN=Partner Root CA 2026' \
         -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
    ));
    let partner = dir.join("partner.pem");
    let (out, bundle) =
        env.rehearse_with_attach("cross-certificate.toml", "cross", "cross-sign", &partner);
    assert!(out.status.success(), "{}", text(&out));
    verify(&bundle);
    schema_valid(&bundle);
    let cross = bundle.join("artifacts/example-cross-partner-root-2026.pem");
    ok(&format!(
        "openssl verify -x509_strict -CAfile {} {}",
        root_pem.display(),
        cross.display()
    ));
    pkilint("EXTERNAL-CROSS-CA", &cross);
    // The partner's subject, key and key identifier are kept.
    let partner_ski = ok(&format!(
        "openssl x509 -in {d}/partner.pem -noout -ext subjectKeyIdentifier"
    ));
    let cross_ski = ok(&format!(
        "openssl x509 -in {} -noout -ext subjectKeyIdentifier",
        cross.display()
    ));
    assert_eq!(partner_ski, cross_ski);
    let subject = |f: &str| {
        ok(&format!(
            "openssl x509 -in {f} -noout -subject -nameopt RFC2253"
        ))
    };
    assert_eq!(
        subject(&format!("{d}/partner.pem")),
        subject(cross.to_str().unwrap())
    );

    // 4. A CRL on the same rehearsal HSM: the shipped crl-issuance.toml beside the root certificate
    // it names, so one token carries the root through every later ceremony of issue 11.
    let crl_dir = env.dir.path().join("crl-inputs");
    std::fs::create_dir_all(&crl_dir).unwrap();
    std::fs::copy(&root_pem, crl_dir.join("example-root-quorum-2026.pem")).unwrap();
    let crl_script = crl_dir.join("crl-issuance.toml");
    std::fs::copy(
        root().join("ceremony-scripts/crl-issuance.toml"),
        &crl_script,
    )
    .unwrap();
    let (out, bundle) = env.rehearse(crl_script.to_str().unwrap(), "crl", None);
    assert!(out.status.success(), "{}", text(&out));
    verify(&bundle);
    let crl = bundle.join("artifacts/example-root-quorum-2026-crl-1.crl.pem");
    // openssl 3.0 prints its verdict on stderr.
    let checked = ok(&format!(
        "openssl crl -in {} -CAfile {} -noout 2>&1",
        crl.display(),
        root_pem.display()
    ));
    assert!(checked.contains("verify OK"), "{checked}");
}

/// The sub-CA step killed at every point it passes (a dry run lists them): verify says INCOMPLETE,
/// `keyrite resume` (the quorum's cards presented again) finishes with exactly one certificate on
/// the record, and openssl accepts it under the root. A TBS presented before the kill is never
/// signed under its old serial: every serial the log presents is new.
#[test]
fn a_sub_ca_step_killed_at_any_point_is_resumed_to_one_verified_certificate() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let dir = env.dir.path().to_path_buf();
    let (out, root_bundle) = env.rehearse("root-ca-quorum.toml", "root", None);
    assert!(out.status.success(), "{}", text(&out));
    let root_pem = root_bundle.join("artifacts/example-root-quorum-2026.pem");
    let d = dir.display();
    ok(&format!(
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout {d}/sub.key \
         -out {d}/sub.csr -subj '/C=DE/O=Example Trust Services GmbH/CN=Example Issuing CA 2026'"
    ));
    let csr = dir.join("sub.csr");
    let step = "sign-issuing-ca";
    let attach = format!("{step}={}", csr.display());
    let (dry, _) = env.rehearse_full(
        "sub-ca-signing.toml",
        "dry",
        &[("KEYRITE_TEST_KILL_AT", "list")],
        &["--attach", &attach],
    );
    assert!(dry.status.success(), "{}", text(&dry));
    let points: Vec<String> = text(&dry)
        .lines()
        .filter_map(|l| l.split("keyrite test hook: kill point ").nth(1))
        .filter(|p| p.starts_with(&format!("{step}:")))
        .map(str::to_string)
        .collect();
    for want in ["before-sign", "after-sign", "before-artifact_written"] {
        assert!(
            points.iter().any(|p| p.contains(want)),
            "{want} missing from {points:?}"
        );
    }
    let mut adopted = 0;
    for (i, point) in points.iter().enumerate() {
        let vars = [("KEYRITE_TEST_KILL_AT", point.as_str())];
        let (killed, bundle) = env.rehearse_full(
            "sub-ca-signing.toml",
            &format!("k{i}"),
            &vars,
            &["--attach", &attach],
        );
        assert!(
            !killed.status.success() && text(&killed).contains("killed here"),
            "{point}: the hook did not fire: {}",
            text(&killed)
        );
        let v = common::keyrite(&["verify", bundle.to_str().unwrap()]);
        assert_eq!(v.status.code(), Some(6), "{point}: {}", text(&v));
        let attach = format!("{step}={}", csr.display());
        let resumed = env.resume(&bundle, &["--attach", &attach], &[]);
        assert!(resumed.status.success(), "{point}: {}", text(&resumed));
        verify(&bundle);
        let log = Env::log(&bundle);
        let of = |kind: &str| -> Vec<&serde_json::Value> {
            log.iter().filter(|e| e["event"]["kind"] == kind).collect()
        };
        assert_eq!(of("ca_certificate_signed").len(), 1, "{point}");
        let serials: Vec<String> = of("certificate_presented")
            .iter()
            .map(|e| e["event"]["serial"].to_string())
            .collect();
        let mut unique = serials.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            serials.len(),
            "{point}: a serial reused: {serials:?}"
        );
        // Once the certificate file was bound to the log, resume adopts it: the certificate on
        // the record is the one presented (and confirmed) before the kill.
        let signed = &of("ca_certificate_signed")[0]["event"];
        if of("hsm_intent").iter().any(|e| {
            e["event"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("adopted from the interrupted run"))
        }) {
            adopted += 1;
            assert_eq!(
                signed["serial"],
                of("certificate_presented")[0]["event"]["serial"],
                "{point}"
            );
        }
        let sub = bundle.join("artifacts/example-issuing-ca-2026.pem");
        ok(&format!(
            "openssl verify -x509_strict -CAfile {} {}",
            root_pem.display(),
            sub.display()
        ));
    }
    // Killed once the certificate was saved (before its record, before the input's copy, before
    // the chain): adopted. Only a signature still in memory at the kill is made again.
    assert!(adopted >= 3, "{adopted} adopted of {points:?}");
    println!(
        "sub-CA step: {} kill points, each resumed to one verified certificate ({adopted} adopted)",
        points.len()
    );
}

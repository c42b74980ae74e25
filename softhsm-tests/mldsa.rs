//! Post-quantum roots (issue 16): ML-DSA keys generated and used in a throw-away Kryoptic PQC token
//! (softhsm-tests/backends/build-kryoptic-pqc.sh), rehearsed with `keyrite rehearse`. Every bundle
//! passes `keyrite verify`; every certificate passes OpenSSL 3.5's `verify -check_ss_sig` (the static
//! openssl the same build makes; Debian's 3.0 cannot read ML-DSA) and pkilint's `lint_pkix_cert` at
//! WARNING (CA/B Forum rules do not allow ML-DSA); the CRL passes OpenSSL 3.5's `crl -verify` and
//! `lint_crl -p PKIX`. One
//! flipped signature bit in a certificate or a report signature fails keyrite verify and OpenSSL.
//! Outside CI a missing Kryoptic PQC build skips with a message; with KEYRITE_REQUIRE_EXTERNAL=1
//! (run-all.sh) it fails.

mod common;

use common::quorum::{verify, Env};
use common::{ok, report, root, sh, text};
use std::path::{Path, PathBuf};

const ROOT: &str = "example-root-mldsa-2026";

/// The Kryoptic PQC module and OpenSSL 3.5, from run-all.sh's variables or the build cache.
struct Pqc {
    openssl: String,
    vars: Vec<(&'static str, String)>,
}

fn pqc() -> Option<Pqc> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_default()
        .join("keyrite/kryoptic-pqc");
    let module = std::env::var("KEYRITE_KRYOPTIC_PQC_MODULE").unwrap_or_else(|_| {
        cache
            .join("libkryoptic_pkcs11-1.5.4-pqc-openssl-3.5.5.so")
            .display()
            .to_string()
    });
    let openssl = std::env::var("KEYRITE_OPENSSL_35")
        .unwrap_or_else(|_| cache.join("openssl-3.5.5").display().to_string());
    if !Path::new(&module).is_file() || !Path::new(&openssl).is_file() {
        assert!(
            std::env::var_os("KEYRITE_REQUIRE_EXTERNAL").is_none(),
            "the Kryoptic PQC module ({module}) and OpenSSL 3.5 ({openssl}) are required in CI: \
             run softhsm-tests/setup.sh"
        );
        eprintln!(
            "skipping: Kryoptic with ML-DSA is not built ({module}); \
             bash softhsm-tests/backends/build-kryoptic-pqc.sh builds it"
        );
        return None;
    }
    Some(Pqc {
        openssl,
        vars: vec![("KEYRITE_KRYOPTIC_PQC_MODULE", module)],
    })
}

fn rehearse(
    env: &mut Env,
    p: &Pqc,
    script: &str,
    name: &str,
    attach: Option<(&str, &Path)>,
) -> PathBuf {
    let vars: Vec<(&str, &str)> = p.vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (out, bundle) = match attach {
        Some((step, file)) => {
            let attach = format!("{step}={}", file.display());
            env.rehearse_full(script, name, &vars, &["--attach", &attach])
        }
        None => env.rehearse_full(script, name, &vars, &[]),
    };
    assert!(out.status.success(), "{script}: {}", text(&out));
    verify(&bundle);
    bundle
}

/// OpenSSL 3.5 accepts `cert` issued by `ca` (for a root, its own self-signature too), and pkilint's
/// PKIX linter finds nothing at WARNING.
fn outside_checks(p: &Pqc, ca: &Path, cert: &Path) {
    let said = ok(&format!(
        "{} verify -x509_strict -check_ss_sig -CAfile {} {}",
        p.openssl,
        ca.display(),
        cert.display()
    ));
    assert!(said.contains(": OK"), "{said}");
    let lint = root().join(".venv-pkilint/bin/lint_pkix_cert");
    if lint.exists() || std::env::var_os("KEYRITE_REQUIRE_EXTERNAL").is_some() {
        ok(&format!(
            "{} lint -s WARNING {}",
            lint.display(),
            cert.display()
        ));
    }
}

/// A copy of a shipped script for the ML-DSA root: its key, token, cards and split.
fn for_mldsa_root(env: &Env, name: &str, algorithm: &str) -> String {
    let text = std::fs::read_to_string(root().join("ceremony-scripts").join(name)).unwrap();
    let text = text
        .replace("example-root-quorum-2026", ROOT)
        .replace(
            "algorithm = \"P-256\"",
            &format!("algorithm = \"{algorithm}\""),
        )
        .replace("EXAMPLE-ROOT-QUORUM-2026", "EXAMPLE-ROOT-MLDSA-2026")
        .replace("example-quorum-hsm", "example-mldsa-hsm")
        .replace("example-custodian-card-", "example-mldsa-custodian-card-");
    let path = env.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// `pem_file` with one bit flipped 100 bytes before the end of its DER: inside the signature BIT
/// STRING, which ends the certificate (an ML-DSA-65 signature is 3309 bytes).
fn flip_signature_bit(pem_file: &Path, out: &Path) {
    use base64ct::{Base64, Encoding};
    let pem = std::fs::read_to_string(pem_file).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut der = Base64::decode_vec(&body).unwrap();
    let at = der.len() - 100;
    der[at] ^= 0x01;
    let lines: Vec<String> = Base64::encode_string(&der)
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    );
    std::fs::write(out, pem).unwrap();
}

/// The shipped ML-DSA-65 root ceremony with its 2-of-4 quorum split, then a subordinate CA (an
/// openssl RSA-3072 request) and a CRL signed by the ML-DSA root after activation by two cards; a
/// flipped signature bit in the root certificate or in a report signature is caught.
#[test]
fn mldsa65_root_with_quorum_then_a_sub_ca_and_a_crl_and_tampering_is_caught() {
    let Some(p) = pqc() else { return };
    let Some(mut env) = Env::new() else { return };
    let dir = env.dir.path().to_path_buf();
    let bundle = rehearse(&mut env, &p, "root-ca-mldsa.toml", "root", None);
    let r = report(&bundle);
    assert_eq!(r["keys"][0]["algorithm"], "ML-DSA-65");
    assert_eq!(r["keys"][0]["generated_in_hsm"], true);
    let pem = bundle.join(format!("artifacts/{ROOT}.pem"));
    outside_checks(&p, &pem, &pem);
    let text_form = ok(&format!(
        "{} x509 -in {} -noout -text",
        p.openssl,
        pem.display()
    ));
    assert!(
        text_form.contains("Signature Algorithm: ML-DSA-65"),
        "{text_form}"
    );
    assert!(
        text_form.contains("Public Key Algorithm: ML-DSA-65"),
        "{text_form}"
    );
    // The key hash is the SHA-256 of the SPKI as OpenSSL 3.5 encodes it.
    let hash = ok(&format!(
        "{o} x509 -in {} -noout -pubkey | {o} pkey -pubin -outform DER | sha256sum",
        pem.display(),
        o = p.openssl
    ));
    assert_eq!(
        hash.split_whitespace().next(),
        r["keys"][0]["key_hash"].as_str()
    );
    assert_eq!(r["quorum"]["threshold"], 2);
    assert_eq!(r["quorum"]["total"], 4);

    // A sub-CA from an openssl request, signed by the ML-DSA root after quorum activation.
    let d = dir.display();
    ok(&format!(
        "openssl req -new -newkey rsa:3072 -nodes -keyout {d}/sub.key -out {d}/sub.csr \
         -subj '/C=DE/O=Example Trust Services GmbH/CN=Example Issuing CA 2026'"
    ));
    let script = for_mldsa_root(&env, "sub-ca-signing.toml", "ML-DSA-65");
    let csr = dir.join("sub.csr");
    let sub = rehearse(
        &mut env,
        &p,
        &script,
        "sub",
        Some(("sign-issuing-ca", &csr)),
    );
    let sub_pem = sub.join("artifacts/example-issuing-ca-2026.pem");
    outside_checks(&p, &pem, &sub_pem);
    assert_eq!(
        report(&sub)["ca_certificates"][0]["signature_algorithm"],
        "ML-DSA-65"
    );

    // A sub-CA with an ML-DSA-65 key of its own (an OpenSSL 3.5 request, whose ML-DSA signature
    // keyrite checks with the ml-dsa crate); the same request with a flipped signature bit is refused.
    ok(&format!(
        "{} req -config /etc/ssl/openssl.cnf -new -newkey ml-dsa-65 -nodes -keyout {d}/pq.key \
         -out {d}/pq.csr -outform DER -subj '/C=DE/O=Example Trust Services GmbH/CN=Example PQC Issuing CA 2026'",
        p.openssl
    ));
    let pq_csr = dir.join("pq.csr");
    let pq = rehearse(
        &mut env,
        &p,
        &script,
        "sub-pq",
        Some(("sign-issuing-ca", &pq_csr)),
    );
    let pq_pem = pq.join("artifacts/example-issuing-ca-2026.pem");
    outside_checks(&p, &pem, &pq_pem);
    assert_eq!(
        report(&pq)["ca_certificates"][0]["signature_algorithm"],
        "ML-DSA-65"
    );
    let mut bytes = std::fs::read(&pq_csr).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01;
    let bad_csr = dir.join("pq-bad.csr");
    std::fs::write(&bad_csr, bytes).unwrap();
    let vars: Vec<(&str, &str)> = p.vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let attach = format!("sign-issuing-ca={}", bad_csr.display());
    let (out, bad) = env.rehearse_full(&script, "sub-pq-bad", &vars, &["--attach", &attach]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("does not verify"), "{}", text(&out));
    assert!(!bad.exists(), "no bundle for a refused request");

    // A CRL signed by the ML-DSA root, next to a copy of the root certificate as the script wants.
    std::fs::copy(&pem, dir.join(format!("{ROOT}.pem"))).unwrap();
    let script = for_mldsa_root(&env, "crl-issuance.toml", "ML-DSA-65");
    let crl = rehearse(&mut env, &p, &script, "crl", None);
    let crl_pem = crl.join(format!("artifacts/{ROOT}-crl-1.crl.pem"));
    let said = sh(&format!(
        "{} crl -in {} -CAfile {} -noout",
        p.openssl,
        crl_pem.display(),
        pem.display()
    ));
    assert!(text(&said).contains("verify OK"), "{}", text(&said));
    // pkilint's CRL linter with the PKIX profile (its BR profile, like the CA/B certificate lints,
    // is not for ML-DSA): a root's ARL, clean at WARNING.
    let lint = root().join(".venv-pkilint/bin/lint_crl");
    if lint.exists() || std::env::var_os("KEYRITE_REQUIRE_EXTERNAL").is_some() {
        let found = ok(&format!(
            "{} lint -t ARL -p PKIX -s WARNING {}",
            lint.display(),
            crl_pem.display()
        ));
        assert_eq!(found.trim(), "", "lint_crl findings");
    }

    // Activation by two cards and a test signature (key-activation.toml, which names no ML-DSA key
    // of its own: the folder's Kryoptic token is found again); OpenSSL 3.5 checks the raw signature.
    let script = for_mldsa_root(&env, "key-activation.toml", "ML-DSA-65");
    let act = rehearse(&mut env, &p, &script, "activation", None);
    let log = std::fs::read_to_string(act.join("audit.jsonl")).unwrap();
    let signed: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"]["kind"] == "test_message_signed")
        .map(|e| e["event"].clone())
        .expect("a test_message_signed entry");
    let message = signed["message"].as_str().unwrap();
    let sig_hex = signed["signature"].as_str().unwrap();
    std::fs::write(dir.join("msg"), message).unwrap();
    std::fs::write(dir.join("msg.sig"), hex_decode(sig_hex)).unwrap();
    ok(&format!(
        "{} pkeyutl -verify -pubin -inkey {} -rawin -in {d}/msg -sigfile {d}/msg.sig",
        p.openssl,
        bundle.join(format!("artifacts/{ROOT}.pub.pem")).display()
    ));

    // One flipped bit in the root's signature: keyrite verify and OpenSSL 3.5 both refuse it.
    let copy = dir.join("tampered-cert");
    ok(&format!("cp -r {} {}", bundle.display(), copy.display()));
    let bad = copy.join(format!("artifacts/{ROOT}.pem"));
    flip_signature_bit(&pem, &bad);
    let v = common::keyrite(&["verify", copy.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(5), "{}", text(&v));
    let o = sh(&format!(
        "{} verify -check_ss_sig -CAfile {} {}",
        p.openssl,
        bad.display(),
        bad.display()
    ));
    assert!(
        !o.status.success(),
        "openssl accepted a flipped signature bit: {}",
        text(&o)
    );

    // One flipped bit in a report signature (a personal card's CMS over report.json).
    let copy = dir.join("tampered-report");
    ok(&format!("cp -r {} {}", bundle.display(), copy.display()));
    let sig = copy.join("signatures/maria-keller.report.json.p7s");
    let mut bytes = std::fs::read(&sig).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x01;
    std::fs::write(&sig, &bytes).unwrap();
    let v = common::keyrite(&["verify", copy.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(5), "{}", text(&v));
    let o = sh(&format!(
        "{} cms -verify -binary -inform DER -in {} -content {} -CAfile {} -purpose any -out /dev/null",
        p.openssl,
        sig.display(),
        copy.join("report.json").display(),
        copy.join("signatures/signers-ca.pem").display()
    ));
    assert!(
        !o.status.success(),
        "openssl accepted a flipped report signature bit: {}",
        text(&o)
    );
    let o = sh(&format!(
        "{} cms -verify -binary -inform DER -in {} -content {} -CAfile {} -purpose any -out /dev/null",
        p.openssl,
        bundle.join("signatures/maria-keller.report.json.p7s").display(),
        bundle.join("report.json").display(),
        bundle.join("signatures/signers-ca.pem").display()
    ));
    assert!(
        o.status.success(),
        "the untouched signature verifies: {}",
        text(&o)
    );
}

/// An ML-DSA-87 root (the shipped script with the larger parameter set).
#[test]
fn an_mldsa87_root_verifies_with_keyrite_openssl_and_pkilint() {
    let Some(p) = pqc() else { return };
    let Some(mut env) = Env::new() else { return };
    let text87 = std::fs::read_to_string(root().join("ceremony-scripts/root-ca-mldsa.toml"))
        .unwrap()
        .replace("ML-DSA-65", "ML-DSA-87");
    let script = env.dir.path().join("root-ca-mldsa87.toml");
    std::fs::write(&script, text87).unwrap();
    let bundle = rehearse(&mut env, &p, script.to_str().unwrap(), "root87", None);
    let r = report(&bundle);
    assert_eq!(r["keys"][0]["algorithm"], "ML-DSA-87");
    assert_eq!(r["keys"][0]["bits"], 2592 * 8);
    let pem = bundle.join(format!("artifacts/{ROOT}.pem"));
    outside_checks(&p, &pem, &pem);
    let der = ok(&format!(
        "{} x509 -in {} -noout -text",
        p.openssl,
        pem.display()
    ));
    assert!(der.contains("Signature Algorithm: ML-DSA-87"), "{der}");
}

/// The same ML-DSA script on a SoftHSM2 token (--module): refused at activation, before any key,
/// naming the missing mechanism and a token that has it.
#[test]
fn a_token_without_mldsa_is_refused_at_activation_naming_the_mechanism() {
    let Some(mut env) = Env::new() else { return };
    let (out, bundle) = env.rehearse_full(
        "root-ca-mldsa.toml",
        "softhsm",
        &[],
        &["--module", common::quorum::SOFTHSM],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("CKM_ML_DSA_KEY_PAIR_GEN"), "{said}");
    assert!(said.contains("Kryoptic"), "{said}");
    let log = std::fs::read_to_string(bundle.join("audit.jsonl")).unwrap();
    assert!(!log.contains("key_generated"), "{log}");
}

/// A power cut right after the ML-DSA key was generated: `keyrite resume --env` finds the folder's
/// Kryoptic token again, adopts the key instead of generating a second one, and finishes; the root
/// passes keyrite verify and OpenSSL 3.5.
#[test]
fn an_interrupted_mldsa_key_generation_resumes_on_the_same_kryoptic_token() {
    let Some(p) = pqc() else { return };
    let Some(mut env) = Env::new() else { return };
    let mut vars: Vec<(&str, &str)> = p.vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    vars.push((
        "KEYRITE_TEST_KILL_AT",
        "generate-root-key:after-generate_key_pair",
    ));
    let (out, bundle) = env.rehearse_full("root-ca-mldsa.toml", "killed", &vars, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("killed here"), "{}", text(&out));
    let vars: Vec<(&str, &str)> = p.vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resumed = env.resume(&bundle, &[], &vars);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(
        text(&resumed).contains("it is adopted, not generated again"),
        "{}",
        text(&resumed)
    );
    verify(&bundle);
    let pem = bundle.join(format!("artifacts/{ROOT}.pem"));
    outside_checks(&p, &pem, &pem);
}

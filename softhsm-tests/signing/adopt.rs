//! `keyrite resume` after a sub-CA or cross-certificate step was killed once its certificate was
//! saved (bound to the log, or saved with its `artifact_written` lost as a power cut would lose
//! it; driver/actions/certs_adopt.rs): the certificate is adopted, never signed again, and every
//! reason not to adopt it is refused by name with what to do. Each refusal is checked for its exit
//! code, its words, that nothing was signed again (the log's signing intents and presented serials)
//! and what `keyrite verify` says of the bundle; the refusals the room can mend end in a resume that
//! adopts the original certificate (openssl verifies it under the root).

use super::common::quorum::{verify, Env};
use super::common::{keyrite, ok, text};
use keyrite::evidence::log::AuditEntry;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A certificate-issuing step of a shipped script, and the certificate file it writes.
struct Signing {
    script: &'static str,
    step: &'static str,
    cert: &'static str,
}

const SUB: Signing = Signing {
    script: "sub-ca-signing.toml",
    step: "sign-issuing-ca",
    cert: "artifacts/example-issuing-ca-2026.pem",
};
const CROSS: Signing = Signing {
    script: "cross-certificate.toml",
    step: "cross-sign",
    cert: "artifacts/example-cross-partner-root-2026.pem",
};
const STEP: &str = SUB.step;
const CERT: &str = SUB.cert;
/// The certificate's `artifact_written` is logged; the request's copy is on disk, not yet logged.
const BOUND: &str = "before-artifact_written#2";
/// The certificate is saved, its `artifact_written` not yet logged.
const SAVED: &str = "before-artifact_written";

impl Signing {
    fn attach(&self, input: &Path) -> String {
        format!("{}={}", self.step, input.display())
    }

    /// The step run from `input` and killed at `point` (of this step).
    fn killed_at(&self, env: &mut Env, name: &str, input: &Path, point: &str) -> PathBuf {
        let at = format!("{}:{point}", self.step);
        let bundle = env.killed(self.script, name, &at, &["--attach", &self.attach(input)]);
        assert!(bundle.join(self.cert).exists(), "{at}");
        bundle
    }

    /// Is the certificate bound by an `artifact_written` in the log?
    fn bound(&self, bundle: &Path) -> bool {
        Env::log(bundle)
            .iter()
            .any(|e| e["event"]["kind"] == "artifact_written" && e["event"]["path"] == self.cert)
    }
}

fn attach(csr: &Path) -> String {
    SUB.attach(csr)
}

fn sha256sum(file: &Path) -> String {
    ok(&format!("sha256sum {}", file.display()))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A sub-CA signing from `csr` killed once its certificate is bound to the log.
fn killed_after_binding(env: &mut Env, name: &str, csr: &Path) -> PathBuf {
    SUB.killed_at(env, name, csr, BOUND)
}

/// What the HSM was asked to sign, as the log tells: the signing intents that are not adoptions,
/// and the serials presented to the room.
fn signing(bundle: &Path) -> (usize, Vec<String>) {
    let log = Env::log(bundle);
    let intents = log
        .iter()
        .filter(|e| e["event"]["kind"] == "hsm_intent")
        .filter(|e| e["event"]["operation"] == "sign_ca_certificate")
        .filter(|e| {
            !e["event"]["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("adopted")
        })
        .count();
    let serials = log
        .iter()
        .filter(|e| e["event"]["kind"] == "certificate_presented")
        .map(|e| e["event"]["serial"].to_string())
        .collect();
    (intents, serials)
}

/// `keyrite resume` refused before it reopened the bundle: exit 2, every one of `says` in its
/// words, the log byte for byte as the kill left it (nothing signed, nothing written), and
/// `keyrite verify` exits `verdict`.
fn refused_before_reopening(env: &mut Env, bundle: &Path, csr: &Path, says: &[&str], verdict: i32) {
    let log_before = std::fs::read(bundle.join("audit.jsonl")).unwrap();
    let out = env.resume(bundle, &["--attach", &attach(csr)], &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    for want in says {
        assert!(said.contains(want), "«{want}» missing from:\n{said}");
    }
    assert_eq!(
        std::fs::read(bundle.join("audit.jsonl")).unwrap(),
        log_before,
        "the refusal wrote to the log"
    );
    let v = keyrite(&["verify", bundle.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(verdict), "{}", text(&v));
}

/// The resume that adopts: one certificate on the record, the serial presented before the kill,
/// no second signing, openssl verifies it under the root and the bundle verifies.
fn adopted(env: &mut Env, bundle: &Path, csr: &Path, root_pem: &Path) {
    adopted_by(&SUB, env, bundle, csr, root_pem)
}

fn adopted_by(how: &Signing, env: &mut Env, bundle: &Path, csr: &Path, root_pem: &Path) {
    let saved = std::fs::read(bundle.join(how.cert)).unwrap();
    let (intents, serials) = signing(bundle);
    let out = env.resume(bundle, &["--attach", &how.attach(csr)], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("adopted"), "{}", text(&out));
    assert_eq!(signing(bundle), (intents, serials.clone()), "signed again");
    let log = Env::log(bundle);
    let issued: Vec<&Value> = log
        .iter()
        .filter(|e| e["event"]["kind"] == "ca_certificate_signed")
        .collect();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0]["event"]["serial"].to_string(), serials[0]);
    assert_eq!(
        issued[0]["event"]["input_sha256"].as_str(),
        Some(sha256sum(csr).as_str())
    );
    verify(bundle);
    assert_eq!(std::fs::read(bundle.join(how.cert)).unwrap(), saved);
    ok(&format!(
        "openssl verify -x509_strict -CAfile {} {}",
        root_pem.display(),
        bundle.join(how.cert).display()
    ));
}

/// The PEM with one base64 character of the signature changed: still a certificate, whose
/// signature no longer verifies.
fn flip_signature_byte(pem: &str) -> String {
    let end = pem.find("-----END").unwrap();
    let body = pem[..end].trim_end_matches(['\n', '=']);
    let at = body.len() - 8;
    let old = body.as_bytes()[at];
    let new = if old == b'A' { 'B' } else { 'A' };
    format!("{}{new}{}", &pem[..at], &pem[at + 1..])
}

/// Rewrite the log as a forger would: the certificate's `artifact_written` binds the file as it
/// is now, and every entry from there is chained again.
fn bind_as_is(bundle: &Path) {
    let bytes = std::fs::read(bundle.join(CERT)).unwrap();
    let sha = sha256sum(&bundle.join(CERT));
    let log = std::fs::read_to_string(bundle.join("audit.jsonl")).unwrap();
    let mut prev: Option<String> = None;
    let mut out = String::new();
    for line in log.lines() {
        let mut e: AuditEntry = serde_json::from_str(line).unwrap();
        if e.event["kind"] == "artifact_written" && e.event["path"] == CERT {
            e.event["sha256"] = Value::from(sha.clone());
            e.event["size"] = Value::from(bytes.len());
            prev = Some(e.prev.clone());
        }
        if let Some(p) = &prev {
            e.prev = p.clone();
            e.hash = e.compute_hash();
            prev = Some(e.hash.clone());
        }
        out.push_str(&e.to_line());
        out.push('\n');
    }
    std::fs::write(bundle.join("audit.jsonl"), out).unwrap();
}

#[test]
fn resume_refuses_to_adopt_a_certificate_that_is_missing_altered_or_from_another_request() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let dir = env.dir.path().to_path_buf();
    let d = dir.display();
    let root_pem = quorum_root(&mut env);
    for name in ["sub", "other"] {
        ok(&format!(
            "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout \
             {d}/{name}.key -out {d}/{name}.csr \
             -subj '/C=DE/O=Example Trust Services GmbH/CN=Example Issuing CA 2026'"
        ));
    }
    let (csr, other) = (dir.join("sub.csr"), dir.join("other.csr"));

    // Another request at resume: refused by both hashes, the bundle stays INCOMPLETE, and the
    // same request then resumes to the certificate signed before the kill.
    let bundle = killed_after_binding(&mut env, "other-input", &csr);
    refused_before_reopening(
        &mut env,
        &bundle,
        &other,
        &[
            "was made from another input than the one given now",
            &sha256sum(&csr),
            &sha256sum(&other),
            &format!("--attach {STEP}=PATH"),
            "keyrite abort",
        ],
        6,
    );
    adopted(&mut env, &bundle, &csr, &root_pem);

    // The bound certificate deleted: refused, never signed again; put back, it is adopted.
    let bundle = killed_after_binding(&mut env, "missing", &csr);
    let saved = std::fs::read(bundle.join(CERT)).unwrap();
    std::fs::remove_file(bundle.join(CERT)).unwrap();
    refused_before_reopening(
        &mut env,
        &bundle,
        &csr,
        &[
            "is missing from the bundle",
            &sha256sum_bytes(&saved),
            "signing again would issue a second certificate",
            "put the file back",
            "keyrite abort",
        ],
        5,
    );
    std::fs::write(bundle.join(CERT), &saved).unwrap();
    adopted(&mut env, &bundle, &csr, &root_pem);

    // One byte of its signature changed: tampering, refused, and verify names the file.
    let bundle = killed_after_binding(&mut env, "altered", &csr);
    let pem = std::fs::read_to_string(bundle.join(CERT)).unwrap();
    std::fs::write(bundle.join(CERT), flip_signature_byte(&pem)).unwrap();
    let signed_before = signing(&bundle);
    refused_before_reopening(
        &mut env,
        &bundle,
        &csr,
        &[
            "is not the certificate the interrupted run saved",
            "tampering",
            "keyrite verify",
        ],
        5,
    );
    let v = keyrite(&["verify", bundle.to_str().unwrap()]);
    assert!(text(&v).contains(CERT), "{}", text(&v));

    // A forged log that binds the altered file: the step checks it under the issuer, refuses,
    // and the ceremony ends aborted on the record without a second signature.
    bind_as_is(&bundle);
    let out = env.resume(&bundle, &["--attach", &attach(&csr)], &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    for want in [
        "does not verify under the issuer",
        "nothing is signed again",
        "aborted",
    ] {
        assert!(said.contains(want), "«{want}» missing from:\n{said}");
    }
    assert_eq!(signing(&bundle), signed_before, "signed again");
    let log = Env::log(&bundle);
    assert!(log.iter().any(|e| e["event"]["kind"] == "step_failed"
        && e["event"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("does not verify under the issuer"))));
    assert!(!log
        .iter()
        .any(|e| e["event"]["kind"] == "ca_certificate_signed"));
    // The resumed run signed the forged log as it found it: verify passes the chain and tells the
    // ceremony ended aborted because the certificate did not verify.
    let v = keyrite(&["verify", bundle.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert!(
        text(&v).contains("ABORTED") && text(&v).contains("does not verify under the issuer"),
        "{}",
        text(&v)
    );
}

/// A power cut right after the certificate was saved and its `artifact_written` appended: the
/// log does not fsync that entry, so it is lost (here: the kill at the next point, then the log's
/// last line removed), while the certificate file (fsynced) and its signing intent remain. The
/// reopen keeps the file, and the step adopts it by the TBS hash the intent logged. Killed before
/// the `artifact_written` is appended at all, the same.
#[test]
fn a_certificate_saved_whose_record_a_power_cut_lost_is_adopted_not_signed_again() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let root_pem = quorum_root(&mut env);
    let d = env.dir.path().display().to_string();
    ok(&format!(
        "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {d}/sub.key \
         -out {d}/sub.csr -subj '/C=DE/O=Example Trust Services GmbH/CN=Example Issuing CA 2026'"
    ));
    let csr = env.dir.path().join("sub.csr");

    let bundle = SUB.killed_at(&mut env, "power-cut", &csr, BOUND);
    let log_path = bundle.join("audit.jsonl");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let last = lines.last().unwrap();
    assert!(
        last.contains("\"artifact_written\"") && last.contains(CERT),
        "the last entry is not the certificate's record: {last}"
    );
    let lost = lines[..lines.len() - 1].join("\n") + "\n";
    std::fs::write(&log_path, lost).unwrap();
    assert!(!SUB.bound(&bundle));
    adopted(&mut env, &bundle, &csr, &root_pem);
    assert!(SUB.bound(&bundle));

    let bundle = SUB.killed_at(&mut env, "unbound", &csr, SAVED);
    assert!(!SUB.bound(&bundle));
    adopted(&mut env, &bundle, &csr, &root_pem);
}

/// Issue 11's cross-certificate: the HSM signed it and keyrite saved it, then the kill fell before
/// its record (`artifact_written` not yet logged), or before the partner certificate's copy (the
/// certificate bound): resume adopts it both times, the HSM is not asked to sign again, and
/// openssl verifies the cross-certificate under the root.
#[test]
fn a_cross_certificate_signed_before_the_kill_is_adopted_not_signed_again() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let root_pem = quorum_root(&mut env);
    let d = env.dir.path().display().to_string();
    ok(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes \
         -keyout {d}/partner.key -out {d}/partner.pem -days 3650 \
         -subj '/C=FR/O=Partner Trust SA/CN=Partner Root CA 2026' \
         -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
    ));
    let partner = env.dir.path().join("partner.pem");
    for (name, point) in [("cross-unbound", SAVED), ("cross-bound", BOUND)] {
        let bundle = CROSS.killed_at(&mut env, name, &partner, point);
        assert_eq!(CROSS.bound(&bundle), point == BOUND, "{point}");
        adopted_by(&CROSS, &mut env, &bundle, &partner, &root_pem);
        let cross = bundle.join(CROSS.cert);
        // The partner's subject is kept.
        let subject = |f: &Path| {
            ok(&format!(
                "openssl x509 -in {} -noout -subject -nameopt RFC2253",
                f.display()
            ))
        };
        assert_eq!(subject(&partner), subject(&cross), "{point}");
    }
}

/// The quorum root ceremony the signing steps issue under; its certificate's path.
fn quorum_root(env: &mut Env) -> PathBuf {
    let (out, root_bundle) = env.rehearse("root-ca-quorum.toml", "root", None);
    assert!(out.status.success(), "{}", text(&out));
    root_bundle.join("artifacts/example-root-quorum-2026.pem")
}

fn sha256sum_bytes(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

//! Personal cards and signatures, end to end: one rehearsal of the shipped very-high script (every
//! participant carded), then openssl checks every report signature and signed confirmation, and
//! tampered copies of the bundle make `keyrite verify` fail, naming the file or the missing role.

mod common;

use common::{have, keyrite, sh, text};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const P256: &str = "ceremony-scripts/root-ca-p256.toml";

/// openssl and SoftHSM are required here; in CI (KEYRITE_REQUIRE_EXTERNAL=1) their absence fails.
fn have_tools() -> bool {
    let missing: Vec<&str> = ["openssl", "sha256sum"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    let softhsm = [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    if missing.is_empty() && softhsm {
        return true;
    }
    assert!(
        std::env::var_os("KEYRITE_REQUIRE_EXTERNAL").is_none(),
        "required in CI: {missing:?}, SoftHSM2 present: {softhsm}"
    );
    eprintln!("skipping: missing {missing:?} or SoftHSM2");
    false
}

fn verify(out: &Path) -> Output {
    keyrite(&["verify", out.to_str().unwrap()])
}

/// A fresh copy of the bundle for one tamper case.
fn copy(out: &Path, to: &Path) -> PathBuf {
    let status = Command::new("cp")
        .arg("-r")
        .arg(out)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
    to.to_path_buf()
}

/// The FAIL lines of a verify table.
fn failures(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .map(str::to_string)
        .collect()
}

fn key_hash_of_pem_cert(pem_path: &Path) -> String {
    let o = sh(&format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum",
        pem_path.display()
    ));
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn every_signature_verifies_with_openssl_and_tampering_is_named() {
    if !have_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (out, env) = (dir.path().join("out"), dir.path().join("env"));
    let r = keyrite(&[
        "rehearse",
        P256,
        "--auto",
        "--out",
        out.to_str().unwrap(),
        "--env",
        env.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", text(&r));
    let v = verify(&out);
    assert!(v.status.success(), "{}", text(&v));

    // The rehearsal CA says what it is; it is kept in the env folder and copied into the bundle.
    let ca = env.join("participants-ca.pem");
    let subject = sh(&format!(
        "openssl x509 -in '{}' -noout -subject",
        ca.display()
    ));
    assert!(String::from_utf8_lossy(&subject.stdout).contains("REHEARSAL participants CA"));
    assert_eq!(
        std::fs::read(&ca).unwrap(),
        std::fs::read(out.join("signatures/signers-ca.pem")).unwrap()
    );

    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let cards = report["personal_cards"].as_array().unwrap();
    assert_eq!(
        cards.len(),
        6,
        "every participant of the shipped script has a card"
    );
    let documents: Vec<&str> = ["report.json", "report.pdf"]
        .into_iter()
        .filter(|d| out.join(d).exists())
        .collect();
    for card in cards {
        let person = card["person"].as_str().unwrap();
        let stem = person.to_lowercase().replace(' ', "-");
        // The card certificate: key hash as recorded, usable for signing.
        let cert = dir.path().join(format!("{stem}.pem"));
        std::fs::write(&cert, card["certificate_pem"].as_str().unwrap()).unwrap();
        assert_eq!(
            key_hash_of_pem_cert(&cert),
            card["key_hash"].as_str().unwrap()
        );
        let ku = sh(&format!(
            "openssl x509 -in '{}' -noout -ext keyUsage",
            cert.display()
        ));
        assert!(
            String::from_utf8_lossy(&ku.stdout).contains("Digital Signature, Non Repudiation"),
            "{}",
            text(&ku)
        );
        // Very-high: every carded participant signs every report document.
        for doc in &documents {
            let p7s = out.join(format!("signatures/{stem}.{doc}.p7s"));
            let o = sh(&format!(
                "openssl cms -verify -binary -inform DER -in '{}' -content '{}' -CAfile '{}' -purpose any -out /dev/null",
                p7s.display(),
                out.join(doc).display(),
                ca.display()
            ));
            assert!(o.status.success(), "{}: {}", p7s.display(), text(&o));
            // The certificate inside the signature is this person's card.
            let inside = dir.path().join(format!("{stem}.{doc}.signer.pem"));
            let o = sh(&format!(
                "openssl pkcs7 -inform DER -in '{}' -print_certs -out '{}'",
                p7s.display(),
                inside.display()
            ));
            assert!(o.status.success(), "{}", text(&o));
            assert_eq!(
                key_hash_of_pem_cert(&inside),
                card["key_hash"].as_str().unwrap()
            );
        }
    }

    // Every signed confirmation verifies with openssl over the exact message bytes in the log.
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    let mut signed = 0;
    for line in log.lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        if entry["event"]["kind"] != "confirmation_signed" {
            continue;
        }
        let e = &entry["event"];
        let stem = e["person"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .replace(' ', "-");
        let msg = dir.path().join("msg");
        let sig = dir.path().join("sig");
        std::fs::write(&msg, e["message"].as_str().unwrap()).unwrap();
        std::fs::write(&sig, hex::decode(e["signature"].as_str().unwrap()).unwrap()).unwrap();
        let o = sh(&format!(
            "openssl x509 -in '{}' -pubkey -noout > '{}/pub.pem' && openssl dgst -sha256 -verify '{}/pub.pem' -signature '{}' '{}'",
            dir.path().join(format!("{stem}.pem")).display(),
            dir.path().display(),
            dir.path().display(),
            sig.display(),
            msg.display()
        ));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Verified OK"),
            "{}",
            text(&o)
        );
        signed += 1;
    }
    assert_eq!(
        signed,
        report["signed_confirmations"].as_array().unwrap().len()
    );
    assert!(
        signed >= 9,
        "every step has at least one carded confirmation"
    );

    // Tamper 1: one byte of a report signature.
    let t = copy(&out, &dir.path().join("t1"));
    let p7s = t.join("signatures/sven-lindqvist.report.json.p7s");
    let mut bytes = std::fs::read(&p7s).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&p7s, bytes).unwrap();
    let o = verify(&t);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    let f = failures(&o);
    assert!(
        f.iter()
            .any(|l| l.contains("signatures/sven-lindqvist.report.json.p7s")),
        "{f:?}"
    );

    // Tamper 2: one byte of a log line.
    let t = copy(&out, &dir.path().join("t2"));
    let log_path = t.join("audit.jsonl");
    let mut bytes = std::fs::read(&log_path).unwrap();
    let third_line = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1)
        .unwrap()
        .0
        + 20;
    bytes[third_line] ^= 0x01;
    std::fs::write(&log_path, bytes).unwrap();
    let o = verify(&t);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        failures(&o).iter().any(|l| l.contains("audit.jsonl")),
        "{}",
        text(&o)
    );

    // Tamper 3: the security officer's signature is gone. After report_written a missing signature
    // of a carded signer is what a crash while signing leaves: INCOMPLETE (exit 6), named by role.
    let t = copy(&out, &dir.path().join("t3"));
    std::fs::remove_file(t.join("signatures/sven-lindqvist.report.json.p7s")).unwrap();
    let o = verify(&t);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.starts_with("INCOMPLETE")
                && l.contains("security-officer")
                && l.contains("Sven Lindqvist")),
        "{}",
        text(&o)
    );

    // Tamper 4: a signature by someone else's card under the security officer's name.
    let t = copy(&out, &dir.path().join("t4"));
    std::fs::copy(
        t.join("signatures/ines-moreau.report.json.p7s"),
        t.join("signatures/sven-lindqvist.report.json.p7s"),
    )
    .unwrap();
    let o = verify(&t);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(
        failures(&o)
            .iter()
            .any(|l| l.contains("sven-lindqvist.report.json.p7s")
                && l.contains("not Sven Lindqvist's")),
        "{}",
        text(&o)
    );
}

/// The durability order, seen from outside by strace, for any change that batches or moves
/// fsyncs (issue 15): every evidence file and its folder are fsynced after the file was created
/// and before the log entry that names it is written (`artifact_written`, `report_written`), and
/// every report signature and the signatures folder before keyrite exits.
#[test]
fn evidence_is_fsynced_before_the_log_names_it() {
    let Some(strace) = common::tool("strace") else {
        return;
    };
    if !have_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (out, trace) = (dir.path().join("out"), dir.path().join("strace.txt"));
    let run = Command::new(strace)
        .args([
            "-f",
            "-y",
            "-s",
            "4096",
            "-e",
            "trace=openat,fsync,write",
            "-o",
        ])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_keyrite"))
        .args([
            "rehearse",
            "softhsm-tests/bench/full-work.toml",
            "--auto",
            "--out",
        ])
        .arg(&out)
        .arg("--env")
        .arg(dir.path().join("env"))
        .current_dir(common::root())
        .env_remove("SOFTHSM2_CONF")
        .env_remove("KRYOPTIC_CONF")
        .env_remove("KEYRITE_REHEARSAL_DIR")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    assert!(verify(&out).status.success());
    let trace = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    // strace pads the result: "fsync(5</x>)     = 0".
    let returned = |call: &str| call.rsplit_once(')').map(|(_, r)| r.trim().to_string());
    // Where each fsync of a path returned 0: its own line, or the line that resumed it.
    let root = out.canonicalize().unwrap();
    let mut synced: Vec<(String, usize)> = Vec::new();
    let mut pending: std::collections::HashMap<&str, String> = Default::default();
    for (at, line) in lines.iter().enumerate() {
        // strace pads the pid column ("8475  fsync(").
        let (pid, call) = line.split_once(' ').unwrap();
        let call = call.trim_start();
        if let Some(rest) = call.strip_prefix("fsync(") {
            let path = rest.split_once('<').unwrap().1.split_once('>').unwrap().0;
            if rest.ends_with("<unfinished ...>") {
                pending.insert(pid, path.to_string());
            } else {
                assert_eq!(returned(rest), Some("= 0".to_string()), "{line}");
                synced.push((path.to_string(), at));
            }
        } else if call.starts_with("<... fsync resumed>") {
            assert_eq!(returned(call), Some("= 0".to_string()), "{line}");
            synced.push((pending.remove(pid).unwrap(), at));
        }
    }
    // The line where `path` was created: the first openat that returned a descriptor on it (its
    // own line, or "<... openat resumed>" when another thread's call came between).
    let created = |path: &Path| {
        let fd = format!("<{}>", path.display());
        lines
            .iter()
            .position(|l| l.contains("openat") && l.ends_with(&fd))
            .unwrap_or_else(|| panic!("{} is never created", path.display()))
    };
    // `file` and its folder are both fsynced after the file was created and before line `limit`.
    let durable_by = |file: &Path, limit: usize| {
        let made = created(file);
        for path in [file, file.parent().unwrap()] {
            let path = path.display().to_string();
            assert!(
                synced
                    .iter()
                    .any(|(p, at)| *p == path && made < *at && *at < limit),
                "{path} is not fsynced between line {} and line {} of the trace:\n{trace}",
                made + 1,
                limit + 1
            );
        }
    };
    let log_write = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains("audit.jsonl>, \"") && l.contains(needle))
            .unwrap_or_else(|| panic!("no log write with {needle}"))
    };
    for artifact in ["bench-full-root.pub.pem", "bench-full-root.pem"] {
        let named = log_write(&format!("artifacts/{artifact}"));
        durable_by(&root.join("artifacts").join(artifact), named);
    }
    let named = log_write("report_written");
    for file in ["report.json", "report.pdf"] {
        durable_by(&root.join(file), named);
    }
    let exit = lines.len();
    let signatures: Vec<PathBuf> = std::fs::read_dir(out.join("signatures"))
        .unwrap()
        .map(|e| root.join("signatures").join(e.unwrap().file_name()))
        .filter(|p| p.extension().is_some_and(|x| x == "p7s"))
        .collect();
    assert_eq!(signatures.len(), 6, "three signers, two documents each");
    for p7s in &signatures {
        durable_by(p7s, exit);
    }
}

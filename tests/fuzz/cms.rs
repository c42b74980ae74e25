//! The CMS reader: detached report signatures from a hostile bundle. Seeds are real signatures made
//! through the mock HSM by a card certificate issued by a card CA (P-256 and P-384). Whatever keyrite
//! accepts (signature and issuer both check out, as verify requires) must also be accepted by
//! `openssl cms -verify`: an outside oracle for every mutation that gets through.

use super::mutate::{fuzz, mutated, single_flip};
use der::{Decode, Encode, EncodePem};
use keyrite::hsm::mock::MockHsm;
use keyrite::hsm::Hsm;
use keyrite::script::KeyAlgorithm;
use keyrite::x509::card::{check_issued_by, issue, name, Subject};
use keyrite::x509::cms::{sign_detached, verify_detached};
use keyrite::x509::signer::HsmKey;
use proptest::prelude::*;
use secrecy::SecretString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::SystemTime;
use x509_cert::Certificate;

const CONTENT: &[u8] = b"{\n  \"report_format\": 1\n}\n";

struct Seeds {
    p7s: Arc<Vec<Vec<u8>>>,
    ca: Certificate,
    _dir: tempfile::TempDir,
    ca_pem: PathBuf,
    content: PathBuf,
}

fn key(hsm: &mut MockHsm, label: &str, algorithm: KeyAlgorithm) -> HsmKey {
    let info = hsm.generate_key_pair(label, algorithm).unwrap();
    HsmKey::new(label, algorithm, algorithm.default_hash(), info.spki_der)
}

fn subject<'a>(cn: &str, spki: &'a [u8], serial: &'a [u8], now: SystemTime) -> Subject<'a> {
    Subject {
        name: name("Fuzz Trust", cn).unwrap(),
        spki,
        serial,
        not_before: now,
        days: 30,
    }
}

fn seeds() -> Seeds {
    let mut hsm = MockHsm::new("1234");
    hsm.login(&SecretString::from("1234")).unwrap();
    let ca_key = key(&mut hsm, "ca", KeyAlgorithm::P256);
    let now = SystemTime::now();
    let ca_subject = subject("Fuzz card CA", &[], &[1, 2, 3, 4, 5, 6, 7, 8], now);
    let ca_der = issue(&mut hsm, &ca_key, None, ca_subject).unwrap();
    let ca = Certificate::from_der(&ca_der).unwrap();
    let mut p7s = Vec::new();
    let cards = [
        ("card-a", KeyAlgorithm::P256, [2, 1, 1, 1, 1, 1, 1, 1]),
        ("card-b", KeyAlgorithm::P384, [2, 2, 2, 2, 2, 2, 2, 2]),
    ];
    for (label, algorithm, serial) in cards {
        let card = key(&mut hsm, label, algorithm);
        let spki = card.spki().unwrap().to_der().unwrap();
        let card_subject = subject(label, &spki, &serial, now);
        let cert = issue(&mut hsm, &ca_key, Some(&ca), card_subject).unwrap();
        p7s.push(sign_detached(&mut hsm, &card, &cert, CONTENT, now).unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&ca_pem, ca.to_pem(der::pem::LineEnding::LF).unwrap()).unwrap();
    let content = dir.path().join("report.json");
    std::fs::write(&content, CONTENT).unwrap();
    Seeds {
        p7s: Arc::new(p7s),
        ca,
        _dir: dir,
        ca_pem,
        content,
    }
}

fn have_openssl() -> bool {
    let found = Command::new("openssl").arg("version").output().is_ok();
    assert!(
        found || std::env::var_os("KEYRITE_REQUIRE_EXTERNAL").is_none(),
        "openssl is required (KEYRITE_REQUIRE_EXTERNAL is set)"
    );
    found
}

/// `openssl cms -verify` on `p7s` over the content, trusting the card CA.
fn openssl_accepts(seeds: &Seeds, p7s: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let sig = dir.path().join("sig.p7s");
    std::fs::write(&sig, p7s).unwrap();
    let arg = |p: &Path| p.display().to_string();
    Command::new("openssl")
        .args([
            "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any",
        ])
        .args(["-in", &arg(&sig), "-content", &arg(&seeds.content)])
        .args(["-CAfile", &arg(&seeds.ca_pem), "-out", "/dev/null"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// keyrite's acceptance, as verify applies it: the signature checks out and the card CA issued the
/// signer's certificate.
fn keyrite_accepts(seeds: &Seeds, p7s: &[u8]) -> bool {
    verify_detached(p7s, CONTENT).is_ok_and(|cert| check_issued_by(&cert, &seeds.ca).is_ok())
}

/// A seed whose digestAlgorithms OID is changed (one bit in its last byte): `openssl cms -verify`
/// refuses it, and so must keyrite (issue 9 item 5).
fn assert_changed_digest_oid_refused(seeds: &Seeds) {
    let mut probe = seeds.p7s[0].clone();
    let sha256_oid = [
        0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
    ];
    let at = probe
        .windows(sha256_oid.len())
        .position(|w| w == sha256_oid)
        .expect("the seed lists SHA-256");
    probe[at + sha256_oid.len() - 1] ^= 0x08;
    assert!(
        !keyrite_accepts(seeds, &probe),
        "keyrite accepts a changed digestAlgorithms set"
    );
}

fn property(seeds: &Seeds, openssl: bool, p7s: &[u8]) -> Result<(), TestCaseError> {
    if keyrite_accepts(seeds, p7s) && openssl && !seeds.p7s.iter().any(|s| s == p7s) {
        prop_assert!(
            openssl_accepts(seeds, p7s),
            "keyrite accepts a signature that openssl cms -verify rejects"
        );
    }
    Ok(())
}

#[test]
fn fuzz_cms_reader() {
    let seeds = seeds();
    let openssl = have_openssl();
    for p7s in seeds.p7s.iter() {
        assert!(keyrite_accepts(&seeds, p7s));
        assert!(
            !openssl || openssl_accepts(&seeds, p7s),
            "openssl rejects a seed"
        );
    }
    assert_changed_digest_oid_refused(&seeds);
    fuzz("cms", mutated(seeds.p7s.clone()), |p7s| {
        property(&seeds, openssl, &p7s)
    });
}

#[test]
fn fuzz_cms_single_bit_flips() {
    let seeds = seeds();
    let openssl = have_openssl();
    assert_changed_digest_oid_refused(&seeds);
    fuzz(
        "cms-flip",
        single_flip(seeds.p7s.clone()),
        |(i, at, bit)| {
            let mut p7s = seeds.p7s[i].clone();
            p7s[at] ^= 1 << bit;
            property(&seeds, openssl, &p7s)
        },
    );
}

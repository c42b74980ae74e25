//! The shipped ceremonies through `keyrite run` on two PKCS#11 implementations besides SoftHSM2:
//! Kryoptic 1.5.4 (a Rust soft token built from crates.io by softhsm-tests/backends/build-kryoptic.sh)
//! and tpm2-pkcs11 over swtpm and tpm2-abrmd (softhsm-tests/backends/tpm2.sh). Tokens are made by
//! pkcs11-tool, not by keyrite; every bundle is checked with `keyrite verify`, every root with
//! `openssl verify -x509_strict` and openssl's key hash. Outside CI a missing backend skips with a
//! message; with KEYRITE_REQUIRE_EXTERNAL=1 (run-all.sh) it fails.

#[path = "backends/backup.rs"]
mod backup;
mod common;
#[path = "backends/fallbacks.rs"]
mod fallbacks;
#[path = "backends/rig.rs"]
mod rig;

use common::text;
use rig::{
    answers, card_labels, check_root, keep_cards, refused_with_no_key, report, run, script, verify,
    Backend, Kind, PIN,
};

/// The root ceremony (root-ca-p256.toml with `algorithm`) through `keyrite run`.
fn root_ceremony(kind: Kind, algorithm: &str) {
    let Some(b) = Backend::new(kind) else { return };
    b.token("example-root-hsm");
    let src = script("root-ca-p256.toml", &b, "example-root-hsm", |s| {
        s["keys"][0]["algorithm"] = algorithm.into();
    });
    let (out, result) = run(&b, "root", &src, &answers(&src, &[]));
    assert!(
        result.status.success(),
        "{kind:?} {algorithm}: {}",
        text(&result)
    );
    check_root(&out);
    let r = report(&out);
    assert_eq!(r["keys"][0]["algorithm"], algorithm, "{:#}", r["keys"]);
    let key = &r["keys"][0]["attributes"];
    for a in [
        "local",
        "never_extractable",
        "always_sensitive",
        "sensitive",
    ] {
        assert_eq!(key[a], true, "{kind:?} {algorithm}: {a} in {key}");
    }
    assert_eq!(key["extractable"], false, "{key}");
    eprintln!("{kind:?} root {algorithm}: passed");
}

#[test]
fn kryoptic_root_p256() {
    root_ceremony(Kind::Kryoptic, "P-256");
}

#[test]
fn kryoptic_root_p384() {
    root_ceremony(Kind::Kryoptic, "P-384");
}

#[test]
fn kryoptic_root_rsa3072() {
    root_ceremony(Kind::Kryoptic, "RSA-3072");
}

#[test]
fn tpm2_root_p256() {
    root_ceremony(Kind::Tpm2, "P-256");
}

#[test]
fn tpm2_root_p384() {
    root_ceremony(Kind::Tpm2, "P-384");
}

#[test]
fn tpm2_root_rsa3072() {
    root_ceremony(Kind::Tpm2, "RSA-3072");
}

/// RSA-4096 on the TPM (its maximum is 3072) is refused when the HSM is activated, before anyone
/// confirms the key generation, and nothing is generated.
#[test]
fn tpm2_refuses_rsa4096_at_activation() {
    let Some(b) = Backend::new(Kind::Tpm2) else {
        return;
    };
    b.token("example-root-hsm");
    let src = script("root-ca-p256.toml", &b, "example-root-hsm", |s| {
        s["keys"][0]["algorithm"] = "RSA-4096".into();
    });
    let (out, result) = run(&b, "root", &src, &answers(&src, &[]));
    let t = text(&result);
    assert!(!result.status.success(), "{t}");
    assert!(t.contains("RSA-4096") && t.contains("3072"), "{t}");
    let log = refused_with_no_key(&b, &out, "activate-hsm");
    assert!(
        !log.contains("\"step\":\"generate-root-key\""),
        "the key step never began: {log}"
    );
}

/// Split (root-ca-quorum.toml), activation, health check and reshare with retire, each through
/// `keyrite run`, the commitments pinned from the split's report as an auditor would.
/// With `sealed`, every card (old and new) is a sealed card: its share is an envelope file sealed to
/// a P-256 key-agreement key that keyrite generates on the card (docs/script-format.md, `medium`).
fn quorum_sequence(kind: Kind, sealed: bool) {
    let Some(b) = Backend::new(kind) else { return };
    let hsm = "example-quorum-hsm";
    b.token(hsm);
    let envelopes = tempfile::tempdir().unwrap();
    let envelope_dir = envelopes.path().display().to_string();
    let seal = |s: &mut toml::Table| {
        if !sealed {
            return;
        }
        let q = s["quorum"].as_table_mut().unwrap();
        q.insert("envelope_dir".into(), envelope_dir.clone().into());
        for card in q["cards"].as_array_mut().unwrap() {
            card.as_table_mut()
                .unwrap()
                .insert("medium".into(), "sealed".into());
        }
        if let Some(r) = q.get_mut("reshare").and_then(|r| r.as_table_mut()) {
            for card in r["cards"].as_array_mut().unwrap() {
                card.as_table_mut()
                    .unwrap()
                    .insert("medium".into(), "sealed".into());
            }
        }
    };
    let split = script("root-ca-quorum.toml", &b, hsm, |s| {
        keep_cards(s, 2);
        seal(s);
    });
    let split_t: toml::Table = toml::from_str(&split).unwrap();
    let old = card_labels(&split_t, false);
    for c in &old {
        b.token(c);
    }
    let (out, result) = run(&b, "split", &split, &answers(&split, &[]));
    assert!(result.status.success(), "{kind:?} split: {}", text(&result));
    check_root(&out);
    if sealed {
        let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
        assert_eq!(log.matches("\"kind\":\"share_sealed\"").count(), 2, "{log}");
        assert_eq!(std::fs::read_dir(envelopes.path()).unwrap().count(), 2);
        for c in &old {
            let keys = text(&b.p11(&["--token-label", c, "--login", "--pin", PIN, "-O"]));
            assert!(keys.contains("keyrite-seal:"), "{c}: {keys}");
            assert!(!keys.contains("keyrite-share:"), "{c}: {keys}");
        }
    }
    let commitments = report(&out)["quorum"]["commitments_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    // The transport PIN no longer opens the HSM: only the quorum does.
    let old_pin = b.p11(&["--token-label", hsm, "--login", "--pin", PIN, "-O"]);
    assert!(!old_pin.status.success(), "{}", text(&old_pin));

    let key_hash = report(&out)["keys"][0]["key_hash"]
        .as_str()
        .unwrap()
        .to_string();
    // What an auditor copies from the split's report: its commitments and, for scripts that use the
    // root key, the key's hash.
    let pin = |s: &mut toml::Table| {
        s["quorum"]
            .as_table_mut()
            .unwrap()
            .insert("commitments_sha256".into(), commitments.clone().into());
        for key in s
            .get_mut("keys")
            .and_then(|k| k.as_array_mut())
            .into_iter()
            .flatten()
        {
            if let Some(existing) = key.get_mut("existing").and_then(|e| e.as_table_mut()) {
                existing.insert("key_hash".into(), key_hash.clone().into());
            }
        }
    };
    let activation = script("key-activation.toml", &b, hsm, |s| {
        keep_cards(s, 2);
        pin(s);
        seal(s);
    });
    let (out, result) = run(
        &b,
        "activation",
        &activation,
        &answers(
            &activation,
            &[("activate-quorum", &[old[1].clone(), old[0].clone()])],
        ),
    );
    assert!(
        result.status.success(),
        "{kind:?} activation: {}",
        text(&result)
    );
    assert!(std::fs::read_to_string(out.join("audit.jsonl"))
        .unwrap()
        .contains("\"verified\":true"));
    verify(&out);

    let health = script("share-health-check.toml", &b, hsm, |s| {
        keep_cards(s, 2);
        pin(s);
        seal(s);
    });
    let (out, result) = run(
        &b,
        "health",
        &health,
        &answers(&health, &[("share-health-check", &old)]),
    );
    assert!(
        result.status.success(),
        "{kind:?} health check: {}",
        text(&result)
    );
    let cards = report(&out)["quorum"]["cards"].clone();
    assert_eq!(
        cards
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["result"] == "healthy")
            .count(),
        2,
        "{cards:#}"
    );
    verify(&out);

    let reshare = script("reshare.toml", &b, hsm, |s| {
        keep_cards(s, 2);
        pin(s);
        seal(s);
    });
    let reshare_t: toml::Table = toml::from_str(&reshare).unwrap();
    let new = card_labels(&reshare_t, true);
    for c in &new {
        b.token(c);
    }
    let (out, result) = run(
        &b,
        "reshare",
        &reshare,
        &answers(
            &reshare,
            &[("activate-quorum", &old), ("retire-old-shares", &old)],
        ),
    );
    assert!(
        result.status.success(),
        "{kind:?} reshare: {}",
        text(&result)
    );
    let r = report(&out);
    assert_eq!(
        r["quorum"]["retired_commitments_sha256"],
        commitments.as_str(),
        "{:#}",
        r["quorum"]
    );
    verify(&out);
    // The old cards hold nothing of the split any more (pkcs11-tool lists their data objects).
    for c in &old {
        let listed = b.p11(&[
            "--token-label",
            c,
            "--login",
            "--pin",
            PIN,
            "-O",
            "--type",
            "data",
        ]);
        assert!(
            !text(&listed).contains("keyrite-share:"),
            "{c}: {}",
            text(&listed)
        );
        // Sealed: the old split's card key is gone, and so are its envelopes.
        let keys = text(&b.p11(&["--token-label", c, "--login", "--pin", PIN, "-O"]));
        assert!(
            !keys.contains("keyrite-seal:EXAMPLE-ROOT-QUORUM-2026"),
            "{c}: {keys}"
        );
    }
    if sealed {
        let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
        assert_eq!(
            log.matches("\"card_key_destroyed\":true").count(),
            2,
            "{log}"
        );
        let left: Vec<String> = std::fs::read_dir(envelopes.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            left.len() == 2 && left.iter().all(|f| f.starts_with("EXAMPLE-RESHARE-2026.")),
            "only the new split's envelopes remain: {left:?}"
        );
    }
    eprintln!(
        "{kind:?} quorum split, activation, health check, reshare and retire (sealed: {sealed}): passed"
    );
}

#[test]
fn kryoptic_quorum_sequence() {
    quorum_sequence(Kind::Kryoptic, false);
}

#[test]
fn tpm2_quorum_sequence() {
    quorum_sequence(Kind::Tpm2, false);
}

/// The sealed-share medium on Kryoptic cards (EC key-agreement keys, CKM_ECDH1_DERIVE).
#[test]
fn kryoptic_sealed_quorum_sequence() {
    quorum_sequence(Kind::Kryoptic, true);
}

/// tpm2-pkcs11 1.9 offers no CKM_ECDH1_DERIVE: a split onto sealed TPM cards is refused at the first
/// card, naming it, before any key is generated and with the HSM's PINs unchanged.
#[test]
fn tpm2_cards_cannot_be_sealed_cards() {
    let Some(b) = Backend::new(Kind::Tpm2) else {
        return;
    };
    let hsm = "example-quorum-hsm";
    b.token(hsm);
    let envelopes = tempfile::tempdir().unwrap();
    let split = script("root-ca-quorum.toml", &b, hsm, |s| {
        keep_cards(s, 2);
        let q = s["quorum"].as_table_mut().unwrap();
        q.insert(
            "envelope_dir".into(),
            envelopes.path().display().to_string().into(),
        );
        for card in q["cards"].as_array_mut().unwrap() {
            card.as_table_mut()
                .unwrap()
                .insert("medium".into(), "sealed".into());
        }
    });
    let split_t: toml::Table = toml::from_str(&split).unwrap();
    let old = card_labels(&split_t, false);
    for c in &old {
        b.token(c);
    }
    let (_, result) = run(&b, "split", &split, &answers(&split, &[]));
    let t = text(&result);
    assert!(!result.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "card \"{}\" does not offer CKM_ECDH1_DERIVE",
            old[0]
        )),
        "{t}"
    );
    assert!(t.contains("the HSM's PINs were not changed"), "{t}");
    let still = b.p11(&["--token-label", hsm, "--login", "--pin", PIN, "-O"]);
    assert!(still.status.success(), "{}", text(&still));
    assert_eq!(std::fs::read_dir(envelopes.path()).unwrap().count(), 0);
}

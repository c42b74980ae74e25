//! The sealed-share medium end to end on SoftHSM cards with EC key-agreement keys: split (keys
//! generated on the cards) → activation → wrong-card and tampered-envelope refusals → health check
//! → reshare onto a mixed set (data-object and sealed cards) → retirement (card keys destroyed,
//! envelopes deleted). Every bundle passes `keyrite verify`.
//!
//! The share bytes the envelopes are searched for come from outside keyrite: the card computes the
//! ECDH secret for pkcs11-tool (`--derive -m ECDH1-DERIVE`), and pyca/cryptography does HKDF and
//! AES-GCM (softhsm-tests/open_envelope.py). Those shares are proven real by combining them to the
//! secret whose derived PIN pkcs11-tool then logs in to the HSM with.

mod common;

use common::quorum::*;
use common::{report, root, text};
use keyrite::quorum::{combine, Envelope, Share};
use secrecy::ExposeSecret;
use std::path::{Path, PathBuf};
use std::process::Command;

const KEY_LABEL: &str = "keyrite-seal:EXAMPLE-ROOT-QUORUM-2026";
/// DER SubjectPublicKeyInfo prefix of an uncompressed P-256 point.
const P256_SPKI_PREFIX: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";

/// A shipped script with every old card sealed and, for the reshare, cards n3..n5 sealed (n1 and
/// n2 stay data-object cards: one split, both media).
fn sealed_script(env: &Env, name: &str) -> String {
    let text = std::fs::read_to_string(root().join("ceremony-scripts").join(name)).unwrap();
    let mut text = text.replacen(
        "[quorum]\nthreshold",
        "[quorum]\nenvelope_dir = \"/media/custodian-envelopes\"\nthreshold",
        1,
    );
    for bag in [
        "TEB-104201",
        "TEB-104202",
        "TEB-104203",
        "TEB-104204",
        "TEB-104303",
        "TEB-104304",
        "TEB-104305",
    ] {
        text = text.replace(
            &format!("bag = \"{bag}\""),
            &format!("bag = \"{bag}\"\nmedium = \"sealed\""),
        );
    }
    assert!(text.contains("medium = \"sealed\""), "{name}");
    let path = env.dir.path().join(format!("sealed-{name}"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn envelope(env: &Env, split: &str, card: &str) -> PathBuf {
    env.env_dir()
        .join("envelopes")
        .join(format!("{split}.{card}.krse"))
}

fn python() -> String {
    std::env::var("KEYRITE_JSONSCHEMA_PYTHON").unwrap_or_else(|_| {
        root()
            .join(".venv-pkilint/bin/python")
            .display()
            .to_string()
    })
}

/// Open an envelope without keyrite's crypto: the card derives x(d·E) for pkcs11-tool, Python's
/// cryptography runs HKDF-SHA256 and AES-256-GCM. `None` when either refuses.
fn open_outside(env: &Env, card: &str, key: &str, file: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(file).unwrap();
    let e = Envelope::decode(&bytes).unwrap();
    let peer = env.dir.path().join("peer.der");
    let mut der = hex::decode(P256_SPKI_PREFIX).unwrap();
    der.extend(&e.ephemeral);
    std::fs::write(&peer, der).unwrap();
    let z = env.dir.path().join("z.bin");
    let _ = std::fs::remove_file(&z);
    let derive = env.p11(
        card,
        &env.pin(card),
        &["--derive", "-m", "ECDH1-DERIVE", "--label", key]
            .iter()
            .copied()
            .chain(["-i", peer.to_str().unwrap(), "-o", z.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    if !derive.status.success() {
        return None;
    }
    let out = Command::new(python())
        .arg(root().join("softhsm-tests/open_envelope.py"))
        .args([file, &z])
        .output()
        .expect("python runs");
    std::fs::remove_file(&z).unwrap();
    if !out.status.success() {
        return None;
    }
    Some(hex::decode(String::from_utf8_lossy(&out.stdout).trim()).unwrap())
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Run a rehearsal expected to fail with `message` before the HSM is touched.
fn refused_sealed(env: &mut Env, script: &str, name: &str, cards: &str, message: &str) {
    let (out, bundle) = env.rehearse(script, name, Some(&activation_answers(cards)));
    let t = text(&out);
    assert!(!out.status.success(), "{name} must be refused: {t}");
    assert!(t.contains(message), "{name}: expected «{message}» in:\n{t}");
    let log = std::fs::read_to_string(bundle.join("audit.jsonl")).unwrap();
    assert!(!log.contains("hsm_activated"), "{name}: HSM touched");
    verify(&bundle);
}

#[test]
fn sealed_shares_split_activate_reshare_retire() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let root_script = sealed_script(&env, "root-ca-quorum.toml");
    let activation = sealed_script(&env, "key-activation.toml");
    let health = sealed_script(&env, "share-health-check.toml");
    let reshare = sealed_script(&env, "reshare.toml");

    // 1. Split: each card gets a key-agreement key generated on it, and an envelope.
    let (out, root_bundle) = env.rehearse(&root_script, "root", None);
    assert!(out.status.success(), "{}", text(&out));
    verify(&root_bundle);
    let log = Env::log(&root_bundle);
    let sealed: Vec<&serde_json::Value> = log
        .iter()
        .filter(|e| e["event"]["kind"] == "share_sealed")
        .collect();
    assert_eq!(sealed.len(), 4, "one share_sealed per card");
    for s in &sealed {
        assert_eq!(s["event"]["card_key_generated"], true);
        assert_eq!(s["event"]["card_key_attributes"]["never_extractable"], true);
        let file = Path::new(s["event"]["envelope_file"].as_str().unwrap());
        let sha = sha256sum(file);
        assert_eq!(s["event"]["envelope_sha256"], sha.as_str());
    }
    let rows = report(&root_bundle)["quorum"]["cards"].clone();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4, "one row per card: {rows:?}");
    for (row, s) in rows.iter().zip(&sealed) {
        let want = format!(
            "sealed: envelope sha256 {}, card key {}",
            s["event"]["envelope_sha256"].as_str().unwrap(),
            s["event"]["card_key_sha256"].as_str().unwrap()
        );
        assert_eq!(row["result"], want.as_str());
    }
    for card in OLD_CARDS {
        assert!(envelope(&env, ROOT_ID, card).exists(), "{card}");
        // No data object holds the share; the card holds a derive-only key that never leaves it.
        assert!(!env.data_objects(card).contains("keyrite-share"));
        let keys = text(&env.p11(
            card,
            &env.pin(card),
            &["--list-objects", "--type", "privkey"],
        ));
        assert!(keys.contains(KEY_LABEL), "{keys}");
        assert!(keys.contains("never extractable"), "{keys}");
        assert!(keys.contains("derive"), "{keys}");
    }

    // 2. The shares, opened outside keyrite, are real: two rebuild the secret whose derived PIN
    //    opens the HSM. The envelopes (and every bundle) hold none of their bytes.
    let commitments =
        Envelope::decode(&std::fs::read(envelope(&env, ROOT_ID, OLD_CARDS[0])).unwrap())
            .unwrap()
            .commitments;
    let plain: Vec<Vec<u8>> = OLD_CARDS
        .iter()
        .map(|c| open_outside(&env, c, KEY_LABEL, &envelope(&env, ROOT_ID, c)).expect(c))
        .collect();
    let shares: Vec<Share> = plain.iter().map(|p| Share::decode(p).unwrap()).collect();
    for s in &shares {
        commitments.verify(s).unwrap();
    }
    let secret = combine(&shares[1..3], &commitments).unwrap();
    assert!(env.user_logs_in("example-quorum-hsm", secret.user_pin().expose_secret()));
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for (s, p) in shares.iter().zip(&plain) {
        needles.push(s.value_bytes().to_vec());
        needles.push(hex::encode(s.value_bytes()).into_bytes());
        needles.push(p.clone());
        needles.push(hex::encode(p).into_bytes());
    }
    // The search can hit: each share's bytes are in its own plaintext.
    assert_eq!(count(&plain[0], shares[0].value_bytes()), 1);
    let envelopes: Vec<PathBuf> = OLD_CARDS
        .iter()
        .map(|c| envelope(&env, ROOT_ID, c))
        .collect();
    let hits: usize = envelopes
        .iter()
        .map(|f| {
            let b = std::fs::read(f).unwrap();
            needles.iter().map(|n| count(&b, n)).sum::<usize>()
        })
        .sum();
    assert_eq!(hits, 0, "share bytes found in the envelopes");

    // 3. Activation with two sealed cards.
    let (out, bundle) = env.rehearse(&activation, "activation", None);
    assert!(out.status.success(), "{}", text(&out));
    verify(&bundle);

    // 4. A card with the wrong key cannot open another's envelope: card b's envelope in card a's
    //    place is refused, naming card a. With the header's key hash forged to card a's, card a's
    //    ECDH gives the wrong secret and AES-GCM refuses.
    let (env_a, env_b) = (
        envelope(&env, ROOT_ID, OLD_CARDS[0]),
        envelope(&env, ROOT_ID, OLD_CARDS[1]),
    );
    let original_a = std::fs::read(&env_a).unwrap();
    let b_bytes = std::fs::read(&env_b).unwrap();
    std::fs::write(&env_a, &b_bytes).unwrap();
    refused_sealed(
        &mut env,
        &activation,
        "wrong-card",
        r#"{ card = "example-custodian-card-a" }, { card = "example-custodian-card-c" }"#,
        "card \"example-custodian-card-a\"",
    );
    let t = std::fs::read_to_string(env.dir.path().join("wrong-card/audit.jsonl")).unwrap();
    assert!(t.contains("the envelope is sealed to card key"), "{t}");
    let mut forged = b_bytes.clone();
    let a_hash = Envelope::decode(&original_a).unwrap().card_key_sha256;
    forged[6 + 65..6 + 65 + 32].copy_from_slice(&a_hash);
    std::fs::write(&env_a, &forged).unwrap();
    refused_sealed(
        &mut env,
        &activation,
        "wrong-key-forged-hash",
        r#"{ card = "example-custodian-card-a" }, { card = "example-custodian-card-c" }"#,
        "does not open with this card's key",
    );
    assert!(open_outside(&env, OLD_CARDS[0], KEY_LABEL, &env_a).is_none());
    // 5. A tampered envelope (one ciphertext bit) is refused by the AEAD.
    let mut tampered = original_a.clone();
    let last = tampered.len() - 3;
    tampered[last] ^= 0x01;
    std::fs::write(&env_a, &tampered).unwrap();
    refused_sealed(
        &mut env,
        &activation,
        "tampered",
        r#"{ card = "example-custodian-card-a" }, { card = "example-custodian-card-c" }"#,
        "AES-GCM authentication failed",
    );
    std::fs::write(&env_a, &original_a).unwrap();

    // 6. Health check: a card whose envelope is not in the folder is named as unhealthy; with it
    //    back, all four are healthy.
    let env_d = envelope(&env, ROOT_ID, OLD_CARDS[3]);
    let away = env.dir.path().join("away.krse");
    std::fs::rename(&env_d, &away).unwrap();
    let (out, bundle) = env.rehearse(&health, "health-no-envelope", None);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("card \"example-custodian-card-d\"")
            && t.contains("its share envelope for ceremony"),
        "{t}"
    );
    verify(&bundle);
    std::fs::rename(&away, &env_d).unwrap();
    let (out, bundle) = env.rehearse(&health, "health", None);
    assert!(out.status.success(), "{}", text(&out));
    let r = report(&bundle);
    let healthy = r["quorum"]["cards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["result"] == "healthy")
        .count();
    assert_eq!(healthy, 4, "{r:#}");

    // 7. Reshare onto n1..n5 (n1, n2 data objects; n3..n5 sealed), then retire the old sealed
    //    shares: card keys destroyed and read back as gone, envelopes deleted.
    let copy_a = original_a.clone();
    let (out, bundle) = env.rehearse(&reshare, "reshare", None);
    assert!(out.status.success(), "{}", text(&out));
    verify(&bundle);
    let log = Env::log(&bundle);
    let retired: Vec<&serde_json::Value> = log
        .iter()
        .filter(|e| e["event"]["kind"] == "sealed_share_retired")
        .collect();
    assert_eq!(retired.len(), 4);
    assert!(retired.iter().all(
        |e| e["event"]["card_key_destroyed"] == true && e["event"]["envelope_deleted"] == true
    ));
    let new_sealed = log
        .iter()
        .filter(|e| e["event"]["kind"] == "share_sealed")
        .count();
    assert_eq!(new_sealed, 3, "n3..n5 sealed");
    for card in OLD_CARDS {
        assert!(!envelope(&env, ROOT_ID, card).exists(), "{card}");
        let keys = text(&env.p11(card, &env.pin(card), &["--list-objects"]));
        assert!(!keys.contains(KEY_LABEL), "{card}: {keys}");
    }
    // A kept copy of an old envelope no longer opens: its card key is gone.
    let copy = env.dir.path().join("copy-a.krse");
    std::fs::write(&copy, &copy_a).unwrap();
    assert!(open_outside(&env, OLD_CARDS[0], KEY_LABEL, &copy).is_none());
    // The new set is real: n1 and n2 (data objects, read by pkcs11-tool) and n3 (opened outside
    //    keyrite) rebuild the new secret, whose PIN opens the HSM.
    let (mut new_shares, new_commitments) = shares_of(
        &env,
        &["example-custodian-card-n1", "example-custodian-card-n2"],
        RESHARE_ID,
    );
    let n3 = "example-custodian-card-n3";
    let n3_key = format!("keyrite-seal:{RESHARE_ID}");
    let p = open_outside(&env, n3, &n3_key, &envelope(&env, RESHARE_ID, n3)).unwrap();
    new_shares.push(Share::decode(&p).unwrap());
    let again = combine(&new_shares, &new_commitments).unwrap();
    assert!(env.user_logs_in("example-quorum-hsm", again.user_pin().expose_secret()));
    assert!(!env.user_logs_in("example-quorum-hsm", secret.user_pin().expose_secret()));
    let new_envelopes: Vec<PathBuf> = ["n3", "n4", "n5"]
        .iter()
        .map(|n| envelope(&env, RESHARE_ID, &format!("example-custodian-card-{n}")))
        .collect();
    needles.push(new_shares[2].value_bytes().to_vec());
    needles.push(p.clone());

    // 8. No share byte in any envelope, bundle or capture.
    let mut hay: Vec<(String, Vec<u8>)> = env
        .captures
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("capture #{i}"), c.clone()))
        .collect();
    for f in new_envelopes {
        hay.push((f.display().to_string(), std::fs::read(&f).unwrap()));
    }
    for b in &env.bundles {
        verify(b);
        for entry in walk(b) {
            hay.push((entry.display().to_string(), std::fs::read(&entry).unwrap()));
        }
    }
    let found: Vec<&String> = hay
        .iter()
        .filter(|(_, b)| needles.iter().any(|n| count(b, n) > 0))
        .map(|(name, _)| name)
        .collect();
    assert!(found.is_empty(), "share bytes found in: {found:?}");
}

fn sha256sum(file: &Path) -> String {
    let out = Command::new("sha256sum").arg(file).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Item 5 of issue 13: a key with CKA_ALWAYS_AUTHENTICATE (made by pkcs11-tool --always-auth)
/// signs through keyrite after C_SignInit + C_Login(CKU_CONTEXT_SPECIFIC), and openssl verifies the
/// signature. SoftHSM2 refuses CKM_ECDSA in parts, which such a key needs from keyrite: that is
/// reported naming the key and the attribute (OpenSC's PIV module buffers the parts).
#[test]
fn a_key_that_always_authenticates_signs_after_a_context_login() {
    use keyrite::hsm::pkcs11::Pkcs11Hsm;
    use keyrite::hsm::{Hsm, SignMechanism};
    use keyrite::script::TokenSelector;
    use secrecy::SecretString;
    if !common::have("pkcs11-tool") || !Path::new(SOFTHSM).exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tokens")).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.path().join("tokens").display()
        ),
    )
    .unwrap();
    // Before this process loads SoftHSM (no other test here loads it in-process).
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let (label, pin) = ("always-auth-card", "Kq-owl-Lime-4711");
    let init = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label])
        .args(["--so-pin", "Kq-owl-Lime-so", "--pin", pin])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", text(&init));
    let p11 = |args: &[&str]| {
        let out = Command::new("pkcs11-tool")
            .args([
                "--module",
                SOFTHSM,
                "--token-label",
                label,
                "--login",
                "--pin",
                pin,
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "pkcs11-tool {args:?}: {}", text(&out));
        text(&out)
    };
    for (key, id, kind) in [
        ("rsa-aa", "01", "rsa:2048"),
        ("ec-aa", "02", "EC:prime256v1"),
    ] {
        p11(&[
            "--keypairgen",
            "--key-type",
            kind,
            "--label",
            key,
            "--id",
            id,
            "--always-auth",
            "--usage-sign",
        ]);
    }
    let listed = p11(&["--list-objects", "--type", "privkey"]);
    assert!(listed.contains("always authenticate"), "{listed}");
    let mut hsm = Pkcs11Hsm::open(
        SOFTHSM,
        &TokenSelector {
            label: Some(label.into()),
            ..Default::default()
        },
    )
    .unwrap();
    hsm.login(&SecretString::from(pin)).unwrap();
    let msg = b"keyrite context-specific login test";
    let sig = hsm
        .sign("rsa-aa", SignMechanism::RsaPkcs1Sha256, msg)
        .unwrap();
    let d = dir.path();
    std::fs::write(d.join("msg"), msg).unwrap();
    std::fs::write(d.join("sig"), &sig).unwrap();
    p11(&[
        "--read-object",
        "--type",
        "pubkey",
        "--label",
        "rsa-aa",
        "-o",
        d.join("pub.der").to_str().unwrap(),
    ]);
    let verify = Command::new("openssl")
        .args(["dgst", "-sha256", "-keyform", "DER", "-verify"])
        .arg(d.join("pub.der"))
        .arg("-signature")
        .arg(d.join("sig"))
        .arg(d.join("msg"))
        .output()
        .unwrap();
    assert!(verify.status.success(), "openssl: {}", text(&verify));
    // The check can fail: a flipped message byte does not verify.
    std::fs::write(d.join("msg"), b"keyrite context-specific login tesT").unwrap();
    let bad = Command::new("openssl")
        .args(["dgst", "-sha256", "-keyform", "DER", "-verify"])
        .arg(d.join("pub.der"))
        .arg("-signature")
        .arg(d.join("sig"))
        .arg(d.join("msg"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = hsm
        .sign("ec-aa", SignMechanism::EcdsaPrehashed, &[7u8; 32])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("CKA_ALWAYS_AUTHENTICATE") && err.contains("ec-aa"),
        "{err}"
    );
}

/// The card's side of sealed shares on Kryoptic (a second PKCS#11 implementation, OpenSSL inside):
/// keyrite generates the key-agreement key, reads back its attributes, and the ECDH the card computes
/// opens an envelope sealed on the host with RustCrypto; another key on the card cannot; destroyed,
/// the key is gone. Skipped when the Kryoptic module is not built (softhsm-tests/setup.sh builds it
/// once the Kryoptic backend is in CI).
#[test]
fn a_kryoptic_card_opens_what_is_sealed_to_it() {
    use keyrite::hsm::pkcs11::{init_token, Pkcs11Hsm};
    use keyrite::hsm::Hsm;
    use keyrite::quorum::{envelope, split, Recipient, Secret};
    use keyrite::script::TokenSelector;
    use secrecy::SecretString;
    let module = std::env::var_os("KEYRITE_KRYOPTIC_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
                .unwrap_or_default();
            cache.join("keyrite/kryoptic/libkryoptic_pkcs11-1.5.4.so")
        });
    if !module.is_file() {
        eprintln!("skipping: Kryoptic is not built ({})", module.display());
        return;
    }
    let module = module.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("kryoptic.conf");
    std::fs::write(
        &conf,
        format!(
            "[[slots]]\nslot = 1\ndbtype = \"sqlite\"\ndbargs = \"{}/card.sql\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    // Before this process loads Kryoptic (no other test here loads it).
    std::env::set_var("KRYOPTIC_CONF", &conf);
    let (label, pin) = (
        "kryoptic-custodian-card",
        SecretString::from("Kq-owl-Lime-4711"),
    );
    let serial = init_token(module, label, &SecretString::from("Kq-owl-Lime-so"), &pin).unwrap();
    let mut card = Pkcs11Hsm::open(
        module,
        &TokenSelector {
            label: Some(label.into()),
            ..Default::default()
        },
    )
    .unwrap();
    card.login(&pin).unwrap();
    let key = card.generate_agreement_key(KEY_LABEL).unwrap();
    assert_eq!(key.derive, Some(true));
    assert_eq!(key.attributes.extractable, Some(false));
    assert_eq!(key.attributes.sensitive, Some(true));
    assert_eq!(card.agreement_key(KEY_LABEL).unwrap(), Some(key.clone()));
    let other = card.generate_agreement_key("another-key").unwrap();
    let secret = Secret::generate(&[5u8; 32]).unwrap();
    let (shares, c) = split(&secret, "EXAMPLE-ROOT-QUORUM-2026", 2, 3, b"k").unwrap();
    let to = Recipient {
        token_label: label.into(),
        serial,
        public_point: key.public_point.clone(),
    };
    let bytes = envelope::seal(&shares[0], &c, &to).unwrap();
    let env = Envelope::decode(&bytes).unwrap();
    let z = card.ecdh(KEY_LABEL, &env.ephemeral).unwrap();
    let opened = env.open(&z).unwrap();
    assert_eq!(opened.value_bytes(), shares[0].value_bytes());
    c.verify(&opened).unwrap();
    let wrong = card.ecdh(&other.label, &env.ephemeral).unwrap();
    assert!(
        env.open(&wrong).is_err(),
        "another key on the card opens it"
    );
    assert_eq!(card.destroy_agreement_key(KEY_LABEL).unwrap(), 2);
    assert_eq!(card.agreement_key(KEY_LABEL).unwrap(), None);
    assert!(card.ecdh(KEY_LABEL, &env.ephemeral).is_err());
}

//! The custodian quorum end to end on one rehearsal environment: root ceremony with split,
//! key activation, the abuse cases (each refused with its own message, the HSM never logged in to),
//! share health check, reshare; then a secret scan over every bundle and every capture.
//!
//! Shares are read off the cards with pkcs11-tool (not keyrite), and the derived HSM PIN is proven by
//! pkcs11-tool logging in with it.

mod common;

use common::quorum::*;
use common::{report, root, text};
use keyrite::quorum::combine;
use secrecy::ExposeSecret;
use std::process::Output;

#[test]
fn quorum_ceremonies_abuse_cases_and_secret_scan() {
    let Some(mut env) = Env::new() else {
        return;
    };

    // 1. Root ceremony with the split.
    let (out, root_bundle) = env.rehearse("root-ca-quorum.toml", "root", None);
    assert!(out.status.success(), "{}", text(&out));
    let r = report(&root_bundle);
    assert_eq!(r["quorum"]["threshold"], 2);
    assert_eq!(r["quorum"]["total"], 4);
    assert_eq!(r["quorum"]["split_ceremony_id"], ROOT_ID);
    assert_eq!(r["quorum"]["cards"][2]["bag"], "TEB-104203");
    let log = std::fs::read_to_string(root_bundle.join("audit.jsonl")).unwrap();
    assert!(log.contains("no person saw either PIN"));

    // Shares read off the cards by pkcs11-tool rebuild the secret; its derived PIN opens the HSM
    // (pkcs11-tool login), and the rehearsal's original HSM PIN no longer does.
    let (shares, commitments) = shares_of(&env, &OLD_CARDS, ROOT_ID);
    assert_eq!(
        r["quorum"]["commitments_sha256"],
        commitments.sha256_hex().as_str()
    );
    let secret = combine(&shares[2..], &commitments).unwrap();
    let (user_pin, so_pin) = (secret.user_pin(), secret.so_pin());
    let hsm = "example-quorum-hsm";
    let ok = env.p11(hsm, user_pin.expose_secret(), &["--list-objects"]);
    assert!(ok.status.success(), "derived PIN: {}", text(&ok));
    assert!(text(&ok).contains("example-root-quorum-2026"));
    let old = env.p11(hsm, &env.pin(hsm), &["--list-objects"]);
    assert!(!old.status.success(), "the transport PIN must be gone");

    // 2. Key activation with any two cards (auto: a and b; answers: d then c).
    let (out, bundle) = env.rehearse("key-activation.toml", "activation", None);
    assert!(out.status.success(), "{}", text(&out));
    verify(&bundle);
    let log = std::fs::read_to_string(bundle.join("audit.jsonl")).unwrap();
    assert!(log.contains("\"verified\":true"), "test signature verified");
    // The root key, found after the quorum activation, is the root ceremony's (issue 11).
    let used = report(&bundle);
    assert_eq!(
        used["existing_keys"][0]["key_hash"],
        r["keys"][0]["key_hash"]
    );
    assert_eq!(
        used["test_signatures"][0]["key_hash"],
        r["keys"][0]["key_hash"]
    );
    let answers = activation_answers(
        r#"{ card = "example-custodian-card-d" }, { card = "example-custodian-card-c" }"#,
    );
    let (out, bundle) = env.rehearse("key-activation.toml", "activation-dc", Some(&answers));
    assert!(out.status.success(), "{}", text(&out));
    verify(&bundle);

    // 3. Abuse cases.
    refused(
        &mut env,
        "fewer",
        r#"{ card = "example-custodian-card-a" }"#,
        "only 1 of the 2 cards needed were accepted",
    );
    refused(
        &mut env,
        "same-card",
        r#"{ card = "example-custodian-card-a" }, { card = "example-custodian-card-a" }"#,
        "was already presented at this step; the same card counts once",
    );
    refused(
        &mut env,
        "one-holder",
        r#"{ card = "example-custodian-card-a" }, { card = "example-custodian-card-b", by = "Aiko Tanaka" }"#,
        "Aiko Tanaka already presented a card at this step",
    );
    let card_c = OLD_CARDS[2];
    let share_label = format!("keyrite-share:{ROOT_ID}");
    let original = env.read_object(card_c, &share_label);
    let other = keyrite::quorum::Secret::generate(&[9u8; 32]).unwrap();
    let (foreign, _) = keyrite::quorum::split(&other, "OTHER-CEREMONY", 2, 4, b"").unwrap();
    env.replace_object(card_c, &share_label, &foreign[2].encode());
    refused(
        &mut env,
        "other-ceremony",
        r#"{ card = "example-custodian-card-c" }, { card = "example-custodian-card-d" }"#,
        "the share was made by ceremony \"OTHER-CEREMONY\"",
    );
    let mut flipped = original.clone();
    let at = flipped.len() - 20;
    flipped[at] ^= 0x01;
    env.replace_object(card_c, &share_label, &flipped);
    refused(
        &mut env,
        "flipped-byte",
        r#"{ card = "example-custodian-card-c" }, { card = "example-custodian-card-d" }"#,
        "fails its checksum",
    );
    env.replace_object(card_c, &share_label, &original);
    let rehearsal_toml = env.env_dir().join("rehearsal.toml");
    let saved = std::fs::read_to_string(&rehearsal_toml).unwrap();
    let pin_a = env.pin(OLD_CARDS[0]);
    std::fs::write(&rehearsal_toml, saved.replace(&pin_a, "Kq-owl-Lime-wrong")).unwrap();
    refused(
        &mut env,
        "wrong-pin",
        r#"{ card = "example-custodian-card-a" }, { card = "example-custodian-card-b" }"#,
        "wrong PIN for card \"example-custodian-card-a\"",
    );
    std::fs::write(&rehearsal_toml, &saved).unwrap();

    // Foreign cards: another split of the same ceremony id on cards c and d. The split's commitments
    // come from the rehearsal folder's record, so each foreign card is refused by name before
    // anything is combined, and a genuine card is never blamed.
    let commitments_label = format!("keyrite-commitments:{ROOT_ID}");
    let originals: Vec<(Vec<u8>, Vec<u8>)> = [OLD_CARDS[2], OLD_CARDS[3]]
        .iter()
        .map(|c| {
            (
                env.read_object(c, &share_label),
                env.read_object(c, &commitments_label),
            )
        })
        .collect();
    let (forged, forged_commitments) =
        keyrite::quorum::split(&other, ROOT_ID, 2, 4, b"forger").unwrap();
    for (i, card) in [OLD_CARDS[2], OLD_CARDS[3]].iter().enumerate() {
        env.replace_object(card, &share_label, &forged[i + 2].encode());
        env.replace_object(card, &commitments_label, &forged_commitments.encode());
    }
    refused(
        &mut env,
        "two-foreign",
        r#"{ card = "example-custodian-card-c" }, { card = "example-custodian-card-d" }"#,
        "card \"example-custodian-card-d\"",
    );
    let log = Env::log(&env.dir.path().join("two-foreign"));
    let refused_cards: Vec<&serde_json::Value> = log
        .iter()
        .filter(|e| e["event"]["kind"] == "quorum_card_refused")
        .map(|e| &e["event"]["token_label"])
        .collect();
    assert_eq!(
        refused_cards,
        ["example-custodian-card-c", "example-custodian-card-d"],
        "each foreign card is named"
    );
    assert!(log
        .iter()
        .all(|e| e["event"]["kind"] != "quorum_card_accepted"));
    let t = std::fs::read_to_string(env.dir.path().join("two-foreign/audit.jsonl")).unwrap();
    assert!(t.contains("is from another split"), "{t}");
    let flags_before = env.hsm_flags();
    let answers = activation_answers(
        r#"{ card = "example-custodian-card-c" }, { card = "example-custodian-card-a" }, { card = "example-custodian-card-b" }"#,
    );
    let (out, bundle) = env.rehearse("key-activation.toml", "foreign-first", Some(&answers));
    assert!(out.status.success(), "{}", text(&out));
    let log = Env::log(&bundle);
    let refusals: Vec<&serde_json::Value> = log
        .iter()
        .filter(|e| e["event"]["kind"] == "quorum_card_refused")
        .collect();
    assert_eq!(
        refusals.len(),
        1,
        "only the foreign card is refused: {refusals:?}"
    );
    assert_eq!(
        refusals[0]["event"]["token_label"],
        "example-custodian-card-c"
    );
    let accepted = log
        .iter()
        .filter(|e| e["event"]["kind"] == "quorum_card_accepted")
        .count();
    assert_eq!(accepted, 2, "the genuine cards a and b count");
    let flags_after = env.hsm_flags();
    assert!(
        !flags_after.contains("count low"),
        "{flags_before} / {flags_after}"
    );
    for (i, card) in [OLD_CARDS[2], OLD_CARDS[3]].iter().enumerate() {
        env.replace_object(card, &share_label, &originals[i].0);
        env.replace_object(card, &commitments_label, &originals[i].1);
    }

    // 4. Health check (all four cards healthy again), then the reshare to 3-of-5.
    let (out, bundle) = env.rehearse("share-health-check.toml", "health", None);
    assert!(out.status.success(), "{}", text(&out));
    let r = report(&bundle);
    let healthy = r["quorum"]["cards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["result"] == "healthy")
        .count();
    assert_eq!(healthy, 4, "{r:#}");
    // A custodian keeps copies of cards a and b; card d's share is lost before the reshare.
    let copies: Vec<(Vec<u8>, Vec<u8>)> = [OLD_CARDS[0], OLD_CARDS[1]]
        .iter()
        .map(|c| {
            (
                env.read_object(c, &share_label),
                env.read_object(c, &commitments_label),
            )
        })
        .collect();
    env.delete_object(OLD_CARDS[3], &share_label);
    env.delete_object(OLD_CARDS[3], &commitments_label);
    let (out, bundle) = env.rehearse("reshare.toml", "reshare", None);
    let t = text(&out);
    // Card d held nothing: recorded as such, never as retired; the step says so.
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("held no share"), "{t}");
    assert!(
        !t.lines()
            .any(|l| l.contains("example-custodian-card-d") && l.contains(": retired")),
        "{t}"
    );
    let log = Env::log(&bundle);
    let of_d = |kind: &str| {
        log.iter().any(|e| {
            e["event"]["kind"] == kind && e["event"]["token_label"] == "example-custodian-card-d"
        })
    };
    assert!(of_d("share_absent"), "card d recorded as holding no share");
    assert!(
        !of_d("share_destroyed"),
        "card d is never recorded as retired"
    );
    let r = report(&bundle);
    assert_eq!(r["quorum"]["threshold"], 3);
    assert_eq!(r["quorum"]["total"], 5);
    assert_eq!(
        r["quorum"]["retired_commitments_sha256"],
        commitments.sha256_hex().as_str()
    );
    let d_rows: Vec<&serde_json::Value> = r["quorum"]["cards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["token_label"] == "example-custodian-card-d")
        .collect();
    assert!(
        d_rows.iter().any(|c| c["result"] == "held no share"),
        "{d_rows:?}"
    );
    assert!(
        d_rows.iter().all(|c| c["result"] != "retired"),
        "{d_rows:?}"
    );
    // The old cards hold nothing any more.
    for card in OLD_CARDS {
        let list = env.data_objects(card);
        assert!(!list.contains("keyrite-share"), "{card}: {list}");
    }
    // Three new cards rebuild a NEW secret: the reshare rotated both HSM PINs.
    let new_cards = [
        "example-custodian-card-n5",
        "example-custodian-card-n2",
        "example-custodian-card-n4",
    ];
    let (new_shares, new_commitments) = shares_of(&env, &new_cards, RESHARE_ID);
    let again = combine(&new_shares, &new_commitments).unwrap();
    assert_ne!(again.user_pin().expose_secret(), user_pin.expose_secret());
    assert!(
        combine(&new_shares[..2], &new_commitments).is_err(),
        "M-1 new shares are refused"
    );
    // The copied old shares, put back on cards a and b, are refused before any HSM login.
    for (i, card) in [OLD_CARDS[0], OLD_CARDS[1]].iter().enumerate() {
        env.write_object(card, &share_label, &copies[i].0);
        env.write_object(card, &commitments_label, &copies[i].1);
    }
    refused(
        &mut env,
        "copied-old-shares",
        r#"{ card = "example-custodian-card-a" }, { card = "example-custodian-card-b" }"#,
        "was replaced by a reshare",
    );
    assert!(env.user_logs_in(hsm, again.user_pin().expose_secret()));

    // 5. Every bundle verifies; no secret appears in any bundle file or capture.
    for b in &env.bundles {
        verify(b);
    }
    let mut needles: Vec<String> = env
        .tokens()
        .iter()
        .flat_map(|t| {
            [
                t["user_pin"].as_str().unwrap().to_string(),
                t["so_pin"].as_str().unwrap().to_string(),
            ]
        })
        .collect();
    needles.push(user_pin.expose_secret().to_string());
    needles.push(so_pin.expose_secret().to_string());
    needles.push(again.user_pin().expose_secret().to_string());
    needles.push(again.so_pin().expose_secret().to_string());
    use base64ct::Encoding as _;
    for s in shares.iter().chain(&new_shares) {
        let v = s.value_bytes();
        needles.push(hex::encode(v));
        needles.push(hex::encode_upper(v));
        needles.push(base64ct::Base64::encode_string(v));
        needles.push(hex::encode(&*s.encode()));
        needles.push(base64ct::Base64::encode_string(&s.encode()));
    }
    let mut hay: Vec<(String, Vec<u8>)> = env
        .captures
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("capture #{i}"), c.clone()))
        .collect();
    for b in &env.bundles {
        for entry in walk(b) {
            hay.push((entry.display().to_string(), std::fs::read(&entry).unwrap()));
        }
    }
    assert!(hay.len() > 20);
    let mut hits = Vec::new();
    for (name, bytes) in &hay {
        let t = String::from_utf8_lossy(bytes);
        for n in &needles {
            if t.contains(n.as_str()) {
                hits.push(name.clone());
            }
        }
    }
    assert!(hits.is_empty(), "secrets found in: {hits:?}");
    // The reshare's derived SO PIN is the HSM's SO PIN; the old split's no longer is.
    assert!(env.so_logs_in(hsm, again.so_pin().expose_secret()));
    assert!(!env.so_logs_in(hsm, so_pin.expose_secret()));
}

/// A split as the first HSM step on a factory-fresh token: C_InitToken and C_InitPIN, then the derived
/// PINs; a later quorum activation on the same environment uses them.
#[test]
fn a_split_initialises_a_fresh_token() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let text =
        std::fs::read_to_string(root().join("ceremony-scripts/root-ca-quorum.toml")).unwrap();
    let (a, b) = (
        text.find("[[steps]]\nid = \"activate-hsm\"").unwrap(),
        text.find("[[steps]]\nid = \"split-activation\"").unwrap(),
    );
    let fresh = format!("{}{}", &text[..a], &text[b..]);
    let script = env.dir.path().join("fresh.toml");
    std::fs::write(&script, fresh).unwrap();
    let (out, bundle) = env.rehearse(script.to_str().unwrap(), "fresh", None);
    assert!(out.status.success(), "{}", text_of(&out));
    verify(&bundle);
    let log = std::fs::read_to_string(bundle.join("audit.jsonl")).unwrap();
    assert!(
        log.contains("C_InitToken and C_InitPIN with throw-away PINs"),
        "{log}"
    );
    let (shares, commitments) = shares_of(&env, &OLD_CARDS[..1], ROOT_ID);
    let (more, _) = shares_of(&env, &OLD_CARDS[3..], ROOT_ID);
    let secret = combine(&[shares[0].clone(), more[0].clone()], &commitments).unwrap();
    let hsm = "example-quorum-hsm";
    let ok = env.p11(hsm, secret.user_pin().expose_secret(), &["--list-objects"]);
    assert!(ok.status.success(), "derived user PIN: {}", text_of(&ok));
    let (out, bundle) = env.rehearse("key-activation.toml", "activation", None);
    assert!(out.status.success(), "{}", text_of(&out));
    verify(&bundle);
    assert!(
        !so_pin_works(&env, hsm, "Kq-owl-Lime-wrong"),
        "the check can fail"
    );
    assert!(
        so_pin_works(&env, hsm, secret.so_pin().expose_secret()),
        "derived SO PIN"
    );
}

fn text_of(out: &Output) -> String {
    text(out)
}

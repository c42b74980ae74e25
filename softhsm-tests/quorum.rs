//! The custodian quorum end to end on one rehearsal environment: root ceremony with split,
//! key activation, the abuse cases (each refused with its own message, the HSM never logged in to),
//! share health check, reshare; then a secret scan over every bundle and every capture.
//!
//! Shares are read off the cards with pkcs11-tool (not keyrite), and the derived HSM PIN is proven by
//! pkcs11-tool logging in with it.

mod common;

use common::{have, report, root, text};
use keyrite::quorum::{combine, Commitments, Share};
use secrecy::ExposeSecret;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
const ROOT_ID: &str = "EXAMPLE-ROOT-QUORUM-2026";
const RESHARE_ID: &str = "EXAMPLE-RESHARE-2026";
const OLD_CARDS: [&str; 4] = [
    "example-custodian-card-a",
    "example-custodian-card-b",
    "example-custodian-card-c",
    "example-custodian-card-d",
];

struct Env {
    dir: tempfile::TempDir,
    /// Every stdout and stderr of every keyrite run, for the secret scan.
    captures: Vec<Vec<u8>>,
    bundles: Vec<PathBuf>,
}

impl Env {
    /// A fresh rehearsal folder; `None` (skip) when SoftHSM2 or its tools are missing outside CI.
    fn new() -> Option<Env> {
        if !have("softhsm2-util") || !have("pkcs11-tool") || !Path::new(SOFTHSM).exists() {
            return None;
        }
        Some(Env {
            dir: tempfile::tempdir().unwrap(),
            captures: Vec::new(),
            bundles: Vec::new(),
        })
    }

    fn env_dir(&self) -> PathBuf {
        self.dir.path().join("env")
    }

    fn conf(&self) -> PathBuf {
        self.env_dir().join("softhsm2.conf")
    }

    fn rehearse(&mut self, script: &str, name: &str, answers: Option<&str>) -> (Output, PathBuf) {
        let out = self.dir.path().join(name);
        let env = self.env_dir();
        let mut args = vec![
            "rehearse".to_string(),
            if script.starts_with('/') {
                script.to_string()
            } else {
                format!("ceremony-scripts/{script}")
            },
            "--out".into(),
            out.display().to_string(),
            "--env".into(),
            env.display().to_string(),
        ];
        match answers {
            Some(text) => {
                let file = self.dir.path().join(format!("{name}.answers.toml"));
                std::fs::write(&file, text).unwrap();
                args.extend(["--answers".into(), file.display().to_string()]);
            }
            None => args.push("--auto".into()),
        }
        let result = Command::new(env!("CARGO_BIN_EXE_keyrite"))
            .args(&args)
            .current_dir(root())
            .env_remove("SOFTHSM2_CONF")
            .env_remove("KEYRITE_REHEARSAL_DIR")
            .output()
            .expect("keyrite runs");
        self.captures.push(result.stdout.clone());
        self.captures.push(result.stderr.clone());
        if out.join("audit.jsonl").exists() {
            self.bundles.push(out.clone());
        }
        (result, out)
    }

    fn tokens(&self) -> Vec<toml::Value> {
        let text = std::fs::read_to_string(self.env_dir().join("rehearsal.toml")).unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        v["tokens"].as_array().unwrap().clone()
    }

    fn pin(&self, label: &str) -> String {
        self.tokens()
            .iter()
            .find(|t| t["label"].as_str() == Some(label))
            .and_then(|t| t["user_pin"].as_str())
            .unwrap_or_else(|| panic!("no rehearsal token {label}"))
            .to_string()
    }

    fn p11(&self, token: &str, pin: &str, args: &[&str]) -> Output {
        Command::new("pkcs11-tool")
            .args([
                "--module",
                SOFTHSM,
                "--token-label",
                token,
                "--login",
                "--pin",
                pin,
            ])
            .args(args)
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .expect("pkcs11-tool runs")
    }

    /// The value of a data object on a card, read by pkcs11-tool.
    fn read_object(&self, card: &str, label: &str) -> Vec<u8> {
        let file = self.dir.path().join("object.bin");
        let out = self.p11(
            card,
            &self.pin(card),
            &[
                "--read-object",
                "--type",
                "data",
                "--label",
                label,
                "-o",
                file.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "pkcs11-tool read: {}", text(&out));
        let bytes = std::fs::read(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        bytes
    }

    fn replace_object(&self, card: &str, label: &str, value: &[u8]) {
        let pin = self.pin(card);
        let del = self.p11(
            card,
            &pin,
            &["--delete-object", "--type", "data", "--label", label],
        );
        assert!(del.status.success(), "pkcs11-tool delete: {}", text(&del));
        let file = self.dir.path().join("object.bin");
        std::fs::write(&file, value).unwrap();
        let w = self.p11(
            card,
            &pin,
            &[
                "--write-object",
                file.to_str().unwrap(),
                "--type",
                "data",
                "--label",
                label,
                "--application-label",
                "keyrite quorum",
                "--private",
            ],
        );
        assert!(w.status.success(), "pkcs11-tool write: {}", text(&w));
        std::fs::remove_file(&file).unwrap();
    }

    /// The HSM token's flags line, as pkcs11-tool -T shows it.
    fn hsm_flags(&self) -> String {
        let out = Command::new("pkcs11-tool")
            .args(["--module", SOFTHSM, "-T"])
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&out.stdout).to_string();
        let block = t
            .split("Slot ")
            .find(|b| b.contains("example-quorum-hsm"))
            .unwrap_or_default();
        block
            .lines()
            .find(|l| l.contains("token flags"))
            .unwrap_or_default()
            .to_string()
    }
}

fn verify(out: &Path) {
    let v = Command::new(env!("CARGO_BIN_EXE_keyrite"))
        .args(["verify", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "keyrite verify {}: {}",
        out.display(),
        text(&v)
    );
}

/// Confirmations for key-activation.toml, plus the given cards at the activation step.
fn activation_answers(cards: &str) -> String {
    format!(
        r#"[[steps]]
id = "preflight"
confirm = ["Maria Keller", "Wiebke Janssen"]
[[steps]]
id = "identify-participants"
confirm = ["Maria Keller", "Ines Moreau"]
[[steps]]
id = "activate-quorum"
confirm = ["Omar Haddad", "Olga Petrova", "Ines Moreau"]
[[steps]]
id = "sign-test-message"
confirm = ["Omar Haddad", "Olga Petrova", "Ines Moreau"]
[[steps]]
id = "deactivate-hsm"
confirm = ["Omar Haddad"]
[[cards]]
step = "activate-quorum"
present = [{cards}]
"#
    )
}

fn shares_of(env: &Env, cards: &[&str], ceremony: &str) -> (Vec<Share>, Commitments) {
    let commitments =
        Commitments::decode(&env.read_object(cards[0], &format!("keyrite-commitments:{ceremony}")))
            .unwrap();
    let shares = cards
        .iter()
        .map(|c| Share::decode(&env.read_object(c, &format!("keyrite-share:{ceremony}"))).unwrap())
        .collect();
    (shares, commitments)
}

/// An abuse run: refused, with `message`, and no login to the HSM was even attempted.
fn refused(env: &mut Env, name: &str, cards: &str, message: &str) {
    let flags_before = env.hsm_flags();
    let (out, bundle) = env.rehearse(
        "key-activation.toml",
        name,
        Some(&activation_answers(cards)),
    );
    let t = text(&out);
    assert!(!out.status.success(), "{name} must be refused: {t}");
    assert!(t.contains(message), "{name}: expected «{message}» in:\n{t}");
    let log = std::fs::read_to_string(bundle.join("audit.jsonl")).unwrap();
    assert!(
        !log.contains("open_and_login") && !log.contains("hsm_activated"),
        "{name}: the HSM must not be touched"
    );
    let flags_after = env.hsm_flags();
    assert_eq!(
        flags_before, flags_after,
        "{name}: the HSM's PIN flags changed"
    );
    for bad in ["count low", "final try", "locked"] {
        assert!(!flags_after.to_lowercase().contains(bad), "{flags_after}");
    }
    verify(&bundle);
}

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
    let (out, bundle) = env.rehearse("reshare.toml", "reshare", None);
    assert!(out.status.success(), "{}", text(&out));
    let r = report(&bundle);
    assert_eq!(r["quorum"]["threshold"], 3);
    assert_eq!(r["quorum"]["total"], 5);
    assert_eq!(
        r["quorum"]["retired_commitments_sha256"],
        commitments.sha256_hex().as_str()
    );
    // The old cards hold nothing any more; three new cards rebuild the same secret (same PIN).
    for card in OLD_CARDS {
        let list = env.p11(card, &env.pin(card), &["--list-objects", "--type", "data"]);
        assert!(
            !text(&list).contains("keyrite-share"),
            "{card}: {}",
            text(&list)
        );
    }
    let new_cards = [
        "example-custodian-card-n5",
        "example-custodian-card-n2",
        "example-custodian-card-n4",
    ];
    let (new_shares, new_commitments) = shares_of(&env, &new_cards, RESHARE_ID);
    let again = combine(&new_shares, &new_commitments).unwrap();
    assert_eq!(again.user_pin().expose_secret(), user_pin.expose_secret());
    assert!(
        combine(&new_shares[..2], &new_commitments).is_err(),
        "M-1 new shares are refused"
    );

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
    // Last, as it resets the user PIN: the derived SO PIN is the HSM's SO PIN.
    assert!(
        so_pin_works(&env, hsm, so_pin.expose_secret()),
        "derived SO PIN"
    );
}

/// Does the token accept `so_pin` as its SO PIN? Proven the only way pkcs11-tool offers (an SO
/// session must be R/W): C_InitPIN with a new user PIN, which must then log in. Changes the user PIN,
/// so it is the last check on a token.
fn so_pin_works(env: &Env, token: &str, so_pin: &str) -> bool {
    let new_pin = "Kq-owl-Lime-reset";
    let init = Command::new("pkcs11-tool")
        .args([
            "--module",
            SOFTHSM,
            "--token-label",
            token,
            "--login",
            "--login-type",
            "so",
        ])
        .args(["--so-pin", so_pin, "--init-pin", "--new-pin", new_pin])
        .env("SOFTHSM2_CONF", env.conf())
        .output()
        .unwrap();
    init.status.success()
        && env
            .p11(token, new_pin, &["--list-objects"])
            .status
            .success()
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

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

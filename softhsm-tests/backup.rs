//! Issue 12 on SoftHSM2 rehearsal tokens: root-ca-backup.toml (root key wrapped under a KEK split
//! 2-of-4 to the custodians' cards) → key-restore.toml into a second token → a signature by the
//! restored key verifies with openssl under the original root certificate → key-destruction.toml
//! destroys the key on the first token. Every bundle passes
//! `keyrite verify`; pkcs11-tool confirms from outside what each token holds. Then the refusals
//! (tampered blob, another key's certificate or blob, fewer than M KEK shares, a token whose SO
//! cannot import a trusted key) and the crash points (after the wrap / the unwrap, before the KEK
//! is destroyed), each leaving nothing behind.

mod common;

use common::quorum::{shares_of, verify, walk, Env};
use common::{ok, report, root, schema_valid, text};
use std::path::{Path, PathBuf};
use std::process::Output;

const KEY: &str = "example-root-backup-2026";
const BACKUP_ID: &str = "EXAMPLE-ROOT-BACKUP-2026";
const PRIMARY: &str = "example-root-hsm";
const TARGET: &str = "example-backup-hsm";
const CARDS: [&str; 4] = [
    "example-custodian-card-a",
    "example-custodian-card-b",
    "example-custodian-card-c",
    "example-custodian-card-d",
];

/// Everything pkcs11-tool lists on `token` (logged in with its rehearsal user PIN).
fn objects(env: &Env, token: &str) -> String {
    let out = env.p11(token, &env.pin(token), &["--list-objects"]);
    assert!(out.status.success(), "pkcs11-tool: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// No CKO_SECRET_KEY (no KEK) on the token, seen from outside.
fn no_kek(env: &Env, token: &str) {
    let listed = objects(env, token);
    assert!(
        !listed.contains("Secret Key Object"),
        "a secret key is left on {token}:\n{listed}"
    );
}

/// No key object labelled `label` on the target, and no secret key.
fn target_clean(env: &Env, label: &str) {
    let listed = objects(env, TARGET);
    assert!(
        !listed.contains(&format!("label:      {label}")),
        "objects of \"{label}\" are left on {TARGET}:\n{listed}"
    );
    no_kek(env, TARGET);
}

/// The key-restore.toml of the shipped scripts (with `edit`), next to the blob and certificate.
fn restore_script(
    env: &Env,
    name: &str,
    blob: &Path,
    cert: &Path,
    edit: impl Fn(String) -> String,
) -> PathBuf {
    let dir = env.dir.path().join(format!("{name}-inputs"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(blob, dir.join(format!("{KEY}.wrapped.bin"))).unwrap();
    std::fs::copy(cert, dir.join(format!("{KEY}.pem"))).unwrap();
    let shipped =
        std::fs::read_to_string(root().join("ceremony-scripts/key-restore.toml")).unwrap();
    let script = dir.join("key-restore.toml");
    std::fs::write(&script, edit(shipped)).unwrap();
    script
}

/// root-ca-backup.toml with its ceremony id and key label suffixed (a second backup on one env).
fn backup_variant(env: &Env, suffix: &str) -> PathBuf {
    let shipped =
        std::fs::read_to_string(root().join("ceremony-scripts/root-ca-backup.toml")).unwrap();
    let script = env.dir.path().join(format!("root-ca-backup{suffix}.toml"));
    std::fs::write(
        &script,
        shipped
            .replace(BACKUP_ID, &format!("{BACKUP_ID}{suffix}"))
            .replace(KEY, &format!("{KEY}{suffix}")),
    )
    .unwrap();
    script
}

fn backup(env: &mut Env, name: &str) -> PathBuf {
    let (out, bundle) = env.rehearse("root-ca-backup.toml", name, None);
    assert!(out.status.success(), "{}", text(&out));
    verify(&bundle);
    bundle
}

fn refused(out: &Output, message: &str) {
    assert!(!out.status.success(), "expected a refusal: {}", text(out));
    assert!(
        text(out).contains(message),
        "expected \"{message}\" in:\n{}",
        text(out)
    );
}

/// Rewrite the --env folder's record of a backup (the rehearsal's trusted source of its hashes),
/// as a forged or mistaken backup report would read.
fn edit_backup_record(env: &Env, ceremony: &str, field: &str, value: &str) {
    let path = env.env_dir().join("rehearsal.toml");
    let mut doc: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for b in doc["backups"].as_array_mut().unwrap() {
        if b["ceremony_id"].as_str() == Some(ceremony) {
            b[field] = toml::Value::String(value.into());
        }
    }
    std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
}

fn sha256_file(path: &Path) -> String {
    ok(&format!("sha256sum {}", path.display()))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn root_with_backup_then_restore_into_a_second_token_then_destruction_on_the_first() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let b = backup(&mut env, "backup");
    schema_valid(&b);
    let r = report(&b);
    let rec = &r["backups"][0];
    let blob = b.join(rec["blob_file"].as_str().unwrap());
    let cert = b.join(format!("artifacts/{KEY}.pem"));
    // The blob's hash by sha256sum; the key hash by openssl from the root certificate.
    assert_eq!(sha256_file(&blob), rec["blob_sha256"].as_str().unwrap());
    let key_hash = ok(&format!(
        "openssl x509 -in {} -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum",
        cert.display()
    ));
    assert!(key_hash.starts_with(rec["key_hash"].as_str().unwrap()));
    let a = &rec["attributes"];
    assert_eq!(a["extractable"], true);
    assert_eq!(a["wrap_with_trusted"], true);
    assert_eq!(a["never_extractable"], false);
    assert_eq!(a["sensitive"], true);
    assert!(rec["statement"]
        .as_str()
        .unwrap()
        .contains("false by design"));
    assert_eq!(rec["kek_split"]["threshold"], 2);
    assert_eq!(rec["kek_split"]["total"], 4);
    // From outside: the root key is extractable only by a trusted wrap, no KEK is left, and every
    // card holds a KEK share of this backup.
    let primary = objects(&env, PRIMARY);
    assert!(
        primary.contains("extractable") && !primary.contains("never extractable"),
        "{primary}"
    );
    no_kek(&env, PRIMARY);
    for card in CARDS {
        let held = env.data_objects(card);
        assert!(
            held.contains(&format!("keyrite-share:{BACKUP_ID}/kek")),
            "{card}: {held}"
        );
    }
    // Outside keyrite: two cards' KEK shares (read by pkcs11-tool) rebuild the KEK, and openssl's
    // RFC 5649 unwrap of the blob gives a private key whose public half has the root's key hash.
    let split = format!("{BACKUP_ID}/kek");
    let (shares, commitments) = shares_of(&env, &CARDS[2..], &split);
    let secret = keyrite::quorum::combine(&shares, &commitments).unwrap();
    let kek = secret.kek(&split).unwrap();
    let pk8 = env.dir.path().join("unwrapped.p8.der");
    ok(&format!(
        "openssl enc -d -id-aes256-wrap-pad -K {} -iv A65959A6 -in {} -out {}",
        hex::encode(kek.as_slice()),
        blob.display(),
        pk8.display()
    ));
    let unwrapped_hash = ok(&format!(
        "openssl pkey -inform DER -in {} -pubout -outform DER | sha256sum",
        pk8.display()
    ));
    assert!(
        unwrapped_hash.starts_with(rec["key_hash"].as_str().unwrap()),
        "{unwrapped_hash}"
    );
    std::fs::remove_file(&pk8).unwrap();
    let pdf = ok(&format!(
        "pdftotext -layout {} -",
        b.join("report.pdf").display()
    ));
    assert!(pdf.contains("Key backup and restore") && pdf.contains("false by design"));

    // Restore into a second rehearsal token.
    let script = restore_script(&env, "restore", &blob, &cert, |s| s);
    let (out, rb) = env.rehearse(script.to_str().unwrap(), "restore", None);
    assert!(out.status.success(), "{}", text(&out));
    verify(&rb);
    schema_valid(&rb);
    let rr = report(&rb);
    let restored = &rr["restores"][0];
    assert_eq!(restored["key_hash"], rec["key_hash"]);
    assert_eq!(restored["expected_key_hash"], rec["key_hash"]);
    assert_eq!(restored["attributes"]["sensitive"], true);
    assert_eq!(restored["attributes"]["extractable"], false);
    // The test signature of the restored key verifies with openssl under the ORIGINAL certificate.
    let signed = Env::log(&rb)
        .into_iter()
        .find(|e| e["event"]["kind"] == "test_message_signed")
        .expect("a test signature");
    let (msg, sig) = (rb.join("msg"), rb.join("sig.der"));
    std::fs::write(&msg, signed["event"]["message"].as_str().unwrap()).unwrap();
    std::fs::write(
        &sig,
        hex::decode(signed["event"]["signature"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let pubkey = rb.join("original.pub.pem");
    ok(&format!(
        "openssl x509 -in {} -noout -pubkey > {}",
        cert.display(),
        pubkey.display()
    ));
    let verified = ok(&format!(
        "openssl dgst -sha256 -verify {} -signature {} {}",
        pubkey.display(),
        sig.display(),
        msg.display()
    ));
    assert!(verified.contains("Verified OK"), "{verified}");
    // From outside: the restored key is sensitive and NOT extractable; no KEK on either token.
    let target = objects(&env, TARGET);
    let private = target
        .split("Private Key Object")
        .nth(1)
        .expect("a private key on the target");
    let access = private
        .lines()
        .find(|l| l.contains("Access:"))
        .unwrap_or_default();
    assert!(
        access.contains("sensitive") && !access.contains("extractable"),
        "{target}"
    );
    assert!(target.contains("Public Key Object"), "{target}");
    no_kek(&env, TARGET);
    no_kek(&env, PRIMARY);
    // Destruction on the first token (key-destruction.toml for this key): nothing of the key is
    // left there, while the restored copy on the second token stays.
    let shipped =
        std::fs::read_to_string(root().join("ceremony-scripts/key-destruction.toml")).unwrap();
    let destroy = env.dir.path().join("key-destruction.toml");
    std::fs::write(
        &destroy,
        shipped
            .replace("example-root-p256-2026", KEY)
            .replace("EXAMPLE-ROOT-P256-2026", BACKUP_ID),
    )
    .unwrap();
    let (out, db) = env.rehearse(destroy.to_str().unwrap(), "destroy", None);
    assert!(out.status.success(), "{}", text(&out));
    verify(&db);
    let primary = objects(&env, PRIMARY);
    assert!(
        !primary.contains(&format!("label:      {KEY}")),
        "{primary}"
    );
    let id = rec["key_id"].as_str().unwrap();
    assert!(!primary.contains(&format!("ID:         {id}")), "{primary}");
    assert!(objects(&env, TARGET).contains(&format!("label:      {KEY}")));
    no_kek(&env, PRIMARY);
    // The KEK never reaches a bundle file or keyrite's output, raw or as hex.
    let kek_hex = hex::encode(kek.as_slice());
    let mut scanned: Vec<Vec<u8>> = env.captures.clone();
    for bundle in [&b, &rb, &db] {
        scanned.extend(walk(bundle).iter().map(|f| std::fs::read(f).unwrap()));
    }
    for bytes in &scanned {
        assert!(
            !bytes.windows(32).any(|w| w == kek.as_slice()),
            "the KEK leaked"
        );
        assert!(
            !String::from_utf8_lossy(bytes).contains(&kek_hex),
            "the KEK leaked as hex"
        );
    }
}

#[test]
fn wrong_blobs_other_keys_and_too_few_cards_are_refused_with_nothing_left_on_the_target() {
    let Some(mut env) = Env::new() else {
        return;
    };
    let b = backup(&mut env, "backup");
    let blob = b.join(format!("artifacts/{KEY}.wrapped.bin"));
    let cert = b.join(format!("artifacts/{KEY}.pem"));

    // 1. A tampered blob: its SHA-256 differs from the backup's, refused before any card or HSM call.
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[20] ^= 0x01;
    let tampered = env.dir.path().join("tampered.bin");
    std::fs::write(&tampered, &bytes).unwrap();
    let script = restore_script(&env, "tampered", &tampered, &cert, |s| s);
    let (out, _) = env.rehearse(script.to_str().unwrap(), "tampered", None);
    refused(&out, "a wrong or tampered blob is refused");
    target_clean(&env, KEY);

    // 2. The same tampered blob with a backup record that vouches for it: the unwrap fails (RFC 5649
    // integrity), and nothing is left.
    edit_backup_record(&env, BACKUP_ID, "blob_sha256", &sha256_file(&tampered));
    let (out, bundle) = env.rehearse(script.to_str().unwrap(), "tampered-vouched", None);
    refused(&out, "does not unwrap under the rebuilt KEK");
    refused(&out, "nothing is left on the target");
    target_clean(&env, KEY);
    assert!(report(&bundle)["restores_undone"][0]["objects_left"] == 0);
    verify_aborted(&bundle);
    edit_backup_record(&env, BACKUP_ID, "blob_sha256", &sha256_file(&blob));

    // 3. Another key's certificate: refused before anything, by key hash.
    let other = env.dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    ok(&format!(
        "cd {} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.pem -out c.pem -subj /CN=other -days 1 2>/dev/null",
        other.display()
    ));
    let script = restore_script(&env, "other-cert", &blob, &other.join("c.pem"), |s| s);
    let (out, _) = env.rehearse(script.to_str().unwrap(), "other-cert", None);
    refused(&out, "the certificate of another key");
    target_clean(&env, KEY);

    // 4. A blob for another key: a second backup (its own KEK) restored against the first key's
    // certificate, with a backup record that claims the first key. It unwraps, but the unwrapped key
    // does not sign for the certificate: destroyed again, nothing left.
    let variant = backup_variant(&env, "-B");
    let (out, b2) = env.rehearse(variant.to_str().unwrap(), "backup-B", None);
    assert!(out.status.success(), "{}", text(&out));
    let key_a = report(&b)["backups"][0]["key_hash"]
        .as_str()
        .unwrap()
        .to_string();
    edit_backup_record(&env, &format!("{BACKUP_ID}-B"), "key_hash", &key_a);
    let blob_b = b2.join(format!("artifacts/{KEY}-B.wrapped.bin"));
    let script = restore_script(&env, "other-blob", &blob_b, &cert, |s| {
        s.replace(
            &format!("backup_ceremony = \"{BACKUP_ID}\""),
            &format!("backup_ceremony = \"{BACKUP_ID}-B\""),
        )
    });
    let (out, bundle) = env.rehearse(script.to_str().unwrap(), "other-blob", None);
    refused(&out, "a blob for another key");
    target_clean(&env, KEY);
    verify_aborted(&bundle);

    // 5. Fewer than M KEK shares: three cards lose their share; one card is not a quorum.
    for card in &CARDS[1..] {
        env.delete_object(card, &format!("keyrite-share:{BACKUP_ID}/kek"));
    }
    let script = restore_script(&env, "one-card", &blob, &cert, |s| s);
    let (out, bundle) = env.rehearse(script.to_str().unwrap(), "one-card", None);
    refused(&out, "only 1 of the 2 cards needed were accepted");
    target_clean(&env, KEY);
    let log = Env::log(&bundle);
    assert!(
        !log.iter().any(|e| e["event"]["operation"] == "import_kek"),
        "no KEK may reach the HSM without a quorum"
    );
}

/// An aborted (refused) bundle is intact and says so: `keyrite verify` exits 0.
fn verify_aborted(bundle: &Path) {
    verify(bundle);
    assert_eq!(report(bundle)["result"], "aborted");
}

#[test]
fn a_token_whose_security_officer_cannot_import_a_trusted_key_is_refused_before_the_key_exists() {
    let Some(mut env) = Env::new() else {
        return;
    };
    // Find the HSM call of the probe's trusted import in a dry run, then fail exactly that one.
    let (out, _) = env.rehearse_with(
        "root-ca-backup.toml",
        "list",
        None,
        &[("KEYRITE_TEST_HSM_FAULT", "list")],
    );
    assert!(out.status.success(), "{}", text(&out));
    let n = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| {
            l.strip_prefix("keyrite test hook: hsm call ")
                .and_then(|rest| rest.strip_suffix(" import_trusted_kek"))
                .map(str::to_string)
        })
        .expect("the probe imports a trusted key");
    let fresh = Env::new().unwrap();
    let mut env = fresh;
    let fault = format!("{n}:CKR_DEVICE_ERROR");
    let (out, bundle) = env.rehearse_with(
        "root-ca-backup.toml",
        "refused",
        None,
        &[("KEYRITE_TEST_HSM_FAULT", fault.as_str())],
    );
    refused(&out, "cannot hold a trusted key-encryption key, so the key cannot be backed up; nothing was generated");
    let listed = objects(&env, PRIMARY);
    assert!(!listed.contains("Private Key Object"), "{listed}");
    no_kek(&env, PRIMARY);
    for card in CARDS {
        assert!(!env.data_objects(card).contains("/kek"), "{card}");
    }
    verify_aborted(&bundle);
}

#[test]
fn a_kill_after_the_wrap_or_the_unwrap_leaves_no_kek_and_resume_says_what_to_do() {
    let Some(mut env) = Env::new() else {
        return;
    };
    // Backup killed after the wrap, before the KEK is destroyed.
    let point = "backup-root-key:before-destroy_kek";
    let killed = env.killed("root-ca-backup.toml", "killed", point, &[]);
    no_kek(&env, PRIMARY);
    let resumed = env.resume(&killed, &[], &[]);
    refused(&resumed, "had written shares of a new key-encryption key");
    refused(&resumed, "no KEK is on the token");
    let aborted = common::keyrite(&[
        "abort",
        killed.to_str().unwrap(),
        "--reason",
        "test: backup interrupted",
        "--env",
        env.env_dir().to_str().unwrap(),
    ]);
    assert!(aborted.status.success(), "{}", text(&aborted));
    verify_aborted(&killed);

    // A completed backup (another id and label), then its restore killed after the unwrap.
    let variant = backup_variant(&env, "-2");
    let (out, b) = env.rehearse(variant.to_str().unwrap(), "backup-2", None);
    assert!(out.status.success(), "{}", text(&out));
    let label = format!("{KEY}-2");
    let blob = b.join(format!("artifacts/{label}.wrapped.bin"));
    let cert = b.join(format!("artifacts/{label}.pem"));
    let script = restore_script(&env, "restore-2", &blob, &cert, |s| {
        s.replace(BACKUP_ID, &format!("{BACKUP_ID}-2"))
            .replace(&format!("{KEY}.wrapped.bin"), "BLOB")
            .replace(&format!("{KEY}.pem"), "CERT")
            .replace(KEY, &label)
            .replace("BLOB", &format!("{KEY}.wrapped.bin"))
            .replace("CERT", &format!("{KEY}.pem"))
    });
    let point = "restore-root-key:before-destroy_kek";
    let rb = env.killed(script.to_str().unwrap(), "restore-killed", point, &[]);
    no_kek(&env, TARGET);
    assert!(objects(&env, TARGET).contains(&format!("label:      {label}")));
    let resumed = env.resume(&rb, &[], &[]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    verify(&rb);
    let r = report(&rb);
    assert_eq!(r["restores_undone"][0]["objects_destroyed"], 2);
    assert_eq!(
        r["restores"][0]["key_hash"],
        report(&b)["backups"][0]["key_hash"]
    );
    let target = objects(&env, TARGET);
    assert_eq!(target.matches("Private Key Object").count(), 1, "{target}");
    no_kek(&env, TARGET);
}

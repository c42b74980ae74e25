//! Issue 12 on the other tokens: a root ceremony with `[backup]` through `keyrite run` is refused at
//! key generation, before the key exists, on Kryoptic (AES key wrap only as CKM_AES_KEY_WRAP_KWP,
//! which keyrite's PKCS#11 binding cannot call) and tpm2-pkcs11 (no AES key wrap at all).

use crate::common::text;
use crate::rig::{answers, run, script, verify, Backend, Kind, PIN};

fn backup_refused(kind: Kind) {
    let Some(b) = Backend::new(kind) else { return };
    b.token("example-root-hsm");
    let src = script("root-ca-backup.toml", &b, "example-root-hsm", |_| {});
    let (out, result) = run(&b, "backup", &src, &answers(&src, &[]));
    let t = text(&result);
    assert!(!result.status.success(), "{kind:?}: {t}");
    assert!(
        t.contains("offers no CKM_AES_KEY_WRAP_PAD") && t.contains("nothing was generated"),
        "{kind:?}: {t}"
    );
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    let failed = log
        .lines()
        .find(|l| l.contains("step_failed"))
        .unwrap_or_else(|| panic!("a failed step in {log}"));
    assert!(failed.contains("generate-root-key"), "{failed}");
    assert!(
        !log.contains("generate_key_pair"),
        "no key generation was even announced: {log}"
    );
    let objects = b.p11(&[
        "--token-label",
        "example-root-hsm",
        "--login",
        "--pin",
        PIN,
        "-O",
    ]);
    assert!(
        !text(&objects).contains("Private Key Object"),
        "{}",
        text(&objects)
    );
    verify(&out);
    eprintln!("{kind:?}: backup refused before the key exists");
}

#[test]
fn kryoptic_refuses_a_backup_before_the_key_exists() {
    backup_refused(Kind::Kryoptic);
}

#[test]
fn tpm2_refuses_a_backup_before_the_key_exists() {
    backup_refused(Kind::Tpm2);
}

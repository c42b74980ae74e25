//! Issue 12 on the other tokens: a root ceremony with `[backup]` through `keyrite run` is refused at
//! key generation, before the key exists, on Kryoptic (AES key wrap only as CKM_AES_KEY_WRAP_KWP,
//! which keyrite's PKCS#11 binding cannot call) and tpm2-pkcs11 (no AES key wrap at all).

use crate::common::text;
use crate::rig::{answers, refused_with_no_key, run, script, Backend, Kind};

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
    let log = refused_with_no_key(&b, &out, "generate-root-key");
    assert!(
        !log.contains("generate_key_pair"),
        "no key generation was even announced: {log}"
    );
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

//! The signing fallbacks on real tokens (see [`sign_fallbacks`]).

use crate::common::{self, text};
use crate::rig::{Backend, Kind, PIN};
use std::process::Command;

/// The signing fallbacks, forced on a real token ([`SignQuirks`]): RSA through CKM_RSA_PKCS over a
/// DigestInfo built on the host, and ECDSA signatures handed back as DER. Runs in a child process
/// (the `#[ignore]`d test below), because a module reads its configuration (SOFTHSM2_CONF,
/// KRYOPTIC_CONF, the TPM's variables) once per process.
fn sign_fallbacks(kind: Option<Kind>) {
    let (module, vars, _keep): (String, Vec<(String, String)>, Box<dyn std::any::Any>) = match kind
    {
        Some(kind) => {
            let Some(b) = Backend::new(kind) else { return };
            b.token("fallbacks");
            (b.module().to_string(), b.vars.clone(), Box::new(b))
        }
        None => {
            if !common::have("softhsm2-util") {
                return;
            }
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("tokens")).unwrap();
            let conf = dir.path().join("softhsm2.conf");
            std::fs::write(
                &conf,
                format!("directories.tokendir = {}/tokens\n", dir.path().display()),
            )
            .unwrap();
            let init = Command::new("softhsm2-util")
                .args(["--init-token", "--free", "--label", "fallbacks"])
                .args(["--so-pin", PIN, "--pin", PIN])
                .env("SOFTHSM2_CONF", &conf)
                .output()
                .unwrap();
            assert!(init.status.success(), "{}", text(&init));
            let vars = vec![("SOFTHSM2_CONF".into(), conf.display().to_string())];
            (
                "/usr/lib/softhsm/libsofthsm2.so".into(),
                vars,
                Box::new(dir),
            )
        }
    };
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "fallbacks::fallbacks_in_this_process",
            "--nocapture",
        ])
        .env("KEYRITE_FALLBACK_MODULE", module)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let t = text(&child);
    assert!(
        child.status.success() && t.contains("1 passed"),
        "{kind:?}: {t}"
    );
}

#[test]
fn sign_fallbacks_on_softhsm() {
    sign_fallbacks(None);
}

#[test]
fn sign_fallbacks_on_kryoptic() {
    sign_fallbacks(Some(Kind::Kryoptic));
}

#[test]
fn sign_fallbacks_on_tpm2() {
    sign_fallbacks(Some(Kind::Tpm2));
}

/// The child of [`sign_fallbacks`]: the token "fallbacks" of KEYRITE_FALLBACK_MODULE, PIN [`PIN`].
#[test]
#[ignore = "run by sign_fallbacks_on_* in a process of its own"]
fn fallbacks_in_this_process() {
    use keyrite::hsm::capabilities::Mech;
    use keyrite::hsm::pkcs11::{Pkcs11Hsm, SignQuirks};
    use keyrite::hsm::{Hsm, SignMechanism};
    use keyrite::script::{KeyAlgorithm, TokenSelector};
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use rsa::signature::Verifier;
    use sha2::Digest;
    use spki::DecodePublicKey;

    let module = std::env::var("KEYRITE_FALLBACK_MODULE").unwrap();
    let selector = TokenSelector {
        label: Some("fallbacks".into()),
        ..Default::default()
    };
    let mut hsm = Pkcs11Hsm::open(&module, &selector).unwrap();
    hsm.login(&secrecy::SecretString::from(PIN)).unwrap();
    let data = b"to be signed: the TBS of a root certificate";

    let rsa = hsm
        .generate_key_pair("fb-rsa", KeyAlgorithm::Rsa3072)
        .unwrap();
    let direct = hsm
        .sign("fb-rsa", SignMechanism::RsaPkcs1Sha256, data)
        .unwrap();
    hsm.force_sign_quirks(SignQuirks {
        no_hash_and_sign: true,
        der_ecdsa: true,
    });
    let offered = hsm.mechanisms().unwrap().unwrap();
    assert!(
        offered.iter().all(|o| o.mech != Mech::Sha256RsaPkcs),
        "{offered:?}"
    );
    let fallback = hsm
        .sign("fb-rsa", SignMechanism::RsaPkcs1Sha256, data)
        .unwrap();
    // PKCS#1 v1.5 is deterministic: the host-built DigestInfo gives the token's own signature.
    assert_eq!(
        fallback, direct,
        "CKM_RSA_PKCS over the DigestInfo = CKM_SHA256_RSA_PKCS"
    );
    let key = rsa::PublicKey::from_public_key_der(&rsa.spki_der).unwrap();
    let verifier = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
    let sig = rsa::pkcs1v15::Signature::try_from(fallback.as_slice()).unwrap();
    verifier.verify(data, &sig).unwrap();

    let ec = hsm.generate_key_pair("fb-ec", KeyAlgorithm::P256).unwrap();
    let digest = sha2::Sha256::digest(data);
    let raw = hsm
        .sign("fb-ec", SignMechanism::EcdsaPrehashed, &digest)
        .unwrap();
    assert_eq!(raw.len(), 64, "DER from the token comes back as r‖s");
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(&ec.spki_der).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&raw).unwrap();
    key.verify_prehash(&digest, &sig).unwrap();
    hsm.logout().unwrap();
}

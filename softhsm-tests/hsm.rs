//! `Pkcs11Hsm` against a real SoftHSM2, checked with tools keyrite's authors did not write: openssl
//! (key hashes, signatures) and pkcs11-tool (objects on the token).
//!
//! SoftHSM reads SOFTHSM2_CONF once per process, at C_Initialize, so one private token directory
//! serves the whole test binary; each test initialises its own token so tests run in parallel.

use keyrite::hsm::pkcs11::{init_token, list_tokens, Pkcs11Hsm};
use keyrite::hsm::spki::key_hash;
use keyrite::hsm::{Hsm, KeyPairInfo, SignMechanism};
use keyrite::script::{KeyAlgorithm, TokenSelector};
use secrecy::SecretString;
use sha2::{Digest, Sha256, Sha384};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

const SO_PIN: &str = "12345678";
const USER_PIN: &str = "1234";
const P11_KIT_PROXY: &str = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so";

/// The proxy path, after the rig has set SOFTHSM2_CONF: without it SoftHSM would use the system
/// token directory.
fn proxy() -> &'static str {
    rig();
    P11_KIT_PROXY
}

struct Rig {
    dir: PathBuf,
    module: String,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        // Statics are never dropped, so each run's directory outlives it: sweep those of earlier runs
        // (an hour old leaves any concurrent run alone).
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for old in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
            let stale = old
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 3600));
            if stale
                && old
                    .file_name()
                    .to_string_lossy()
                    .starts_with("softhsm-hsm-")
            {
                let _ = std::fs::remove_dir_all(old.path());
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("softhsm-hsm-")
            .tempdir_in(tmp)
            .unwrap()
            .keep();
        std::fs::create_dir_all(dir.join("tokens")).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.join("tokens").display()
            ),
        )
        .unwrap();
        // Before any PKCS#11 call in this process, and inherited by pkcs11-tool children.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        let module = std::env::var("KEYRITE_TEST_MODULE")
            .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into());
        Rig { dir, module }
    })
}

struct Token {
    label: String,
    serial: String,
}

fn pin() -> SecretString {
    SecretString::from(USER_PIN)
}

/// A freshly initialised token with a label unique in this process.
fn fresh_token(prefix: &str) -> Token {
    static N: AtomicUsize = AtomicUsize::new(0);
    let label = format!("{prefix} {}", N.fetch_add(1, Ordering::SeqCst));
    let serial = init_token(&rig().module, &label, &SecretString::from(SO_PIN), &pin()).unwrap();
    Token { label, serial }
}

fn by_label(label: &str) -> TokenSelector {
    TokenSelector {
        label: Some(label.into()),
        ..Default::default()
    }
}

fn open_logged_in(prefix: &str) -> (Token, Pkcs11Hsm) {
    let token = fresh_token(prefix);
    let mut hsm = Pkcs11Hsm::open(&rig().module, &by_label(&token.label)).unwrap();
    hsm.login(&pin()).unwrap();
    (token, hsm)
}

fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = rig()
        .dir
        .join(format!("{}-{name}", N.fetch_add(1, Ordering::SeqCst)));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The key hash exactly as an auditor computes it: `openssl pkey -pubin -outform DER | sha256sum`.
fn openssl_key_hash(spki_der: &[u8]) -> String {
    let der = scratch("spki.der", spki_der);
    let (ok, out) = run(Command::new("sh")
        .arg("-c")
        .arg("openssl pkey -pubin -inform DER -outform DER -in \"$1\" | sha256sum")
        .arg("sh")
        .arg(&der));
    assert!(ok, "{out}");
    out.split_whitespace().next().unwrap().to_string()
}

fn pem_of(spki_der: &[u8]) -> PathBuf {
    let der = scratch("spki.der", spki_der);
    let pem = der.with_extension("pem");
    let (ok, out) = run(Command::new("openssl")
        .args(["pkey", "-pubin", "-inform", "DER", "-in"])
        .arg(&der)
        .arg("-out")
        .arg(&pem));
    assert!(ok, "{out}");
    pem
}

/// `openssl dgst -<hash> -verify pub.pem -signature sig msg`; `sig_der` is DER for ECDSA.
fn openssl_verifies(spki_der: &[u8], hash: &str, msg: &[u8], sig_der: &[u8]) -> bool {
    let (pem, msg, sig) = (
        pem_of(spki_der),
        scratch("msg", msg),
        scratch("sig", sig_der),
    );
    let (ok, out) = run(Command::new("openssl")
        .args(["dgst", &format!("-{hash}"), "-verify"])
        .arg(&pem)
        .arg("-signature")
        .arg(&sig)
        .arg(&msg));
    assert_eq!(ok, out.contains("Verified OK"), "{out}");
    ok
}

/// How many objects pkcs11-tool (OpenSC) sees with this label.
fn pkcs11_tool_label_count(token: &str, label: &str) -> usize {
    let (ok, out) = run(Command::new("pkcs11-tool")
        .args([
            "--module",
            &rig().module,
            "--token-label",
            token,
            "-l",
            "--pin",
            USER_PIN,
        ])
        .arg("--list-objects"));
    assert!(ok, "{out}");
    out.lines()
        .filter(|l| l.trim_start().strip_prefix("label:").map(str::trim) == Some(label))
        .count()
}

fn assert_key_evidence(info: &KeyPairInfo, algorithm: KeyAlgorithm) {
    assert_eq!(info.algorithm, algorithm);
    assert!(
        info.attributes.prove_in_hsm_generation(),
        "{:?}",
        info.attributes
    );
    assert_eq!(info.id_hex.len(), 32, "16-byte CKA_ID");
    let spki = <spki::SubjectPublicKeyInfoRef as der::Decode>::from_der(&info.spki_der).unwrap();
    let expected_oid = if algorithm.is_rsa() {
        "1.2.840.113549.1.1.1"
    } else {
        "1.2.840.10045.2.1"
    };
    assert_eq!(spki.algorithm.oid.to_string(), expected_oid);
    assert_eq!(key_hash(&info.spki_der), openssl_key_hash(&info.spki_der));
}

/// Sign `msg` as keyrite does and return what openssl verifies (DER for ECDSA).
fn sign_for_openssl(hsm: &mut Pkcs11Hsm, info: &KeyPairInfo, hash: &str, msg: &[u8]) -> Vec<u8> {
    match (info.algorithm, hash) {
        (alg, "sha256") if alg.is_rsa() => hsm
            .sign(&info.label, SignMechanism::RsaPkcs1Sha256, msg)
            .unwrap(),
        (alg, "sha384") if alg.is_rsa() => hsm
            .sign(&info.label, SignMechanism::RsaPkcs1Sha384, msg)
            .unwrap(),
        (KeyAlgorithm::P256, "sha256") => {
            let rs = hsm
                .sign(
                    &info.label,
                    SignMechanism::EcdsaPrehashed,
                    &Sha256::digest(msg),
                )
                .unwrap();
            assert_eq!(rs.len(), 64, "raw r‖s");
            p256::ecdsa::Signature::from_slice(&rs)
                .unwrap()
                .to_der()
                .as_bytes()
                .to_vec()
        }
        (KeyAlgorithm::P384, "sha384") => {
            let rs = hsm
                .sign(
                    &info.label,
                    SignMechanism::EcdsaPrehashed,
                    &Sha384::digest(msg),
                )
                .unwrap();
            assert_eq!(rs.len(), 96, "raw r‖s");
            p384::ecdsa::Signature::from_slice(&rs)
                .unwrap()
                .to_der()
                .as_bytes()
                .to_vec()
        }
        other => panic!("no test mechanism for {other:?}"),
    }
}

fn assert_signs(hsm: &mut Pkcs11Hsm, info: &KeyPairInfo, hash: &str) {
    let msg = format!("to be signed by {} with {hash}", info.label).into_bytes();
    let sig = sign_for_openssl(hsm, info, hash, &msg);
    assert!(openssl_verifies(&info.spki_der, hash, &msg, &sig));
    let mut tampered = msg.clone();
    tampered[0] ^= 1;
    assert!(!openssl_verifies(&info.spki_der, hash, &tampered, &sig));
}

#[test]
fn opens_by_label_serial_and_uri() {
    let token = fresh_token("open");
    let module = &rig().module;
    let hsm = Pkcs11Hsm::open(module, &by_label(&token.label)).unwrap();
    let id = hsm.identity().clone();
    assert_eq!(id.token_label, token.label);
    assert_eq!(id.serial, token.serial);
    assert_eq!(id.manufacturer, "SoftHSM project");
    assert_eq!(id.model, "SoftHSM v2");
    assert_eq!(id.library_manufacturer, "SoftHSM");
    assert_eq!(id.library_description, "Implementation of PKCS11");
    assert_eq!(id.module_path, *module);
    for v in [
        &id.library_version,
        &id.hardware_version,
        &id.firmware_version,
    ] {
        let (major, minor) = v.split_once('.').unwrap();
        assert!(
            major.parse::<u8>().is_ok() && minor.parse::<u8>().is_ok(),
            "{v}"
        );
    }

    let by_serial = TokenSelector {
        serial: Some(token.serial.clone()),
        ..Default::default()
    };
    assert_eq!(Pkcs11Hsm::open(module, &by_serial).unwrap().identity(), &id);

    // The label has a space, so the URI needs %-encoding; the pin-value query must be ignored.
    let uri = format!(
        "pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;serial={};token={}?pin-value=0000",
        token.serial,
        token.label.replace(' ', "%20")
    );
    let by_uri = TokenSelector {
        uri: Some(uri),
        ..Default::default()
    };
    assert_eq!(Pkcs11Hsm::open(module, &by_uri).unwrap().identity(), &id);

    assert!(list_tokens(module).unwrap().contains(&id));
}

#[test]
fn unknown_token_error_lists_the_tokens_seen() {
    let token = fresh_token("seen");
    let err = Pkcs11Hsm::open(&rig().module, &by_label("no such token"))
        .err()
        .unwrap();
    assert_eq!(err.function, "select token");
    assert!(
        err.what
            .contains("no token matches label \"no such token\""),
        "{err}"
    );
    let listed = format!("label \"{}\" serial \"{}\"", token.label, token.serial);
    assert!(err.what.contains(&listed), "{err}");
}

#[test]
fn missing_module_error_names_the_package() {
    let sel = by_label("x");
    let err = Pkcs11Hsm::open("/nonexistent/softhsm/libsofthsm2.so", &sel)
        .err()
        .unwrap();
    assert!(err.what.contains("does not exist"), "{err}");
    assert!(err.fix.contains("softhsm2"), "{err}");
    let err = Pkcs11Hsm::open("/nonexistent/vendor/libcs_pkcs11.so", &sel)
        .err()
        .unwrap();
    assert!(
        err.what.contains("does not exist") && !err.fix.contains("softhsm"),
        "{err}"
    );
}

#[test]
fn wrong_pin_is_reported_as_ckr_pin_incorrect() {
    let token = fresh_token("pin");
    let mut hsm = Pkcs11Hsm::open(&rig().module, &by_label(&token.label)).unwrap();
    let err = hsm.login(&SecretString::from("98765")).unwrap_err();
    assert_eq!(
        (err.function.as_str(), err.ckr.as_str()),
        ("C_Login", "CKR_PIN_INCORRECT")
    );
    assert!(err.fix.contains("PIN"), "{err}");
    assert!(
        !err.to_string().contains("98765"),
        "the PIN leaked into the error: {err}"
    );
    hsm.login(&pin()).unwrap();
    // Logging in again re-checks the PIN instead of reporting "already logged in".
    hsm.login(&pin()).unwrap();
    assert_eq!(
        hsm.login(&SecretString::from("98765")).unwrap_err().ckr,
        "CKR_PIN_INCORRECT"
    );
    hsm.logout().unwrap();
    hsm.logout().unwrap();
}

#[test]
fn operations_need_login() {
    let token = fresh_token("nologin");
    let mut hsm = Pkcs11Hsm::open(&rig().module, &by_label(&token.label)).unwrap();
    let err = hsm.generate_key_pair("k", KeyAlgorithm::P256).unwrap_err();
    assert!(err.what.contains("not logged in"), "{err}");
    assert!(err.fix.starts_with("log in"), "{err}");
}

#[test]
fn generates_p256_and_p384_in_the_hsm() {
    let (token, mut hsm) = open_logged_in("ec");
    for (label, alg, hash) in [
        ("p256", KeyAlgorithm::P256, "sha256"),
        ("p384", KeyAlgorithm::P384, "sha384"),
    ] {
        let info = hsm.generate_key_pair(label, alg).unwrap();
        assert_eq!(info.label, label);
        assert_key_evidence(&info, alg);
        assert_signs(&mut hsm, &info, hash);
        assert_eq!(
            pkcs11_tool_label_count(&token.label, label),
            2,
            "private + public"
        );
    }
}

#[test]
fn generates_rsa_3072_and_signs_with_both_hashes() {
    let (_token, mut hsm) = open_logged_in("rsa3072");
    let info = hsm
        .generate_key_pair("root", KeyAlgorithm::Rsa3072)
        .unwrap();
    assert_key_evidence(&info, KeyAlgorithm::Rsa3072);
    assert_signs(&mut hsm, &info, "sha256");
    assert_signs(&mut hsm, &info, "sha384");
}

#[test]
fn generates_rsa_4096() {
    let (_token, mut hsm) = open_logged_in("rsa4096");
    let info = hsm
        .generate_key_pair("root", KeyAlgorithm::Rsa4096)
        .unwrap();
    assert_key_evidence(&info, KeyAlgorithm::Rsa4096);
    assert_signs(&mut hsm, &info, "sha384");
}

#[test]
fn duplicate_label_is_refused_and_nothing_is_created() {
    let (token, mut hsm) = open_logged_in("dup");
    let first = hsm.generate_key_pair("root", KeyAlgorithm::P256).unwrap();
    assert!(hsm.label_exists("root").unwrap());
    assert!(!hsm.label_exists("other").unwrap());
    let err = hsm
        .generate_key_pair("root", KeyAlgorithm::P384)
        .unwrap_err();
    assert!(
        err.what.contains("already has an object labelled \"root\""),
        "{err}"
    );
    assert!(err.what.contains("nothing was generated"), "{err}");
    assert_eq!(
        pkcs11_tool_label_count(&token.label, "root"),
        2,
        "still one private + one public"
    );
    assert_eq!(hsm.key_pair("root").unwrap(), first);
}

#[test]
fn key_pair_is_found_again_after_logout_and_login() {
    let (_token, mut hsm) = open_logged_in("relogin");
    let made = hsm.generate_key_pair("root", KeyAlgorithm::P256).unwrap();
    hsm.logout().unwrap();
    // The private key is invisible now: say "log in", not "no such key".
    let err = hsm.key_pair("root").unwrap_err();
    assert!(err.what.contains("not logged in"), "{err}");
    assert!(
        hsm.label_exists("root").unwrap(),
        "the public half stays visible"
    );
    hsm.login(&pin()).unwrap();
    assert_eq!(hsm.key_pair("root").unwrap(), made);
    assert_signs(&mut hsm, &made, "sha256");
}

#[test]
fn missing_key_and_misused_mechanisms_are_reported() {
    let (_token, mut hsm) = open_logged_in("misuse");
    let err = hsm.key_pair("absent").unwrap_err();
    assert!(
        err.what.contains("no private key labelled \"absent\""),
        "{err}"
    );
    let err = hsm
        .sign("absent", SignMechanism::RsaPkcs1Sha256, b"m")
        .unwrap_err();
    assert!(
        err.what.contains("no private key labelled \"absent\""),
        "{err}"
    );
    hsm.generate_key_pair("ec", KeyAlgorithm::P256).unwrap();
    // ECDSA over a whole message would be truncated into a valid-looking signature: refused.
    let err = hsm
        .sign("ec", SignMechanism::EcdsaPrehashed, b"not a digest")
        .unwrap_err();
    assert!(err.what.contains("digest"), "{err}");
    // SoftHSM itself would answer CKR_GENERAL_ERROR here; keyrite names the real problem.
    let err = hsm
        .sign("ec", SignMechanism::RsaPkcs1Sha256, b"m")
        .unwrap_err();
    assert!(err.what.contains("is not an RSA key"), "{err}");
}

#[test]
fn random_comes_from_the_token() {
    let (_token, mut hsm) = open_logged_in("rng");
    let (a, b) = (hsm.random(32).unwrap(), hsm.random(32).unwrap());
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);
}

#[test]
fn tokens_are_provisioned_and_used_from_several_threads() {
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                let (token, mut hsm) = open_logged_in("thread");
                let info = hsm.generate_key_pair("k", KeyAlgorithm::P256).unwrap();
                assert!(info.attributes.prove_in_hsm_generation());
                token.serial
            })
        })
        .collect();
    let mut serials: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 4, "each thread got its own token");
}

#[test]
fn init_token_refuses_a_duplicate_label() {
    let token = fresh_token("twice");
    let err = init_token(
        &rig().module,
        &token.label,
        &SecretString::from(SO_PIN),
        &pin(),
    )
    .unwrap_err();
    assert!(err.what.contains("already exists"), "{err}");
    for bad in ["x".repeat(33), "trailing ".into(), String::new()] {
        let so = SecretString::from(SO_PIN);
        assert!(
            init_token(&rig().module, &bad, &so, &pin()).is_err(),
            "{bad:?}"
        );
    }
}

/// keyrite depends on PKCS#11 alone: the same calls through p11-kit's proxy module, which loads
/// SoftHSM from /usr/share/p11-kit/modules/softhsm2.module in this process.
#[test]
fn works_through_the_p11_kit_proxy() {
    if !Path::new(P11_KIT_PROXY).exists() {
        eprintln!("skipped: {P11_KIT_PROXY} is not installed");
        return;
    }
    let token = fresh_token("proxy");
    let mut hsm = Pkcs11Hsm::open(proxy(), &by_label(&token.label)).unwrap();
    assert_eq!(hsm.identity().serial, token.serial);
    assert_eq!(hsm.identity().model, "SoftHSM v2");
    hsm.login(&pin()).unwrap();
    let info = hsm
        .generate_key_pair("via-proxy", KeyAlgorithm::P256)
        .unwrap();
    assert_key_evidence(&info, KeyAlgorithm::P256);
    assert_signs(&mut hsm, &info, "sha256");
    // The direct module sees the same key, and the same SoftHSM instance: login state is per process
    // and token, so the proxy's login already covers this session.
    let mut direct = Pkcs11Hsm::open(&rig().module, &by_label(&token.label)).unwrap();
    assert_eq!(
        direct.key_pair("via-proxy").unwrap().spki_der,
        info.spki_der
    );
}

/// The reverse order in a process of its own: p11-kit loads and initialises SoftHSM first, and the
/// direct module (C_Initialize → CKR_CRYPTOKI_ALREADY_INITIALIZED, tolerated) comes second.
#[test]
fn p11_kit_proxy_first_in_a_fresh_process() {
    if !Path::new(P11_KIT_PROXY).exists() {
        eprintln!("skipped: {P11_KIT_PROXY} is not installed");
        return;
    }
    let (ok, out) = run(Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "proxy_first_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_remove("SOFTHSM2_CONF"));
    assert!(ok && out.contains("1 passed"), "{out}");
}

#[test]
#[ignore = "run by p11_kit_proxy_first_in_a_fresh_process in a process of its own"]
fn proxy_first_child() {
    let label = "proxy first";
    let serial = init_token(proxy(), label, &SecretString::from(SO_PIN), &pin()).unwrap();
    let tokens = std::fs::read_dir(rig().dir.join("tokens")).unwrap();
    assert_eq!(
        tokens.count(),
        1,
        "the token is in the private token directory"
    );
    let mut hsm = Pkcs11Hsm::open(proxy(), &by_label(label)).unwrap();
    assert_eq!(hsm.identity().serial, serial);
    hsm.login(&pin()).unwrap();
    let info = hsm.generate_key_pair("root", KeyAlgorithm::P384).unwrap();
    assert_key_evidence(&info, KeyAlgorithm::P384);
    assert_signs(&mut hsm, &info, "sha384");
    let mut direct = Pkcs11Hsm::open(&rig().module, &by_label(label)).unwrap();
    direct.login(&pin()).unwrap();
    assert_eq!(direct.key_pair("root").unwrap(), info);
}

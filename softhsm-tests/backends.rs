//! The shipped ceremonies through `keyrite run` on two PKCS#11 implementations besides SoftHSM2:
//! Kryoptic 1.5.4 (a Rust soft token built from crates.io by softhsm-tests/backends/build-kryoptic.sh)
//! and tpm2-pkcs11 over swtpm and tpm2-abrmd (softhsm-tests/backends/tpm2.sh). Tokens are made by
//! pkcs11-tool, not by keyrite; every bundle is checked with `keyrite verify`, every root with
//! `openssl verify -x509_strict` and openssl's key hash. Outside CI a missing backend skips with a
//! message; with KEYRITE_REQUIRE_EXTERNAL=1 (run-all.sh) it fails.

mod common;

use common::{root, sh, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Every PIN of these runs: HSM user and SO PINs (until the split replaces them), and the cards'.
/// Kryoptic wants at least 8 characters.
const PIN: &str = "24681357";
const TPM2_MODULE: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so";
const KRYOPTIC_SLOTS: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Kryoptic,
    Tpm2,
}

/// One backend instance, private to a test: its module, the environment its module reads, and (for
/// the TPM) the daemons tpm2.sh started, stopped by PID on drop.
struct Backend {
    kind: Kind,
    module: PathBuf,
    vars: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

fn missing(what: &str) -> Option<Backend> {
    assert!(
        std::env::var_os("KEYRITE_REQUIRE_EXTERNAL").is_none(),
        "{what} is required in CI: run softhsm-tests/setup.sh"
    );
    eprintln!("skipping: {what} is not installed (softhsm-tests/setup.sh installs it)");
    None
}

impl Backend {
    fn new(kind: Kind) -> Option<Backend> {
        if !common::have("pkcs11-tool") || !common::have("openssl") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        match kind {
            Kind::Kryoptic => {
                let module = match std::env::var_os("KEYRITE_KRYOPTIC_MODULE") {
                    Some(m) => PathBuf::from(m),
                    None => {
                        let cache = std::env::var_os("XDG_CACHE_HOME")
                            .map(PathBuf::from)
                            .or_else(|| {
                                std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache"))
                            })
                            .unwrap_or_default();
                        cache.join("keyrite/kryoptic/libkryoptic_pkcs11-1.5.4.so")
                    }
                };
                if !module.is_file() {
                    return missing(&format!("Kryoptic ({})", module.display()));
                }
                // Fixed slots, one SQLite file each; pkcs11-tool initialises the ones a test needs.
                let mut conf = String::new();
                for slot in 1..=KRYOPTIC_SLOTS {
                    conf.push_str(&format!(
                        "[[slots]]\nslot = {slot}\ndbtype = \"sqlite\"\ndbargs = \"{}/token{slot}.sql\"\n",
                        dir.path().display()
                    ));
                }
                let conf_path = dir.path().join("kryoptic.conf");
                std::fs::write(&conf_path, conf).unwrap();
                Some(Backend {
                    kind,
                    module,
                    vars: vec![("KRYOPTIC_CONF".into(), conf_path.display().to_string())],
                    dir,
                })
            }
            Kind::Tpm2 => {
                if !Path::new(TPM2_MODULE).is_file() || !common::have("swtpm") {
                    return missing("tpm2-pkcs11 with swtpm");
                }
                let started = Command::new("bash")
                    .arg(root().join("softhsm-tests/backends/tpm2.sh"))
                    .arg("start")
                    .arg(dir.path())
                    .output()
                    .unwrap();
                assert!(
                    started.status.success(),
                    "tpm2.sh start: {}",
                    text(&started)
                );
                let vars = String::from_utf8_lossy(&started.stdout)
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                Some(Backend {
                    kind,
                    module: TPM2_MODULE.into(),
                    vars,
                    dir,
                })
            }
        }
    }

    fn module(&self) -> &str {
        self.module.to_str().unwrap()
    }

    fn p11(&self, args: &[&str]) -> Output {
        Command::new("pkcs11-tool")
            .args(["--module", self.module()])
            .args(args)
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("pkcs11-tool runs")
    }

    /// The first slot without an initialised token, as pkcs11-tool -L lists it (Kryoptic: one of
    /// its fixed slots; tpm2-pkcs11: the empty slot it always offers).
    fn free_slot(&self) -> String {
        let listed = self.p11(&["-L"]);
        let listing = String::from_utf8_lossy(&listed.stdout).to_string();
        let mut slot = None;
        for line in listing.lines() {
            if let Some(rest) = line.strip_prefix("Slot ") {
                slot = rest
                    .split_once("(0x")
                    .and_then(|(_, id)| id.split_once(')'))
                    .map(|(id, _)| id.to_string());
            } else if line.contains("token state:") && line.contains("uninitialized") {
                if let Some(id) = slot {
                    return format!("0x{id}");
                }
            }
        }
        panic!("{:?} shows no free slot:\n{listing}", self.kind)
    }

    /// A token made the way an administrator would: pkcs11-tool's C_InitToken, then C_InitPIN as SO.
    fn token(&self, label: &str) {
        let slot = self.free_slot();
        let init = self.p11(&[
            "--slot",
            &slot,
            "--init-token",
            "--label",
            label,
            "--so-pin",
            PIN,
        ]);
        assert!(init.status.success(), "init {label}: {}", text(&init));
        let pin = self.p11(&[
            "--token-label",
            label,
            "--login",
            "--login-type",
            "so",
            "--so-pin",
            PIN,
            "--init-pin",
            "--pin",
            PIN,
        ]);
        assert!(pin.status.success(), "init PIN of {label}: {}", text(&pin));
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if self.kind == Kind::Tpm2 {
            let _ = Command::new("bash")
                .arg(root().join("softhsm-tests/backends/tpm2.sh"))
                .arg("stop")
                .arg(self.dir.path())
                .output();
        }
    }
}

/// A shipped script made runnable here: medium level (this machine is online; medium records that
/// as a warning), no personal cards, the backend's module and token, and `edit` for the rest.
fn script(name: &str, backend: &Backend, hsm: &str, edit: impl FnOnce(&mut toml::Table)) -> String {
    let text = std::fs::read_to_string(root().join("ceremony-scripts").join(name)).unwrap();
    let mut s: toml::Table = toml::from_str(&text).unwrap();
    s["ceremony"]["security_level"] = "medium".into();
    for p in s["participants"].as_array_mut().unwrap() {
        p.as_table_mut().unwrap().remove("card");
    }
    s["hsm"]["module"] = backend.module().into();
    s["hsm"]["token"] =
        toml::Value::Table([("label".to_string(), hsm.into())].into_iter().collect());
    edit(&mut s);
    toml::to_string(&s).unwrap()
}

/// Keep the first `n` cards of a card list (medium allows N = M), with their holders only among the
/// custodians.
fn keep_cards(s: &mut toml::Table, n: usize) {
    let q = s["quorum"].as_table_mut().unwrap();
    q["cards"].as_array_mut().unwrap().truncate(n);
    if let Some(r) = q.get_mut("reshare").and_then(|r| r.as_table_mut()) {
        r["threshold"] = 2.into();
        r["cards"].as_array_mut().unwrap().truncate(n);
    }
    let holders: Vec<String> = ["cards"]
        .iter()
        .flat_map(|_| {
            let mut h = Vec::new();
            for list in [
                q.get("cards"),
                q.get("reshare").and_then(|r| r.get("cards")),
            ]
            .into_iter()
            .flatten()
            {
                for c in list.as_array().unwrap() {
                    h.push(c["holder"].as_str().unwrap().to_string());
                }
            }
            h
        })
        .collect();
    s["participants"].as_array_mut().unwrap().retain(|p| {
        p["role"].as_str() != Some("custodian")
            || holders.iter().any(|h| p["name"].as_str() == Some(h))
    });
}

fn card_labels(s: &toml::Table, reshare: bool) -> Vec<String> {
    let q = &s["quorum"];
    let list = if reshare {
        &q["reshare"]["cards"]
    } else {
        &q["cards"]
    };
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["token"]["label"].as_str().unwrap().to_string())
        .collect()
}

/// Confirmations as the room gives them: every participant holding a role the step names, confirming
/// or witnessing; custodian cards presented at the steps that ask for them.
fn answers(script_text: &str, present: &[(&str, &[String])]) -> String {
    let s: toml::Table = toml::from_str(script_text).unwrap();
    let mut a = String::new();
    for step in s["steps"].as_array().unwrap() {
        let roles: Vec<&str> = ["confirm_by", "witnessed_by"]
            .iter()
            .filter_map(|k| step.get(*k))
            .flat_map(|v| v.as_array().unwrap().iter().map(|r| r.as_str().unwrap()))
            .collect();
        let who: Vec<String> = s["participants"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| roles.contains(&p["role"].as_str().unwrap()))
            .map(|p| format!("\"{}\"", p["name"].as_str().unwrap()))
            .collect();
        a.push_str(&format!(
            "[[steps]]\nid = \"{}\"\nconfirm = [{}]\n\n",
            step["id"].as_str().unwrap(),
            who.join(", ")
        ));
    }
    for (step, cards) in present {
        let list: Vec<String> = cards
            .iter()
            .map(|c| format!("{{ card = \"{c}\" }}"))
            .collect();
        a.push_str(&format!(
            "[[cards]]\nstep = \"{step}\"\npresent = [{}]\n\n",
            list.join(", ")
        ));
    }
    a
}

/// `keyrite run` on the backend, the PINs typed on stdin; returns the bundle and the run's output.
fn run(backend: &Backend, name: &str, script_text: &str, answers_text: &str) -> (PathBuf, Output) {
    let dir = backend.dir.path();
    let script_path = dir.join(format!("{name}.toml"));
    std::fs::write(&script_path, script_text).unwrap();
    let answers_path = dir.join(format!("{name}.answers.toml"));
    std::fs::write(&answers_path, answers_text).unwrap();
    let out = dir.join(name);
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyrite"))
        .args(["run", script_path.to_str().unwrap(), "--answers"])
        .arg(&answers_path)
        .arg("--out")
        .arg(&out)
        .current_dir(root())
        .env_remove("SOFTHSM2_CONF")
        .env_remove("KEYRITE_REHEARSAL_DIR")
        .envs(backend.vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    // A run that stops early closes stdin: what it did not read is not an error.
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PIN}\n").repeat(64).as_bytes());
    let result = child.wait_with_output().unwrap();
    assert!(
        !text(&result).contains(PIN),
        "the PIN never reaches the output"
    );
    (out, result)
}

fn verify(out: &Path) {
    let v = common::keyrite(&["verify", out.to_str().unwrap()]);
    assert!(
        v.status.success(),
        "keyrite verify {}: {}",
        out.display(),
        text(&v)
    );
}

fn report(out: &Path) -> serde_json::Value {
    common::report(out)
}

/// openssl verify -x509_strict on the root and openssl's key hash against report.json's.
fn check_root(out: &Path) {
    let r = report(out);
    assert_eq!(r["result"], "completed", "{r:#}");
    assert_eq!(r["rehearsal"], false);
    let cert = out.join(r["certificates"][0]["file"].as_str().unwrap());
    let cert = cert.to_str().unwrap();
    let v = sh(&format!(
        "openssl verify -x509_strict -CAfile {cert} {cert}"
    ));
    assert!(v.status.success(), "openssl verify: {}", text(&v));
    let hash = sh(&format!(
        "openssl x509 -in {cert} -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum"
    ));
    let hash = String::from_utf8_lossy(&hash.stdout);
    let hash = hash.split_whitespace().next().unwrap_or_default();
    assert_eq!(
        r["keys"][0]["key_hash"], hash,
        "openssl's key hash is in report.json"
    );
    verify(out);
}

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
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    let failed = log
        .lines()
        .find(|l| l.contains("step_failed"))
        .unwrap_or_else(|| panic!("a failed step in {log}"));
    assert!(failed.contains("activate-hsm"), "{failed}");
    assert!(
        !log.contains("\"step\":\"generate-root-key\""),
        "the key step never began: {log}"
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
}

/// Split (root-ca-quorum.toml), activation, health check and reshare with retire, each through
/// `keyrite run`, the commitments pinned from the split's report as an auditor would.
fn quorum_sequence(kind: Kind) {
    let Some(b) = Backend::new(kind) else { return };
    let hsm = "example-quorum-hsm";
    b.token(hsm);
    let split = script("root-ca-quorum.toml", &b, hsm, |s| keep_cards(s, 2));
    let split_t: toml::Table = toml::from_str(&split).unwrap();
    let old = card_labels(&split_t, false);
    for c in &old {
        b.token(c);
    }
    let (out, result) = run(&b, "split", &split, &answers(&split, &[]));
    assert!(result.status.success(), "{kind:?} split: {}", text(&result));
    check_root(&out);
    let commitments = report(&out)["quorum"]["commitments_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    // The transport PIN no longer opens the HSM: only the quorum does.
    let old_pin = b.p11(&["--token-label", hsm, "--login", "--pin", PIN, "-O"]);
    assert!(!old_pin.status.success(), "{}", text(&old_pin));

    let pin = |s: &mut toml::Table| {
        s["quorum"]
            .as_table_mut()
            .unwrap()
            .insert("commitments_sha256".into(), commitments.clone().into());
    };
    let activation = script("key-activation.toml", &b, hsm, |s| {
        keep_cards(s, 2);
        pin(s);
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
    }
    eprintln!("{kind:?} quorum split, activation, health check, reshare and retire: passed");
}

#[test]
fn kryoptic_quorum_sequence() {
    quorum_sequence(Kind::Kryoptic);
}

#[test]
fn tpm2_quorum_sequence() {
    quorum_sequence(Kind::Tpm2);
}

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
            "fallbacks_in_this_process",
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
    let key = rsa::RsaPublicKey::from_public_key_der(&rsa.spki_der).unwrap();
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

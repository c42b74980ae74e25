//! The backends the tests run on (Kryoptic, tpm2-pkcs11), tokens made by pkcs11-tool, shipped
//! scripts adapted to them, answers files, `keyrite run` and the outside checks.

use crate::common::{self, root, sh, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Every PIN of these runs: HSM user and SO PINs (until the split replaces them), and the cards'.
/// Kryoptic wants at least 8 characters.
pub const PIN: &str = "24681357";
const TPM2_MODULE: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so";
const KRYOPTIC_SLOTS: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Kryoptic,
    Tpm2,
}

/// One backend instance, private to a test: its module, the environment its module reads, and (for
/// the TPM) the daemons tpm2.sh started, stopped by PID on drop.
pub struct Backend {
    kind: Kind,
    module: PathBuf,
    pub vars: Vec<(String, String)>,
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
    pub fn new(kind: Kind) -> Option<Backend> {
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

    pub fn module(&self) -> &str {
        self.module.to_str().unwrap()
    }

    pub fn p11(&self, args: &[&str]) -> Output {
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
    pub fn token(&self, label: &str) {
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
pub fn script(
    name: &str,
    backend: &Backend,
    hsm: &str,
    edit: impl FnOnce(&mut toml::Table),
) -> String {
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
pub fn keep_cards(s: &mut toml::Table, n: usize) {
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

pub fn card_labels(s: &toml::Table, reshare: bool) -> Vec<String> {
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
pub fn answers(script_text: &str, present: &[(&str, &[String])]) -> String {
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
pub fn run(
    backend: &Backend,
    name: &str,
    script_text: &str,
    answers_text: &str,
) -> (PathBuf, Output) {
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

pub fn verify(out: &Path) {
    let v = common::keyrite(&["verify", out.to_str().unwrap()]);
    assert!(
        v.status.success(),
        "keyrite verify {}: {}",
        out.display(),
        text(&v)
    );
}

/// A run refused at `step` (its `step_failed` is logged) with no private key on the HSM token, and a
/// bundle that still verifies. The log, so the caller can check what was never announced.
pub fn refused_with_no_key(b: &Backend, out: &Path, step: &str) -> String {
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    let failed = log
        .lines()
        .find(|l| l.contains("step_failed"))
        .unwrap_or_else(|| panic!("a failed step in {log}"));
    assert!(failed.contains(step), "{failed}");
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
    verify(out);
    log
}

pub fn report(out: &Path) -> serde_json::Value {
    common::report(out)
}

/// openssl verify -x509_strict on the root and openssl's key hash against report.json's.
pub fn check_root(out: &Path) {
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

//! The custodian quorum's SoftHSM rehearsal environment, shared by the quorum test binaries: one
//! rehearsal folder, keyrite runs on it, and outside checks with pkcs11-tool (read a card's objects,
//! log in with a PIN, show the HSM's PIN flags).

use super::{have, root, text};
use keyrite::quorum::{Commitments, Share};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const ROOT_ID: &str = "EXAMPLE-ROOT-QUORUM-2026";
pub const RESHARE_ID: &str = "EXAMPLE-RESHARE-2026";
pub const OLD_CARDS: [&str; 4] = [
    "example-custodian-card-a",
    "example-custodian-card-b",
    "example-custodian-card-c",
    "example-custodian-card-d",
];

/// keyrite with `args` from the repository root, with none of the test runner's token
/// configuration (the rehearsal folder names its own) and with `vars` set.
fn keyrite_command(args: &[String], vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyrite"));
    command
        .args(args)
        .current_dir(root())
        .env_remove("SOFTHSM2_CONF")
        .env_remove("KRYOPTIC_CONF")
        .env_remove("KEYRITE_REHEARSAL_DIR")
        .envs(vars.iter().copied());
    command
}

pub struct Env {
    pub dir: tempfile::TempDir,
    /// Every stdout and stderr of every keyrite run, for the secret scan.
    pub captures: Vec<Vec<u8>>,
    pub bundles: Vec<PathBuf>,
}

impl Env {
    /// A fresh rehearsal folder; `None` (skip) when SoftHSM2 or its tools are missing outside CI.
    pub fn new() -> Option<Env> {
        if !have("softhsm2-util") || !have("pkcs11-tool") || !Path::new(SOFTHSM).exists() {
            return None;
        }
        Some(Env {
            dir: tempfile::tempdir().unwrap(),
            captures: Vec::new(),
            bundles: Vec::new(),
        })
    }

    pub fn env_dir(&self) -> PathBuf {
        self.dir.path().join("env")
    }

    pub fn conf(&self) -> PathBuf {
        self.env_dir().join("softhsm2.conf")
    }

    pub fn rehearse(
        &mut self,
        script: &str,
        name: &str,
        answers: Option<&str>,
    ) -> (Output, PathBuf) {
        self.rehearse_with(script, name, answers, &[])
    }

    /// [`Env::rehearse`] with extra environment variables (e.g. the test hook KEYRITE_TEST_KILL_AT).
    pub fn rehearse_with(
        &mut self,
        script: &str,
        name: &str,
        answers: Option<&str>,
        vars: &[(&str, &str)],
    ) -> (Output, PathBuf) {
        self.run_rehearsal(script, name, answers, vars, &[])
    }

    /// A rehearsal with extra environment variables and extra arguments (softhsm-tests/mldsa.rs).
    pub fn rehearse_full(
        &mut self,
        script: &str,
        name: &str,
        vars: &[(&str, &str)],
        extra: &[&str],
    ) -> (Output, PathBuf) {
        self.run_rehearsal(script, name, None, vars, extra)
    }

    fn rehearse_args(&mut self, script: &str, name: &str, extra: &[&str]) -> (Output, PathBuf) {
        self.run_rehearsal(script, name, None, &[], extra)
    }

    fn run_rehearsal(
        &mut self,
        script: &str,
        name: &str,
        answers: Option<&str>,
        vars: &[(&str, &str)],
        extra: &[&str],
    ) -> (Output, PathBuf) {
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
        args.extend(extra.iter().map(|a| a.to_string()));
        match answers {
            Some(text) => {
                let file = self.dir.path().join(format!("{name}.answers.toml"));
                std::fs::write(&file, text).unwrap();
                args.extend(["--answers".into(), file.display().to_string()]);
            }
            None => args.push("--auto".into()),
        }
        let result = self.run(keyrite_command(&args, vars));
        if out.join("audit.jsonl").exists() {
            self.bundles.push(out.clone());
        }
        (result, out)
    }

    /// A rehearsal killed at `point` by the test hook KEYRITE_TEST_KILL_AT (`STEP:POINT`), with
    /// `extra` arguments; the hook must have fired. Returns the interrupted bundle.
    pub fn killed(&mut self, script: &str, name: &str, point: &str, extra: &[&str]) -> PathBuf {
        let vars = [("KEYRITE_TEST_KILL_AT", point)];
        let (out, bundle) = self.run_rehearsal(script, name, None, &vars, extra);
        assert!(
            !out.status.success() && text(&out).contains("killed here"),
            "{point}: the hook did not fire: {}",
            text(&out)
        );
        bundle
    }

    /// [`Env::rehearse`] with `--attach STEP=PATH` (a request or certificate to sign, issue 11).
    pub fn rehearse_with_attach(
        &mut self,
        script: &str,
        name: &str,
        step: &str,
        file: &Path,
    ) -> (Output, PathBuf) {
        let attach = format!("{step}={}", file.display());
        self.rehearse_args(script, name, &["--attach", &attach])
    }

    /// `keyrite resume BUNDLE --auto --env ENV` plus `extra` arguments (e.g. `--attach STEP=PATH`)
    /// and environment variables; its output joins the secret scan.
    pub fn resume(&mut self, bundle: &Path, extra: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut args = vec!["resume".into(), bundle.display().to_string()];
        args.extend(["--auto".into(), "--env".into()]);
        args.push(self.env_dir().display().to_string());
        args.extend(extra.iter().map(|a| a.to_string()));
        self.run(keyrite_command(&args, vars))
    }

    /// Run a keyrite command; its output joins the secret scan.
    fn run(&mut self, mut command: Command) -> Output {
        let result = command.output().expect("keyrite runs");
        self.captures.push(result.stdout.clone());
        self.captures.push(result.stderr.clone());
        result
    }

    pub fn tokens(&self) -> Vec<toml::Value> {
        let text = std::fs::read_to_string(self.env_dir().join("rehearsal.toml")).unwrap();
        let v: toml::Value = toml::from_str(&text).unwrap();
        v["tokens"].as_array().unwrap().clone()
    }

    pub fn pin(&self, label: &str) -> String {
        self.tokens()
            .iter()
            .find(|t| t["label"].as_str() == Some(label))
            .and_then(|t| t["user_pin"].as_str())
            .unwrap_or_else(|| panic!("no rehearsal token {label}"))
            .to_string()
    }

    pub fn p11(&self, token: &str, pin: &str, args: &[&str]) -> Output {
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

    /// A P-256 key pair made on `token` by pkcs11-tool (not by keyrite), under `label` and `id`
    /// (hex); the tool must succeed.
    pub fn generate_p256(&self, token: &str, label: &str, id: &str) {
        let args = [
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            label,
            "--id",
            id,
        ];
        let made = self.p11(token, &self.pin(token), &args);
        assert!(
            made.status.success(),
            "pkcs11-tool --keypairgen: {}",
            text(&made)
        );
    }

    /// The value of a data object on a card, read by pkcs11-tool.
    pub fn read_object(&self, card: &str, label: &str) -> Vec<u8> {
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

    pub fn replace_object(&self, card: &str, label: &str, value: &[u8]) {
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
    pub fn hsm_flags(&self) -> String {
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

pub fn verify(out: &Path) {
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
pub fn activation_answers(cards: &str) -> String {
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

pub fn shares_of(env: &Env, cards: &[&str], ceremony: &str) -> (Vec<Share>, Commitments) {
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
pub fn refused(env: &mut Env, name: &str, cards: &str, message: &str) {
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

impl Env {
    /// The SO PIN rehearsal.toml holds for a token.
    pub fn so_pin(&self, label: &str) -> String {
        self.tokens()
            .iter()
            .find(|t| t["label"].as_str() == Some(label))
            .and_then(|t| t["so_pin"].as_str())
            .unwrap_or_else(|| panic!("no rehearsal token {label}"))
            .to_string()
    }

    /// Does `so_pin` log in as SO? pkcs11-tool opens a R/W session (an SO session must be R/W) and
    /// only lists the objects, so nothing on the token changes.
    pub fn so_logs_in(&self, token: &str, so_pin: &str) -> bool {
        Command::new("pkcs11-tool")
            .args(["--module", SOFTHSM, "--token-label", token, "--session-rw"])
            .args(["--login", "--login-type", "so", "--so-pin", so_pin, "-I"])
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .expect("pkcs11-tool runs")
            .status
            .success()
    }

    /// Does `pin` log in as user (pkcs11-tool, outside keyrite)?
    pub fn user_logs_in(&self, token: &str, pin: &str) -> bool {
        self.p11(token, pin, &["--list-objects"]).status.success()
    }

    /// The labels of the data objects on a card, as pkcs11-tool lists them.
    pub fn data_objects(&self, card: &str) -> String {
        text(&self.p11(card, &self.pin(card), &["--list-objects", "--type", "data"]))
    }

    /// Write a private data object to a card with pkcs11-tool (as a custodian with a copy would).
    pub fn write_object(&self, card: &str, label: &str, value: &[u8]) {
        let file = self.dir.path().join("object.bin");
        std::fs::write(&file, value).unwrap();
        let w = self.p11(
            card,
            &self.pin(card),
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

    /// Delete a data object from a card with pkcs11-tool.
    pub fn delete_object(&self, card: &str, label: &str) {
        let del = self.p11(
            card,
            &self.pin(card),
            &["--delete-object", "--type", "data", "--label", label],
        );
        assert!(del.status.success(), "pkcs11-tool delete: {}", text(&del));
    }

    /// The log of a bundle, one JSON value per entry.
    pub fn log(bundle: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(bundle.join("audit.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Does the token accept `so_pin` as its SO PIN? Proven the only way pkcs11-tool offers (an SO
/// session must be R/W): C_InitPIN with a new user PIN, which must then log in. Changes the user PIN,
/// so it is the last check on a token.
pub fn so_pin_works(env: &Env, token: &str, so_pin: &str) -> bool {
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

pub fn walk(dir: &Path) -> Vec<PathBuf> {
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

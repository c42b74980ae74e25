//! Shared by the SoftHSM test binaries: a token made by softhsm2-util (not by keyrite), so that
//! `keyrite run` is tested against a token it did not provision itself; and the small helpers every
//! SoftHSM test binary needs (the binary, its output, outside checkers).

// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

pub mod matrix;
pub mod quorum;
pub mod tmux;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Lay out a private SoftHSM2 configuration in `dir` and initialise the token `example-root-hsm`
/// with softhsm2-util. Returns the path for SOFTHSM2_CONF.
pub fn softhsm_util_token(dir: &Path, so_pin: &str, user_pin: &str) -> PathBuf {
    std::fs::create_dir(dir.join("tokens")).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.display()
        ),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "example-root-hsm"])
        .args(["--so-pin", so_pin, "--pin", user_pin])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util runs");
    assert!(
        init.status.success(),
        "softhsm2-util: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    conf
}

/// An organisation's card CA and personal cards as `keyrite run` meets them: the CA is an openssl
/// key pair in `dir` (test only), and each card a softhsm2-util token whose P-256 key pkcs11-tool
/// generated and whose certificate (keyUsage digitalSignature + nonRepudiation) pkcs11-tool wrote
/// under the key's CKA_ID. Returns the CA certificate's path.
pub fn softhsm_util_cards(
    dir: &Path,
    conf: &Path,
    cards: &[(&str, &str)],
    user_pin: &str,
) -> PathBuf {
    let module = "/usr/lib/softhsm/libsofthsm2.so";
    let sh = |cmd: String| {
        let o = Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .current_dir(dir)
            .env("SOFTHSM2_CONF", conf)
            .output()
            .expect("sh runs");
        assert!(
            o.status.success(),
            "{cmd}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    };
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
        -days 30 -subj '/O=Example Trust Services/CN=Example card CA' \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign"
        .into());
    std::fs::write(
        dir.join("card.ext"),
        "keyUsage=critical,digitalSignature,nonRepudiation\nbasicConstraints=critical,CA:FALSE\n",
    )
    .unwrap();
    for (person, label) in cards {
        let p11 =
            format!("pkcs11-tool --module {module} --token-label {label} --login --pin {user_pin}");
        sh(format!(
            "softhsm2-util --init-token --free --label {label} --so-pin 13572468 --pin {user_pin}"
        ));
        sh(format!(
            "{p11} --keypairgen --key-type EC:prime256v1 --id 0a01 --label 'signing key' >/dev/null"
        ));
        sh(format!(
            "{p11} --read-object --type pubkey --id 0a01 -o {label}.pub.der && \
             openssl pkey -pubin -inform DER -in {label}.pub.der -out {label}.pub.pem && \
             openssl req -new -key ca.key -subj '/O=Example Trust Services/CN={person}' -out {label}.csr && \
             openssl x509 -req -in {label}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
               -force_pubkey {label}.pub.pem -extfile card.ext -outform DER -out {label}.crt.der && \
             {p11} --write-object {label}.crt.der --type cert --id 0a01 --label 'signing key' >/dev/null"
        ));
    }
    dir.join("ca.pem")
}

/// The repository root (tests run the shipped scripts from here).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `keyrite` binary under test, run from the repository root with no SoftHSM or rehearsal
/// environment inherited from the caller.
pub fn keyrite(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyrite"))
        .args(args)
        .current_dir(root())
        .env_remove("SOFTHSM2_CONF")
        .env_remove("KEYRITE_REHEARSAL_DIR")
        .output()
        .expect("keyrite runs")
}

/// stdout then stderr, as one text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn sh(cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("sh runs")
}

/// The bundle's report.json.
pub fn report(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

/// An outside checker on PATH (its path); in CI (KEYRITE_REQUIRE_EXTERNAL=1) a missing one fails
/// the test rather than skipping the check.
pub fn tool(name: &str) -> Option<String> {
    let found = sh(&format!("command -v {name}"));
    if found.status.success() {
        return Some(String::from_utf8_lossy(&found.stdout).trim().to_string());
    }
    assert!(
        std::env::var_os("KEYRITE_REQUIRE_EXTERNAL").is_none(),
        "{name} is required in CI"
    );
    eprintln!("skipping the {name} check: not installed");
    None
}

pub fn have(name: &str) -> bool {
    tool(name).is_some()
}

/// `keyrite run` with SOFTHSM2_CONF pointing at a token made by softhsm2-util (not by keyrite), the
/// script's own module path, and `typed` on stdin (the PINs, one line per request; the user PIN is 24681357). Returns the bundle and the non-loopback interfaces
/// that are up, read from sysfs by the shell.
pub fn run_on_softhsm_util_token(
    script_text: &str,
    typed: &str,
) -> (tempfile::TempDir, PathBuf, Output, String) {
    tool("softhsm2-util").expect("softhsm2-util");
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm_util_token(dir.path(), "87654321", "24681357");
    // The security officer and the independent witness sign with cards the organisation issued;
    // the others have none here.
    tool("pkcs11-tool").expect("pkcs11-tool");
    let cards = [
        ("Sven Lindqvist", "card-sven-lindqvist"),
        ("Ines Moreau", "card-ines-moreau"),
    ];
    let ca = softhsm_util_cards(dir.path(), &conf, &cards, "24681357");
    let script_text: String = script_text
        .lines()
        .filter(|l| !l.starts_with("card = ") || cards.iter().any(|(_, c)| l.contains(c)))
        .map(|l| format!("{l}\n"))
        .collect();
    let script_text = script_text.as_str();
    let script_path = dir.path().join("script.toml");
    std::fs::write(&script_path, script_text).unwrap();
    let script: toml::Value = toml::from_str(script_text).unwrap();
    let mut a = String::new();
    // Confirmations written out as the people in the room would give them.
    for step in script["steps"].as_array().unwrap() {
        let id = step["id"].as_str().unwrap();
        let who = match id {
            "preflight" => r#"["Maria Keller", "Wiebke Janssen"]"#,
            "identify-participants" => r#"["Maria Keller", "Ines Moreau"]"#,
            "unseal-hsm" | "seal-hsm" => r#"["Sven Lindqvist", "Wiebke Janssen"]"#,
            "deactivate-hsm" => r#"["Omar Haddad"]"#,
            "confirm-root-key-hash" => r#"["Omar Haddad", "Sven Lindqvist", "Ines Moreau"]"#,
            _ => r#"["Omar Haddad", "Olga Petrova", "Ines Moreau"]"#,
        };
        a.push_str(&format!("[[steps]]\nid = \"{id}\"\nconfirm = {who}\n\n"));
    }
    let answers = dir.path().join("answers.toml");
    std::fs::write(&answers, a).unwrap();
    let out = dir.path().join("bundle");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keyrite"))
        .args([
            "run",
            script_path.to_str().unwrap(),
            "--answers",
            answers.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--signers-ca",
            ca.to_str().unwrap(),
        ])
        .env("SOFTHSM2_CONF", &conf)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(typed.as_bytes())
        .unwrap();
    let result = child.wait_with_output().unwrap();
    assert!(
        !text(&result).contains("24681357"),
        "the PIN never reaches the output"
    );
    let online = sh("for i in /sys/class/net/*; do [ \"$(cat $i/type)\" = 772 ] && continue; [ $(( $(cat $i/flags) & 1 )) -eq 1 ] && basename $i; done; true");
    let online = String::from_utf8_lossy(&online.stdout).trim().to_string();
    (dir, out, result, online)
}

/// Run `cmd` with sh; it must succeed. Its stdout.
pub fn ok(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(out.status.success(), "{cmd}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// report.json against docs/report.schema.json (python jsonschema from the pkilint venv, or
/// KEYRITE_JSONSCHEMA_PYTHON); skipped with a message outside CI when that python is missing.
pub fn schema_valid(bundle: &Path) {
    let python = std::env::var("KEYRITE_JSONSCHEMA_PYTHON").unwrap_or_else(|_| {
        root()
            .join(".venv-pkilint/bin/python")
            .display()
            .to_string()
    });
    if !Path::new(&python).exists() {
        assert!(
            std::env::var_os("KEYRITE_REQUIRE_EXTERNAL").is_none(),
            "{python} (jsonschema) is required in CI"
        );
        eprintln!("skipping the report schema check: {python} not found");
        return;
    }
    ok(&format!(
        "{python} -c 'import json,sys,jsonschema; jsonschema.Draft202012Validator(json.load(open(sys.argv[1]))).validate(json.load(open(sys.argv[2])))' {} {}",
        root().join("docs/report.schema.json").display(),
        bundle.join("report.json").display()
    ));
}

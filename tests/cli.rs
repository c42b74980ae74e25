//! The command line as a user meets it: help, completions, the man page, check and verify errors.

use std::process::{Command, Output};

fn keyrite(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyrite"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("keyrite runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn every_command_has_help() {
    for cmd in ["check", "rehearse", "run", "verify", "completions", "man"] {
        let o = keyrite(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd} --help");
        assert!(stdout(&o).contains("Usage: keyrite"), "{cmd}");
    }
    let top = stdout(&keyrite(&["--help"]));
    assert!(top.contains("Exit codes: 0 ok"), "{top}");
    assert!(
        !stdout(&keyrite(&["run", "--help"])).contains("--auto"),
        "run does not offer --auto"
    );
}

#[test]
fn completions_and_man_page_come_from_the_clap_definitions() {
    let bash = keyrite(&["completions", "bash"]);
    assert!(bash.status.success());
    assert!(stdout(&bash).contains("rehearse") && stdout(&bash).contains("--answers"));
    let man = keyrite(&["man"]);
    assert!(man.status.success());
    let roff = stdout(&man);
    assert!(
        roff.starts_with(".ie") || roff.contains(".TH keyrite"),
        "{}",
        &roff[..roff.len().min(200)]
    );
    assert!(roff.contains("rehearse"));
}

#[test]
fn the_shipped_scripts_pass_check() {
    for script in [
        "ceremony-scripts/root-ca.toml",
        "ceremony-scripts/root-ca-p256.toml",
    ] {
        let o = keyrite(&["check", script]);
        assert!(
            o.status.success(),
            "{script}: {}{}",
            stdout(&o),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(stdout(&o).contains("security level very-high"));
    }
}

#[test]
fn verify_of_a_missing_bundle_fails_with_code_5() {
    let dir = tempfile::tempdir().unwrap();
    let o = keyrite(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(5));
    assert!(
        stdout(&o).contains("FAIL  audit.jsonl  missing or unreadable"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_missing_script_is_a_file_error() {
    let o = keyrite(&["check", "no/such/script.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no/such/script.toml"));
}

#[test]
fn a_malformed_script_exits_2_with_line_and_column() {
    let o = keyrite(&["check", "tests/scripts/bad/dual-control.toml"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("tests/scripts/bad/dual-control.toml:")
            && err.contains(": error: ")
            && err.contains("\n  hint: "),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}

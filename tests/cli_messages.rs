//! Golden tests of what a user sees on the command line: every error as `error:` and `hint:` lines,
//! the exit codes the README documents, a closed pipe, `--version`, `--help` examples and the man
//! pages. Regenerate with `INSTA_UPDATE=always cargo test --test cli_messages` and read the diff.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn keyrite_with(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyrite"));
    cmd.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("COLUMNS");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("keyrite runs")
}

fn keyrite(args: &[&str]) -> Output {
    keyrite_with(args, &[])
}

/// Exit code, stdout and stderr, as one text for a snapshot.
fn transcript(o: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        o.status.code().map_or("signal".into(), |c| c.to_string()),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Run keyrite, pin its transcript as snapshot `name`, and check its exit code.
fn golden(name: &str, args: &[&str], code: i32) -> Output {
    let o = keyrite(args);
    insta::assert_snapshot!(name, transcript(&o));
    assert_eq!(o.status.code(), Some(code), "{name}");
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn verify_of_a_mistyped_folder_says_no_such_folder_and_exits_1() {
    let o = golden("verify_missing_folder", &["verify", "no/such/bundle"], 1);
    assert!(!stdout(&o).contains("NOT VERIFIED"));
}

#[test]
fn verify_of_a_file_says_it_is_no_folder() {
    golden("verify_a_file", &["verify", "Cargo.toml"], 1);
}

#[test]
fn verify_of_an_empty_folder_fails_with_code_5() {
    let dir = tempfile::tempdir().unwrap();
    let o = keyrite(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(5));
    assert!(stdout(&o).contains("NOT VERIFIED"), "{}", stdout(&o));
}

#[test]
fn a_closed_pipe_is_no_panic() {
    // The reading end is closed before keyrite writes a byte: every write fails with EPIPE, as in
    // `keyrite verify DIR | head -1` once head has its line.
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["verify", dir.path().to_str().unwrap()],
        vec!["check", "ceremony-scripts/root-ca.toml"],
        vec!["man"],
        vec!["completions", "bash"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = Command::new(env!("CARGO_BIN_EXE_keyrite"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_ne!(o.status.code(), Some(101), "{args:?} panicked: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        let expected = if args[0] == "verify" { 5 } else { 0 };
        assert_eq!(o.status.code(), Some(expected), "{args:?}: {err}");
    }
}

#[test]
fn a_missing_script_is_a_file_error_exit_1() {
    for cmd in ["check", "print"] {
        let mut args = vec![cmd, "no/such/script.toml"];
        if cmd == "print" {
            args.extend(["--out", "never-written.pdf"]);
        }
        let o = keyrite(&args);
        insta::assert_snapshot!(format!("{cmd}_missing_script"), transcript(&o));
        assert_eq!(o.status.code(), Some(1), "{cmd}");
    }
}

#[test]
fn script_diagnostics_put_the_hint_on_its_own_line() {
    golden(
        "check_dual_control",
        &["check", "tests/scripts/bad/dual-control.toml"],
        2,
    );
}

#[test]
fn an_unknown_algorithm_reads_as_a_policy_refusal() {
    let o = golden(
        "check_rsa_2048",
        &["check", "tests/scripts/bad/rsa-2048.toml"],
        2,
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not allowed for CA keys"));
}

#[test]
fn warnings_and_counts_read_as_english() {
    let o = keyrite(&["check", "tests/scripts/bad/medium-warnings.toml"]);
    insta::assert_snapshot!("check_medium_warnings", transcript(&o));
    let ok = keyrite(&["check", "tests/scripts/good/minimal-medium.toml"]);
    insta::assert_snapshot!("check_minimal_medium", transcript(&ok));
    assert_eq!(ok.status.code(), Some(0));
}

#[test]
fn errors_wrap_to_the_terminal_width() {
    let o = keyrite_with(
        &[
            "rehearse",
            "tests/scripts/good/minimal-medium.toml",
            "--auto",
            "--attach",
            "nothing-here",
            "--out",
            "never-made",
        ],
        &[("COLUMNS", "60")],
    );
    insta::assert_snapshot!("attach_usage_wrapped_60", transcript(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.lines().all(|l| l.chars().count() <= 60), "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("\nhint: "),
        "{err}"
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(!Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("never-made")
        .exists());
}

#[test]
fn run_refuses_auto_with_error_and_hint() {
    golden(
        "run_auto_refused",
        &[
            "run",
            "tests/scripts/good/minimal-medium.toml",
            "--auto",
            "--out",
            "x",
        ],
        2,
    );
}

#[test]
fn version_names_the_commit_and_build_profile() {
    let o = keyrite(&["--version"]);
    let v = stdout(&o);
    assert!(o.status.success());
    let rest = v
        .strip_prefix(concat!("keyrite ", env!("CARGO_PKG_VERSION"), " (commit "))
        .unwrap_or_else(|| panic!("{v}"));
    let (commit, profile) = rest.split_once(", ").unwrap_or_else(|| panic!("{v}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{v}"
    );
    assert!(
        profile.trim_end() == "debug build)" || profile.trim_end() == "release build)",
        "{v}"
    );
}

#[test]
fn every_help_shows_examples() {
    for cmd in [
        "check",
        "rehearse",
        "run",
        "verify",
        "print",
        "completions",
        "man",
    ] {
        let o = keyrite(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd}");
        assert!(
            stdout(&o).contains("Example"),
            "{cmd} --help: {}",
            stdout(&o)
        );
    }
    assert!(stdout(&keyrite(&["--help"])).contains("Examples:"));
}

#[test]
fn every_man_page_the_main_page_names_exists() {
    let dir = tempfile::tempdir().unwrap();
    let o = keyrite(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", transcript(&o));
    let main = std::fs::read_to_string(dir.path().join("keyrite.1")).unwrap();
    for cmd in [
        "check",
        "rehearse",
        "run",
        "verify",
        "print",
        "completions",
        "man",
    ] {
        let page = format!("keyrite-{cmd}");
        // roff escapes the hyphen.
        let named = format!("keyrite\\-{cmd}(1)");
        assert!(main.contains(&named), "keyrite.1 names {named}");
        let text = std::fs::read_to_string(dir.path().join(format!("{page}.1")))
            .unwrap_or_else(|e| panic!("{page}.1: {e}"));
        assert!(text.contains(&format!(".TH {page}")), "{page}");
        // The same page on stdout.
        let one = keyrite(&["man", cmd]);
        assert!(one.status.success());
        assert!(
            stdout(&one).contains(&format!(".TH {page}")),
            "keyrite man {cmd}"
        );
    }
    let o = keyrite(&["man", "nosuch"]);
    insta::assert_snapshot!("man_unknown_subcommand", transcript(&o));
    assert_eq!(o.status.code(), Some(2));
}

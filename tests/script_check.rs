//! Golden tests for `keyrite check`'s diagnostics: every malformed script in tests/scripts/bad/ must produce
//! exactly the diagnostics in its `.expected` file. `UPDATE_GOLDEN=1 cargo test --test script_check` rewrites
//! them; read the diff before committing.

use keyrite::script::{check_file, has_errors, parse, policy, Diagnostic};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};

/// Relative, so diagnostics name files as a user in the repository root would type them. Cargo runs
/// integration tests with the package root as the working directory.
const BAD: &str = "tests/scripts/bad";
const GOOD: &str = "tests/scripts/good";

fn scripts(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e} (run from the package root)"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(|d| format!("{d}\n")).collect()
}

#[test]
fn bad_scripts_match_their_golden_diagnostics() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let files = scripts(BAD);
    assert!(
        files.len() >= 12,
        "expected at least 12 malformed scripts, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let (_, diagnostics) = check_file(file);
        assert!(
            !diagnostics.is_empty(),
            "{} produced no diagnostics",
            file.display()
        );
        let actual = render(&diagnostics);
        let expected_path = file.with_extension("expected");
        if update {
            fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "--- {}\n+++ actual\n{actual}",
                expected_path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatch (UPDATE_GOLDEN=1 rewrites):\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_expected_file_has_a_script() {
    for entry in fs::read_dir(BAD).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "expected") {
            assert!(
                path.with_extension("toml").exists(),
                "{} has no script",
                path.display()
            );
        }
    }
}

#[test]
fn good_scripts_have_no_diagnostics() {
    let files = scripts(GOOD);
    assert!(files.iter().any(|f| f.ends_with("minimal-medium.toml")));
    assert!(files.iter().any(|f| f.ends_with("root-very-high.toml")));
    for file in files {
        let (loaded, diagnostics) = check_file(&file);
        assert!(loaded.is_some(), "{} did not parse", file.display());
        assert_eq!(render(&diagnostics), "", "{}", file.display());
    }
}

#[test]
fn shipped_scripts_and_the_documented_example_have_no_diagnostics() {
    for file in scripts("ceremony-scripts") {
        // As `keyrite rehearse` checks them: the quorum's commitments come from the --env folder.
        let (loaded, diagnostics) = keyrite::script::check_file_rehearsal(&file);
        assert!(loaded.is_some(), "{} did not parse", file.display());
        assert_eq!(render(&diagnostics), "", "{}", file.display());
        // For a real run, the scripts that read an earlier split's cards must pin its commitments.
        let (_, diagnostics) = check_file(&file);
        let text = render(&diagnostics);
        let reads_cards = [
            "key-activation",
            "share-health-check",
            "reshare",
            "sub-ca-signing",
            "cross-certificate",
            "crl-issuance",
        ]
        .iter()
        .any(|s| file.display().to_string().contains(s));
        if reads_cards {
            assert!(
                text.contains("does not pin the split's commitments") && text.lines().count() == 1,
                "{}: {text}",
                file.display()
            );
        } else {
            assert_eq!(text, "", "{}", file.display());
        }
    }
    let doc = fs::read_to_string("docs/script-format.md").unwrap();
    let example = doc
        .split_once("## Annotated example")
        .and_then(|(_, rest)| rest.split_once("```toml\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(toml, _)| toml)
        .expect("docs/script-format.md has an annotated ```toml example");
    let loaded = parse::parse("example.toml", example).unwrap_or_else(|d| panic!("{}", render(&d)));
    assert_eq!(render(&policy::check(&loaded)), "");
}

#[test]
fn a_pin_in_the_token_uri_is_never_printed() {
    let (_, diagnostics) = check_file(&Path::new(BAD).join("token-uri-pin.toml"));
    assert!(has_errors(&diagnostics));
    let text = render(&diagnostics);
    assert!(!text.contains("4711"), "{text}");
    assert!(text.contains("PKCS11:token=acme-root?…"), "{text}");
}

#[test]
fn loaded_script_keeps_the_exact_bytes_and_their_hash() {
    let path = Path::new(GOOD).join("root-very-high.toml");
    let bytes = fs::read(&path).unwrap();
    let loaded = parse::load(&path).unwrap();
    assert_eq!(loaded.source.as_bytes(), bytes.as_slice());
    assert_eq!(loaded.sha256, hex::encode(Sha256::digest(&bytes)));
    assert_eq!(loaded.file_name, path.display().to_string());
    assert_eq!(loaded.script.steps.len(), 7);
}

#[test]
fn warnings_alone_are_not_errors() {
    let (loaded, diagnostics) = check_file(&Path::new(BAD).join("medium-warnings.toml"));
    assert!(loaded.is_some());
    assert!(!diagnostics.is_empty());
    assert!(!has_errors(&diagnostics));
}

#[test]
fn unreadable_and_non_utf8_files_are_diagnostics() {
    let (loaded, diagnostics) = check_file(Path::new("tests/scripts/no-such-file.toml"));
    assert!(loaded.is_none());
    assert!(diagnostics[0]
        .to_string()
        .starts_with("tests/scripts/no-such-file.toml:1:1: error: cannot read"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.toml");
    fs::write(&path, b"format = 1\nname = \"Zo\xeb\"\n").unwrap();
    let errors = parse::load(&path).unwrap_err();
    assert_eq!((errors[0].line, errors[0].col), (2, 11));
    assert!(errors[0].what.contains("UTF-8"));
}

#[test]
fn policy_runs_on_a_parsed_string() {
    let source = fs::read_to_string(Path::new(BAD).join("dual-control.toml")).unwrap();
    let loaded = parse::parse("inline.toml", &source).unwrap();
    let diagnostics = policy::check(&loaded);
    assert!(has_errors(&diagnostics));
    assert!(diagnostics.iter().all(|d| d.file == "inline.toml"));
}

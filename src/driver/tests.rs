//! The whole effect loop against the in-memory mock HSM: engine, evidence and operator together.

use super::operator::{AnswerStep, Answers, Headless};
use super::pins::{PinRequest, PinSource};
use super::*;
use crate::evidence::events::ConfirmationSource;
use crate::evidence::verify::verify_bundle;
use crate::hsm::mock::MockHsm;
use crate::script::parse;
use secrecy::SecretString;
use std::sync::{Arc, Mutex};

struct FixedPin(&'static str);

impl PinSource for FixedPin {
    fn pin(&mut self, _: &PinRequest<'_>) -> Result<SecretString> {
        Ok(SecretString::from(self.0))
    }
}

pub(super) fn script() -> LoadedScript {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ceremony-scripts/root-ca-p256.toml"
    );
    // The mock tests run without personal cards (the SoftHSM tests cover them): drop the `card` lines.
    let source: String = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("card = "))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        // Without the report signers' cards the policy (which verify applies) allows medium only.
        .replace(
            "security_level = \"very-high\"",
            "security_level = \"medium\"",
        );
    parse::parse("root-ca-p256.toml", &source).expect("the shipped script parses")
}

/// Run with the mock into `out`; returns the outcome, the HSM calls and the printed lines.
fn run_mock_into(
    loaded: &LoadedScript,
    answers: Answers,
    pin: &'static str,
    rehearsal: bool,
    out: &Path,
) -> (Result<Outcome>, Vec<String>, String) {
    run_with_pins(loaded, answers, &mut FixedPin(pin), rehearsal, out)
}

/// [`run_mock_into`] with PINs from `pins`; the mock's user PIN is "1234".
pub(super) fn run_with_pins(
    loaded: &LoadedScript,
    answers: Answers,
    pins: &mut dyn PinSource,
    rehearsal: bool,
    out: &Path,
) -> (Result<Outcome>, Vec<String>, String) {
    run_with_mock(loaded, answers, pins, rehearsal, out, |_| {})
}

/// [`run_with_pins`] on a mock that `setup` adjusts (its PIN limits, its mechanisms).
pub(super) fn run_with_mock(
    loaded: &LoadedScript,
    answers: Answers,
    pins: &mut dyn PinSource,
    rehearsal: bool,
    out: &Path,
    setup: impl Fn(&mut MockHsm),
) -> (Result<Outcome>, Vec<String>, String) {
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let shared = calls.clone();
    let mut opener =
        move |_: &str, _: &TokenSelector| -> std::result::Result<Box<dyn Hsm + Send>, HsmError> {
            let mut mock = MockHsm::new("1234");
            mock.calls = shared.clone();
            setup(&mut mock);
            Ok(Box::new(mock))
        };
    let mut printed = Vec::new();
    let mut operator = Headless::new(answers, &mut printed);
    let mode = RunMode {
        rehearsal,
        enforce_offline: false,
        module: "mock".into(),
        token: TokenSelector::default(),
        tokens: Default::default(),
        confirmations: ConfirmationSource {
            kind: "auto".into(),
            answers_sha256: None,
        },
        cards: CardSetup::default(),
    };
    let outcome = Ceremony {
        loaded,
        mode,
        operator: &mut operator,
        pins,
        opener: &mut opener,
    }
    .run(out);
    let calls = calls.lock().unwrap().clone();
    (outcome, calls, String::from_utf8(printed).unwrap())
}

/// A run (not a rehearsal) on the mock into a fresh folder's `out`.
fn run_mock(
    loaded: &LoadedScript,
    answers: Answers,
    pin: &'static str,
) -> (Result<Outcome>, tempfile::TempDir, Vec<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let (outcome, calls, printed) =
        run_mock_into(loaded, answers, pin, false, &dir.path().join("out"));
    (outcome, dir, calls, printed)
}

#[test]
fn auto_answers_complete_the_shipped_ceremony_on_the_mock() {
    let loaded = script();
    let (outcome, dir, calls, printed) = run_mock(&loaded, Answers::auto(&loaded.script), "1234");
    let outcome = outcome.unwrap();
    assert!(outcome.completed, "{:?}\n{printed}", outcome.reason);
    assert_eq!(
        calls,
        [
            "C_Login",
            "C_GenerateKeyPair example-root-p256-2026",
            "C_Sign example-root-p256-2026",
            "C_Logout"
        ]
    );
    let v = verify_bundle(&dir.path().join("out"));
    assert!(v.passed(), "{}", v.table());
}

#[test]
fn a_keygen_confirmed_by_one_operator_never_reaches_the_hsm() {
    let loaded = script();
    let mut answers = Answers::auto(&loaded.script);
    let keygen = answers
        .steps
        .iter_mut()
        .find(|s| s.id == "generate-root-key")
        .unwrap();
    *keygen = AnswerStep {
        id: keygen.id.clone(),
        confirm: vec!["Omar Haddad".into(), "Ines Moreau".into()],
    };
    let (outcome, dir, calls, printed) = run_mock(&loaded, answers, "1234");
    let outcome = outcome.unwrap();
    assert!(!outcome.completed && !outcome.hsm_failure);
    assert!(
        outcome.reason.unwrap_or_default().contains("dual control"),
        "{printed}"
    );
    assert!(
        !calls.iter().any(|c| c.starts_with("C_GenerateKeyPair")),
        "{calls:?}"
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("C_Logout"),
        "an aborted run logs out"
    );
    let log = std::fs::read_to_string(dir.path().join("out/audit.jsonl")).unwrap();
    assert!(log.contains("\"kind\":\"step_refused\""));
    assert!(verify_bundle(&dir.path().join("out")).passed());
}

#[test]
fn a_pin_that_stays_wrong_stops_at_the_locked_token_and_stays_out_of_the_log() {
    let loaded = script();
    let (outcome, dir, calls, printed) =
        run_mock(&loaded, Answers::auto(&loaded.script), "pin-WRONG-q7");
    let outcome = outcome.unwrap();
    assert!(outcome.hsm_failure && !outcome.completed);
    let reason = outcome.reason.unwrap_or_default();
    assert!(
        reason.contains("CKR_PIN_LOCKED") && reason.contains("LOCKED"),
        "{reason}"
    );
    // The mock locks after three wrong PINs; keyrite sends no fourth.
    assert_eq!(calls, ["C_Login", "C_Login", "C_Login"]);
    for file in ["audit.jsonl", "report.json"] {
        let text = std::fs::read_to_string(dir.path().join("out").join(file)).unwrap();
        assert!(!text.contains("pin-WRONG-q7"), "the PIN reached {file}");
        assert!(text.contains("CKR_PIN_LOCKED"));
    }
    assert!(printed.contains("FINAL TRY"), "{printed}");
    assert!(!printed.contains("pin-WRONG-q7"));
    assert!(verify_bundle(&dir.path().join("out")).passed());
}

#[test]
fn write_ahead_intent_precedes_every_hsm_mutation() {
    let loaded = script();
    let (outcome, dir, _, _) = run_mock(&loaded, Answers::auto(&loaded.script), "1234");
    assert!(outcome.unwrap().completed);
    let log = std::fs::read_to_string(dir.path().join("out/audit.jsonl")).unwrap();
    let kinds: Vec<String> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for result in [
        "hsm_activated",
        "key_generated",
        "certificate_signed",
        "hsm_deactivated",
    ] {
        let at = kinds
            .iter()
            .position(|k| k == result)
            .unwrap_or_else(|| panic!("{result} missing"));
        let intent = kinds[..at]
            .iter()
            .rposition(|k| k == "hsm_intent")
            .expect("an intent before it");
        let authorised = kinds[..at]
            .iter()
            .rposition(|k| k == "step_authorised" || k == "step_started");
        assert!(
            authorised.is_some_and(|a| a < intent),
            "{result}: intent after authorisation"
        );
    }
    assert_eq!(kinds.first().map(String::as_str), Some("ceremony_started"));
    assert_eq!(kinds.last().map(String::as_str), Some("report_written"));
}

#[test]
fn exceptions_from_the_answers_file_reach_the_report() {
    let loaded = script();
    let mut answers = Answers::auto(&loaded.script);
    answers.exceptions.push(super::operator::AnswerException {
        step: "unseal-hsm".into(),
        person: "Wiebke Janssen".into(),
        text: "Bag serial 100234 differs from the inventory sheet (100243); transposition confirmed by SO".into(),
    });
    let (outcome, dir, _, _) = run_mock(&loaded, answers, "1234");
    assert!(outcome.unwrap().completed);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/report.json")).unwrap())
            .unwrap();
    assert_eq!(report["exceptions"][0]["step"], "unseal-hsm");
    assert_eq!(report["exceptions"][0]["person"], "Wiebke Janssen");
}

#[test]
fn the_output_folder_is_never_reused() {
    let loaded = script();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "x").unwrap();
    let (outcome, calls, _) = run_mock_into(
        &loaded,
        Answers::auto(&loaded.script),
        "1234",
        false,
        dir.path(),
    );
    let err = outcome.unwrap_err();
    assert!(
        err.to_string().contains("never overwrites evidence"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    assert!(calls.is_empty());
}

/// Rewrite a bundle's log as a forger would: edit the entries, recompute every hash, rebuild and
/// re-bind report.json. Only what the chain cannot see is left for verify to catch.
fn forge(out: &Path, edit: impl FnOnce(&mut Vec<crate::evidence::log::AuditEntry>)) {
    use crate::evidence::log::{read_chain, AuditLog};
    let log_path = out.join("audit.jsonl");
    let mut entries = read_chain(&std::fs::read(&log_path).unwrap()).unwrap();
    entries.pop(); // report_written
    edit(&mut entries);
    std::fs::remove_file(&log_path).unwrap();
    let mut log = AuditLog::create(&log_path).unwrap();
    let mut rewritten = Vec::new();
    for e in entries {
        rewritten.push(log.append(e.time, e.step, e.actors, e.event).unwrap());
    }
    let report = crate::evidence::report::build(&rewritten).unwrap();
    let json = serde_json::to_vec_pretty(&report).unwrap();
    std::fs::write(out.join("report.json"), &json).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&json));
    log.append(
        "2026-01-01T00:00:00Z".into(),
        None,
        vec![],
        serde_json::json!({"kind": "report_written", "report_sha256": sha}),
    )
    .unwrap();
}

fn completed_bundle() -> (tempfile::TempDir, std::path::PathBuf) {
    let loaded = script();
    let (outcome, dir, _, _) = run_mock(&loaded, Answers::auto(&loaded.script), "1234");
    assert!(outcome.unwrap().completed);
    let out = dir.path().join("out");
    assert!(verify_bundle(&out).passed());
    (dir, out)
}

fn failures(out: &Path) -> Vec<String> {
    let v = verify_bundle(out);
    v.checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{} {}", c.file, c.what))
        .collect()
}

#[test]
fn a_rehashed_log_missing_a_keygen_confirmation_does_not_replay() {
    let (_dir, out) = completed_bundle();
    forge(&out, |entries| {
        let at = entries
            .iter()
            .position(|e| {
                e.step.as_deref() == Some("generate-root-key") && e.actors == ["Olga Petrova"]
            })
            .unwrap();
        entries.remove(at);
        for e in entries.iter_mut() {
            if e.kind() == "step_authorised" && e.step.as_deref() == Some("generate-root-key") {
                e.event["confirmed_by"] = serde_json::json!(["Omar Haddad"]);
                e.actors = vec!["Omar Haddad".into(), "Ines Moreau".into()];
            }
        }
    });
    let f = failures(&out);
    assert!(
        f.iter()
            .any(|l| l.starts_with("audit.jsonl does not replay")),
        "{f:?}"
    );
}

#[test]
fn a_rehashed_log_with_a_stranger_confirming_does_not_replay() {
    let (_dir, out) = completed_bundle();
    forge(&out, |entries| {
        let e = entries
            .iter_mut()
            .find(|e| {
                e.step.as_deref() == Some("generate-root-key") && e.actors == ["Olga Petrova"]
            })
            .unwrap();
        e.actors = vec!["Mallory".into()];
        e.event["person"] = "Mallory".into();
    });
    let f = failures(&out);
    assert!(
        f.iter()
            .any(|l| l.contains("does not replay") && l.contains("Mallory")),
        "{f:?}"
    );
}

#[test]
fn an_hsm_result_without_its_intent_does_not_replay() {
    let (_dir, out) = completed_bundle();
    forge(&out, |entries| {
        let at = entries
            .iter()
            .position(|e| e.kind() == "hsm_intent" && e.event["operation"] == "sign_certificate")
            .unwrap();
        entries.remove(at);
    });
    let f = failures(&out);
    assert!(
        f.iter().any(|l| l.contains("no write-ahead intent")),
        "{f:?}"
    );
}

#[test]
fn crlf_extra_root_files_and_crafted_reports_fail_without_panicking() {
    let (_dir, out) = completed_bundle();
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    std::fs::write(out.join("audit.jsonl"), log.replace('\n', "\r\n")).unwrap();
    assert!(failures(&out)
        .iter()
        .any(|l| l.starts_with("audit.jsonl hash chain broken")));
    std::fs::write(out.join("audit.jsonl"), &log).unwrap();

    std::fs::write(out.join("notes.txt"), "x").unwrap();
    assert!(failures(&out)
        .iter()
        .any(|l| l.starts_with("notes.txt not part of the evidence")));
    std::fs::remove_file(out.join("notes.txt")).unwrap();

    forge(&out, |entries| {
        let e = entries
            .iter_mut()
            .find(|e| e.kind() == "artifact_written")
            .unwrap();
        e.event["path"] = "../../etc/passwd".into();
    });
    let f = failures(&out);
    assert!(
        f.iter()
            .any(|l| l.contains("not a plain file inside artifacts/")),
        "{f:?}"
    );
}

#[test]
fn a_rehearsal_refuses_a_token_that_is_not_softhsm() {
    let loaded = script();
    let dir = tempfile::tempdir().unwrap();
    let (outcome, calls, _) = run_mock_into(
        &loaded,
        Answers::auto(&loaded.script),
        "1234",
        true,
        &dir.path().join("out"),
    );
    let outcome = outcome.unwrap();
    assert!(outcome.hsm_failure);
    assert!(outcome
        .reason
        .unwrap_or_default()
        .contains("rehearsals run only on throw-away SoftHSM2 tokens"));
    assert!(calls.is_empty(), "not even a login");
}

#[test]
fn a_token_warning_is_shown_and_logged_at_activation() {
    let loaded = script();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let said = "token \"t\" shares its serial 0000 with 1 other token(s) of this module";
    let (outcome, _, printed) = run_with_mock(
        &loaded,
        Answers::auto(&loaded.script),
        &mut FixedPin("1234"),
        false,
        &out,
        |m| m.warnings = vec![said.into()],
    );
    assert!(outcome.unwrap().completed, "{printed}");
    assert!(printed.contains(said), "{printed}");
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"kind\":\"token_warning\""))
        .collect();
    assert_eq!(warned.len(), 1, "{log}");
    assert!(
        warned[0].contains("shares its serial 0000"),
        "{}",
        warned[0]
    );
    let v = verify_bundle(&out);
    assert!(v.passed(), "{}", v.table());
}

/// The log pass hands entries from its reader thread over in batches: a completed bundle, and the
/// same cut short mid-line, verify the same whatever the batch size.
#[test]
fn verify_says_the_same_whatever_the_log_pass_batch_size() {
    use crate::evidence::verify::{verify_bundle_batched, Verdict};
    let (_dir, out) = completed_bundle();
    let same = |verdict: Verdict| {
        let whole = verify_bundle(&out);
        assert_eq!(whole.verdict(), verdict, "{whole:?}");
        for lines in [1, 2, 3, 5] {
            let batched = verify_bundle_batched(&out, lines);
            assert_eq!(format!("{batched:?}"), format!("{whole:?}"), "{lines}");
        }
    };
    same(Verdict::Verified);
    let path = out.join("audit.jsonl");
    let log = std::fs::read(&path).unwrap();
    let ends: Vec<usize> = (0..log.len()).filter(|&i| log[i] == b'\n').collect();
    std::fs::write(&path, &log[..ends[ends.len() - 6] + 20]).unwrap();
    same(Verdict::Incomplete);
}

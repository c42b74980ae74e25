//! Personal cards on the mock HSM: every carded confirmation is signed, the report signatures are
//! detached CMS that verify, and a card that keeps refusing its PIN stops the ceremony.

use super::*;
use crate::driver::operator::{Answers, Headless};
use crate::driver::{Ceremony, Outcome, RunMode};
use crate::evidence::events::ConfirmationSource;
use crate::evidence::verify::verify_bundle;
use crate::hsm::mock::MockHsm;
use crate::hsm::HsmError;
use crate::script::{parse, LoadedScript};
use crate::x509::card::{issue, name, Subject};
use secrecy::SecretString;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The right PIN for the ceremony HSM; cards get `card_pin`, except `wrong_for`'s, which gets a
/// wrong one.
struct Pins {
    card_pin: &'static str,
    wrong_for: Option<&'static str>,
    asked: Vec<String>,
}

impl PinSource for Pins {
    fn pin(&mut self, request: &PinRequest<'_>) -> Result<SecretString> {
        Ok(SecretString::from(match request {
            PinRequest::PersonalCard { person, .. } => {
                self.asked.push(person.to_string());
                match self.wrong_for {
                    Some(who) if who == *person => "wrong-Pin-Owl",
                    _ => self.card_pin,
                }
            }
            _ => "1234",
        }))
    }
}

fn shipped() -> LoadedScript {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ceremony-scripts/root-ca-p256.toml"
    );
    parse::load(Path::new(path)).unwrap()
}

/// A mock CA and one mock card per carded participant (keys derived from distinct labels).
fn mock_cards(script: &Script) -> (CardSetup, BTreeMap<String, MockHsm>) {
    let mut ca_hsm = MockHsm::new("1234");
    ca_hsm.login(&SecretString::from("1234")).unwrap();
    let info = ca_hsm.generate_key_pair("ca", KeyAlgorithm::P256).unwrap();
    let ca_key = HsmKey::new(
        "ca",
        KeyAlgorithm::P256,
        crate::script::HashAlgorithm::Sha256,
        info.spki_der,
    );
    let now = std::time::SystemTime::now();
    let ca_der = issue(
        &mut ca_hsm,
        &ca_key,
        None,
        Subject {
            name: name("Test", "test CA").unwrap(),
            spki: &[],
            serial: &[1],
            not_before: now,
            days: 1,
        },
    )
    .unwrap();
    let ca = Certificate::from_der(&ca_der).unwrap();
    let mut setup = CardSetup {
        module: "mock".into(),
        ca_pem: Some(ca.to_pem(der::pem::LineEnding::LF).unwrap()),
        rehearsal_ca: true,
        ..CardSetup::default()
    };
    let mut cards = BTreeMap::new();
    for (i, p) in script
        .participants
        .iter()
        .filter(|p| p.card.is_some())
        .enumerate()
    {
        let label = format!("card-{i}");
        let mut card = MockHsm::new("Kq-owl-Lime");
        card.login(&SecretString::from("Kq-owl-Lime")).unwrap();
        let spki = card
            .generate_key_pair(&label, KeyAlgorithm::P256)
            .unwrap()
            .spki_der;
        let serial = [2, i as u8 + 1];
        let der = issue(
            &mut ca_hsm,
            &ca_key,
            Some(&ca),
            Subject {
                name: name("Test", &p.name).unwrap(),
                spki: &spki,
                serial: &serial,
                not_before: now,
                days: 1,
            },
        )
        .unwrap();
        card.store_certificate(&label, &[], &der).unwrap();
        card.logout().unwrap();
        setup.tokens.insert(
            p.name.clone(),
            TokenSelector {
                label: Some(label.clone()),
                ..TokenSelector::default()
            },
        );
        cards.insert(label, card);
    }
    (setup, cards)
}

fn run(card_pin: &'static str, out: &Path) -> (Result<Outcome>, Vec<String>, Vec<String>) {
    run_with(card_pin, None, out)
}

fn run_with(
    card_pin: &'static str,
    wrong_for: Option<&'static str>,
    out: &Path,
) -> (Result<Outcome>, Vec<String>, Vec<String>) {
    let loaded = shipped();
    let (setup, cards) = mock_cards(&loaded.script);
    let cards = Arc::new(Mutex::new(cards));
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let shared = calls.clone();
    let mut opener =
        move |_: &str, sel: &TokenSelector| -> std::result::Result<Box<dyn Hsm + Send>, HsmError> {
            let card = sel
                .label
                .as_ref()
                .and_then(|l| cards.lock().unwrap().remove(l));
            let mut hsm = card.unwrap_or_else(|| MockHsm::new("1234"));
            hsm.calls = shared.clone();
            Ok(Box::new(hsm))
        };
    let mode = RunMode {
        // Not a rehearsal: rehearsals accept SoftHSM2 tokens only.
        rehearsal: false,
        enforce_offline: false,
        module: "mock".into(),
        token: TokenSelector::default(),
        tokens: Default::default(),
        confirmations: ConfirmationSource {
            kind: "auto".into(),
            answers_sha256: None,
        },
        cards: setup,
    };
    let mut printed = Vec::new();
    let mut operator = Headless::new(Answers::auto(&loaded.script), &mut printed);
    let mut pins = Pins {
        card_pin,
        wrong_for,
        asked: Vec::new(),
    };
    let outcome = Ceremony {
        loaded: &loaded,
        mode,
        operator: &mut operator,
        pins: &mut pins,
        opener: &mut opener,
    }
    .run(out);
    let calls = calls.lock().unwrap().clone();
    (outcome, calls, pins.asked)
}

#[test]
fn carded_confirmations_and_the_report_are_signed_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (outcome, calls, asked) = run("Kq-owl-Lime", &out);
    let outcome = outcome.unwrap();
    assert!(outcome.completed, "{:?}", outcome.reason);
    let report: crate::evidence::report::Report =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let confirmations: usize = report.steps.iter().map(|s| s.confirmations.len()).sum();
    assert_eq!(
        report.signed_confirmations.len(),
        confirmations,
        "every confirmer has a card"
    );
    assert_eq!(report.personal_cards.len(), 6);
    // One PIN per signed confirmation, plus one per report signer.
    assert_eq!(asked.len(), confirmations + 6);
    assert!(
        calls.iter().any(|c| c.starts_with("C_Sign card-")),
        "{calls:?}"
    );
    let v = verify_bundle(&out);
    assert!(v.passed(), "{}", v.table());
    assert!(v
        .table()
        .contains("signatures/sven-lindqvist.report.json.p7s"));
    let p7s = std::fs::read(out.join("signatures/ines-moreau.report.json.p7s")).unwrap();
    let content = std::fs::read(out.join("report.json")).unwrap();
    assert!(crate::x509::cms::verify_detached(&p7s, &content).is_ok());
    let mut other = content.clone();
    other[10] ^= 1;
    assert!(crate::x509::cms::verify_detached(&p7s, &other).is_err());
}

/// The first confirmation (Maria Keller, step 1) cannot be signed: the log says so right after
/// the `confirmed` entry, the ceremony aborts there, everyone else required signs the aborted
/// report, and verify passes with a warning for exactly Maria's confirmation and signatures.
#[test]
fn a_card_that_refuses_the_pin_three_times_stops_the_ceremony_on_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let maria = "Maria Keller";
    let (outcome, _, asked) = run_with("Kq-owl-Lime", Some(maria), &out);
    let outcome = outcome.expect("an abort on the record, not an error");
    assert!(!outcome.completed && !outcome.hsm_failure);
    let reason = outcome.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("Maria Keller's card did not sign") && reason.contains("CKR_PIN_INCORRECT"),
        "{reason}"
    );
    // Three attempts for the confirmation; Maria is never asked again; the other five sign.
    assert_eq!(asked.iter().filter(|p| *p == maria).count(), 3, "{asked:?}");
    assert_eq!(asked.len(), 3 + 5, "{asked:?}");
    assert_eq!(outcome.unsigned.len(), 1, "{:?}", outcome.unsigned);
    assert!(outcome.unsigned[0].starts_with("Maria Keller ("));

    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    let kinds: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
        .collect();
    let at = kinds
        .iter()
        .position(|e| e["kind"] == "confirmation_unsigned")
        .expect("confirmation_unsigned logged");
    // Each refused login is logged as a retry, between the confirmation and its verdict.
    for retry in &kinds[at - 3..at] {
        assert_eq!(retry["kind"], "retried", "{retry}");
        assert_eq!(retry["what"], "personal_card_pin");
        assert!(retry["reason"]
            .as_str()
            .unwrap()
            .contains("CKR_PIN_INCORRECT"));
    }
    assert_eq!(kinds[at - 4]["kind"], "confirmed");
    assert_eq!(kinds[at - 4]["person"], maria);
    assert_eq!(kinds[at]["person"], maria);
    assert_eq!(kinds[at + 1]["kind"], "ceremony_aborted");
    assert!(!log.contains("confirmation_signed"));
    assert!(!log.contains("wrong-Pin-Owl") && !log.contains("Kq-owl-Lime"));
    for who in [
        "omar-haddad",
        "olga-petrova",
        "sven-lindqvist",
        "wiebke-janssen",
        "ines-moreau",
    ] {
        for doc in ["report.json", "report.pdf"] {
            assert!(
                out.join(format!("signatures/{who}.{doc}.p7s")).exists(),
                "{who} {doc}"
            );
        }
    }
    assert!(!out.join("signatures/maria-keller.report.json.p7s").exists());

    let v = verify_bundle(&out);
    assert!(v.passed(), "{}", v.table());
    assert!(v.result.as_deref().unwrap_or("").starts_with("ABORTED"));
    let warned: Vec<_> = v.checks.iter().filter(|c| c.warning).collect();
    assert_eq!(warned.len(), 3, "{}", v.table());
    assert!(warned[0]
        .what
        .contains("by Maria Keller (step preflight) is not signed"));
    for w in &warned[1..] {
        assert!(
            w.file.starts_with("signatures/maria-keller.report."),
            "{}",
            w.file
        );
        assert!(w.what.contains("card refused"), "{}", w.what);
    }
    assert!(v.table().contains("WARN"));
}

/// Rewrite the bundle's log through `edit` (`None` drops an entry), re-chaining every hash as a
/// forger would.
fn rewrite_log(out: &Path, mut edit: impl FnMut(&AuditEntry) -> Option<serde_json::Value>) {
    let log_path = out.join("audit.jsonl");
    let entries = crate::evidence::log::read_chain(&std::fs::read(&log_path).unwrap()).unwrap();
    let rewritten = log_path.with_extension("new");
    let mut log = crate::evidence::log::AuditLog::create(&rewritten).unwrap();
    for e in &entries {
        if let Some(event) = edit(e) {
            log.append(e.time.clone(), e.step.clone(), e.actors.clone(), event)
                .unwrap();
        }
    }
    drop(log);
    std::fs::rename(&rewritten, &log_path).unwrap();
}

/// The same bundle with the explanation cut out, or pointing at another entry (the log re-hashed),
/// no longer verifies: an unsigned confirmation is accepted only right after it, with the abort next.
#[test]
fn an_unsigned_confirmation_without_its_record_fails_verify() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (outcome, _, _) = run_with("Kq-owl-Lime", Some("Maria Keller"), &out);
    outcome.unwrap();
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&out).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
    }
    rewrite_log(&out, |e| {
        (e.kind() != "confirmation_unsigned").then(|| e.event.clone())
    });
    let v = verify_bundle(&out);
    assert!(!v.passed());
    let table = v.table();
    assert!(
        table.contains("by Maria Keller (step preflight) has no valid card signature"),
        "{table}"
    );
    assert!(!table.contains("WARN"), "{table}");

    // The record names an entry other than the confirmation just before it.
    rewrite_log(&copy, |e| {
        let mut event = e.event.clone();
        if e.kind() == "confirmation_unsigned" {
            event["confirmed_seq"] = serde_json::json!(e.seq - 2);
        }
        Some(event)
    });
    let table = verify_bundle(&copy).table();
    assert!(
        table.contains("confirmation_unsigned does not follow the confirmation by Maria Keller"),
        "{table}"
    );
}

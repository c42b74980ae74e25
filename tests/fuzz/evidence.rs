//! The evidence readers: audit.jsonl (the hash chain), the report rebuilt from a log, report.json, and
//! the PDF rendered from it, all fed from a real ceremony run on the mock HSM.

use super::mutate::{fuzz, json_edits, mutate_json, mutated, single_flip};
use keyrite::driver::operator::{Answers, Headless};
use keyrite::driver::pins::{PinRequest, PinSource};
use keyrite::driver::{CardSetup, Ceremony, RunMode};
use keyrite::evidence::events::ConfirmationSource;
use keyrite::evidence::log::{read_chain, AuditEntry};
use keyrite::evidence::report::{self, Report};
use keyrite::hsm::mock::MockHsm;
use keyrite::hsm::{Hsm, HsmError};
use keyrite::script::{parse, TokenSelector};
use proptest::prelude::*;
use secrecy::SecretString;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

struct Pin;

impl PinSource for Pin {
    fn pin(&mut self, _: &PinRequest<'_>) -> keyrite::error::Result<SecretString> {
        Ok(SecretString::from("1234"))
    }
}

/// audit.jsonl and report.json of one completed root ceremony (root-ca-p256.toml, personal cards
/// left out) on the mock HSM; made once per test binary.
fn bundle() -> &'static (Vec<u8>, Vec<u8>) {
    static BUNDLE: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/ceremony-scripts/root-ca-p256.toml"
        );
        let source: String = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("card = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let loaded = parse::parse("root-ca-p256.toml", &source).unwrap();
        let mut opener = |_: &str, _: &TokenSelector| -> Result<Box<dyn Hsm + Send>, HsmError> {
            Ok(Box::new(MockHsm::new("1234")))
        };
        let mut printed = Vec::new();
        let mut operator = Headless::new(Answers::auto(&loaded.script), &mut printed);
        let mode = RunMode {
            rehearsal: false,
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
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let outcome = Ceremony {
            loaded: &loaded,
            mode,
            operator: &mut operator,
            pins: &mut Pin,
            opener: &mut opener,
        }
        .run(&out)
        .unwrap();
        assert!(outcome.completed, "{:?}", outcome.reason);
        (
            std::fs::read(out.join("audit.jsonl")).unwrap(),
            std::fs::read(out.join("report.json")).unwrap(),
        )
    })
}

fn log_seed() -> Arc<Vec<Vec<u8>>> {
    Arc::new(vec![bundle().0.clone()])
}

#[test]
fn fuzz_audit_log_reader() {
    fuzz("audit-log", mutated(log_seed()), |bytes| {
        // A chain that reads is exactly its canonical lines: nothing else can hide in the file.
        if let Ok(entries) = read_chain(&bytes) {
            let lines: String = entries.iter().map(|e| e.to_line() + "\n").collect();
            prop_assert_eq!(lines.as_bytes(), bytes.as_slice());
        }
        Ok(())
    });
}

#[test]
fn fuzz_every_bit_flip_in_the_log_breaks_the_chain() {
    let seeds = log_seed();
    fuzz(
        "audit-log-flip",
        single_flip(seeds.clone()),
        |(i, at, bit)| {
            let mut bytes = seeds[i].clone();
            bytes[at] ^= 1 << bit;
            prop_assert!(read_chain(&bytes).is_err(), "byte {} bit {}", at, bit);
            Ok(())
        },
    );
}

/// The evidence rewriter: entries of the log changed (JSON-aware: any field replaced or removed, in
/// the event, the actors, the step or the time), then the whole chain re-hashed so it reads.
/// Rebuilding the report from it must not panic, and must never give the report that was signed.
#[test]
fn fuzz_a_rehashed_rewritten_log_never_rebuilds_the_report() {
    let (log, report_json) = bundle();
    let entries = read_chain(log).unwrap();
    let original: Report = serde_json::from_slice(report_json).unwrap();
    let body = entries.len() - 1;
    let strategy = prop::collection::vec((0..body, json_edits()), 1..3);
    let built = AtomicUsize::new(0);
    fuzz("rewritten-log", strategy, |edits| {
        let mut rewritten: Vec<AuditEntry> = entries[..body].to_vec();
        for (i, changes) in edits {
            let mut value = serde_json::to_value(&rewritten[i]).unwrap();
            for (pick, edit) in changes {
                mutate_json(&mut value, pick, edit);
            }
            match serde_json::from_value::<AuditEntry>(value) {
                Ok(changed) => rewritten[i] = changed,
                Err(_) => return Ok(()),
            }
        }
        rechain(&mut rewritten);
        let same = rewritten
            .iter()
            .zip(&entries)
            .all(|(a, b)| a.to_line() == b.to_line());
        if let Ok(rebuilt) = report::build(&rewritten) {
            built.fetch_add(1, Ordering::Relaxed);
            prop_assert!(
                same || rebuilt != original,
                "a rewritten log rebuilt the signed report"
            );
            // A hostile bundle would carry this report.json: it renders without a panic.
            let _ = keyrite::evidence::pdf::render(&rebuilt);
        }
        Ok(())
    });
    eprintln!(
        "rewritten-log: {} rewritten logs rebuilt a report",
        built.into_inner()
    );
}

/// Sequence numbers, `prev` and `hash` recomputed: what a rewriter who knows the format does.
fn rechain(entries: &mut [AuditEntry]) {
    let mut prev = entries[0].prev.clone();
    for (i, e) in entries.iter_mut().enumerate() {
        e.seq = i as u64;
        e.prev = prev;
        e.hash = e.compute_hash();
        prev = e.hash.clone();
    }
}

#[test]
fn fuzz_report_json_reader_and_pdf() {
    let report_json = bundle().1.clone();
    fuzz("report", mutated(Arc::new(vec![report_json])), |bytes| {
        if let Ok(report) = serde_json::from_slice::<Report>(&bytes) {
            // verify re-renders report.json: a hostile one must not crash it.
            let _ = keyrite::evidence::pdf::render(&report);
            let _ = report::to_json(&report);
        }
        Ok(())
    });
}

/// report.json with any field replaced or removed (JSON-aware, so most cases still parse): the
/// PDF renderer and the writer take whatever a hostile bundle holds.
#[test]
fn fuzz_report_fields_and_pdf() {
    let original: serde_json::Value = serde_json::from_slice(&bundle().1).unwrap();
    let parsed = AtomicUsize::new(0);
    fuzz("report-fields", json_edits(), |changes| {
        let mut value = original.clone();
        for (pick, edit) in changes {
            mutate_json(&mut value, pick, edit);
        }
        if let Ok(report) = serde_json::from_value::<Report>(value) {
            parsed.fetch_add(1, Ordering::Relaxed);
            let _ = keyrite::evidence::pdf::render(&report);
            let _ = report::to_json(&report);
        }
        Ok(())
    });
    eprintln!(
        "report-fields: {} changed reports parsed and rendered",
        parsed.into_inner()
    );
}

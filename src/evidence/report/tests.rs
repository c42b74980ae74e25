//! The deferred rebuild (builder.rs, stream.rs) gives byte for byte the report.json and report.pdf
//! of the rebuild that holds every confirmation.

use super::stream::{with_filler, with_tap, Filler};
use super::{build, parse_event, to_json, ReportBuilder};
use crate::engine::Event;
use crate::evidence::events::{ConfirmationSource, ParticipantRecord, PlannedStep, Record};
use crate::evidence::log::{AuditEntry, AuditLog};
use crate::evidence::safe_read::BundleDir;
use crate::script::{Action, Role, SecurityLevel};
use sha2::{Digest, Sha256};

fn confirmed(step: &str, person: &str) -> serde_json::Value {
    serde_json::to_value(Event::Confirmed {
        step: step.into(),
        person: person.into(),
        role: Role::Operator,
        counts_for: "dual-control".into(),
    })
    .unwrap()
}

/// A log of three steps; `confirmations` lists (step, person) in log order.
fn log(dir: &std::path::Path, confirmations: &[(&str, &str)]) -> Vec<AuditEntry> {
    let steps = ["s0", "s1", "s2"];
    let started = Record::CeremonyStarted {
        ceremony_id: "T-1".into(),
        name: "Test".into(),
        kind: "test".into(),
        place: "Here".into(),
        security_level: SecurityLevel::Medium,
        rehearsal: true,
        confirmations: ConfirmationSource {
            kind: "auto".into(),
            answers_sha256: None,
        },
        script_file: "script.toml".into(),
        script_sha256: "00".repeat(32),
        tool: "keyrite".into(),
        tool_version: "0".into(),
        participants: ["Ann", "Bob", "Cy"]
            .map(|name| ParticipantRecord {
                name: name.into(),
                roles: vec![Role::Operator],
                organisation: None,
            })
            .to_vec(),
        steps: steps
            .map(|id| PlannedStep {
                id: id.into(),
                title: format!("Step {id}"),
                action: Action::Manual,
            })
            .to_vec(),
    };
    let mut log = AuditLog::create(&dir.join("audit.jsonl")).unwrap();
    let mut entries = vec![log
        .append(
            "2026-12-02T10:00:00Z".into(),
            None,
            vec![],
            serde_json::to_value(&started).unwrap(),
        )
        .unwrap()];
    for (i, (step, person)) in confirmations.iter().enumerate() {
        let time = format!("2026-12-02T10:{:02}:{:02}Z", i / 60, i % 60);
        let event = confirmed(step, person);
        entries.push(
            log.append(
                time,
                Some(step.to_string()),
                vec![person.to_string()],
                event,
            )
            .unwrap(),
        );
    }
    entries
}

fn deferred_rebuild(entries: &[AuditEntry]) -> (super::Report, super::Deferred) {
    let mut b =
        ReportBuilder::start_deferred(&entries[0], parse_event(&entries[0]).unwrap()).unwrap();
    for e in &entries[1..] {
        b.apply(e, parse_event(e).unwrap()).unwrap();
    }
    let (report, deferred) = b.finish_deferred(entries.last().unwrap());
    (report, deferred.unwrap())
}

fn filler(dir: &std::path::Path, deferred: &super::Deferred, sha: &str) -> Filler {
    let lines = BundleDir::open(dir)
        .unwrap()
        .open_log("audit.jsonl")
        .unwrap();
    Filler::new(lines, deferred, sha)
}

#[test]
fn a_deferred_rebuild_encodes_and_renders_the_same_bytes_as_a_full_one() {
    let dir = tempfile::tempdir().unwrap();
    let entries = log(
        dir.path(),
        &[
            ("s0", "Ann"),
            ("s0", "Bob"),
            ("s1", "Bob"),
            ("s1", "Cy"),
            ("s1", "Ann"),
            ("s2", "Ann"),
        ],
    );
    let full = build(&entries).unwrap();
    assert_eq!(full.steps[1].confirmations.len(), 3);
    let (report, deferred) = deferred_rebuild(&entries);
    assert!(deferred.in_order);
    assert_eq!(deferred.counts, [2, 3, 1]);
    assert_eq!(deferred.steps_confirmed["Ann"], 3);
    assert!(report.steps.iter().all(|s| s.confirmations.is_empty()));
    let sha = hex::encode(Sha256::digest(
        std::fs::read(dir.path().join("audit.jsonl")).unwrap(),
    ));

    let (json, read) = with_filler(filler(dir.path(), &deferred, &sha), || to_json(&report));
    assert_eq!(read, Ok(()));
    assert_eq!(json.unwrap(), to_json(&full).unwrap());
    // With report.json's hash given, as verify renders (encoding the report again would take the
    // confirmations the rendering needs).
    let json_sha = hex::encode(Sha256::digest(to_json(&full).unwrap()));
    let (pdf, read) = with_filler(filler(dir.path(), &deferred, &sha), || {
        crate::evidence::pdf::render_hashed(&report, &json_sha)
    });
    assert_eq!(read, Ok(()));
    assert_eq!(pdf, crate::evidence::pdf::render(&full));

    // A log that is not the file the first pass read is refused.
    let (_, read) = with_filler(filler(dir.path(), &deferred, &"0".repeat(64)), || {
        to_json(&report)
    });
    assert!(read
        .unwrap_err()
        .contains("changed while it was being verified"));

    // The first pass's spill: the same bytes, without the log (deleted here), on two threads.
    std::fs::remove_file(dir.path().join("audit.jsonl")).unwrap();
    let spilled = || Filler::from_spill(&deferred).expect("the first pass spilled");
    let (json, pdf) = std::thread::scope(|scope| {
        let pdf = scope.spawn(|| {
            with_filler(spilled(), || {
                crate::evidence::pdf::render_hashed(&report, &json_sha)
            })
        });
        (
            with_filler(spilled(), || to_json(&report)),
            pdf.join().unwrap(),
        )
    });
    assert_eq!((json.0.unwrap(), json.1), (to_json(&full).unwrap(), Ok(())));
    assert_eq!(pdf, (crate::evidence::pdf::render(&full), Ok(())));
    // A spill read short of its end is refused (a keyrite defect, never a silent report).
    let (_, read) = with_filler(spilled(), || ());
    let err = read.unwrap_err();
    assert!(err.contains("left over"), "{err}");
    assert!(
        err.contains("run keyrite verify again with TMPDIR"),
        "{err}"
    );
}

#[test]
fn confirmations_out_of_plan_order_are_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let entries = log(dir.path(), &[("s1", "Ann"), ("s0", "Bob")]);
    let (_, deferred) = deferred_rebuild(&entries);
    assert!(!deferred.in_order);
}

/// A scanned line's event parses as the entry's does, a confirmation's by its own path included
/// (with a member the variant does not know, and with one it lacks).
#[test]
fn a_checked_line_parses_as_its_entry() {
    use crate::evidence::log::ChainCheck;
    use crate::evidence::report::{parse_checked, Parsed};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::create(&path).unwrap();
    let mut extra = confirmed("s0", "Ann");
    extra["note"] = "x".into();
    let mut lacking = confirmed("s0", "Ann");
    lacking.as_object_mut().unwrap().remove("role");
    let mut bad_role = confirmed("s0", "Ann");
    bad_role["role"] = "king".into();
    for event in [confirmed("s0", "Zoë \"Z\""), extra, lacking, bad_role] {
        log.append(
            "2026-01-01T00:00:00Z".into(),
            Some("s0".into()),
            vec![],
            event,
        )
        .unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    let mut chain = ChainCheck::default();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let checked = chain.check(line).unwrap();
        let entry: AuditEntry = serde_json::from_slice(line).unwrap();
        let describe = |p: Result<Parsed, String>| match p {
            Ok(Parsed::Engine(e)) => format!("engine {e:?}"),
            Ok(Parsed::Record(r)) => format!("record {r:?}"),
            Err(e) => format!("error {e}"),
        };
        assert_eq!(
            describe(parse_checked(&checked)),
            describe(parse_event(&entry))
        );
    }
}

/// What an encoding and a rendering give, each with a read of its own, and with two taps of one
/// shared read on two threads (as verify runs them; the queue holds 4 confirmations in tests, so
/// the thread ahead waits for the other).
type Outputs = (
    (Result<Vec<u8>, String>, Result<(), String>),
    (Vec<u8>, Result<(), String>),
);

fn own_and_shared(
    dir: &std::path::Path,
    report: &super::Report,
    deferred: &super::Deferred,
    sha: &str,
) -> (Outputs, Outputs) {
    let encode = || to_json(report).map_err(|e| e.to_string());
    let render = || crate::evidence::pdf::render_hashed(report, &"ab".repeat(32));
    let own = (
        with_filler(filler(dir, deferred, sha), encode),
        with_filler(filler(dir, deferred, sha), render),
    );
    let (json_tap, pdf_tap) = super::shared::split(filler(dir, deferred, sha));
    let shared = std::thread::scope(|scope| {
        let pdf = scope.spawn(|| with_tap(pdf_tap, render));
        let json = with_tap(json_tap, encode);
        (json, pdf.join().unwrap())
    });
    (own, shared)
}

#[test]
fn a_shared_read_gives_each_thread_what_a_read_of_its_own_gives() {
    let dir = tempfile::tempdir().unwrap();
    let people = ["Ann", "Bob", "Cy"];
    let confirmations: Vec<(&str, &str)> = ["s0", "s1", "s2"]
        .iter()
        .zip([9, 2, 14])
        .flat_map(|(step, n)| (0..n).map(move |i| (*step, people[i % 3])))
        .collect();
    let entries = log(dir.path(), &confirmations);
    let (report, deferred) = deferred_rebuild(&entries);
    let bytes = std::fs::read(dir.path().join("audit.jsonl")).unwrap();
    let sha = hex::encode(Sha256::digest(&bytes));
    let full = build(&entries).unwrap();

    let (own, shared) = own_and_shared(dir.path(), &report, &deferred, &sha);
    assert_eq!(shared, own);
    assert_eq!(shared.0 .0.unwrap(), to_json(&full).unwrap());
    assert_eq!(shared.0 .1, Ok(()));
    assert_eq!(shared.1 .1, Ok(()));

    // Not the file the first pass read: both threads are told, as each read of its own is.
    let (own, shared) = own_and_shared(dir.path(), &report, &deferred, &"0".repeat(64));
    assert_eq!(shared, own);
    assert!(shared.1 .1.unwrap_err().contains("changed while"));

    // Cut short inside step s1's confirmations, and inside s2's: the error found by whichever
    // thread reads first reaches both, with the same steps filled before it.
    let starts: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    for cut in [starts[10], starts[15] - 7] {
        std::fs::write(dir.path().join("audit.jsonl"), &bytes[..cut]).unwrap();
        let (own, shared) = own_and_shared(dir.path(), &report, &deferred, &sha);
        assert_eq!(shared, own);
        assert!(shared.0 .1.unwrap_err().contains("changed while"));
    }
}

#[test]
fn a_tap_never_used_holds_the_other_back_from_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let confirmations: Vec<(&str, &str)> = (0..12).map(|_| ("s1", "Bob")).collect();
    let entries = log(dir.path(), &confirmations);
    let (report, deferred) = deferred_rebuild(&entries);
    let sha = hex::encode(Sha256::digest(
        std::fs::read(dir.path().join("audit.jsonl")).unwrap(),
    ));
    let own = with_filler(filler(dir.path(), &deferred, &sha), || to_json(&report));
    for first in [true, false] {
        let (a, b) = super::shared::split(filler(dir.path(), &deferred, &sha));
        let (used, unused) = if first { (a, b) } else { (b, a) };
        // Dropped on another thread while this one reads (or before it starts).
        let json = std::thread::scope(|scope| {
            scope.spawn(move || drop(unused));
            with_tap(used, || to_json(&report))
        });
        assert_eq!(json.0.unwrap(), own.0.as_ref().unwrap().clone());
        assert_eq!(json.1, Ok(()));
    }
}

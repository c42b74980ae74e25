//! A synthetic report for the tests and the criterion bench: `steps` transcript rows, long names,
//! accents, a quorum and a long exception. Not used by any command.

use crate::evidence::events::{ConfirmationSource, ParticipantRecord};
use crate::evidence::report::Report;
use crate::evidence::report::{
    Confirmation, ExceptionRecord, KeyRecord, LogHead, QuorumCard, QuorumReport, StepRecord,
    REPORT_FORMAT,
};
use crate::hsm::KeyAttributes;
use crate::script::{Action, CeremonyInfo, Role, SecurityLevel};

/// A report with `steps` transcript rows, long names and accents, for tests and the bench.
#[doc(hidden)]
pub fn sample_report(steps: usize) -> Report {
    let people = [
        ("Maria Keller", Role::MasterOfCeremony),
        ("Sven Lindqvist", Role::SecurityOfficer),
        (
            "Jörg Müller-Lüdenscheidt von Hohenzollern-Sigmaringen",
            Role::Operator,
        ),
        ("Ines Moreau", Role::IndependentWitness),
    ];
    Report {
        report_format: REPORT_FORMAT,
        rehearsal: true,
        confirmations: ConfirmationSource {
            kind: "auto".into(),
            answers_sha256: None,
        },
        result: "completed".into(),
        abort_reason: None,
        ceremony: CeremonyInfo {
            id: "TEST-2026".into(),
            name: "Test root".into(),
            kind: "root-key-generation".into(),
            place: "Room B2".into(),
            security_level: SecurityLevel::VeryHigh,
        },
        started: "2026-01-02T10:00:00Z".into(),
        ended: "2026-01-02T12:00:00Z".into(),
        tool: "keyrite".into(),
        tool_version: "0.1.0".into(),
        script_file: "script.toml".into(),
        script_sha256: "ab".repeat(32),
        participants: people
            .iter()
            .map(|(name, role)| ParticipantRecord {
                name: (*name).into(),
                roles: vec![*role],
                organisation: Some("Example Trust Services GmbH & Co. KG".into()),
            })
            .collect(),
        preflight: None,
        hsm: None,
        steps: (0..steps)
            .map(|i| StepRecord {
                id: format!("step-{i}"),
                title: format!("Step number {i} with a reasonably long title to wrap"),
                action: Action::Manual,
                result: "completed".into(),
                started: Some("2026-01-02T10:00:00Z".into()),
                ended: Some("2026-01-02T10:01:00Z".into()),
                confirmations: people
                    .iter()
                    .map(|(name, role)| Confirmation {
                        person: (*name).into(),
                        role: *role,
                        counts_for: "dual-control".into(),
                        time: "2026-01-02T10:00:30Z".into(),
                        log_seq: i as u64,
                    })
                    .collect(),
                refusals: vec![],
            })
            .collect(),
        exceptions: vec![ExceptionRecord {
            step: "step-1".into(),
            person: "Maria Keller".into(),
            text: "The bag seal number did not match the log book: ".repeat(12),
            time: "2026-01-02T10:05:00Z".into(),
        }],
        keys: vec![KeyRecord {
            label: "root".into(),
            algorithm: "P-256".into(),
            bits: 256,
            id: "01".into(),
            key_hash: "e58294f2e9a227486e8b061b31cc528fd7fa3f19e58294f2e9a227486e8b061b".into(),
            attributes: KeyAttributes {
                local: Some(true),
                never_extractable: Some(true),
                always_sensitive: Some(true),
                extractable: Some(false),
                sensitive: Some(true),
            },
            generated_in_hsm: true,
            public_key_file: "artifacts/root.pub.pem".into(),
            generated: "2026-01-02T10:10:00Z".into(),
        }],
        certificates: vec![],
        artifacts: vec![],
        attachments: vec![],
        personal_cards: vec![],
        signed_confirmations: vec![],
        quorum: Some(QuorumReport {
            threshold: 2,
            total: 3,
            split_ceremony_id: "TEST-2026".into(),
            commitments_sha256: "cd".repeat(32),
            retired_commitments_sha256: None,
            cards: vec![QuorumCard {
                index: 1,
                holder: "Sven Lindqvist".into(),
                token_label: "card-1".into(),
                serial: "0123456789abcdef".into(),
                bag: "BAG-000123456".into(),
                result: "written".into(),
            }],
        }),
        log_head: LogHead {
            seq: 42,
            hash: "ef".repeat(32),
        },
    }
}

//! A synthetic report for the tests and the criterion bench: `steps` transcript rows, long names,
//! accents, a quorum, a long exception, and personal cards for all but the first participant, which
//! sign their confirmations. Not used by any command.

use crate::evidence::events::{ConfirmationSource, ParticipantRecord, PersonalCardRecord};
use crate::evidence::report::Report;
use crate::evidence::report::{
    Confirmation, ExceptionRecord, KeyRecord, LogHead, QuorumCard, QuorumReport,
    SignedConfirmationReport, StepRecord, REPORT_FORMAT,
};
use crate::hsm::{KeyAttributes, TokenIdentity};
use crate::script::{Action, CeremonyInfo, Role, SecurityLevel};
use crate::x509::card::{PARTICIPANTS_CA_CN, REHEARSAL_ORG};

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
        tokens: Vec::new(),
        destroyed_keys: Vec::new(),
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
                    .enumerate()
                    .map(|(j, (name, role))| Confirmation {
                        person: (*name).into(),
                        role: *role,
                        counts_for: "dual-control".into(),
                        time: "2026-01-02T10:00:30Z".into(),
                        log_seq: confirmed_seq(i, j),
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
                wrap_with_trusted: None,
            },
            generated_in_hsm: true,
            public_key_file: "artifacts/root.pub.pem".into(),
            generated: "2026-01-02T10:10:00Z".into(),
        }],
        certificates: vec![],
        crls: vec![],
        key_uris: vec![],
        certificates_on_token: vec![],
        artifacts: vec![],
        attachments: vec![],
        personal_cards: people[1..]
            .iter()
            .enumerate()
            .map(|(j, (name, _))| card(name, j))
            .collect(),
        signed_confirmations: (0..steps)
            .flat_map(|i| {
                people[1..]
                    .iter()
                    .enumerate()
                    .map(move |(j, (name, role))| SignedConfirmationReport {
                        step: format!("step-{i}"),
                        person: (*name).into(),
                        role: *role,
                        time: "2026-01-02T10:00:30Z".into(),
                        confirmed_seq: confirmed_seq(i, j + 1),
                        key_hash: card_key_hash(j + 1),
                        log_seq: confirmed_seq(i, j + 1) + 1,
                    })
            })
            .collect(),
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
        existing_keys: Vec::new(),
        test_signatures: Vec::new(),
        ca_certificates: Vec::new(),
        backups: Vec::new(),
        restores: Vec::new(),
        restores_undone: Vec::new(),
        log_head: LogHead {
            seq: 42,
            hash: "ef".repeat(32),
        },
    }
}

/// Log sequence number of participant `j`'s confirmation of step `i` (its signature follows it).
fn confirmed_seq(i: usize, j: usize) -> u64 {
    (10 + i * 8 + j * 2) as u64
}

fn card_key_hash(j: usize) -> String {
    format!("{:02x}", 0x10 + j).repeat(32)
}

fn card(name: &str, j: usize) -> PersonalCardRecord {
    let stem = crate::script::signers::stem_among(&[name], name);
    PersonalCardRecord {
        person: name.into(),
        token: TokenIdentity {
            module_path: "/usr/lib/softhsm/libsofthsm2.so".into(),
            library_description: "Implementation of PKCS11".into(),
            library_manufacturer: "SoftHSM".into(),
            library_version: "2.6".into(),
            token_label: format!("card-{stem}"),
            manufacturer: "SoftHSM project".into(),
            model: "SoftHSM v2".into(),
            serial: format!("{:016x}", 0x1383_3332_56fd_4327u64 + j as u64),
            hardware_version: "2.6".into(),
            firmware_version: "2.6".into(),
        },
        key_id: "140ecdfc8be3ac6948cce5c2516958e3".into(),
        certificate_pem: "-----BEGIN CERTIFICATE-----\n(sample)\n-----END CERTIFICATE-----\n"
            .into(),
        key_hash: card_key_hash(j + 1),
        subject: format!("CN={name},O={REHEARSAL_ORG}"),
        issuer: format!("CN={PARTICIPANTS_CA_CN},O={REHEARSAL_ORG}"),
        sha256_fingerprint: format!("{:02x}", 0xa0 + j).repeat(32),
    }
}

//! report.json: the ceremony report, derived entirely from the audit log.
//!
//! Because the report is a pure function of the log, `keyrite verify` rebuilds it from audit.jsonl and
//! demands equality: a report cannot claim anything the chained log does not.

use super::events::{ConfirmationSource, HostFacts, ParticipantRecord, PersonalCardRecord, Record};
use super::log::AuditEntry;
use super::quorum;
use crate::engine::Event;
use crate::hsm::{KeyAttributes, TokenIdentity};
use crate::script::{Action, CeremonyInfo, Role};
use crate::x509::extensions::ExtensionRecord;
use serde::{Deserialize, Serialize};

/// Version 2 added `attachments`.
pub const REPORT_FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub report_format: u32,
    /// True for `keyrite rehearse`: the keys are throw-away and prove nothing about a real HSM.
    pub rehearsal: bool,
    /// How the confirmations were given (keyboard, answers file with its SHA-256, or --auto).
    pub confirmations: ConfirmationSource,
    /// "completed" or "aborted".
    pub result: String,
    pub abort_reason: Option<String>,
    pub ceremony: CeremonyInfo,
    pub started: String,
    pub ended: String,
    pub tool: String,
    pub tool_version: String,
    pub script_file: String,
    pub script_sha256: String,
    pub participants: Vec<ParticipantRecord>,
    pub preflight: Option<Preflight>,
    pub hsm: Option<TokenIdentity>,
    /// Issue 12: the ceremony's other tokens (`[[hsms]]`), each with its identity record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<super::tokens::NamedTokenRecord>,
    /// Issue 12: keys destroyed, each with the read-back that nothing of it remained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destroyed_keys: Vec<super::destroy::KeyDestroyedRecord>,
    pub steps: Vec<StepRecord>,
    pub exceptions: Vec<ExceptionRecord>,
    pub keys: Vec<KeyRecord>,
    pub certificates: Vec<CertificateRecord>,
    /// An RFC 7512 `pkcs11:` URI for every key the ceremony generated or used (absent in older logs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_uris: Vec<KeyUriRecord>,
    /// Certificates also stored on the token (`store_on_token`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates_on_token: Vec<StoredCertificateRecord>,
    /// CRLs signed by `sign_crl` steps (absent when there are none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crls: Vec<crate::x509::crl::CrlRecord>,
    pub artifacts: Vec<ArtifactRecord>,
    /// Files kept outside the bundle (recordings, scanned sheets), hashed by `attach` steps.
    pub attachments: Vec<AttachmentRecord>,
    /// The M-of-N activation quorum, when the ceremony split, used or checked one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<QuorumReport>,
    /// The participants' personal cards (certificate, key hash), when the script gives cards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub personal_cards: Vec<PersonalCardRecord>,
    /// Every confirmation signed with a personal card, in log order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signed_confirmations: Vec<SignedConfirmationReport>,
    /// Keys from earlier ceremonies this run found and used, each with its hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub existing_keys: Vec<super::signing::ExistingKeyRecord>,
    /// Test messages signed, with the signing key's hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test_signatures: Vec<super::signing::TestSignatureReport>,
    /// Certificates issued to other CAs: subordinate CAs and cross-certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_certificates: Vec<super::signing::IssuedCertificateRecord>,
    /// Issue 12: keys backed up (wrapped under a KEK split to cards).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<super::backup::BackupRecord>,
    /// Issue 12: keys restored from a backup into this ceremony's token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restores: Vec<super::backup::RestoreRecord>,
    /// Issue 12: restores undone (refused or interrupted), with what was destroyed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restores_undone: Vec<super::backup::RestoreUndone>,
    pub log_head: LogHead,
}

/// A signed confirmation as the report lists it (the signature itself stays in the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedConfirmationReport {
    pub step: String,
    pub person: String,
    pub role: Role,
    pub time: String,
    pub confirmed_seq: u64,
    pub key_hash: String,
    pub log_seq: u64,
}

/// The custodian quorum as the log shows it: who holds which card in which bag, and the Feldman
/// commitments every share is checked against. Never a share, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuorumReport {
    /// M: shares needed to activate.
    pub threshold: u32,
    /// N: cards holding a share.
    pub total: u32,
    /// The id of the ceremony that made the split (shares carry it).
    pub split_ceremony_id: String,
    /// SHA-256 of the encoded Feldman commitments, lowercase hex.
    pub commitments_sha256: String,
    pub cards: Vec<QuorumCard>,
    /// After a reshare: SHA-256 of the old share set's commitments, whose shares were destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_commitments_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuorumCard {
    /// The share's index (1..=N).
    pub index: u32,
    pub holder: String,
    pub token_label: String,
    pub serial: String,
    /// Serial of the tamper-evident bag the card is sealed in.
    pub bag: String,
    /// What this ceremony did with the card: "written", "presented", "refused", "healthy", "retired", …
    pub result: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preflight {
    pub host: HostFacts,
    pub offline: bool,
    pub warnings: Vec<String>,
    /// The network HSM's interface the script allowed up; `offline` is judged without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsm_interface: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub id: String,
    pub title: String,
    pub action: Action,
    /// "completed", "failed", "refused", "aborted" (interrupted while current) or "not-reached".
    pub result: String,
    pub started: Option<String>,
    pub ended: Option<String>,
    pub confirmations: Vec<Confirmation>,
    pub refusals: Vec<Refusal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    pub person: String,
    pub role: Role,
    /// "dual-control" or "witness".
    pub counts_for: String,
    pub time: String,
    pub log_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub person: Option<String>,
    pub reason: String,
    pub time: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionRecord {
    pub step: String,
    pub person: String,
    pub text: String,
    pub time: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub label: String,
    pub algorithm: String,
    pub bits: u32,
    pub id: String,
    /// SHA-256 of the DER SubjectPublicKeyInfo, lowercase hex.
    pub key_hash: String,
    pub attributes: KeyAttributes,
    pub generated_in_hsm: bool,
    pub public_key_file: String,
    pub generated: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRecord {
    pub name: String,
    pub key: String,
    pub subject: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub signature_algorithm: String,
    pub sha256_fingerprint: String,
    pub file: String,
    /// Issuer DN and every extension, parsed from the signed DER (absent from logs written before they were recorded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<ExtensionRecord>,
}

/// A key's RFC 7512 URI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUriRecord {
    pub label: String,
    pub key_hash: String,
    pub uri: String,
}

/// A certificate stored on the token as CKO_CERTIFICATE under its key's CKA_ID (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredCertificateRecord {
    pub name: String,
    pub key: String,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// A file outside the bundle whose SHA-256 and size an `attach` step recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRecord {
    pub step: String,
    /// What the file is, from the script (e.g. "video of the whole ceremony").
    pub description: String,
    /// The file's name as given at run time, without its folder.
    pub file_name: String,
    /// SHA-256 of the file's bytes, lowercase hex (what `sha256sum FILE` prints).
    pub sha256: String,
    pub size: u64,
    pub time: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHead {
    pub seq: u64,
    pub hash: String,
}

/// One parsed log event: either the engine's or the driver's.
// Parsed once per log line and consumed at once; boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    Engine(Event),
    Record(Record),
}

/// report.json's exact bytes: pretty-printed JSON and a final newline.
pub fn to_json(report: &Report) -> Result<Vec<u8>, String> {
    let mut json = serde_json::to_vec_pretty(report)
        .map_err(|e| format!("could not encode the report: {e}"))?;
    json.push(b'\n');
    Ok(json)
}

pub fn parse_event(entry: &AuditEntry) -> Result<Parsed, String> {
    // Deserialised from the borrowed value: no copy of the event per attempt.
    if let Ok(ev) = Event::deserialize(&entry.event) {
        return Ok(Parsed::Engine(ev));
    }
    Record::deserialize(&entry.event)
        .map(Parsed::Record)
        .map_err(|e| {
            format!(
                "log entry {} has an unknown or malformed event \"{}\": {e}",
                entry.seq,
                entry.kind()
            )
        })
}

/// Build the report from the log entries up to and including the head (everything before
/// `report_written`). Steps come from the plan in the first entry, so steps never reached are listed.
pub fn build(entries: &[AuditEntry]) -> Result<Report, String> {
    let first = entries.first().ok_or("the log is empty")?;
    let last = entries.last().ok_or("the log is empty")?;
    let mut builder = ReportBuilder::start(first, parse_event(first)?)?;
    for entry in &entries[1..] {
        builder.apply(entry, parse_event(entry)?)?;
    }
    Ok(builder.finish(last))
}

/// The report built one entry at a time, so that nobody has to hold the log: [`ReportBuilder::start`]
/// with the first entry, [`ReportBuilder::apply`] each later one, [`ReportBuilder::finish`] with the
/// last entry the report covers.
pub struct ReportBuilder {
    report: Report,
    /// The step the last step event named: logs name steps in order, so the next lookup is almost
    /// always here or one further (no search through a long script's steps). `usize::MAX` when the
    /// plan repeats a step id: then every lookup searches, to find the first, as it always did.
    cursor: usize,
}

impl ReportBuilder {
    pub fn start(first: &AuditEntry, parsed: Parsed) -> Result<Self, String> {
        let Parsed::Record(Record::CeremonyStarted {
            ceremony_id,
            name,
            kind,
            place,
            security_level,
            rehearsal,
            confirmations,
            script_file,
            script_sha256,
            tool,
            tool_version,
            participants,
            steps: planned,
        }) = parsed
        else {
            return Err("the first log entry is not ceremony_started".into());
        };
        let report = Report {
            report_format: REPORT_FORMAT,
            rehearsal,
            confirmations,
            result: "aborted".into(),
            abort_reason: Some("the log ends before the ceremony completed".into()),
            ceremony: CeremonyInfo {
                id: ceremony_id,
                name,
                kind,
                place,
                security_level,
            },
            started: first.time.clone(),
            ended: first.time.clone(),
            tool,
            tool_version,
            script_file,
            script_sha256,
            participants,
            preflight: None,
            hsm: None,
            tokens: Vec::new(),
            destroyed_keys: Vec::new(),
            steps: planned
                .iter()
                .map(|p| StepRecord {
                    id: p.id.clone(),
                    title: p.title.clone(),
                    action: p.action,
                    result: "not-reached".into(),
                    started: None,
                    ended: None,
                    confirmations: Vec::new(),
                    refusals: Vec::new(),
                })
                .collect(),
            exceptions: Vec::new(),
            keys: Vec::new(),
            certificates: Vec::new(),
            crls: Vec::new(),
            key_uris: Vec::new(),
            certificates_on_token: Vec::new(),
            artifacts: Vec::new(),
            attachments: Vec::new(),
            quorum: None,
            personal_cards: Vec::new(),
            signed_confirmations: Vec::new(),
            existing_keys: Vec::new(),
            test_signatures: Vec::new(),
            ca_certificates: Vec::new(),
            backups: Vec::new(),
            restores: Vec::new(),
            restores_undone: Vec::new(),
            log_head: LogHead {
                seq: first.seq,
                hash: first.hash.clone(),
            },
        };
        let mut ids = std::collections::HashSet::new();
        let unique = report.steps.iter().all(|s| ids.insert(s.id.as_str()));
        let cursor = if unique { 0 } else { usize::MAX };
        Ok(ReportBuilder { report, cursor })
    }

    /// Apply an entry after the first.
    pub fn apply(&mut self, entry: &AuditEntry, parsed: Parsed) -> Result<(), String> {
        apply(&mut self.report, &mut self.cursor, entry, parsed)
    }

    /// The report whose head is `last`, the last entry applied (or the first).
    pub fn finish(mut self, last: &AuditEntry) -> Report {
        self.report.ended.clone_from(&last.time);
        self.report.log_head = LogHead {
            seq: last.seq,
            hash: last.hash.clone(),
        };
        self.report
    }
}

/// The step record with `id`: the first one, as the script's ids are unique. Tries the cursor and
/// the step after it before searching.
fn step_mut<'a>(
    report: &'a mut Report,
    cursor: &mut usize,
    id: &str,
    seq: u64,
) -> Result<&'a mut StepRecord, String> {
    let steps = &report.steps;
    // usize::MAX: the plan repeats an id, so only a search finds the first step with it.
    let near = match *cursor {
        usize::MAX => None,
        at => [at, at + 1]
            .into_iter()
            .find(|&i| steps.get(i).is_some_and(|s| s.id == id)),
    };
    let found = near.or_else(|| steps.iter().position(|s| s.id == id));
    let i = found.ok_or_else(|| {
        format!("log entry {seq} names step \"{id}\", which the script does not have")
    })?;
    if *cursor != usize::MAX {
        *cursor = i;
    }
    Ok(&mut report.steps[i])
}

fn apply(
    report: &mut Report,
    cursor: &mut usize,
    entry: &AuditEntry,
    parsed: Parsed,
) -> Result<(), String> {
    let (time, seq) = (entry.time.clone(), entry.seq);
    match parsed {
        Parsed::Engine(event) => match event {
            Event::StepStarted { step, .. } => {
                let s = step_mut(report, cursor, &step, seq)?;
                s.started = Some(time);
                s.result = "aborted".into();
            }
            Event::Confirmed {
                step,
                person,
                role,
                counts_for,
            } => step_mut(report, cursor, &step, seq)?
                .confirmations
                .push(Confirmation {
                    person,
                    role,
                    counts_for,
                    time,
                    log_seq: seq,
                }),
            Event::ConfirmationRefused {
                step,
                person,
                reason,
            } => {
                if let Ok(s) = step_mut(report, cursor, &step, seq) {
                    s.refusals.push(Refusal {
                        person: Some(person),
                        reason,
                        time,
                    });
                }
            }
            Event::StepRefused { step, reason } => {
                let s = step_mut(report, cursor, &step, seq)?;
                s.refusals.push(Refusal {
                    person: None,
                    reason,
                    time: time.clone(),
                });
                s.result = "refused".into();
                s.ended = Some(time);
            }
            Event::StepAuthorised { .. }
            | Event::StepWithdrawn { .. }
            | Event::StepResumed { .. } => {}
            Event::StepCompleted { step } => {
                let s = step_mut(report, cursor, &step, seq)?;
                s.result = "completed".into();
                s.ended = Some(time);
            }
            Event::StepFailed { step, .. } => {
                let s = step_mut(report, cursor, &step, seq)?;
                s.result = "failed".into();
                s.ended = Some(time);
            }
            Event::ExceptionRecorded { step, person, text } => {
                report.exceptions.push(ExceptionRecord {
                    step,
                    person,
                    text,
                    time,
                })
            }
            Event::CeremonyCompleted => {
                report.result = "completed".into();
                report.abort_reason = None;
            }
            Event::CeremonyAborted { reason, step } => {
                report.result = "aborted".into();
                report.abort_reason = Some(match step {
                    Some(s) => format!("at step {s}: {reason}"),
                    None => reason,
                });
            }
        },
        Parsed::Record(record) => match record {
            Record::CeremonyStarted { .. } => {
                return Err(format!("log entry {seq}: a second ceremony_started"))
            }
            Record::Preflight {
                host,
                offline,
                warnings,
                hsm_interface,
            } => {
                report.preflight = Some(Preflight {
                    host,
                    offline,
                    warnings,
                    hsm_interface,
                })
            }
            Record::HsmActivated { token, hsm } => {
                super::tokens::activated(&mut report.hsm, &mut report.tokens, hsm, token)
            }
            Record::KeyGenerated {
                label,
                algorithm,
                bits,
                id,
                key_hash,
                attributes,
                public_key_file,
            } => report.keys.push(KeyRecord {
                label,
                algorithm,
                bits,
                id,
                key_hash,
                generated_in_hsm: attributes.prove_in_hsm_generation()
                    || attributes.prove_backup_generation(),
                attributes,
                public_key_file,
                generated: time,
            }),
            Record::CertificateSigned(cert) => report.certificates.push(cert),
            Record::CrlSigned(crl) => report.crls.push(crl),
            Record::KeyUri {
                label,
                key_hash,
                uri,
            } => report.key_uris.push(KeyUriRecord {
                label,
                key_hash,
                uri,
            }),
            Record::CertificateStored { name, key, id } => report
                .certificates_on_token
                .push(StoredCertificateRecord { name, key, id }),
            Record::ArtifactWritten(artifact) => report.artifacts.push(artifact),
            Record::PersonalCard(card) => report.personal_cards.push(card),
            Record::ConfirmationSigned(c) => {
                report.signed_confirmations.push(SignedConfirmationReport {
                    step: c.step,
                    person: c.person,
                    role: c.role,
                    time,
                    confirmed_seq: c.confirmed_seq,
                    key_hash: c.key_hash,
                    log_seq: seq,
                })
            }
            // The abort right after it gives the reason in the report.
            Record::SignersCa { .. } | Record::ConfirmationUnsigned(_) => {}
            Record::Attached {
                description,
                file_name,
                sha256,
                size,
            } => report.attachments.push(AttachmentRecord {
                step: entry.step.clone().unwrap_or_default(),
                description,
                file_name,
                sha256,
                size,
                time,
            }),
            Record::ReportWritten { .. } => {
                return Err(format!(
                    "log entry {seq}: report_written must be the last entry"
                ))
            }
            Record::QuorumSplit(r) => quorum::apply_split(&mut report.quorum, &r),
            Record::QuorumCardAccepted(e)
            | Record::QuorumCardRefused(e)
            | Record::ShareChecked(e)
            | Record::ShareDestroyed(e)
            | Record::ShareAbsent(e) => quorum::apply_card(&mut report.quorum, &e),
            Record::QuorumActivated(s) | Record::SharesChecked(s) => {
                quorum::apply_summary(&mut report.quorum, &s)
            }
            Record::SharesRetired(r) => quorum::apply_retired(&mut report.quorum, &r),
            Record::ShareSealed(r) => quorum::apply_sealed(&mut report.quorum, &r),
            Record::HsmIntent { .. }
            | Record::TokenWarning { .. }
            | Record::HsmDeactivated { .. }
            | Record::HsmFailed { .. }
            | Record::FingerprintPresented { .. }
            | Record::Retried(_)
            | Record::Reopened(_)
            | Record::FoundAfterInterruption { .. }
            | Record::QuorumPins(_)
            | Record::SealedShareRetired(_) => {}
            Record::ExistingKeyFound(k) => report.existing_keys.push(k),
            Record::KeyDestroyed(d) => report.destroyed_keys.push(d),
            Record::CaCertificateSigned(c) => report.ca_certificates.push(c),
            Record::CertificatePresented(_) => {}
            Record::KeyBackedUp(b) => report.backups.push(b),
            Record::KeyRestored(r) => report.restores.push(r),
            Record::RestoreUndone(u) => report.restores_undone.push(u),
            Record::TestMessageSigned {
                key,
                signature_algorithm,
                verified,
                key_hash,
                ..
            } => report
                .test_signatures
                .push(super::signing::TestSignatureReport {
                    step: entry.step.clone().unwrap_or_default(),
                    key,
                    key_hash,
                    signature_algorithm,
                    verified,
                    time,
                }),
        },
    }
    Ok(())
}

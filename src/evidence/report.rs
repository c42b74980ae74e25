//! report.json: the ceremony report, derived entirely from the audit log.
//!
//! Because the report is a pure function of the log, `keyrite verify` rebuilds it from audit.jsonl and
//! demands equality: a report cannot claim anything the chained log does not.

use super::events::{ConfirmationSource, HostFacts, ParticipantRecord, PersonalCardRecord, Record};
use super::log::{AuditEntry, Checked};
use crate::engine::Event;
use crate::hsm::{KeyAttributes, TokenIdentity};
use crate::script::{Action, CeremonyInfo, Role};
use crate::x509::extensions::ExtensionRecord;
use serde::{Deserialize, Serialize};

mod builder;
pub mod shared;
pub mod spill;
pub mod stream;
pub use builder::{Deferred, ReportBuilder};

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
    /// verify's deferred rebuild fills each step's confirmations from the log as it is encoded.
    #[serde(serialize_with = "stream::serialize_steps")]
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

/// [`to_json`]'s bytes written into `out` as they are encoded (the end of a run writes report.json
/// this way, and verify compares it this way), without the whole encoding in memory.
pub fn write_json(report: &Report, mut out: impl std::io::Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut out, report)?;
    out.write_all(b"\n")
}

/// [`parse_event`] of a checked line: a scanned line's event is parsed from its bytes (a canonical
/// object parses from its bytes as from its `Value`), without building the `Value`; only an event
/// that parses as neither kind is built, for [`parse_event`]'s message.
pub fn parse_checked(checked: &Checked) -> Result<Parsed, String> {
    let line = match checked {
        Checked::Scanned(line) => line,
        Checked::Parsed(entry) => return parse_event(entry),
    };
    // Nearly every line of a long log is a confirmation: its members straight into their types,
    // without the tagged enum's buffering of the whole object first. Anything it does not take
    // is left to the general parse below.
    if line.kind == "confirmed" {
        if let Ok(c) = serde_json::from_str::<ConfirmedEvent>(line.event) {
            return Ok(Parsed::Engine(Event::Confirmed {
                step: c.step,
                person: c.person,
                role: c.role,
                counts_for: c.counts_for,
            }));
        }
    }
    if let Ok(ev) = serde_json::from_str::<Event>(line.event) {
        return Ok(Parsed::Engine(ev));
    }
    if let Ok(record) = serde_json::from_str::<Record>(line.event) {
        return Ok(Parsed::Record(record));
    }
    match serde_json::from_str::<AuditEntry>(line.line) {
        Ok(entry) => parse_event(&entry),
        Err(e) => Err(format!("log entry {} does not parse: {e}", line.seq)),
    }
}

/// `Event::Confirmed`'s members; like the enum's variant, it ignores members it does not know
/// (here the `kind`).
#[derive(Deserialize)]
struct ConfirmedEvent {
    step: String,
    person: String,
    role: Role,
    counts_for: String,
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

#[cfg(test)]
mod tests;

//! The report built from the log one entry at a time ([`ReportBuilder`]), so that nobody has to
//! hold the log. verify's builder can also defer each step's confirmations ([`Deferred`]): it
//! counts them, and they are read from the log again, one step at a time, when the report is
//! encoded or rendered (report/stream.rs), so the rebuilt report does not grow with them.

use super::spill;
use super::{
    AttachmentRecord, Confirmation, ExceptionRecord, KeyRecord, KeyUriRecord, LogHead, Parsed,
    Preflight, Refusal, Report, SignedConfirmationReport, StepRecord, StoredCertificateRecord,
    REPORT_FORMAT,
};
use crate::engine::Event;
use crate::evidence::events::Record;
use crate::evidence::log::EntryRef;
use crate::evidence::quorum;
use crate::script::{CeremonyInfo, Role};
use std::collections::HashMap;
use std::sync::Arc;

/// What a deferred build keeps instead of each step's confirmations.
#[derive(Debug, Default)]
pub struct Deferred {
    /// Confirmations of each step, in plan order.
    pub counts: Vec<u32>,
    /// Whether every confirmation named the step of the one before it or a later one: only then
    /// does one read of the log hand each step its confirmations in plan order.
    pub in_order: bool,
    last_step: usize,
    /// How many steps each person confirmed (the PDF's participants table).
    pub steps_confirmed: HashMap<String, usize>,
    /// The last step counted for each person.
    last_by: HashMap<String, usize>,
    /// The confirmations themselves, while a temporary file takes them (spill.rs).
    spilling: Option<spill::Writer>,
    /// The confirmations, written: where report.json and report.pdf take them from. `None`: the
    /// log is read again instead.
    pub spill: Option<Arc<spill::Spill>>,
}

impl Deferred {
    /// Count (and spill) one confirmation of step `step`; `c` borrows the entry's strings.
    fn note(&mut self, step: usize, c: ConfirmationRef) {
        let ConfirmationRef(person, role, counts_for, time, seq) = c;
        // A spill that fails (a full disk) is dropped: the log is read again instead.
        if let Some(w) = self.spilling.as_mut() {
            if w.push(person, role, counts_for, time, seq).is_err() {
                self.spilling = None;
            }
        }
        if step < self.last_step {
            self.in_order = false;
        }
        self.last_step = step;
        if let Some(n) = self.counts.get_mut(step) {
            *n += 1;
        }
        // Allocates only for a person's first confirmation.
        match self.last_by.get_mut(person) {
            Some(last) if *last == step => {}
            Some(last) => {
                *last = step;
                if let Some(n) = self.steps_confirmed.get_mut(person) {
                    *n += 1;
                }
            }
            None => {
                self.last_by.insert(person.to_string(), step);
                self.steps_confirmed.insert(person.to_string(), 1);
            }
        }
    }
}

/// A confirmation's person, role, word ("dual-control", "witness"), time and log sequence number,
/// borrowed from its entry.
struct ConfirmationRef<'a>(&'a str, Role, &'a str, &'a str, u64);

/// The report built one entry at a time, so that nobody has to hold the log: [`ReportBuilder::start`]
/// with the first entry, [`ReportBuilder::apply`] each later one, [`ReportBuilder::finish`] with the
/// last entry the report covers.
pub struct ReportBuilder {
    report: Report,
    /// Counting instead of holding each step's confirmations (verify).
    deferred: Option<Deferred>,
    /// The step the last step event named: logs name steps in order, so the next lookup is almost
    /// always here or one further (no search through a long script's steps). `usize::MAX` when the
    /// plan repeats a step id: then every lookup searches, to find the first, as it always did.
    cursor: usize,
}

impl ReportBuilder {
    pub fn start<'a>(first: impl Into<EntryRef<'a>>, parsed: Parsed) -> Result<Self, String> {
        let first = first.into();
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
            started: first.time.to_string(),
            ended: first.time.to_string(),
            tool,
            tool_version,
            script_file,
            script_sha256,
            participants,
            preflight: None,
            hsm: None,
            tokens: Vec::new(),
            backups: Vec::new(),
            restores: Vec::new(),
            restores_undone: Vec::new(),
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
            log_head: LogHead {
                seq: first.seq,
                hash: first.hash.to_string(),
            },
        };
        let mut ids = std::collections::HashSet::new();
        let unique = report.steps.iter().all(|s| ids.insert(s.id.as_str()));
        let cursor = if unique { 0 } else { usize::MAX };
        Ok(ReportBuilder {
            report,
            cursor,
            deferred: None,
        })
    }

    /// [`Self::start`] for a builder that counts each step's confirmations instead of holding them.
    pub fn start_deferred<'a>(
        first: impl Into<EntryRef<'a>>,
        parsed: Parsed,
    ) -> Result<Self, String> {
        let mut builder = Self::start(first, parsed)?;
        builder.deferred = Some(Deferred {
            counts: vec![0; builder.report.steps.len()],
            in_order: true,
            spilling: spill::Writer::new().ok(),
            ..Deferred::default()
        });
        Ok(builder)
    }

    /// Apply an entry after the first.
    pub fn apply<'a>(
        &mut self,
        entry: impl Into<EntryRef<'a>>,
        parsed: Parsed,
    ) -> Result<(), String> {
        apply(
            &mut self.report,
            &mut self.cursor,
            self.deferred.as_mut(),
            entry.into(),
            parsed,
        )
    }

    /// The report whose head is `last`, the last entry applied (or the first).
    pub fn finish<'a>(self, last: impl Into<EntryRef<'a>>) -> Report {
        self.finish_deferred(last).0
    }

    /// [`Self::finish`], with the counts a deferred build kept instead of the confirmations.
    pub fn finish_deferred<'a>(
        mut self,
        last: impl Into<EntryRef<'a>>,
    ) -> (Report, Option<Deferred>) {
        let last = last.into();
        self.report.ended = last.time.to_string();
        self.report.log_head = LogHead {
            seq: last.seq,
            hash: last.hash.to_string(),
        };
        if let Some(d) = self.deferred.as_mut() {
            d.spill = d.spilling.take().and_then(|w| w.finish().ok());
        }
        (self.report, self.deferred)
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
    let i = step_index(report, cursor, id, seq)?;
    Ok(&mut report.steps[i])
}

fn step_index(report: &Report, cursor: &mut usize, id: &str, seq: u64) -> Result<usize, String> {
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
    Ok(i)
}

fn apply(
    report: &mut Report,
    cursor: &mut usize,
    deferred: Option<&mut Deferred>,
    entry: EntryRef,
    parsed: Parsed,
) -> Result<(), String> {
    // Owned only where a record keeps it (not for a deferred confirmation).
    let (time, seq) = (entry.time, entry.seq);
    match parsed {
        Parsed::Engine(event) => match event {
            Event::StepStarted { step, .. } => {
                let s = step_mut(report, cursor, &step, seq)?;
                s.started = Some(time.to_string());
                s.result = "aborted".into();
            }
            Event::Confirmed {
                step,
                person,
                role,
                counts_for,
            } => {
                let i = step_index(report, cursor, &step, seq)?;
                match deferred {
                    Some(d) => d.note(i, ConfirmationRef(&person, role, &counts_for, time, seq)),
                    None => report.steps[i].confirmations.push(Confirmation {
                        person,
                        role,
                        counts_for,
                        time: time.to_string(),
                        log_seq: seq,
                    }),
                }
            }
            Event::ConfirmationRefused {
                step,
                person,
                reason,
            } => {
                if let Ok(s) = step_mut(report, cursor, &step, seq) {
                    s.refusals.push(Refusal {
                        person: Some(person),
                        reason,
                        time: time.to_string(),
                    });
                }
            }
            Event::StepRefused { step, reason } => {
                let s = step_mut(report, cursor, &step, seq)?;
                s.refusals.push(Refusal {
                    person: None,
                    reason,
                    time: time.to_string(),
                });
                s.result = "refused".into();
                s.ended = Some(time.to_string());
            }
            Event::StepAuthorised { .. }
            | Event::StepWithdrawn { .. }
            | Event::StepResumed { .. } => {}
            Event::StepCompleted { step } => {
                let s = step_mut(report, cursor, &step, seq)?;
                s.result = "completed".into();
                s.ended = Some(time.to_string());
            }
            Event::StepFailed { step, .. } => {
                let s = step_mut(report, cursor, &step, seq)?;
                s.result = "failed".into();
                s.ended = Some(time.to_string());
            }
            Event::ExceptionRecorded { step, person, text } => {
                report.exceptions.push(ExceptionRecord {
                    step,
                    person,
                    text,
                    time: time.to_string(),
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
                crate::evidence::tokens::activated(&mut report.hsm, &mut report.tokens, hsm, token)
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
                generated: time.to_string(),
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
                    time: time.to_string(),
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
                step: entry.step.unwrap_or_default().to_string(),
                description,
                file_name,
                sha256,
                size,
                time: time.to_string(),
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
            // A resume finds the key again after its new login (the log keeps both finds): the
            // report lists each key once. A find with another hash would be a second entry, but
            // resume stops before that is logged.
            Record::ExistingKeyFound(k) => {
                if !report
                    .existing_keys
                    .iter()
                    .any(|e| e.key == k.key && e.key_hash == k.key_hash && e.id == k.id)
                {
                    report.existing_keys.push(k)
                }
            }
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
                .push(crate::evidence::signing::TestSignatureReport {
                    step: entry.step.unwrap_or_default().to_string(),
                    key,
                    key_hash,
                    signature_algorithm,
                    verified,
                    time: time.to_string(),
                }),
        },
    }
    Ok(())
}

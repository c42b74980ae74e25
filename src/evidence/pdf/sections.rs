//! The sections of report.pdf, in reading order.

use super::cards::{transcript_legend, SignedSet, SIGNED_MARK};
use super::layout::{Column, Layout, BODY, CONTENT_W};
use super::metrics::{wrap, Face};
use crate::evidence::pgp_words::pgp_words;
use crate::evidence::report::{stream, KeyRecord, Report, StepRecord};
use crate::hsm::spki::grouped_hex;
use crate::hsm::KeyAttributes;
use std::collections::{HashMap, HashSet};

/// The report's pages, collected (for tests; rendering streams them through [`lay_out`]).
#[cfg(test)]
pub fn layout(report: &Report) -> Vec<Vec<super::layout::Op>> {
    let mut pages = Vec::new();
    let mut sink = |ops| pages.push(ops);
    let mut l = Layout::new(&mut sink);
    lay_out(report, &mut l);
    l.finish();
    pages
}

/// Lay out every section of the report, in reading order.
pub fn lay_out(report: &Report, l: &mut Layout) {
    cover(l, report);
    participants(l, report);
    hsm(l, report);
    keys(l, report);
    super::certificates::section(l, report);
    super::existing::ca_certificates(l, report);
    super::crls::section(l, report);
    super::backup::section(l, report);
    quorum(l, report);
    transcript(l, report);
    exceptions(l, report);
    attachments(l, report);
    artifacts(l, report);
    log_head(l, report);
    super::signatures::page(l, report);
    // The personal cards' details are for the auditor who checks them: an appendix.
    super::cards::section(l, report);
}

pub(super) fn regular(label: &str, value: impl Into<String>) -> (&str, String, Face) {
    (label, value.into(), Face::Regular)
}

pub(super) fn mono(label: &str, value: impl Into<String>) -> (&str, String, Face) {
    (label, value.into(), Face::Mono)
}

/// The formal result: what happened, without the tool's advice on what to do next (an error's
/// text after " — ").
fn result_line(report: &Report) -> String {
    match (&report.result[..], &report.abort_reason) {
        ("completed", None) => "COMPLETED".into(),
        (_, Some(reason)) => format!("ABORTED: {}", without_advice(reason)),
        (other, None) => other.to_uppercase(),
    }
}

fn without_advice(reason: &str) -> &str {
    reason.split(" — ").next().unwrap_or(reason).trim()
}

/// For an aborted ceremony, a plain statement of where it stopped and what did not happen.
fn abort_statement(r: &Report) -> Option<String> {
    let reason = r.abort_reason.as_deref()?;
    let stopped = r
        .steps
        .iter()
        .find(|s| matches!(&s.result[..], "failed" | "refused" | "aborted"));
    let not_reached = r.steps.iter().filter(|s| s.result == "not-reached").count();
    let at = stopped.map_or(String::new(), |s| {
        format!(" at step \"{}\" ({})", s.title, s.id)
    });
    // The reason may name the step again ("at step preflight: ..."): say it once.
    let reason = without_advice(reason);
    let reason = stopped
        .and_then(|s| reason.strip_prefix(&format!("at step {}: ", s.id)))
        .unwrap_or(reason);
    Some(format!(
        "This ceremony was aborted{at}: {}. {} after it {} not carried out.",
        reason,
        crate::error::count(not_reached, "step", "steps"),
        if not_reached == 1 { "was" } else { "were" }
    ))
}

fn cover(l: &mut Layout, r: &Report) {
    l.para(Face::Bold, 10.0, "KEY CEREMONY REPORT");
    l.title(&r.ceremony.name, 20.0);
    l.space(10.0);
    if r.rehearsal {
        l.para(
            Face::Bold,
            11.0,
            "REHEARSAL on throw-away SoftHSM tokens: the keys in this report prove nothing about a \
             real HSM and must never be trusted.",
        );
    }
    let confirmations = match (&r.confirmations.kind[..], &r.confirmations.answers_sha256) {
        ("answers-file", Some(sha)) => format!("answers file, SHA-256 {}", grouped_hex(sha)),
        ("auto", _) => "automatic (rehearse --auto): nobody confirmed in person".into(),
        (kind, _) => kind.replace('-', " "),
    };
    l.key_values(&[
        regular("Result", result_line(r)),
        regular("Ceremony id", &r.ceremony.id),
        regular("Type", &r.ceremony.kind),
        regular("Place", &r.ceremony.place),
        regular("Security level", r.ceremony.security_level.to_string()),
        regular("Started (UTC)", &r.started),
        regular("Ended (UTC)", &r.ended),
        regular("Confirmations", confirmations),
        regular("Script", &r.script_file),
        mono("Script SHA-256", grouped_hex(&r.script_sha256)),
        regular("Tool", format!("{} {}", r.tool, r.tool_version)),
        mono(
            "Audit-log head",
            format!("seq {}: {}", r.log_head.seq, grouped_hex(&r.log_head.hash)),
        ),
        regular("Report format", r.report_format.to_string()),
    ]);
    if let Some(statement) = abort_statement(r) {
        l.para(Face::Bold, BODY, &statement);
    }
    l.para(
        Face::Regular,
        BODY,
        "This report is rendered from report.json, which keyrite derives from the hash-chained \
         audit log (audit.jsonl) and nothing else. The footer of every page carries the SHA-256 of \
         report.json. `keyrite verify` on the evidence folder re-checks the log chain, rebuilds \
         report.json from the log, re-renders this PDF and demands byte equality.",
    );
    if let Some(pre) = &r.preflight {
        l.subheading("Ceremony laptop (pre-flight)");
        let online: Vec<&str> = pre.host.online_interfaces();
        l.key_values(&[
            regular("Host", &pre.host.hostname),
            regular("Operating system", &pre.host.os),
            regular("Kernel", &pre.host.kernel),
            regular(
                "Clock (UTC) / zone",
                format!("{} / {}", pre.host.utc_time, pre.host.time_zone),
            ),
            regular(
                "Offline",
                if pre.offline {
                    "yes: no network interface up except loopback".to_string()
                } else {
                    format!("NO: interfaces up: {}", online.join(", "))
                },
            ),
            regular(
                "Warnings",
                if pre.warnings.is_empty() {
                    "none".to_string()
                } else {
                    pre.warnings.join("\n")
                },
            ),
        ]);
    }
}

pub(super) fn roles(roles: &[crate::script::Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn participants(l: &mut Layout, r: &Report) {
    l.heading("Participants");
    // Steps each person confirmed, counted in one walk over the confirmations (a search per
    // participant through every confirmation was quadratic in a long ceremony).
    // verify's rebuilt report counted them as it read the log (report/stream.rs).
    let confirmed = stream::steps_confirmed().unwrap_or_else(|| {
        let mut confirmed: HashMap<String, usize> = HashMap::new();
        for s in &r.steps {
            let mut seen = HashSet::new();
            for c in &s.confirmations {
                if seen.insert(c.person.as_str()) {
                    *confirmed.entry(c.person.clone()).or_default() += 1;
                }
            }
        }
        confirmed
    });
    let rows: Vec<Vec<String>> = r
        .participants
        .iter()
        .map(|p| {
            let steps = confirmed.get(p.name.as_str()).copied().unwrap_or(0);
            vec![
                p.name.clone(),
                roles(&p.roles),
                p.organisation.clone().unwrap_or_default(),
                steps.to_string(),
            ]
        })
        .collect();
    l.table(
        &[
            Column::new("Name", 0.3, Face::Regular),
            Column::new("Role(s)", 0.27, Face::Regular),
            Column::new("Organisation", 0.28, Face::Regular),
            Column::new("Steps confirmed", 0.15, Face::Regular),
        ],
        &rows,
    );
    l.para(
        Face::Regular,
        8.5,
        "Identity checks are steps of the script (for example a manual \"check everyone's \
         identity\" step); who confirmed and witnessed them is in the step transcript.",
    );
}

fn hsm(l: &mut Layout, r: &Report) {
    l.heading("Hardware security module");
    let Some(h) = &r.hsm else {
        l.para(
            Face::Regular,
            BODY,
            "The HSM was never activated in this ceremony.",
        );
        return;
    };
    token_identity(l, h);
    // Issue 12: the ceremony's other tokens, each with its own identity record.
    for t in &r.tokens {
        l.para(Face::Bold, BODY, &format!("Token \"{}\"", t.name));
        token_identity(l, &t.token);
    }
}

fn token_identity(l: &mut Layout, h: &crate::hsm::TokenIdentity) {
    l.key_values(&[
        regular("Make", &h.manufacturer),
        regular("Model", &h.model),
        mono("Serial", &h.serial),
        regular("Firmware version", &h.firmware_version),
        regular("Hardware version", &h.hardware_version),
        regular("Token label", &h.token_label),
        regular(
            "PKCS#11 library",
            format!(
                "{} ({}), version {}",
                h.library_description, h.library_manufacturer, h.library_version
            ),
        ),
        mono("Module path", &h.module_path),
    ]);
}

fn attribute_line(a: &KeyAttributes) -> String {
    let show = |name: &str, v: Option<bool>| {
        format!(
            "{name}={}",
            v.map_or("unreported".to_string(), |b| b.to_string())
        )
    };
    [
        show("CKA_LOCAL", a.local),
        show("CKA_NEVER_EXTRACTABLE", a.never_extractable),
        show("CKA_ALWAYS_SENSITIVE", a.always_sensitive),
        show("CKA_EXTRACTABLE", a.extractable),
        show("CKA_SENSITIVE", a.sensitive),
    ]
    .join(", ")
}

/// The key hash as PGP words, four words to a group to match four hex digits... of two bytes each.
pub fn key_hash_words(hash_hex: &str) -> String {
    match hex::decode(hash_hex) {
        Ok(bytes) => pgp_words(&bytes)
            .chunks(2)
            .map(|pair| pair.join(" "))
            .collect::<Vec<_>>()
            .join("  /  "),
        Err(_) => "(the recorded key hash is not hex)".into(),
    }
}

fn key(l: &mut Layout, k: &KeyRecord) {
    l.subheading(&format!("Key \"{}\"", k.label));
    l.key_values(&[
        regular("Algorithm", format!("{} ({} bits)", k.algorithm, k.bits)),
        mono("CKA_ID", &k.id),
        regular("Generated (UTC)", &k.generated),
        regular(
            "Made in the HSM",
            if k.generated_in_hsm {
                "yes: generated on the token, never extractable, always sensitive"
            } else {
                "NOT PROVEN: the attributes below do not show in-HSM generation"
            },
        ),
        regular("Attributes", attribute_line(&k.attributes)),
        regular("Public key file", &k.public_key_file),
    ]);
    // The key hash on one line of its own, large enough to read aloud, then as PGP words.
    l.ensure(90.0);
    l.para(
        Face::Bold,
        BODY,
        "Key hash (SHA-256 of the DER SubjectPublicKeyInfo), to read aloud:",
    );
    l.para(Face::Mono, 10.0, &grouped_hex(&k.key_hash));
    l.para(
        Face::Bold,
        BODY,
        "The same key hash in PGP words (two words per group of four hex digits):",
    );
    l.para(Face::Regular, BODY, &key_hash_words(&k.key_hash));
    l.space(4.0);
}

fn keys(l: &mut Layout, r: &Report) {
    l.heading("Keys");
    if r.keys.is_empty() {
        l.para(
            Face::Regular,
            BODY,
            "No key was generated in this ceremony.",
        );
    }
    for k in &r.keys {
        key(l, k);
    }
    super::existing::existing_keys(l, r);
    super::destroy::destroyed_keys(l, r);
}

fn quorum(l: &mut Layout, r: &Report) {
    // Issue 12: a restore's cards rebuild a backup's KEK (split "<ceremony id>/kek"), not a PIN.
    let kek = r
        .quorum
        .as_ref()
        .is_some_and(|q| q.split_ceremony_id.ends_with("/kek"));
    l.heading(if kek {
        "Key-encryption key quorum (backup)"
    } else {
        "Activation quorum"
    });
    let Some(q) = &r.quorum else {
        l.para(
            Face::Regular,
            BODY,
            "No M-of-N quorum was split, used or checked in this ceremony.",
        );
        return;
    };
    l.key_values(&[
        regular("Threshold", format!("{} of {} cards", q.threshold, q.total)),
        regular("Split in ceremony", &q.split_ceremony_id),
        mono("Commitments SHA-256", grouped_hex(&q.commitments_sha256)),
    ]);
    // Two tables with wide columns, so a token label or serial is never broken mid-word.
    let people: Vec<Vec<String>> = q
        .cards
        .iter()
        .map(|c| {
            vec![
                c.index.to_string(),
                c.holder.clone(),
                c.bag.clone(),
                c.result.clone(),
            ]
        })
        .collect();
    l.table(
        &[
            Column::new("Share", 0.1, Face::Regular),
            Column::new("Holder", 0.34, Face::Regular),
            Column::new("Bag serial", 0.28, Face::Mono),
            Column::new("Result", 0.28, Face::Regular),
        ],
        &people,
    );
    let cards: Vec<Vec<String>> = q
        .cards
        .iter()
        .map(|c| vec![c.index.to_string(), c.token_label.clone(), c.serial.clone()])
        .collect();
    l.table(
        &[
            Column::new("Share", 0.1, Face::Regular),
            Column::new("Card token", 0.5, Face::Regular),
            Column::new("Card serial", 0.4, Face::Mono),
        ],
        &cards,
    );
}

fn attachments(l: &mut Layout, r: &Report) {
    if r.attachments.is_empty() {
        return;
    }
    l.heading("Attached external evidence");
    l.para(
        Face::Regular,
        8.5,
        "Files kept outside the evidence folder (recordings, scanned sheets). Check each with \
         `sha256sum FILE`.",
    );
    let rows: Vec<Vec<String>> = r
        .attachments
        .iter()
        .map(|a| {
            vec![
                format!("{}\n{}", a.description, a.file_name),
                a.size.to_string(),
                grouped_hex(&a.sha256),
                format!("{}\n{}", a.step, a.time),
            ]
        })
        .collect();
    l.table(
        &[
            Column::new("What / file name", 0.32, Face::Regular),
            Column::new("Bytes", 0.12, Face::Regular),
            Column::new("SHA-256", 0.34, Face::Mono),
            Column::new("Step / time (UTC)", 0.22, Face::Regular),
        ],
        &rows,
    );
}

fn confirmers(s: &StepRecord, signed: &SignedSet) -> String {
    let mut lines: Vec<String> = s
        .confirmations
        .iter()
        .map(|c| {
            let time = c.time.get(11..19).unwrap_or(&c.time);
            let kind = if c.counts_for == "witness" {
                "witness"
            } else {
                c.role.as_str()
            };
            let mark = if signed.signed(c) {
                format!(" {SIGNED_MARK}")
            } else {
                String::new()
            };
            format!("{time} {} ({kind}){mark}", c.person)
        })
        .collect();
    for refusal in &s.refusals {
        lines.push(format!(
            "REFUSED{}: {}",
            refusal
                .person
                .as_ref()
                .map(|p| format!(" by {p}"))
                .unwrap_or_default(),
            refusal.reason
        ));
    }
    lines.join("\n")
}

fn transcript(l: &mut Layout, r: &Report) {
    // The heading, the table header and a first row of five lines together, never the heading alone.
    l.ensure(150.0);
    l.heading("Step transcript");
    let time = |t: &Option<String>| {
        t.as_deref()
            .map(|t| t.get(11..19).unwrap_or(t).to_string())
            .unwrap_or_else(|| "-".into())
    };
    let signed = SignedSet::of(r);
    // Made as the table consumes them: a long transcript is never held as text.
    // verify's rebuilt report reads each step's confirmations from the log here (report/stream.rs).
    let rows = r.steps.iter().enumerate().map(|(i, s)| {
        let s = stream::filled(i, s);
        let s = s.as_ref();
        // Spaces instead of underscores, so a long action name wraps between its words.
        let action = s.action.as_str().replace('_', " ");
        vec![
            (i + 1).to_string(),
            format!("{}\n{}", s.title, s.id),
            action,
            format!("{}\n{}", time(&s.started), time(&s.ended)),
            confirmers(s, &signed),
            s.result.clone(),
        ]
    });
    l.table(
        &[
            Column::new("#", 0.045, Face::Regular),
            Column::new("Step", 0.21, Face::Regular),
            Column::new("Action", 0.1, Face::Regular),
            Column::new("Start / end (UTC)", 0.105, Face::Regular),
            // Wide enough for "hh:mm:ss name (independent-witness) [signed]" on one line.
            Column::new("Confirmed by (UTC time, name, role)", 0.43, Face::Regular),
            // "not-reached" on one line.
            Column::new("Result", 0.11, Face::Regular),
        ],
        rows,
    );
    l.para(
        Face::Regular,
        8.5,
        "All times are UTC; the dates are those of the cover page. \"witness\" marks an attestation, \
         which never counts towards dual control.",
    );
    if let Some(legend) = transcript_legend(r) {
        // The legend stays whole, on the page of the table's end if it fits there.
        l.ensure(wrap(&legend, Face::Regular, 8.5, CONTENT_W).len() as f32 * 8.5 * 1.3 + 4.0);
        l.para(Face::Regular, 8.5, &legend);
    }
}

fn exceptions(l: &mut Layout, r: &Report) {
    l.heading("Exceptions");
    if r.exceptions.is_empty() {
        l.para(Face::Regular, BODY, "No exception was recorded.");
        return;
    }
    let rows: Vec<Vec<String>> = r
        .exceptions
        .iter()
        .map(|e| {
            vec![
                e.time.clone(),
                e.step.clone(),
                e.person.clone(),
                e.text.clone(),
            ]
        })
        .collect();
    l.table(
        &[
            Column::new("Time (UTC)", 0.2, Face::Regular),
            Column::new("Step", 0.18, Face::Regular),
            Column::new("Reported by", 0.18, Face::Regular),
            Column::new("What happened", 0.44, Face::Regular),
        ],
        &rows,
    );
}

fn artifacts(l: &mut Layout, r: &Report) {
    l.heading("Files in the evidence folder");
    if r.artifacts.is_empty() {
        l.para(
            Face::Regular,
            BODY,
            "No key, certificate or other file was written besides the audit log, the script and \
             this report.",
        );
        return;
    }
    let rows: Vec<Vec<String>> = r
        .artifacts
        .iter()
        .map(|a| vec![a.path.clone(), a.size.to_string(), grouped_hex(&a.sha256)])
        .collect();
    l.table(
        &[
            Column::new("File", 0.34, Face::Regular),
            Column::new("Bytes", 0.12, Face::Regular),
            Column::new("SHA-256", 0.54, Face::Mono),
        ],
        &rows,
    );
}

fn log_head(l: &mut Layout, r: &Report) {
    // A short section: keep it on one page.
    l.ensure(115.0);
    l.heading("Audit-log head");
    l.para(
        Face::Bold,
        BODY,
        &format!(
            "Hash of log entry {} (the last before report_written):",
            r.log_head.seq
        ),
    );
    l.para(Face::Mono, 10.0, &grouped_hex(&r.log_head.hash));
    l.para(
        Face::Regular,
        BODY,
        "Every log entry carries the hash of the one before, so this hash fixes the whole log up to \
         this point. Compare it with the hash written by hand on the paper script during the \
         ceremony. The log's last entry (report_written) records the SHA-256 of report.json shown \
         in the footer.",
    );
}

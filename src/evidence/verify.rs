//! `keyrite verify DIR`: check an evidence bundle offline, item by item, and say what was checked.

use super::bundle::{
    ARTIFACTS_DIR, LOG_FILE, REPORT_FILE, REPORT_PDF_FILE, SCRIPT_FILE, SIGNATURES_DIR,
};

mod signatures;
use super::events::Record;
use super::log::{read_chain, AuditEntry};
use super::replay::replay;
use super::report::{self, Parsed, Report};
use crate::hsm::spki::key_hash;
use crate::x509::signer::verify_self_signed;
use der::{DecodePem, Encode};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use x509_cert::Certificate;

/// One line of the verification table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    /// Passed, but with something the reader must know (printed as WARN): e.g. a required signature
    /// missing for a reason the log records.
    pub warning: bool,
    /// The file the check is about, relative to the bundle.
    pub file: String,
    pub what: String,
}

#[derive(Debug, Default)]
pub struct Verification {
    pub checks: Vec<Check>,
    /// How the ceremony ended, as the verified report says ("completed", or "aborted: why").
    pub result: Option<String>,
    /// Full log head and report hash, to compare with what the witnesses wrote on paper.
    pub log_head: Option<String>,
    pub report_sha256: Option<String>,
}

impl Verification {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    fn pass(&mut self, file: &str, what: impl Into<String>) {
        self.push(true, false, file, what.into());
    }

    fn fail(&mut self, file: &str, what: impl Into<String>) {
        self.push(false, false, file, what.into());
    }

    /// A check that passes with a warning (WARN in the table).
    fn warn(&mut self, file: &str, what: impl Into<String>) {
        self.push(true, true, file, what.into());
    }

    fn push(&mut self, ok: bool, warning: bool, file: &str, what: String) {
        self.checks.push(Check {
            ok,
            warning,
            file: file.into(),
            what,
        });
    }

    fn check(
        &mut self,
        ok: bool,
        file: &str,
        good: impl Into<String>,
        bad: impl Into<String>,
    ) -> bool {
        if ok {
            self.pass(file, good)
        } else {
            self.fail(file, bad)
        }
        ok
    }

    /// The table printed by the CLI.
    pub fn table(&self) -> String {
        let width = self
            .checks
            .iter()
            .map(|c| c.file.len())
            .max()
            .unwrap_or(4)
            .max(4);
        self.checks
            .iter()
            .map(|c| {
                format!(
                    "{:<4}  {:<width$}  {}\n",
                    match (c.ok, c.warning) {
                        (false, _) => "FAIL",
                        (true, true) => "WARN",
                        (true, false) => "ok",
                    },
                    c.file,
                    c.what
                )
            })
            .collect()
    }
}

/// The first 16 hex digits, for the table; never panics on a short or crafted value.
fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

/// Files the bundle may hold at its root; anything else was not produced by the ceremony.
const BUNDLE_ROOT: [&str; 6] = [
    SCRIPT_FILE,
    LOG_FILE,
    REPORT_FILE,
    REPORT_PDF_FILE,
    ARTIFACTS_DIR,
    SIGNATURES_DIR,
];

/// An artifact path from the report must name a plain file directly inside artifacts/.
fn safe_artifact_path(path: &str) -> bool {
    path.strip_prefix("artifacts/").is_some_and(|name| {
        !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn verify_bundle(dir: &Path) -> Verification {
    verify_bundle_with(dir, None)
}

/// [`verify_bundle`], checking signer certificates against `signers_ca` (PEM) instead of the
/// bundle's own copy of the signers CA.
pub fn verify_bundle_with(dir: &Path, signers_ca: Option<&str>) -> Verification {
    let mut v = Verification::default();
    let read = |name: &str| fs::read(dir.join(name));

    let Ok(log_bytes) = read(LOG_FILE) else {
        v.fail(LOG_FILE, "missing or unreadable");
        return v;
    };
    let entries = match read_chain(&log_bytes) {
        Ok(e) => e,
        Err(e) => {
            v.fail(
                LOG_FILE,
                format!("hash chain broken at line {}: {}", e.line, e.what),
            );
            return v;
        }
    };
    let head = &entries[entries.len() - 1];
    v.pass(
        LOG_FILE,
        format!(
            "hash chain of {} entries intact, last hash {}",
            entries.len(),
            short(&head.hash)
        ),
    );

    check_script(&mut v, dir, &entries);
    check_bundle_root(&mut v, dir);

    let Some((report_entry, body)) = entries.split_last() else {
        return v;
    };
    let Ok(Parsed::Record(Record::ReportWritten { report_sha256 })) =
        report::parse_event(report_entry)
    else {
        v.fail(
            LOG_FILE,
            "the last entry is not report_written: the run did not finish writing its evidence",
        );
        return v;
    };
    let Ok(report_bytes) = read(REPORT_FILE) else {
        v.fail(REPORT_FILE, "missing or unreadable");
        return v;
    };
    let actual = sha256_hex(&report_bytes);
    v.report_sha256 = Some(actual.clone());
    if !v.check(
        actual == report_sha256,
        REPORT_FILE,
        format!(
            "SHA-256 {} matches the log's report_written entry",
            short(&actual)
        ),
        format!("SHA-256 {actual} differs from {report_sha256} recorded in the log"),
    ) {
        return v;
    }
    let report: Report = match serde_json::from_slice(&report_bytes) {
        Ok(r) => r,
        Err(e) => {
            v.fail(REPORT_FILE, format!("does not parse as a report: {e}"));
            return v;
        }
    };
    match report::build(body) {
        Ok(rebuilt) => {
            v.check(
                rebuilt == report,
                REPORT_FILE,
                format!(
                    "matches the log up to its head (seq {}, {})",
                    report.log_head.seq,
                    short(&report.log_head.hash)
                ),
                "differs from the report rebuilt from the log",
            );
        }
        Err(e) => v.fail(LOG_FILE, format!("cannot rebuild the report: {e}")),
    }
    v.log_head = Some(report.log_head.hash.clone());
    v.result = Some(match &report.abort_reason {
        None if report.result == "completed" => "completed".into(),
        reason => format!(
            "ABORTED: {}",
            reason.as_deref().unwrap_or("no reason recorded")
        ),
    });
    if report.rehearsal {
        v.pass(REPORT_FILE, "marked REHEARSAL: the keys are throw-away");
    }

    check_report_pdf(&mut v, dir, &report);
    check_artifacts(&mut v, dir, &report);
    check_keys_and_certificates(&mut v, dir, &report);
    signatures::check(&mut v, dir, &entries, signers_ca);
    v
}

/// report.pdf must be exactly what this keyrite renders from report.json.
fn check_report_pdf(v: &mut Verification, dir: &Path, report: &Report) {
    let Ok(pdf) = fs::read(dir.join(REPORT_PDF_FILE)) else {
        v.fail(REPORT_PDF_FILE, "missing or unreadable");
        return;
    };
    let rendered = super::pdf::render(report);
    v.check(
        pdf == rendered,
        REPORT_PDF_FILE,
        format!(
            "byte-identical to the rendering of report.json (SHA-256 {})",
            short(&sha256_hex(&pdf))
        ),
        format!(
            "differs from the rendering of report.json (SHA-256 {} on disk, {} rendered): \
             the PDF was altered, or made by another keyrite version",
            sha256_hex(&pdf),
            sha256_hex(&rendered)
        ),
    );
}

/// script.toml must be the script the log started with, and the log must replay through it.
fn check_script(v: &mut Verification, dir: &Path, entries: &[AuditEntry]) {
    let recorded = match entries.first().map(report::parse_event) {
        Some(Ok(Parsed::Record(Record::CeremonyStarted { script_sha256, .. }))) => script_sha256,
        _ => {
            v.fail(LOG_FILE, "the first entry is not ceremony_started");
            return;
        }
    };
    let Ok(bytes) = fs::read(dir.join(SCRIPT_FILE)) else {
        v.fail(SCRIPT_FILE, "missing or unreadable");
        return;
    };
    let actual = sha256_hex(&bytes);
    if !v.check(
        actual == recorded,
        SCRIPT_FILE,
        format!("SHA-256 {} matches the log's first entry", short(&actual)),
        format!("SHA-256 {actual} differs from {recorded} recorded in the log"),
    ) {
        return;
    }
    let source = String::from_utf8_lossy(&bytes);
    let Ok(loaded) = crate::script::parse(SCRIPT_FILE, &source) else {
        v.fail(
            SCRIPT_FILE,
            "does not parse as a ceremony script of this keyrite version",
        );
        return;
    };
    match replay(&loaded.script, entries) {
        Ok(n) => v.pass(
            LOG_FILE,
            format!("all {n} ceremony events replay under script.toml's rules (dual control, order, roles, write-ahead)"),
        ),
        Err(e) => v.fail(LOG_FILE, format!("does not replay under script.toml's rules: {e}")),
    }
}

fn check_bundle_root(v: &mut Verification, dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !BUNDLE_ROOT.contains(&name.as_str()) {
            v.fail(
                &name,
                "not part of the evidence: the ceremony did not write it",
            );
        }
    }
}

/// Read a file the report names, refusing (and failing) any path outside artifacts/.
fn read_artifact(v: &mut Verification, dir: &Path, path: &str) -> Option<std::io::Result<Vec<u8>>> {
    if !safe_artifact_path(path) {
        v.fail(
            REPORT_FILE,
            format!("names the file {path:?}, which is not a plain file inside artifacts/"),
        );
        return None;
    }
    Some(fs::read(dir.join(path)))
}

fn check_artifacts(v: &mut Verification, dir: &Path, report: &Report) {
    let listed: BTreeSet<&str> = report.artifacts.iter().map(|a| a.path.as_str()).collect();
    for a in &report.artifacts {
        match read_artifact(v, dir, &a.path) {
            Some(Ok(bytes)) => {
                let actual = sha256_hex(&bytes);
                v.check(
                    actual == a.sha256 && bytes.len() as u64 == a.size,
                    &a.path,
                    format!(
                        "SHA-256 {} and size {} match the report",
                        short(&actual),
                        a.size
                    ),
                    format!(
                        "SHA-256 {actual} ({} bytes) differs from {} ({} bytes) in the report",
                        bytes.len(),
                        a.sha256,
                        a.size
                    ),
                );
            }
            Some(Err(_)) => v.fail(&a.path, "listed in the report but missing"),
            None => {}
        }
    }
    if let Ok(entries) = fs::read_dir(dir.join(ARTIFACTS_DIR)) {
        for entry in entries.flatten() {
            let rel = format!("{ARTIFACTS_DIR}/{}", entry.file_name().to_string_lossy());
            if !listed.contains(rel.as_str()) {
                v.fail(
                    &rel,
                    "not listed in the report: it was not produced by this ceremony",
                );
            }
        }
    }
}

fn check_keys_and_certificates(v: &mut Verification, dir: &Path, report: &Report) {
    for key in &report.keys {
        let file = &key.public_key_file;
        let Some(read) = read_artifact(v, dir, file) else {
            continue;
        };
        let spki = read
            .ok()
            .and_then(|pem| String::from_utf8(pem).ok())
            .and_then(|pem| {
                der::Document::from_pem(&pem)
                    .ok()
                    .map(|(_, doc)| doc.as_bytes().to_vec())
            });
        match spki {
            Some(der) => {
                let hash = key_hash(&der);
                v.check(
                    hash == key.key_hash,
                    file,
                    format!(
                        "public key of {} hashes to the recorded key hash {}",
                        key.label,
                        short(&hash)
                    ),
                    format!(
                        "public key hashes to {hash}, the report says {}",
                        key.key_hash
                    ),
                );
            }
            None => v.fail(file, "not a PEM public key"),
        }
        v.check(
            key.generated_in_hsm,
            REPORT_FILE,
            format!(
                "key {} was generated in the HSM and is non-extractable (attributes read back)",
                key.label
            ),
            format!(
                "key {} lacks proof of in-HSM generation: {:?}",
                key.label, key.attributes
            ),
        );
    }
    for cert in &report.certificates {
        let file = &cert.file;
        let Some(read) = read_artifact(v, dir, file) else {
            continue;
        };
        let parsed = read.ok().and_then(|pem| Certificate::from_pem(&pem).ok());
        let Some(parsed) = parsed else {
            v.fail(file, "not a PEM certificate");
            continue;
        };
        let der = parsed.to_der().unwrap_or_default();
        let fingerprint = sha256_hex(&der);
        v.check(
            fingerprint == cert.sha256_fingerprint,
            file,
            format!(
                "SHA-256 fingerprint {} matches the report",
                short(&fingerprint)
            ),
            format!(
                "fingerprint {fingerprint} differs from {} in the report",
                cert.sha256_fingerprint
            ),
        );
        let spki = parsed
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap_or_default();
        let hash = key_hash(&spki);
        let recorded = report
            .keys
            .iter()
            .find(|k| k.label == cert.key)
            .map(|k| k.key_hash.as_str());
        v.check(
            Some(hash.as_str()) == recorded,
            file,
            format!(
                "certificate key hashes to key {}'s recorded hash {}",
                cert.key,
                short(&hash)
            ),
            format!(
                "certificate key hashes to {hash}; key {} was recorded as {recorded:?}",
                cert.key
            ),
        );
        // The issuer and extensions the report shows must be the certificate's own.
        let (issuer, extensions) = crate::x509::extensions::issuer_and_extensions(&parsed);
        if !cert.issuer.is_empty() || !cert.extensions.is_empty() {
            v.check(
                issuer == cert.issuer && extensions == cert.extensions,
                file,
                format!(
                    "issuer and {} extensions match the report",
                    extensions.len()
                ),
                "the certificate's issuer or extensions differ from the report",
            );
        }
        match verify_self_signed(&parsed) {
            Ok(()) => v.pass(file, "self-signature verifies"),
            Err(e) => v.fail(file, format!("self-signature does not verify: {e}")),
        }
    }
}

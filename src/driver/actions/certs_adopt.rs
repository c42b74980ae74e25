//! A certificate-issuing step resumed after the interrupted run had already signed and saved its
//! certificate. When the bundle is reopened, files the log never bound are discarded (their hashes
//! on the record), so the log tells whether the certificate was bound: the root key signed it and
//! the room confirmed its TBS. The resumed step adopts it — the file must be the one the log binds,
//! verify under the issuer and come from the input the signing intent names — and writes what is
//! still missing, so one certificate is issued, never two, and no serial is used twice. A bound
//! certificate that is missing or altered, or an input other than the logged one, is refused before
//! the bundle is reopened ([`check_before_resume`]), and again in the step: never signed again.
//! A certificate saved whose `artifact_written` a power cut lost (the driver does not fsync it) is
//! kept by the reopen and adopted too when its TBS is the one the signing intent logged.

use super::super::operator::{Notice, Operator};
use super::super::State;
use super::certs::{finish, Issue};
use super::certs_inputs::{gather, resolve, Gathered};
use super::{intent, write_artifact, Context, Performed};
use crate::error::{Error, Result};
use crate::evidence::bundle::Bundle;
use crate::evidence::events::Record;
use crate::evidence::log::{read_chain, AuditEntry};
use crate::evidence::report::{parse_event, ArtifactRecord, Parsed};
use crate::hsm::spki::grouped_hex;
use crate::script::signing::CaCertificate;
use crate::script::Script;
use crate::x509::{self, issued};
use der::{DecodePem, Encode};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use x509_cert::Certificate;

/// How a signing intent names its input, so a resumed step can tell the input given now from the
/// one the room confirmed (certs.rs writes it, [`bound_in`] reads it back).
pub(super) const INPUT_MARK: &str = "input SHA-256 ";

/// How a signing intent names the TBS the HSM is asked to sign (certs.rs writes it).
pub(super) const TBS_MARK: &str = "TBS SHA-256 ";

/// A step's certificate file as the log binds it, or as the signing intent names it.
pub(super) struct Bound {
    pub(super) file: String,
    /// The SHA-256 its `artifact_written` entry records (or, unlogged, the file's).
    sha256: String,
    /// The input's SHA-256 the step's last signing intent names (logs of older keyrite have none).
    input_sha256: Option<String>,
    /// False: saved, but its `artifact_written` never reached the log (a power cut); the file's
    /// TBS is the one the signing intent logged, so it is the certificate the HSM signed.
    logged: bool,
}

/// The 64 hex digits that follow `mark` in an intent's detail.
fn hash_after(detail: &str, mark: &str) -> Option<String> {
    detail
        .split(mark)
        .nth(1)
        .and_then(|rest| rest.get(..64))
        .map(str::to_string)
}

/// SHA-256 of a PEM certificate's DER TBSCertificate.
fn tbs_sha256(pem: &[u8]) -> Option<String> {
    let cert = Certificate::from_pem(pem).ok()?;
    let tbs = cert.tbs_certificate().to_der().ok()?;
    Some(hex::encode(Sha256::digest(tbs)))
}

/// Whether the bundle file `name`, which no `artifact_written` binds, is a certificate whose TBS a
/// logged signing intent names: the HSM signed it and keyrite saved it before the interruption,
/// so `keyrite resume` keeps it for the step to adopt instead of discarding it.
pub(in crate::driver) fn signed_by_intent(
    bundle: &Bundle,
    entries: &[AuditEntry],
    name: &str,
) -> bool {
    let Some(tbs) = std::fs::read(bundle.path(name))
        .ok()
        .and_then(|pem| tbs_sha256(&pem))
    else {
        return false;
    };
    entries.iter().any(|e| match parse_event(e) {
        Ok(Parsed::Record(Record::HsmIntent { operation, detail })) => {
            operation == "sign_ca_certificate" && hash_after(&detail, TBS_MARK) == Some(tbs.clone())
        }
        _ => false,
    })
}

/// `step`'s certificate file if the log binds it (only a resumed step finds one: the policy keeps
/// artifact names unique within a ceremony), or if the bundle holds it unbound with the TBS the
/// step's signing intent logged. The log, not the folder, decides that a bound certificate was
/// saved, so a bound certificate deleted from the bundle is refused instead of signed again.
fn bound_in(
    bundle: &Bundle,
    entries: &[AuditEntry],
    step: &str,
    spec: &CaCertificate,
) -> Option<Bound> {
    let file = spec.file();
    let (mut sha256, mut input_sha256, mut tbs) = (None, None, None);
    for entry in entries.iter().filter(|e| e.step.as_deref() == Some(step)) {
        match parse_event(entry) {
            Ok(Parsed::Record(Record::ArtifactWritten(a))) if a.path == file => {
                sha256 = Some(a.sha256)
            }
            Ok(Parsed::Record(Record::HsmIntent { operation, detail }))
                if operation == "sign_ca_certificate" =>
            {
                input_sha256 = hash_after(&detail, INPUT_MARK);
                tbs = hash_after(&detail, TBS_MARK);
            }
            _ => {}
        }
    }
    if let Some(sha256) = sha256 {
        return Some(Bound {
            file,
            sha256,
            input_sha256,
            logged: true,
        });
    }
    let pem = std::fs::read(bundle.path(&file)).ok()?;
    (tbs.is_some() && tbs_sha256(&pem) == tbs).then(|| Bound {
        sha256: hex::encode(Sha256::digest(&pem)),
        file,
        input_sha256,
        logged: false,
    })
}

fn spec_of<'s>(script: &'s Script, step: &crate::script::Step) -> Option<&'s CaCertificate> {
    step.certificate
        .as_deref()
        .and_then(|c| script.ca_certificate(c))
}

/// In the step: the certificate the interrupted run bound, read from the log this run appends to.
pub(super) fn saved_by_interrupted_run(
    state: &State,
    script: &Script,
    step: &crate::script::Step,
) -> Result<Option<Bound>> {
    let Some(spec) = spec_of(script, step) else {
        return Ok(None);
    };
    let path = state.log.path();
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, &e))?;
    let entries = read_chain(&bytes).map_err(|e| {
        Error::env(
            format!("{} line {}: {}", path.display(), e.line, e.what),
            "the log this run writes no longer chains: stop, keep the bundle as it is and check it \
             with `keyrite verify`",
        )
    })?;
    Ok(bound_in(&state.bundle, &entries, &step.id, spec))
}

/// Why a saved certificate is not adopted: the words the room reads (resume_goldens.rs pins them).
pub(crate) enum Refusal {
    /// The log binds the file, the bundle has none.
    Missing { file: String, sha256: String },
    /// The file's bytes are not the ones the log binds.
    Altered {
        file: String,
        bound: String,
        found: String,
    },
    /// Bound, but no certificate of this issuer (unreadable, not PEM, a signature that fails).
    Unusable { file: String, why: String },
    /// The input given now is not the one the certificate was signed for.
    OtherInput {
        file: String,
        step: String,
        what: String,
    },
}

impl Refusal {
    /// What is wrong.
    pub(crate) fn what(&self) -> String {
        match self {
            Refusal::Missing { file, sha256 } => format!(
                "{file}, which the interrupted run signed and the log binds (SHA-256 {sha256}), is \
                 missing from the bundle"
            ),
            Refusal::Altered { file, bound, found } => format!(
                "{file} is not the certificate the interrupted run saved: its SHA-256 is {found}, \
                 the log binds {bound}"
            ),
            Refusal::Unusable { file, why } => {
                format!("{file}, which the interrupted run signed and saved, {why}")
            }
            Refusal::OtherInput { file, step, what } => format!(
                "{file}, which the interrupted run signed in step \"{step}\", was made from another \
                 input than the one given now ({what})"
            ),
        }
    }

    /// What to do, said by `keyrite resume` before it reopens the bundle (`OUT` is the bundle).
    pub(crate) fn fix(&self) -> String {
        const ABORT: &str = "close the ceremony with `keyrite abort OUT --reason …`";
        match self {
            Refusal::Missing { .. } => format!(
                "signing again would issue a second certificate, so nothing is signed: put the file \
                 back from a copy of the bundle and run `keyrite resume OUT` again, or {ABORT}"
            ),
            Refusal::Altered { .. } => format!(
                "this is damage or tampering, not an interruption: check the bundle with `keyrite \
                 verify OUT`, then put back the file the log binds from a copy of the bundle, or \
                 {ABORT} and keep the bundle for the auditors"
            ),
            Refusal::Unusable { .. } => format!("{ABORT} and keep the bundle for the auditors"),
            Refusal::OtherInput { step, .. } => format!(
                "give the same request or certificate again: `keyrite resume OUT --attach \
                 {step}=PATH`; or {ABORT}"
            ),
        }
    }
}

/// In the step the ceremony ends with the refusal (the step fails), so its reason says so.
impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}; nothing is signed again, and the ceremony ends here, aborted: keep the bundle \
             for the auditors",
            self.what()
        )
    }
}

/// Read the certificate file the log binds, refused when missing or not the bytes the log binds.
fn read_bound(bundle: &Bundle, b: &Bound) -> std::result::Result<Vec<u8>, Refusal> {
    let pem = match std::fs::read(bundle.path(&b.file)) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Refusal::Missing {
                file: b.file.clone(),
                sha256: b.sha256.clone(),
            })
        }
        Err(e) => {
            return Err(Refusal::Unusable {
                file: b.file.clone(),
                why: format!("cannot be read: {e}"),
            })
        }
    };
    let found = hex::encode(Sha256::digest(&pem));
    if found != b.sha256 {
        return Err(Refusal::Altered {
            file: b.file.clone(),
            bound: b.sha256.clone(),
            found,
        });
    }
    Ok(pem)
}

/// The input given now has the SHA-256 the signing intent logged (when it logged one).
fn same_input(b: &Bound, step: &str, given_sha256: &str) -> std::result::Result<(), Refusal> {
    match &b.input_sha256 {
        Some(logged) if logged != given_sha256 => Err(Refusal::OtherInput {
            file: b.file.clone(),
            step: step.into(),
            what: format!(
                "its signing was logged for input SHA-256 {logged}, the input given now has \
                 SHA-256 {given_sha256}"
            ),
        }),
        _ => Ok(()),
    }
}

/// `keyrite resume`, before the bundle is reopened: when the interrupted step had bound its
/// certificate, the file must be there unchanged, and an input known now (the script's or
/// `--attach`) must be the logged one. A refusal leaves the bundle as it was (INCOMPLETE), so the
/// room can resume again with the right file. An input given later (the prompt) is checked in
/// the step.
pub(in crate::driver) fn check_before_resume(
    script: &Script,
    entries: &[AuditEntry],
    bundle: &Bundle,
    step_id: &str,
    given: &BTreeMap<String, String>,
) -> std::result::Result<(), Refusal> {
    let Some(step) = script.steps.iter().find(|s| s.id == step_id) else {
        return Ok(());
    };
    let Some(spec) = spec_of(script, step) else {
        return Ok(());
    };
    let Some(bound) = bound_in(bundle, entries, step_id, spec) else {
        return Ok(());
    };
    read_bound(bundle, &bound)?;
    let path = match (&spec.input, given.get(step_id)) {
        (Some(p), _) => resolve(None, p),
        (None, Some(p)) => p.into(),
        (None, None) => return Ok(()),
    };
    // An unreadable input is the step's to report, with its other checks.
    match std::fs::read(path) {
        Ok(bytes) => same_input(&bound, step_id, &hex::encode(Sha256::digest(bytes))),
        Err(_) => Ok(()),
    }
}

/// Check the saved certificate against the log, the issuer certificate and the input given now,
/// then record it.
pub(super) fn adopt(
    state: &mut State,
    ctx: &Context<'_>,
    spec: &CaCertificate,
    bound: Bound,
    operator: &mut dyn Operator,
) -> Performed {
    let refuse = |r: Refusal| Ok(Err(r.to_string()));
    let file = bound.file.clone();
    let unusable = |why: String| {
        refuse(Refusal::Unusable {
            file: file.clone(),
            why,
        })
    };
    let pem = match read_bound(&state.bundle, &bound) {
        Ok(p) => p,
        Err(r) => return refuse(r),
    };
    let cert = match Certificate::from_pem(&pem) {
        Ok(c) => c,
        Err(e) => return unusable(format!("is not a PEM certificate: {e}")),
    };
    let Gathered {
        issuer_hash,
        issuer_cert,
        issuer_pem,
        input,
        ..
    } = match gather(state, ctx.script, ctx.step, spec, operator)? {
        Ok(g) => g,
        Err(why) => return Ok(Err(why)),
    };
    if let Err(why) = issued::verify_issued(&cert, &issuer_cert) {
        return unusable(format!("does not verify under the issuer: {why}"));
    }
    if let Err(r) = same_input(&bound, &ctx.step.id, &input.sha256) {
        return refuse(r);
    }
    let other = |what: &str| {
        refuse(Refusal::OtherInput {
            file: file.clone(),
            step: ctx.step.id.clone(),
            what: what.into(),
        })
    };
    let tbs_cert = cert.tbs_certificate();
    let (der, tbs, spki) = match (
        cert.to_der(),
        tbs_cert.to_der(),
        tbs_cert.subject_public_key_info().to_der(),
    ) {
        (Ok(d), Ok(t), Ok(s)) => (d, t, s),
        _ => return unusable("does not re-encode".into()),
    };
    // For logs without the input's hash: the key, and the subject a request gives.
    if spki != input.spki_der {
        return other("it certifies another key");
    }
    if spec.subject.is_none()
        && input
            .subject
            .as_ref()
            .is_some_and(|s| s != tbs_cert.subject())
    {
        return other("it names another subject");
    }
    let described = match x509::describe(&cert, &der) {
        Ok(d) => d,
        Err(e) => return unusable(e.to_string()),
    };
    // The log's rule (an HSM result follows its intent) holds; the detail says no HSM call is made.
    intent(
        state,
        ctx,
        "sign_ca_certificate",
        format!(
            "{} adopted from the interrupted run ({file}, serial {}, SHA-256 {}, {INPUT_MARK}{}); \
             the HSM is not called",
            spec.name, described.serial_hex, described.sha256_fingerprint, input.sha256
        ),
    )?;
    operator.notice(Notice::Info {
        text: &format!(
            "adopted {file} from the interrupted run: serial {}, SHA-256 {}",
            described.serial_hex,
            grouped_hex(&described.sha256_fingerprint)
        ),
    });
    if !bound.logged {
        // Saved before the interruption, its record lost: bound now, as the signing would have.
        let artifact = ArtifactRecord {
            path: file.clone(),
            sha256: bound.sha256.clone(),
            size: pem.len() as u64,
        };
        state.record(
            Some(ctx.step.id.clone()),
            vec![],
            &Record::ArtifactWritten(artifact),
        )?;
    }
    let issue = Issue {
        input,
        issuer_cert,
        issuer_pem,
        issuer_key_hash: issuer_hash,
        tbs_sha256: hex::encode(Sha256::digest(&tbs)),
    };
    finish(state, ctx, spec, issue, described, operator)
}

/// Write `file` into the bundle, unless the interrupted run bound it already with these bytes.
pub(super) fn keep_or_write(
    state: &mut State,
    ctx: &Context<'_>,
    file: &str,
    bytes: &[u8],
) -> Result<std::result::Result<(), String>> {
    match std::fs::read(state.bundle.path(file)) {
        Ok(saved) if saved == bytes => Ok(Ok(())),
        Ok(_) => Ok(Err(format!(
            "{file}, saved by the interrupted run, differs from what this step makes of the input \
             and issuer certificate given now; nothing is signed again, and the ceremony ends \
             here, aborted: keep the bundle for the auditors"
        ))),
        Err(_) => write_artifact(state, ctx, file, bytes).map(Ok),
    }
}

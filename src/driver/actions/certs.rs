//! Certificates a CA key issues to other CAs (issue 11): `sign_subordinate_ca` (from a PKCS#10
//! request) and `sign_cross_certificate` (for another CA's certificate or public key).
//!
//! When the step starts, keyrite reads and checks the input (signature, key strength), finds the
//! issuer key and certificate, draws the serial from the HSM's RNG, builds and lints the TBS and
//! shows the room exactly what will be signed (`certificate_presented`, with the TBS hash). The
//! step then signs that TBS, verifies the signature and the chain to the issuer certificate, and
//! writes the certificate, the chain and the input's PEM copy.

use super::super::operator::{Notice, Operator};
use super::super::rehearsal;
use super::super::State;
pub(crate) use super::certs_inputs::check_inputs_before_start;
use super::certs_inputs::{gather, Gathered};
use super::{failed, intent, Context, Performed};
use crate::error::Result;
use crate::evidence::events::Record;
use crate::evidence::pgp_words::pgp_words;
use crate::evidence::signing::{IssuedCertificateRecord, PresentedRecord};
use crate::hsm::spki::{grouped_hex, key_hash};
use crate::script::signing::{parse_utc, CaCertificate};
use crate::script::{Action, Script};
use crate::x509::csr::CheckedInput;
use crate::x509::issued::{self, IssuedProfile};
use crate::x509::{self, HsmKey};
use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

/// The certificate a step will sign, as the room saw it.
pub(crate) struct PreparedIssue {
    step: String,
    input: CheckedInput,
    issuer_cert: Certificate,
    issuer_pem: String,
    key: HsmKey,
    issuer_key_hash: String,
    tbs: issued::Prepared,
    tbs_sha256: String,
}

type Prepared = Result<std::result::Result<PreparedIssue, String>>;

pub(super) fn kind(action: Action) -> (&'static str, bool) {
    match action {
        Action::SignSubordinateCa => ("subordinate-ca", true),
        _ => ("cross-certificate", false),
    }
}

fn time(secs: i64) -> std::result::Result<Time, String> {
    let t =
        UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).map_err(|_| "a time before 1970")?);
    Time::try_from(t).map_err(|e| e.to_string())
}

fn validity(spec: &CaCertificate, now: SystemTime) -> std::result::Result<Validity, String> {
    let (nb, na) =
        match (&spec.not_before, &spec.not_after, spec.validity_days) {
            (Some(nb), Some(na), None) => (parse_utc(nb)?, parse_utc(na)?),
            (None, None, Some(days)) => {
                let start = now
                    .duration_since(UNIX_EPOCH)
                    .map_err(|e| e.to_string())?
                    .as_secs() as i64;
                (start, start + i64::from(days) * 86_400)
            }
            _ => return Err(
                "give either validity_days or both not_before and not_after; run `keyrite check`"
                    .into(),
            ),
        };
    Ok(Validity::new(time(nb)?, time(na)?))
}

/// Build what the step will sign. Nothing here signs; the serial comes from the HSM's RNG.
pub(super) fn prepare(
    state: &mut State,
    ctx_script: &Script,
    step: &crate::script::Step,
    operator: &mut dyn Operator,
) -> Prepared {
    let Some(spec) = step
        .certificate
        .as_deref()
        .and_then(|c| ctx_script.ca_certificate(c))
    else {
        return Ok(Err("the step names no [[ca_certificates]] entry".into()));
    };
    let Gathered {
        issuer_info,
        issuer_hash,
        issuer_cert,
        issuer_pem,
        input,
    } = match gather(state, ctx_script, step, spec, operator)? {
        Ok(g) => g,
        Err(why) => return Ok(Err(why)),
    };
    let subject = match &spec.subject {
        Some(s) => match issued::name_from_spec(s) {
            Ok(n) => n,
            Err(e) => return Ok(Err(format!("the script's subject does not encode: {e}"))),
        },
        None => match &input.subject {
            Some(n) => n.clone(),
            None => {
                return Ok(Err(
                    "a bare public key carries no subject: give `subject` in the [[ca_certificates]] entry".into(),
                ))
            }
        },
    };
    let validity = match validity(spec, SystemTime::now()) {
        Ok(v) => v,
        Err(why) => return Ok(Err(why)),
    };
    let issuer_key_id = match issued::key_id_of(&issuer_cert) {
        Ok(id) => id,
        Err(why) => return Ok(Err(format!("the issuer certificate's key id: {why}"))),
    };
    let key = HsmKey::new(
        &issuer_info.label,
        issuer_info.algorithm,
        spec.signature_hash
            .unwrap_or(issuer_info.algorithm.default_hash()),
        issuer_info.spki_der.clone(),
    );
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let serial = match x509::serial_from_hsm(hsm.as_mut()) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let profile = IssuedProfile {
        subject,
        issuer: issuer_cert.tbs_certificate().subject().clone(),
        issuer_key_id,
        subject_key_id: input.subject_key_id.clone(),
        spec: spec.clone(),
    };
    let tbs = match issued::prepare(profile, &input, &key, &serial, validity) {
        Ok(t) => t,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if let Err(findings) =
        crate::x509::issued_lint::lint_issued_tbs(&tbs.tbs_der, spec, &input, &issuer_cert, &key)
    {
        return Ok(Err(x509::CertError::Lint(findings.join("; ")).to_string()));
    }
    let tbs_sha256 = hex::encode(Sha256::digest(&tbs.tbs_der));
    Ok(Ok(PreparedIssue {
        step: step.id.clone(),
        input,
        issuer_cert,
        issuer_pem,
        key,
        issuer_key_hash: issuer_hash,
        tbs,
        tbs_sha256,
    }))
}

/// At the step's start: build and show what will be signed, and log it. A failure is shown as a
/// warning; the step then fails when performed, before anything is signed.
pub(super) fn present(
    state: &mut State,
    script: &Script,
    step: &crate::script::Step,
    operator: &mut dyn Operator,
) -> Result<()> {
    state.prepared = None;
    if let Some(saved) = super::certs_adopt::saved_by_interrupted_run(state, script, step)? {
        operator.notice(Notice::Info {
            text: &format!(
                "the interrupted run had signed and saved {}: this step checks it and adopts \
                 it; nothing is signed again",
                saved.file
            ),
        });
        return Ok(());
    }
    let prepared = match prepare(state, script, step, operator)? {
        Ok(p) => p,
        Err(why) => {
            operator.notice(Notice::Warning {
                text: &format!("nothing to sign can be shown: {why}"),
            });
            return Ok(());
        }
    };
    let name = step.certificate.clone().unwrap_or_default();
    let record = match presented(&prepared, name) {
        Ok(r) => r,
        Err(why) => {
            operator.notice(Notice::Warning { text: &why });
            return Ok(());
        }
    };
    for line in describe_lines(&record, &prepared) {
        operator.notice(Notice::Info { text: &line });
    }
    state.record(
        Some(step.id.clone()),
        vec![],
        &Record::CertificatePresented(record),
    )?;
    state.prepared = Some(prepared);
    Ok(())
}

fn presented(p: &PreparedIssue, name: String) -> std::result::Result<PresentedRecord, String> {
    let tbs = x509_cert::certificate::TbsCertificate::from_der(&p.tbs.tbs_der)
        .map_err(|e| e.to_string())?;
    let extensions = tbs
        .extensions()
        .map(|e| e.iter().map(x509::extensions::record).collect())
        .unwrap_or_default();
    Ok(PresentedRecord {
        name,
        subject: tbs.subject().to_string(),
        issuer: tbs.issuer().to_string(),
        serial: hex::encode(tbs.serial_number().as_bytes()),
        not_before: x509::rfc3339(tbs.validity().not_before),
        not_after: x509::rfc3339(tbs.validity().not_after),
        subject_key_hash: key_hash(&p.input.spki_der),
        extensions,
        tbs_sha256: p.tbs_sha256.clone(),
    })
}

/// What the room reads before it confirms.
fn describe_lines(r: &PresentedRecord, p: &PreparedIssue) -> Vec<String> {
    let mut lines = vec![
        "TO BE SIGNED — compare with the request and the script before confirming:".to_string(),
        format!("  subject    {}", r.subject),
        format!("  issuer     {}", r.issuer),
        format!("  serial     {}", r.serial),
        format!("  validity   {} to {}", r.not_before, r.not_after),
        format!(
            "  key        {} , key hash {}",
            p.input.key.name,
            grouped_hex(&r.subject_key_hash)
        ),
        format!("  input      SHA-256 {}", grouped_hex(&p.input.sha256)),
        format!(
            "  signed by  {} (key hash {})",
            p.key.label,
            grouped_hex(&p.issuer_key_hash)
        ),
    ];
    for e in &r.extensions {
        let critical = if e.critical { " (critical)" } else { "" };
        lines.push(format!("  {}{critical}: {}", e.name, e.value));
    }
    lines
}

/// The step: sign what was presented (or, after `keyrite resume`, prepare and show it again).
pub(super) fn sign(state: &mut State, ctx: &Context<'_>, operator: &mut dyn Operator) -> Performed {
    let Some(spec) = ctx
        .step
        .certificate
        .as_deref()
        .and_then(|c| ctx.script.ca_certificate(c))
    else {
        return Ok(Err("the step names no [[ca_certificates]] entry".into()));
    };
    if let Some(saved) = super::certs_adopt::saved_by_interrupted_run(state, ctx.script, ctx.step)?
    {
        return super::certs_adopt::adopt(state, ctx, spec, saved, operator);
    }
    let prepared = match state.prepared.take() {
        Some(p) if p.step == ctx.step.id => p,
        _ => {
            // Not shown at the step's start (it failed then, or the run was resumed): the room
            // has not seen it, so show it now and let the step fail if it cannot be built.
            present(state, ctx.script, ctx.step, operator)?;
            match state.prepared.take() {
                Some(p) => p,
                None => {
                    return Ok(Err(
                        "the certificate to sign could not be built (see the warning above); nothing was signed".into(),
                    ))
                }
            }
        }
    };
    let (kind_name, _) = kind(ctx.step.action);
    intent(
        state,
        ctx,
        "sign_ca_certificate",
        format!(
            "{} ({kind_name}) with key {} ({}), {}{}, {}{}",
            spec.name,
            spec.issuer_key,
            prepared.issuer_key_hash,
            super::certs_adopt::TBS_MARK,
            prepared.tbs_sha256,
            super::certs_adopt::INPUT_MARK,
            prepared.input.sha256
        ),
    )?;
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let PreparedIssue {
        input,
        issuer_cert,
        issuer_pem,
        key,
        issuer_key_hash,
        tbs,
        tbs_sha256,
        ..
    } = prepared;
    let signed = issued::sign(hsm.as_mut(), tbs, &key, &issuer_cert);
    super::super::kill_hook::point(&ctx.step.id, "after-sign_ca_certificate");
    let cert = match signed {
        Ok(c) => c,
        Err(x509::CertError::Hsm(e)) => return failed(state, ctx, "sign_ca_certificate", e),
        Err(e) => return Ok(Err(e.to_string())),
    };
    let issue = Issue {
        input,
        issuer_cert,
        issuer_pem,
        issuer_key_hash,
        tbs_sha256,
    };
    finish(state, ctx, spec, issue, cert, operator)
}

/// What a signed (or adopted) certificate is recorded with.
pub(super) struct Issue {
    pub(super) input: CheckedInput,
    pub(super) issuer_cert: Certificate,
    pub(super) issuer_pem: String,
    pub(super) issuer_key_hash: String,
    pub(super) tbs_sha256: String,
}

/// Write the certificate, the input's copy and the chain, and log the issued certificate. The
/// certificate goes first: once it is bound to the log, a resumed step adopts it instead of
/// signing again (certs_adopt.rs); a file the interrupted run bound already is kept if equal.
pub(super) fn finish(
    state: &mut State,
    ctx: &Context<'_>,
    spec: &CaCertificate,
    issue: Issue,
    cert: x509::SignedCertificate,
    operator: &mut dyn Operator,
) -> Performed {
    let Issue {
        input,
        issuer_cert,
        issuer_pem,
        issuer_key_hash,
        tbs_sha256,
    } = issue;
    let (kind_name, csr) = kind(ctx.step.action);
    let (file, chain_file, input_file) = (spec.file(), spec.chain_file(), spec.input_file(csr));
    let chain = format!("{}{}", cert.pem, issuer_pem);
    for (path, bytes) in [
        (&file, cert.pem.as_bytes()),
        (&input_file, input.pem.as_bytes()),
        (&chain_file, chain.as_bytes()),
    ] {
        match super::certs_adopt::keep_or_write(state, ctx, path, bytes) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Ok(Err(why)),
            Err(e) => return Ok(Err(e.to_string())),
        }
    }
    let issuer_der = issuer_cert.to_der().unwrap_or_default();
    let input_kind = match (csr, input.subject.is_some()) {
        (true, _) => "certificate request",
        (false, true) => "certificate",
        (false, false) => "public key",
    };
    let fingerprint = cert.sha256_fingerprint.clone();
    state.record(
        Some(ctx.step.id.clone()),
        vec![],
        &Record::CaCertificateSigned(IssuedCertificateRecord {
            name: spec.name.clone(),
            issued_as: kind_name.into(),
            issuer_key: spec.issuer_key.clone(),
            issuer_key_hash,
            issuer_certificate_sha256: hex::encode(Sha256::digest(&issuer_der)),
            subject_key_hash: key_hash(&input.spki_der),
            input_kind: input_kind.into(),
            input_sha256: input.sha256.clone(),
            input_file,
            subject: cert.subject,
            issuer: cert.issuer,
            serial: cert.serial_hex,
            not_before: cert.not_before,
            not_after: cert.not_after,
            signature_algorithm: cert.signature_algorithm,
            sha256_fingerprint: cert.sha256_fingerprint,
            tbs_sha256,
            file,
            chain_file,
            extensions: cert.extensions,
        }),
    )?;
    if ctx.mode.rehearsal {
        rehearsal::note_certificate(rehearsal::RehearsalCertificate {
            ceremony_id: ctx.script.ceremony.id.clone(),
            key_hash: key_hash(&input.spki_der),
            pem: cert.pem,
        })?;
    }
    show_fingerprint(operator, &spec.name, &fingerprint);
    Ok(Ok(()))
}

/// After signing: the certificate's SHA-256 fingerprint as grouped hex and PGP words, for reading back.
pub(super) fn show_fingerprint(operator: &mut dyn Operator, name: &str, fingerprint: &str) {
    let words = hex::decode(fingerprint)
        .map(|b| pgp_words(&b).join(" "))
        .unwrap_or_default();
    operator.notice(Notice::Info {
        text: &format!(
            "signed {name}: SHA-256 fingerprint {} — read it back: {words}",
            grouped_hex(fingerprint)
        ),
    });
}

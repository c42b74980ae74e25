//! A certificate-issuing step resumed after the interrupted run had already signed and saved its
//! certificate. When the bundle is reopened, files the log never bound are discarded (their hashes
//! on the record), so a certificate file still in the bundle is bound to the log: the root key
//! signed it and the room confirmed its TBS. The resumed step adopts it — checked against the
//! issuer and the input given now — and writes what is still missing, so one certificate is issued,
//! never two, and no serial is used twice.

use super::super::operator::{Notice, Operator};
use super::super::State;
use super::certs::{finish, Issue};
use super::certs_inputs::{gather, Gathered};
use super::{intent, write_artifact, Context, Performed};
use crate::error::Result;
use crate::hsm::spki::grouped_hex;
use crate::script::signing::CaCertificate;
use crate::script::Script;
use crate::x509::{self, issued};
use der::{DecodePem, Encode};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

/// The certificate file of `step` if the interrupted run saved it (only a resumed step finds one:
/// the policy keeps artifact names unique within a ceremony).
pub(super) fn saved_by_interrupted_run(
    state: &State,
    script: &Script,
    step: &crate::script::Step,
) -> Option<String> {
    let spec = script.ca_certificate(step.certificate.as_deref()?)?;
    let file = spec.file();
    state.bundle.path(&file).exists().then_some(file)
}

/// Check the saved certificate against the issuer certificate and the input, then record it.
pub(super) fn adopt(
    state: &mut State,
    ctx: &Context<'_>,
    spec: &CaCertificate,
    operator: &mut dyn Operator,
) -> Performed {
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
    let file = spec.file();
    let path = state.bundle.path(&file);
    let unusable = |why: String| {
        format!(
            "{file}, which the interrupted run signed and saved, {why}; close the ceremony with \
             `keyrite abort` and keep the bundle for the auditors"
        )
    };
    let pem = match std::fs::read(&path) {
        Ok(p) => p,
        Err(e) => return Ok(Err(unusable(format!("cannot be read: {e}")))),
    };
    let cert = match Certificate::from_pem(&pem) {
        Ok(c) => c,
        Err(e) => return Ok(Err(unusable(format!("is not a PEM certificate: {e}")))),
    };
    if let Err(why) = issued::verify_issued(&cert, &issuer_cert) {
        return Ok(Err(unusable(format!(
            "does not verify under the issuer: {why}"
        ))));
    }
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .unwrap_or_default();
    if spki != input.spki_der {
        return Ok(Err(format!(
            "{file}, which the interrupted run signed, certifies another key than the input given \
             now; give the same request or certificate again (`--attach {}=PATH`)",
            ctx.step.id
        )));
    }
    let (der, tbs) = match (cert.to_der(), cert.tbs_certificate().to_der()) {
        (Ok(d), Ok(t)) => (d, t),
        _ => return Ok(Err(unusable("does not re-encode".into()))),
    };
    let described = match x509::describe(&cert, &der) {
        Ok(d) => d,
        Err(e) => return Ok(Err(unusable(e.to_string()))),
    };
    // The log's rule (an HSM result follows its intent) holds; the detail says no HSM call is made.
    intent(
        state,
        ctx,
        "sign_ca_certificate",
        format!(
            "{} adopted from the interrupted run ({file}, serial {}, SHA-256 {}); the HSM is not called",
            spec.name, described.serial_hex, described.sha256_fingerprint
        ),
    )?;
    operator.notice(Notice::Info {
        text: &format!(
            "adopted {file} from the interrupted run: serial {}, SHA-256 {}",
            described.serial_hex,
            grouped_hex(&described.sha256_fingerprint)
        ),
    });
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
            "{file}, saved by the interrupted run, differs from what this step writes now; give \
             the same request or certificate again, or close the ceremony with `keyrite abort`"
        ))),
        Err(_) => write_artifact(state, ctx, file, bytes).map(Ok),
    }
}

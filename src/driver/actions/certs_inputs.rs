//! The inputs of a certificate for another CA, read and checked before anything is signed: the
//! request or certificate (from the script, `--attach`, the answers file or the prompt), the issuer
//! key found on the token, and the issuer certificate.

use super::super::operator::{Notice, Operator};
use super::super::rehearsal;
use super::super::State;
use super::certs::kind;
use super::keys;
use crate::error::Result;
use crate::hsm::spki::{grouped_hex, key_hash};
use crate::script::signing::CaCertificate;
use crate::script::{Script, SecurityLevel};
use crate::x509;
use crate::x509::csr::{self, CheckedInput, RSA_POLICY_BITS};
use der::{Decode, DecodePem, Encode};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use x509_cert::Certificate;

/// Read the input file: the script's path (relative to the script's folder), else the one given at
/// run time (`--attach STEP=PATH`, the answers file, or the prompt).
fn input_path(
    dir: Option<&Path>,
    spec: &CaCertificate,
    step: &str,
    csr: bool,
    operator: &mut dyn Operator,
) -> std::result::Result<PathBuf, String> {
    if let Some(p) = &spec.input {
        return Ok(resolve(dir, p));
    }
    let what = if csr {
        "the subordinate CA's certificate request (PKCS#10, PEM or DER)"
    } else {
        "the other CA's certificate or public key (PEM or DER)"
    };
    operator.attachment(step, what).map(PathBuf::from).ok_or_else(|| {
        format!("no file was given for {what}; give it with `--attach {step}=PATH`, the answers file's [attachments], or `input` in the script")
    })
}

pub(super) fn resolve(dir: Option<&Path>, path: &str) -> PathBuf {
    match dir {
        Some(d) if Path::new(path).is_relative() => d.join(path),
        _ => PathBuf::from(path),
    }
}

/// Read and check an input before anything is signed: a bad request or a weak key is refused here.
pub(crate) fn check_input(
    bytes: &[u8],
    csr: bool,
    level: SecurityLevel,
) -> std::result::Result<(CheckedInput, Option<String>), String> {
    let input = if csr {
        csr::check_request(bytes)
    } else {
        csr::check_cross_input(bytes)
    }?;
    let mut warning = None;
    if let Some(bits) = input.key.rsa_bits.filter(|b| *b < RSA_POLICY_BITS) {
        if level == SecurityLevel::VeryHigh {
            return Err(format!(
                "its key is RSA-{bits}; security level very-high never allows CA keys under RSA-{RSA_POLICY_BITS} \
                 — have the CA generate an RSA-3072/4096, P-256 or P-384 key"
            ));
        }
        warning = Some(format!(
            "the key to certify is RSA-{bits}: policy asks for RSA-{RSA_POLICY_BITS} or more for CA keys"
        ));
    }
    Ok((input, warning))
}

/// Before the bundle exists: every input whose path is known now (the script's, or given with
/// `--attach`) is read and checked, so a bad request leaves no bundle behind.
pub(crate) fn check_inputs_before_start(
    script: &Script,
    script_dir: Option<&Path>,
    given: &std::collections::BTreeMap<String, String>,
) -> crate::error::Result<()> {
    for step in script
        .steps
        .iter()
        .filter(|s| s.action.issues_ca_certificate())
    {
        let Some(spec) = step
            .certificate
            .as_deref()
            .and_then(|c| script.ca_certificate(c))
        else {
            continue;
        };
        let csr = kind(step.action).1;
        let path = match (&spec.input, given.get(&step.id)) {
            (Some(p), _) => resolve(script_dir, p),
            (None, Some(p)) => PathBuf::from(p),
            (None, None) => continue,
        };
        let refuse = |why: String| {
            crate::error::Error::input(
                format!(
                    "the input of step \"{}\", {}: {why}; nothing has started and no bundle was written",
                    step.id,
                    path.display()
                ),
                "fix or replace the file, then start again",
            )
        };
        let bytes = std::fs::read(&path).map_err(|e| refuse(e.to_string()))?;
        check_input(&bytes, csr, script.ceremony.security_level).map_err(refuse)?;
    }
    Ok(())
}

/// The issuer certificate: in a rehearsal, the one a rehearsed ceremony signed for this key in the
/// same --env folder; otherwise the script's file. Its key must be the issuer key.
fn issuer_certificate(
    dir: Option<&Path>,
    spec: &CaCertificate,
    issuer_hash: &str,
) -> std::result::Result<(Certificate, String), String> {
    let recorded = rehearsal::recorded_certificate(issuer_hash).map_err(|e| e.to_string())?;
    let bytes = match (recorded, &spec.issuer_certificate) {
        (Some(rec), _) => rec.pem.into_bytes(),
        (None, Some(path)) => {
            let path = resolve(dir, path);
            std::fs::read(&path).map_err(|e| {
                format!(
                    "the issuer certificate {} cannot be read: {e}",
                    path.display()
                )
            })?
        }
        (None, None) => {
            return Err(format!(
                "[[ca_certificates]] \"{}\" names no issuer_certificate: give the path of the issuing CA's certificate",
                spec.name
            ))
        }
    };
    let cert = Certificate::from_pem(&bytes)
        .or_else(|_| Certificate::from_der(&bytes))
        .map_err(|e| format!("the issuer certificate is not an X.509 certificate: {e}"))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    if key_hash(&spki) != issuer_hash {
        return Err(format!(
            "the issuer certificate certifies key {}, not the issuer key {} — give the certificate of \
             the key that signs",
            grouped_hex(&key_hash(&spki)),
            grouped_hex(issuer_hash)
        ));
    }
    if cert.tbs_certificate().issuer() == cert.tbs_certificate().subject() {
        x509::signer::verify_self_signed(&cert)
            .map_err(|e| format!("the issuer certificate's self-signature does not verify: {e}"))?;
    }
    let pem = der::EncodePem::to_pem(&cert, der::pem::LineEnding::LF).map_err(|e| e.to_string())?;
    Ok((cert, pem))
}

/// What a step's certificate is made from: the issuer key and certificate, and the checked input.
pub(super) struct Gathered {
    pub(super) issuer_info: crate::hsm::KeyPairInfo,
    pub(super) issuer_hash: String,
    pub(super) issuer_cert: Certificate,
    pub(super) issuer_pem: String,
    pub(super) input: CheckedInput,
}

/// Find the issuer key and certificate, and read and check the input file.
pub(super) fn gather(
    state: &mut State,
    ctx_script: &Script,
    step: &crate::script::Step,
    spec: &CaCertificate,
    operator: &mut dyn Operator,
) -> Result<std::result::Result<Gathered, String>> {
    let (_, csr) = kind(step.action);
    let issuer_info =
        match keys::known_key(state, ctx_script, &step.id, &spec.issuer_key, operator)? {
            Ok(i) => i,
            Err(why) => return Ok(Err(why)),
        };
    let issuer_hash = key_hash(&issuer_info.spki_der);
    let dir = state.script_dir.clone();
    let (issuer_cert, issuer_pem) = match issuer_certificate(dir.as_deref(), spec, &issuer_hash) {
        Ok(c) => c,
        Err(why) => return Ok(Err(why)),
    };
    let path = match input_path(dir.as_deref(), spec, &step.id, csr, operator) {
        Ok(p) => p,
        Err(why) => return Ok(Err(why)),
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => return Ok(Err(format!("{} cannot be read: {e}", path.display()))),
    };
    let (input, warning) = match check_input(&bytes, csr, ctx_script.ceremony.security_level) {
        Ok(i) => i,
        Err(why) => {
            return Ok(Err(format!(
                "{} (SHA-256 {}) is refused: {why}; nothing was signed",
                path.display(),
                hex::encode(Sha256::digest(&bytes))
            )))
        }
    };
    if let Some(w) = warning {
        operator.notice(Notice::Warning { text: &w });
    }
    Ok(Ok(Gathered {
        issuer_info,
        issuer_hash,
        issuer_cert,
        issuer_pem,
        input,
    }))
}

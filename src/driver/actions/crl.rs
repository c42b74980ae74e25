//! `sign_crl`: a CRL over the script's entries (and an earlier CRL's), signed by the CA key in the
//! HSM and verified with the issuer's certificate.
//!
//! The input files are read and checked before the bundle exists (a previous CRL that does not
//! verify, or whose number is not lower, stops the run with nothing written), then copied into
//! artifacts/ right after the first log entry, so the step, `keyrite resume` and `keyrite verify`
//! all work from the bundle's copies.

use super::{failed, intent, keys, write_artifact, Context, Performed};
use crate::driver::operator::{Notice, Operator};
use crate::driver::State;
use crate::error::{Error, Result};
use crate::evidence::events::Record;
use crate::evidence::pgp_words::pgp_words;
use crate::hsm::spki::grouped_hex;
use crate::script::crl::{parse_serial, parse_utc};
use crate::script::{CrlProfile, LoadedScript, Script, Step};
use crate::x509::crl::{self as xcrl, CrlContent, CrlRecord, Revocation};
use crate::x509::{CertError, HsmKey};
use std::path::{Path, PathBuf};
use x509_cert::crl::CertificateList;
use x509_cert::Certificate;

const NOT_STARTED: &str = "nothing has started and no bundle was written";

/// One CRL's input files as read before the ceremony.
pub(in crate::driver) struct CrlInputs {
    name: String,
    issuer: Vec<u8>,
    previous: Option<Vec<u8>>,
}

fn input_path(loaded: &LoadedScript, path: &str) -> PathBuf {
    let base = Path::new(&loaded.file_name)
        .parent()
        .unwrap_or_else(|| Path::new(""));
    base.join(path)
}

/// Read and check every CRL's inputs before the bundle exists.
pub(in crate::driver) fn read_inputs(loaded: &LoadedScript) -> Result<Vec<CrlInputs>> {
    let script = &loaded.script;
    let mut out = Vec::new();
    for crl in &script.crls {
        if !script
            .steps
            .iter()
            .any(|s| s.crl.as_deref() == Some(crl.name.as_str()))
        {
            continue;
        }
        let read = |what: &str, rel: &str| -> Result<Vec<u8>> {
            let path = input_path(loaded, rel);
            std::fs::read(&path).map_err(|e| {
                Error::input(
                    format!(
                        "the {what} of CRL \"{}\", {}, could not be read: {e}; {NOT_STARTED}",
                        crl.name,
                        path.display()
                    ),
                    "put the file there (paths are relative to the script's folder) or correct the path in [[crls]]",
                )
            })
        };
        let issuer = read("issuer certificate", &crl.issuer_certificate)?;
        let previous = match &crl.previous_crl {
            Some(p) => Some(read("previous CRL", p)?),
            None => None,
        };
        let inputs = CrlInputs {
            name: crl.name.clone(),
            issuer,
            previous,
        };
        check_inputs(crl, &inputs).map_err(|(what, fix)| {
            Error::input(format!("CRL \"{}\": {what}; {NOT_STARTED}", crl.name), fix)
        })?;
        out.push(inputs);
    }
    Ok(out)
}

/// The parsed issuer and previous CRL, or (what, fix).
type Parsed = (Certificate, Option<CertificateList>);

fn check_inputs(
    crl: &CrlProfile,
    inputs: &CrlInputs,
) -> std::result::Result<Parsed, (String, String)> {
    let issuer = xcrl::parse_certificate_pem(&inputs.issuer).map_err(|e| {
        (
            format!("the issuer certificate {}: {e}", crl.issuer_certificate),
            "give the CA's certificate as PEM, e.g. artifacts/<name>.pem from its ceremony's bundle".into(),
        )
    })?;
    let Some(previous) = &inputs.previous else {
        return Ok((issuer, None));
    };
    let file = crl.previous_crl.as_deref().unwrap_or_default();
    let previous = xcrl::parse_pem(previous).map_err(|e| {
        (
            format!("the previous CRL {file}: {e}"),
            "give the last CRL this CA issued, as PEM".into(),
        )
    })?;
    xcrl::verify_crl(&previous, &issuer).map_err(|e| {
        (
            format!("the previous CRL {file} does not verify with the issuer certificate: {e}"),
            "give the last CRL of this CA, and this CA's certificate".into(),
        )
    })?;
    match xcrl::crl_number(&previous) {
        Some(n) if n < crl.number => Ok((issuer, Some(previous))),
        Some(n) => Err((
            format!(
                "number = {} does not increase: the previous CRL {file} has number {n}",
                crl.number
            ),
            format!("set number = {} or more in [[crls]]", n.saturating_add(1)),
        )),
        None => Err((
            format!("the previous CRL {file} has no cRLNumber keyrite can read"),
            "give a CRL with a cRLNumber extension".into(),
        )),
    }
}

/// Copy each CRL's inputs into the bundle (right after `ceremony_started`).
pub(in crate::driver) fn copy_inputs(
    state: &mut State,
    script: &Script,
    inputs: &[CrlInputs],
) -> Result<()> {
    for i in inputs {
        let Some(crl) = script.crl(&i.name) else {
            continue;
        };
        let artifact = state.bundle.write_new(&crl.issuer_file(), &i.issuer)?;
        state.record(None, vec![], &Record::ArtifactWritten(artifact))?;
        if let Some(previous) = &i.previous {
            let artifact = state.bundle.write_new(&crl.previous_file(), previous)?;
            state.record(None, vec![], &Record::ArtifactWritten(artifact))?;
        }
    }
    Ok(())
}

/// The CRL to sign, from the script and the bundle's copies of its inputs.
fn prepare(
    state: &State,
    crl: &CrlProfile,
) -> std::result::Result<(Certificate, Option<CertificateList>, CrlContent), String> {
    let read = |file: &str| {
        std::fs::read(state.bundle.path(file))
            .map_err(|e| format!("the bundle's {file} could not be read: {e}"))
    };
    let inputs = CrlInputs {
        name: crl.name.clone(),
        issuer: read(&crl.issuer_file())?,
        previous: match crl.previous_crl {
            Some(_) => Some(read(&crl.previous_file())?),
            None => None,
        },
    };
    let (issuer, previous) =
        check_inputs(crl, &inputs).map_err(|(what, fix)| format!("{what} — {fix}"))?;
    let mut added = Vec::new();
    for r in &crl.revoked {
        added.push(Revocation {
            serial: parse_serial(&r.serial)?,
            date: parse_utc(&r.date)?,
            reason: r.reason,
        });
    }
    let carried = previous.as_ref().map(xcrl::entries).unwrap_or_default();
    let content = CrlContent {
        number: crl.number,
        this_update: parse_utc(&crl.this_update)?,
        next_update: parse_utc(&crl.next_update)?,
        revoked: xcrl::merge(carried, added)?,
    };
    Ok((issuer, previous, content))
}

/// Before confirmations: show the room what the CRL will say.
pub(super) fn on_step_started(
    state: &State,
    script: &Script,
    step: &Step,
    operator: &mut dyn Operator,
) {
    let Some(crl) = step.crl.as_deref().and_then(|n| script.crl(n)) else {
        return;
    };
    match prepare(state, crl) {
        Ok((issuer, _, content)) => operator.notice(Notice::Info {
            text: &presentation(crl, &issuer, &content),
        }),
        // The step fails with the same reason when performed.
        Err(why) => operator.notice(Notice::Warning {
            text: &format!("CRL {} cannot be built: {why}", crl.name),
        }),
    }
}

fn presentation(crl: &CrlProfile, issuer: &Certificate, content: &CrlContent) -> String {
    let mut text = format!(
        "CRL {} to be signed by key {}\n  issuer:      {}\n  number:      {}\n  thisUpdate:  {}\n  nextUpdate:  {}\n  revoked:     {}",
        crl.name,
        crl.key,
        issuer.tbs_certificate().subject(),
        content.number,
        xcrl::rfc3339(content.this_update),
        xcrl::rfc3339(content.next_update),
        content.revoked.len()
    );
    for r in &content.revoked {
        text.push_str(&format!(
            "\n    serial {}  {}  {}",
            hex::encode(&r.serial),
            xcrl::rfc3339(r.date),
            r.reason
        ));
    }
    text
}

pub(super) fn perform(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
) -> Performed {
    let Some(name) = ctx.step.crl.as_deref() else {
        return Ok(Err("the step names no CRL".into()));
    };
    let Some(crl) = ctx.script.crl(name) else {
        return Ok(Err(format!("CRL {name} is not in the script")));
    };
    if state.crls_signed.contains(name) {
        // `keyrite resume`: signed and logged before the interruption.
        return Ok(Ok(()));
    }
    let (issuer, previous, content) = match prepare(state, crl) {
        Ok(p) => p,
        Err(why) => return Ok(Err(why)),
    };
    // An `existing` key is found by its label, CKA_ID or URI and checked against its pinned hash
    // (keys.rs); the issuer certificate's key must then be that key (x509::crl::lint).
    let info = match keys::known_key(state, ctx.script, &ctx.step.id, &crl.key, operator)? {
        Ok(info) => info,
        Err(why) => return Ok(Err(why)),
    };
    super::token_objects::log_key_uri(state, &ctx.step.id, &info)?;
    let hash = crl.signature_hash.unwrap_or(info.algorithm.default_hash());
    let key = HsmKey::new(&crl.key, info.algorithm, hash, info.spki_der.clone());
    let file = crl.file();
    let written = state.bundle.path(&file).exists();
    let detail = match written {
        true => format!("{name}: adopt the CRL written before the interruption; nothing is signed"),
        // Pure ML-DSA hashes inside the algorithm: name it rather than an unused hash.
        false if info.algorithm.is_ml_dsa() => format!(
            "{name} number {} with key {} (pure {})",
            crl.number, crl.key, info.algorithm
        ),
        false => format!(
            "{name} number {} with key {} ({})",
            crl.number, crl.key, key.hash
        ),
    };
    intent(state, ctx, "sign_crl", detail)?;
    let signed = if written {
        // `keyrite resume`: the CRL was written and bound before the interruption, its record not:
        // read it back and check it instead of signing a second one.
        match adopt(state, &file, &issuer) {
            Ok(s) => s,
            Err(why) => return Ok(Err(why)),
        }
    } else {
        let Some(hsm) = state.hsm.as_mut() else {
            return Ok(Err("the HSM is not activated".into()));
        };
        let signed = xcrl::sign_crl(hsm.as_mut(), &issuer, &key, &content);
        crate::driver::kill_hook::point(&ctx.step.id, "after-sign_crl");
        let signed = match signed {
            Ok(s) => s,
            Err(CertError::Hsm(e)) => return failed(state, ctx, "sign_crl", e),
            Err(e) => return Ok(Err(e.to_string())),
        };
        if let Err(e) = write_artifact(state, ctx, &file, signed.pem.as_bytes()) {
            return Ok(Err(e.to_string()));
        }
        signed.description
    };
    let record = CrlRecord {
        name: name.into(),
        key: crl.key.clone(),
        issuer: signed.issuer,
        number: signed.number.unwrap_or(crl.number),
        this_update: signed.this_update,
        next_update: signed.next_update.unwrap_or_default(),
        authority_key_id: signed.authority_key_id.unwrap_or_default(),
        revoked: signed.revoked,
        signature_algorithm: signed.signature_algorithm,
        sha256_fingerprint: signed.sha256_fingerprint,
        file,
        issuer_certificate_file: crl.issuer_file(),
        previous_crl_file: crl.previous_crl.as_ref().map(|_| crl.previous_file()),
        previous_number: previous.as_ref().and_then(xcrl::crl_number),
    };
    let fingerprint = record.sha256_fingerprint.clone();
    state.record(
        Some(ctx.step.id.clone()),
        vec![],
        &Record::CrlSigned(record),
    )?;
    state.crls_signed.insert(name.to_string());
    let bytes = hex::decode(&fingerprint).unwrap_or_default();
    operator.notice(Notice::Info {
        text: &format!(
            "CRL {name} signed and verified. SHA-256 fingerprint, to read back:\n  {}\n  {}",
            grouped_hex(&fingerprint),
            pgp_words(&bytes).join(" ")
        ),
    });
    Ok(Ok(()))
}

/// A CRL file the interrupted run wrote: it must verify with the issuer.
fn adopt(
    state: &State,
    file: &str,
    issuer: &Certificate,
) -> std::result::Result<xcrl::CrlDescription, String> {
    let pem = std::fs::read(state.bundle.path(file)).map_err(|e| format!("{file}: {e}"))?;
    let crl = xcrl::parse_pem(&pem)?;
    xcrl::verify_crl(&crl, issuer)
        .map_err(|e| format!("{file}, written before the interruption, does not verify: {e}"))?;
    let der = der::Encode::to_der(&crl).map_err(|e| e.to_string())?;
    Ok(xcrl::describe(&crl, &der))
}

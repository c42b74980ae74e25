//! The sign_certificate step: the self-signed root, signed in the HSM with a serial from its RNG.

use super::super::operator::Operator;
use super::super::State;
use super::{
    certs, failed, intent, keys, token_objects, with_elapsed, write_artifact, Context, Performed,
};
use crate::evidence::events::Record;
use crate::evidence::report::CertificateRecord;
use crate::hsm::spki::key_hash;
use crate::x509::{self, HsmKey};
use std::time::SystemTime;

pub(super) fn sign(state: &mut State, ctx: &Context<'_>, operator: &mut dyn Operator) -> Performed {
    let Some(name) = ctx.step.certificate.as_deref() else {
        return Ok(Err("the step names no certificate".into()));
    };
    let Some(profile) = ctx.script.certificate(name) else {
        return Ok(Err(format!("certificate {name} is not in the script")));
    };
    let Some(spec) = ctx.script.key(&profile.key) else {
        return Ok(Err(format!("key {} is not in the script", profile.key)));
    };
    let info = match keys::known_key(state, ctx.script, &ctx.step.id, &profile.key, operator)? {
        Ok(info) => info,
        Err(why) => return Ok(Err(why)),
    };
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err("the HSM is not activated".into()));
    };
    // The token's CKA_LABEL: an existing key may be named otherwise in the script.
    let key = HsmKey::new(
        &info.label,
        spec.algorithm,
        x509::signature_hash(profile, spec.algorithm),
        info.spki_der.clone(),
    );
    let serial = match x509::serial_from_hsm(hsm.as_mut()) {
        Ok(s) => s,
        Err(e) => return failed(state, ctx, "sign_certificate", e),
    };
    intent(
        state,
        ctx,
        "sign_certificate",
        format!("{name} with key {} ({})", profile.key, key.hash),
    )?;
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let what = format!("signing {name} in the HSM");
    let signed = with_elapsed(operator, &what, || {
        x509::sign_root(hsm.as_mut(), profile, &key, &serial, SystemTime::now())
    });
    state.hsm_returned();
    let cert = match signed {
        Ok(c) => c,
        Err(x509::CertError::Hsm(e)) => return failed(state, ctx, "sign_certificate", e),
        Err(e) => return Ok(Err(e.to_string())),
    };
    let file = profile.file();
    let fingerprint = cert.sha256_fingerprint.clone();
    if let Err(e) = write_artifact(state, ctx, &file, cert.pem.as_bytes()) {
        return Ok(Err(e.to_string()));
    }
    state.record(
        Some(ctx.step.id.clone()),
        vec![],
        &Record::CertificateSigned(CertificateRecord {
            name: name.into(),
            key: profile.key.clone(),
            subject: cert.subject,
            serial: cert.serial_hex,
            not_before: cert.not_before,
            not_after: cert.not_after,
            signature_algorithm: cert.signature_algorithm,
            sha256_fingerprint: cert.sha256_fingerprint,
            file,
            issuer: cert.issuer,
            extensions: cert.extensions,
        }),
    )?;
    // A later rehearsal that issues with this key takes this as its issuer certificate.
    if ctx.mode.rehearsal {
        crate::driver::rehearsal::note_certificate(
            crate::driver::rehearsal::RehearsalCertificate {
                ceremony_id: ctx.script.ceremony.id.clone(),
                key_hash: key_hash(&info.spki_der),
                pem: cert.pem.clone(),
            },
        )?;
    }
    certs::show_fingerprint(operator, name, &fingerprint);
    token_objects::store_certificate(state, ctx, profile, &cert.der)
}

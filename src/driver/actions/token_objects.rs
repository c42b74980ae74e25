//! Where a key lives, as an RFC 7512 `pkcs11:` URI the report gives for every key the ceremony
//! generated or used, and the optional copy of a root certificate on the token (CKO_CERTIFICATE under
//! the key's CKA_ID and label, `store_on_token = true`).

use super::{failed, intent, Context, Performed};
use crate::driver::State;
use crate::error::Result;
use crate::evidence::events::Record;
use crate::hsm::{KeyPairInfo, TokenIdentity};
use crate::script::CertificateProfile;

/// RFC 7512 percent-encoding: unreserved characters stay, every other byte becomes %XX.
fn encode(value: &[u8]) -> String {
    value
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `pkcs11:token=…;serial=…;id=%..;object=…;type=private`: the private key, found by token label and
/// serial (never a slot id, which changes between processes), CKA_ID and label.
pub fn key_uri(token: &TokenIdentity, label: &str, id_hex: &str) -> String {
    let id = hex::decode(id_hex).unwrap_or_default();
    let id: String = id.iter().map(|b| format!("%{b:02X}")).collect();
    format!(
        "pkcs11:token={};serial={};id={id};object={};type=private",
        encode(token.token_label.as_bytes()),
        encode(token.serial.as_bytes()),
        encode(label.as_bytes())
    )
}

/// Log the key's URI (`key_uri`), once per key and run.
pub(super) fn log_key_uri(state: &mut State, step: &str, info: &KeyPairInfo) -> Result<()> {
    let Some(token) = state.hsm.as_ref().map(|h| h.identity().clone()) else {
        return Ok(());
    };
    if !state.key_uris_logged.insert(info.label.clone()) {
        return Ok(());
    }
    let uri = key_uri(&token, &info.label, &info.id_hex);
    state.record(
        Some(step.to_string()),
        vec![],
        &Record::KeyUri {
            label: info.label.clone(),
            key_hash: crate::hsm::spki::key_hash(&info.spki_der),
            uri,
        },
    )
}

/// After an activation found the script's existing keys: their URIs.
pub(super) fn log_existing_uris(state: &mut State, ctx: &Context<'_>) -> Result<()> {
    let token = ctx.script.step_token(ctx.step);
    let here = |k: &&crate::script::KeySpec| ctx.script.key_token_of(k) == token;
    for spec in ctx
        .script
        .keys
        .iter()
        .filter(|k| k.existing.is_some())
        .filter(here)
    {
        if let Some(info) = state.keys.get(&spec.label).cloned() {
            log_key_uri(state, &ctx.step.id, &info)?;
        }
    }
    Ok(())
}

/// `store_on_token`: write the signed certificate to the token beside its key.
pub(super) fn store_certificate(
    state: &mut State,
    ctx: &Context<'_>,
    profile: &CertificateProfile,
    der: &[u8],
) -> Performed {
    if !profile.store_on_token {
        return Ok(Ok(()));
    }
    let subject = match <x509_cert::Certificate as der::Decode>::from_der(der)
        .and_then(|c| der::Encode::to_der(c.tbs_certificate().subject()))
    {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("the signed certificate does not parse: {e}"))),
    };
    intent(
        state,
        ctx,
        "store_certificate",
        format!("{} beside key {}", profile.name, profile.key),
    )?;
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err("the HSM is not activated".into()));
    };
    if let Err(e) = hsm.store_certificate(&profile.key, &subject, der) {
        return failed(state, ctx, "store_certificate", e);
    }
    let id = state
        .keys
        .get(&profile.key)
        .map(|k| k.id_hex.clone())
        .unwrap_or_default();
    state.record(
        Some(ctx.step.id.clone()),
        vec![],
        &Record::CertificateStored {
            name: profile.name.clone(),
            key: profile.key.clone(),
            id,
        },
    )?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_percent_encode_all_but_unreserved() {
        let token = TokenIdentity {
            module_path: String::new(),
            library_description: String::new(),
            library_manufacturer: String::new(),
            library_version: String::new(),
            token_label: "root hsm;1".into(),
            manufacturer: String::new(),
            model: String::new(),
            serial: "ab12".into(),
            hardware_version: String::new(),
            firmware_version: String::new(),
        };
        assert_eq!(
            key_uri(&token, "root/2026", "01ff"),
            "pkcs11:token=root%20hsm%3B1;serial=ab12;id=%01%FF;object=root%2F2026;type=private"
        );
    }
}

//! Personal cards in a run: found and recorded before the first step, a signature over every
//! confirmation a carded participant gives, and the detached CMS report signatures at the end.
//!
//! The engine stays pure: it accepts a confirmation and emits `confirmed`; this module, called by the
//! effect loop right after that entry is written, asks the person's card PIN, signs, and logs
//! `confirmation_signed`.

use super::operator::{Notice, Operator};
use super::pins::{PinRequest, PinSource};
use super::{Opener, State};
use crate::error::{Error, Result};
use crate::evidence::bundle::{Bundle, SIGNATURES_DIR, SIGNED_DOCUMENTS, SIGNERS_CA_FILE};
use crate::evidence::events::{
    confirmation_message, PersonalCardRecord, Record, RetryRecord, SignedConfirmation,
    UnsignedConfirmation,
};
use crate::evidence::log::AuditEntry;
use crate::hsm::spki::key_hash;
use crate::hsm::Hsm;
use crate::script::signers::required_report_signers;
use crate::script::{KeyAlgorithm, Role, Script, TokenSelector};
use crate::x509::card::check_issued_by;
use crate::x509::signer::algorithm_name;
use crate::x509::HsmKey;
use der::{Decode, DecodePem, Encode, EncodePem};
use sha2::{Digest, Sha256};
use spki::DecodePublicKey;
use std::collections::BTreeMap;
use x509_cert::Certificate;

/// How the warning about a required report signature that could not be made begins.
pub const SIGNATURE_MISSING: &str = "report signature missing: ";

/// PIN attempts per signature before the ceremony stops.
const PIN_ATTEMPTS: usize = 3;

/// How to reach the cards of this run.
#[derive(Debug, Clone, Default)]
pub struct CardSetup {
    /// PKCS#11 module of the cards (rehearsal: SoftHSM; run: `[hsm] cards_module`, else `module`).
    pub module: String,
    /// Per person, the token to open instead of the script's `card` (rehearsal: the throw-away card).
    pub tokens: BTreeMap<String, TokenSelector>,
    /// PEM of the CA that issued the card certificates: the rehearsal's participants CA, or the one
    /// given with `keyrite run --signers-ca FILE`.
    pub ca_pem: Option<String>,
    pub rehearsal_ca: bool,
}

/// An open personal card.
pub(crate) struct Card {
    hsm: Box<dyn Hsm + Send>,
    key_id: String,
    cert_der: Vec<u8>,
    spki_der: Vec<u8>,
    algorithm: KeyAlgorithm,
}

fn algorithm_of(spki_der: &[u8]) -> Option<KeyAlgorithm> {
    if p256::PublicKey::from_public_key_der(spki_der).is_ok() {
        Some(KeyAlgorithm::P256)
    } else if p384::PublicKey::from_public_key_der(spki_der).is_ok() {
        Some(KeyAlgorithm::P384)
    } else {
        None
    }
}

/// The personal cards, opened before the bundle exists, so that a missing CA or card refuses the
/// run before anything is written.
pub(super) struct OpenedCards {
    ca_pem: String,
    ca_subject: String,
    cards: Vec<(String, Card, PersonalCardRecord)>,
}

/// Open every carded participant's card and pick the certificate the signers CA issued. `None` for
/// a script without cards.
pub(super) fn open_all(
    script: &Script,
    setup: &CardSetup,
    opener: &mut Opener<'_>,
) -> Result<Option<OpenedCards>> {
    let carded: Vec<_> = script
        .participants
        .iter()
        .filter(|p| p.card.is_some())
        .collect();
    if carded.is_empty() {
        return Ok(None);
    }
    let Some(ca_pem) = &setup.ca_pem else {
        return Err(Error::input(
            "the script gives participants personal cards, but no CA for their certificates was given",
            "pass the CA certificate that issued the cards: keyrite run --signers-ca FILE",
        ));
    };
    let ca = Certificate::from_pem(ca_pem.as_bytes()).map_err(|e| {
        Error::input(
            format!("the signers CA is not a PEM certificate: {e}"),
            "give the CA certificate in PEM form",
        )
    })?;
    let mut cards = Vec::new();
    for p in carded {
        let selector = setup
            .tokens
            .get(&p.name)
            .or(p.card.as_ref())
            .cloned()
            .unwrap_or_default();
        let fail = |what: String| {
            Error::env(
                format!("personal card of {} ({selector}): {what}", p.name),
                "insert the person's card and check the card's selector in the script; the ceremony has not started",
            )
        };
        let mut hsm = opener(&setup.module, &selector).map_err(|e| fail(e.to_string()))?;
        let certs = hsm.certificates().map_err(|e| fail(e.to_string()))?;
        let found = certs.into_iter().find_map(|(id, der)| {
            let cert = Certificate::from_der(&der).ok()?;
            check_issued_by(&cert, &ca).ok()?;
            Some((id, der, cert))
        });
        let Some((key_id, cert_der, cert)) = found else {
            return Err(fail(format!(
                "holds no certificate issued by the signers CA \"{}\"",
                ca.tbs_certificate().subject()
            )));
        };
        let spki_der = cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|e| fail(e.to_string()))?;
        let algorithm = algorithm_of(&spki_der).ok_or_else(|| {
            fail("the card key is not P-256 or P-384, which keyrite signs with".into())
        })?;
        let pem = cert
            .to_pem(der::pem::LineEnding::LF)
            .map_err(|e| fail(e.to_string()))?;
        let record = PersonalCardRecord {
            person: p.name.clone(),
            token: hsm.identity().clone(),
            key_id: key_id.clone(),
            certificate_pem: pem,
            key_hash: key_hash(&spki_der),
            subject: cert.tbs_certificate().subject().to_string(),
            issuer: cert.tbs_certificate().issuer().to_string(),
            sha256_fingerprint: hex::encode(Sha256::digest(&cert_der)),
        };
        let card = Card {
            hsm,
            key_id,
            cert_der,
            spki_der,
            algorithm,
        };
        cards.push((p.name.clone(), card, record));
    }
    Ok(Some(OpenedCards {
        ca_pem: ca_pem.clone(),
        ca_subject: ca.tbs_certificate().subject().to_string(),
        cards,
    }))
}

/// The opened cards by person, without registering them (`keyrite abort`: they were registered
/// when the ceremony started).
pub(super) fn into_cards(opened: Option<OpenedCards>) -> BTreeMap<String, Card> {
    opened
        .map(|o| o.cards.into_iter().map(|(p, card, _)| (p, card)).collect())
        .unwrap_or_default()
}

/// Log `signers_ca` and one `personal_card` per person, and keep the cards open for the run.
pub(super) fn register(
    state: &mut State,
    setup: &CardSetup,
    opened: Option<OpenedCards>,
) -> Result<()> {
    let Some(opened) = opened else {
        return Ok(());
    };
    let dir = state.bundle.path(SIGNATURES_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, &e))?;
    let written = state
        .bundle
        .write_new(SIGNERS_CA_FILE, opened.ca_pem.as_bytes())?;
    state.record(
        None,
        vec![],
        &Record::SignersCa {
            file: SIGNERS_CA_FILE.into(),
            sha256: written.sha256,
            subject: opened.ca_subject,
            rehearsal: setup.rehearsal_ca,
        },
    )?;
    for (person, card, record) in opened.cards {
        state.record(None, vec![person.clone()], &Record::PersonalCard(record))?;
        state.cards.insert(person, card);
    }
    Ok(())
}

/// Log in to `person`'s card (asking the PIN, up to three attempts), run `f`, log out. Each refused
/// login is added to `refused` (the caller logs it as a retry where the log is still open).
fn with_card<T>(
    card: &mut Card,
    person: &str,
    pins: &mut dyn PinSource,
    operator: &mut dyn Operator,
    refused: &mut Vec<String>,
    f: impl FnOnce(&mut dyn Hsm, &HsmKey) -> std::result::Result<T, crate::hsm::HsmError>,
) -> Result<T> {
    let mut last = None;
    for _ in 0..PIN_ATTEMPTS {
        let pin = pins.pin(&PinRequest::PersonalCard {
            person,
            card: card.hsm.identity(),
        })?;
        let login = card.hsm.login(&pin);
        drop(pin);
        match login {
            Ok(()) => {
                last = None;
                break;
            }
            Err(e) => {
                operator.notice(Notice::Warning {
                    text: &format!("{person}'s card refused the login: {e}"),
                });
                refused.push(format!("{} returned {}", e.function, e.ckr));
                last = Some(e);
            }
        }
    }
    if let Some(e) = last {
        return Err(Error::Hsm(e));
    }
    let result = card.hsm.private_key_label(&card.key_id).and_then(|label| {
        let key = HsmKey::new(
            &label,
            card.algorithm,
            card.algorithm.default_hash(),
            card.spki_der.clone(),
        );
        f(card.hsm.as_mut(), &key)
    });
    let logout = card.hsm.logout();
    let value = result.map_err(Error::Hsm)?;
    logout.map_err(Error::Hsm)?;
    Ok(value)
}

/// After the `confirmed` entry `entry` was written: if `person` has a card, sign the confirmation
/// and log `confirmation_signed`.
///
/// When the card cannot sign (three refused PINs, a card error), logs `confirmation_unsigned`, takes
/// the card out of the run (it cannot sign the report either) and returns the reason the ceremony
/// must abort with; the caller aborts on the record. Errors only when the evidence cannot be written
/// or the room could not be asked for the PIN (after logging `confirmation_unsigned`).
#[allow(clippy::too_many_arguments)]
pub(super) fn sign_confirmation(
    state: &mut State,
    script: &Script,
    entry: &AuditEntry,
    person: &str,
    role: Role,
    step: &str,
    pins: &mut dyn PinSource,
    operator: &mut dyn Operator,
) -> Result<Option<String>> {
    let message = confirmation_message(&script.ceremony.id, entry, person, role, step);
    let mut refused = Vec::new();
    let (signed, card_key_hash) = match state.cards.get_mut(person) {
        Some(card) => (
            with_card(card, person, pins, operator, &mut refused, |hsm, key| {
                Ok((key.sign(hsm, message.as_bytes())?, key.signature_oid()))
            }),
            key_hash(&card.spki_der),
        ),
        None => return Ok(None),
    };
    for (n, reason) in refused.into_iter().enumerate() {
        let retry = RetryRecord {
            what: "personal_card_pin".into(),
            attempt: u32::try_from(n + 1).unwrap_or(u32::MAX),
            reason,
            sent_to_token: true,
            token_reports: None,
        };
        state.record(
            Some(step.into()),
            vec![person.into()],
            &Record::Retried(retry),
        )?;
    }
    let (signature, oid) = match signed {
        Ok(signed) => signed,
        Err(err) => {
            let reason = match &err {
                Error::Hsm(e) => format!("{person}'s card did not sign: {e}"),
                other => format!("{person}'s card PIN could not be asked: {other}"),
            };
            state.cards.remove(person);
            state.unsigned_by.insert(person.into(), reason.clone());
            let record = UnsignedConfirmation {
                person: person.into(),
                step: step.into(),
                confirmed_seq: entry.seq,
                reason: reason.clone(),
            };
            state.record(
                Some(step.into()),
                vec![person.into()],
                &Record::ConfirmationUnsigned(record),
            )?;
            operator.notice(Notice::Warning {
                text: &format!(
                    "{person}'s confirmation stays unsigned; the ceremony stops on the record"
                ),
            });
            return match err {
                Error::Hsm(_) => Ok(Some(format!("{reason}; the confirmation stays unsigned"))),
                other => Err(other),
            };
        }
    };
    let record = SignedConfirmation {
        person: person.into(),
        role,
        step: step.into(),
        confirmed_seq: entry.seq,
        message,
        signature_algorithm: algorithm_name(&oid),
        signature: hex::encode(signature),
        key_hash: card_key_hash,
    };
    operator.notice(Notice::Info {
        text: &format!("{person} signed the confirmation with their card"),
    });
    state
        .record(
            Some(step.into()),
            vec![person.into()],
            &Record::ConfirmationSigned(record),
        )
        .map(|()| None)
}

/// After the report is written: every required signer signs each report document present, as
/// detached CMS, into signatures/<stem>.<document>.p7s. Tries every signer and returns those who could
/// not sign ("person (role): why"); an error only when a signature could not be written.
pub(super) fn sign_reports(
    bundle: &Bundle,
    script: &Script,
    cards: &mut BTreeMap<String, Card>,
    refused: &BTreeMap<String, String>,
    pins: &mut dyn PinSource,
    operator: &mut dyn Operator,
) -> Result<Vec<String>> {
    let documents: Vec<(&str, Vec<u8>)> = SIGNED_DOCUMENTS
        .iter()
        .filter_map(|d| std::fs::read(bundle.path(d)).ok().map(|b| (*d, b)))
        .collect();
    let mut failures = Vec::new();
    let mut wrote = false;
    for signer in required_report_signers(script) {
        if let Some(why) = refused.get(&signer.person) {
            failures.push(format!(
                "{} ({}): cannot sign, their card refused during the ceremony ({why})",
                signer.person, signer.reason
            ));
            continue;
        }
        // `keyrite resume` after a cut-off signing: signatures already made stand.
        let file =
            |name: &str| bundle.path(&format!("{SIGNATURES_DIR}/{}.{name}.p7s", signer.stem));
        if documents.iter().all(|(name, _)| file(name).exists()) {
            continue;
        }
        for (name, _) in &documents {
            let _ = std::fs::remove_file(file(name));
        }
        let Some(card) = cards.get_mut(&signer.person) else {
            failures.push(format!(
                "{} ({}): card not registered",
                signer.person, signer.reason
            ));
            continue;
        };
        let cert = card.cert_der.clone();
        let now = std::time::SystemTime::now();
        // The log is closed: a refused login is shown, not logged.
        let signed = with_card(
            card,
            &signer.person,
            pins,
            operator,
            &mut Vec::new(),
            |hsm, key| {
                documents
                    .iter()
                    .map(|(name, bytes)| {
                        crate::x509::cms::sign_detached(hsm, key, &cert, bytes, now)
                            .map(|p7s| (*name, p7s))
                            .map_err(|e| match e {
                                crate::x509::CertError::Hsm(h) => h,
                                other => crate::hsm::HsmError::new(
                                    "CMS signing",
                                    other.to_string(),
                                    "report this keyrite defect",
                                ),
                            })
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
            },
        );
        match signed {
            Ok(files) => {
                for (name, p7s) in files {
                    let file = format!("{SIGNATURES_DIR}/{}.{name}.p7s", signer.stem);
                    bundle.write_new_unlisted(&file, |w| w.write_all(&p7s))?;
                    wrote = true;
                    operator.notice(Notice::Info {
                        text: &format!(
                            "{} ({}) signed {name}: {file}",
                            signer.person, signer.reason
                        ),
                    });
                }
            }
            Err(e) => failures.push(format!("{} ({}): {e}", signer.person, signer.reason)),
        }
    }
    // One fsync of the folder for every signature: the log, closed before, never names them. A power
    // cut before it may lose signatures whole; `keyrite resume` then has their signers sign again.
    if wrote {
        bundle.sync_folder(SIGNATURES_DIR)?;
    }
    for failure in &failures {
        operator.notice(Notice::Warning {
            text: &format!("{SIGNATURE_MISSING}{failure}"),
        });
    }
    Ok(failures)
}

#[cfg(test)]
mod tests;

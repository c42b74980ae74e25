//! Throw-away personal cards for a rehearsal: one SoftHSM token per carded participant, holding a
//! P-256 signing key generated in the token and a certificate from the rehearsal "participants CA",
//! whose own key lives in a SoftHSM token of the same folder (never in a file).
//!
//! DIR/participants-ca.pem is the CA certificate an auditor uses as `-CAfile`; each ceremony also
//! copies it into its bundle as signatures/signers-ca.pem.

use super::{RehearsalEnv, WantedToken};
use crate::driver::personal_cards::CardSetup;
use crate::error::{Error, Result};
use crate::hsm::pkcs11::Pkcs11Hsm;
use crate::hsm::timed::TimedHsm;
use crate::hsm::Hsm;
use crate::script::signers::signer_stem;
use crate::script::{HashAlgorithm, KeyAlgorithm, Script, TokenSelector};
use crate::x509::card::{issue, name, Subject, PARTICIPANTS_CA_CN, REHEARSAL_ORG};
use crate::x509::{serial_from_hsm, HsmKey};
use der::{Decode, DecodePem, Encode, EncodePem};
use secrecy::SecretString;
use std::time::SystemTime;
use x509_cert::Certificate;

/// Token label of the participants CA.
pub const CA_TOKEN: &str = "keyrite-participants-ca";
/// Key label of the CA key, and of every card's signing key.
pub const CA_KEY: &str = "participants-ca";
pub const CARD_KEY: &str = "card-signing-key";
/// The CA certificate in the rehearsal folder.
pub const CA_FILE: &str = "participants-ca.pem";
/// Card certificates are valid for a year; the CA for ten.
const CARD_DAYS: u64 = 365;
const CA_DAYS: u64 = 3650;

fn hsm_err(e: impl std::fmt::Display) -> Error {
    Error::env(
        format!("making a rehearsal card failed: {e}"),
        "check SoftHSM2 and the --env folder, or use a new --env folder",
    )
}

fn open_logged_in(renv: &RehearsalEnv, module: &str, label: &str) -> Result<TimedHsm<Pkcs11Hsm>> {
    let token = renv
        .token(label)
        .ok_or_else(|| hsm_err(format!("no token {label}")))?;
    let selector = TokenSelector {
        label: Some(token.label.clone()),
        serial: Some(token.serial.clone()),
        uri: None,
    };
    let mut hsm = Pkcs11Hsm::open_timed(module, &selector)?;
    hsm.login(&SecretString::from(token.user_pin.as_str()))?;
    Ok(hsm)
}

fn p256_key(hsm: &mut dyn Hsm, label: &str) -> Result<HsmKey> {
    let info = if hsm.label_exists(label)? {
        hsm.key_pair(label)?
    } else {
        hsm.generate_key_pair(label, KeyAlgorithm::P256)?
    };
    Ok(HsmKey::new(
        label,
        KeyAlgorithm::P256,
        HashAlgorithm::Sha256,
        info.spki_der,
    ))
}

/// The card token label for a person: the label the script names, else "card-<stem>" (≤ 32 bytes).
fn card_label(script: &Script, person: &str, card: &TokenSelector) -> String {
    crate::hsm::pkcs11::wanted_label(card).unwrap_or_else(|| {
        let mut l = format!("card-{}", signer_stem(script, person));
        l.truncate(32);
        l.trim_end_matches('-').to_string()
    })
}

/// The tokens of the participants CA and of each carded participant's card (none without cards).
pub fn card_tokens(module: &str, script: &Script) -> Vec<WantedToken> {
    let cards: Vec<WantedToken> = script
        .participants
        .iter()
        .filter_map(|p| {
            let card = p.card.as_ref()?;
            let mut token = WantedToken::new(module, &card_label(script, &p.name, card));
            token.card_of = Some(p.name.clone());
            Some(token)
        })
        .collect();
    if cards.is_empty() {
        return cards;
    }
    std::iter::once(WantedToken::new(module, CA_TOKEN))
        .chain(cards)
        .collect()
}

impl RehearsalEnv {
    /// Make (or reuse) the participants CA and a card per carded participant; say where they are.
    pub fn ensure_cards(&mut self, module: &str, script: &Script) -> Result<CardSetup> {
        let mut setup = CardSetup {
            module: module.to_string(),
            ..CardSetup::default()
        };
        if script.participants.iter().all(|p| p.card.is_none()) {
            return Ok(setup);
        }
        let now = SystemTime::now();
        self.provision(&card_tokens(module, script))?;
        let mut ca_hsm = open_logged_in(self, module, CA_TOKEN)?;
        let ca_key = p256_key(&mut ca_hsm, CA_KEY)?;
        let ca_path = self.dir.join(CA_FILE);
        let ca_pem = match std::fs::read_to_string(&ca_path) {
            Ok(pem) => pem,
            Err(_) => {
                let subject = name(REHEARSAL_ORG, PARTICIPANTS_CA_CN).map_err(hsm_err)?;
                let serial = serial_from_hsm(&mut ca_hsm)?;
                let request = Subject {
                    name: subject,
                    spki: &[],
                    serial: &serial,
                    not_before: now,
                    days: CA_DAYS,
                };
                let der = issue(&mut ca_hsm, &ca_key, None, request).map_err(hsm_err)?;
                let pem = Certificate::from_der(&der)
                    .and_then(|c| c.to_pem(der::pem::LineEnding::LF))
                    .map_err(hsm_err)?;
                std::fs::write(&ca_path, &pem).map_err(|e| Error::io("write", &ca_path, &e))?;
                pem
            }
        };
        let ca = Certificate::from_pem(ca_pem.as_bytes()).map_err(hsm_err)?;
        for p in script.participants.iter() {
            let Some(card) = &p.card else { continue };
            let label = card_label(script, &p.name, card);
            let token = self.made(&label)?;
            let mut hsm = open_logged_in(self, module, &label)?;
            if hsm.certificates()?.is_empty() {
                let key = p256_key(&mut hsm, CARD_KEY)?;
                let subject = name(REHEARSAL_ORG, &p.name).map_err(hsm_err)?;
                let subject_der = subject.to_der().map_err(hsm_err)?;
                let serial = serial_from_hsm(&mut ca_hsm)?;
                let spki = key.spki()?.to_der().map_err(hsm_err)?;
                let request = Subject {
                    name: subject,
                    spki: &spki,
                    serial: &serial,
                    not_before: now,
                    days: CARD_DAYS,
                };
                let der = issue(&mut ca_hsm, &ca_key, Some(&ca), request).map_err(hsm_err)?;
                hsm.store_certificate(CARD_KEY, &subject_der, &der)?;
            }
            hsm.logout()?;
            setup.tokens.insert(
                p.name.clone(),
                TokenSelector {
                    label: Some(token.label.clone()),
                    serial: Some(token.serial.clone()),
                    uri: None,
                },
            );
        }
        ca_hsm.logout()?;
        setup.ca_pem = Some(ca_pem);
        setup.rehearsal_ca = true;
        Ok(setup)
    }
}

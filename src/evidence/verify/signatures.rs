//! Signature checks of `keyrite verify`: the personal cards and the signers CA the log recorded,
//! every signed confirmation, every report signature (detached CMS), and that everyone the security
//! level requires has signed.

use super::report_signatures::check_report_signatures;
use super::{sha256_hex, short, Verification};
use crate::engine::Event;
use crate::evidence::bundle::{LOG_FILE, SIGNATURES_DIR, SIGNERS_CA_FILE};
use crate::evidence::events::{
    confirmation_message_at, PersonalCardRecord, Record, SignedConfirmation, UnsignedConfirmation,
};
use crate::evidence::log::EntryRef;
use crate::evidence::report::Parsed;
use crate::evidence::safe_read::{BundleDir, FILE_LIMIT};
use crate::hsm::spki::key_hash;
use crate::script::Script;
use crate::x509::card::check_issued_by;
use crate::x509::signer::verify_signature;
use const_oid::db::rfc5912::{ECDSA_WITH_SHA_256, ECDSA_WITH_SHA_384};
use der::{DecodePem, Encode};
use std::collections::{BTreeMap, BTreeSet};
use x509_cert::Certificate;

/// A `confirmation_unsigned` entry directly followed (as the next engine event) by the ceremony's
/// abort: the log's own explanation of why a carded person's signatures are missing.
pub(super) struct Explained {
    pub(super) seq: u64,
    pub(super) record: UnsignedConfirmation,
}

pub(super) struct Card {
    cert: Certificate,
    pub(super) der: Vec<u8>,
    spki: Vec<u8>,
}

/// A `confirmed` entry as the signature checks need it: what its signed message is made of.
struct Confirmed {
    hash: String,
    time: String,
    person: String,
    role: crate::script::Role,
    step: String,
}

/// What the signature checks read from the log, collected one entry at a time by verify's single
/// pass (no entry is held): the signers CA and card records, the signed and unsigned confirmations,
/// and the `confirmed` entries they are checked against. Those are kept when personal cards are in
/// play (the script gives one, or the log recorded one); without cards only the `confirmed` entry a
/// record names is kept, since nothing else is checked against them.
pub(super) struct SignatureFacts {
    ca_record: Option<(String, String, bool)>,
    cards: Vec<PersonalCardRecord>,
    signed: Vec<(u64, SignedConfirmation)>,
    confirmed: BTreeMap<u64, Confirmed>,
    keep_confirmed: bool,
    /// The latest `confirmed` entry, when not kept: a record may name it next.
    latest: Option<(u64, Confirmed)>,
    explained: Vec<Explained>,
    pending: Option<Explained>,
    steps_began: bool,
    last_seq: u64,
}

impl SignatureFacts {
    pub fn new(script: &Script) -> Self {
        SignatureFacts {
            ca_record: None,
            cards: Vec::new(),
            signed: Vec::new(),
            confirmed: BTreeMap::new(),
            keep_confirmed: script.participants.iter().any(|p| p.card.is_some()),
            latest: None,
            explained: Vec::new(),
            pending: None,
            steps_began: false,
            last_seq: 0,
        }
    }

    /// The next entry of the log, with its event when it parsed.
    pub fn entry<'a>(&mut self, entry: impl Into<EntryRef<'a>>, parsed: Option<&Parsed>) {
        let entry = entry.into();
        self.last_seq = entry.seq;
        if let Some(Parsed::Engine(event)) = parsed {
            // Whether any engine entry follows `ceremony_started`: the room had started the first
            // step, so the personal cards (registered before it) are all in the log.
            self.steps_began = true;
            // Only an abort right after it makes a confirmation_unsigned an explanation.
            if let Some(p) = self.pending.take() {
                if matches!(event, Event::CeremonyAborted { .. }) {
                    self.explained.push(p);
                }
            }
        }
        match parsed {
            Some(Parsed::Record(Record::ConfirmationUnsigned(u))) => {
                self.keep_named(u.confirmed_seq);
                self.pending = Some(Explained {
                    seq: entry.seq,
                    record: u.clone(),
                })
            }
            Some(Parsed::Record(Record::SignersCa {
                file,
                sha256,
                rehearsal,
                ..
            })) => self.ca_record = Some((file.clone(), sha256.clone(), *rehearsal)),
            Some(Parsed::Record(Record::PersonalCard(card))) => {
                self.keep_confirmed = true;
                self.cards.push(card.clone())
            }
            Some(Parsed::Record(Record::ConfirmationSigned(s))) => {
                self.keep_named(s.confirmed_seq);
                self.keep_confirmed = true;
                self.signed.push((entry.seq, s.clone()))
            }
            Some(Parsed::Engine(Event::Confirmed {
                step, person, role, ..
            })) => {
                match &mut self.latest {
                    // The latest one not kept, overwritten in place (no allocation per entry).
                    Some((at, c)) if !self.keep_confirmed => {
                        *at = entry.seq;
                        for (to, from) in [
                            (&mut c.hash, entry.hash),
                            (&mut c.time, entry.time),
                            (&mut c.person, person.as_str()),
                            (&mut c.step, step.as_str()),
                        ] {
                            to.clear();
                            to.push_str(from);
                        }
                        c.role = *role;
                    }
                    _ => {
                        let c = Confirmed {
                            hash: entry.hash.to_string(),
                            time: entry.time.to_string(),
                            person: person.clone(),
                            role: *role,
                            step: step.clone(),
                        };
                        if self.keep_confirmed {
                            self.confirmed.insert(entry.seq, c);
                        } else {
                            self.latest = Some((entry.seq, c));
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// A record names the `confirmed` entry `seq`: keep it if it is the latest one not kept.
    fn keep_named(&mut self, seq: u64) {
        if self.latest.as_ref().is_some_and(|(at, _)| *at == seq) {
            if let Some((at, c)) = self.latest.take() {
                self.confirmed.insert(at, c);
            }
        }
    }
}

/// `finished`: the log ends with `report_written`. Before that, the personal cards are checked as
/// far as they were registered, a confirmation that is the log's last entry may still await its
/// signature, and the report signatures are not due yet.
pub(super) fn check(
    v: &mut Verification,
    bundle: &BundleDir,
    script: &Script,
    facts: SignatureFacts,
    ca_override: Option<&str>,
    finished: bool,
) {
    let SignatureFacts {
        ca_record,
        cards,
        signed,
        confirmed,
        mut explained,
        pending,
        steps_began,
        last_seq,
        ..
    } = facts;
    // A run that stopped right after a confirmation_unsigned never reached the abort that follows.
    if let Some(p) = pending.filter(|_| !finished) {
        explained.push(p);
    }
    let carded: BTreeSet<&str> = script
        .participants
        .iter()
        .filter(|p| p.card.is_some())
        .map(|p| p.name.as_str())
        .collect();
    // Cards still being registered when the log stops: only what was recorded can be checked.
    let registering = !finished && !steps_began;
    let has_signatures = !matches!(bundle.kind(SIGNATURES_DIR), Ok(None));
    let mut known = BTreeMap::new();
    if !carded.is_empty() || !cards.is_empty() || has_signatures || ca_override.is_some() {
        if ca_record.is_none() && registering {
            return;
        }
        if let Some(ca) = signers_ca(v, bundle, ca_record, ca_override) {
            known = check_cards(v, &cards, &carded, &ca, registering);
            let last = (!finished).then_some(last_seq);
            check_confirmations(v, script, &known, &confirmed, &signed, &explained, last);
        }
    }
    if finished {
        check_report_signatures(v, bundle, script, &known, &explained);
    }
}

/// The CA every card certificate must chain to: the one given on the command line, else the
/// bundle's copy, which must be the file the log recorded.
fn signers_ca(
    v: &mut Verification,
    bundle: &BundleDir,
    record: Option<(String, String, bool)>,
    ca_override: Option<&str>,
) -> Option<Certificate> {
    let Some((file, sha256, rehearsal)) = record else {
        v.fail(
            LOG_FILE,
            match ca_override {
                Some(_) => "the log records no signers CA (signers_ca) and no personal card, but \
                            --signers-ca says this ceremony's evidence is signed: the cards were \
                            stripped, or this is not the bundle you meant",
                None => "the bundle has personal cards or signatures but the log records no signers CA (signers_ca)",
            },
        );
        return None;
    };
    if file != SIGNERS_CA_FILE {
        v.fail(
            LOG_FILE,
            format!("the signers CA is recorded as {file:?}, not {SIGNERS_CA_FILE}"),
        );
        return None;
    }
    // The bundle's copy must be the file the log recorded, even when another CA is given.
    let bytes = match bundle.read(SIGNERS_CA_FILE, FILE_LIMIT) {
        Ok(bytes) => bytes,
        Err(e) => {
            v.fail(SIGNERS_CA_FILE, e.to_string());
            return None;
        }
    };
    let actual = sha256_hex(&bytes);
    let bundle_ok = v.check(
        actual == sha256,
        SIGNERS_CA_FILE,
        format!(
            "SHA-256 {} matches the log's signers_ca entry",
            short(&actual)
        ),
        format!("SHA-256 {actual} differs from {sha256} recorded in the log"),
    );
    let (pem, origin) = match ca_override {
        Some(pem) => (pem.as_bytes().to_vec(), "given with --signers-ca"),
        None if !bundle_ok => return None,
        None if rehearsal => (bytes, "the bundle's copy (REHEARSAL participants CA)"),
        None => (
            bytes,
            "the bundle's copy; compare it with your CA or pass --signers-ca FILE",
        ),
    };
    match Certificate::from_pem(&pem) {
        Ok(ca) => {
            v.pass(
                SIGNERS_CA_FILE,
                format!(
                    "signer certificates are checked against \"{}\", {origin}",
                    ca.tbs_certificate().subject()
                ),
            );
            Some(ca)
        }
        Err(e) => {
            v.fail(
                SIGNERS_CA_FILE,
                format!("the signers CA is not a PEM certificate: {e}"),
            );
            None
        }
    }
}

fn check_cards<'a>(
    v: &mut Verification,
    cards: &'a [PersonalCardRecord],
    carded: &BTreeSet<&str>,
    ca: &Certificate,
    registering: bool,
) -> BTreeMap<&'a str, Card> {
    let mut known = BTreeMap::new();
    for rec in cards {
        let who = &rec.person;
        let parsed = Certificate::from_pem(rec.certificate_pem.as_bytes())
            .ok()
            .and_then(|cert| {
                let der = cert.to_der().ok()?;
                let spki = cert
                    .tbs_certificate()
                    .subject_public_key_info()
                    .to_der()
                    .ok()?;
                Some(Card { cert, der, spki })
            });
        let Some(card) = parsed else {
            v.fail(
                LOG_FILE,
                format!("personal card of {who}: the certificate does not parse"),
            );
            continue;
        };
        if !carded.contains(who.as_str()) {
            v.fail(
                LOG_FILE,
                format!("a personal card is recorded for {who}, who has no card in script.toml"),
            );
            continue;
        }
        let hash = key_hash(&card.spki);
        if !v.check(
            hash == rec.key_hash && sha256_hex(&card.der) == rec.sha256_fingerprint,
            LOG_FILE,
            format!("personal card of {who}: certificate key hash {} as recorded", short(&hash)),
            format!("personal card of {who}: the certificate does not match its recorded key hash or fingerprint"),
        ) {
            continue;
        }
        match check_issued_by(&card.cert, ca) {
            Ok(()) => {
                v.pass(
                    LOG_FILE,
                    format!("personal card of {who}: certificate issued by the signers CA"),
                );
                known.insert(who.as_str(), card);
            }
            Err(e) => v.fail(LOG_FILE, format!("personal card of {who}: {e}")),
        }
    }
    for who in carded.iter().filter(|_| !registering) {
        if !cards.iter().any(|c| c.person == *who) {
            v.fail(
                LOG_FILE,
                format!(
                    "{who} has a card in script.toml but the log records no personal_card for them"
                ),
            );
        }
    }
    known
}

fn check_confirmations(
    v: &mut Verification,
    script: &Script,
    known: &BTreeMap<&str, Card>,
    confirmed: &BTreeMap<u64, Confirmed>,
    signed: &[(u64, SignedConfirmation)],
    explained: &[Explained],
    last: Option<u64>,
) {
    let mut good = 0;
    let mut bad = 0;
    let mut covered = BTreeSet::new();
    for (seq, s) in signed {
        let mut fail = |v: &mut Verification, why: String| {
            bad += 1;
            v.fail(
                LOG_FILE,
                format!(
                    "signed confirmation at entry {seq} ({}, step {}): {why}",
                    s.person, s.step
                ),
            );
        };
        let Some(c) = confirmed.get(&s.confirmed_seq) else {
            fail(
                v,
                format!("entry {} is not a confirmation", s.confirmed_seq),
            );
            continue;
        };
        if (&c.person, &c.role, &c.step) != (&s.person, &s.role, &s.step) {
            fail(v, "does not match the confirmation it names".into());
            continue;
        }
        let expected = confirmation_message_at(
            &script.ceremony.id,
            s.confirmed_seq,
            &c.hash,
            &c.time,
            &c.person,
            c.role,
            &c.step,
        );
        if s.message != expected {
            fail(
                v,
                "the signed message is not the one the confirmation entry defines".into(),
            );
            continue;
        }
        let Some(card) = known.get(s.person.as_str()) else {
            fail(v, "no verified personal card for this person".into());
            continue;
        };
        let oid = match s.signature_algorithm.as_str() {
            "ecdsa-with-SHA256" => ECDSA_WITH_SHA_256,
            "ecdsa-with-SHA384" => ECDSA_WITH_SHA_384,
            other => {
                fail(v, format!("unsupported signature algorithm {other}"));
                continue;
            }
        };
        let sig = hex::decode(&s.signature).unwrap_or_default();
        match verify_signature(&card.spki, &oid, s.message.as_bytes(), &sig) {
            Ok(()) if key_hash(&card.spki) == s.key_hash => {
                good += 1;
                covered.insert(s.confirmed_seq);
            }
            Ok(()) => fail(v, "the recorded key hash is not the card's".into()),
            Err(e) => fail(
                v,
                format!("the signature does not verify with the card certificate: {e}"),
            ),
        }
    }
    for (seq, Confirmed { person, step, .. }) in confirmed {
        let has_card = script
            .participants
            .iter()
            .any(|p| &p.name == person && p.card.is_some());
        let why = explained
            .iter()
            .find(|e| e.record.confirmed_seq == *seq && e.record.person == *person);
        // The log's last entry of an unfinished run: its signature was the next thing to write.
        let awaited = last == Some(*seq);
        match (has_card && !covered.contains(seq) && !awaited, why) {
            (true, Some(e)) => v.warn(
                LOG_FILE,
                format!(
                    "the confirmation at entry {seq} by {person} (step {step}) is not signed: \
                     {} (confirmation_unsigned at entry {}); the ceremony aborted right after",
                    e.record.reason, e.seq
                ),
            ),
            (true, None) => {
                bad += 1;
                v.fail(LOG_FILE, format!("the confirmation at entry {seq} by {person} (step {step}) has no valid card signature"));
            }
            (false, Some(e)) => {
                bad += 1;
                v.fail(
                    LOG_FILE,
                    format!(
                        "entry {}: confirmation_unsigned names the confirmation at entry {seq} \
                         by {person}, which is signed or needs no signature",
                        e.seq
                    ),
                );
            }
            (false, None) => {}
        }
    }
    if bad == 0 {
        v.pass(
            LOG_FILE,
            format!("all {good} confirmations by carded participants are signed and verify with their card certificates"),
        );
    }
}

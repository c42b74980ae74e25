//! Personal cards in report.pdf: the "Personal cards" section, the mark of a card-signed confirmation
//! in the step transcript, and who must sign the report digitally (the rule of
//! `script::signers`, applied to what report.json holds).

use super::layout::{Layout, BODY};
use super::metrics::Face;
use super::sections::key_hash_words;
use crate::evidence::bundle::{SIGNATURES_DIR, SIGNED_DOCUMENTS, SIGNERS_CA_FILE};
use crate::evidence::events::PersonalCardRecord;
use crate::evidence::report::{Confirmation, Report};
use crate::hsm::spki::grouped_hex;
use crate::script::signers::{
    every_carded_participant_signs, required_signers, signing_roles, Candidate, RequiredSigner,
};
use crate::x509::card::PARTICIPANTS_CA_CN;
use std::collections::BTreeSet;

/// Put after a confirmer in the step transcript when a personal card signed the confirmation.
pub const SIGNED_MARK: &str = "[signed]";

/// The signers the security level requires, from report.json's participants (script order, main role
/// first) and its personal cards: the same rule and file stems the ceremony and `keyrite verify` use.
pub fn required(report: &Report) -> Vec<RequiredSigner> {
    let people: Vec<Candidate<'_>> = report
        .participants
        .iter()
        .map(|p| Candidate {
            name: &p.name,
            roles: &p.roles,
            carded: report.personal_cards.iter().any(|c| c.person == p.name),
        })
        .collect();
    required_signers(report.ceremony.security_level, &people)
}

/// The detached signatures `signer` writes, as paths inside the evidence folder.
pub fn signature_files(signer: &RequiredSigner) -> Vec<String> {
    SIGNED_DOCUMENTS
        .iter()
        .map(|doc| format!("{SIGNATURES_DIR}/{}.{doc}.p7s", signer.stem))
        .collect()
}

/// The log sequence numbers of the `confirmed` entries a card signed.
pub struct SignedSet(BTreeSet<(u64, String)>);

impl SignedSet {
    pub fn of(report: &Report) -> Self {
        SignedSet(
            report
                .signed_confirmations
                .iter()
                .map(|s| (s.confirmed_seq, s.person.clone()))
                .collect(),
        )
    }

    pub fn signed(&self, c: &Confirmation) -> bool {
        self.0.contains(&(c.log_seq, c.person.clone()))
    }
}

/// The legend under the step transcript, when any confirmation was signed.
pub fn transcript_legend(report: &Report) -> Option<String> {
    if report.signed_confirmations.is_empty() {
        return None;
    }
    Some(format!(
        "{SIGNED_MARK} after a name: that person signed the confirmation with their personal card \
         ({} signed confirmations in all). The signature (over the step id, the log hash of the \
         confirmation and its time) is in audit.jsonl as a confirmation_signed entry; `keyrite verify` \
         checks each against the card certificate in the appendix \"Personal cards\".",
        report.signed_confirmations.len()
    ))
}

/// What the report may say about a card certificate's issuer.
fn issuer_line(report: &Report, card: &PersonalCardRecord) -> String {
    let rehearsal_ca = card.issuer.contains(PARTICIPANTS_CA_CN);
    match (rehearsal_ca, report.rehearsal) {
        (true, true) => format!(
            "{}\nREHEARSAL participants CA: a throw-away CA made by `keyrite rehearse`; it vouches \
             for nobody outside this rehearsal.",
            card.issuer
        ),
        (true, false) => format!(
            "{}\nWARNING: this issuer calls itself the keyrite REHEARSAL participants CA, but this \
             is not a rehearsal.",
            card.issuer
        ),
        (false, _) => card.issuer.clone(),
    }
}

/// The "Personal cards" section: each participant's signing card and its certificate.
pub fn section(l: &mut Layout, r: &Report) {
    // An appendix starts on its own page, after the signatures.
    l.new_page();
    l.heading("Appendix: personal cards");
    if r.personal_cards.is_empty() {
        l.para(
            Face::Regular,
            BODY,
            "No participant had a personal card: no confirmation was signed, and nobody signs this \
             report digitally.",
        );
        return;
    }
    l.para(
        Face::Regular,
        8.5,
        &format!(
            "Each card is a token holding the person's signing key and its X.509 certificate, \
             issued by the signers CA ({SIGNERS_CA_FILE}). With it the person signed their \
             confirmations and, where the security level requires, this report. The certificates \
             themselves (PEM) are in report.json and audit.jsonl."
        ),
    );
    for card in &r.personal_cards {
        // Keep one card's block on one page: heading, nine rows, the key hash and its words.
        l.ensure(230.0);
        l.subheading(&card.person);
        let t = &card.token;
        let signed = r
            .signed_confirmations
            .iter()
            .filter(|s| s.person == card.person)
            .count();
        l.key_values(&[
            ("Card token label", t.token_label.clone(), Face::Regular),
            ("Card token serial", t.serial.clone(), Face::Mono),
            (
                "Card make / model",
                format!(
                    "{} / {} (firmware {})",
                    t.manufacturer, t.model, t.firmware_version
                ),
                Face::Regular,
            ),
            ("Key CKA_ID", card.key_id.clone(), Face::Mono),
            ("Certificate subject", card.subject.clone(), Face::Regular),
            ("Certificate issuer", issuer_line(r, card), Face::Regular),
            (
                "Certificate SHA-256",
                grouped_hex(&card.sha256_fingerprint),
                Face::Mono,
            ),
            (
                "Confirmations signed",
                format!("{signed} (marked {SIGNED_MARK} in the step transcript)"),
                Face::Regular,
            ),
        ]);
        l.para(
            Face::Bold,
            BODY,
            "Card key hash (SHA-256 of the certificate's SubjectPublicKeyInfo):",
        );
        l.para(Face::Mono, 10.0, &grouped_hex(&card.key_hash));
        l.para(
            Face::Regular,
            BODY,
            &format!("PGP words: {}", key_hash_words(&card.key_hash)),
        );
        l.space(4.0);
    }
}

/// The signature page's part on digital signatures: the rule, and how to check a signature.
pub fn digital_rule(l: &mut Layout, r: &Report, signers: &[RequiredSigner]) {
    let level = r.ceremony.security_level;
    let roles: Vec<&str> = signing_roles(level).iter().map(|r| r.as_str()).collect();
    let mut who = format!("the holders of the roles {}", roles.join(" and "));
    if every_carded_participant_signs(level) {
        who.push_str(", and every participant with a personal card,");
    }
    l.subheading("Digital signatures");
    let rule = format!(
        "At security level {level}, {who} sign report.json and report.pdf with their personal \
         cards, as detached CMS files in {SIGNATURES_DIR}/ beside this report (a role holder \
         without a card cannot sign)."
    );
    if signers.is_empty() {
        let why = if r.personal_cards.is_empty() {
            "no participant had a personal card"
        } else {
            "no carded participant holds such a role"
        };
        l.para(
            Face::Regular,
            8.5,
            &format!("{rule} Here {why}, so this report carries no digital signature."),
        );
        return;
    }
    l.para(
        Face::Regular,
        8.5,
        &format!(
            "{rule} This PDF cannot contain its own signatures: the block of each of the {} \
             required signers below names their files. `keyrite verify` checks them all; \
             without keyrite, check each file with:",
            signers.len()
        ),
    );
    l.para(
        Face::Mono,
        7.5,
        &format!(
            "openssl cms -verify -binary -inform DER -in {SIGNATURES_DIR}/NAME.report.pdf.p7s \
             -content report.pdf -CAfile {SIGNERS_CA_FILE} -purpose any -out /dev/null"
        ),
    );
}

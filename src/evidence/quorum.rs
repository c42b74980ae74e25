//! Quorum log records (split, card presented / refused, activation, health check, retirement) and how
//! they fill the report's quorum section. No record ever holds a share, the secret or a PIN.

use super::report::{QuorumCard, QuorumReport};
use serde::{Deserialize, Serialize};

/// A custodian card as the log names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRef {
    pub holder: String,
    pub token_label: String,
    pub serial: String,
    pub bag: String,
}

/// `quorum_split`: a split (root ceremony) or a reshare wrote one share to each card and read every
/// card back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitRecord {
    /// "split" or "reshare".
    pub purpose: String,
    pub split_ceremony_id: String,
    /// The split's nonce, hex: shares of another split of the same ceremony are refused.
    pub nonce: String,
    pub threshold: u16,
    pub total: u16,
    /// The encoded Feldman commitments (public), hex, and their SHA-256.
    pub commitments: String,
    pub commitments_sha256: String,
    /// Cards in share-index order (index = position + 1), each read back and verified.
    pub cards: Vec<CardRef>,
    /// The HSM whose PINs were set from the secret (absent for a reshare, which keeps the PINs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsm: Option<HsmPinsSet>,
    /// For a reshare: the commitments of the share set this one replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces_commitments_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HsmPinsSet {
    pub token_label: String,
    pub serial: String,
    pub model: String,
    pub firmware_version: String,
    /// How the PINs were set: "C_SetPIN (user and SO)".
    pub method: String,
    /// Always "no person saw either PIN: both were derived inside keyrite and never shown".
    pub statement: String,
    /// Characters of each derived PIN, sized to the token's ulMinPinLen..ulMaxPinLen (32 when the
    /// token allows it; see docs/evidence-format.md, "Quorum").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_length: Option<usize>,
}

/// `quorum_pins`: where the HSM's PINs stand during a split, a reshare or the finishing of an
/// interrupted split. Written before each PIN change (write-ahead), after it, and on any failure,
/// so the log always says which PIN is now which. The values are "old" (the PIN before this
/// change), "derived" (the quorum-derived PIN of `commitments_sha256`) or "old or derived" (a
/// change was in flight).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinsRecord {
    /// "split", "reshare" or "finish".
    pub purpose: String,
    pub split_ceremony_id: String,
    /// The split whose derived PINs are being set.
    pub commitments_sha256: String,
    pub token_serial: String,
    /// "proved", "setting-so-pin", "so-pin-set", "setting-user-pin", "done" or "failed".
    pub stage: String,
    pub so_pin: String,
    pub user_pin: String,
    pub pin_length: usize,
    /// What the room must do now, for every stage but "proved" and "done".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `quorum_card_accepted` / `quorum_card_refused` / `share_checked`: one card at one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardEvent {
    #[serde(flatten)]
    pub card: CardRef,
    /// Who handed the card over (normally its holder).
    pub presented_by: String,
    /// The share index the card holds, once read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u16>,
    /// "accepted", "refused", "healthy", "unhealthy", "retired", "held no share".
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `quorum_activated` (M valid shares combined to the committed secret; the HSM login follows) and
/// `shares_checked` (the end of a health check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumSummary {
    pub split_ceremony_id: String,
    pub threshold: u16,
    pub total: u16,
    pub commitments_sha256: String,
    /// Holders whose cards were accepted (activation) or found healthy (health check).
    pub holders: Vec<String>,
}

/// `share_sealed`: a share sealed to a card's key-agreement key (medium "sealed"), written as an
/// envelope file, read back and opened with the card. Follows the card's `hsm_intent`; the
/// `quorum_split` that lists the card comes after every card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedRecord {
    #[serde(flatten)]
    pub card: CardRef,
    pub index: u16,
    pub split_ceremony_id: String,
    pub commitments_sha256: String,
    /// Where the envelope was written, and the SHA-256 of its bytes.
    pub envelope_file: String,
    pub envelope_sha256: String,
    /// "P-256 ECDH (CKM_ECDH1_DERIVE, CKD_NULL), HKDF-SHA256, AES-256-GCM".
    pub suite: String,
    pub card_key_label: String,
    /// CKA_ID of the card key, hex.
    pub card_key_id: String,
    /// SHA-256 of the card key's DER SubjectPublicKeyInfo (also in the envelope's header).
    pub card_key_sha256: String,
    /// True when keyrite generated the key on the card at this step.
    pub card_key_generated: bool,
    pub card_key_attributes: crate::hsm::KeyAttributes,
}

/// `sealed_share_retired`: how a sealed share was made unopenable at retirement (the card's
/// `share_destroyed` entry follows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedRetireRecord {
    #[serde(flatten)]
    pub card: CardRef,
    pub index: u16,
    pub envelope_file: String,
    pub card_key_label: String,
    /// The per-split card key was destroyed and read back as gone.
    pub card_key_destroyed: bool,
    /// The envelope file was overwritten and deleted.
    pub envelope_deleted: bool,
    pub method: String,
}

/// `shares_retired`: the old share set after a reshare; its commitments are retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetireRecord {
    pub split_ceremony_id: String,
    pub commitments_sha256: String,
    pub cards: Vec<CardRef>,
}

fn section(quorum: &mut Option<QuorumReport>) -> &mut QuorumReport {
    quorum.get_or_insert_with(|| QuorumReport {
        threshold: 0,
        total: 0,
        split_ceremony_id: String::new(),
        commitments_sha256: String::new(),
        cards: Vec::new(),
        retired_commitments_sha256: None,
    })
}

/// A split or reshare: the section now describes the new share set; earlier card entries stay.
pub fn apply_split(quorum: &mut Option<QuorumReport>, split: &SplitRecord) {
    let q = section(quorum);
    q.threshold = u32::from(split.threshold);
    q.total = u32::from(split.total);
    q.split_ceremony_id = split.split_ceremony_id.clone();
    q.commitments_sha256 = split.commitments_sha256.clone();
    let rows: Vec<QuorumCard> = split
        .cards
        .iter()
        .enumerate()
        .map(|(i, c)| QuorumCard {
            index: i as u32 + 1,
            holder: c.holder.clone(),
            token_label: c.token_label.clone(),
            serial: c.serial.clone(),
            bag: c.bag.clone(),
            result: "written".into(),
        })
        // A sealed card already has its row, from its `share_sealed` entry.
        .filter(|row| {
            !q.cards.iter().any(|s| {
                s.result.starts_with(SEALED)
                    && (s.index, &s.token_label, &s.serial)
                        == (row.index, &row.token_label, &row.serial)
            })
        })
        .collect();
    q.cards.extend(rows);
}

const SEALED: &str = "sealed";

/// A share sealed to a card's key: its row says so, with the envelope's and the card key's hashes.
pub fn apply_sealed(quorum: &mut Option<QuorumReport>, r: &SealedRecord) {
    section(quorum).cards.push(QuorumCard {
        index: u32::from(r.index),
        holder: r.card.holder.clone(),
        token_label: r.card.token_label.clone(),
        serial: r.card.serial.clone(),
        bag: r.card.bag.clone(),
        result: format!(
            "{SEALED}: envelope sha256 {}, card key {}",
            r.envelope_sha256, r.card_key_sha256
        ),
    });
}

/// Activation or health check: the split the cards belong to, unless a split came first.
pub fn apply_summary(quorum: &mut Option<QuorumReport>, s: &QuorumSummary) {
    let q = section(quorum);
    if q.commitments_sha256.is_empty() {
        q.threshold = u32::from(s.threshold);
        q.total = u32::from(s.total);
        q.split_ceremony_id = s.split_ceremony_id.clone();
        q.commitments_sha256 = s.commitments_sha256.clone();
    }
}

pub fn apply_card(quorum: &mut Option<QuorumReport>, e: &CardEvent) {
    let result = match &e.reason {
        Some(r) => format!("{}: {r}", e.result),
        None => e.result.clone(),
    };
    section(quorum).cards.push(QuorumCard {
        index: e.index.map(u32::from).unwrap_or(0),
        holder: e.card.holder.clone(),
        token_label: e.card.token_label.clone(),
        serial: e.card.serial.clone(),
        bag: e.card.bag.clone(),
        result,
    });
}

pub fn apply_retired(quorum: &mut Option<QuorumReport>, r: &RetireRecord) {
    section(quorum).retired_commitments_sha256 = Some(r.commitments_sha256.clone());
}

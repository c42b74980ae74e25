//! The checks a custodian card passes before its share counts (split out of quorum_cards.rs):
//! the split's commitments against a trusted pin, the share's index and Feldman verification, and
//! where the trusted pin comes from.

use super::actions::Context;
use super::cards::CardPurpose;
use super::quorum::{config, describe, split_ceremony};
use super::quorum_cards::{Refusal, Taken};
use super::quorum_sealed;
use super::rehearsal;
use crate::evidence::quorum::{CardRef, QuorumSummary};
use crate::hsm::{Hsm, HsmError};
use crate::quorum::{commitments_label, share_label, Commitments, Share};
use crate::script::{QuorumCard, QuorumConfig, ShareMedium};

/// What the cards of one step are checked against.
pub(super) struct Expect<'a> {
    pub split_ceremony: &'a str,
    /// The split's commitments hash from a trusted source: the script's `quorum.commitments_sha256`,
    /// or a rehearsal folder's record of the split. Cards holding other commitments are refused,
    /// each by name, before anything is combined or sent to the HSM.
    pub pinned_sha256: Option<String>,
    /// Commitments of the first accepted card (or pinned); later cards must carry the same.
    pub commitments: Option<Commitments>,
    pub indices: Vec<u16>,
    /// The cards accepted so far, as named to the room.
    pub accepted: Vec<String>,
}

impl<'a> Expect<'a> {
    /// Cards of the split `split_ceremony`, pinned to `pinned_sha256` when a trusted source gives
    /// it (issue 12: a backup's KEK split).
    pub(super) fn new(split_ceremony: &'a str, pinned_sha256: Option<String>) -> Self {
        Expect {
            split_ceremony,
            pinned_sha256,
            commitments: None,
            indices: Vec::new(),
            accepted: Vec::new(),
        }
    }
}

/// Read and check the share on an open, logged-in card: off the card (data object), or from the
/// card's envelope opened by the card (sealed). The commitments are checked before the share is
/// read or opened.
pub(super) fn read_share(
    ctx: &Context<'_>,
    hsm: &mut dyn Hsm,
    c: &QuorumCard,
    named: &CardRef,
    expect: &mut Expect<'_>,
) -> Result<Share, Refusal> {
    let card = describe(named);
    let hsm_err = |e: HsmError| Refusal::Card(format!("{card}: {e}"));
    let id = expect.split_ceremony;
    let (commitments, sealed) =
        if c.medium == ShareMedium::Sealed {
            let Some(held) = quorum_sealed::held(ctx, c, named, id)? else {
                return Err(Refusal::Card(format!(
                "{card} is a sealed card, and its share envelope for ceremony \"{id}\" is not in \
                 the envelope folder ({}); bring the envelope that travels with the card",
                quorum_sealed::envelope_dir(ctx)
                    .map(|d| quorum_sealed::envelope_path(&d, id, c).display().to_string())
                    .unwrap_or_else(|e| e)
            )));
            };
            (held.commitments().clone(), Some(held))
        } else {
            (card_commitments(hsm, &card, id)?, None)
        };
    check_commitments(&card, id, &commitments, expect)?;
    let share = match sealed {
        Some(held) => held.open(hsm, named)?,
        None => {
            let Some(bytes) = hsm.read_data(&share_label(id)).map_err(hsm_err)? else {
                return Err(Refusal::Card(format!(
                    "{card} has the split's commitments but no share object"
                )));
            };
            Share::decode(&bytes).map_err(|e| Refusal::Card(format!("{card}: {e}")))?
        }
    };
    check_share(&card, share, commitments, expect)
}

/// The commitments object on a data-object card.
fn card_commitments(hsm: &mut dyn Hsm, card: &str, id: &str) -> Result<Commitments, Refusal> {
    let hsm_err = |e: HsmError| Refusal::Card(format!("{card}: {e}"));
    let Some(stored) = hsm.read_data(&commitments_label(id)).map_err(hsm_err)? else {
        let held = hsm.data_labels().unwrap_or_default();
        let held = if held.is_empty() {
            "no keyrite share at all".to_string()
        } else {
            format!("only {}", held.join(", "))
        };
        return Err(Refusal::Card(format!(
            "{card} holds no share of ceremony \"{id}\" ({held}); it is not a card of this quorum"
        )));
    };
    Commitments::decode(&stored).map_err(|e| {
        Refusal::Card(format!(
            "{card}: the commitments on the card are unusable: {e}"
        ))
    })
}

/// The card's commitments against the trusted pin (or the cards accepted before).
fn check_commitments(
    card: &str,
    id: &str,
    commitments: &Commitments,
    expect: &Expect<'_>,
) -> Result<(), Refusal> {
    if commitments.split.ceremony_id != id {
        return Err(Refusal::Card(format!(
            "{card} holds a split made by ceremony \"{}\", not by \"{id}\"",
            commitments.split.ceremony_id
        )));
    }
    let sha = commitments.sha256_hex();
    match (&expect.pinned_sha256, &expect.commitments) {
        (Some(pinned), _) if !sha.eq_ignore_ascii_case(pinned) => {
            return Err(Refusal::Card(format!(
                "{card} holds commitments {sha}, but this split's are {pinned}: the card is from another split (a foreign, old or forged share set); it was not used"
            )));
        }
        // No trusted pin: a disagreement cannot say which card is genuine, so none is used.
        (None, Some(known)) if known != commitments => {
            return Err(Refusal::Group(format!(
                "{card} holds split {sha}, but {} hold split {}: the cards disagree and, without \
                 quorum.commitments_sha256 in the script, keyrite cannot tell which split is genuine — none \
                 of these cards was used and the HSM was not touched; put the split's commitments_sha256 \
                 (from its report) into the script's [quorum] section",
                expect.accepted.join(", "),
                known.sha256_hex()
            )));
        }
        _ => {}
    }
    Ok(())
}

/// Index range, a copied share, Feldman; then the card counts.
fn check_share(
    card: &str,
    share: Share,
    commitments: Commitments,
    expect: &mut Expect<'_>,
) -> Result<Share, Refusal> {
    if share.index == 0 || share.index > commitments.total {
        return Err(Refusal::Card(format!(
            "{card}: share index {} is outside 1..={}",
            share.index, commitments.total
        )));
    }
    if expect.indices.contains(&share.index) {
        return Err(Refusal::Card(format!(
            "{card}: share index {} was already presented on another card (a copied share)",
            share.index
        )));
    }
    commitments
        .verify(&share)
        .map_err(|e| Refusal::Card(format!("{card}: {e}")))?;
    expect.indices.push(share.index);
    expect.accepted.push(card.to_string());
    expect.commitments.get_or_insert(commitments);
    Ok(share)
}

/// The split's commitments from a trusted source. A rehearsal uses its folder's record of the split
/// (the script cannot know a throw-away split's commitments); a run uses the script's pin.
fn trusted_pin(
    ctx: &Context<'_>,
    q: &QuorumConfig,
    split: &str,
    purpose: CardPurpose,
) -> Result<Option<String>, String> {
    if ctx.mode.rehearsal {
        let rec = rehearsal::recorded_split(split).map_err(|e| e.to_string())?;
        if let Some(rec) = rec {
            if purpose != CardPurpose::Retirement {
                if let Some(new) = &rec.replaced_by {
                    return Err(format!(
                        "split {} of \"{split}\" was replaced by a reshare (new commitments {new}): its shares no longer \
                         activate the HSM and are refused before any card is read or any HSM login — use the new cards",
                        rec.commitments_sha256
                    ));
                }
                if rec.stage != "done" {
                    return Err(format!(
                        "split {} of \"{split}\" stopped during its PIN change (SO PIN {}, user PIN {}): finish it \
                         first with a split_activation step (docs/operator-guide.md, \"Finishing an interrupted split\")",
                        rec.commitments_sha256, rec.so_pin, rec.user_pin
                    ));
                }
            }
            return Ok(Some(rec.commitments_sha256));
        }
    }
    Ok(q.commitments_sha256
        .as_ref()
        .map(|s| s.to_ascii_lowercase()))
}

pub(super) fn expect<'a>(
    ctx: &Context<'a>,
    purpose: CardPurpose,
) -> Result<(Expect<'a>, &'a [QuorumCard], u16), String> {
    let q = config(ctx)?;
    let split = split_ceremony(ctx, q);
    Ok((
        Expect {
            split_ceremony: split,
            pinned_sha256: trusted_pin(ctx, q, split, purpose)?,
            commitments: None,
            indices: Vec::new(),
            accepted: Vec::new(),
        },
        &q.cards,
        q.threshold,
    ))
}

/// The cards of `[quorum]`, checked against the split `sha` (finishing an interrupted split).
pub(super) fn expect_pinned<'a>(
    ctx: &Context<'a>,
    sha: &str,
) -> Result<(Expect<'a>, &'a [QuorumCard], u16), String> {
    let q = config(ctx)?;
    Ok((
        Expect {
            split_ceremony: split_ceremony(ctx, q),
            pinned_sha256: Some(sha.to_ascii_lowercase()),
            commitments: None,
            indices: Vec::new(),
            accepted: Vec::new(),
        },
        &q.cards,
        q.threshold,
    ))
}

pub(super) fn summary(expect: &Expect<'_>, holders: Vec<String>) -> Option<QuorumSummary> {
    let c = expect.commitments.as_ref()?;
    Some(QuorumSummary {
        split_ceremony_id: c.split.ceremony_id.clone(),
        threshold: c.threshold,
        total: c.total,
        commitments_sha256: c.sha256_hex(),
        holders,
    })
}

pub(super) fn holders(cards: &[QuorumCard], taken: &[(usize, Taken)]) -> Vec<String> {
    taken
        .iter()
        .map(|(i, _)| cards[*i].holder.clone())
        .collect()
}

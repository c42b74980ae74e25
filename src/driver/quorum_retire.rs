//! `retire_shares` after a reshare: each old card is read, its share checked to belong to the retired
//! split, destroyed, and read back as gone. A card that held nothing is recorded as such
//! (`share_absent`, "held no share"), never as retired.

use super::actions::{intent, Context, Performed};
use super::cards::CardPurpose;
use super::operator::Operator;
use super::pins::PinSource;
use super::quorum::{describe, scripted_ref};
use super::quorum_cards::{collect, expect, Refusal, Taken};
use super::quorum_sealed;
use super::{Opener, State};
use crate::evidence::events::Record;
use crate::evidence::quorum::{CardRef, RetireRecord};
use crate::hsm::{Hsm, HsmError};
use crate::quorum::{commitments_label, share_label, Commitments, Share};
use crate::script::ShareMedium;

/// Retirement of one card: check that its share belongs to the retired split, destroy it, and read
/// back that nothing of it remains. A card without the split's objects held nothing to retire.
fn retire_one(hsm: &mut dyn Hsm, named: &CardRef, id: &str, sha: &str) -> Result<Taken, Refusal> {
    let card = describe(named);
    let err = |e: HsmError| Refusal::Card(format!("{card}: {e}"));
    let (sl, cl) = (share_label(id), commitments_label(id));
    let stored = hsm.read_data(&cl).map_err(err)?;
    let share = hsm.read_data(&sl).map_err(err)?;
    let (stored, share) = match (stored, share) {
        (None, None) => return Ok(Taken::Empty),
        (Some(c), Some(s)) => (c, s),
        _ => {
            return Err(Refusal::Card(format!(
                "{card} holds only half of a share of \"{id}\" (share or commitments missing); nothing was destroyed — have the security officer inspect the card"
            )))
        }
    };
    let commitments = Commitments::decode(&stored)
        .map_err(|e| Refusal::Card(format!("{card}: the commitments are unusable: {e}")))?;
    let share = Share::decode(&share).map_err(|e| Refusal::Card(format!("{card}: {e}")))?;
    if !commitments.sha256_hex().eq_ignore_ascii_case(sha) {
        return Err(Refusal::Card(format!(
            "{card} holds a share of split {}, not of the retired split {sha}; nothing was destroyed",
            commitments.sha256_hex()
        )));
    }
    commitments
        .verify(&share)
        .map_err(|e| Refusal::Card(format!("{card}: {e}; nothing was destroyed")))?;
    for label in [&sl, &cl] {
        hsm.destroy_data(label).map_err(err)?;
    }
    // Proof of destruction: the card, read again, holds neither object.
    for label in [&sl, &cl] {
        if hsm.read_data(label).map_err(err)?.is_some() {
            return Err(Refusal::Card(format!(
                "{card} still holds \"{label}\" after C_DestroyObject; the share is NOT retired"
            )));
        }
    }
    Ok(Taken::Destroyed(share.index))
}

pub(super) fn retire(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
) -> Performed {
    let (exp, cards, _) = match expect(ctx, CardPurpose::Retirement) {
        Ok(x) => x,
        Err(why) => return Ok(Err(why)),
    };
    let id = exp.split_ceremony.to_string();
    // The retired split: the one the activation before combined, else the trusted pin.
    let activated = state
        .quorum
        .as_ref()
        .map(|(_, c)| c)
        .filter(|c| c.split.ceremony_id == id)
        .map(Commitments::sha256_hex);
    let Some(old_sha) = exp.pinned_sha256.clone().or(activated) else {
        return Ok(Err(format!(
            "retire_shares needs the retired split's commitments: set quorum.commitments_sha256 to split \"{id}\"'s (from its report); nothing was destroyed"
        )));
    };
    let step_ctx = ctx;
    let (taken, _) = collect(
        state,
        ctx,
        operator,
        pins,
        opener,
        cards,
        CardPurpose::Retirement,
        cards.len(),
        |state, hsm, card, named| {
            let sealed = card.medium == ShareMedium::Sealed;
            intent(
                state,
                step_ctx,
                if sealed {
                    "unseal_share"
                } else {
                    "destroy_share"
                },
                format!(
                    "old share of \"{id}\" (split {old_sha}) on {}{}",
                    describe(named),
                    if sealed {
                        ": destroy the card's per-split key, delete the envelope"
                    } else {
                        ""
                    }
                ),
            )?;
            if !sealed {
                return Ok(retire_one(hsm, named, &id, &old_sha));
            }
            match quorum_sealed::retire(step_ctx, hsm, card, named, &id, &old_sha) {
                Ok(Some((index, rec))) => {
                    state.record(Some(step_ctx.step.id.clone()), vec![], &rec)?;
                    Ok(Ok(Taken::Destroyed(index)))
                }
                Ok(None) => Ok(Ok(Taken::Empty)),
                Err(r) => Ok(Err(r)),
            }
        },
    )?;
    let retired: Vec<CardRef> = taken
        .iter()
        .filter(|(_, t)| matches!(t, Taken::Destroyed(_)))
        .map(|(i, _)| scripted_ref(&cards[*i]))
        .collect();
    let empty: Vec<String> = taken
        .iter()
        .filter(|(_, t)| matches!(t, Taken::Empty))
        .map(|(i, _)| describe(&scripted_ref(&cards[*i])))
        .collect();
    let missing: Vec<String> = cards
        .iter()
        .enumerate()
        .filter(|(i, _)| !taken.iter().any(|(t, _)| t == i))
        .map(|(_, c)| describe(&scripted_ref(c)))
        .collect();
    let rec = RetireRecord {
        split_ceremony_id: id,
        commitments_sha256: old_sha,
        cards: retired,
    };
    state.record(
        Some(ctx.step.id.clone()),
        vec![],
        &Record::SharesRetired(rec),
    )?;
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "old shares remain on: {} — they still combine to the old secret with M-1 others (though the HSM's PINs no longer derive from it); retire them in a witnessed follow-up",
            missing.join("; ")
        ));
    }
    if !empty.is_empty() {
        problems.push(format!(
            "held no share, so nothing was retired on: {} — where that share went is not known; record it as an incident",
            empty.join("; ")
        ));
    }
    if problems.is_empty() {
        Ok(Ok(()))
    } else {
        Ok(Err(problems.join("; ")))
    }
}

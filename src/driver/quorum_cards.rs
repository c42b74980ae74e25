//! Quorum steps where custodians present cards in any order: `activate_quorum` (M shares, combined
//! and checked against the commitment before any HSM login), `share_health_check` (every card checked
//! against the commitments, nothing combined) and `retire_shares` (old shares destroyed, and read back
//! as gone).
//!
//! The split's commitments come from a trusted source before any card counts: the script's
//! `quorum.commitments_sha256`, or a rehearsal folder's record of the split. A card holding other
//! commitments is refused by name, and never costs an HSM PIN try. Without a pin (allowed at medium
//! only), cards that disagree are refused as a group.
//!
//! Each card is checked before it counts, and each refusal names the card and holder: same card twice,
//! a second card from one person, a card presented by someone other than its holder, a wrong card PIN
//! (with the card's retry state), no share of this split, a damaged share (checksum), a share or
//! commitments of another ceremony or split, an index out of range or already presented, and Feldman
//! verification.

use super::actions::{login_hsm, open_hsm, Context, Performed};
use super::cards::{CardChoice, CardPresentation, CardPurpose, CardRequest};
use super::operator::{Notice, Operator};
use super::pins::PinSource;
use super::quorum::{describe, open_card, scripted_ref};
use super::quorum_checks::read_share;
pub(super) use super::quorum_checks::{expect, expect_pinned, holders, summary, Expect};
use super::quorum_pins::pin_length;
use super::{Opener, State};
use crate::evidence::events::Record;
use crate::evidence::quorum::{CardEvent, CardRef, QuorumSummary};
use crate::hsm::Hsm;
use crate::quorum::{self, Commitments, Secret, Share};
use crate::script::QuorumCard;

/// What one accepted card gave the step.
pub(super) enum Taken {
    Share(Box<Share>),
    /// Retirement: the share was destroyed and read back as gone.
    Destroyed(u16),
    /// Retirement: the card held no share of the split (nothing destroyed, not retired).
    Empty,
}

/// The cards accepted (by index into the step's cards), and why the step stopped early, if it did.
pub(super) type Collected = (Vec<(usize, Taken)>, Option<String>);

/// Why a presented card does not count.
pub(super) enum Refusal {
    /// This card is refused; others may still be presented.
    Card(String),
    /// Without pinned commitments the cards disagree: none of them can be trusted, the step ends.
    Group(String),
}

/// Ask for cards until `needed` are accepted or nobody presents another. `take` reads the card.
#[allow(clippy::too_many_arguments)]
pub(super) fn collect(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
    cards: &[QuorumCard],
    purpose: CardPurpose,
    needed: usize,
    mut take: impl FnMut(
        &mut State,
        &mut dyn Hsm,
        &QuorumCard,
        &CardRef,
    ) -> crate::error::Result<Result<Taken, Refusal>>,
) -> crate::error::Result<Collected> {
    let mut accepted: Vec<(usize, Taken)> = Vec::new();
    let mut by: Vec<String> = Vec::new();
    let mut refused: Vec<usize> = Vec::new();
    while accepted.len() < needed {
        let choices: Vec<CardChoice<'_>> = cards
            .iter()
            .enumerate()
            .map(|(i, c)| CardChoice {
                holder: &c.holder,
                label: c.token.label.as_deref().unwrap_or(""),
                bag: &c.bag,
                accepted: accepted.iter().any(|(a, _)| *a == i),
                refused: refused.contains(&i),
            })
            .collect();
        let request = CardRequest {
            step: &ctx.step.id,
            purpose,
            cards: &choices,
            accepted: accepted.len(),
            needed,
        };
        let (card, presented_by) = match operator.present_card(&request) {
            CardPresentation::NoMore => break,
            CardPresentation::Card { card, presented_by } if card < cards.len() => {
                (card, presented_by)
            }
            // An index outside the list is an operator defect: stop asking rather than loop.
            CardPresentation::Card { .. } => break,
        };
        // A typed presenter who is nobody in the script is never logged (it may be a mistyped PIN).
        let presented_by = participant_or_unrecognised(ctx, presented_by);
        let c = &cards[card];
        let named = scripted_ref(c);
        let precheck = if accepted.iter().any(|(a, _)| *a == card) {
            Some(format!(
                "{} was already presented at this step; the same card counts once",
                describe(&named)
            ))
        } else if by.contains(&presented_by) {
            Some(format!(
                "{presented_by} already presented a card at this step; {} is refused — each custodian presents only their own card",
                describe(&named)
            ))
        } else if ctx.script.participant(&c.holder).is_none() {
            // Item 7: a holder outside the room is not a participant; only those present present.
            Some(format!(
                "{} belongs to {}, who is not in the room (not a participant); only card holders present can present their card",
                describe(&named),
                c.holder
            ))
        } else if presented_by != c.holder {
            Some(format!(
                "{} belongs to {}, not to {presented_by}; each custodian presents only their own card",
                describe(&named),
                c.holder
            ))
        } else {
            None
        };
        if let Some(why) = precheck {
            refuse(state, ctx, operator, named, &presented_by, None, why)?;
            refused.push(card);
            continue;
        }
        let (mut hsm, named) = match open_card(ctx, c, pins, opener) {
            Ok(x) => x,
            Err((named, why)) => {
                refuse(state, ctx, operator, named, &presented_by, None, why)?;
                refused.push(card);
                continue;
            }
        };
        let result = take(state, hsm.as_mut(), c, &named);
        let _ = hsm.logout();
        match result? {
            Ok(taken) => {
                let index = match &taken {
                    Taken::Share(s) => Some(s.index),
                    Taken::Destroyed(i) => Some(*i),
                    Taken::Empty => None,
                };
                let (result, rec): (&str, fn(CardEvent) -> Record) = match (purpose, &taken) {
                    (_, Taken::Empty) => ("held no share", Record::ShareAbsent),
                    (CardPurpose::Activation, _) => ("accepted", Record::QuorumCardAccepted),
                    (CardPurpose::HealthCheck, _) => ("healthy", Record::ShareChecked),
                    (CardPurpose::Retirement, _) => ("retired", Record::ShareDestroyed),
                };
                let text = format!("{}: {result}", describe(&named));
                let event = CardEvent {
                    card: named,
                    presented_by: presented_by.clone(),
                    index,
                    result: result.into(),
                    reason: None,
                };
                state.record(
                    Some(ctx.step.id.clone()),
                    vec![presented_by.clone()],
                    &rec(event),
                )?;
                operator.notice(Notice::Info { text: &text });
                by.push(presented_by);
                accepted.push((card, taken));
            }
            Err(Refusal::Card(why)) => {
                refuse(state, ctx, operator, named, &presented_by, None, why)?;
                refused.push(card);
            }
            Err(Refusal::Group(why)) => {
                refuse(
                    state,
                    ctx,
                    operator,
                    named,
                    &presented_by,
                    None,
                    why.clone(),
                )?;
                return Ok((accepted, Some(why)));
            }
        }
    }
    Ok((accepted, None))
}

/// `name` if it is a participant's, else [`crate::engine::UNRECOGNISED`]: what reaches the log.
fn participant_or_unrecognised(ctx: &Context<'_>, name: String) -> String {
    if ctx.script.participants.iter().any(|p| p.name == name) {
        name
    } else {
        crate::engine::UNRECOGNISED.into()
    }
}

fn refuse(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    card: CardRef,
    presented_by: &str,
    index: Option<u16>,
    why: String,
) -> crate::error::Result<()> {
    operator.notice(Notice::Refused { reason: &why });
    let event = CardEvent {
        card,
        presented_by: presented_by.into(),
        index,
        result: "refused".into(),
        reason: Some(why),
    };
    state.record(
        Some(ctx.step.id.clone()),
        vec![presented_by.into()],
        &Record::QuorumCardRefused(event),
    )
}

/// Collect M cards of the split and combine their shares, each checked against the trusted
/// commitments (or, without a pin, against each other) and Feldman-verified; the secret is checked
/// against C_0. Nothing reaches the HSM here.
#[allow(clippy::too_many_arguments)]
pub(super) fn combine_cards(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
    mut exp: Expect<'_>,
    cards: &[QuorumCard],
    m: u16,
) -> crate::error::Result<Result<(Secret, Commitments), String>> {
    let need = usize::from(m);
    let (taken, group) = collect(
        state,
        ctx,
        operator,
        pins,
        opener,
        cards,
        CardPurpose::Activation,
        need,
        |_, hsm, c, named| {
            Ok(read_share(ctx, hsm, c, named, &mut exp).map(|s| Taken::Share(Box::new(s))))
        },
    )?;
    if let Some(why) = group {
        return Ok(Err(why));
    }
    if taken.len() < need {
        return Ok(Err(format!(
            "only {} of the {need} cards needed were accepted; the HSM was not touched — bring {} more custodian(s) with their cards",
            taken.len(),
            need - taken.len()
        )));
    }
    let who = holders(cards, &taken);
    let shares: Vec<Share> = taken
        .into_iter()
        .filter_map(|(_, t)| match t {
            Taken::Share(s) => Some(*s),
            Taken::Destroyed(_) | Taken::Empty => None,
        })
        .collect();
    let Some(commitments) = exp.commitments.clone() else {
        return Ok(Err("no commitments were read from the cards".into()));
    };
    // Combined in Zeroizing memory and checked against C_0 = G·secret: a wrong secret never
    // reaches C_Login, so the HSM's retry counter cannot be spent.
    let secret = match quorum::combine(&shares, &commitments) {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("{e}; the HSM was not touched"))),
    };
    drop(shares);
    if let Some(s) = summary(&exp, who) {
        state.record(
            Some(ctx.step.id.clone()),
            vec![],
            &Record::QuorumActivated(s),
        )?;
    }
    Ok(Ok((secret, commitments)))
}

pub(super) fn activate(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
) -> Performed {
    let (exp, cards, m) = match expect(ctx, CardPurpose::Activation) {
        Ok(x) => x,
        Err(why) => return Ok(Err(why)),
    };
    let (secret, commitments) =
        match combine_cards(state, ctx, operator, pins, opener, exp, cards, m)? {
            Ok(x) => x,
            Err(why) => return Ok(Err(why)),
        };
    let detail = format!(
        "module {}, token {} (quorum-derived PIN)",
        ctx.mode.module, ctx.mode.token
    );
    let mut hsm = match open_hsm(state, ctx, operator, opener, detail)? {
        Ok(h) => h,
        Err(why) => return Ok(Err(why)),
    };
    // The same length the split derived: a pure function of the token's PIN limits.
    let len = match pin_length(hsm.as_mut()) {
        Ok(l) => l,
        Err(why) => return Ok(Err(why)),
    };
    let (user_pin, _) = secret.hsm_pins(len);
    if let Err(why) = login_hsm(state, ctx, hsm, user_pin)? {
        return Ok(Err(why));
    }
    state.quorum = Some((secret, commitments));
    Ok(Ok(()))
}

pub(super) fn health_check(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
) -> Performed {
    let (mut exp, cards, m) = match expect(ctx, CardPurpose::HealthCheck) {
        Ok(x) => x,
        Err(why) => return Ok(Err(why)),
    };
    let (taken, group) = collect(
        state,
        ctx,
        operator,
        pins,
        opener,
        cards,
        CardPurpose::HealthCheck,
        cards.len(),
        |_, hsm, c, named| {
            Ok(read_share(ctx, hsm, c, named, &mut exp).map(|s| Taken::Share(Box::new(s))))
        },
    )?;
    let who = holders(cards, &taken);
    drop(taken);
    let missing: Vec<String> = cards
        .iter()
        .filter(|c| !who.contains(&c.holder))
        .map(|c| describe(&scripted_ref(c)))
        .collect();
    // Recorded even when no card was healthy: the script's split, M and N, and nobody healthy.
    let s = summary(&exp, who).unwrap_or_else(|| QuorumSummary {
        split_ceremony_id: exp.split_ceremony.to_string(),
        threshold: m,
        total: u16::try_from(cards.len()).unwrap_or(u16::MAX),
        commitments_sha256: exp.pinned_sha256.clone().unwrap_or_default(),
        holders: Vec::new(),
    });
    state.record(Some(ctx.step.id.clone()), vec![], &Record::SharesChecked(s))?;
    if let Some(why) = group {
        return Ok(Err(why));
    }
    if missing.is_empty() {
        Ok(Ok(()))
    } else {
        Ok(Err(format!(
            "not every card proved a valid share; not healthy or not presented: {}",
            missing.join("; ")
        )))
    }
}

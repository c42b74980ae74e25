//! Quorum steps where custodians present cards in any order: `activate_quorum` (M shares, combined
//! and checked against the commitment before any HSM login), `share_health_check` (every card checked
//! against the commitments, nothing combined) and `retire_shares` (old shares destroyed).
//!
//! Each card is checked before it counts, and each refusal names the card and holder: same card twice,
//! a second card from one person, a card presented by someone other than its holder, a wrong card PIN
//! (with the card's retry state), no share of this split, a damaged share (checksum), a share or
//! commitments of another ceremony or split, an index out of range or already presented, and Feldman
//! verification.

use super::actions::{intent, login_hsm, open_hsm, Context, Performed};
use super::cards::{CardChoice, CardPresentation, CardPurpose, CardRequest};
use super::operator::{Notice, Operator};
use super::pins::PinSource;
use super::quorum::{config, describe, open_card, scripted_ref, split_ceremony};
use super::{Opener, State};
use crate::evidence::events::Record;
use crate::evidence::quorum::{CardEvent, CardRef, QuorumSummary, RetireRecord};
use crate::hsm::{Hsm, HsmError};
use crate::quorum::{self, commitments_label, share_label, Commitments, Share};
use crate::script::QuorumCard;

/// What the cards of one step are checked against.
struct Expect<'a> {
    split_ceremony: &'a str,
    pinned_sha256: Option<&'a str>,
    /// Commitments of the first accepted card (or pinned); later cards must carry the same.
    commitments: Option<Commitments>,
    indices: Vec<u16>,
}

/// What one accepted card gave the step.
enum Taken {
    Share(Box<Share>),
    Destroyed,
}

/// Ask for cards until `needed` are accepted or nobody presents another. `take` reads the card.
#[allow(clippy::too_many_arguments)]
fn collect(
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
        &CardRef,
    ) -> crate::error::Result<Result<Taken, String>>,
) -> crate::error::Result<Vec<(usize, Taken)>> {
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
        let result = take(state, hsm.as_mut(), &named);
        let _ = hsm.logout();
        match result? {
            Ok(taken) => {
                let index = match &taken {
                    Taken::Share(s) => Some(s.index),
                    Taken::Destroyed => None,
                };
                let (result, rec): (&str, fn(CardEvent) -> Record) = match purpose {
                    CardPurpose::Activation => ("accepted", Record::QuorumCardAccepted),
                    CardPurpose::HealthCheck => ("healthy", Record::ShareChecked),
                    CardPurpose::Retirement => ("retired", Record::ShareDestroyed),
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
            Err(why) => {
                refuse(state, ctx, operator, named, &presented_by, None, why)?;
                refused.push(card);
            }
        }
    }
    Ok(accepted)
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

/// Read and check the share on an open, logged-in card.
fn read_share(
    hsm: &mut dyn Hsm,
    named: &CardRef,
    expect: &mut Expect<'_>,
) -> Result<Share, String> {
    let card = describe(named);
    let hsm_err = |e: HsmError| format!("{card}: {e}");
    let id = expect.split_ceremony;
    let Some(stored) = hsm.read_data(&commitments_label(id)).map_err(hsm_err)? else {
        let held = hsm.data_labels().unwrap_or_default();
        let held = if held.is_empty() {
            "no keyrite share at all".to_string()
        } else {
            format!("only {}", held.join(", "))
        };
        return Err(format!(
            "{card} holds no share of ceremony \"{id}\" ({held}); it is not a card of this quorum"
        ));
    };
    let commitments = Commitments::decode(&stored)
        .map_err(|e| format!("{card}: the commitments on the card are unusable: {e}"))?;
    if commitments.split.ceremony_id != id {
        return Err(format!(
            "{card} holds a split made by ceremony \"{}\", not by \"{id}\"",
            commitments.split.ceremony_id
        ));
    }
    let sha = commitments.sha256_hex();
    if let Some(pinned) = expect.pinned_sha256 {
        if !sha.eq_ignore_ascii_case(pinned) {
            return Err(format!(
                "{card} holds commitments {sha}, but the script names {pinned}: the card is from another split"
            ));
        }
    }
    if let Some(known) = &expect.commitments {
        if *known != commitments {
            return Err(format!(
                "{card} holds a share of a different split of \"{id}\" than the cards accepted before it (an old or foreign share set)"
            ));
        }
    }
    let Some(bytes) = hsm.read_data(&share_label(id)).map_err(hsm_err)? else {
        return Err(format!(
            "{card} has the split's commitments but no share object"
        ));
    };
    let share = Share::decode(&bytes).map_err(|e| format!("{card}: {e}"))?;
    if share.index == 0 || share.index > commitments.total {
        return Err(format!(
            "{card}: share index {} is outside 1..={}",
            share.index, commitments.total
        ));
    }
    if expect.indices.contains(&share.index) {
        return Err(format!(
            "{card}: share index {} was already presented on another card (a copied share)",
            share.index
        ));
    }
    commitments
        .verify(&share)
        .map_err(|e| format!("{card}: {e}"))?;
    expect.indices.push(share.index);
    expect.commitments.get_or_insert(commitments);
    Ok(share)
}

fn expect<'a>(ctx: &Context<'a>) -> Result<(Expect<'a>, &'a [QuorumCard], u16), String> {
    let q = config(ctx)?;
    Ok((
        Expect {
            split_ceremony: split_ceremony(ctx, q),
            pinned_sha256: q.commitments_sha256.as_deref(),
            commitments: None,
            indices: Vec::new(),
        },
        &q.cards,
        q.threshold,
    ))
}

fn summary(expect: &Expect<'_>, holders: Vec<String>) -> Option<QuorumSummary> {
    let c = expect.commitments.as_ref()?;
    Some(QuorumSummary {
        split_ceremony_id: c.split.ceremony_id.clone(),
        threshold: c.threshold,
        total: c.total,
        commitments_sha256: c.sha256_hex(),
        holders,
    })
}

fn holders(cards: &[QuorumCard], taken: &[(usize, Taken)]) -> Vec<String> {
    taken
        .iter()
        .map(|(i, _)| cards[*i].holder.clone())
        .collect()
}

pub(super) fn activate(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
) -> Performed {
    let (mut exp, cards, m) = match expect(ctx) {
        Ok(x) => x,
        Err(why) => return Ok(Err(why)),
    };
    let need = usize::from(m);
    let taken = collect(
        state,
        ctx,
        operator,
        pins,
        opener,
        cards,
        CardPurpose::Activation,
        need,
        |_, hsm, named| Ok(read_share(hsm, named, &mut exp).map(|s| Taken::Share(Box::new(s)))),
    )?;
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
            Taken::Destroyed => None,
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
    let detail = format!(
        "module {}, token {} (quorum-derived PIN)",
        ctx.mode.module, ctx.mode.token
    );
    let hsm = match open_hsm(state, ctx, opener, detail)? {
        Ok(h) => h,
        Err(why) => return Ok(Err(why)),
    };
    if let Err(why) = login_hsm(state, ctx, hsm, secret.user_pin())? {
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
    let (mut exp, cards, m) = match expect(ctx) {
        Ok(x) => x,
        Err(why) => return Ok(Err(why)),
    };
    let taken = collect(
        state,
        ctx,
        operator,
        pins,
        opener,
        cards,
        CardPurpose::HealthCheck,
        cards.len(),
        |_, hsm, named| Ok(read_share(hsm, named, &mut exp).map(|s| Taken::Share(Box::new(s)))),
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
        commitments_sha256: exp.pinned_sha256.unwrap_or_default().to_string(),
        holders: Vec::new(),
    });
    state.record(Some(ctx.step.id.clone()), vec![], &Record::SharesChecked(s))?;
    if missing.is_empty() {
        Ok(Ok(()))
    } else {
        Ok(Err(format!(
            "not every card proved a valid share; not healthy or not presented: {}",
            missing.join("; ")
        )))
    }
}

pub(super) fn retire(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
) -> Performed {
    let (exp, cards, _) = match expect(ctx) {
        Ok(x) => x,
        Err(why) => return Ok(Err(why)),
    };
    let id = exp.split_ceremony.to_string();
    let old_sha = match state.quorum.as_ref() {
        Some((_, c)) if c.split.ceremony_id == id => c.sha256_hex(),
        _ => exp.pinned_sha256.unwrap_or_default().to_string(),
    };
    let step_ctx = ctx;
    let taken = collect(
        state,
        ctx,
        operator,
        pins,
        opener,
        cards,
        CardPurpose::Retirement,
        cards.len(),
        |state, hsm, named| {
            intent(
                state,
                step_ctx,
                "destroy_share",
                format!("old share of \"{id}\" on {}", describe(named)),
            )?;
            let mut destroyed = 0;
            for label in [share_label(&id), commitments_label(&id)] {
                match hsm.destroy_data(&label) {
                    Ok(n) => destroyed += n,
                    Err(e) => return Ok(Err(format!("{}: {e}", describe(named)))),
                }
            }
            let _ = destroyed;
            Ok(Ok(Taken::Destroyed))
        },
    )?;
    let retired: Vec<CardRef> = taken
        .iter()
        .map(|(i, _)| scripted_ref(&cards[*i]))
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
    if missing.is_empty() {
        Ok(Ok(()))
    } else {
        Ok(Err(format!(
            "old shares remain on: {} — they still combine to the secret with M-1 others; retire them in a witnessed follow-up",
            missing.join("; ")
        )))
    }
}

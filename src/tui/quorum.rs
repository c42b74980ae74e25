//! The quorum screen's state and update rules: the driver's card request (`Operator::present_card`)
//! shown as k of M cards accepted, each card's holder, label, bag and result, and a picker for the
//! card the room presents next (and who presents it). No rule lives here: whether a card counts is
//! decided by the driver, which answers with a `Notice::Info` (accepted) or `Notice::Refused` (why).

use super::model::{DriverEvent, Model};
use crate::driver::cards::CardRequest;

/// What happened to one card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardState {
    /// Not presented yet.
    Pending,
    Accepted,
    /// Refused, with the reason in words for the room.
    Refused(String),
}

impl CardState {
    pub fn symbol(&self) -> &'static str {
        match self {
            CardState::Pending => "·",
            CardState::Accepted => "✓",
            CardState::Refused(_) => "✗",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRow {
    pub holder: String,
    /// The card's token label.
    pub label: String,
    /// The tamper-evident bag the card travels in.
    pub bag: String,
    pub state: CardState,
}

/// One card of the driver's request, owned so it crosses the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskedCard {
    pub holder: String,
    pub label: String,
    pub bag: String,
    pub accepted: bool,
    pub refused: bool,
}

/// The driver's [`CardRequest`], owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardAsk {
    pub step: String,
    /// What the cards are for, in words ("quorum activation", ...).
    pub purpose: String,
    pub cards: Vec<AskedCard>,
    pub accepted: usize,
    pub needed: usize,
}

impl CardAsk {
    pub fn of(request: &CardRequest<'_>) -> Self {
        CardAsk {
            step: request.step.to_string(),
            purpose: request.purpose.as_str().to_string(),
            cards: request
                .cards
                .iter()
                .map(|c| AskedCard {
                    holder: c.holder.to_string(),
                    label: c.label.to_string(),
                    bag: c.bag.to_string(),
                    accepted: c.accepted,
                    refused: c.refused,
                })
                .collect(),
            accepted: request.accepted,
            needed: request.needed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumView {
    pub step: String,
    pub purpose: String,
    /// k: the cards needed.
    pub threshold: usize,
    /// M: the cards listed.
    pub total: usize,
    /// In script order, which implies no order of presentation.
    pub cards: Vec<CardRow>,
    /// The driver waits for the room to present a card (or say no further card comes).
    pub asking: bool,
    /// The card under the cursor.
    pub cursor: usize,
    /// Choosing who presents a card that its holder does not: (card, cursor over participants).
    pub by: Option<(usize, usize)>,
    /// The card handed to the driver, waiting for its verdict.
    pub presented: Option<usize>,
    /// The driver's last refusal of a card already accepted (the same card twice), for the room.
    pub last_refusal: Option<String>,
}

impl QuorumView {
    pub fn accepted(&self) -> usize {
        self.cards
            .iter()
            .filter(|c| c.state == CardState::Accepted)
            .count()
    }

    /// One line for the room: how far the quorum is.
    pub fn summary(&self) -> String {
        let accepted = self.accepted();
        let status = if accepted >= self.threshold {
            "enough cards".to_string()
        } else {
            format!("{} more needed", self.threshold - accepted)
        };
        format!("{accepted} of {} accepted — {status}", self.threshold)
    }
}

/// The driver asks for the next card: show (or refresh) the quorum screen and take keys for it.
pub(super) fn ask(model: &mut Model, ask: CardAsk) {
    let previous = model.quorum.take().filter(|q| q.step == ask.step);
    let cards: Vec<CardRow> = ask
        .cards
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let known = previous.as_ref().and_then(|q| q.cards.get(i));
            let state = if c.accepted {
                CardState::Accepted
            } else if c.refused {
                match known.map(|k| &k.state) {
                    Some(CardState::Refused(why)) => CardState::Refused(why.clone()),
                    _ => CardState::Refused("refused (the reason is in the audit log)".into()),
                }
            } else {
                CardState::Pending
            };
            CardRow {
                holder: c.holder.clone(),
                label: c.label.clone(),
                bag: c.bag.clone(),
                state,
            }
        })
        .collect();
    let cursor = previous
        .as_ref()
        .map(|q| q.cursor)
        .filter(|&c| c < cards.len() && cards[c].state != CardState::Accepted)
        .or_else(|| cards.iter().position(|c| c.state == CardState::Pending))
        .unwrap_or(0);
    model.quorum = Some(QuorumView {
        step: ask.step,
        purpose: ask.purpose,
        threshold: ask.needed,
        total: cards.len(),
        cards,
        asking: true,
        cursor,
        by: None,
        presented: None,
        last_refusal: previous.and_then(|q| q.last_refusal),
    });
}

/// What the driver says after a card was presented: its verdict on that card. A new step or the
/// end of the ceremony closes the quorum screen.
pub(super) fn observe(model: &mut Model, event: &DriverEvent) {
    match event {
        DriverEvent::StepStarted { .. } => model.quorum = None,
        DriverEvent::Finished(_) => {
            if let Some(q) = model.quorum.as_mut() {
                q.asking = false;
                q.by = None;
            }
        }
        DriverEvent::Refused(reason) => {
            if let Some(q) = model.quorum.as_mut() {
                if let Some(card) = q.presented.take() {
                    // The same card twice: it stays accepted; the refusal shows below the list.
                    q.last_refusal = None;
                    match q.cards.get_mut(card) {
                        Some(row) if row.state == CardState::Accepted => {
                            q.last_refusal = Some(format!("card {}: {reason}", card + 1));
                        }
                        Some(row) => row.state = CardState::Refused(reason.clone()),
                        None => {}
                    }
                }
            }
        }
        DriverEvent::Info(text)
            if [": accepted", ": healthy", ": retired"]
                .iter()
                .any(|end| text.ends_with(end)) =>
        {
            if let Some(q) = model.quorum.as_mut() {
                if let Some(row) = q.presented.take().and_then(|c| q.cards.get_mut(c)) {
                    row.state = CardState::Accepted;
                }
            }
        }
        _ => {}
    }
}

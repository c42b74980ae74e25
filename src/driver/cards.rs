//! Card presentation for quorum steps: which custodian card is presented next.
//!
//! The driver calls [`super::operator::Operator::present_card`] with a [`CardRequest`] listing the
//! step's cards (in script order, which implies no order of presentation) and how many have been
//! accepted; the operator answers with the card now presented and who presents it, or
//! [`CardPresentation::NoMore`]. The driver then asks for the card's PIN (`PinSource`) and checks the
//! share. A TUI implements this as a card picker: any card not yet accepted, plus "no more cards".

use serde::Deserialize;

/// What the cards are presented for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardPurpose {
    /// Quorum login: M valid shares are needed.
    Activation,
    /// Share health check: every card is checked, nothing is combined.
    HealthCheck,
    /// Old shares are destroyed after a reshare.
    Retirement,
}

impl CardPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            CardPurpose::Activation => "quorum activation",
            CardPurpose::HealthCheck => "share health check",
            CardPurpose::Retirement => "retirement of the old shares",
        }
    }
}

/// One card the step may be given.
#[derive(Debug, Clone)]
pub struct CardChoice<'a> {
    pub holder: &'a str,
    /// The card's token label (as the script names it).
    pub label: &'a str,
    pub bag: &'a str,
    /// Already accepted in this step.
    pub accepted: bool,
    /// Presented and refused at least once in this step (it may be presented again).
    pub refused: bool,
}

#[derive(Debug, Clone)]
pub struct CardRequest<'a> {
    pub step: &'a str,
    pub purpose: CardPurpose,
    pub cards: &'a [CardChoice<'a>],
    /// Cards accepted so far in this step.
    pub accepted: usize,
    /// Cards needed for the step to succeed (M for activation, N otherwise).
    pub needed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardPresentation {
    /// `card` indexes [`CardRequest::cards`]; `presented_by` is the person handing it over.
    Card { card: usize, presented_by: String },
    /// Nobody presents a further card.
    NoMore,
}

/// `[[cards]]` in an answers file: the cards presented at a step, in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerCards {
    pub step: String,
    pub present: Vec<AnswerCard>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerCard {
    /// The card's token label.
    pub card: String,
    /// Who presents it; defaults to the card's holder.
    #[serde(default)]
    pub by: Option<String>,
}

/// The answer to a request from a queue of answers-file cards; `auto` presents the remaining cards
/// in script order, each by its holder.
pub fn from_queue(
    request: &CardRequest<'_>,
    queue: Option<&mut std::collections::VecDeque<AnswerCard>>,
    auto: bool,
) -> CardPresentation {
    if let Some(next) = queue.and_then(|q| q.pop_front()) {
        return match request.cards.iter().position(|c| c.label == next.card) {
            Some(card) => CardPresentation::Card {
                card,
                presented_by: next
                    .by
                    .unwrap_or_else(|| request.cards[card].holder.to_string()),
            },
            None => CardPresentation::NoMore,
        };
    }
    if auto {
        // Each card once: a refused card is not presented again, so a refusal ends the step.
        let next = request
            .cards
            .iter()
            .enumerate()
            .find(|(_, c)| !c.accepted && !c.refused);
        if let Some((card, c)) = next {
            return CardPresentation::Card {
                card,
                presented_by: c.holder.to_string(),
            };
        }
    }
    CardPresentation::NoMore
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn choices(accepted: [bool; 3]) -> Vec<CardChoice<'static>> {
        let names = [("Ann", "card-a"), ("Bo", "card-b"), ("Cy", "card-c")];
        names
            .iter()
            .zip(accepted)
            .map(|((holder, label), accepted)| CardChoice {
                holder,
                label,
                bag: "TEB-1",
                accepted,
                refused: false,
            })
            .collect()
    }

    fn request<'a>(cards: &'a [CardChoice<'a>]) -> CardRequest<'a> {
        CardRequest {
            step: "activate",
            purpose: CardPurpose::Activation,
            cards,
            accepted: 0,
            needed: 2,
        }
    }

    #[test]
    fn answers_present_in_their_order_and_by_the_named_person() {
        let cards = choices([false; 3]);
        let mut q: VecDeque<AnswerCard> = VecDeque::from(vec![
            AnswerCard {
                card: "card-c".into(),
                by: None,
            },
            AnswerCard {
                card: "card-a".into(),
                by: Some("Bo".into()),
            },
            AnswerCard {
                card: "card-x".into(),
                by: None,
            },
        ]);
        let r = request(&cards);
        assert_eq!(
            from_queue(&r, Some(&mut q), false),
            CardPresentation::Card {
                card: 2,
                presented_by: "Cy".into()
            }
        );
        assert_eq!(
            from_queue(&r, Some(&mut q), false),
            CardPresentation::Card {
                card: 0,
                presented_by: "Bo".into()
            }
        );
        // An unknown card ends the presentation rather than guessing.
        assert_eq!(from_queue(&r, Some(&mut q), true), CardPresentation::NoMore);
        assert_eq!(
            from_queue(&r, Some(&mut q), false),
            CardPresentation::NoMore
        );
    }

    #[test]
    fn auto_presents_the_next_card_not_yet_accepted() {
        let cards = choices([true, false, false]);
        assert_eq!(
            from_queue(&request(&cards), None, true),
            CardPresentation::Card {
                card: 1,
                presented_by: "Bo".into()
            }
        );
        let all = choices([true; 3]);
        assert_eq!(
            from_queue(&request(&all), None, true),
            CardPresentation::NoMore
        );
    }
}

//! Keys on the quorum screen while the driver waits for a card. Part of `update`: a key becomes the
//! driver's `CardPresentation`; whether the card counts is the driver's decision.

use super::model::{Command, Model};
use crate::driver::cards::CardPresentation;
use ratatui::crossterm::event::KeyCode;

/// The driver waits for the room to present a card.
pub(super) fn asking(model: &Model) -> bool {
    model.quorum.as_ref().is_some_and(|q| q.asking)
}

/// The ceremony is being aborted while a card is asked for: no further card comes.
pub(super) fn withdraw(model: &mut Model) -> Vec<Command> {
    match model.quorum.as_mut() {
        Some(q) if q.asking => {
            q.asking = false;
            q.by = None;
            vec![Command::Card(CardPresentation::NoMore)]
        }
        _ => Vec::new(),
    }
}

pub(super) fn key(model: &mut Model, code: KeyCode) -> Vec<Command> {
    let people = model.participants.len();
    let holders: Vec<Option<usize>> = match model.quorum.as_ref() {
        Some(q) => q
            .cards
            .iter()
            .map(|c| model.participants.iter().position(|p| p.name == c.holder))
            .collect(),
        None => return Vec::new(),
    };
    let Some(q) = model.quorum.as_mut() else {
        return Vec::new();
    };
    let cards = q.cards.len();
    // The second picker: who presents card `card`.
    if let Some((card, cursor)) = q.by {
        let chosen = match code {
            KeyCode::Esc => {
                q.by = None;
                return Vec::new();
            }
            KeyCode::Up => {
                q.by = Some((card, cursor.saturating_sub(1)));
                return Vec::new();
            }
            KeyCode::Down => {
                q.by = Some((card, (cursor + 1).min(people.saturating_sub(1))));
                return Vec::new();
            }
            KeyCode::Enter => cursor,
            KeyCode::Char(c) => match super::keys::pick_index(c) {
                Some(i) => i,
                None => return Vec::new(),
            },
            _ => return Vec::new(),
        };
        let Some(person) = model.participants.get(chosen).map(|p| p.name.clone()) else {
            return Vec::new();
        };
        return present(model, card, person);
    }
    let card = match code {
        KeyCode::Up => {
            q.cursor = q.cursor.saturating_sub(1);
            return Vec::new();
        }
        KeyCode::Down => {
            q.cursor = (q.cursor + 1).min(cards.saturating_sub(1));
            return Vec::new();
        }
        KeyCode::PageDown => return super::keys::scroll(model, 5, true),
        KeyCode::PageUp => return super::keys::scroll(model, 5, false),
        KeyCode::Char('n') => {
            q.asking = false;
            return vec![Command::Card(CardPresentation::NoMore)];
        }
        KeyCode::Char('b') if q.cursor < cards => {
            let holder = holders.get(q.cursor).copied().flatten().unwrap_or(0);
            q.by = Some((q.cursor, holder));
            return Vec::new();
        }
        KeyCode::Enter => q.cursor,
        KeyCode::Char(d @ '1'..='9') => (d as usize) - ('1' as usize),
        _ => return Vec::new(),
    };
    match q.cards.get(card).map(|c| c.holder.clone()) {
        Some(holder) => present(model, card, holder),
        None => Vec::new(),
    }
}

/// Hand card `card`, presented by `person`, to the driver and wait for its verdict.
fn present(model: &mut Model, card: usize, person: String) -> Vec<Command> {
    let Some(q) = model.quorum.as_mut() else {
        return Vec::new();
    };
    q.asking = false;
    q.by = None;
    q.cursor = card;
    q.presented = Some(card);
    vec![Command::Card(CardPresentation::Card {
        card,
        presented_by: person,
    })]
}

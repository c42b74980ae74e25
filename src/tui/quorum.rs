//! The quorum screen's state: k of M custodian cards presented, each card's holder and result.
//!
//! The quorum driver lives on another branch. To connect it, the driver tells the operator about
//! each card (e.g. a `Notice::Quorum { .. }` variant), and `super::proxy::TuiOperator::notice` turns
//! that into `DriverEvent::Quorum(Some(QuorumView { .. }))`; `DriverEvent::Quorum(None)` hides the
//! screen again. Nothing else in the TUI needs to change.

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
    /// The card's token label (and serial, if the driver wants it shown).
    pub label: String,
    pub state: CardState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumView {
    /// k: the cards needed.
    pub threshold: usize,
    /// M: the cards that exist.
    pub total: usize,
    pub cards: Vec<CardRow>,
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
            "quorum reached".to_string()
        } else {
            format!("{} more needed", self.threshold - accepted)
        };
        format!(
            "{accepted} of {} cards accepted ({} of {} needed) — {status}",
            self.cards.len(),
            self.threshold,
            self.total
        )
    }
}

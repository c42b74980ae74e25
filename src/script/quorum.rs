//! The `[quorum]` section: the custodians' cards that hold shares of the HSM's activation secret.

use super::model::TokenSelector;
use serde::{Deserialize, Serialize};

/// `[quorum]`: the current share set, and for a `reshare` ceremony the new one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QuorumConfig {
    /// M: shares needed to activate.
    pub threshold: u16,
    /// The ceremony whose split the cards hold. A script with a split_activation step makes the split
    /// itself and may leave this out (it is then this ceremony's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_ceremony: Option<String>,
    /// SHA-256 of the split's commitments, copied from the split ceremony's report. When set, cards
    /// whose commitments differ are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitments_sha256: Option<String>,
    /// PKCS#11 module of the card readers; defaults to `hsm.module`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    pub cards: Vec<QuorumCard>,
    /// The new share set of a `reshare` step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reshare: Option<QuorumSet>,
}

/// `[quorum.reshare]`: M and the cards of a new share set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QuorumSet {
    pub threshold: u16,
    pub cards: Vec<QuorumCard>,
}

/// One custodian card: who holds it, which token it is, and the tamper-evident bag it lives in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QuorumCard {
    pub holder: String,
    pub token: TokenSelector,
    pub bag: String,
}

impl QuorumConfig {
    /// The current set as a [`QuorumSet`] view.
    pub fn current(&self) -> QuorumSet {
        QuorumSet {
            threshold: self.threshold,
            cards: self.cards.clone(),
        }
    }
}

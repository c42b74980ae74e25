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
    /// Folder of the share envelopes of `medium = "sealed"` cards (written at a split or reshare,
    /// read at every later step). Needed in a run when any card is sealed; a rehearsal uses its
    /// --env folder's `envelopes/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope_dir: Option<String>,
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
    /// Where the share lives: on the card as a data object (default), or sealed to the card's EC
    /// key-agreement key in an envelope file that travels with the card (PIV-style cards).
    #[serde(default, skip_serializing_if = "ShareMedium::is_default")]
    pub medium: ShareMedium,
    /// Sealed cards: CKA_LABEL of an existing P-256 key-agreement key (e.g. a PIV card's key
    /// management key). Unset: keyrite generates a per-split key on the card, labelled
    /// `keyrite-seal:<split ceremony id>`, at the split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_label: Option<String>,
}

/// `medium` of a quorum card.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ShareMedium {
    /// A private CKO_DATA object on the card.
    #[default]
    DataObject,
    /// An envelope file sealed to the card's key-agreement key (CKM_ECDH1_DERIVE).
    Sealed,
}

impl ShareMedium {
    fn is_default(&self) -> bool {
        *self == ShareMedium::DataObject
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ShareMedium::DataObject => "data-object",
            ShareMedium::Sealed => "sealed",
        }
    }
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

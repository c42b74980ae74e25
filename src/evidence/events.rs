//! Log events written by the driver (the engine's own events are `engine::Event`). Both are tagged
//! by `kind`, with distinct kind names, so one log line parses as exactly one of them.

use super::quorum::{CardEvent, QuorumSummary, RetireRecord, SplitRecord};
use super::report::{ArtifactRecord, CertificateRecord};
use crate::hsm::{KeyAttributes, TokenIdentity};
use crate::script::{Action, Role, SecurityLevel};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantRecord {
    pub name: String,
    pub roles: Vec<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
}

/// How the room's confirmations reached keyrite: typed at the keyboard, read from an answers file
/// (whose SHA-256 is kept), or chosen by `rehearse --auto`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmationSource {
    /// "keyboard", "answers-file" or "auto".
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub id: String,
    pub title: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub name: String,
    /// Kernel operstate ("up", "down", "unknown", ...).
    pub operstate: String,
    /// IFF_UP set: administratively up.
    pub up: bool,
    pub loopback: bool,
}

/// The ceremony laptop as found before anything happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub utc_time: String,
    pub time_zone: String,
    pub interfaces: Vec<NetworkInterface>,
}

impl HostFacts {
    pub fn online_interfaces(&self) -> Vec<&str> {
        self.interfaces
            .iter()
            .filter(|i| i.up && !i.loopback)
            .map(|i| i.name.as_str())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// Always the first entry.
    CeremonyStarted {
        ceremony_id: String,
        name: String,
        #[serde(rename = "type")]
        kind: String,
        place: String,
        security_level: SecurityLevel,
        rehearsal: bool,
        confirmations: ConfirmationSource,
        script_file: String,
        script_sha256: String,
        tool: String,
        tool_version: String,
        participants: Vec<ParticipantRecord>,
        /// The script's steps in order, so the log alone says what was planned.
        steps: Vec<PlannedStep>,
    },
    Preflight {
        host: HostFacts,
        offline: bool,
        warnings: Vec<String>,
    },
    /// Written before every HSM mutation or session change (write-ahead); a result entry follows.
    HsmIntent {
        operation: String,
        detail: String,
    },
    HsmActivated {
        token: TokenIdentity,
    },
    HsmDeactivated {
        token_serial: String,
    },
    HsmFailed {
        operation: String,
        function: String,
        ckr: String,
        what: String,
    },
    KeyGenerated {
        label: String,
        algorithm: String,
        bits: u32,
        id: String,
        key_hash: String,
        attributes: KeyAttributes,
        public_key_file: String,
    },
    /// The key hash as shown to the room for reading aloud, before the confirmations.
    FingerprintPresented {
        key: String,
        key_hash: String,
    },
    CertificateSigned(CertificateRecord),
    ArtifactWritten(ArtifactRecord),
    /// Quorum (src/evidence/quorum.rs): a split or reshare wrote and verified every card.
    QuorumSplit(SplitRecord),
    /// A card presented at activation passed every check; its share counts.
    QuorumCardAccepted(CardEvent),
    /// A card presented at a quorum step was refused, with the reason.
    QuorumCardRefused(CardEvent),
    /// M shares combined to the committed secret; the HSM login follows.
    QuorumActivated(QuorumSummary),
    /// Health check of one card (result "healthy" or "unhealthy").
    ShareChecked(CardEvent),
    /// End of a health check.
    SharesChecked(QuorumSummary),
    /// An old share (and its commitments object) destroyed on a card.
    ShareDestroyed(CardEvent),
    /// The old share set's commitments are retired.
    SharesRetired(RetireRecord),
    /// A test message signed with a key and verified with its public key.
    TestMessageSigned {
        key: String,
        message: String,
        signature_algorithm: String,
        signature: String,
        verified: bool,
    },
    /// Always the last entry; binds report.json to the log.
    ReportWritten {
        report_sha256: String,
    },
}

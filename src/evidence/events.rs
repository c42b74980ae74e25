//! Log events written by the driver (the engine's own events are `engine::Event`). Both are tagged
//! by `kind`, with distinct kind names, so one log line parses as exactly one of them.

use super::quorum::{
    CardEvent, PinsRecord, QuorumSummary, RetireRecord, SealedRecord, SealedRetireRecord,
    SplitRecord,
};
use super::report::{ArtifactRecord, CertificateRecord};
use crate::hsm::{KeyAttributes, PinState, TokenIdentity};
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

/// One retry: what was asked again and why. Never holds what was typed (it may be a PIN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryRecord {
    /// "hsm_user_pin", "personal_card_pin" or "attachment".
    pub what: String,
    /// 1 for the first retry of this question at this step.
    pub attempt: u32,
    /// Why it is asked again, e.g. "C_Login returned CKR_PIN_INCORRECT" or "no such file".
    pub reason: String,
    /// False when keyrite refused the answer itself and the token never saw it.
    pub sent_to_token: bool,
    /// The token's user-PIN flags right after the refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_reports: Option<PinState>,
}

/// How an interrupted ceremony was found when it was taken up again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReopenRecord {
    /// "abort" or "resume".
    pub by: String,
    /// The last entry the interrupted keyrite wrote.
    pub after_seq: u64,
    pub after_time: String,
    /// The operation of an `hsm_intent` that has no result: what was in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<String>,
    /// A last line the interrupted keyrite never finished (a kill or a full disk mid-write),
    /// removed before going on: its length and SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torn_tail: Option<TornTail>,
    /// Files the interrupted keyrite wrote that the log never bound (a report.json written just
    /// before the kill), removed and written again: name and SHA-256 of each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discarded: Vec<DiscardedFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TornTail {
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscardedFile {
    pub file: String,
    pub sha256: String,
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
        /// The network HSM's interface the script allows up (`[hsm] network_interface`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hsm_interface: Option<String>,
    },
    /// Written before every HSM mutation or session change (write-ahead); a result entry follows.
    HsmIntent {
        operation: String,
        detail: String,
    },
    HsmActivated {
        token: TokenIdentity,
        /// The script's name for the token when it is not the primary (`[[hsms]]`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hsm: Option<String>,
    },
    /// What the token's driver warned of when it was opened, e.g. a serial another token of the
    /// module shares (the serial then proves nothing about which device this is).
    TokenWarning {
        token_serial: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hsm: Option<String>,
        warning: String,
    },
    HsmDeactivated {
        token_serial: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hsm: Option<String>,
    },
    HsmFailed {
        operation: String,
        function: String,
        ckr: String,
        what: String,
    },
    /// A mistake caught and asked again (a wrong PIN, a missing attachment): nothing failed.
    Retried(RetryRecord),
    /// `keyrite abort` or `keyrite resume` took up a ceremony whose keyrite stopped before its end.
    Reopened(ReopenRecord),
    /// `keyrite resume`: an object the in-flight intent named exists on the token although the
    /// interrupted run never logged it; it is adopted (the `key_generated` entry follows).
    FoundAfterInterruption {
        operation: String,
        label: String,
        key_hash: String,
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
    /// Where a key the ceremony generated or used lives: an RFC 7512 URI (token, serial, CKA_ID,
    /// label), ready for pkcs11 tools.
    KeyUri {
        label: String,
        key_hash: String,
        uri: String,
    },
    /// `store_on_token`: the certificate was written to the token as CKO_CERTIFICATE beside its key.
    CertificateStored {
        name: String,
        key: String,
        id: String,
    },
    /// A CRL signed in the HSM and verified with its issuer's certificate (`sign_crl`).
    CrlSigned(crate::x509::crl::CrlRecord),
    ArtifactWritten(ArtifactRecord),
    /// The CA that issued the participants' card certificates, copied into the bundle (`file`).
    /// `rehearsal`: the throw-away "participants CA" a rehearsal makes.
    SignersCa {
        file: String,
        sha256: String,
        subject: String,
        rehearsal: bool,
    },
    /// A participant's personal card as found before the first step: every signature of theirs must
    /// verify with this certificate.
    PersonalCard(PersonalCardRecord),
    /// A carded participant signed the confirmation they just gave. `message` is exactly the signed
    /// bytes (UTF-8; see docs/evidence-format.md, "Signed confirmations").
    ConfirmationSigned(SignedConfirmation),
    /// A carded participant's confirmation could not be signed (their card refused the PIN three
    /// times, or failed): the ceremony aborts right after this entry, and this person cannot sign
    /// the report. `keyrite verify` accepts the unsigned confirmation only with this record.
    ConfirmationUnsigned(UnsignedConfirmation),
    /// An `attach` step hashed a file kept outside the bundle (a recording, a scanned sheet).
    Attached {
        description: String,
        file_name: String,
        sha256: String,
        size: u64,
    },
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
    /// An old share (and its commitments object) destroyed on a card, and read back as gone.
    ShareDestroyed(CardEvent),
    /// A card presented for retirement held no share of the split: nothing was destroyed, and the
    /// card is not counted as retired (result "held no share").
    ShareAbsent(CardEvent),
    /// The old share set's commitments are retired.
    SharesRetired(RetireRecord),
    /// Where the HSM's PINs stand during a split, reshare or finish (write-ahead, result, failure).
    QuorumPins(PinsRecord),
    /// A share sealed to a card's key-agreement key, its envelope written, read back and opened.
    ShareSealed(SealedRecord),
    /// A sealed share made unopenable at retirement (card key destroyed and/or envelope deleted).
    SealedShareRetired(SealedRetireRecord),
    /// A test message signed with a key and verified with its public key.
    TestMessageSigned {
        key: String,
        message: String,
        signature_algorithm: String,
        signature: String,
        verified: bool,
        /// The signing key's hash (absent from logs written before it was recorded).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        key_hash: String,
    },
    /// A key from an earlier ceremony found after activation, with the hash it was pinned to.
    ExistingKeyFound(super::signing::ExistingKeyRecord),
    /// Issue 12: every object of a key destroyed, and the read-back that none remains.
    KeyDestroyed(super::destroy::KeyDestroyedRecord),
    /// What a step issuing a certificate to another CA will sign, shown before its confirmations.
    CertificatePresented(super::signing::PresentedRecord),
    /// A certificate issued to another CA (subordinate or cross-certificate).
    CaCertificateSigned(super::signing::IssuedCertificateRecord),
    /// Issue 12: a key wrapped under a trusted KEK split to cards (evidence/backup.rs).
    KeyBackedUp(super::backup::BackupRecord),
    /// Issue 12: a backup unwrapped into this token and proven to be the backed-up key.
    KeyRestored(super::backup::RestoreRecord),
    /// Issue 12: what a refused or interrupted restore had put on the target, destroyed.
    RestoreUndone(super::backup::RestoreUndone),
    /// Always the last entry; binds report.json to the log.
    ReportWritten {
        report_sha256: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalCardRecord {
    pub person: String,
    pub token: TokenIdentity,
    /// CKA_ID (hex) shared by the card's signing key and certificate.
    pub key_id: String,
    /// The card certificate, PEM.
    pub certificate_pem: String,
    /// SHA-256 of the certificate's DER SubjectPublicKeyInfo, lowercase hex.
    pub key_hash: String,
    pub subject: String,
    pub issuer: String,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub sha256_fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedConfirmation {
    pub person: String,
    pub role: Role,
    pub step: String,
    /// Sequence number of the `confirmed` entry this signature is about.
    pub confirmed_seq: u64,
    /// The signed bytes: canonical JSON of {ceremony_id, confirmed_hash, confirmed_seq, person,
    /// purpose, role, step, time}.
    pub message: String,
    /// e.g. "ecdsa-with-SHA256".
    pub signature_algorithm: String,
    /// DER signature, lowercase hex.
    pub signature: String,
    /// Key hash of the card that signed (see `personal_card`).
    pub key_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsignedConfirmation {
    pub person: String,
    pub step: String,
    /// Sequence number of the `confirmed` entry that stays unsigned.
    pub confirmed_seq: u64,
    /// Why the card did not sign, e.g. "C_Login: CKR_PIN_INCORRECT …" (never a PIN).
    pub reason: String,
}

/// `purpose` of a signed confirmation message.
pub const CONFIRMATION_PURPOSE: &str = "keyrite step confirmation v1";

/// The exact bytes a carded participant signs for the `confirmed` entry `entry`.
pub fn confirmation_message(
    ceremony_id: &str,
    entry: &super::log::AuditEntry,
    person: &str,
    role: Role,
    step: &str,
) -> String {
    confirmation_message_at(
        ceremony_id,
        entry.seq,
        &entry.hash,
        &entry.time,
        person,
        role,
        step,
    )
}

/// [`confirmation_message`] from the `confirmed` entry's seq, hash and time (verify keeps those,
/// not the entry).
pub fn confirmation_message_at(
    ceremony_id: &str,
    seq: u64,
    hash: &str,
    time: &str,
    person: &str,
    role: Role,
    step: &str,
) -> String {
    let value = serde_json::json!({
        "ceremony_id": ceremony_id,
        "confirmed_hash": hash,
        "confirmed_seq": seq,
        "person": person,
        "purpose": CONFIRMATION_PURPOSE,
        "role": role,
        "step": step,
        "time": time,
    });
    String::from_utf8_lossy(&super::log::canonical_json(&value)).into_owned()
}

//! The actions a step can carry out, and what each one demands of the room (dual control, the HSM).

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// People do something by hand (open a bag, check seals); keyrite records who confirmed.
    Manual,
    /// Record host, OS, time, time zone and network interfaces; refuse at high and very-high if online.
    Preflight,
    /// Open the PKCS#11 module, select the token, record its identity and log in (activation).
    ActivateHsm,
    /// Generate the key pair named by `key` inside the HSM.
    GenerateKey,
    /// Two people read the key hash aloud and confirm it matches the screen.
    ConfirmFingerprint,
    /// Build, lint, sign in the HSM and verify the certificate named by `certificate`.
    SignCertificate,
    /// Log out and close the HSM session.
    DeactivateHsm,
    /// Record the SHA-256 and size of a file kept outside the bundle (a video of the ceremony, a
    /// scanned sign-in sheet). The step's `attachment` says what the file is; its path is given at
    /// run time (`--attach STEP=PATH`, the answers file's `[attachments]`, or the prompt).
    Attach,
    /// Make the activation secret, set both HSM PINs from it and write one share to each card.
    SplitActivation,
    /// Quorum login: M custodians present their cards; the combined secret's PIN activates the HSM.
    ActivateQuorum,
    /// Each custodian proves their card holds a valid share (no reconstruction).
    ShareHealthCheck,
    /// After activate_quorum: split the same secret afresh to `[quorum.reshare]`.
    Reshare,
    /// Destroy the old shares on the old cards (after a reshare).
    RetireShares,
    /// Sign a test message with `key` and verify the signature with its public key.
    SignTestMessage,
    // Issue 11: certificates for other CAs, named by the step's `certificate` ([[ca_certificates]]).
    /// Issue a subordinate CA certificate from a PKCS#10 request.
    SignSubordinateCa,
    /// Issue a cross-certificate for another CA's certificate or public key.
    SignCrossCertificate,
    /// Build, sign in the HSM and verify the CRL named by `crl`.
    SignCrl,
    /// Issue 12: destroy every object (private, public, certificate) of the existing key `key`,
    /// then read back that none remains.
    DestroyKey,
    // Issue 12: backup and restore (driver/actions/backup.rs, restore.rs).
    /// Wrap the `[backup]` key under a fresh trusted KEK split M-of-N to the backup cards.
    BackupKey,
    /// Rebuild the KEK from M cards and unwrap the `[restore]` blob into the token.
    RestoreKey,
}

impl Action {
    /// Sensitive actions need dual control (design.md: keygen, activation, signing, backup, restore, destroy).
    pub fn is_sensitive(self) -> bool {
        matches!(
            self,
            Action::ActivateHsm
                | Action::GenerateKey
                | Action::SignCertificate
                | Action::SplitActivation
                | Action::ActivateQuorum
                | Action::Reshare
                | Action::RetireShares
                | Action::SignTestMessage
                | Action::SignSubordinateCa
                | Action::SignCrossCertificate
                | Action::SignCrl
                | Action::DestroyKey
                | Action::BackupKey
                | Action::RestoreKey
        )
    }

    /// Actions that open the HSM session and log in.
    pub fn is_activation(self) -> bool {
        matches!(self, Action::ActivateHsm | Action::ActivateQuorum)
    }

    /// Actions that talk to the HSM.
    pub fn uses_hsm(self) -> bool {
        matches!(
            self,
            Action::ActivateHsm
                | Action::GenerateKey
                | Action::SignCertificate
                | Action::DeactivateHsm
                | Action::SplitActivation
                | Action::ActivateQuorum
                | Action::Reshare
                | Action::SignTestMessage
                | Action::SignSubordinateCa
                | Action::SignCrossCertificate
                | Action::SignCrl
                | Action::DestroyKey
                | Action::BackupKey
                | Action::RestoreKey
        )
    }

    /// Issue 11: actions whose `certificate` names a `[[ca_certificates]]` entry.
    pub fn issues_ca_certificate(self) -> bool {
        matches!(
            self,
            Action::SignSubordinateCa | Action::SignCrossCertificate
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Manual => "manual",
            Action::Preflight => "preflight",
            Action::ActivateHsm => "activate_hsm",
            Action::GenerateKey => "generate_key",
            Action::ConfirmFingerprint => "confirm_fingerprint",
            Action::SignCertificate => "sign_certificate",
            Action::DeactivateHsm => "deactivate_hsm",
            Action::Attach => "attach",
            Action::SplitActivation => "split_activation",
            Action::ActivateQuorum => "activate_quorum",
            Action::ShareHealthCheck => "share_health_check",
            Action::Reshare => "reshare",
            Action::RetireShares => "retire_shares",
            Action::SignTestMessage => "sign_test_message",
            Action::SignSubordinateCa => "sign_subordinate_ca",
            Action::SignCrossCertificate => "sign_cross_certificate",
            Action::SignCrl => "sign_crl",
            Action::DestroyKey => "destroy_key",
            Action::BackupKey => "backup_key",
            Action::RestoreKey => "restore_key",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

//! The ceremony script as written by the PKI team (TOML, `format = 1`).
//!
//! Plain data only: parsing lives in `parse.rs`, the security-level policy in `policy.rs`.
//! Every struct denies unknown fields so that a typo is an error, never a silently ignored line.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The script format version this build understands.
pub const SCRIPT_FORMAT: u32 = 1;

pub use super::action::Action;
pub use super::keys::{HashAlgorithm, KeyAlgorithm, KeySpec};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Script format version; must equal [`SCRIPT_FORMAT`].
    pub format: u32,
    pub ceremony: CeremonyInfo,
    #[serde(default)]
    pub policy: PolicyOptions,
    pub participants: Vec<Participant>,
    /// The primary token.
    pub hsm: HsmConfig,
    /// More tokens in the same ceremony (tokens.rs): a backup HSM, a restore's target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hsms: Vec<super::tokens::NamedHsm>,
    #[serde(default)]
    pub keys: Vec<KeySpec>,
    #[serde(default)]
    pub certificates: Vec<CertificateProfile>,
    /// Certificates the script's keys issue to other CAs: subordinate CAs, cross-certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_certificates: Vec<super::signing::CaCertificate>,
    /// Certificate revocation lists signed by `sign_crl` steps (crl.rs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crls: Vec<super::crl::CrlProfile>,
    /// The M-of-N custodian quorum that holds the HSM's activation secret (script_quorum.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<super::quorum::QuorumConfig>,
    /// Issue 12: the key this ceremony backs up, and the KEK's custodians (backup.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<super::backup::BackupConfig>,
    /// Issue 12: a backup blob restored into this script's token (backup.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<super::backup::RestoreConfig>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CeremonyInfo {
    /// Stable identifier, e.g. "EXR-ROOT-2026-01". Goes into every log entry's context and the report.
    pub id: String,
    pub name: String,
    /// What kind of ceremony this is, e.g. "root-key-generation".
    #[serde(rename = "type")]
    pub kind: String,
    pub place: String,
    pub security_level: SecurityLevel,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityLevel {
    Medium,
    High,
    VeryHigh,
}

impl fmt::Display for SecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecurityLevel::Medium => "medium",
            SecurityLevel::High => "high",
            SecurityLevel::VeryHigh => "very-high",
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyOptions {
    /// Pairs of roles that one person may hold together, e.g. `[["security-officer", "custodian"]]`.
    /// A witness role can never be paired with an operational role, whatever this says.
    #[serde(default)]
    pub allow_role_pairs: Vec<[Role; 2]>,
}

/// The trusted and witnessing roles of a ceremony (design.md, "Who uses keyrite").
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    MasterOfCeremony,
    /// Crypto officer: operates the HSM.
    Operator,
    SecurityOfficer,
    Custodian,
    InternalWitness,
    IndependentWitness,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::MasterOfCeremony,
        Role::Operator,
        Role::SecurityOfficer,
        Role::Custodian,
        Role::InternalWitness,
        Role::IndependentWitness,
    ];

    /// Witnesses observe and attest; they never count towards dual control.
    pub fn is_witness(self) -> bool {
        matches!(self, Role::InternalWitness | Role::IndependentWitness)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::MasterOfCeremony => "master-of-ceremony",
            Role::Operator => "operator",
            Role::SecurityOfficer => "security-officer",
            Role::Custodian => "custodian",
            Role::InternalWitness => "internal-witness",
            Role::IndependentWitness => "independent-witness",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Participant {
    pub name: String,
    pub role: Role,
    /// A second role, only where `policy.allow_role_pairs` names the pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub also: Option<Role>,
    /// Organisation, e.g. the auditor's firm. Informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    /// The person's personal signing card (a PKCS#11 token holding a signing key and its X.509
    /// certificate under one CKA_ID): label, serial or RFC 7512 URI, as for `[hsm] token`. A carded
    /// participant signs every confirmation they give and, where the level requires, the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<TokenSelector>,
}

impl Participant {
    pub fn holds(&self, role: Role) -> bool {
        self.role == role || self.also == Some(role)
    }

    pub fn roles(&self) -> impl Iterator<Item = Role> + '_ {
        std::iter::once(self.role).chain(self.also)
    }

    /// A witness never counts as an operator, even if paired (policy forbids such a pair anyway).
    pub fn is_witness(&self) -> bool {
        self.roles().any(Role::is_witness)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    /// The name steps use for this token when the script has `[[hsms]]`; "primary" by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Path of the PKCS#11 module, e.g. "/usr/lib/softhsm/libsofthsm2.so".
    pub module: String,
    pub token: TokenSelector,
    /// How the token is activated, checked against its activation step (tokens.rs); the steps
    /// decide when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<super::tokens::Activation>,
    /// PKCS#11 module for the participants' personal cards (e.g. OpenSC's); defaults to `module`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cards_module: Option<String>,
    /// A network HSM's one network interface (e.g. "eth1"): the offline pre-flight allows it up, and
    /// records that it did, at every level; every other interface must still be down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface: Option<String>,
}

/// How to find the token. Slot ids change between processes, so they are not offered.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// RFC 7512 PKCS#11 URI; its `token` and `serial` attributes are honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.label, &self.serial, &self.uri) {
            (Some(l), _, _) => write!(f, "label \"{l}\""),
            (_, Some(s), _) => write!(f, "serial \"{s}\""),
            (_, _, Some(u)) => f.write_str(&redact_token_uri(u)),
            _ => f.write_str("(no token selector)"),
        }
    }
}

/// A token URI as it may be shown anywhere (diagnostics, logs, the report): everything from the first `?` on
/// is replaced by `?…`, because the query part of a PKCS#11 URI may carry `pin-value`, and so is the value
/// of a `pin-value` or `pin-source` misplaced in the path. The policy refuses such a URI, but a refused
/// script is still echoed in diagnostics, so the PIN must not leak there either.
pub fn redact_token_uri(uri: &str) -> String {
    let (path, query) = match uri.split_once('?') {
        Some((path, _query)) => (path, "?…"),
        None => (uri, ""),
    };
    let attributes: Vec<String> = path
        .split(';')
        .map(|attr| match (pin_attribute(attr), attr.split_once('=')) {
            (Some(_), Some((name, _pin))) => format!("{name}=…"),
            _ => attr.to_owned(),
        })
        .collect();
    format!("{}{query}", attributes.join(";"))
}

/// The name of a URI path attribute that carries a PIN (`pin-value`, `pin-source`, any letter case), if
/// `attr` is one. The first attribute still has the scheme in front: `pkcs11:pin-value=…`.
pub(crate) fn pin_attribute(attr: &str) -> Option<&str> {
    let name = attr.split_once('=').map_or(attr, |(n, _)| n);
    let name = name.rsplit(':').next().unwrap_or(name);
    (name.eq_ignore_ascii_case("pin-value") || name.eq_ignore_ascii_case("pin-source"))
        .then_some(name)
}

/// A key label or certificate name turned into a safe file name for the evidence bundle: anything but
/// `[A-Za-z0-9._-]` becomes `_`, and leading dots are trimmed so that no name makes a hidden file or `..`.
/// Several names can map to one stem (`a/b` and `a_b`); the policy refuses scripts where artifacts clash.
pub fn file_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    stem.trim_start_matches('.').to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CertificateProfile {
    /// Artifact name: the certificate is written to `artifacts/<name>.pem`.
    pub name: String,
    /// Label of the key (from `[[keys]]`) that the certificate certifies and that signs it.
    pub key: String,
    pub profile: CertificateKind,
    pub subject: Subject,
    /// Validity from the signing time; give this or `not_after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity_days: Option<u32>,
    /// Explicit notBefore, RFC 3339 UTC; defaults to the signing time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// Explicit notAfter, RFC 3339 UTC; "9999-12-31T23:59:59Z" is RFC 5280's "no well-defined
    /// expiration date" (written as GeneralizedTime 99991231235959Z).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// Signature hash; defaults to SHA-256 for P-256/RSA-3072 and SHA-384 for P-384/RSA-4096.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_hash: Option<HashAlgorithm>,
    #[serde(default)]
    pub extensions: ExtensionOptions,
    /// Also store the certificate on the token (CKO_CERTIFICATE, the key's CKA_ID and label).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub store_on_token: bool,
}

impl CertificateProfile {
    /// Where the evidence bundle stores the certificate, relative to the bundle root.
    pub fn file(&self) -> String {
        format!("artifacts/{}.pem", file_stem(&self.name))
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateKind {
    /// Self-signed root CA certificate (CA/B Forum root profile: subject C, O, CN).
    RootCa,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// ISO 3166-1 alpha-2 country code.
    #[serde(rename = "C")]
    pub country: String,
    /// stateOrProvinceName.
    #[serde(rename = "ST", default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// localityName.
    #[serde(rename = "L", default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    #[serde(
        rename = "postalCode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub postal_code: Option<String>,
    /// streetAddress.
    #[serde(rename = "street", default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(rename = "O")]
    pub organization: String,
    #[serde(rename = "CN")]
    pub common_name: String,
}

impl Subject {
    /// The attributes in the order the certificate carries them (CA/B BR 7.1.4.2: C, ST, L,
    /// postalCode, street, O, CN): (short name, value).
    pub fn attributes(&self) -> Vec<(&'static str, &str)> {
        let optional = [
            ("ST", &self.state),
            ("L", &self.locality),
            ("postalCode", &self.postal_code),
            ("street", &self.street),
        ];
        let mut out = vec![("C", self.country.as_str())];
        out.extend(
            optional
                .into_iter()
                .filter_map(|(n, v)| v.as_deref().map(|v| (n, v))),
        );
        out.push(("O", self.organization.as_str()));
        out.push(("CN", self.common_name.as_str()));
        out
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .attributes()
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// The root profile always carries critical basicConstraints (CA:TRUE), critical keyUsage
/// (keyCertSign, cRLSign), SKI and AKI. These options only add to that.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExtensionOptions {
    /// basicConstraints pathLenConstraint; absent means unlimited, as is usual for roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_len: Option<u8>,
    /// Add digitalSignature to keyUsage (for a root that also signs OCSP responses directly).
    #[serde(default)]
    pub digital_signature: bool,
    /// certificatePolicies: policy OIDs in dotted form (non-critical).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// A CPS URI qualifier added to each policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cps_uri: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique, stable id used in the log and the answers file, e.g. "generate-root-key".
    pub id: String,
    pub title: String,
    /// Plain-language instructions that a non-specialist can follow, read aloud in the room.
    pub instructions: String,
    pub action: Action,
    /// Roles whose holders may confirm this step. Witness roles here never count towards dual control.
    pub confirm_by: Vec<Role>,
    /// Distinct persons (non-witness, holding a `confirm_by` role) that must confirm.
    /// Defaults to 2 for sensitive actions and 1 otherwise; sensitive actions never accept fewer than 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_confirmations: Option<u32>,
    /// Witness roles that must each attest the step (an attestation, not a dual-control confirmation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub witnessed_by: Vec<Role>,
    /// For `generate_key` and `confirm_fingerprint`: the key label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// For `sign_certificate`: the certificate name; for `sign_subordinate_ca` and
    /// `sign_cross_certificate`: the `[[ca_certificates]]` name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// For `attach`: what the file is, e.g. "video recording of the whole ceremony".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<String>,
    /// The token the step acts on (a `[[hsms]]` name, or the primary's); the primary when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsm: Option<String>,
    /// For `sign_crl`: the CRL name (a `[[crls]]` entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<String>,
    /// Distinct confirmers the step needs per role, e.g. `{ operator = 2, security-officer = 1 }`; on
    /// top of `min_confirmations`, which it raises to the sum when that is larger.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub min_per_role: std::collections::BTreeMap<Role, u32>,
}

impl Step {
    /// Number of distinct operational confirmations this step needs.
    pub fn required_confirmations(&self) -> u32 {
        let floor = if self.action.is_sensitive() { 2 } else { 1 };
        let per_role: u32 = self.min_per_role.values().sum();
        self.min_confirmations
            .unwrap_or(floor)
            .max(floor)
            .max(per_role)
    }
}

impl Script {
    pub fn participant(&self, name: &str) -> Option<&Participant> {
        self.participants.iter().find(|p| p.name == name)
    }

    pub fn key(&self, label: &str) -> Option<&KeySpec> {
        self.keys.iter().find(|k| k.label == label)
    }

    pub fn certificate(&self, name: &str) -> Option<&CertificateProfile> {
        self.certificates.iter().find(|c| c.name == name)
    }

    pub fn ca_certificate(&self, name: &str) -> Option<&super::signing::CaCertificate> {
        self.ca_certificates.iter().find(|c| c.name == name)
    }

    /// Issue 12: is `label` the key `[backup]` backs up (generated wrappable by a trusted key)?
    pub fn backs_up(&self, label: &str) -> bool {
        self.backup.as_ref().is_some_and(|b| b.key == label)
    }

    pub fn crl(&self, name: &str) -> Option<&super::crl::CrlProfile> {
        self.crls.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_uri_never_displays_its_query() {
        let sel = TokenSelector {
            uri: Some("pkcs11:token=ca;serial=1?pin-value=1234".into()),
            ..Default::default()
        };
        assert_eq!(sel.to_string(), "pkcs11:token=ca;serial=1?…");
        assert_eq!(
            redact_token_uri("PKCS11:token=ca?pin-source=/tmp/pin"),
            "PKCS11:token=ca?…"
        );
        assert_eq!(redact_token_uri("pkcs11:token=ca"), "pkcs11:token=ca");
        assert_eq!(
            redact_token_uri("pkcs11:PIN-VALUE=1234;token=ca;pin-source=file:/p"),
            "pkcs11:PIN-VALUE=…;token=ca;pin-source=…"
        );
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("Root CA/2026"), "Root_CA_2026");
        assert_eq!(file_stem("../x"), "_x");
    }

    #[test]
    fn artifact_files_use_the_file_stem() {
        let key = KeySpec {
            label: "a/b".into(),
            algorithm: KeyAlgorithm::P256,
            existing: None,
            hsm: None,
        };
        assert_eq!(key.public_key_file(), "artifacts/a_b.pub.pem");
        let cert = CertificateProfile {
            name: "a_b.pub".into(),
            key: "a/b".into(),
            profile: CertificateKind::RootCa,
            subject: Subject {
                country: "DE".into(),
                organization: "O".into(),
                common_name: "CN".into(),
                ..Subject::default()
            },
            validity_days: Some(1),
            not_before: None,
            not_after: None,
            signature_hash: None,
            extensions: ExtensionOptions::default(),
            store_on_token: false,
        };
        assert_eq!(cert.file(), key.public_key_file());
    }
}

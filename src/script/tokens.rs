//! Several tokens in one ceremony (issue 12): `[hsm]` is the primary token, `[[hsms]]` names the
//! others (a backup HSM, the target of a restore). A step acts on the token its `hsm` names, or on
//! the primary; a key lives on the token its `[[keys]] hsm` names, or on the primary.

use super::model::{Script, Step, TokenSelector};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The primary token's name when `[hsm]` gives none.
pub const PRIMARY: &str = "primary";

/// One more token of the ceremony, beside the primary `[hsm]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NamedHsm {
    /// The name steps and keys use (`hsm = "backup"`), e.g. "backup".
    pub name: String,
    /// Path of the PKCS#11 module; may be the primary's.
    pub module: String,
    pub token: TokenSelector,
    /// How the token is logged in; its activation step must match.
    #[serde(default)]
    pub activation: Activation,
}

/// How a token is activated: by its user PIN (`activate_hsm`) or by the custodian quorum
/// (`activate_quorum`, or the `split_activation` that initialises it).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    #[default]
    Pin,
    Quorum,
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Activation::Pin => "pin",
            Activation::Quorum => "quorum",
        })
    }
}

/// One token of the script, primary or named, as the driver opens it.
#[derive(Debug, Clone, Copy)]
pub struct TokenRef<'a> {
    pub name: &'a str,
    pub module: &'a str,
    pub token: &'a TokenSelector,
    /// `None`: the primary without an `activation` line (its steps decide).
    pub activation: Option<Activation>,
    pub primary: bool,
}

impl Script {
    /// The primary token's name: `[hsm] name`, or "primary".
    pub fn primary_token(&self) -> &str {
        self.hsm.name.as_deref().unwrap_or(PRIMARY)
    }

    /// Every token of the script, the primary first.
    pub fn tokens(&self) -> Vec<TokenRef<'_>> {
        let primary = TokenRef {
            name: self.primary_token(),
            module: &self.hsm.module,
            token: &self.hsm.token,
            activation: self.hsm.activation,
            primary: true,
        };
        let named = self.hsms.iter().map(|h| TokenRef {
            name: &h.name,
            module: &h.module,
            token: &h.token,
            activation: Some(h.activation),
            primary: false,
        });
        std::iter::once(primary).chain(named).collect()
    }

    /// The token named `name`, primary or not.
    pub fn token_named(&self, name: &str) -> Option<TokenRef<'_>> {
        self.tokens().into_iter().find(|t| t.name == name)
    }

    /// True when the script names more than the primary token.
    pub fn has_several_tokens(&self) -> bool {
        !self.hsms.is_empty()
    }

    /// The name of the token a step acts on: its `hsm`, else the primary. Never guessed from the
    /// step's key: the policy asks for `hsm` where the key lives on another token, so the paper
    /// script says which token each step touches.
    pub fn step_token<'a>(&'a self, step: &'a Step) -> &'a str {
        step.hsm.as_deref().unwrap_or(self.primary_token())
    }

    /// The name of the token a `[[keys]]` entry lives on.
    pub fn key_token_of<'a>(&'a self, key: &'a super::model::KeySpec) -> &'a str {
        key.hsm.as_deref().unwrap_or(self.primary_token())
    }

    /// The name of the token the key labelled `label` lives on (the primary for unknown labels).
    pub fn key_token<'a>(&'a self, label: &str) -> &'a str {
        self.key(label)
            .map_or(self.primary_token(), |k| self.key_token_of(k))
    }

    /// The `[[keys]]` label a step works with: its `key`, or the key of the certificate, CA
    /// certificate or CRL it signs.
    pub fn step_key<'a>(&'a self, step: &'a Step) -> Option<&'a str> {
        if let Some(k) = step.key.as_deref() {
            return Some(k);
        }
        use super::model::Action;
        match step.action {
            Action::SignCertificate => step
                .certificate
                .as_deref()
                .and_then(|c| self.certificate(c))
                .map(|c| c.key.as_str()),
            a if a.issues_ca_certificate() => step
                .certificate
                .as_deref()
                .and_then(|c| self.ca_certificate(c))
                .map(|c| c.issuer_key.as_str()),
            Action::SignCrl => step
                .crl
                .as_deref()
                .and_then(|c| self.crl(c))
                .map(|c| c.key.as_str()),
            _ => None,
        }
    }

    /// The name a log record gives a token: `None` for the primary, so a one-token bundle reads
    /// as before.
    pub fn token_record_name(&self, name: &str) -> Option<String> {
        (name != self.primary_token()).then(|| name.to_string())
    }
}

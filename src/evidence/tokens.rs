//! Issue 12: what the report says about the ceremony's other tokens (`[[hsms]]`): each one's
//! identity as the token reported it at its activation.

use crate::hsm::TokenIdentity;
use serde::{Deserialize, Serialize};

/// A `[[hsms]]` token of the ceremony, by its script name, with its identity record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedTokenRecord {
    pub name: String,
    pub token: TokenIdentity,
}

/// The report's `hsm` (the primary) or its `tokens` entry takes the identity an `hsm_activated`
/// entry records; a token activated twice keeps its latest identity.
pub fn activated(
    primary: &mut Option<TokenIdentity>,
    named: &mut Vec<NamedTokenRecord>,
    name: Option<String>,
    token: TokenIdentity,
) {
    let Some(name) = name else {
        *primary = Some(token);
        return;
    };
    match named.iter_mut().find(|t| t.name == name) {
        Some(t) => t.token = token,
        None => named.push(NamedTokenRecord { name, token }),
    }
}

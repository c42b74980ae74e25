//! Which token a script means: a label, a serial or an RFC 7512 `pkcs11:` URI, matched against what
//! the module reports. Pure code (no cryptoki), so it is unit-tested without an HSM.

use crate::hsm::{HsmError, TokenIdentity};
use crate::script::TokenSelector;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Label,
    Serial,
    Manufacturer,
    Model,
    LibraryManufacturer,
    LibraryDescription,
    LibraryVersion,
}

impl Field {
    fn value(self, t: &TokenIdentity) -> &str {
        match self {
            Field::Label => &t.token_label,
            Field::Serial => &t.serial,
            Field::Manufacturer => &t.manufacturer,
            Field::Model => &t.model,
            Field::LibraryManufacturer => &t.library_manufacturer,
            Field::LibraryDescription => &t.library_description,
            Field::LibraryVersion => &t.library_version,
        }
    }
}

/// The token label a selector asks for, from `label` or a URI's `token=` (%-decoded), if any.
pub fn wanted_label(selector: &TokenSelector) -> Option<String> {
    let filter = TokenFilter::from_selector(selector).ok()?;
    filter
        .wanted
        .into_iter()
        .find(|(f, _)| *f == Field::Label)
        .map(|(_, v)| v)
}

/// Every condition a token must meet; the selector's label, serial and URI are AND-ed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenFilter {
    wanted: Vec<(Field, String)>,
}

impl TokenFilter {
    pub(crate) fn from_selector(selector: &TokenSelector) -> Result<Self, HsmError> {
        let mut wanted = Vec::new();
        if let Some(label) = &selector.label {
            wanted.push((Field::Label, label.clone()));
        }
        if let Some(serial) = &selector.serial {
            wanted.push((Field::Serial, serial.clone()));
        }
        if let Some(uri) = &selector.uri {
            wanted.extend(parse_uri(uri)?);
        }
        if wanted.is_empty() {
            return Err(HsmError::new(
                "select token",
                "the token selector names no label, serial or URI",
                "set [hsm.token] label, serial or uri in the script",
            ));
        }
        Ok(TokenFilter { wanted })
    }

    pub(crate) fn matches(&self, token: &TokenIdentity) -> bool {
        self.wanted.iter().all(|(field, want)| match field {
            // RFC 7512: "M" matches any M.x, "M.m" matches exactly.
            Field::LibraryVersion if !want.contains('.') => {
                token.library_version.split('.').next() == Some(want.as_str())
            }
            _ => field.value(token) == want,
        })
    }
}

/// The URI's path attributes that describe a token. Query attributes (pin-value, pin-source,
/// module-path, ...) are ignored: a PIN never comes from a script, and the module path is [hsm].module.
fn parse_uri(uri: &str) -> Result<Vec<(Field, String)>, HsmError> {
    let bad = |what: String| {
        HsmError::new(
            "select token",
            what,
            "write the URI as pkcs11:token=LABEL or pkcs11:serial=SERIAL (RFC 7512); \
             `p11tool --list-token-urls` or `pkcs11-tool -L` show the values",
        )
    };
    let rest = match uri.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("pkcs11:") => &uri[7..],
        _ => return Err(bad(format!("\"{}\" is not a pkcs11: URI", redact(uri)))),
    };
    let path = rest.split_once('?').map_or(rest, |(p, _query)| p);
    let mut out: Vec<(Field, String)> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for attr in path.split(';').filter(|a| !a.is_empty()) {
        let Some((name, raw)) = attr.split_once('=') else {
            return Err(bad(format!("URI attribute \"{attr}\" has no '='")));
        };
        if seen.contains(&name) {
            return Err(bad(format!("URI attribute \"{name}\" appears twice")));
        }
        seen.push(name);
        let field = match name {
            "token" => Field::Label,
            "serial" => Field::Serial,
            "manufacturer" => Field::Manufacturer,
            "model" => Field::Model,
            "library-manufacturer" => Field::LibraryManufacturer,
            "library-description" => Field::LibraryDescription,
            "library-version" => Field::LibraryVersion,
            // Object attributes say nothing about the token; vendor attributes are not ours.
            "object" | "type" | "id" => continue,
            n if n.starts_with("x-") => continue,
            "slot-id" | "slot-description" | "slot-manufacturer" => {
                return Err(bad(format!(
                    "URI attribute \"{name}\" is not supported: slots change between runs"
                )))
            }
            _ => return Err(bad(format!("URI attribute \"{name}\" is not known"))),
        };
        let value =
            percent_decode(raw).map_err(|e| bad(format!("URI attribute \"{name}\": {e}")))?;
        out.push((field, value));
    }
    if out.is_empty() {
        return Err(bad(format!("\"{}\" names no token attribute", redact(uri))));
    }
    Ok(out)
}

/// The URI without its query, which may hold a pin-value that must never reach a log or an error.
/// Never echo a URI's query or a PIN attribute (the script check refuses them, but the HSM layer is
/// also reached with selectors that did not come from a checked script).
fn redact(uri: &str) -> String {
    crate::script::redact_token_uri(uri)
}

/// The selector as an operator wrote it, minus any URI query.
fn selector_text(selector: &TokenSelector) -> String {
    let mut parts = Vec::new();
    if let Some(l) = &selector.label {
        parts.push(format!("label \"{l}\""));
    }
    if let Some(s) = &selector.serial {
        parts.push(format!("serial \"{s}\""));
    }
    if let Some(u) = &selector.uri {
        parts.push(redact(u));
    }
    parts.join(" and ")
}

fn percent_decode(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw
                .get(i + 1..i + 3)
                .ok_or("a '%' is not followed by two hex digits")?;
            let byte = u8::from_str_radix(hex, 16)
                .map_err(|_| format!("\"%{hex}\" is not a percent-encoded byte"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the decoded value is not UTF-8".to_string())
}

fn describe(tokens: &[&TokenIdentity]) -> String {
    if tokens.is_empty() {
        return "no initialised token".into();
    }
    tokens
        .iter()
        .map(|t| format!("label \"{}\" serial \"{}\"", t.token_label, t.serial))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The error when zero or several tokens match; it lists what the module shows so the operator can
/// fix the selector.
pub(crate) fn selection_error(
    selector: &TokenSelector,
    module_path: &str,
    seen: &[&TokenIdentity],
    matching: &[&TokenIdentity],
) -> HsmError {
    if matching.is_empty() {
        HsmError::new(
            "select token",
            format!(
                "no token matches {} in {module_path}; tokens seen: {}",
                selector_text(selector),
                describe(seen)
            ),
            "check that the HSM is connected and the token initialised, then correct \
             [hsm.token] in the script to one of the tokens listed",
        )
    } else {
        HsmError::new(
            "select token",
            format!(
                "{} tokens match {}: {}",
                matching.len(),
                selector_text(selector),
                describe(matching)
            ),
            "make [hsm.token] unambiguous, e.g. by adding the serial",
        )
    }
}

/// A warning when another token of the module reports the chosen token's serial (every tpm2-pkcs11
/// and NSS token reports 0000000000000000): the serial then proves nothing about which device this is.
pub(crate) fn duplicate_serial(all: &[&TokenIdentity], chosen: &TokenIdentity) -> Option<String> {
    let others: Vec<&str> = all
        .iter()
        .filter(|t| t.serial == chosen.serial && t.token_label != chosen.token_label)
        .map(|t| t.token_label.as_str())
        .collect();
    if others.is_empty() {
        return None;
    }
    Some(format!(
        "token \"{}\" shares its serial {} with {} other token(s) of this module (\"{}\"): the serial does \
         not tell them apart, so compare the token label and the device itself before going on",
        chosen.token_label,
        chosen.serial,
        others.len(),
        others.join("\", \"")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(label: &str, serial: &str) -> TokenIdentity {
        TokenIdentity {
            module_path: "/m.so".into(),
            library_description: "Implementation of PKCS11".into(),
            library_manufacturer: "SoftHSM".into(),
            library_version: "2.6".into(),
            token_label: label.into(),
            manufacturer: "SoftHSM project".into(),
            model: "SoftHSM v2".into(),
            serial: serial.into(),
            hardware_version: "2.6".into(),
            firmware_version: "2.6".into(),
        }
    }

    fn uri(u: &str) -> Result<TokenFilter, HsmError> {
        TokenFilter::from_selector(&TokenSelector {
            uri: Some(u.into()),
            ..Default::default()
        })
    }

    #[test]
    fn uri_attributes_are_decoded_and_anded() {
        let f = uri("pkcs11:token=ca%20hsm;serial=01ab;model=SoftHSM%20v2?pin-value=1234").unwrap();
        assert!(f.matches(&token("ca hsm", "01ab")));
        assert!(!f.matches(&token("ca hsm", "01ac")));
        assert!(!f.matches(&token("ca-hsm", "01ab")));
    }

    #[test]
    fn query_attributes_never_select() {
        let err = uri("pkcs11:?pin-value=1234").unwrap_err();
        assert!(err.what.contains("names no token attribute"), "{err}");
        assert!(!err.to_string().contains("1234"), "{err}");
        let sel = TokenSelector {
            uri: Some("pkcs11:token=x?pin-value=1234".into()),
            ..Default::default()
        };
        let err = selection_error(&sel, "/m.so", &[], &[]);
        assert!(!err.to_string().contains("1234"), "{err}");
    }

    #[test]
    fn object_attributes_are_ignored_and_library_version_major_matches() {
        let f = uri("PKCS11:token=a;object=root;type=private;library-version=2").unwrap();
        assert!(f.matches(&token("a", "1")));
        assert!(!uri("pkcs11:token=a;library-version=2.5")
            .unwrap()
            .matches(&token("a", "1")));
    }

    #[test]
    fn bad_uris_are_refused() {
        for bad in [
            "token=a",
            "pkcs11:token",
            "pkcs11:token=a;token=b",
            "pkcs11:token=%zz",
            "pkcs11:token=%4",
            "pkcs11:slot-id=1",
            "pkcs11:colour=blue",
            "pkcs11:token=%ff",
        ] {
            assert!(uri(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn empty_selector_is_refused() {
        assert!(TokenFilter::from_selector(&TokenSelector::default()).is_err());
    }

    #[test]
    fn label_and_serial_are_anded() {
        let sel = TokenSelector {
            label: Some("a".into()),
            serial: Some("2".into()),
            uri: None,
        };
        let f = TokenFilter::from_selector(&sel).unwrap();
        assert!(f.matches(&token("a", "2")));
        assert!(!f.matches(&token("a", "1")));
    }

    #[test]
    fn selection_error_lists_tokens() {
        let (a, b) = (token("a", "1"), token("b", "2"));
        let sel = TokenSelector {
            label: Some("c".into()),
            ..Default::default()
        };
        let err = selection_error(&sel, "/m.so", &[&a, &b], &[]);
        assert!(
            err.what
                .contains("label \"a\" serial \"1\"; label \"b\" serial \"2\""),
            "{err}"
        );
        let err = selection_error(&sel, "/m.so", &[&a, &b], &[&a, &b]);
        assert!(err.what.starts_with("2 tokens match"), "{err}");
    }

    #[test]
    fn wanted_label_reads_label_or_uri_token() {
        let by_uri = TokenSelector {
            uri: Some("pkcs11:token=root%20hsm;serial=7".into()),
            ..Default::default()
        };
        assert_eq!(wanted_label(&by_uri).as_deref(), Some("root hsm"));
        let by_serial = TokenSelector {
            serial: Some("7".into()),
            ..Default::default()
        };
        assert_eq!(wanted_label(&by_serial), None);
    }
}

#[cfg(test)]
mod duplicate_serial_tests {
    use super::*;

    fn token(label: &str, serial: &str) -> TokenIdentity {
        TokenIdentity {
            module_path: "m".into(),
            library_description: String::new(),
            library_manufacturer: String::new(),
            library_version: String::new(),
            token_label: label.into(),
            manufacturer: String::new(),
            model: String::new(),
            serial: serial.into(),
            hardware_version: String::new(),
            firmware_version: String::new(),
        }
    }

    #[test]
    fn two_tokens_with_one_serial_are_named() {
        let (a, b, c) = (
            token("hsm", "0000000000000000"),
            token("card-a", "0000000000000000"),
            token("card-b", "1234"),
        );
        let w = duplicate_serial(&[&a, &b, &c], &a).unwrap();
        assert!(
            w.contains("0000000000000000") && w.contains("card-a") && !w.contains("card-b"),
            "{w}"
        );
        assert_eq!(duplicate_serial(&[&a, &b, &c], &c), None);
    }
}

//! A certificate's issuer and extensions as the log, report.json and report.pdf show them: each
//! extension by its registered name (const-oid's database), its criticality, and its value in the
//! words `openssl x509 -text` uses, so an auditor can compare the two.

use const_oid::db::DB;
use der::Decode;
use serde::{Deserialize, Serialize};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::Certificate;

/// One extension of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionRecord {
    /// Dotted OID, e.g. "2.5.29.19".
    pub oid: String,
    /// The OID's registered name (e.g. "basicConstraints"), or the dotted OID when it has none.
    pub name: String,
    pub critical: bool,
    /// The decoded value ("CA:TRUE", "keyCertSign, cRLSign", the key identifier as hex); the DER
    /// value in hex for an extension keyrite does not decode.
    pub value: String,
}

/// The issuer's distinguished name (RFC 4514 text) and every extension, in certificate order.
pub fn issuer_and_extensions(cert: &Certificate) -> (String, Vec<ExtensionRecord>) {
    let tbs = cert.tbs_certificate();
    let extensions = tbs
        .extensions()
        .map(|e| e.iter().map(record).collect())
        .unwrap_or_default();
    (tbs.issuer().to_string(), extensions)
}

/// One extension as the log and report show it.
pub fn record(ext: &Extension) -> ExtensionRecord {
    let oid = ext.extn_id;
    ExtensionRecord {
        oid: oid.to_string(),
        name: name(&oid),
        critical: ext.critical,
        value: value(ext)
            .unwrap_or_else(|| format!("DER {}", hex::encode(ext.extn_value.as_bytes()))),
    }
}

fn value(ext: &Extension) -> Option<String> {
    use const_oid::AssociatedOid;
    let der = ext.extn_value.as_bytes();
    let oid = ext.extn_id;
    if oid == BasicConstraints::OID {
        let bc = BasicConstraints::from_der(der).ok()?;
        let ca = if bc.ca { "CA:TRUE" } else { "CA:FALSE" };
        return Some(match bc.path_len_constraint {
            Some(n) => format!("{ca}, pathlen:{n}"),
            None => ca.to_string(),
        });
    }
    if oid == KeyUsage::OID {
        let ku = KeyUsage::from_der(der).ok()?;
        let names = [
            (ku.digital_signature(), "digitalSignature"),
            (ku.non_repudiation(), "nonRepudiation"),
            (ku.key_encipherment(), "keyEncipherment"),
            (ku.data_encipherment(), "dataEncipherment"),
            (ku.key_agreement(), "keyAgreement"),
            (ku.key_cert_sign(), "keyCertSign"),
            (ku.crl_sign(), "cRLSign"),
            (ku.encipher_only(), "encipherOnly"),
            (ku.decipher_only(), "decipherOnly"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        return Some(set.join(", "));
    }
    if oid == SubjectKeyIdentifier::OID {
        let ski = SubjectKeyIdentifier::from_der(der).ok()?;
        return Some(colon_hex(ski.0.as_bytes()));
    }
    if oid == AuthorityKeyIdentifier::OID {
        let aki = AuthorityKeyIdentifier::from_der(der).ok()?;
        let mut parts = Vec::new();
        if let Some(id) = &aki.key_identifier {
            parts.push(format!("keyid:{}", colon_hex(id.as_bytes())));
        }
        if aki.authority_cert_issuer.is_some() {
            parts.push("issuer".to_string());
        }
        if let Some(serial) = &aki.authority_cert_serial_number {
            parts.push(format!("serial:{}", colon_hex(serial.as_bytes())));
        }
        return Some(parts.join(", "));
    }
    if oid == ExtendedKeyUsage::OID {
        let eku = ExtendedKeyUsage::from_der(der).ok()?;
        let names: Vec<String> = eku.0.iter().map(name).collect();
        return Some(names.join(", "));
    }
    super::extension_values::value(ext)
}

/// The database name without the arc prefix RFC 5280's module gives it ("id-ce-keyUsage" is
/// "keyUsage", as openssl and the RFC's prose call it), or the dotted OID.
fn name(oid: &const_oid::ObjectIdentifier) -> String {
    match DB.by_oid(oid) {
        Some(n) => ["id-ce-", "id-pe-", "id-kp-"]
            .iter()
            .find_map(|p| n.strip_prefix(p))
            .unwrap_or(n)
            .to_string(),
        None => oid.to_string(),
    }
}

/// Upper-case hex in colon-separated bytes, as `openssl x509 -text` prints key identifiers.
fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

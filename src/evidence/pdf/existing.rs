//! report.pdf: keys from earlier ceremonies that this ceremony found and used, each with the hash
//! it was pinned to, and the test messages signed (issue 11).

use super::layout::{Layout, BODY};
use super::metrics::Face;
use super::sections::{key_hash_words, mono, regular};
use crate::evidence::report::Report;
use crate::hsm::spki::grouped_hex;

pub(super) fn existing_keys(l: &mut Layout, r: &Report) {
    for k in &r.existing_keys {
        l.subheading(&format!("Key \"{}\" from an earlier ceremony", k.key));
        let from = match k.expected_from.as_str() {
            "script" => "the script's key_hash".to_string(),
            other => format!("the {other} (rehearsal)"),
        };
        l.key_values(&[
            regular(
                "Generated in",
                k.generated_by.as_deref().unwrap_or("(not named)"),
            ),
            regular("Found by", &k.found_by),
            regular("CKA_LABEL", &k.label),
            mono("CKA_ID", &k.id),
            regular("Algorithm", &k.algorithm),
            regular("Hash checked against", from),
            regular("Public key file", &k.public_key_file),
        ]);
        l.ensure(90.0);
        l.para(
            Face::Bold,
            BODY,
            "Key hash (SHA-256 of the DER SubjectPublicKeyInfo):",
        );
        l.para(Face::Mono, 10.0, &grouped_hex(&k.key_hash));
        l.para(Face::Regular, BODY, &key_hash_words(&k.key_hash));
        l.space(4.0);
    }
    for t in &r.test_signatures {
        let result = if t.verified {
            "verified"
        } else {
            "DID NOT VERIFY"
        };
        l.para(
            Face::Regular,
            BODY,
            &format!(
                "Step \"{}\": key \"{}\" signed a test message ({}), {result}; key hash {}",
                t.step,
                t.key,
                t.signature_algorithm,
                grouped_hex(&t.key_hash)
            ),
        );
    }
}

/// Certificates issued to other CAs: what was signed, from which input, by which key.
pub(super) fn ca_certificates(l: &mut Layout, r: &Report) {
    for c in &r.ca_certificates {
        let kind = match c.issued_as.as_str() {
            "subordinate-ca" => "Subordinate CA certificate",
            _ => "Cross-certificate",
        };
        l.subheading(&format!("{kind} \"{}\"", c.name));
        l.key_values(&[
            regular("Subject", &c.subject),
            regular("Issuer", &c.issuer),
            mono("Serial", &c.serial),
            regular(
                "Validity (UTC)",
                format!("{} to {}", c.not_before, c.not_after),
            ),
            regular("Signature", &c.signature_algorithm),
            regular("Signed by key", &c.issuer_key),
            mono("Issuer key hash", grouped_hex(&c.issuer_key_hash)),
            mono("Subject key hash", grouped_hex(&c.subject_key_hash)),
            regular("Input", format!("{} ({})", c.input_kind, c.input_file)),
            mono("Input SHA-256", grouped_hex(&c.input_sha256)),
            regular(
                "Files",
                format!("{} and the chain {}", c.file, c.chain_file),
            ),
        ]);
        l.ensure(60.0);
        l.para(Face::Bold, BODY, "SHA-256 fingerprint, to read back:");
        l.para(Face::Mono, 10.0, &grouped_hex(&c.sha256_fingerprint));
        l.para(Face::Regular, BODY, &key_hash_words(&c.sha256_fingerprint));
        l.space(4.0);
    }
}

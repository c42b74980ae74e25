//! report.pdf's certificate section: each certificate's names, validity and fingerprint, then its
//! issuer and every extension as recorded in the log when it was signed.

use super::layout::{Column, Layout, BODY};
use super::metrics::Face;
use super::sections::{mono, regular};
use crate::evidence::report::{CertificateRecord, Report};
use crate::hsm::spki::grouped_hex;

/// Room for a certificate's subheading, details and extension table, so that a certificate is not
/// split from its extensions (and the section heading not left alone above the first one).
fn height(c: &CertificateRecord) -> f32 {
    60.0 + 10.0 * 15.0 + (c.extensions.len() + 1) as f32 * 18.5
}

pub fn section(l: &mut Layout, r: &Report) {
    if let Some(first) = r.certificates.first() {
        l.ensure(height(first) + 40.0);
    }
    l.heading("Certificates");
    if r.certificates.is_empty() {
        l.para(
            Face::Regular,
            BODY,
            "No certificate was signed in this ceremony.",
        );
    }
    for c in &r.certificates {
        certificate(l, c);
    }
}

fn certificate(l: &mut Layout, c: &CertificateRecord) {
    l.ensure(height(c));
    l.subheading(&format!("Certificate \"{}\"", c.name));
    // A log written before issuers were recorded has none; say so rather than leave a blank.
    let issuer = if c.issuer.is_empty() {
        "(not recorded in this log)".to_string()
    } else if c.issuer == c.subject {
        format!("{} (self-signed)", c.issuer)
    } else {
        c.issuer.clone()
    };
    l.key_values(&[
        regular("Subject", &c.subject),
        regular("Issuer", issuer),
        mono("Serial", &c.serial),
        regular("Valid from (UTC)", &c.not_before),
        regular("Valid until (UTC)", &c.not_after),
        regular("Signature algorithm", &c.signature_algorithm),
        regular("Signed with key", &c.key),
        mono("SHA-256 fingerprint", grouped_hex(&c.sha256_fingerprint)),
        regular("File", &c.file),
    ]);
    if c.extensions.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = c
        .extensions
        .iter()
        .map(|e| {
            vec![
                format!("{} ({})", e.name, e.oid),
                if e.critical { "critical" } else { "no" }.to_string(),
                e.value.clone(),
            ]
        })
        .collect();
    l.table(
        &[
            Column::new("Extension (OID)", 0.31, Face::Regular),
            Column::new("Critical", 0.09, Face::Regular),
            Column::new("Value", 0.6, Face::Regular),
        ],
        &rows,
    );
}

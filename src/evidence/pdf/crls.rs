//! report.pdf's CRL section (what each `sign_crl` step signed, its fingerprint as hex and PGP words
//! for the read-back) and where the keys live (RFC 7512 URIs, certificates stored on the token).
//! Both are left out when the report has none, so older reports render as before.

use super::layout::{Column, Layout, BODY};
use super::metrics::Face;
use super::sections::{key_hash_words, mono, regular};
use crate::evidence::report::Report;
use crate::hsm::spki::grouped_hex;
use crate::x509::crl::CrlRecord;

pub fn section(l: &mut Layout, r: &Report) {
    if !r.crls.is_empty() {
        l.ensure(260.0);
        l.heading("Certificate revocation lists");
        for c in &r.crls {
            crl(l, c);
        }
    }
    if r.key_uris.is_empty() && r.certificates_on_token.is_empty() {
        return;
    }
    l.ensure(120.0);
    l.heading("Where the keys live");
    if !r.key_uris.is_empty() {
        l.para(
            Face::Regular,
            BODY,
            "RFC 7512 PKCS#11 URIs of the private keys, for tools that take them (p11tool, openssl's pkcs11 provider or engine).",
        );
        let rows: Vec<Vec<String>> = r
            .key_uris
            .iter()
            .map(|k| vec![k.label.clone(), k.uri.clone()])
            .collect();
        l.table(
            &[
                Column::new("Key", 0.25, Face::Regular),
                Column::new("pkcs11: URI", 0.75, Face::Mono),
            ],
            &rows,
        );
    }
    for s in &r.certificates_on_token {
        l.para(
            Face::Regular,
            BODY,
            &format!(
                "Certificate \"{}\" is also stored on the token as an X.509 certificate object beside key \"{}\" (CKA_ID {}).",
                s.name, s.key, s.id
            ),
        );
    }
}

fn crl(l: &mut Layout, c: &CrlRecord) {
    l.ensure(220.0 + c.revoked.len() as f32 * 18.5);
    l.subheading(&format!("CRL \"{}\"", c.name));
    let previous = match (&c.previous_crl_file, c.previous_number) {
        (Some(f), Some(n)) => format!("{f} (number {n}); its entries carried over"),
        (Some(f), None) => f.clone(),
        _ => "none".into(),
    };
    l.key_values(&[
        regular("Issuer", &c.issuer),
        regular("CRL number", c.number.to_string()),
        regular("This update (UTC)", &c.this_update),
        regular("Next update (UTC)", &c.next_update),
        mono("Authority key id", &c.authority_key_id),
        regular("Signature algorithm", &c.signature_algorithm),
        regular("Signed with key", &c.key),
        mono("SHA-256 fingerprint", grouped_hex(&c.sha256_fingerprint)),
        regular("Read back as", key_hash_words(&c.sha256_fingerprint)),
        regular("File", &c.file),
        regular("Issuer certificate", &c.issuer_certificate_file),
        regular("Earlier CRL", previous),
    ]);
    if c.revoked.is_empty() {
        l.para(
            Face::Regular,
            BODY,
            "No certificate is revoked by this CRL.",
        );
        return;
    }
    let rows: Vec<Vec<String>> = c
        .revoked
        .iter()
        .map(|e| vec![e.serial.clone(), e.date.clone(), e.reason.to_string()])
        .collect();
    l.table(
        &[
            Column::new("Revoked serial", 0.45, Face::Mono),
            Column::new("Revocation date (UTC)", 0.3, Face::Regular),
            Column::new("Reason", 0.25, Face::Regular),
        ],
        &rows,
    );
}

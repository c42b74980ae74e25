//! The CRLs a report lists: each verifies with the bundle's copy of its issuer certificate, says
//! what the report says, and (given an earlier CRL) carries its entries with a higher number.

use super::{short, Verification};
use crate::evidence::report::Report;
use crate::evidence::safe_read::{BundleDir, FILE_LIMIT};
use crate::x509::crl::{self as xcrl, CrlRecord};
use der::Encode;

pub(super) fn check_crls(v: &mut Verification, bundle: &BundleDir, report: &Report) {
    for record in &report.crls {
        check_one(v, bundle, record);
    }
}

fn check_one(v: &mut Verification, bundle: &BundleDir, record: &CrlRecord) {
    let file = &record.file;
    let read = |path: &str| bundle.read(path, FILE_LIMIT).ok();
    let Some(crl) = read(file).and_then(|pem| xcrl::parse_pem(&pem).ok()) else {
        v.fail(file, "not a PEM X509 CRL");
        return;
    };
    let issuer_file = &record.issuer_certificate_file;
    let Some(issuer) = read(issuer_file).and_then(|pem| xcrl::parse_certificate_pem(&pem).ok())
    else {
        v.fail(
            issuer_file,
            "the CRL's issuer certificate is missing or not PEM",
        );
        return;
    };
    match xcrl::verify_crl(&crl, &issuer) {
        Ok(()) => v.pass(
            file,
            format!("signature verifies with {issuer_file} ({})", record.issuer),
        ),
        Err(e) => v.fail(file, format!("does not verify with {issuer_file}: {e}")),
    }
    let der = crl.to_der().unwrap_or_default();
    let d = xcrl::describe(&crl, &der);
    let same = d.sha256_fingerprint == record.sha256_fingerprint
        && d.issuer == record.issuer
        && d.number == Some(record.number)
        && d.this_update == record.this_update
        && d.next_update.as_deref() == Some(record.next_update.as_str())
        && d.revoked == record.revoked
        && d.authority_key_id.as_deref() == Some(record.authority_key_id.as_str());
    v.check(
        same,
        file,
        format!(
            "number {}, {} revoked entries and fingerprint {} match the report",
            record.number,
            record.revoked.len(),
            short(&d.sha256_fingerprint)
        ),
        "the CRL differs from what the report records (number, times, entries, AKI or fingerprint)",
    );
    let Some(previous_file) = &record.previous_crl_file else {
        return;
    };
    let Some(previous) = read(previous_file).and_then(|pem| xcrl::parse_pem(&pem).ok()) else {
        v.fail(previous_file, "the earlier CRL is missing or not PEM");
        return;
    };
    let verified = xcrl::verify_crl(&previous, &issuer).is_ok();
    let number = xcrl::crl_number(&previous);
    let carried = xcrl::entries(&previous)
        .iter()
        .all(|r| d.revoked.iter().any(|n| n.serial == hex::encode(&r.serial)));
    v.check(
        verified && number.is_some_and(|n| n < record.number) && carried,
        previous_file,
        format!(
            "earlier CRL number {} verifies, is lower, and its entries carry over",
            number.unwrap_or_default()
        ),
        "the earlier CRL does not verify, has no lower number, or lost entries",
    );
}

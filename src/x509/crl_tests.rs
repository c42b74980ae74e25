use super::*;
use crate::hsm::mock::MockHsm;
use crate::script::{CertificateKind, CertificateProfile, ExtensionOptions, KeyAlgorithm, Subject};
use secrecy::SecretString;
use std::time::Duration;

fn root(hsm: &mut MockHsm, label: &str) -> (HsmKey, Certificate) {
    hsm.login(&SecretString::from("1234")).unwrap();
    let info = hsm.generate_key_pair(label, KeyAlgorithm::P256).unwrap();
    let key = HsmKey::new(
        label,
        KeyAlgorithm::P256,
        KeyAlgorithm::P256.default_hash(),
        info.spki_der,
    );
    let profile = CertificateProfile {
        name: "root".into(),
        key: label.into(),
        profile: CertificateKind::RootCa,
        subject: Subject {
            country: "DE".into(),
            organization: "Example".into(),
            common_name: "Example Root".into(),
            ..Subject::default()
        },
        validity_days: Some(3650),
        not_before: None,
        not_after: None,
        signature_hash: None,
        extensions: ExtensionOptions::default(),
        store_on_token: false,
    };
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let cert = super::super::sign_root(hsm, &profile, &key, &[0x11; 16], start).unwrap();
    (key, Certificate::from_der(&cert.der).unwrap())
}

fn at(text: &str) -> OffsetDateTime {
    crate::script::crl::parse_utc(text).unwrap()
}

fn content(number: u64, revoked: Vec<Revocation>) -> CrlContent {
    CrlContent {
        number,
        this_update: at("2026-12-01T00:00:00Z"),
        next_update: at("2027-06-01T00:00:00Z"),
        revoked,
    }
}

fn revoked(serial: u8, reason: RevocationReason) -> Revocation {
    Revocation {
        serial: vec![serial; 16],
        date: at("2026-11-30T12:00:00Z"),
        reason,
    }
}

#[test]
fn a_signed_crl_verifies_and_says_what_the_script_said() {
    let mut hsm = MockHsm::new("1234");
    let (key, issuer) = root(&mut hsm, "root-key");
    let signed = sign_crl(
        &mut hsm,
        &issuer,
        &key,
        &content(
            7,
            vec![
                revoked(0x21, RevocationReason::KeyCompromise),
                revoked(0x22, RevocationReason::Unspecified),
            ],
        ),
    )
    .unwrap();
    assert!(signed.pem.starts_with("-----BEGIN X509 CRL-----\n"));
    let crl = parse_pem(signed.pem.as_bytes()).unwrap();
    verify_crl(&crl, &issuer).unwrap();
    let d = &signed.description;
    assert_eq!(d.number, Some(7));
    assert_eq!(d.issuer, "CN=Example Root,O=Example,C=DE");
    assert_eq!(d.this_update, "2026-12-01T00:00:00Z");
    assert_eq!(d.next_update.as_deref(), Some("2027-06-01T00:00:00Z"));
    assert_eq!(d.revoked.len(), 2);
    assert_eq!(d.revoked[0].reason, RevocationReason::KeyCompromise);
    assert_eq!(d.revoked[1].reason, RevocationReason::Unspecified);
    // Unspecified is written without a reasonCode extension (RFC 5280 5.3.1).
    let entries = crl.tbs_cert_list.revoked_certificates.as_ref().unwrap();
    assert!(entries[1].crl_entry_extensions.is_none());
    let ski = issuer
        .tbs_certificate()
        .get_extension::<SubjectKeyIdentifier>()
        .unwrap()
        .unwrap()
        .1;
    assert_eq!(d.authority_key_id, Some(colon_hex(ski.0.as_bytes())));
    assert_eq!(signed.description.sha256_fingerprint.len(), 64);
}

#[test]
fn a_crl_signed_by_another_key_is_refused_before_the_hsm_signs() {
    let mut hsm = MockHsm::new("1234");
    let (_key, issuer) = root(&mut hsm, "root-key");
    let info = hsm.generate_key_pair("other", KeyAlgorithm::P256).unwrap();
    let other = HsmKey::new(
        "other",
        KeyAlgorithm::P256,
        KeyAlgorithm::P256.default_hash(),
        info.spki_der,
    );
    let signs_before = hsm
        .call_log()
        .iter()
        .filter(|c| c.starts_with("C_Sign"))
        .count();
    let err = sign_crl(&mut hsm, &issuer, &other, &content(1, vec![])).unwrap_err();
    assert!(
        err.to_string().contains("not the key of the issuer"),
        "{err}"
    );
    let signs_after = hsm
        .call_log()
        .iter()
        .filter(|c| c.starts_with("C_Sign"))
        .count();
    assert_eq!(signs_before, signs_after);
}

#[test]
fn a_tampered_crl_fails_verification() {
    let mut hsm = MockHsm::new("1234");
    let (key, issuer) = root(&mut hsm, "root-key");
    let signed = sign_crl(&mut hsm, &issuer, &key, &content(1, vec![])).unwrap();
    let mut crl = CertificateList::from_der(&signed.der).unwrap();
    crl.tbs_cert_list.next_update = Some(to_time(at("2030-01-01T00:00:00Z")).unwrap());
    assert!(verify_crl(&crl, &issuer).is_err());
}

#[test]
fn earlier_entries_carry_over_and_a_conflicting_repeat_is_refused() {
    let mut hsm = MockHsm::new("1234");
    let (key, issuer) = root(&mut hsm, "root-key");
    let first = sign_crl(
        &mut hsm,
        &issuer,
        &key,
        &content(1, vec![revoked(0x31, RevocationReason::CaCompromise)]),
    )
    .unwrap();
    let earlier = entries(&CertificateList::from_der(&first.der).unwrap());
    assert_eq!(earlier, vec![revoked(0x31, RevocationReason::CaCompromise)]);
    let merged = merge(
        earlier.clone(),
        vec![
            revoked(0x31, RevocationReason::CaCompromise),
            revoked(0x32, RevocationReason::Superseded),
        ],
    )
    .unwrap();
    assert_eq!(merged.len(), 2);
    let err = merge(earlier, vec![revoked(0x31, RevocationReason::Superseded)]).unwrap_err();
    assert!(err.contains("already revoked by the earlier CRL"), "{err}");
}

#[test]
fn times_from_2050_are_generalized_time() {
    let t = to_time(at("2050-01-01T00:00:00Z")).unwrap();
    assert!(matches!(t, Time::GeneralTime(_)));
    let t = to_time(at("2049-12-31T23:59:59Z")).unwrap();
    assert!(matches!(t, Time::UtcTime(_)));
}

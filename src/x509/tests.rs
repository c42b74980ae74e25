use super::*;
use crate::hsm::mock::MockHsm;
use crate::script::{CertificateKind, ExtensionOptions, Subject};
use secrecy::SecretString;

fn profile() -> CertificateProfile {
    CertificateProfile {
        name: "root".into(),
        key: "root-key".into(),
        profile: CertificateKind::RootCa,
        subject: Subject {
            country: "DE".into(),
            organization: "Example Trust, Inc.".into(),
            common_name: "Example Root".into(),
            ..Subject::default()
        },
        validity_days: Some(3650),
        not_before: None,
        not_after: None,
        signature_hash: None,
        extensions: ExtensionOptions::default(),
        store_on_token: false,
    }
}

fn mock_key(hsm: &mut MockHsm, label: &str, algorithm: KeyAlgorithm) -> HsmKey {
    hsm.login(&SecretString::from("1234")).unwrap();
    let info = hsm.generate_key_pair(label, algorithm).unwrap();
    HsmKey::new(label, algorithm, algorithm.default_hash(), info.spki_der)
}

#[test]
fn signs_and_verifies_a_root_for_each_curve() {
    for algorithm in [KeyAlgorithm::P256, KeyAlgorithm::P384] {
        let mut hsm = MockHsm::new("1234");
        let key = mock_key(&mut hsm, "root-key", algorithm);
        let serial = serial_from_hsm(&mut hsm).unwrap();
        let cert = sign_root(
            &mut hsm,
            &profile(),
            &key,
            &serial,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )
        .unwrap();
        assert_eq!(cert.subject, "CN=Example Root,O=Example Trust\\, Inc.,C=DE");
        assert_eq!(cert.not_before, "2027-01-15T08:00:00Z");
        assert!(cert.pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert_eq!(cert.serial_hex.len(), 32);
        assert_eq!(cert.issuer, cert.subject);
        let shown: Vec<(&str, bool, &str)> = cert
            .extensions
            .iter()
            .map(|e| (e.name.as_str(), e.critical, e.value.as_str()))
            .collect();
        assert_eq!(
            &shown[..2],
            [
                ("basicConstraints", true, "CA:TRUE"),
                ("keyUsage", true, "keyCertSign, cRLSign")
            ]
        );
        assert_eq!(shown[2].0, "subjectKeyIdentifier");
        assert_eq!(shown[3].2, format!("keyid:{}", shown[2].2));
        assert_eq!(shown[3].0, "authorityKeyIdentifier");
        let parsed = Certificate::from_der(&cert.der).unwrap();
        signer::verify_self_signed(&parsed).unwrap();
    }
}

#[test]
fn a_flipped_signature_byte_fails_verification() {
    let mut hsm = MockHsm::new("1234");
    let key = mock_key(&mut hsm, "root-key", KeyAlgorithm::P256);
    let cert = sign_root(&mut hsm, &profile(), &key, &[0x11; 16], SystemTime::now()).unwrap();
    let mut der = cert.der.clone();
    let last = der.len() - 3;
    der[last] ^= 0x01;
    let parsed = Certificate::from_der(&der).unwrap();
    assert!(signer::verify_self_signed(&parsed).is_err());
}

#[test]
fn lints_catch_a_key_swap_and_a_profile_mismatch_before_signing() {
    let mut hsm = MockHsm::new("1234");
    let key = mock_key(&mut hsm, "root-key", KeyAlgorithm::P256);
    let other = mock_key(&mut hsm, "other-key", KeyAlgorithm::P256);
    let root = profile::Root {
        subject: profile::subject_name(&profile().subject).unwrap(),
        path_len: None,
        digital_signature: false,
        policies: Vec::new(),
    };
    let validity = Validity::new(
        Time::try_from(SystemTime::now()).unwrap(),
        Time::try_from(SystemTime::now() + Duration::from_secs(86_400)).unwrap(),
    );
    let mut builder = CertificateBuilder::new(
        root,
        SerialNumber::new(&[0x22; 16]).unwrap(),
        validity,
        key.spki().unwrap(),
    )
    .unwrap();
    let tbs = builder.finalize(&key).unwrap();
    let mut wants_path_len = profile();
    wants_path_len.extensions.path_len = Some(0);
    let findings = lint::lint_root_tbs(&tbs, &wants_path_len, &other).unwrap_err();
    assert!(
        findings.iter().any(|f| f.contains("not the HSM key")),
        "{findings:?}"
    );
    assert!(
        findings.iter().any(|f| f.contains("pathLenConstraint")),
        "{findings:?}"
    );
    assert!(lint::lint_root_tbs(&tbs, &profile(), &key).is_ok());
}

#[test]
fn short_serials_are_refused() {
    let mut hsm = MockHsm::new("1234");
    let key = mock_key(&mut hsm, "root-key", KeyAlgorithm::P256);
    let err = sign_root(&mut hsm, &profile(), &key, &[0x01; 4], SystemTime::now()).unwrap_err();
    assert!(err.to_string().contains("64 random bits"), "{err}");
    assert!(!hsm.call_log().iter().any(|c| c.starts_with("C_Sign")));
}

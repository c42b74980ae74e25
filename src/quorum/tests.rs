use super::*;
use proptest::prelude::*;

fn fresh(m: u16, n: u16) -> (Secret, Vec<Share>, Commitments) {
    let secret = Secret::generate(&[7u8; 32]).unwrap();
    let (shares, commitments) = split(&secret, "test-ceremony", m, n, b"hsm entropy").unwrap();
    (secret, shares, commitments)
}

/// Pick `k` distinct indices of 0..n from a seed, in a seed-dependent order.
fn pick(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut s = seed;
    for i in (1..n).rev() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        idx.swap(i, (s >> 33) as usize % (i + 1));
    }
    idx.truncate(k);
    idx
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_m_of_n_reconstruct(m in 2u16..6, extra in 0u16..4, seed in any::<u64>(), more in 0usize..3) {
        let n = m + extra;
        let (secret, shares, commitments) = fresh(m, n);
        let k = (usize::from(m) + more).min(usize::from(n));
        let chosen: Vec<Share> = pick(usize::from(n), k, seed).into_iter().map(|i| shares[i].clone()).collect();
        for s in &chosen {
            prop_assert!(commitments.verify(s).is_ok());
        }
        let back = combine(&chosen, &commitments).unwrap();
        prop_assert_eq!(back.0.as_slice(), secret.0.as_slice());
        let (a, b) = (back.user_pin(), secret.user_pin());
        prop_assert_eq!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn a_tampered_share_fails_verification(m in 2u16..5, extra in 0u16..3, which in any::<prop::sample::Index>(), byte in 0usize..32, bit in 0u8..8) {
        let n = m + extra;
        let (_, shares, commitments) = fresh(m, n);
        let mut bad = shares[which.index(shares.len())].clone();
        bad.value[byte] ^= 1 << bit;
        prop_assert!(commitments.verify(&bad).is_err());
        // Re-encoded (checksum fixed up), it still fails: Feldman catches what the checksum cannot.
        let decoded = Share::decode(&bad.encode()).unwrap();
        prop_assert!(commitments.verify(&decoded).is_err());
        // Encoded honestly and then damaged, the checksum catches it.
        let mut bytes = shares[0].encode();
        let at = bytes.len() - 20;
        bytes[at] ^= 1 << bit;
        prop_assert!(matches!(Share::decode(&bytes), Err(QuorumError::Encoding(_))));
    }

    #[test]
    fn m_minus_one_shares_are_refused(m in 2u16..6, extra in 0u16..3, seed in any::<u64>()) {
        let n = m + extra;
        let (_, shares, commitments) = fresh(m, n);
        let chosen: Vec<Share> = pick(usize::from(n), usize::from(m - 1), seed).into_iter().map(|i| shares[i].clone()).collect();
        let refused = matches!(combine(&chosen, &commitments), Err(QuorumError::TooFew { .. }));
        prop_assert!(refused);
    }
}

use secrecy::ExposeSecret;

#[test]
fn duplicates_and_other_splits_are_refused() {
    let (_, shares, commitments) = fresh(2, 3);
    let dup = vec![shares[0].clone(), shares[0].clone()];
    assert_eq!(
        combine(&dup, &commitments).unwrap_err(),
        QuorumError::DuplicateIndex { index: 1 }
    );
    let (_, other, _) = fresh(2, 3);
    assert!(matches!(
        commitments.verify(&other[0]),
        Err(QuorumError::OtherSplit(_))
    ));
    let secret = Secret::generate(&[1u8; 32]).unwrap();
    let (foreign, _) = split(&secret, "another-ceremony", 2, 3, b"").unwrap();
    let err = commitments.verify(&foreign[0]).unwrap_err().to_string();
    assert!(err.contains("another-ceremony"), "{err}");
}

#[test]
fn encodings_round_trip_and_debug_hides_values() {
    let (secret, shares, commitments) = fresh(3, 5);
    let back = Commitments::decode(&commitments.encode()).unwrap();
    assert_eq!(back, commitments);
    let share = Share::decode(&shares[2].encode()).unwrap();
    assert_eq!(share.value_bytes(), shares[2].value_bytes());
    assert_eq!(share.index, 3);
    let shown = format!("{share:?} {secret:?}");
    assert!(
        !shown.contains(&hex::encode(share.value_bytes())),
        "{shown}"
    );
    assert!(!shown.contains(&hex::encode(secret.0.as_slice())));
    assert_eq!(secret.public_point().unwrap(), commitments.points[0]);
}

#[test]
fn pins_are_domain_separated() {
    let (secret, _, _) = fresh(2, 2);
    let user = secret.user_pin();
    let so = secret.so_pin();
    assert_eq!(user.expose_secret().len(), DERIVED_PIN_LEN);
    assert_ne!(user.expose_secret(), so.expose_secret());
    assert!(check_parameters(1, 3).is_err());
    assert!(check_parameters(3, 2).is_err());
}

#[test]
fn derived_pins_fit_the_token_and_keep_the_default_length() {
    assert_eq!(super::pin_length(4, 255), Ok(32));
    assert_eq!(super::pin_length(4, 24), Ok(24));
    assert_eq!(super::pin_length(40, 255), Ok(40));
    assert!(super::pin_length(4, 8).is_err(), "too short to be safe");
    assert!(super::pin_length(80, 255).is_err());
    assert!(super::pin_length(30, 20).is_err());
    let s = super::Secret::generate(&[3u8; 32]).unwrap();
    let (u, so) = s.hsm_pins(32);
    assert_eq!(u.expose_secret(), s.user_pin().expose_secret());
    assert_eq!(so.expose_secret(), s.so_pin().expose_secret());
    let (short, _) = s.hsm_pins(20);
    assert_eq!(short.expose_secret(), &s.user_pin().expose_secret()[..20]);
}

#[test]
fn a_backup_kek_is_derived_per_split_and_only_from_the_combined_secret() {
    let (secret, shares, commitments) = fresh(2, 3);
    let kek = secret.kek("R-1/kek").unwrap();
    assert_eq!(kek.len(), 32);
    assert_ne!(*kek, *secret.kek("R-2/kek").unwrap());
    let rebuilt = combine(&shares[1..], &commitments).unwrap();
    assert_eq!(*rebuilt.kek("R-1/kek").unwrap(), *kek);
}

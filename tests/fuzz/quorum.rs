//! The custodian-card decoders: shares and commitments read back from a card another party handled.

use super::mutate::{fuzz, mutated, single_flip};
use keyrite::quorum::{split, Commitments, Secret, Share};
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A real 3-of-5 split's card objects: five encoded shares, then the commitments.
fn seeds() -> Arc<Vec<Vec<u8>>> {
    let secret = Secret::generate(&[7u8; 32]).unwrap();
    let (shares, commitments) = split(&secret, "FUZZ-ROOT-2026", 3, 5, &[9u8; 32]).unwrap();
    let mut seeds: Vec<Vec<u8>> = shares.iter().map(|s| s.encode().to_vec()).collect();
    seeds.push(commitments.encode());
    Arc::new(seeds)
}

fn decodes(bytes: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (
        Share::decode(bytes).ok().map(|s| s.encode().to_vec()),
        Commitments::decode(bytes).ok().map(|c| c.encode()),
    )
}

#[test]
fn fuzz_share_and_commitments_decoders() {
    fuzz("quorum", mutated(seeds()), |bytes| {
        // Whatever decodes is exactly what it encodes back to: no two byte strings mean one share.
        let (share, commitments) = decodes(&bytes);
        for back in [share, commitments].into_iter().flatten() {
            prop_assert_eq!(back, bytes.clone());
        }
        Ok(())
    });
}

#[test]
fn fuzz_every_single_bit_flip_is_refused() {
    let seeds = seeds();
    fuzz("quorum-flip", single_flip(seeds.clone()), |(i, at, bit)| {
        let mut bytes = seeds[i].clone();
        bytes[at] ^= 1 << bit;
        prop_assert_eq!(decodes(&bytes), (None, None), "byte {} bit {}", at, bit);
        Ok(())
    });
}

/// A forger who knows the format recomputes the checksum: the decoder accepts the bytes, and Feldman
/// verification against the genuine commitments refuses the share.
#[test]
fn fuzz_a_forged_share_with_a_good_checksum_fails_verification() {
    let secret = Secret::generate(&[3u8; 32]).unwrap();
    let (shares, commitments) = split(&secret, "FUZZ-ROOT-2026", 2, 3, &[5u8; 32]).unwrap();
    let genuine: Vec<Vec<u8>> = shares.iter().map(|s| s.encode().to_vec()).collect();
    let strategy = (0..genuine.len(), 0usize..32, 1u8..=255);
    fuzz("quorum-forged", strategy, |(i, at, xor)| {
        let mut bytes = genuine[i].clone();
        let len = bytes.len();
        // The share value is the 32 bytes before the 8-byte checksum.
        bytes[len - 8 - 32 + at] ^= xor;
        let sum = Sha256::digest(&bytes[..len - 8]);
        bytes[len - 8..].copy_from_slice(&sum[..8]);
        let forged = Share::decode(&bytes).expect("a well-formed share decodes");
        prop_assert!(commitments.verify(&forged).is_err());
        Ok(())
    });
}

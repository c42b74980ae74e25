//! M-of-N activation quorum: the HSM's activation secret, Feldman-verifiable Shamir shares of it over
//! P-256, and the PINs derived from it. This module is the only importer of vsss-rs.
//!
//! * The secret is a non-zero P-256 scalar: SHA-256 over a domain label, 32 bytes of the HSM's RNG
//!   and 32 bytes of the OS RNG, reduced modulo the group order.
//! * The HSM user PIN and SO PIN are derived from the secret with distinct labels (see [`Secret::user_pin`]).
//! * Shares are split with Feldman VSS; the commitments `C_j = G·a_j` let anyone check a share
//!   without learning the secret, and `C_0 = G·secret` checks a reconstruction before the HSM ever
//!   sees a PIN derived from it.
//!
//! Everything secret lives in `Zeroizing` memory, and no `Debug` impl prints it.

mod encoding;
pub mod envelope;
#[cfg(test)]
mod tests;

pub use encoding::{commitments_label, share_label, SHARE_APPLICATION, SHARE_FORMAT};
pub use envelope::{card_key_sha256, Envelope, Recipient};

use p256::elliptic_curve::ff::{Field, PrimeField};
use p256::elliptic_curve::group::GroupEncoding;
use p256::elliptic_curve::ops::Reduce;
use p256::{FieldBytes, ProjectivePoint, Scalar};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use std::fmt;
use vsss_rs::{
    FeldmanVerifierSet, IdentifierPrimeField, ParticipantIdGenerator, ReadableShareSet, Share as _,
    ValueGroup,
};
use zeroize::{Zeroize, Zeroizing};

type VShare = vsss_rs::PrimeFieldShare<Scalar>;
type VVerifier = ValueGroup<ProjectivePoint>;

/// Largest N keyrite splits to (and the bench's 9-of-16 fits well inside).
pub const MAX_SHARES: u16 = 64;
/// Length of the per-split nonce that binds shares to one split of one ceremony.
pub const NONCE_LEN: usize = 16;

/// Domain labels: each use of the secret hashes a different label, so no two outputs are related.
const SECRET_LABEL: &[u8] = b"keyrite/quorum/v1/activation-secret";
const USER_PIN_LABEL: &[u8] = b"keyrite/quorum/v1/hsm-user-pin";
const SO_PIN_LABEL: &[u8] = b"keyrite/quorum/v1/hsm-so-pin";
const DRBG_LABEL: &[u8] = b"keyrite/quorum/v1/split-coefficients";
/// HKDF salt of a backup's key-encryption key (issue 12).
const KEK_SALT: &[u8] = b"keyrite/backup/v1/kek";
/// Characters of a derived PIN (hex of the first 16 bytes of the label hash: 128 bits), unless the
/// token's PIN limits need another length (see [`pin_length`]).
pub const DERIVED_PIN_LEN: usize = 32;
/// Shortest derived PIN keyrite sets (64 bits); a token whose ulMaxPinLen is below it is refused.
pub const MIN_DERIVED_PIN_LEN: usize = 16;
/// Longest derived PIN: the whole label hash in hex.
pub const MAX_DERIVED_PIN_LEN: usize = 64;

/// The length of the PINs derived for a token with these ulMinPinLen / ulMaxPinLen: 32 characters
/// when the token allows it, else the nearest length it allows within 16..=64. A pure function of
/// the token's limits, so an activation on the same token derives the same PIN; the split also
/// records it (`quorum_split.hsm.pin_length`).
pub fn pin_length(min_len: usize, max_len: usize) -> Result<usize, QuorumError> {
    let len = DERIVED_PIN_LEN.clamp(min_len.min(max_len), max_len.max(min_len));
    if min_len > max_len || !(MIN_DERIVED_PIN_LEN..=MAX_DERIVED_PIN_LEN).contains(&len) {
        return Err(QuorumError::Parameters(format!(
            "the token accepts PINs of {min_len} to {max_len} characters; keyrite derives PINs of \
             {MIN_DERIVED_PIN_LEN} to {MAX_DERIVED_PIN_LEN} characters, so it cannot set this token's PINs"
        )));
    }
    Ok(len)
}

/// Why a quorum operation failed. Messages name what is wrong, never a share or secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuorumError {
    /// Parameters outside 2 ≤ M ≤ N ≤ [`MAX_SHARES`].
    Parameters(String),
    /// The OS RNG failed, or the HSM gave too little randomness.
    Randomness(String),
    /// An encoded share or commitments object could not be decoded.
    Encoding(String),
    /// The share does not belong to this split (ceremony id, nonce, M, N, commitments hash).
    OtherSplit(String),
    /// The share failed Feldman verification against the commitments.
    Feldman { index: u16 },
    /// Fewer than M distinct shares.
    TooFew { have: usize, need: u16 },
    /// Two shares with the same index.
    DuplicateIndex { index: u16 },
    /// The reconstructed secret does not match the commitment C_0.
    Mismatch,
}

impl fmt::Display for QuorumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuorumError::Parameters(s)
            | QuorumError::Randomness(s)
            | QuorumError::Encoding(s)
            | QuorumError::OtherSplit(s) => f.write_str(s),
            QuorumError::Feldman { index } => write!(
                f,
                "share {index} does not match the split's Feldman commitments (altered or damaged)"
            ),
            QuorumError::TooFew { have, need } => write!(
                f,
                "{have} valid share(s) presented; activation needs {need}"
            ),
            QuorumError::DuplicateIndex { index } => {
                write!(f, "share index {index} was presented twice")
            }
            QuorumError::Mismatch => f.write_str(
                "the shares combine to a secret that does not match the split's commitment",
            ),
        }
    }
}

impl std::error::Error for QuorumError {}

/// The activation secret: a non-zero P-256 scalar, big-endian.
pub struct Secret(Zeroizing<[u8; 32]>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// A fresh secret from `hsm_random` (at least 32 bytes of the HSM's C_GenerateRandom) mixed with
    /// 32 bytes of the OS RNG.
    pub fn generate(hsm_random: &[u8]) -> Result<Secret, QuorumError> {
        if hsm_random.len() < 32 {
            return Err(QuorumError::Randomness(format!(
                "the HSM gave {} random bytes; the secret needs 32",
                hsm_random.len()
            )));
        }
        loop {
            let os = os_random::<32>()?;
            let mut h = Sha256::new();
            h.update(SECRET_LABEL);
            h.update(hsm_random);
            h.update(os.as_slice());
            let mut digest = Zeroizing::new(FieldBytes::from(h.finalize()));
            let mut scalar = <Scalar as Reduce<FieldBytes>>::reduce(&digest);
            digest.zeroize();
            if !bool::from(scalar.is_zero()) {
                let secret = Secret::from_scalar(&scalar);
                scalar.zeroize();
                return Ok(secret);
            }
        }
    }

    fn from_scalar(scalar: &Scalar) -> Secret {
        let mut repr = scalar.to_repr();
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(repr.as_slice());
        repr.zeroize();
        Secret(bytes)
    }

    fn scalar(&self) -> Result<Scalar, QuorumError> {
        let repr = FieldBytes::from(*self.0);
        Option::from(Scalar::from_repr(repr))
            .ok_or_else(|| QuorumError::Encoding("the secret is not a P-256 scalar".into()))
    }

    /// G·secret, compressed SEC1: equals the split's commitment C_0.
    pub fn public_point(&self) -> Result<[u8; 33], QuorumError> {
        let mut s = self.scalar()?;
        let p = ProjectivePoint::GENERATOR * s;
        s.zeroize();
        point_bytes(&p)
    }

    /// The HSM user PIN: lowercase hex of the first 16 bytes of
    /// SHA-256("keyrite/quorum/v1/hsm-user-pin" ‖ 0x00 ‖ secret) — 32 characters.
    pub fn user_pin(&self) -> SecretString {
        self.derive_pin(USER_PIN_LABEL, DERIVED_PIN_LEN)
    }

    /// The HSM SO PIN: as [`Secret::user_pin`] with the label "keyrite/quorum/v1/hsm-so-pin".
    pub fn so_pin(&self) -> SecretString {
        self.derive_pin(SO_PIN_LABEL, DERIVED_PIN_LEN)
    }

    /// The (user, SO) PINs of `len` characters (see [`pin_length`]): the first `len` characters of
    /// the same lowercase hex, so a length of 32 gives [`Secret::user_pin`] and [`Secret::so_pin`].
    pub fn hsm_pins(&self, len: usize) -> (SecretString, SecretString) {
        (
            self.derive_pin(USER_PIN_LABEL, len),
            self.derive_pin(SO_PIN_LABEL, len),
        )
    }

    /// Issue 12: the AES-256 key-encryption key of a backup whose secret this is:
    /// HKDF-SHA256(salt "keyrite/backup/v1/kek", ikm secret, info split id). The split shares the
    /// random scalar (Feldman needs a scalar), never the key itself.
    pub fn kek(&self, split_id: &str) -> Result<Zeroizing<[u8; 32]>, QuorumError> {
        let mut kek = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<Sha256>::new(Some(KEK_SALT), self.0.as_slice())
            .expand(split_id.as_bytes(), kek.as_mut())
            .map_err(|e| QuorumError::Encoding(format!("KEK derivation: {e}")))?;
        Ok(kek)
    }

    fn derive_pin(&self, label: &[u8], len: usize) -> SecretString {
        let mut h = Sha256::new();
        h.update(label);
        h.update([0u8]);
        h.update(self.0.as_slice());
        let digest = Zeroizing::new(h.finalize());
        let hex = Zeroizing::new(hex::encode(digest.as_slice()));
        let len = len.clamp(MIN_DERIVED_PIN_LEN, MAX_DERIVED_PIN_LEN);
        SecretString::from(&hex[..len])
    }
}

fn point_bytes(p: &ProjectivePoint) -> Result<[u8; 33], QuorumError> {
    let enc = p.to_bytes();
    <[u8; 33]>::try_from(enc.as_slice())
        .map_err(|_| QuorumError::Encoding("a commitment is not a compressed P-256 point".into()))
}

fn point_from(bytes: &[u8; 33]) -> Result<ProjectivePoint, QuorumError> {
    let mut repr = <ProjectivePoint as GroupEncoding>::Repr::default();
    AsMut::<[u8]>::as_mut(&mut repr).copy_from_slice(bytes);
    Option::from(ProjectivePoint::from_bytes(&repr))
        .ok_or_else(|| QuorumError::Encoding("a commitment is not a valid P-256 point".into()))
}

fn os_random<const N: usize>() -> Result<Zeroizing<[u8; N]>, QuorumError> {
    let mut buf = Zeroizing::new([0u8; N]);
    getrandom::fill(buf.as_mut())
        .map_err(|e| QuorumError::Randomness(format!("the OS RNG failed: {e}")))?;
    Ok(buf)
}

/// Which split a share belongs to: the ceremony that made it and a fresh nonce, so that a reshare in
/// the same ceremony, or any other split, can never be mixed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitId {
    pub ceremony_id: String,
    pub nonce: [u8; NONCE_LEN],
}

/// One custodian's share. `Debug` shows the index and split, never the value.
#[derive(Clone)]
pub struct Share {
    pub split: SplitId,
    /// 1..=N.
    pub index: u16,
    pub threshold: u16,
    pub total: u16,
    /// SHA-256 of the encoded commitments this share was split with.
    pub commitments_sha256: [u8; 32],
    value: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Share")
            .field("split", &self.split)
            .field("index", &self.index)
            .field("threshold", &self.threshold)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Share {
    /// The share value (a P-256 scalar, big-endian). Only for encoding and tests.
    pub fn value_bytes(&self) -> &[u8; 32] {
        &self.value
    }

    fn vsss(&self) -> Result<VShare, QuorumError> {
        let value = Option::from(Scalar::from_repr(FieldBytes::from(*self.value)))
            .ok_or(QuorumError::Feldman { index: self.index })?;
        Ok(VShare::with_identifier_and_value(
            IdentifierPrimeField(Scalar::from(u64::from(self.index))),
            IdentifierPrimeField(value),
        ))
    }
}

/// The public Feldman commitments `C_0..C_{M-1}` of a split (compressed points). `C_0 = G·secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commitments {
    pub split: SplitId,
    pub threshold: u16,
    pub total: u16,
    pub points: Vec<[u8; 33]>,
}

impl Commitments {
    /// SHA-256 of [`Commitments::encode`], lowercase hex: the value logged and reported.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256())
    }

    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }

    fn verifiers(&self) -> Result<Vec<VVerifier>, QuorumError> {
        let mut set = Vec::with_capacity(self.points.len() + 1);
        set.push(ValueGroup(ProjectivePoint::GENERATOR));
        for p in &self.points {
            set.push(ValueGroup(point_from(p)?));
        }
        Ok(set)
    }

    /// Does `share` belong to this split, and does it pass Feldman verification?
    pub fn verify(&self, share: &Share) -> Result<(), QuorumError> {
        self.same_split(share)?;
        if share.index == 0 || share.index > self.total {
            return Err(QuorumError::OtherSplit(format!(
                "share index {} is outside 1..={}",
                share.index, self.total
            )));
        }
        let verifiers = self.verifiers()?;
        let mut s = share.vsss()?;
        let ok = verifiers.verify_share(&s).is_ok();
        s.zeroize();
        if ok {
            Ok(())
        } else {
            Err(QuorumError::Feldman { index: share.index })
        }
    }

    fn same_split(&self, share: &Share) -> Result<(), QuorumError> {
        if share.split.ceremony_id != self.split.ceremony_id {
            return Err(QuorumError::OtherSplit(format!(
                "the share was made by ceremony \"{}\", not by \"{}\"",
                share.split.ceremony_id, self.split.ceremony_id
            )));
        }
        if share.split.nonce != self.split.nonce || share.commitments_sha256 != self.sha256() {
            return Err(QuorumError::OtherSplit(format!(
                "the share belongs to another split of ceremony \"{}\" (an earlier or later share set)",
                self.split.ceremony_id
            )));
        }
        if share.threshold != self.threshold || share.total != self.total {
            return Err(QuorumError::OtherSplit(format!(
                "the share is from a {}-of-{} split, this split is {}-of-{}",
                share.threshold, share.total, self.threshold, self.total
            )));
        }
        Ok(())
    }
}

/// Check M and N.
pub fn check_parameters(threshold: u16, total: u16) -> Result<(), QuorumError> {
    if threshold < 2 || total < threshold || total > MAX_SHARES {
        return Err(QuorumError::Parameters(format!(
            "a {threshold}-of-{total} split is not possible: keyrite needs 2 ≤ M ≤ N ≤ {MAX_SHARES}"
        )));
    }
    Ok(())
}

/// Split `secret` M-of-N for `ceremony_id` with a fresh nonce. `entropy` (e.g. HSM random bytes) is
/// mixed with the OS RNG to seed the polynomial's coefficients.
pub fn split(
    secret: &Secret,
    ceremony_id: &str,
    threshold: u16,
    total: u16,
    entropy: &[u8],
) -> Result<(Vec<Share>, Commitments), QuorumError> {
    check_parameters(threshold, total)?;
    let nonce = *os_random::<NONCE_LEN>()?;
    let split_id = SplitId {
        ceremony_id: ceremony_id.to_string(),
        nonce,
    };
    let mut rng = Drbg::new(entropy)?;
    let mut s = secret.scalar()?;
    let value = IdentifierPrimeField(s);
    s.zeroize();
    let ids = [ParticipantIdGenerator::Sequential {
        start: IdentifierPrimeField(Scalar::ONE),
        increment: IdentifierPrimeField(Scalar::ONE),
        count: usize::from(total),
    }];
    let result = vsss_rs::feldman::split_secret_with_participant_generators::<VShare, VVerifier>(
        usize::from(threshold),
        usize::from(total),
        &value,
        Some(ValueGroup(ProjectivePoint::GENERATOR)),
        &mut rng,
        &ids,
    );
    let mut value = value;
    value.0.zeroize();
    let (mut vshares, verifiers) =
        result.map_err(|e| QuorumError::Parameters(format!("the split failed: {e:?}")))?;
    let points = FeldmanVerifierSet::<VShare, VVerifier>::verifiers(&verifiers)
        .iter()
        .map(|v| point_bytes(&v.0))
        .collect::<Result<Vec<_>, _>>()?;
    let commitments = Commitments {
        split: split_id.clone(),
        threshold,
        total,
        points,
    };
    let commitments_sha256 = commitments.sha256();
    let mut shares = Vec::with_capacity(vshares.len());
    for (i, vs) in vshares.iter().enumerate() {
        let mut repr = vs.value().0.to_repr();
        let mut value = Zeroizing::new([0u8; 32]);
        value.copy_from_slice(repr.as_slice());
        repr.zeroize();
        shares.push(Share {
            split: split_id.clone(),
            index: u16::try_from(i + 1).unwrap_or(u16::MAX),
            threshold,
            total,
            commitments_sha256,
            value,
        });
    }
    for vs in vshares.iter_mut() {
        vs.zeroize();
    }
    Ok((shares, commitments))
}

/// Combine at least M verified shares and check the result against C_0. Refuses fewer than M shares
/// and duplicate indices; never returns a secret that does not match the commitment.
pub fn combine(shares: &[Share], commitments: &Commitments) -> Result<Secret, QuorumError> {
    let mut seen = Vec::new();
    for share in shares {
        if seen.contains(&share.index) {
            return Err(QuorumError::DuplicateIndex { index: share.index });
        }
        seen.push(share.index);
        commitments.verify(share)?;
    }
    if shares.len() < usize::from(commitments.threshold) {
        return Err(QuorumError::TooFew {
            have: shares.len(),
            need: commitments.threshold,
        });
    }
    let mut set = shares
        .iter()
        .map(Share::vsss)
        .collect::<Result<Vec<_>, _>>()?;
    let combined = set.combine();
    for s in set.iter_mut() {
        s.zeroize();
    }
    let mut value = combined.map_err(|_| QuorumError::Mismatch)?;
    let secret = Secret::from_scalar(&value.0);
    value.0.zeroize();
    let expected = commitments.points.first().ok_or(QuorumError::Mismatch)?;
    if secret.public_point()? != *expected {
        return Err(QuorumError::Mismatch);
    }
    Ok(secret)
}

/// The coefficient RNG: SHA-256 in counter mode over a seed that mixes the caller's entropy with 32
/// bytes of the OS RNG. Deterministic only given both; the seed is zeroized on drop.
struct Drbg {
    seed: Zeroizing<[u8; 32]>,
    counter: u64,
}

impl Drbg {
    fn new(entropy: &[u8]) -> Result<Drbg, QuorumError> {
        let os = os_random::<32>()?;
        let mut h = Sha256::new();
        h.update(DRBG_LABEL);
        h.update(entropy);
        h.update(os.as_slice());
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&h.finalize());
        Ok(Drbg { seed, counter: 0 })
    }

    fn block(&mut self) -> Zeroizing<[u8; 32]> {
        self.counter += 1;
        let mut h = Sha256::new();
        h.update(self.seed.as_slice());
        h.update(self.counter.to_be_bytes());
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&h.finalize());
        out
    }
}

impl rand_core::TryRng for Drbg {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let b = self.block();
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let b = self.block();
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[..8]);
        Ok(u64::from_be_bytes(x))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(32) {
            let b = self.block();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for Drbg {}

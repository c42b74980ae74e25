//! Sealed shares: a share encrypted to a custodian card's P-256 key-agreement key, kept as an
//! envelope file that travels with the card (the medium for cards that cannot store data objects,
//! such as PIV cards and their key-management key).
//!
//! Sealing (host only): a fresh ephemeral scalar `e`, `E = G·e`, the shared secret `Z = x(e·K)` with
//! the card's public key `K`; HKDF-SHA256 over `Z` (salt [`HKDF_SALT`], info = SHA-256 of the
//! envelope header) gives a 32-byte AES-256-GCM key and a 12-byte nonce; the plaintext is the share's
//! usual encoding (`Share::encode`, with its checksum), and the whole header is the AEAD's associated
//! data. Opening: the card computes `Z = x(d·E)` with CKM_ECDH1_DERIVE (CKD_NULL), and the host runs
//! the same HKDF and AEAD open. Each envelope has its own ephemeral key, so each AEAD key is used
//! once, and a nonce derived with it is safe.
//!
//! Envelope (format 1), integers big-endian:
//! `"KRSE"` ‖ version u8 (1) ‖ suite u8 (1 = P-256 ECDH, HKDF-SHA256, AES-256-GCM) ‖
//! ephemeral point E (65, uncompressed SEC1) ‖ card key SHA-256 (32, of the card key's DER
//! SubjectPublicKeyInfo) ‖ card label length u8 ‖ card label ‖ card serial length u8 ‖ card serial ‖
//! share index u16 ‖ commitments length u16 ‖ commitments (their usual encoding) ‖
//! ciphertext length u16 ‖ ciphertext (share encoding + 16-byte GCM tag).
//! The header is everything before the ciphertext length: it binds the split (ceremony id, nonce,
//! M, N and the commitments), the card's identity and its key, and the share index.

use super::{Commitments, QuorumError, Share};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::{NonZeroScalar, ProjectivePoint, PublicKey};
use sha2::{Digest, Sha256};
use spki::EncodePublicKey;
use zeroize::Zeroizing;

pub const ENVELOPE_FORMAT: u8 = 1;
/// P-256 ECDH (CKD_NULL), HKDF-SHA256, AES-256-GCM.
pub const SUITE_P256_HKDF_AES256GCM: u8 = 1;
const MAGIC: &[u8; 4] = b"KRSE";
const HKDF_SALT: &[u8] = b"keyrite/quorum/v1/sealed-share";
const POINT_LEN: usize = 65;
const TAG_LEN: usize = 16;

/// The card a share is sealed to: its identity as the token reports it and its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub token_label: String,
    pub serial: String,
    /// Uncompressed SEC1 point (65 bytes) of the card's key-agreement key.
    pub public_point: Vec<u8>,
}

impl Recipient {
    /// SHA-256 of the card key's DER SubjectPublicKeyInfo (the key hash keyrite uses everywhere).
    pub fn key_sha256(&self) -> Result<[u8; 32], QuorumError> {
        card_key_sha256(&self.public_point)
    }
}

/// SHA-256 of the DER SubjectPublicKeyInfo of a P-256 point, the same bytes
/// `openssl pkey -pubin -outform DER | sha256sum` hashes.
pub fn card_key_sha256(point: &[u8]) -> Result<[u8; 32], QuorumError> {
    let key = public_key(point, "the card's key-agreement key")?;
    let der = key
        .to_public_key_der()
        .map_err(|e| QuorumError::Encoding(format!("the card key cannot be encoded: {e}")))?;
    Ok(Sha256::digest(der.as_bytes()).into())
}

fn public_key(point: &[u8], what: &str) -> Result<PublicKey, QuorumError> {
    PublicKey::from_sec1_bytes(point)
        .map_err(|_| QuorumError::Encoding(format!("{what} is not a valid P-256 point")))
}

/// A decoded envelope: everything but the plaintext, which only the card can recover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The ephemeral point E the card multiplies by its private key.
    pub ephemeral: Vec<u8>,
    pub card_key_sha256: [u8; 32],
    pub token_label: String,
    pub serial: String,
    pub index: u16,
    pub commitments: Commitments,
    header: Vec<u8>,
    ciphertext: Vec<u8>,
}

fn short(out: &mut Vec<u8>, text: &str, what: &str) -> Result<(), QuorumError> {
    let len = u8::try_from(text.len()).map_err(|_| {
        QuorumError::Encoding(format!("the card's {what} is longer than 255 bytes"))
    })?;
    out.push(len);
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// AES-256-GCM key and nonce from the ECDH shared secret and the header.
fn keys(shared_x: &[u8], header: &[u8]) -> Result<Zeroizing<[u8; 44]>, QuorumError> {
    if shared_x.len() != 32 {
        return Err(QuorumError::Encoding(format!(
            "the ECDH shared secret has {} bytes; P-256 gives 32",
            shared_x.len()
        )));
    }
    let info = Sha256::digest(header);
    let mut okm = Zeroizing::new([0u8; 44]);
    hkdf::Hkdf::<Sha256>::new(Some(HKDF_SALT), shared_x)
        .expand(&info, okm.as_mut())
        .map_err(|_| QuorumError::Encoding("HKDF refused the output length".into()))?;
    Ok(okm)
}

fn cipher(okm: &[u8; 44]) -> Result<(Aes256Gcm, [u8; 12]), QuorumError> {
    let c = Aes256Gcm::new_from_slice(&okm[..32])
        .map_err(|_| QuorumError::Encoding("AES-256-GCM refused the key length".into()))?;
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&okm[32..]);
    Ok((c, nonce))
}

/// Seal `share` (of the split `commitments`) to the card `to`. Returns the envelope file's bytes.
pub fn seal(
    share: &Share,
    commitments: &Commitments,
    to: &Recipient,
) -> Result<Vec<u8>, QuorumError> {
    let card = public_key(&to.public_point, "the card's key-agreement key")?;
    let e = ephemeral_scalar()?;
    let ephemeral = (ProjectivePoint::GENERATOR * **e).to_affine();
    let shared = p256::ecdh::diffie_hellman(&*e, card.as_affine());
    drop(e);
    let mut header = Vec::with_capacity(256);
    header.extend_from_slice(MAGIC);
    header.push(ENVELOPE_FORMAT);
    header.push(SUITE_P256_HKDF_AES256GCM);
    header.extend_from_slice(ephemeral.to_sec1_point(false).as_bytes());
    header.extend_from_slice(&to.key_sha256()?);
    short(&mut header, &to.token_label, "token label")?;
    short(&mut header, &to.serial, "serial")?;
    header.extend_from_slice(&share.index.to_be_bytes());
    let c = commitments.encode();
    let c_len = u16::try_from(c.len())
        .map_err(|_| QuorumError::Encoding("the commitments are too long to seal".into()))?;
    header.extend_from_slice(&c_len.to_be_bytes());
    header.extend_from_slice(&c);
    let okm = keys(shared.raw_secret_bytes().as_slice(), &header)?;
    drop(shared);
    let (aead, nonce) = cipher(&okm)?;
    let plain = share.encode();
    let ciphertext = aead
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: plain.as_slice(),
                aad: &header,
            },
        )
        .map_err(|_| QuorumError::Encoding("AES-256-GCM sealing failed".into()))?;
    let ct_len = u16::try_from(ciphertext.len())
        .map_err(|_| QuorumError::Encoding("the sealed share is too long".into()))?;
    let mut out = header;
    out.extend_from_slice(&ct_len.to_be_bytes());
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// A non-zero scalar from the OS RNG, zeroized on drop.
fn ephemeral_scalar() -> Result<Zeroizing<NonZeroScalar>, QuorumError> {
    loop {
        let bytes = super::os_random::<32>()?;
        let repr = Zeroizing::new(p256::FieldBytes::from(*bytes));
        if let Some(s) = Option::<NonZeroScalar>::from(NonZeroScalar::from_repr(*repr)) {
            return Ok(Zeroizing::new(s));
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], QuorumError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| {
                QuorumError::Encoding(format!(
                    "the share envelope is truncated ({} bytes)",
                    self.bytes.len()
                ))
            })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, QuorumError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn text(&mut self, what: &str) -> Result<String, QuorumError> {
        let len = usize::from(self.take(1)?[0]);
        std::str::from_utf8(self.take(len)?)
            .map(str::to_string)
            .map_err(|_| QuorumError::Encoding(format!("the envelope's {what} is not UTF-8")))
    }
}

impl Envelope {
    /// Parse an envelope file. Only its structure is checked here: its integrity is the AEAD's,
    /// checked by [`Envelope::open`].
    pub fn decode(bytes: &[u8]) -> Result<Envelope, QuorumError> {
        if bytes.len() < 6 || &bytes[..4] != MAGIC {
            return Err(QuorumError::Encoding(
                "the file is not a keyrite share envelope".into(),
            ));
        }
        if bytes[4] != ENVELOPE_FORMAT || bytes[5] != SUITE_P256_HKDF_AES256GCM {
            return Err(QuorumError::Encoding(format!(
                "the share envelope has format {} suite {}; this keyrite reads format \
                 {ENVELOPE_FORMAT} suite {SUITE_P256_HKDF_AES256GCM}",
                bytes[4], bytes[5]
            )));
        }
        let mut r = Reader { bytes, at: 6 };
        let ephemeral = r.take(POINT_LEN)?.to_vec();
        public_key(&ephemeral, "the envelope's ephemeral key")?;
        let mut card_key_sha256 = [0u8; 32];
        card_key_sha256.copy_from_slice(r.take(32)?);
        let token_label = r.text("card label")?;
        let serial = r.text("card serial")?;
        let index = r.u16()?;
        let c_len = usize::from(r.u16()?);
        let commitments = Commitments::decode(r.take(c_len)?)?;
        let header = bytes[..r.at].to_vec();
        let ct_len = usize::from(r.u16()?);
        if ct_len < TAG_LEN {
            return Err(QuorumError::Encoding(
                "the share envelope's ciphertext is shorter than its tag".into(),
            ));
        }
        let ciphertext = r.take(ct_len)?.to_vec();
        if r.at != bytes.len() {
            return Err(QuorumError::Encoding(format!(
                "the share envelope has {} unexpected trailing bytes",
                bytes.len() - r.at
            )));
        }
        Ok(Envelope {
            ephemeral,
            card_key_sha256,
            token_label,
            serial,
            index,
            commitments,
            header,
            ciphertext,
        })
    }

    /// Open with the ECDH shared secret `x(d·E)` the card computed, and check that the share inside
    /// is the one the header announces. Feldman verification is the caller's, as for any share.
    pub fn open(&self, shared_x: &[u8]) -> Result<Share, QuorumError> {
        let okm = keys(shared_x, &self.header)?;
        let (aead, nonce) = cipher(&okm)?;
        let plain = Zeroizing::new(
            aead.decrypt(
                (&nonce).into(),
                Payload {
                    msg: &self.ciphertext,
                    aad: &self.header,
                },
            )
            .map_err(|_| {
                QuorumError::Encoding(
                    "the share envelope does not open with this card's key (AES-GCM \
                     authentication failed): it was sealed to another key, or altered"
                        .into(),
                )
            })?,
        );
        let share = Share::decode(&plain)?;
        if share.index != self.index
            || share.split != self.commitments.split
            || share.commitments_sha256 != self.commitments.sha256()
        {
            return Err(QuorumError::OtherSplit(
                "the sealed share does not match its envelope's header (index or split)".into(),
            ));
        }
        Ok(share)
    }

    /// SHA-256 of the card key, lowercase hex.
    pub fn card_key_hex(&self) -> String {
        hex::encode(self.card_key_sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::{split, Secret};
    use p256::SecretKey;

    fn card(seed: u8) -> (SecretKey, Recipient) {
        let mut bytes = [seed; 32];
        bytes[0] = 1;
        let sk = SecretKey::from_slice(&bytes).unwrap();
        let point = sk.public_key().as_affine().to_sec1_point(false);
        let r = Recipient {
            token_label: format!("card-{seed}"),
            serial: format!("serial-{seed}"),
            public_point: point.as_bytes().to_vec(),
        };
        (sk, r)
    }

    /// What the card computes: x(d·E).
    fn card_ecdh(sk: &SecretKey, env: &Envelope) -> Vec<u8> {
        let e = PublicKey::from_sec1_bytes(&env.ephemeral).unwrap();
        let shared = p256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), e.as_affine());
        shared.raw_secret_bytes().to_vec()
    }

    fn sealed() -> (Vec<Share>, Commitments, SecretKey, Recipient, Vec<u8>) {
        let secret = Secret::generate(&[7u8; 32]).unwrap();
        let (shares, c) = split(&secret, "SEAL-TEST", 2, 3, b"e").unwrap();
        let (sk, to) = card(3);
        let bytes = seal(&shares[1], &c, &to).unwrap();
        (shares, c, sk, to, bytes)
    }

    #[test]
    fn a_sealed_share_opens_with_its_card_and_verifies() {
        let (shares, c, sk, to, bytes) = sealed();
        let env = Envelope::decode(&bytes).unwrap();
        assert_eq!(env.index, 2);
        assert_eq!(env.token_label, to.token_label);
        assert_eq!(env.serial, to.serial);
        assert_eq!(env.commitments, c);
        assert_eq!(env.card_key_sha256, to.key_sha256().unwrap());
        let share = env.open(&card_ecdh(&sk, &env)).unwrap();
        assert_eq!(share.value_bytes(), shares[1].value_bytes());
        c.verify(&share).unwrap();
        // The share's value and its encoding appear nowhere in the envelope.
        let hay = hex::encode(&bytes);
        assert!(!hay.contains(&hex::encode(shares[1].value_bytes())));
        assert!(!hay.contains(&hex::encode(&*shares[1].encode())));
        // Two seals of one share differ (fresh ephemeral key each time).
        assert_ne!(seal(&shares[1], &c, &to).unwrap(), bytes);
    }

    #[test]
    fn another_card_cannot_open_it() {
        let (_, _, _, _, bytes) = sealed();
        let env = Envelope::decode(&bytes).unwrap();
        let (other, other_to) = card(9);
        assert_ne!(env.card_key_sha256, other_to.key_sha256().unwrap());
        let err = env.open(&card_ecdh(&other, &env)).unwrap_err();
        assert!(err
            .to_string()
            .contains("does not open with this card's key"));
        // Even with the header's key hash rewritten to the other card's, the AEAD refuses.
        let mut forged = bytes.clone();
        forged[6 + POINT_LEN..6 + POINT_LEN + 32].copy_from_slice(&other_to.key_sha256().unwrap());
        let env = Envelope::decode(&forged).unwrap();
        assert!(env.open(&card_ecdh(&other, &env)).is_err());
    }

    #[test]
    fn every_bit_flip_is_refused_and_truncation_is_caught() {
        let (_, _, sk, _, bytes) = sealed();
        for at in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[at] ^= bit;
                let opened = Envelope::decode(&b).and_then(|env| {
                    let x = card_ecdh(&sk, &env);
                    env.open(&x)
                });
                assert!(opened.is_err(), "flip at byte {at} (bit {bit:#x}) accepted");
            }
        }
        for len in 0..bytes.len() {
            assert!(Envelope::decode(&bytes[..len]).is_err(), "{len} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Envelope::decode(&longer)
            .unwrap_err()
            .to_string()
            .contains("trailing"));
    }

    #[test]
    fn a_wrong_shared_secret_length_or_bad_point_is_an_error() {
        let (_, _, _, to, bytes) = sealed();
        let env = Envelope::decode(&bytes).unwrap();
        assert!(env.open(&[0u8; 31]).is_err());
        let bad = Recipient {
            public_point: vec![4u8; 65],
            ..to
        };
        assert!(card_key_sha256(&bad.public_point).is_err());
        assert!(Envelope::decode(b"KRQS....").is_err());
    }
}

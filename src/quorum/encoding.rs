//! The bytes written to a custodian card (CKO_DATA values), versioned and checksummed.
//!
//! Share (format 1), all integers big-endian:
//! `"KRQS"` ‖ version u8 ‖ id length u8 ‖ ceremony id (UTF-8) ‖ nonce (16) ‖ index u16 ‖ M u16 ‖
//! N u16 ‖ commitments SHA-256 (32) ‖ share value (32, P-256 scalar) ‖ checksum (8).
//!
//! Commitments (format 1):
//! `"KRQC"` ‖ version u8 ‖ id length u8 ‖ ceremony id ‖ nonce (16) ‖ M u16 ‖ N u16 ‖
//! M × compressed SEC1 point (33) ‖ checksum (8).
//!
//! The checksum is the first 8 bytes of SHA-256 over everything before it: it catches damage, while
//! Feldman verification catches a share that was altered with a fixed-up checksum.

use super::{Commitments, QuorumError, Share, SplitId, NONCE_LEN};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub const SHARE_FORMAT: u8 = 1;
const SHARE_MAGIC: &[u8; 4] = b"KRQS";
const COMMITMENTS_MAGIC: &[u8; 4] = b"KRQC";
const CHECKSUM_LEN: usize = 8;
/// CKA_APPLICATION of every keyrite quorum data object.
pub const SHARE_APPLICATION: &str = "keyrite quorum";

/// CKA_LABEL of the share object a split of `ceremony_id` writes to a card.
pub fn share_label(ceremony_id: &str) -> String {
    format!("keyrite-share:{ceremony_id}")
}

/// CKA_LABEL of the commitments object stored beside the share.
pub fn commitments_label(ceremony_id: &str) -> String {
    format!("keyrite-commitments:{ceremony_id}")
}

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    let d = Sha256::digest(bytes);
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&d[..CHECKSUM_LEN]);
    out
}

fn header(out: &mut Vec<u8>, magic: &[u8; 4], split: &SplitId) {
    out.extend_from_slice(magic);
    out.push(SHARE_FORMAT);
    // Ceremony ids are checked by the script policy to be short; cut defensively at 255 bytes.
    let id = split.ceremony_id.as_bytes();
    let id = &id[..id.len().min(255)];
    out.push(id.len() as u8);
    out.extend_from_slice(id);
    out.extend_from_slice(&split.nonce);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], QuorumError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(QuorumError::Encoding(format!(
                "the {} is truncated ({} bytes)",
                self.what,
                self.bytes.len()
            )));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, QuorumError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, QuorumError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Magic, checksum and version first, so that damage is reported as damage.
    fn open(
        bytes: &'a [u8],
        magic: &[u8; 4],
        what: &'static str,
    ) -> Result<(Reader<'a>, SplitId), QuorumError> {
        if bytes.len() < 4 + 1 + CHECKSUM_LEN || &bytes[..4] != magic {
            return Err(QuorumError::Encoding(format!(
                "the object is not a keyrite {what}"
            )));
        }
        let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if checksum(body) != sum {
            return Err(QuorumError::Encoding(format!(
                "the {what} fails its checksum: the card's data is damaged or was altered"
            )));
        }
        let mut r = Reader {
            bytes: body,
            at: 4,
            what,
        };
        let version = r.u8()?;
        if version != SHARE_FORMAT {
            return Err(QuorumError::Encoding(format!(
                "the {what} has format version {version}; this keyrite reads version {SHARE_FORMAT}"
            )));
        }
        let id_len = usize::from(r.u8()?);
        let id = std::str::from_utf8(r.take(id_len)?)
            .map_err(|_| QuorumError::Encoding(format!("the {what}'s ceremony id is not UTF-8")))?
            .to_string();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(r.take(NONCE_LEN)?);
        Ok((
            r,
            SplitId {
                ceremony_id: id,
                nonce,
            },
        ))
    }

    fn end(&self) -> Result<(), QuorumError> {
        if self.at != self.bytes.len() {
            return Err(QuorumError::Encoding(format!(
                "the {} has {} unexpected trailing bytes",
                self.what,
                self.bytes.len() - self.at
            )));
        }
        Ok(())
    }
}

impl Share {
    /// The card object's value. Zeroized on drop.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(160));
        header(&mut out, SHARE_MAGIC, &self.split);
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.threshold.to_be_bytes());
        out.extend_from_slice(&self.total.to_be_bytes());
        out.extend_from_slice(&self.commitments_sha256);
        out.extend_from_slice(self.value.as_slice());
        let sum = checksum(&out);
        out.extend_from_slice(&sum);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Share, QuorumError> {
        let (mut r, split) = Reader::open(bytes, SHARE_MAGIC, "share")?;
        let index = r.u16()?;
        let threshold = r.u16()?;
        let total = r.u16()?;
        let mut commitments_sha256 = [0u8; 32];
        commitments_sha256.copy_from_slice(r.take(32)?);
        let mut value = Zeroizing::new([0u8; 32]);
        value.copy_from_slice(r.take(32)?);
        r.end()?;
        Ok(Share {
            split,
            index,
            threshold,
            total,
            commitments_sha256,
            value,
        })
    }
}

impl Commitments {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 33 * self.points.len());
        header(&mut out, COMMITMENTS_MAGIC, &self.split);
        out.extend_from_slice(&self.threshold.to_be_bytes());
        out.extend_from_slice(&self.total.to_be_bytes());
        for p in &self.points {
            out.extend_from_slice(p);
        }
        let sum = checksum(&out);
        out.extend_from_slice(&sum);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Commitments, QuorumError> {
        let (mut r, split) = Reader::open(bytes, COMMITMENTS_MAGIC, "commitments object")?;
        let threshold = r.u16()?;
        let total = r.u16()?;
        super::check_parameters(threshold, total)?;
        let mut points = Vec::with_capacity(usize::from(threshold));
        for _ in 0..threshold {
            let mut p = [0u8; 33];
            p.copy_from_slice(r.take(33)?);
            super::point_from(&p)?;
            points.push(p);
        }
        r.end()?;
        Ok(Commitments {
            split,
            threshold,
            total,
            points,
        })
    }
}

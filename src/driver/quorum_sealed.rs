//! Sealed custodian shares (`medium = "sealed"` in `[[quorum.cards]]`): the share is kept in an
//! envelope file sealed to the card's P-256 key-agreement key (src/quorum/envelope.rs), for cards
//! that cannot store data objects (PIV). The card, with its PIN, does CKM_ECDH1_DERIVE; the host
//! does HKDF and AES-GCM. Everything after the opening (commitments pin, index checks, Feldman) is
//! the same as for a share read off a card.
//!
//! * Split / reshare: find the card's key by label, or generate the per-split key
//!   `keyrite-seal:<split ceremony id>` on the card; seal; write the envelope atomically; read it
//!   back and open it with the card, exactly as an activation will.
//! * Retire: open the envelope (proving it is the retired split's), then destroy the per-split card
//!   key and read back that it is gone (so every copy of the envelope is dead), and overwrite and
//!   delete the envelope file. A key the script named (`key_label`, e.g. a PIV slot) is kept: it may
//!   seal other splits, so only the envelope is deleted, and the record says so.
//!
//! Resumption: split, reshare and retire are refused by `keyrite resume` (cards half-written), and
//! so are the envelopes: an envelope file that exists is never overwritten by a split; the room moves
//! it away after an abort (docs/operator-guide.md).

use super::actions::Context;
use super::quorum::{config, describe};
use super::quorum_cards::Refusal;
use super::rehearsal;
use crate::evidence::events::Record;
use crate::evidence::quorum::{CardRef, SealedRecord, SealedRetireRecord};
use crate::hsm::{AgreementKey, Hsm};
use crate::quorum::{envelope, Commitments, Envelope, Recipient, Share};
use crate::script::QuorumCard;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Label of the key-agreement key keyrite generates on a sealed card at a split.
pub const KEY_PREFIX: &str = "keyrite-seal:";
/// File name suffix of a share envelope.
pub const ENVELOPE_SUFFIX: &str = ".krse";

/// The card key's label, and whether keyrite owns it (generated per split, destroyed at retire).
pub(super) fn key_label(card: &QuorumCard, split_id: &str) -> (String, bool) {
    match &card.key_label {
        Some(l) => (l.clone(), false),
        None => (format!("{KEY_PREFIX}{split_id}"), true),
    }
}

/// Where the envelopes live: the rehearsal folder's `envelopes/`, or `quorum.envelope_dir`.
pub(super) fn envelope_dir(ctx: &Context<'_>) -> Result<PathBuf, String> {
    if ctx.mode.rehearsal {
        if let Some(dir) = rehearsal::running_dir() {
            return Ok(dir.join("envelopes"));
        }
    }
    let q = config(ctx)?;
    q.envelope_dir.as_ref().map(PathBuf::from).ok_or_else(|| {
        "a sealed quorum card needs quorum.envelope_dir in the script: the folder (on the medium the \
         custodians' envelopes are copied to) where share envelopes are written and read"
            .to_string()
    })
}

fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `<dir>/<split ceremony id>.<card label>.krse`: one envelope per card and split.
pub fn envelope_path(dir: &Path, split_id: &str, card: &QuorumCard) -> PathBuf {
    let label = card
        .token
        .label
        .clone()
        .unwrap_or_else(|| card.token.to_string());
    dir.join(format!(
        "{}.{}{ENVELOPE_SUFFIX}",
        safe(split_id),
        safe(&label)
    ))
}

/// A key fit to seal shares to: sensitive, not extractable, allowed to derive; one keyrite generated
/// must also prove it was made on the card and never left it.
fn check_key(card: &str, key: &AgreementKey, generated: bool) -> Result<(), String> {
    let a = &key.attributes;
    let ok = key.derive == Some(true)
        && a.sensitive == Some(true)
        && a.extractable == Some(false)
        && (!generated || a.prove_in_hsm_generation());
    if ok {
        return Ok(());
    }
    Err(format!(
        "{card}: key \"{}\" is not fit to seal a share to (CKA_DERIVE {:?}, CKA_SENSITIVE {:?}, \
         CKA_EXTRACTABLE {:?}, CKA_LOCAL {:?}, CKA_NEVER_EXTRACTABLE {:?}); it must be a \
         sensitive, non-extractable P-256 key with CKA_DERIVE — generate one on the card",
        key.label, key.derive, a.sensitive, a.extractable, a.local, a.never_extractable
    ))
}

fn io(what: &str, path: &Path, e: std::io::Error) -> String {
    format!(
        "could not {what} the share envelope {}: {e}",
        path.display()
    )
}

/// Create `path` with `bytes` (never replacing a file), fsynced, and the folder entry fsynced.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io("make the folder of", path, e))?;
    let tmp = path.with_extension("krse.new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("create", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io("write", &tmp, e))?;
    // hard_link fails if `path` exists: a concurrent writer can never be overwritten.
    std::fs::hard_link(&tmp, path).map_err(|e| io("place", path, e))?;
    std::fs::remove_file(&tmp).map_err(|e| io("tidy", &tmp, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync the folder of", path, e))
}

/// Open `env` with the card's key `label`: the card computes x(d·E); the host runs HKDF and AES-GCM.
/// A card whose key is not the one the envelope names is refused before the ECDH.
fn open_with_card(
    hsm: &mut dyn Hsm,
    named: &CardRef,
    label: &str,
    env: &Envelope,
    path: &Path,
) -> Result<Share, String> {
    let card = describe(named);
    let key = hsm
        .agreement_key(label)
        .map_err(|e| format!("{card}: {e}"))?
        .ok_or_else(|| {
            format!(
                "{card} has no key-agreement key \"{label}\", so it cannot open {} (a retired \
                 card, or not the card this envelope was sealed to)",
                path.display()
            )
        })?;
    let have = envelope::card_key_sha256(&key.public_point).map_err(|e| format!("{card}: {e}"))?;
    if have != env.card_key_sha256 {
        return Err(format!(
            "{card} cannot open {}: the envelope is sealed to card key {} (card \"{}\", serial {}), \
             and this card's key \"{label}\" is {} — present the card the envelope belongs to",
            path.display(),
            env.card_key_hex(),
            env.token_label,
            env.serial,
            hex::encode(have)
        ));
    }
    let shared = hsm
        .ecdh(label, &env.ephemeral)
        .map_err(|e| format!("{card}: {e}"))?;
    env.open(&shared)
        .map_err(|e| format!("{card}, envelope {}: {e}", path.display()))
}

fn read_envelope(path: &Path) -> Result<Option<(Vec<u8>, Envelope)>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", path, e)),
    };
    let env =
        Envelope::decode(&bytes).map_err(|e| format!("share envelope {}: {e}", path.display()))?;
    Ok(Some((bytes, env)))
}

/// Seal `share` to the card (its key found or generated), write the envelope, read it back and
/// open it with the card. Returns the evidence record.
pub(super) fn seal_to_card(
    ctx: &Context<'_>,
    hsm: &mut dyn Hsm,
    card: &QuorumCard,
    named: &CardRef,
    share: &Share,
    commitments: &Commitments,
) -> Result<Record, String> {
    let who = describe(named);
    let split_id = &commitments.split.ceremony_id;
    let path = envelope_path(&envelope_dir(ctx)?, split_id, card);
    if path.exists() {
        return Err(format!(
            "{who}: the share envelope {} already exists; nothing was written — move it away \
             (an envelope is never overwritten)",
            path.display()
        ));
    }
    let (label, ours) = key_label(card, split_id);
    let (key, generated) = match hsm.agreement_key(&label).map_err(|e| e.to_string())? {
        Some(k) => (k, false),
        None if ours => (
            hsm.generate_agreement_key(&label)
                .map_err(|e| e.to_string())?,
            true,
        ),
        None => {
            return Err(format!(
                "{who} has no P-256 key-agreement key labelled \"{label}\" (quorum card \
                 key_label): generate it on the card, or leave key_label out so keyrite makes one"
            ))
        }
    };
    check_key(&who, &key, generated)?;
    let to = Recipient {
        token_label: named.token_label.clone(),
        serial: named.serial.clone(),
        public_point: key.public_point.clone(),
    };
    let bytes = envelope::seal(share, commitments, &to).map_err(|e| format!("{who}: {e}"))?;
    write_new(&path, &bytes)?;
    // Read back from the file and open with the card, exactly as an activation will.
    let (stored, env) =
        read_envelope(&path)?.ok_or_else(|| format!("{who}: the envelope just written is gone"))?;
    let back = open_with_card(hsm, named, &label, &env, &path)?;
    if back.index != share.index {
        return Err(format!(
            "{who}: read back share {} where share {} was sealed",
            back.index, share.index
        ));
    }
    commitments
        .verify(&back)
        .map_err(|e| format!("{who}: read back: {e}"))?;
    Ok(Record::ShareSealed(SealedRecord {
        card: named.clone(),
        index: share.index,
        split_ceremony_id: split_id.clone(),
        commitments_sha256: commitments.sha256_hex(),
        envelope_file: path.display().to_string(),
        envelope_sha256: hex::encode(Sha256::digest(&stored)),
        suite: SUITE.into(),
        card_key_label: label,
        card_key_id: key.id_hex,
        card_key_sha256: env.card_key_hex(),
        card_key_generated: generated,
        card_key_attributes: key.attributes,
    }))
}

/// Recorded with every sealed share.
pub const SUITE: &str = "P-256 ECDH (CKM_ECDH1_DERIVE, CKD_NULL), HKDF-SHA256, AES-256-GCM";

/// The envelope of a sealed card for `split_id`: its commitments (checked by the caller before the
/// card is asked anything) and a way to open it.
pub(super) struct Held {
    path: PathBuf,
    env: Envelope,
    label: String,
}

impl Held {
    pub(super) fn commitments(&self) -> &Commitments {
        &self.env.commitments
    }

    pub(super) fn open(&self, hsm: &mut dyn Hsm, named: &CardRef) -> Result<Share, Refusal> {
        open_with_card(hsm, named, &self.label, &self.env, &self.path).map_err(Refusal::Card)
    }
}

/// The card's envelope of split `split_id`, `None` when there is no envelope file.
pub(super) fn held(
    ctx: &Context<'_>,
    card: &QuorumCard,
    named: &CardRef,
    split_id: &str,
) -> Result<Option<Held>, Refusal> {
    let refuse = |why: String| Refusal::Card(format!("{}: {why}", describe(named)));
    let path = envelope_path(&envelope_dir(ctx).map_err(refuse)?, split_id, card);
    let Some((_, env)) = read_envelope(&path).map_err(refuse)? else {
        return Ok(None);
    };
    Ok(Some(Held {
        path,
        env,
        label: key_label(card, split_id).0,
    }))
}

/// Overwrite the envelope with zeros, fsync, unlink, fsync the folder, and check it is gone.
fn shred(path: &Path) -> Result<(), String> {
    let len = std::fs::metadata(path)
        .map_err(|e| io("read", path, e))?
        .len();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io("open", path, e))?;
    let zeros = vec![0u8; usize::try_from(len).unwrap_or(0)];
    f.write_all(&zeros)
        .and_then(|()| f.sync_all())
        .map_err(|e| io("overwrite", path, e))?;
    drop(f);
    std::fs::remove_file(path).map_err(|e| io("delete", path, e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync the folder of", path, e))?;
    }
    if path.exists() {
        return Err(format!(
            "the share envelope {} still exists after deletion",
            path.display()
        ));
    }
    Ok(())
}

/// Retire a sealed share: open it (so only the retired split's genuine share is retired), destroy
/// keyrite's per-split card key and read back that it is gone, then shred the envelope. Returns the
/// share index and the record; `None` when the card has no envelope of the split.
pub(super) fn retire(
    ctx: &Context<'_>,
    hsm: &mut dyn Hsm,
    card: &QuorumCard,
    named: &CardRef,
    split_id: &str,
    sha: &str,
) -> Result<Option<(u16, Record)>, Refusal> {
    let who = describe(named);
    let Some(h) = held(ctx, card, named, split_id)? else {
        return Ok(None);
    };
    let c = h.commitments();
    if !c.sha256_hex().eq_ignore_ascii_case(sha) {
        return Err(Refusal::Card(format!(
            "{who}: the envelope {} is of split {}, not of the retired split {sha}; nothing was destroyed",
            h.path.display(),
            c.sha256_hex()
        )));
    }
    let share = h.open(hsm, named)?;
    c.verify(&share)
        .map_err(|e| Refusal::Card(format!("{who}: {e}; nothing was destroyed")))?;
    let (label, ours) = key_label(card, split_id);
    let err = |e: crate::hsm::HsmError| Refusal::Card(format!("{who}: {e}"));
    let key_destroyed = if ours {
        hsm.destroy_agreement_key(&label).map_err(err)?;
        if hsm.agreement_key(&label).map_err(err)?.is_some() {
            return Err(Refusal::Card(format!(
                "{who} still holds key \"{label}\" after C_DestroyObject; the share is NOT retired"
            )));
        }
        true
    } else {
        false
    };
    shred(&h.path).map_err(|why| Refusal::Card(format!("{who}: {why}")))?;
    let method = if key_destroyed {
        format!(
            "card key \"{label}\" destroyed and read back as gone (no copy of the envelope opens \
             any more); envelope overwritten and deleted"
        )
    } else {
        format!(
            "envelope overwritten and deleted; card key \"{label}\" kept (named by the script, it \
             may seal other splits), so a copy of the envelope would still open with this card"
        )
    };
    Ok(Some((
        share.index,
        Record::SealedShareRetired(SealedRetireRecord {
            card: named.clone(),
            index: share.index,
            envelope_file: h.path.display().to_string(),
            card_key_label: label,
            card_key_destroyed: key_destroyed,
            envelope_deleted: true,
            method,
        }),
    )))
}

//! Quorum steps that write shares: `split_activation` (root ceremony) and `reshare`, plus the helpers
//! every quorum step uses to reach a custodian card, and `sign_test_message`.
//!
//! Order of a split, so that a failure never leaves the HSM with PINs nobody can reconstruct: prove
//! both current PINs and size the derived ones to the token, make the secret, split it, write every
//! card and read every card back against the commitments, and only then replace the HSM's PINs (SO
//! first; see `quorum_pins`). A reshare does the same with a new secret.

use super::actions::{failed, intent, rehearsal_token, Context, Performed, SOFTHSM_MANUFACTURER};
use super::operator::{Notice, Operator};
use super::pins::{PinRequest, PinSource};
use super::quorum_pins::{change_pins, prove_current, PinJob, Pins, SoNow};
use super::quorum_sealed;
use super::rehearsal::{self, rehearsal_label};
use super::{Opener, State};
use crate::evidence::events::Record;
use crate::evidence::quorum::{CardRef, HsmPinsSet, SplitRecord};
use crate::hsm::{Hsm, TokenIdentity};
use crate::quorum::{self, commitments_label, share_label, Commitments, Secret, Share};
use crate::script::{
    KeyAlgorithm, QuorumCard, QuorumConfig, QuorumSet, ShareMedium, TokenSelector,
};
use crate::x509::{self, HsmKey};
use secrecy::SecretString;

/// Log statement of a split: the PINs were derived and set by keyrite and never shown.
pub(super) const NOBODY_SAW: &str =
    "no person saw either PIN: both were derived inside keyrite from the secret and never shown, \
     logged or stored";

pub(super) fn config<'a>(ctx: &Context<'a>) -> Result<&'a QuorumConfig, String> {
    ctx.script.quorum.as_ref().ok_or_else(|| {
        format!(
            "step \"{}\" needs a [quorum] section in the script",
            ctx.step.id
        )
    })
}

/// The split the cards of `[quorum]` hold: `split_ceremony`, else this ceremony.
pub(super) fn split_ceremony<'a>(ctx: &Context<'a>, q: &'a QuorumConfig) -> &'a str {
    q.split_ceremony
        .as_deref()
        .unwrap_or(ctx.script.ceremony.id.as_str())
}

/// How to find a card: in a rehearsal, the throw-away token made for it (by label).
fn card_selector(ctx: &Context<'_>, card: &QuorumCard) -> TokenSelector {
    if ctx.mode.rehearsal {
        TokenSelector {
            label: Some(rehearsal_label(&card.token)),
            ..TokenSelector::default()
        }
    } else {
        card.token.clone()
    }
}

fn card_module(ctx: &Context<'_>) -> String {
    match ctx.script.quorum.as_ref().and_then(|q| q.module.clone()) {
        Some(m) if !ctx.mode.rehearsal => m,
        // An ML-DSA rehearsal's HSM is Kryoptic; its custodian cards stay on SoftHSM2.
        _ if ctx.mode.rehearsal
            && crate::driver::rehearsal::pqc::active()
            && !ctx.mode.cards.module.is_empty() =>
        {
            ctx.mode.cards.module.clone()
        }
        _ => ctx.mode.module.clone(),
    }
}

/// A card named as the script names it, before it was opened.
pub(super) fn scripted_ref(card: &QuorumCard) -> CardRef {
    CardRef {
        holder: card.holder.clone(),
        token_label: card
            .token
            .label
            .clone()
            .unwrap_or_else(|| card.token.to_string()),
        serial: card.token.serial.clone().unwrap_or_default(),
        bag: card.bag.clone(),
    }
}

pub(super) fn describe(card: &CardRef) -> String {
    if card.serial.is_empty() {
        format!("card \"{}\" of {}", card.token_label, card.holder)
    } else {
        format!(
            "card \"{}\" (serial {}) of {}",
            card.token_label, card.serial, card.holder
        )
    }
}

/// Open the card and log in with its holder's PIN. A wrong PIN reports what the card says about
/// its remaining tries.
pub(super) fn open_card(
    ctx: &Context<'_>,
    card: &QuorumCard,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
) -> Result<(Box<dyn Hsm + Send>, CardRef), (CardRef, String)> {
    let mut named = scripted_ref(card);
    let mut hsm = opener(&card_module(ctx), &card_selector(ctx, card)).map_err(|e| {
        (
            named.clone(),
            format!("{} cannot be opened: {e}", describe(&named)),
        )
    })?;
    let id = hsm.identity().clone();
    named.token_label = id.token_label.clone();
    named.serial = id.serial.clone();
    if ctx.mode.rehearsal && id.manufacturer != SOFTHSM_MANUFACTURER {
        return Err((
            named.clone(),
            format!(
                "{} is made by \"{}\"; rehearsals use only throw-away SoftHSM2 cards",
                describe(&named),
                id.manufacturer
            ),
        ));
    }
    let pin = pins
        .pin(&PinRequest::CustodianCard {
            holder: &card.holder,
            card: &id,
        })
        .map_err(|e| (named.clone(), format!("{}: {e}", describe(&named))))?;
    let login = hsm.login(&pin);
    drop(pin);
    if let Err(e) = login {
        let tries = hsm.pin_state().ok().and_then(|s| s.describe());
        let why = if e.ckr == "CKR_PIN_INCORRECT" || e.ckr == "CKR_PIN_LOCKED" {
            match tries {
                Some(t) => format!("wrong PIN for {}; {t}", describe(&named)),
                None => format!("wrong PIN for {}", describe(&named)),
            }
        } else {
            format!("{} refused the login: {e}", describe(&named))
        };
        return Err((named, why));
    }
    Ok((hsm, named))
}

/// Write share `i` and the commitments to each card of `set`, then read each back and verify it.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_cards(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
    set: &QuorumSet,
    shares: &[Share],
    commitments: &Commitments,
) -> crate::error::Result<Result<Vec<CardRef>, String>> {
    let id = &commitments.split.ceremony_id;
    let mut written = Vec::new();
    for (i, (card, share)) in set.cards.iter().zip(shares).enumerate() {
        operator.notice(Notice::Info {
            text: &format!(
                "card {} of {}: {}, insert your card \"{}\" (bag {})",
                i + 1,
                set.cards.len(),
                card.holder,
                scripted_ref(card).token_label,
                card.bag
            ),
        });
        let (mut hsm, named) = match open_card(ctx, card, pins, opener) {
            Ok(x) => x,
            Err((_, why)) => return Ok(Err(why)),
        };
        let sealed = card.medium == ShareMedium::Sealed;
        intent(
            state,
            ctx,
            if sealed { "seal_share" } else { "write_share" },
            format!(
                "share {} of {} to {}{}",
                i + 1,
                set.cards.len(),
                describe(&named),
                if sealed {
                    " (sealed to the card's key-agreement key, as an envelope file)"
                } else {
                    ""
                }
            ),
        )?;
        let result = if sealed {
            quorum_sealed::seal_to_card(ctx, hsm.as_mut(), card, &named, share, commitments)
                .map(Some)
        } else {
            write_one(hsm.as_mut(), id, share, commitments)
                .map(|()| None)
                .map_err(|why| format!("{}: {why}", describe(&named)))
        };
        let _ = hsm.logout();
        match result {
            Err(why) => return Ok(Err(why)),
            Ok(Some(rec)) => state.record(Some(ctx.step.id.clone()), vec![], &rec)?,
            Ok(None) => {}
        }
        written.push(named);
    }
    Ok(Ok(written))
}

fn write_one(
    hsm: &mut dyn Hsm,
    ceremony_id: &str,
    share: &Share,
    commitments: &Commitments,
) -> Result<(), String> {
    let (sl, cl) = (share_label(ceremony_id), commitments_label(ceremony_id));
    hsm.write_data(&sl, &share.encode())
        .map_err(|e| e.to_string())?;
    hsm.write_data(&cl, &commitments.encode())
        .map_err(|e| e.to_string())?;
    // Read back what the card now holds, exactly as an activation will.
    let back = hsm
        .read_data(&sl)
        .map_err(|e| e.to_string())?
        .ok_or("the share just written cannot be read back")?;
    let back = Share::decode(&back).map_err(|e| format!("read back: {e}"))?;
    let stored = hsm
        .read_data(&cl)
        .map_err(|e| e.to_string())?
        .ok_or("the commitments just written cannot be read back")?;
    if Commitments::decode(&stored).as_ref() != Ok(commitments) {
        return Err("the commitments read back differ from those written".into());
    }
    if back.index != share.index {
        return Err(format!(
            "read back share {} where share {} was written",
            back.index, share.index
        ));
    }
    commitments
        .verify(&back)
        .map_err(|e| format!("read back: {e}"))
}

/// The parts of a new split.
pub(super) type NewSplit = (Secret, Vec<Share>, Commitments);

/// A fresh secret from the HSM's RNG (mixed with the OS RNG inside), split M-of-N for `ceremony_id`.
/// The outer error is the HSM's, the inner one the split's.
pub(super) fn draw_and_split(
    hsm: &mut dyn Hsm,
    ceremony_id: &str,
    m: u16,
    n: u16,
) -> Result<Result<NewSplit, String>, crate::hsm::HsmError> {
    let r = hsm.random(64)?;
    Ok(Secret::generate(&r[..32])
        .and_then(|s| quorum::split(&s, ceremony_id, m, n, &r[32..]).map(|(sh, c)| (s, sh, c)))
        .map_err(|e| e.to_string()))
}

pub(super) fn split_record(
    purpose: &str,
    commitments: &Commitments,
    cards: Vec<CardRef>,
    hsm: Option<HsmPinsSet>,
    replaces: Option<String>,
) -> Record {
    Record::QuorumSplit(SplitRecord {
        purpose: purpose.into(),
        split_ceremony_id: commitments.split.ceremony_id.clone(),
        nonce: hex::encode(commitments.split.nonce),
        threshold: commitments.threshold,
        total: commitments.total,
        commitments: hex::encode(commitments.encode()),
        commitments_sha256: commitments.sha256_hex(),
        cards,
        hsm,
        replaces_commitments_sha256: replaces,
    })
}

pub(super) fn counts(set: &QuorumSet) -> Result<(u16, u16), String> {
    let n = u16::try_from(set.cards.len()).map_err(|_| "too many cards".to_string())?;
    quorum::check_parameters(set.threshold, n).map_err(|e| e.to_string())?;
    Ok((set.threshold, n))
}

pub(super) fn split_activation(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
) -> Performed {
    let q = match config(ctx) {
        Ok(q) => q,
        Err(why) => return Ok(Err(why)),
    };
    let set = q.current();
    let (m, n) = match counts(&set) {
        Ok(x) => x,
        Err(why) => return Ok(Err(why)),
    };
    // A split of this ceremony that stopped during its PIN change is finished, not made again.
    match unfinished_split(ctx, q) {
        Ok(Some((sha, so_now))) => {
            return super::quorum_finish::finish(state, ctx, operator, pins, opener, &sha, so_now)
        }
        Ok(None) => {}
        Err(why) => return Ok(Err(why)),
    }
    // No session yet: a factory-fresh token, initialised now with throw-away PINs held only in
    // memory (the HSM's RNG needs a session), which the derived PINs then replace.
    let fresh = if state.hsm.is_none() {
        match fresh_token(state, ctx, operator, opener)? {
            Ok(pins) => Some(pins),
            Err(why) => return Ok(Err(why)),
        }
    } else {
        None
    };
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let token = hsm.identity().clone();
    let fresh_init = fresh.is_some();
    let old = match fresh {
        Some((user, so)) => Pins { user, so },
        None => match (
            pins.pin(&PinRequest::HsmUser(&token)),
            pins.pin(&PinRequest::HsmSecurityOfficer(&token)),
        ) {
            (Ok(user), Ok(so)) => Pins { user, so },
            (Err(e), _) | (_, Err(e)) => return Ok(Err(e.to_string())),
        },
    };
    // Both current PINs proven and the PIN length known before any card is written.
    let pin_length = match prove_current(state, ctx, &old)? {
        Ok(len) => len,
        Err(why) => return Ok(Err(why)),
    };
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err("the HSM session was lost".into()));
    };
    let (secret, shares, commitments) =
        match draw_and_split(hsm.as_mut(), &ctx.script.ceremony.id, m, n) {
            Ok(Ok(x)) => x,
            Ok(Err(why)) => return Ok(Err(why)),
            Err(e) => return failed(state, ctx, "split_activation", e),
        };
    // The HSM session stays open while the cards are written.
    let cards = match write_cards(
        state,
        ctx,
        operator,
        pins,
        opener,
        &set,
        &shares,
        &commitments,
    )? {
        Ok(c) => c,
        Err(why) => return Ok(Err(format!("{why}; the HSM's PINs were not changed"))),
    };
    drop(shares);
    let job = PinJob::new("split", ctx, &commitments, m, token.clone(), pin_length);
    let new = Pins::derived(&secret, pin_length);
    if let Err(why) = change_pins(
        state,
        ctx,
        operator,
        pins,
        &job,
        SoNow::Old,
        Some(&old.so),
        &new,
    )? {
        return Ok(Err(why));
    }
    drop((old, new));
    let method = if fresh_init {
        "C_InitToken and C_InitPIN with throw-away PINs held only in memory, then C_SetPIN (SO) and C_InitPIN (user)"
    } else {
        "C_SetPIN (SO), then C_InitPIN (user) as SO"
    };
    let rec = split_record(
        "split",
        &commitments,
        cards,
        Some(pins_set(&token, method, pin_length)),
        None,
    );
    state.record(Some(ctx.step.id.clone()), vec![], &rec)?;
    show_pin(operator, &commitments);
    state.quorum = Some((secret, commitments));
    Ok(Ok(()))
}

/// The trusted record of an interrupted split of this ceremony, with what its SO PIN is: in a
/// rehearsal the folder's record; in a run, `quorum.commitments_sha256` in a split script.
fn unfinished_split(
    ctx: &Context<'_>,
    q: &QuorumConfig,
) -> Result<Option<(String, SoNow)>, String> {
    if ctx.mode.rehearsal {
        let rec = rehearsal::recorded_split(&ctx.script.ceremony.id).map_err(|e| e.to_string())?;
        // Also when the folder says "done": a run stopped after the PIN change but before its
        // `quorum_split` entry is finished (re-proven and recorded) the same way.
        return Ok(rec
            .filter(|r| r.replaced_by.is_none())
            .map(|r| (r.commitments_sha256, SoNow::from_record(&r.so_pin))));
    }
    Ok(q.commitments_sha256
        .clone()
        .map(|sha| (sha.to_ascii_lowercase(), SoNow::Unknown)))
}

pub(super) fn pins_set(token: &TokenIdentity, method: &str, pin_length: usize) -> HsmPinsSet {
    HsmPinsSet {
        token_label: token.token_label.clone(),
        serial: token.serial.clone(),
        model: token.model.clone(),
        firmware_version: token.firmware_version.clone(),
        method: method.into(),
        statement: NOBODY_SAW.into(),
        pin_length: Some(pin_length),
    }
}

/// The split's commitments hash, ready to copy into the scripts that use its cards.
pub(super) fn show_pin(operator: &mut dyn Operator, commitments: &Commitments) {
    operator.notice(Notice::Info {
        text: &format!(
            "copy into [quorum] of every activation, health-check, reshare and retire script for these cards: \
             commitments_sha256 = \"{}\"",
            commitments.sha256_hex()
        ),
    });
}

/// C_InitToken + C_InitPIN on the module's first uninitialised token, labelled as the script's token,
/// with random throw-away PINs; then open it and log in. Returns the (user, SO) PINs.
fn fresh_token(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    opener: &mut Opener<'_>,
) -> crate::error::Result<Result<(SecretString, SecretString), String>> {
    let Some(label) = crate::hsm::pkcs11::wanted_label(&ctx.mode.token) else {
        return Ok(Err(
            "a split on a fresh token names the token by label (it has no serial yet)".into(),
        ));
    };
    let (user, so) = match (throwaway_pin(), throwaway_pin()) {
        (Ok(u), Ok(s)) => (u, s),
        (Err(e), _) | (_, Err(e)) => return Ok(Err(e.to_string())),
    };
    intent(
        state,
        ctx,
        "init_token",
        format!(
            "C_InitToken and C_InitPIN on the first uninitialised token of {}, label \"{label}\"",
            ctx.mode.module
        ),
    )?;
    let serial = match crate::hsm::pkcs11::init_token(&ctx.mode.module, &label, &so, &user) {
        Ok(s) => s,
        Err(e) => return failed(state, ctx, "init_token", e).map(|r| r.map(|()| (user, so))),
    };
    let selector = TokenSelector {
        label: Some(label),
        serial: Some(serial),
        uri: None,
    };
    intent(
        state,
        ctx,
        "open_and_login",
        format!("module {}, token {selector}", ctx.mode.module),
    )?;
    let mut hsm = match opener(&ctx.mode.module, &selector) {
        Ok(h) => h,
        Err(e) => return failed(state, ctx, "open_and_login", e).map(|r| r.map(|()| (user, so))),
    };
    if ctx.mode.rehearsal && !rehearsal_token(&hsm.identity().manufacturer) {
        return Ok(Err(
            "rehearsals initialise only SoftHSM2 tokens (Kryoptic ones for ML-DSA keys)".into(),
        ));
    }
    if let Err(e) = hsm.login(&user) {
        return failed(state, ctx, "open_and_login", e).map(|r| r.map(|()| (user, so)));
    }
    let id = hsm.identity().clone();
    operator.notice(Notice::Info {
        text: &format!(
            "HSM: {} {}, serial {}, firmware {}, token \"{}\" initialised — compare with the label on the device",
            id.manufacturer, id.model, id.serial, id.firmware_version, id.token_label
        ),
    });
    state.hsm = Some(hsm);
    state.record(
        Some(ctx.step.id.clone()),
        vec![],
        &Record::HsmActivated {
            token: id,
            hsm: super::tokens::current(state),
        },
    )?;
    Ok(Ok((user, so)))
}

fn throwaway_pin() -> Result<SecretString, String> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 16]);
    getrandom::fill(bytes.as_mut()).map_err(|e| format!("the OS RNG failed: {e}"))?;
    let pin = zeroize::Zeroizing::new(hex::encode(bytes.as_slice()));
    Ok(SecretString::from(pin.as_str()))
}

/// Sign a fixed test message with the step's key and verify the signature with its public key.
pub(super) fn sign_test_message(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn super::operator::Operator,
) -> Performed {
    let Some(label) = ctx.step.key.as_deref() else {
        return Ok(Err("the step names no key".into()));
    };
    if state.hsm.is_none() {
        return Ok(Err("the HSM is not activated".into()));
    }
    // An existing key is found and checked against its pinned hash (actions/keys.rs).
    let info =
        match super::actions::keys::known_key(state, ctx.script, &ctx.step.id, label, operator)? {
            Ok(i) => i,
            Err(why) => return Ok(Err(why)),
        };
    let algorithm: KeyAlgorithm = info.algorithm;
    let key = HsmKey::new(
        &info.label,
        algorithm,
        algorithm.default_hash(),
        info.spki_der.clone(),
    );
    let key_hash = crate::hsm::spki::key_hash(&info.spki_der);
    let message = format!(
        "keyrite test message: ceremony {}, step {}",
        ctx.script.ceremony.id, ctx.step.id
    );
    intent(
        state,
        ctx,
        "sign_test_message",
        format!("with key {label} ({key_hash})"),
    )?;
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let signature = match key.sign(hsm.as_mut(), message.as_bytes()) {
        Ok(s) => s,
        Err(e) => return failed(state, ctx, "sign_test_message", e),
    };
    let oid = key.signature_oid();
    let verified =
        x509::signer::verify_signature(&info.spki_der, &oid, message.as_bytes(), &signature);
    state.record(
        Some(ctx.step.id.clone()),
        vec![],
        &Record::TestMessageSigned {
            key: label.into(),
            message,
            signature_algorithm: x509::signer::algorithm_name(&oid),
            signature: hex::encode(&signature),
            verified: verified.is_ok(),
            key_hash,
        },
    )?;
    Ok(verified.map_err(|e| format!("the test signature does not verify with key {label}: {e}")))
}

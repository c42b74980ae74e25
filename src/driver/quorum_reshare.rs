//! `reshare`: the old shares (combined and Feldman-verified by the activate_quorum step before) give
//! way to a new activation secret, split onto the new cards, each written and read back; then both
//! HSM PINs become the new secret's (SO first, recorded as in a split). From then on the old shares
//! open nothing, and a rehearsal folder records the old split as replaced, so its cards are refused
//! before any HSM login. A later retire_shares step destroys them.

use super::actions::{failed, Context, Performed};
use super::operator::Operator;
use super::pins::PinSource;
use super::quorum::{
    config, counts, draw_and_split, pins_set, show_pin, split_record, write_cards,
};
use super::quorum_pins::{change_pins, pin_length, PinJob, Pins, SoNow};
use super::rehearsal;
use super::{Opener, State};

/// Rotate the activation secret: the old shares (combined and Feldman-verified by the
/// activate_quorum step before) give way to a new secret, split onto the new cards, each written and
/// read back; then both HSM PINs become the new secret's. A later retire_shares step destroys the
/// old shares; from the PIN change on, they open nothing.
pub(super) fn reshare(
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
    let Some(set) = q.reshare.as_ref() else {
        return Ok(Err(
            "a reshare step needs [quorum.reshare] with the new cards".into(),
        ));
    };
    let (m, n) = match counts(set) {
        Ok(x) => x,
        Err(why) => return Ok(Err(why)),
    };
    if state.quorum.is_none() {
        return Ok(Err(
            "reshare needs the secret: put an activate_quorum step before it in this ceremony"
                .into(),
        ));
    }
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err("the HSM is not activated".into()));
    };
    let pin_length = match pin_length(hsm.as_mut()) {
        Ok(l) => l,
        Err(why) => return Ok(Err(why)),
    };
    let token = hsm.identity().clone();
    let (secret, shares, commitments) =
        match draw_and_split(hsm.as_mut(), &ctx.script.ceremony.id, m, n) {
            Ok(Ok(x)) => x,
            Ok(Err(why)) => return Ok(Err(why)),
            Err(e) => return failed(state, ctx, "reshare", e),
        };
    let cards = match write_cards(
        state,
        ctx,
        operator,
        pins,
        opener,
        set,
        &shares,
        &commitments,
    )? {
        Ok(c) => c,
        Err(why) => {
            return Ok(Err(format!(
                "{why}; the HSM's PINs were not changed and the old shares remain valid"
            )))
        }
    };
    drop(shares);
    let Some((old_secret, old)) = state.quorum.as_ref() else {
        return Ok(Err("the secret of the old shares was lost".into()));
    };
    let old_sha = old.sha256_hex();
    let (_, old_so) = old_secret.hsm_pins(pin_length);
    let job = PinJob::new("reshare", ctx, &commitments, m, token.clone(), pin_length);
    let new = Pins::derived(&secret, pin_length);
    if let Err(why) = change_pins(
        state,
        ctx,
        operator,
        pins,
        &job,
        SoNow::Old,
        Some(&old_so),
        &new,
    )? {
        return Ok(Err(why));
    }
    drop((old_so, new));
    let method = "new secret; C_SetPIN (SO), then C_InitPIN (user) as SO";
    let rec = split_record(
        "reshare",
        &commitments,
        cards,
        Some(pins_set(&token, method, pin_length)),
        Some(old_sha.clone()),
    );
    state.record(Some(ctx.step.id.clone()), vec![], &rec)?;
    if ctx.mode.rehearsal {
        let split = rehearsal::RehearsalSplit {
            ceremony_id: ctx.script.ceremony.id.clone(),
            commitments_sha256: commitments.sha256_hex(),
            stage: "done".into(),
            so_pin: "derived".into(),
            user_pin: "derived".into(),
            replaced_by: None,
        };
        rehearsal::note_split(&split, Some(&old_sha), rehearsal::Durability::AtExit)?;
    }
    show_pin(operator, &commitments);
    // The old secret is forgotten (zeroized) here; the session now runs on the new PINs.
    state.quorum = Some((secret, commitments));
    Ok(Ok(()))
}

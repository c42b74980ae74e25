//! Finishing a split (or reshare) whose HSM PIN change was interrupted: a crash, a power cut, or a
//! token error after the cards were written. The cards hold the split; its commitments come from a
//! trusted source (the script's `quorum.commitments_sha256`, or the rehearsal folder's record), and
//! M custodians present their cards as for an activation. The derived SO PIN then logs in — or, while
//! the SO PIN is still the old one, the room types the old SO PIN and C_SetPIN replaces it — and
//! C_InitPIN sets the derived user PIN. The old user PIN is never needed.

use super::actions::{intent, open_hsm, Context, Performed};
use super::operator::{Notice, Operator};
use super::pins::PinSource;
use super::quorum::{config, pins_set, scripted_ref, show_pin, split_record};
use super::quorum_cards::{combine_cards, expect_pinned};
use super::quorum_pins::{change_pins, pin_length, PinJob, Pins, SoNow};
use super::{Opener, State};
use crate::evidence::events::Record;

/// Finish the split `sha` of this ceremony; `so_now` is what the record says of the SO PIN.
pub(super) fn finish(
    state: &mut State,
    ctx: &Context<'_>,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    opener: &mut Opener<'_>,
    sha: &str,
    so_now: SoNow,
) -> Performed {
    let q = match config(ctx) {
        Ok(q) => q,
        Err(why) => return Ok(Err(why)),
    };
    operator.notice(Notice::Warning {
        text: &format!(
            "split {sha} of this ceremony stopped during its PIN change: it is finished now, not made again — {} custodians present their cards",
            q.threshold
        ),
    });
    let (exp, cards, m) = match expect_pinned(ctx, sha) {
        Ok(x) => x,
        Err(why) => return Ok(Err(why)),
    };
    let (secret, commitments) =
        match combine_cards(state, ctx, operator, pins, opener, exp, cards, m)? {
            Ok(x) => x,
            Err(why) => return Ok(Err(why)),
        };
    if state.hsm.is_none() {
        let detail = format!(
            "module {}, token {} (no login: the SO finishes the PIN change)",
            ctx.mode.module, ctx.mode.token
        );
        match open_hsm(state, ctx, operator, opener, detail)? {
            Ok(h) => state.hsm = Some(h),
            Err(why) => return Ok(Err(why)),
        }
    }
    let Some(hsm) = state.hsm.as_mut() else {
        return Ok(Err("the HSM is not open".into()));
    };
    let pin_length = match pin_length(hsm.as_mut()) {
        Ok(l) => l,
        Err(why) => return Ok(Err(why)),
    };
    let token = hsm.identity().clone();
    let job = PinJob::new("finish", ctx, &commitments, m, token.clone(), pin_length);
    let new = Pins::derived(&secret, pin_length);
    if let Err(why) = change_pins(state, ctx, operator, pins, &job, so_now, None, &new)? {
        return Ok(Err(why));
    }
    drop(new);
    // change_pins ended with C_Login as user with the derived PIN, its proof: the session is active.
    intent(
        state,
        ctx,
        "open_and_login",
        format!(
            "token {} stays logged in as user with the derived PIN (the PIN change's proof login)",
            token.serial
        ),
    )?;
    state.record(
        Some(ctx.step.id.clone()),
        vec![],
        &Record::HsmActivated {
            token: token.clone(),
            hsm: super::tokens::current(state),
        },
    )?;
    let method = "finished an interrupted split: C_Login as SO (C_SetPIN if the SO PIN was still the old one), then C_InitPIN (user) as SO";
    let written = cards.iter().map(scripted_ref).collect();
    let rec = split_record(
        "split",
        &commitments,
        written,
        Some(pins_set(&token, method, pin_length)),
        None,
    );
    state.record(Some(ctx.step.id.clone()), vec![], &rec)?;
    show_pin(operator, &commitments);
    state.quorum = Some((secret, commitments));
    Ok(Ok(()))
}

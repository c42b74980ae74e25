//! Several tokens in one ceremony (issue 12). Each token has its own session; `State::hsm` holds the
//! session of the token the current step acts on, and the other tokens' sessions are parked here.
//! Before a step starts and before its action runs, [`enter`] brings the step's token forward, so
//! every action works on "the" session as it always did, and the ctx's `mode` names that token's
//! module and selector. Log records name a token other than the primary (`hsm`), so a one-token
//! bundle reads as before.

use super::actions::Context;
use super::{RunMode, State};
use crate::error::Result;
use crate::hsm::Hsm;
use crate::script::{Script, Step, TokenSelector};
use std::collections::BTreeMap;

/// A token's session while another token's step runs, with the quorum secret that activated it.
#[derive(Default)]
pub(crate) struct Parked {
    hsm: Option<Box<dyn Hsm + Send>>,
    quorum: Option<(crate::quorum::Secret, crate::quorum::Commitments)>,
}

/// The module and selector of every `[[hsms]]` token, as the script gives them (`keyrite run`).
pub fn script_tokens(script: &Script) -> BTreeMap<String, (String, TokenSelector)> {
    script
        .hsms
        .iter()
        .map(|h| (h.name.clone(), (h.module.clone(), h.token.clone())))
        .collect()
}

impl RunMode {
    /// This mode as a step on the token `name` sees it: `module` and `token` are that token's.
    pub(crate) fn for_token(&self, script: &Script, name: &str) -> Option<RunMode> {
        if name == script.primary_token() {
            return None;
        }
        let (module, token) = self.tokens.get(name)?.clone();
        Some(RunMode {
            module,
            token,
            ..self.clone()
        })
    }
}

/// Bring the session of the token `step` acts on forward into `state.hsm` (parking the current
/// one). Returns the mode for the step's context when the token is not the primary.
pub(crate) fn enter(
    state: &mut State,
    mode: &RunMode,
    script: &Script,
    step: &Step,
) -> Option<RunMode> {
    let name = script.step_token(step);
    let wanted = script.token_record_name(name);
    if state.current_token != wanted {
        let parked = Parked {
            hsm: state.hsm.take(),
            quorum: state.quorum.take(),
        };
        let previous = std::mem::replace(&mut state.current_token, wanted.clone());
        state.parked.insert(previous, parked);
        let Parked { hsm, quorum } = state.parked.remove(&wanted).unwrap_or_default();
        state.hsm = hsm;
        state.quorum = quorum;
    }
    mode.for_token(script, name)
}

/// The token name the current session's log records carry (`None`: the primary).
pub(crate) fn current(state: &State) -> Option<String> {
    state.current_token.clone()
}

/// A step's context with its token's mode, when the step acts on a `[[hsms]]` token.
pub(super) fn context<'a>(ctx: &Context<'a>, mode: Option<&'a RunMode>) -> Context<'a> {
    Context {
        script: ctx.script,
        mode: mode.unwrap_or(ctx.mode),
        step: ctx.step,
    }
}

/// Log out of every token still logged in, on the record (the end of every run).
pub(crate) fn close_all(state: &mut State, step: Option<&str>) -> Result<()> {
    super::actions::close_hsm(state, step)?;
    let open: Vec<Option<String>> = state
        .parked
        .iter()
        .filter(|(_, p)| p.hsm.is_some())
        .map(|(name, _)| name.clone())
        .collect();
    for name in open {
        let Parked { hsm, quorum } = state.parked.remove(&name).unwrap_or_default();
        let previous = std::mem::replace(&mut state.current_token, name);
        let parked = Parked {
            hsm: std::mem::replace(&mut state.hsm, hsm),
            quorum: std::mem::replace(&mut state.quorum, quorum),
        };
        state.parked.insert(previous, parked);
        super::actions::close_hsm(state, step)?;
    }
    Ok(())
}

/// The rehearsal token label of each `[[hsms]]` token, by name; refuses two tokens that would share
/// one rehearsal token.
pub fn rehearsal_labels(script: &Script) -> Result<Vec<(String, String)>> {
    use super::rehearsal::rehearsal_label;
    use crate::error::Error;
    let primary = rehearsal_label(&script.hsm.token);
    let mut out: Vec<(String, String)> = Vec::new();
    for h in &script.hsms {
        let label = rehearsal_label(&h.token);
        if label == primary || out.iter().any(|(_, l)| *l == label) {
            return Err(Error::input(
                format!(
                    "token \"{}\" would share the rehearsal token \"{label}\" with another of the \
                     script's tokens (a rehearsal makes every token on one SoftHSM2)",
                    h.name
                ),
                "give each token its own label in the script",
            ));
        }
        out.push((h.name.clone(), label));
    }
    Ok(out)
}

/// A rehearsal's throw-away SoftHSM2 token for each `[[hsms]]` token, by name: made now with
/// random PINs (`create`), or only looked up (`keyrite resume` and `abort`, which must find the
/// tokens the interrupted rehearsal used). Selected by label and serial together, so only the
/// throw-away token matches.
pub fn rehearsal_tokens(
    renv: &mut super::rehearsal::RehearsalEnv,
    softhsm: &str,
    module: &str,
    script: &Script,
    create: bool,
) -> Result<BTreeMap<String, (String, TokenSelector)>> {
    use crate::error::Error;
    let mut out = BTreeMap::new();
    for (name, label) in rehearsal_labels(script)? {
        let token = match (renv.token(&label).cloned(), create) {
            (Some(t), _) => t,
            (None, true) => renv.ensure_token(softhsm, &label)?,
            (None, false) => {
                return Err(Error::input(
                    format!(
                    "the rehearsal folder has no token \"{label}\" (the script's token \"{name}\")"
                ),
                    "give the --env folder the interrupted rehearsal used",
                ))
            }
        };
        let selector = TokenSelector {
            label: Some(token.label.clone()),
            serial: Some(token.serial.clone()),
            uri: None,
        };
        out.insert(name, (module.to_string(), selector));
    }
    Ok(out)
}

//! The ceremony engine: a pure state machine over the script's steps. No IO, no clock, no RNG.
//!
//! The driver feeds it [`Input`]s (a person confirms, an action finished, an exception, ...) and
//! carries out the [`Effect`]s it returns: record an [`Event`] in the audit log, or perform a step's
//! action on the HSM. The engine alone decides whether dual control is met, so no front end (headless,
//! TUI) can bypass it: an action is only ever requested through [`Effect::Perform`].

mod step;
#[cfg(test)]
mod tests;

use crate::script::{Action, Role, Script};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
pub use step::{PerRole, StepPlan};

/// What happens to the ceremony, as told by the people in the room or the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// `person` confirms (or, as a witness, attests) the current step.
    Confirm { person: String },
    /// Go ahead with the current step on the confirmations given so far. Refused, and logged, when
    /// dual control is not met.
    Proceed,
    /// A deviation from the script, recorded at any time.
    Exception { person: String, text: String },
    /// The action requested by [`Effect::Perform`] succeeded.
    ActionSucceeded,
    /// The action requested by [`Effect::Perform`] failed; the ceremony stops.
    ActionFailed { reason: String },
    /// The action was not carried out and the room went back to the step (Esc in the PIN dialog):
    /// its confirmations stand, and `Proceed` performs it again.
    ActionWithdrawn { reason: String },
    /// `keyrite resume` took up the ceremony after an interruption: the current step starts over
    /// and needs fresh confirmations.
    Resume,
    /// Stop the ceremony (Ctrl-C, a refused pre-flight, a person's decision).
    Abort { reason: String },
}

/// Things that happened, in the words the audit log uses. Serialised into the log's `event` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    StepStarted {
        step: String,
        title: String,
        action: Action,
    },
    /// A confirmation counted towards the step. `counts_for` is "dual-control" or "witness".
    Confirmed {
        step: String,
        person: String,
        role: Role,
        counts_for: String,
    },
    ConfirmationRefused {
        step: String,
        person: String,
        reason: String,
    },
    /// Dual control (and witnessing) is met: the action is about to be performed.
    StepAuthorised {
        step: String,
        action: Action,
        confirmed_by: Vec<String>,
        witnessed_by: Vec<String>,
    },
    StepRefused {
        step: String,
        reason: String,
    },
    StepCompleted {
        step: String,
    },
    StepFailed {
        step: String,
        reason: String,
    },
    /// The ceremony was taken up again after an interruption, at this step, whose confirmations
    /// start over.
    StepResumed {
        step: String,
    },
    /// The action was withdrawn before it reached the HSM; the step awaits `Proceed` again.
    StepWithdrawn {
        step: String,
        reason: String,
    },
    ExceptionRecorded {
        step: String,
        person: String,
        text: String,
    },
    CeremonyCompleted,
    CeremonyAborted {
        step: Option<String>,
        reason: String,
    },
}

impl Event {
    /// The step this event belongs to, for the log entry's `step` field.
    pub fn step(&self) -> Option<&str> {
        match self {
            Event::StepStarted { step, .. }
            | Event::Confirmed { step, .. }
            | Event::ConfirmationRefused { step, .. }
            | Event::StepAuthorised { step, .. }
            | Event::StepRefused { step, .. }
            | Event::StepCompleted { step }
            | Event::StepFailed { step, .. }
            | Event::StepWithdrawn { step, .. }
            | Event::StepResumed { step }
            | Event::ExceptionRecorded { step, .. } => Some(step),
            Event::CeremonyAborted { step, .. } => step.as_deref(),
            Event::CeremonyCompleted => None,
        }
    }

    /// The persons acting in this event, for the log entry's `actors` field.
    pub fn actors(&self) -> Vec<String> {
        match self {
            Event::Confirmed { person, .. }
            | Event::ConfirmationRefused { person, .. }
            | Event::ExceptionRecorded { person, .. } => vec![person.clone()],
            Event::StepAuthorised {
                confirmed_by,
                witnessed_by,
                ..
            } => confirmed_by.iter().chain(witnessed_by).cloned().collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Record(Event),
    /// Perform the action of step `index`. The driver answers with ActionSucceeded or ActionFailed.
    Perform {
        index: usize,
        action: Action,
    },
}

/// Where the ceremony is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Collecting confirmations for step `index`.
    Confirming(usize),
    /// The action of step `index` is being performed.
    Performing(usize),
    Completed,
    Aborted,
}

#[derive(Debug, Clone)]
pub struct Person {
    pub name: String,
    pub roles: Vec<Role>,
}

impl Person {
    fn is_witness(&self) -> bool {
        self.roles.iter().any(|r| r.is_witness())
    }
}

/// The engine. Build it with [`Engine::new`], then call [`Engine::start`] once and [`Engine::handle`]
/// for each input.
#[derive(Debug, Clone)]
pub struct Engine {
    steps: Vec<StepPlan>,
    people: Vec<Person>,
    phase: Phase,
    /// See [`Engine::forget_finished_steps`].
    forget_finished: bool,
    /// Each participant's index in `people` (the first, if a name repeats): a confirmation finds
    /// its person without a search through every participant.
    by_name: HashMap<String, usize>,
    /// Whether each participant has confirmed or witnessed the current step: the step's lists,
    /// by person, so a confirmation is checked without a search through them.
    acted: Vec<bool>,
}

impl Engine {
    pub fn new(script: &Script) -> Self {
        let people: Vec<Person> = script
            .participants
            .iter()
            .map(|p| Person {
                name: p.name.clone(),
                roles: p.roles().collect(),
            })
            .collect();
        let mut by_name = HashMap::with_capacity(people.len());
        for (i, p) in people.iter().enumerate() {
            by_name.entry(p.name.clone()).or_insert(i);
        }
        Engine {
            steps: script.steps.iter().map(StepPlan::from_step).collect(),
            acted: vec![false; people.len()],
            people,
            phase: Phase::Confirming(0),
            forget_finished: false,
            by_name,
        }
    }

    /// Drop who confirmed a step once the next one starts. No decision looks back at an earlier
    /// step, so this changes nothing but memory: verify's replay of a long log then holds no
    /// confirmation per step behind it. (A ceremony keeps them: its screens list past steps.)
    pub fn forget_finished_steps(&mut self) {
        self.forget_finished = true;
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn steps(&self) -> &[StepPlan] {
        &self.steps
    }

    /// The step being confirmed or performed, if any.
    pub fn current(&self) -> Option<&StepPlan> {
        match self.phase {
            Phase::Confirming(i) | Phase::Performing(i) => self.steps.get(i),
            Phase::Completed | Phase::Aborted => None,
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Completed | Phase::Aborted)
    }

    /// Announce the first step (or complete at once for an empty script).
    pub fn start(&mut self) -> Vec<Effect> {
        self.enter(0)
    }

    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        // Only an exception or an abort names the current step (not cloned per confirmation).
        let current_id = |engine: &Self| engine.current().map(|s| s.id.clone());
        match (self.phase, input) {
            (Phase::Completed | Phase::Aborted, Input::Exception { person, text }) => {
                // Exceptions after the end still belong in the record; they attach to no step.
                self.exception(String::from("(after end)"), person, text)
            }
            (Phase::Completed | Phase::Aborted, _) => Vec::new(),
            (_, Input::Exception { person, text }) => {
                self.exception(current_id(self).unwrap_or_default(), person, text)
            }
            (_, Input::Abort { reason }) => self.abort(current_id(self), reason),
            (Phase::Confirming(i), Input::Confirm { person }) => self.confirm(i, person),
            (Phase::Confirming(i), Input::Proceed) => self.proceed(i),
            (Phase::Performing(i), Input::Confirm { person }) => {
                let step = self.steps[i].id.clone();
                let reason = "the step is already being performed; confirmations are closed".into();
                vec![Effect::Record(Event::ConfirmationRefused {
                    step,
                    person,
                    reason,
                })]
            }
            (Phase::Performing(i), Input::ActionSucceeded) => {
                let mut out = vec![Effect::Record(Event::StepCompleted {
                    step: self.steps[i].id.clone(),
                })];
                out.extend(self.enter(i + 1));
                out
            }
            (Phase::Performing(i), Input::ActionFailed { reason }) => {
                let step = self.steps[i].id.clone();
                let mut out = vec![Effect::Record(Event::StepFailed {
                    step: step.clone(),
                    reason: reason.clone(),
                })];
                out.extend(self.abort(Some(step), format!("step failed: {reason}")));
                out
            }
            (Phase::Confirming(i) | Phase::Performing(i), Input::Resume) => {
                self.phase = Phase::Confirming(i);
                self.acted.fill(false);
                let step = &mut self.steps[i];
                step.confirmed_by.clear();
                step.per_role.counted.clear();
                step.witnessed.clear();
                vec![Effect::Record(Event::StepResumed {
                    step: step.id.clone(),
                })]
            }
            (Phase::Performing(i), Input::ActionWithdrawn { reason }) => {
                self.phase = Phase::Confirming(i);
                vec![Effect::Record(Event::StepWithdrawn {
                    step: self.steps[i].id.clone(),
                    reason,
                })]
            }
            // Action results or Proceed out of turn are driver bugs; the engine ignores them.
            (
                Phase::Confirming(_),
                Input::ActionSucceeded | Input::ActionFailed { .. } | Input::ActionWithdrawn { .. },
            )
            | (Phase::Performing(_), Input::Proceed) => Vec::new(),
        }
    }

    fn enter(&mut self, index: usize) -> Vec<Effect> {
        if self.forget_finished {
            if let Some(done) = index.checked_sub(1).and_then(|i| self.steps.get_mut(i)) {
                done.confirmed_by = Vec::new();
                done.witnessed = Vec::new();
                done.per_role.counted = Vec::new();
            }
        }
        match self.steps.get(index) {
            Some(step) => {
                self.phase = Phase::Confirming(index);
                self.acted.fill(false);
                vec![Effect::Record(Event::StepStarted {
                    step: step.id.clone(),
                    title: step.title.clone(),
                    action: step.action,
                })]
            }
            None => {
                self.phase = Phase::Completed;
                vec![Effect::Record(Event::CeremonyCompleted)]
            }
        }
    }

    fn confirm(&mut self, index: usize, name: String) -> Vec<Effect> {
        let step_id = self.steps[index].id.clone();
        let refused = |reason: String| {
            vec![Effect::Record(Event::ConfirmationRefused {
                step: step_id.clone(),
                person: name.clone(),
                reason,
            })]
        };
        let Some(&at) = self.by_name.get(&name) else {
            return unrecognised(step_id, false);
        };
        let person = &self.people[at];
        let step = &mut self.steps[index];
        let acted = &mut self.acted[at];
        debug_assert_eq!(*acted, step.has_acted(&person.name));
        let accepted = step.accept_checked(person, *acted);
        *acted |= accepted.is_ok();
        match accepted {
            Err(reason) => refused(reason),
            Ok((role, counts_for)) => {
                // The step is performed only on an explicit Proceed: the room sees every
                // confirmation before anything reaches the HSM.
                vec![Effect::Record(Event::Confirmed {
                    step: step_id,
                    person: name,
                    role,
                    counts_for: counts_for.to_string(),
                })]
            }
        }
    }

    fn proceed(&mut self, index: usize) -> Vec<Effect> {
        let step = &self.steps[index];
        match step.missing() {
            None => self.authorise(index),
            Some(reason) => vec![Effect::Record(Event::StepRefused {
                step: step.id.clone(),
                reason,
            })],
        }
    }

    fn authorise(&mut self, index: usize) -> Vec<Effect> {
        let step = &self.steps[index];
        self.phase = Phase::Performing(index);
        vec![
            Effect::Record(Event::StepAuthorised {
                step: step.id.clone(),
                action: step.action,
                confirmed_by: step.confirmed_by.clone(),
                witnessed_by: step.witnessed.iter().map(|(_, p)| p.clone()).collect(),
            }),
            Effect::Perform {
                index,
                action: step.action,
            },
        ]
    }

    fn exception(&mut self, step: String, person: String, text: String) -> Vec<Effect> {
        if !self.people.iter().any(|p| p.name == person) {
            return unrecognised(step, true);
        }
        vec![Effect::Record(Event::ExceptionRecorded {
            step,
            person,
            text,
        })]
    }

    fn abort(&mut self, step: Option<String>, reason: String) -> Vec<Effect> {
        self.phase = Phase::Aborted;
        vec![Effect::Record(Event::CeremonyAborted { step, reason })]
    }
}

/// Recorded in place of a name that matches no participant. What was typed is never logged: it
/// may be a mistyped PIN, and the log can never be edited.
pub const UNRECOGNISED: &str = "(unrecognised name)";

fn unrecognised(step: String, exception: bool) -> Vec<Effect> {
    let what = if exception {
        "an exception"
    } else {
        "a confirmation"
    };
    vec![Effect::Record(Event::ConfirmationRefused {
        step,
        person: UNRECOGNISED.into(),
        reason: format!(
            "{what} came with a name that is not a participant's; type your name as the script lists it (case does not matter)"
        ),
    })]
}

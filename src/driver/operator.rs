//! The people in the room, as the driver sees them: something that answers "what happens next at this
//! step?" and shows progress. Headless answers files and `--auto` live here; the TUI is another
//! implementation of the same trait.

use super::cards::{from_queue, AnswerCard, AnswerCards, CardPresentation, CardRequest};
use crate::engine::{Input, StepPlan};
use crate::error::{Error, Result};
use crate::script::{Participant, Script};
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::time::Duration;

/// What the driver tells the room.
#[derive(Debug, Clone)]
pub enum Notice<'a> {
    StepStarted {
        index: usize,
        total: usize,
        step: &'a StepPlan,
        instructions: &'a str,
    },
    /// Read the key hash aloud and compare it with the screen.
    Fingerprint {
        key: &'a str,
        grouped_hash: &'a str,
    },
    Refused {
        reason: &'a str,
    },
    Working {
        what: &'a str,
        elapsed: Duration,
    },
    StepDone {
        step: &'a StepPlan,
        elapsed: Duration,
    },
    Warning {
        text: &'a str,
    },
    Info {
        text: &'a str,
    },
}

pub trait Operator {
    /// The next input for the current step (`step`). Called repeatedly until the step is performed.
    fn next_input(&mut self, step: &StepPlan) -> Input;
    fn notice(&mut self, notice: Notice<'_>);
    /// The path of the file an `attach` step records (`description` says what it is), given at
    /// run time because the file (a video of the ceremony) does not exist when the script is
    /// written. `None`: no file is given, and the step fails.
    fn attachment(&mut self, step: &str, description: &str) -> Option<String> {
        let _ = (step, description);
        None
    }

    /// The attachment paths known before the ceremony starts (step id = path), checked before the
    /// bundle is created.
    fn given_attachments(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Quorum steps: which custodian card is presented next, and by whom (see `driver::cards`).
    /// Called until the step has what it needs or the answer is `NoMore`. The default presents none.
    fn present_card(&mut self, request: &CardRequest<'_>) -> CardPresentation {
        let _ = request;
        CardPresentation::NoMore
    }
}

/// An answers file: the confirmations of a headless run, in order, step by step.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answers {
    #[serde(default)]
    pub steps: Vec<AnswerStep>,
    #[serde(default)]
    pub exceptions: Vec<AnswerException>,
    /// For `attach` steps: step id = path of the file to hash.
    #[serde(default)]
    pub attachments: BTreeMap<String, String>,
    /// Custodian cards presented at quorum steps, step by step, in order.
    #[serde(default)]
    pub cards: Vec<AnswerCards>,
    /// `rehearse --auto`: present every card in script order, each by its holder.
    #[serde(skip)]
    pub auto_cards: bool,
    /// SHA-256 of the answers file as read, recorded in the log.
    #[serde(skip)]
    pub file_sha256: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerStep {
    pub id: String,
    /// Participants who confirm (or witness) the step, in the order they do it.
    pub confirm: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerException {
    /// The step at whose start the exception is recorded.
    pub step: String,
    pub person: String,
    pub text: String,
}

impl Answers {
    pub fn load(path: &Path, script: &Script) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, &e))?;
        let text = String::from_utf8(bytes.clone()).map_err(|_| {
            Error::input(
                format!("{} is not UTF-8 text", path.display()),
                "save the answers file as UTF-8",
            )
        })?;
        let mut answers: Answers = toml::from_str(&text).map_err(|e| {
            Error::input(
                format!("{}: {}", path.display(), e.message()),
                "fix the answers file (see docs/script-format.md, \"Answers files\")",
            )
        })?;
        for id in answers
            .steps
            .iter()
            .map(|s| &s.id)
            .chain(answers.exceptions.iter().map(|e| &e.step))
            .chain(answers.attachments.keys())
            .chain(answers.cards.iter().map(|c| &c.step))
        {
            if !script.steps.iter().any(|s| &s.id == id) {
                return Err(Error::input(
                    format!("{}: step \"{id}\" is not in the script", path.display()),
                    "use the step ids of the script",
                ));
            }
        }
        answers.file_sha256 = Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
        Ok(answers)
    }

    /// Confirmations chosen from the script alone, for `rehearse --auto`: for each step the first
    /// distinct participants that satisfy dual control, then one holder of each witness role.
    pub fn auto(script: &Script) -> Self {
        let steps = script
            .steps
            .iter()
            .map(|step| {
                let required = step.required_confirmations() as usize;
                let sensitive = step.action.is_sensitive();
                let eligible: Vec<&Participant> = script
                    .participants
                    .iter()
                    .filter(|p| p.roles().any(|r| step.confirm_by.contains(&r)))
                    .filter(|p| !(sensitive && p.is_witness()))
                    .filter(|p| !p.roles().any(|r| step.witnessed_by.contains(&r)))
                    .collect();
                // Each role's minimum first (`min_per_role`), then anyone eligible up to the count.
                let mut confirm: Vec<String> = Vec::new();
                for (role, n) in &step.min_per_role {
                    let picked: Vec<String> = eligible
                        .iter()
                        .filter(|p| p.holds(*role) && !confirm.contains(&p.name))
                        .take(*n as usize)
                        .map(|p| p.name.clone())
                        .collect();
                    confirm.extend(picked);
                }
                for p in &eligible {
                    if confirm.len() >= required {
                        break;
                    }
                    if !confirm.contains(&p.name) {
                        confirm.push(p.name.clone());
                    }
                }
                for role in &step.witnessed_by {
                    let witness = script
                        .participants
                        .iter()
                        .find(|p: &&Participant| p.holds(*role) && !confirm.contains(&p.name));
                    if let Some(p) = witness {
                        confirm.push(p.name.clone());
                    }
                }
                AnswerStep {
                    id: step.id.clone(),
                    confirm,
                }
            })
            .collect();
        Answers {
            steps,
            exceptions: Vec::new(),
            attachments: BTreeMap::new(),
            cards: Vec::new(),
            auto_cards: true,
            file_sha256: None,
        }
    }
}

/// Feeds an answers file to the engine and prints one line per step.
pub struct Headless<W: std::io::Write> {
    queued: BTreeMap<String, VecDeque<Input>>,
    cards: BTreeMap<String, VecDeque<AnswerCard>>,
    auto_cards: bool,
    /// The step for which the answers ran out and `Proceed` was sent; a second time means abort.
    proceeded: Option<String>,
    attachments: BTreeMap<String, String>,
    out: W,
}

impl<W: std::io::Write> Headless<W> {
    pub fn new(answers: Answers, out: W) -> Self {
        let mut queued: BTreeMap<String, VecDeque<Input>> = BTreeMap::new();
        for e in answers.exceptions {
            queued
                .entry(e.step)
                .or_default()
                .push_back(Input::Exception {
                    person: e.person,
                    text: e.text,
                });
        }
        for s in answers.steps {
            let q = queued.entry(s.id).or_default();
            q.extend(
                s.confirm
                    .into_iter()
                    .map(|person| Input::Confirm { person }),
            );
        }
        let mut cards: BTreeMap<String, VecDeque<AnswerCard>> = BTreeMap::new();
        for c in answers.cards {
            cards.entry(c.step).or_default().extend(c.present);
        }
        Headless {
            queued,
            cards,
            auto_cards: answers.auto_cards,
            proceeded: None,
            attachments: answers.attachments,
            out,
        }
    }

    fn line(&mut self, text: &str) {
        // Progress output is best-effort: a closed stdout must not stop the ceremony.
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }
}

impl<W: std::io::Write> Operator for Headless<W> {
    fn next_input(&mut self, step: &StepPlan) -> Input {
        if let Some(input) = self.queued.get_mut(&step.id).and_then(VecDeque::pop_front) {
            return input;
        }
        // Out of answers: ask the engine to go ahead, so that a refusal is logged with its reason.
        if self.proceeded.as_deref() != Some(step.id.as_str()) {
            self.proceeded = Some(step.id.clone());
            return Input::Proceed;
        }
        match step.missing() {
            None => Input::Proceed,
            Some(_) => Input::Abort {
                reason: format!(
                    "the answers file has no further confirmations for step \"{}\": {}",
                    step.id,
                    step.missing().unwrap_or_default()
                ),
            },
        }
    }

    fn notice(&mut self, notice: Notice<'_>) {
        match notice {
            Notice::StepStarted {
                index, total, step, ..
            } => {
                let text = format!("[{}/{}] {} — {}", index + 1, total, step.id, step.title);
                self.line(&text)
            }
            Notice::Fingerprint { key, grouped_hash } => {
                self.line(&format!(
                    "      key hash of {key} (SHA-256 of the public key), read it aloud:"
                ));
                self.line(&format!("      {grouped_hash}"));
            }
            Notice::Refused { reason } => self.line(&format!("      refused: {reason}")),
            Notice::Working { what, elapsed } => {
                self.line(&format!("      … {what}: {}s", elapsed.as_secs()))
            }
            Notice::StepDone { step, elapsed } => {
                let mut who = step.confirmed_by.join(", ");
                if !step.witnessed.is_empty() {
                    let witnesses: Vec<_> =
                        step.witnessed.iter().map(|(_, p)| p.as_str()).collect();
                    who.push_str(&format!("; witnessed by {}", witnesses.join(", ")));
                }
                self.line(&format!(
                    "      done in {:.1}s, confirmed by {who}",
                    elapsed.as_secs_f64()
                ))
            }
            Notice::Warning { text } => self.line(&format!("      warning: {text}")),
            Notice::Info { text } => self.line(&format!("      {text}")),
        }
    }

    fn given_attachments(&self) -> BTreeMap<String, String> {
        self.attachments.clone()
    }

    /// Each path is given once: asked again (the file was unreadable), the answers have no other.
    fn attachment(&mut self, step: &str, _description: &str) -> Option<String> {
        self.attachments.remove(step)
    }

    fn present_card(&mut self, request: &CardRequest<'_>) -> CardPresentation {
        let answer = from_queue(request, self.cards.get_mut(request.step), self.auto_cards);
        let text = match &answer {
            CardPresentation::Card { card, presented_by } => format!(
                "      {presented_by} presents card \"{}\"",
                request.cards[*card].label
            ),
            CardPresentation::NoMore => format!(
                "      no further card is presented ({} of {} needed accepted)",
                request.accepted, request.needed
            ),
        };
        self.line(&text);
        answer
    }
}

/// Gives `attach` steps the paths named on the command line (`--attach STEP=PATH`), and asks the
/// wrapped operator for the others.
pub struct WithAttachments<'a> {
    pub inner: Box<dyn Operator + 'a>,
    pub paths: BTreeMap<String, String>,
}

impl Operator for WithAttachments<'_> {
    fn next_input(&mut self, step: &StepPlan) -> Input {
        self.inner.next_input(step)
    }

    fn notice(&mut self, notice: Notice<'_>) {
        self.inner.notice(notice)
    }

    fn attachment(&mut self, step: &str, description: &str) -> Option<String> {
        // A path from the command line is given once; asked again, the room is asked.
        match self.paths.remove(step) {
            Some(path) => Some(path),
            None => self.inner.attachment(step, description),
        }
    }

    fn present_card(&mut self, request: &CardRequest<'_>) -> CardPresentation {
        self.inner.present_card(request)
    }

    fn given_attachments(&self) -> BTreeMap<String, String> {
        let mut given = self.inner.given_attachments();
        given.extend(self.paths.clone());
        given
    }
}

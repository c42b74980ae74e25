//! The driver's side of the TUI: an [`Operator`] and a [`PinSource`] that live on the driver's
//! thread and talk to the UI thread over channels. The UI thread owns the terminal, so it keeps
//! redrawing (clock, spinner, elapsed time) while the driver waits on the HSM.

use super::model::{DriverEvent, Msg, PinAsk};
use crate::driver::cards::{CardPresentation, CardRequest};
use crate::driver::operator::{Notice, Operator};
use crate::driver::pins::{PinRequest, PinSource};
use crate::engine::{Input, StepPlan};
use crate::error::{Error, Result};
use secrecy::SecretString;
use std::sync::mpsc::{Receiver, Sender};

pub struct TuiOperator {
    pub to_ui: Sender<Msg>,
    pub inputs: Receiver<Input>,
    /// Paths typed into the attach modal (`None`: cancelled).
    pub attachments: Receiver<Option<String>>,
    /// The room's answers on the quorum screen.
    pub cards: Receiver<CardPresentation>,
}

impl TuiOperator {
    fn tell(&self, event: DriverEvent) {
        // A closed UI is noticed at the next input, which then aborts.
        let _ = self.to_ui.send(Msg::Driver(event));
    }
}

impl Operator for TuiOperator {
    fn next_input(&mut self, step: &StepPlan) -> Input {
        self.tell(DriverEvent::NeedInput(step.clone()));
        self.inputs.recv().unwrap_or(Input::Abort {
            reason: "the terminal UI closed before the ceremony ended".into(),
        })
    }

    /// Asked only for attach steps without a `--attach` path: the TUI opens its path modal.
    fn attachment(&mut self, step: &str, description: &str) -> Option<String> {
        self.tell(DriverEvent::NeedAttachment {
            step: step.into(),
            description: description.into(),
        });
        self.attachments.recv().ok().flatten()
    }

    fn notice(&mut self, notice: Notice<'_>) {
        let event = match notice {
            Notice::StepStarted {
                index,
                total,
                step,
                instructions,
            } => DriverEvent::StepStarted {
                index,
                total,
                plan: step.clone(),
                instructions: instructions.to_string(),
            },
            Notice::Fingerprint { key, grouped_hash } => DriverEvent::Fingerprint {
                key: key.into(),
                grouped_hash: grouped_hash.into(),
            },
            Notice::Refused { reason } => DriverEvent::Refused(reason.into()),
            Notice::Working { what, elapsed } => DriverEvent::Working {
                what: what.into(),
                secs: elapsed.as_secs(),
            },
            Notice::StepDone { step, .. } => DriverEvent::StepDone(step.clone()),
            Notice::Warning { text } => DriverEvent::Warning(text.into()),
            Notice::Info { text } => DriverEvent::Info(text.into()),
        };
        self.tell(event);
    }

    fn present_card(&mut self, request: &CardRequest<'_>) -> CardPresentation {
        self.tell(DriverEvent::NeedCard(super::quorum::CardAsk::of(request)));
        // A closed UI presents no further card; the next input then aborts.
        self.cards.recv().unwrap_or(CardPresentation::NoMore)
    }
}

/// PINs typed into the TUI's modal. The PIN crosses the channel inside a `SecretString`.
pub struct TuiPins {
    pub to_ui: Sender<Msg>,
    pub pins: Receiver<Result<SecretString>>,
}

impl PinSource for TuiPins {
    fn pin(&mut self, request: &PinRequest<'_>) -> Result<SecretString> {
        let closed = || {
            Error::env(
                "the terminal UI closed while a PIN was asked for",
                "start a new run",
            )
        };
        self.to_ui
            .send(Msg::Driver(DriverEvent::NeedPin(PinAsk::of(request))))
            .map_err(|_| closed())?;
        self.pins.recv().map_err(|_| closed())?
    }
}

//! A plain line-by-line operator for the room, used when no answers file is given (until the terminal
//! UI exists, and on terminals that cannot show it). Each person types their own name to confirm.

use super::cards::{CardPresentation, CardRequest};
use super::operator::{Notice, Operator};
use crate::engine::{Input, StepPlan};
use std::io::Write;

/// Reads one line per call, `None` at the end of input. Stdin is read unbuffered, one line at a time
/// (super::pin_input), so the PIN prompt can read from it too and no PIN waits in a read-ahead buffer.
pub type LineReader<'a> = Box<dyn FnMut() -> Option<String> + 'a>;

pub fn stdin_lines<'a>() -> LineReader<'a> {
    Box::new(|| match super::pin_input::stdin_line() {
        Ok(line) => line.map(|l| String::from_utf8_lossy(&l).into_owned()),
        // An overlong line is nobody's name: an empty answer, which the prompt asks again for.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Some(String::new()),
        Err(_) => None,
    })
}

pub struct LinePrompt<'a, W: Write> {
    input: LineReader<'a>,
    out: W,
    /// The instructions of the current step, printed with its header.
    instructions: String,
}

impl<'a, W: Write> LinePrompt<'a, W> {
    pub fn new(input: LineReader<'a>, out: W) -> Self {
        LinePrompt {
            input,
            out,
            instructions: String::new(),
        }
    }

    fn say(&mut self, text: &str) {
        // Output to the room is best-effort; the log is the record.
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    fn read_line(&mut self) -> Option<String> {
        (self.input)().map(|l| l.trim().to_string())
    }
}

impl<W: Write> Operator for LinePrompt<'_, W> {
    fn next_input(&mut self, step: &StepPlan) -> Input {
        let still = step
            .missing()
            .unwrap_or_else(|| "nothing; type `go` to perform the step".into());
        self.say(&format!("      still needed: {still}"));
        self.say("      type your full name to confirm; `go` to perform the step; `! NAME: TEXT` to record an exception; `abort` to stop");
        let _ = write!(self.out, "      > ");
        let _ = self.out.flush();
        let Some(line) = self.read_line() else {
            return Input::Abort {
                reason: "the input ended before the ceremony did".into(),
            };
        };
        match line.as_str() {
            "go" => Input::Proceed,
            "abort" => Input::Abort {
                reason: "aborted at the keyboard".into(),
            },
            _ => match line.strip_prefix('!').and_then(|rest| rest.split_once(':')) {
                Some((person, text)) => Input::Exception {
                    person: person.trim().into(),
                    text: text.trim().into(),
                },
                None => Input::Confirm { person: line },
            },
        }
    }

    fn notice(&mut self, notice: Notice<'_>) {
        match notice {
            Notice::StepStarted {
                index,
                total,
                step,
                instructions,
            } => {
                self.instructions = instructions.trim().to_string();
                self.say(&format!(
                    "\n[{}/{}] {} — {}",
                    index + 1,
                    total,
                    step.id,
                    step.title
                ));
                let text = self.instructions.clone();
                for line in text.lines() {
                    self.say(&format!("      {line}"));
                }
            }
            Notice::Fingerprint { key, grouped_hash } => self.say(&format!(
                "      key hash of {key}, read it aloud:\n      {grouped_hash}"
            )),
            Notice::Refused { reason } => self.say(&format!("      refused: {reason}")),
            Notice::Working { what, elapsed } => {
                self.say(&format!("      … {what}: {}s", elapsed.as_secs()))
            }
            Notice::StepDone { elapsed, .. } => {
                self.say(&format!("      done in {:.1}s", elapsed.as_secs_f64()))
            }
            Notice::Warning { text } => self.say(&format!("      warning: {text}")),
            Notice::Info { text } => self.say(&format!("      {text}")),
        }
    }

    fn attachment(&mut self, _step: &str, description: &str) -> Option<String> {
        self.say(&format!(
            "      path of the file to attach ({description}); empty to give none:"
        ));
        let _ = write!(self.out, "      > ");
        let _ = self.out.flush();
        self.read_line().filter(|l| !l.is_empty())
    }

    /// Lists the cards (no order implied) and reads which one is presented: its label or number,
    /// optionally followed by `by NAME` when someone other than the holder presents it; `done` ends.
    fn present_card(&mut self, request: &CardRequest<'_>) -> CardPresentation {
        self.say(&format!(
            "      {}: {} of {} cards accepted; present the cards in any order",
            request.purpose.as_str(),
            request.accepted,
            request.needed
        ));
        let mut list = Vec::new();
        for (i, c) in request.cards.iter().enumerate() {
            let state = match (c.accepted, c.refused) {
                (true, _) => " (accepted)",
                (false, true) => " (refused)",
                _ => "",
            };
            list.push(format!(
                "        {}. card \"{}\" of {}, bag {}{state}",
                i + 1,
                c.label,
                c.holder,
                c.bag
            ));
        }
        for line in list {
            self.say(&line);
        }
        self.say("      type the card's label or number (then `by NAME` if not its holder); `done` when no further card is presented");
        let _ = write!(self.out, "      card> ");
        let _ = self.out.flush();
        let Some(line) = self.read_line() else {
            return CardPresentation::NoMore;
        };
        if line == "done" || line.is_empty() {
            return CardPresentation::NoMore;
        }
        let (which, by) = match line.split_once(" by ") {
            Some((w, b)) => (w.trim(), Some(b.trim().to_string())),
            None => (line.as_str(), None),
        };
        let found = request
            .cards
            .iter()
            .position(|c| c.label == which)
            .or_else(|| {
                which
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=request.cards.len()).contains(n))
                    .map(|n| n - 1)
            });
        match found {
            Some(card) => CardPresentation::Card {
                card,
                presented_by: by.unwrap_or_else(|| request.cards[card].holder.to_string()),
            },
            None => {
                self.say(&format!("      no card \"{which}\" in this step"));
                self.present_card(request)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{Action, Role};

    fn plan() -> StepPlan {
        StepPlan {
            id: "keygen".into(),
            title: "Generate".into(),
            action: Action::GenerateKey,
            confirm_by: vec![Role::Operator],
            required: 2,
            witnessed_by: vec![],
            per_role: Default::default(),
            confirmed_by: vec![],
            witnessed: vec![],
        }
    }

    #[test]
    fn lines_become_engine_inputs() {
        let typed = "Omar Haddad\n! Wiebke Janssen: seal torn at the corner\ngo\nabort\n";
        let mut out = Vec::new();
        let mut lines = typed.lines().map(str::to_string);
        let mut p = LinePrompt::new(Box::new(move || lines.next()), &mut out);
        assert_eq!(
            p.next_input(&plan()),
            Input::Confirm {
                person: "Omar Haddad".into()
            }
        );
        assert_eq!(
            p.next_input(&plan()),
            Input::Exception {
                person: "Wiebke Janssen".into(),
                text: "seal torn at the corner".into()
            }
        );
        assert_eq!(p.next_input(&plan()), Input::Proceed);
        assert!(matches!(p.next_input(&plan()), Input::Abort { .. }));
        assert!(
            matches!(p.next_input(&plan()), Input::Abort { reason } if reason.contains("input ended"))
        );
        let shown = String::from_utf8(out).unwrap();
        assert!(
            shown.contains("needs confirmations from 2 different people"),
            "{shown}"
        );
    }

    #[test]
    fn an_attach_step_asks_for_the_path() {
        let mut out = Vec::new();
        let mut lines = ["/media/usb/video.mp4", ""].into_iter().map(str::to_string);
        let mut p = LinePrompt::new(Box::new(move || lines.next()), &mut out);
        assert_eq!(
            p.attachment("attach-video", "video of the ceremony")
                .as_deref(),
            Some("/media/usb/video.mp4")
        );
        assert_eq!(p.attachment("attach-video", "video of the ceremony"), None);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("path of the file to attach (video of the ceremony)"));
    }

    #[test]
    fn cards_are_chosen_by_label_or_number_in_any_order() {
        use crate::driver::cards::{CardChoice, CardPurpose};
        let typed = "card-b by Ann\n7\n1\ndone\n";
        let mut out = Vec::new();
        let mut lines = typed.lines().map(str::to_string);
        let mut p = LinePrompt::new(Box::new(move || lines.next()), &mut out);
        let cards = [
            CardChoice {
                holder: "Ann",
                label: "card-a",
                bag: "TEB-1",
                accepted: false,
                refused: false,
            },
            CardChoice {
                holder: "Bo",
                label: "card-b",
                bag: "TEB-2",
                accepted: false,
                refused: true,
            },
        ];
        let request = CardRequest {
            step: "activate",
            purpose: CardPurpose::Activation,
            cards: &cards,
            accepted: 0,
            needed: 2,
        };
        assert_eq!(
            p.present_card(&request),
            CardPresentation::Card {
                card: 1,
                presented_by: "Ann".into()
            }
        );
        // "7" names no card: asked again, then card 1 by its holder.
        assert_eq!(
            p.present_card(&request),
            CardPresentation::Card {
                card: 0,
                presented_by: "Ann".into()
            }
        );
        assert_eq!(p.present_card(&request), CardPresentation::NoMore);
        let shown = String::from_utf8(out).unwrap();
        assert!(
            shown.contains("in any order") && shown.contains("(refused)"),
            "{shown}"
        );
    }
}

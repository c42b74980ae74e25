//! Names typed at the line prompt: matched to the script's participants without regard to case or
//! extra spaces, with a "did you mean" for a near miss. The engine compares names exactly and stays
//! pure; this runs before it, so the log records the participant's name as the script spells it.

use super::operator::{Notice, Operator};
use crate::engine::Input;
use crate::script::parse::did_you_mean;

/// `input` with a typed name replaced by the participant's name it unambiguously matches.
pub fn resolve(input: Input, names: &[String], operator: &mut dyn Operator) -> Input {
    match input {
        Input::Confirm { person } => Input::Confirm {
            person: participant(person, names, operator),
        },
        Input::Exception { person, text } => Input::Exception {
            person: participant(person, names, operator),
            text,
        },
        other => other,
    }
}

fn normalised(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn participant(typed: String, names: &[String], operator: &mut dyn Operator) -> String {
    if names.contains(&typed) {
        return typed;
    }
    let wanted = normalised(&typed);
    let mut same = names.iter().filter(|n| normalised(n) == wanted);
    if let (Some(name), None) = (same.next(), same.next()) {
        return name.clone();
    }
    // What was typed is never echoed: it may be a mistyped PIN.
    if let Some(near) = did_you_mean(&wanted, names) {
        operator.notice(Notice::Info {
            text: &format!("no participant has the name typed; did you mean \"{near}\"?"),
        });
    }
    typed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::StepPlan;

    #[derive(Default)]
    struct Notes(Vec<String>);

    impl Operator for Notes {
        fn next_input(&mut self, _step: &StepPlan) -> Input {
            Input::Proceed
        }
        fn notice(&mut self, notice: Notice<'_>) {
            if let Notice::Info { text } = notice {
                self.0.push(text.to_string());
            }
        }
    }

    fn names() -> Vec<String> {
        vec!["Alice Martin".into(), "Bob Okafor".into()]
    }

    #[test]
    fn names_match_without_regard_to_case_or_spacing() {
        let mut notes = Notes::default();
        let typed = Input::Confirm {
            person: "alice  MARTIN".into(),
        };
        assert_eq!(
            resolve(typed, &names(), &mut notes),
            Input::Confirm {
                person: "Alice Martin".into()
            }
        );
        let exception = Input::Exception {
            person: "bob okafor".into(),
            text: "bag seal torn".into(),
        };
        assert!(matches!(
            resolve(exception, &names(), &mut notes),
            Input::Exception { person, .. } if person == "Bob Okafor"
        ));
        assert!(notes.0.is_empty());
    }

    #[test]
    fn a_near_miss_is_passed_on_with_a_did_you_mean() {
        let mut notes = Notes::default();
        let typed = Input::Confirm {
            person: "Alice Martn".into(),
        };
        // The engine refuses the unknown name and logs the refusal; the room is told the likely name.
        assert_eq!(resolve(typed.clone(), &names(), &mut notes), typed);
        assert_eq!(
            notes.0,
            ["no participant has the name typed; did you mean \"Alice Martin\"?"]
        );
        let far = Input::Confirm {
            person: "123456".into(),
        };
        resolve(far, &names(), &mut notes);
        assert_eq!(notes.0.len(), 1, "no suggestion for a name far from any");
    }
}

//! Mistakes the room makes are asked again, on the record: a wrong or impossible HSM PIN, Esc in the
//! PIN dialog, an unreadable attachment.

use super::operator::{Answers, Headless};
use super::pins::{self, PinRequest, PinSource};
use super::tests::{run_with_mock, run_with_pins, script};
use crate::error::Result;
use crate::evidence::verify::verify_bundle;
use secrecy::SecretString;
use std::collections::VecDeque;

/// Answers PIN requests in turn: `None` is Esc.
struct Typed(VecDeque<Option<&'static str>>);

impl PinSource for Typed {
    fn pin(&mut self, _: &PinRequest<'_>) -> Result<SecretString> {
        match self.0.pop_front().flatten() {
            Some(pin) => Ok(SecretString::from(pin)),
            None => Err(pins::cancelled()),
        }
    }
}

fn kinds(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
        .collect()
}

#[test]
fn a_wrong_then_an_impossible_then_the_right_pin_completes_and_verifies() {
    let loaded = script();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut typed = Typed([Some("pin-WRONG-q7"), Some("12"), Some("1234")].into());
    let (outcome, calls, printed) = run_with_pins(
        &loaded,
        Answers::auto(&loaded.script),
        &mut typed,
        false,
        &out,
    );
    let outcome = outcome.unwrap();
    assert!(outcome.completed && !outcome.hsm_failure, "{outcome:?}");
    // "12" is shorter than the token's minimum: it never reached the token.
    assert_eq!(
        calls.iter().filter(|c| *c == "C_Login").count(),
        2,
        "{calls:?}"
    );
    assert!(
        printed.contains("COUNT_LOW") && printed.contains("shorter"),
        "{printed}"
    );
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    assert!(!log.contains("pin-WRONG-q7"));
    let retries: Vec<_> = kinds(&log)
        .into_iter()
        .filter(|e| e["kind"] == "retried")
        .collect();
    assert_eq!(retries.len(), 2, "{log}");
    assert_eq!(retries[0]["sent_to_token"], true);
    assert_eq!(retries[0]["token_reports"]["count_low"], true);
    assert_eq!(retries[1]["sent_to_token"], false);
    let v = verify_bundle(&out);
    assert!(v.passed(), "{}", v.table());
}

#[test]
fn esc_in_the_pin_dialog_goes_back_to_the_step() {
    let loaded = script();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut typed = Typed([None, Some("1234")].into());
    let (outcome, calls, printed) = run_with_pins(
        &loaded,
        Answers::auto(&loaded.script),
        &mut typed,
        false,
        &out,
    );
    let outcome = outcome.unwrap();
    assert!(outcome.completed, "{outcome:?}\n{printed}");
    assert_eq!(calls.iter().filter(|c| *c == "C_Login").count(), 1);
    assert!(printed.contains("back at the step"), "{printed}");
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    let events = kinds(&log);
    let withdrawn = events.iter().position(|e| e["kind"] == "step_withdrawn");
    let authorised: Vec<_> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["kind"] == "step_authorised" && e["step"] == "activate-hsm")
        .map(|(i, _)| i)
        .collect();
    assert!(
        matches!((withdrawn, authorised.as_slice()), (Some(w), [a, b]) if a < &w && &w < b),
        "{log}"
    );
    let v = verify_bundle(&out);
    assert!(v.passed(), "{}", v.table());
}

#[test]
fn an_unreadable_attachment_is_asked_again() {
    use super::operator::{Notice, Operator};
    use crate::driver::cards::{CardPresentation, CardRequest};
    use crate::engine::{Input, StepPlan};
    /// Headless, with the attachment paths given in turn.
    struct Paths<'a>(Headless<&'a mut Vec<u8>>, VecDeque<String>);
    impl Operator for Paths<'_> {
        fn next_input(&mut self, step: &StepPlan) -> Input {
            self.0.next_input(step)
        }
        fn notice(&mut self, notice: Notice<'_>) {
            self.0.notice(notice)
        }
        fn attachment(&mut self, _: &str, _: &str) -> Option<String> {
            self.1.pop_front()
        }
        fn present_card(&mut self, request: &CardRequest<'_>) -> CardPresentation {
            self.0.present_card(request)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("video.mp4");
    std::fs::write(&video, b"abc").unwrap();
    let step = crate::script::Step {
        id: "attach-video".into(),
        title: "Attach the video".into(),
        instructions: String::new(),
        action: crate::script::Action::Attach,
        confirm_by: Vec::new(),
        min_confirmations: None,
        witnessed_by: Vec::new(),
        key: None,
        certificate: None,
        attachment: Some("video".into()),
        crl: None,
        hsm: None,
        min_per_role: Default::default(),
    };
    let mut printed = Vec::new();
    let mut op = Paths(
        Headless::new(Answers::default(), &mut printed),
        [
            dir.path().join("missing.mp4").display().to_string(),
            video.display().to_string(),
        ]
        .into(),
    );
    let mut state = super::State::for_tests(&dir.path().join("out"));
    let done = super::attach::perform(&mut state, &step, &mut op).unwrap();
    assert_eq!(done, Ok(()));
    // No path at all ends it.
    assert!(super::attach::perform(&mut state, &step, &mut op)
        .unwrap()
        .is_err());
    let log = std::fs::read_to_string(state.log.path()).unwrap();
    let events = kinds(&log);
    assert_eq!(events[0]["kind"], "retried");
    assert_eq!(events[0]["what"], "attachment");
    assert!(
        !log.contains("missing.mp4"),
        "what was typed stays out of the log"
    );
    assert_eq!(events[1]["kind"], "attached");
    let shown = String::from_utf8(printed).unwrap();
    assert!(
        shown.contains("missing.mp4") && shown.contains("give it again"),
        "{shown}"
    );
}

/// A token with a PIN pad (CKF_PROTECTED_AUTHENTICATION_PATH): keyrite asks no PIN, tells the room to
/// use the pad, logs in without one, and the ceremony completes and verifies.
#[test]
fn a_pin_pad_token_is_activated_without_a_typed_pin() {
    let loaded = script();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // No PIN may be asked: an empty queue answers Esc, which would withdraw the step.
    let mut typed = Typed(VecDeque::new());
    let (outcome, calls, printed) = run_with_mock(
        &loaded,
        Answers::auto(&loaded.script),
        &mut typed,
        false,
        &out,
        |m| m.limits.protected_path = true,
    );
    let outcome = outcome.unwrap();
    assert!(outcome.completed, "{outcome:?}\n{printed}");
    assert!(printed.contains("PIN pad"), "{printed}");
    assert_eq!(
        calls[0], "C_Login(user, protected authentication path)",
        "{calls:?}"
    );
    assert!(!calls.contains(&"C_Login".to_string()), "{calls:?}");
    let v = verify_bundle(&out);
    assert!(v.passed(), "{}", v.table());
}

/// A token whose mechanisms cannot generate the script's key is refused at activation: no login,
/// no key generation was ever confirmed or attempted.
#[test]
fn a_token_without_the_scripts_mechanisms_is_refused_at_activation() {
    use crate::hsm::capabilities::{Mech, Offered};
    let loaded = script();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut typed = Typed([Some("1234")].into());
    let (outcome, calls, printed) = run_with_mock(
        &loaded,
        Answers::auto(&loaded.script),
        &mut typed,
        false,
        &out,
        |m| {
            m.offered = Some(vec![Offered {
                mech: Mech::Ecdsa,
                min_key: 256,
                max_key: 384,
                usable: true,
            }])
        },
    );
    let outcome = outcome.unwrap();
    assert!(!outcome.completed, "{printed}");
    assert!(calls.is_empty(), "nothing reached the token: {calls:?}");
    let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
    assert!(log.contains("CKM_EC_KEY_PAIR_GEN"), "{log}");
    assert!(
        !log.contains("\"step\":\"generate-root-key\""),
        "the key step never began"
    );
    let v = verify_bundle(&out);
    assert!(v.passed(), "{}", v.table());
}

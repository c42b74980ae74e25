//! The TUI with personal signing cards: the card-PIN modal (its own prompt, why the card signs, the
//! driver's warning when a card refused the previous PIN), a PIN request that arrives while another
//! modal is open, and the report signatures on the final screen. Snapshots at 80×24 and 120×40.

use super::model::*;
use super::tests::{at_step, done, driver, key, render, script, snap, typed, PIN};
use crate::engine::Input;
use ratatui::crossterm::event::KeyCode;
use secrecy::ExposeSecret;

const CARD_PROMPT: &str =
    "Omar Haddad, enter the PIN of your personal card \"card-omar-haddad\" (serial 5b0e1c7d42a9f386): ";
const REFUSED: &str = "Omar Haddad's card refused the login: C_Login returned CKR_PIN_INCORRECT: log in to token \"card-omar-haddad\" as user — the PIN was wrong: re-enter it carefully. Tokens lock after a few wrong tries, so check the remaining tries (pkcs11-tool -L shows 'user PIN count low' / 'final try') first";

fn card_pin() -> PinAsk {
    PinAsk {
        kind: PinKind::PersonalCard,
        prompt: CARD_PROMPT.into(),
    }
}

/// Step 4 (activate-hsm), Omar has just confirmed; the driver asks his card PIN.
fn asked() -> Model {
    let mut m = at_step(3);
    assert!(matches!(&key(&mut m, KeyCode::Char('c'))[..], []));
    let cmds = key(&mut m, KeyCode::Char('2'));
    assert!(
        matches!(&cmds[..], [Command::Reply(Input::Confirm { person })] if person == "Omar Haddad")
    );
    driver(&mut m, DriverEvent::NeedPin(card_pin()));
    m
}

#[test]
fn the_card_pin_modal_says_whose_card_and_why() {
    let mut m = asked();
    let Modal::Pin { ask, warning, .. } = &m.modal else {
        panic!("{:?}", m.modal);
    };
    assert_eq!(ask.kind, PinKind::PersonalCard);
    assert!(warning.is_none());
    typed(&mut m, PIN);
    let screen = render(&m, 80, 24);
    for text in [
        "Personal card PIN",
        "Omar Haddad, enter the PIN of your personal card",
        "Your card signs, in your name, the confirmation",
    ] {
        assert!(screen.contains(text), "{text}:\n{screen}");
    }
    snap("modal_card_pin", &m);
    match &key(&mut m, KeyCode::Enter)[..] {
        [Command::Pin(Ok(pin))] => assert_eq!(pin.expose_secret(), PIN),
        other => panic!("{other:?}"),
    }
    // The driver's notice after the signature shows in the step pane.
    driver(
        &mut m,
        DriverEvent::Info("Omar Haddad signed the confirmation with their card".into()),
    );
    assert!(render(&m, 80, 24).contains("Omar Haddad signed the"));
}

#[test]
fn a_refused_card_pin_is_asked_again_with_the_cards_answer_on_top() {
    let mut m = asked();
    typed(&mut m, "Kq-owl-Limx");
    assert!(matches!(
        &key(&mut m, KeyCode::Enter)[..],
        [Command::Pin(Ok(_))]
    ));
    driver(&mut m, DriverEvent::Warning(REFUSED.into()));
    driver(&mut m, DriverEvent::NeedPin(card_pin()));
    let Modal::Pin {
        warning, buffer, ..
    } = &m.modal
    else {
        panic!("{:?}", m.modal);
    };
    assert_eq!(warning.as_deref(), Some(REFUSED));
    assert!(buffer.is_empty(), "a new request starts with an empty PIN");
    typed(&mut m, PIN);
    let screen = render(&m, 80, 24);
    assert!(screen.contains("CKR_PIN_INCORRECT"), "{screen}");
    snap("modal_card_pin_retry", &m);
    // A warning is only carried into the PIN modal that follows it at once.
    assert!(matches!(
        &key(&mut m, KeyCode::Enter)[..],
        [Command::Pin(Ok(_))]
    ));
    driver(&mut m, DriverEvent::Warning(REFUSED.into()));
    driver(
        &mut m,
        DriverEvent::Info("Omar Haddad signed the confirmation with their card".into()),
    );
    driver(&mut m, DriverEvent::NeedPin(card_pin()));
    assert!(matches!(&m.modal, Modal::Pin { warning: None, .. }));
}

#[test]
fn a_pin_request_waits_for_the_modal_on_screen_and_keys_never_land_in_it() {
    let mut m = at_step(3);
    key(&mut m, KeyCode::Char('c'));
    assert!(key(&mut m, KeyCode::Char('2')).len() == 1);
    // Olga starts picking her name while Omar's card PIN is being asked for.
    key(&mut m, KeyCode::Char('c'));
    driver(&mut m, DriverEvent::NeedPin(card_pin()));
    assert!(matches!(m.modal, Modal::Pick { .. }), "{:?}", m.modal);
    // Her pick is kept for the driver, not typed into Omar's PIN.
    assert!(key(&mut m, KeyCode::Char('3')).is_empty());
    assert_eq!(m.queued.len(), 1);
    let Modal::Pin { buffer, .. } = &m.modal else {
        panic!("{:?}", m.modal);
    };
    assert!(buffer.is_empty());
    typed(&mut m, PIN);
    match &key(&mut m, KeyCode::Enter)[..] {
        [Command::Pin(Ok(pin))] => assert_eq!(pin.expose_secret(), PIN),
        other => panic!("{other:?}"),
    }
    // The same with Ctrl-C's question and with an exception being typed.
    let mut m = at_step(3);
    key(&mut m, KeyCode::Char('x'));
    key(&mut m, KeyCode::Char('5'));
    driver(&mut m, DriverEvent::NeedPin(card_pin()));
    typed(&mut m, "seal");
    assert!(matches!(&m.modal, Modal::ExceptionText { text, .. } if text.value() == "seal"));
    key(&mut m, KeyCode::Esc);
    assert!(matches!(m.modal, Modal::Pin { .. }));
    // A finished ceremony drops a request still waiting.
    let mut m = at_step(3);
    key(&mut m, KeyCode::Char('c'));
    driver(&mut m, DriverEvent::NeedPin(card_pin()));
    driver(&mut m, DriverEvent::Finished(done()));
    assert!(m.pending_pin.is_none());
}

#[test]
fn screen_final_with_report_signatures() {
    let s = script();
    let mut m = at_step(8);
    driver(&mut m, DriverEvent::StepDone(super::tests::plan(&s, 8)));
    driver(
        &mut m,
        DriverEvent::Info("Sven Lindqvist (security-officer) signed report.json: signatures/sven-lindqvist.report.json.p7s".into()),
    );
    driver(
        &mut m,
        DriverEvent::Warning("report signature missing: Ines Moreau (independent-witness): C_Login failed: CKR_PIN_INCORRECT".into()),
    );
    driver(&mut m, DriverEvent::Finished(done()));
    let screen = render(&m, 80, 24);
    assert!(
        screen.contains("! report signature missing: Ines Moreau"),
        "{screen}"
    );
    snap("final_signed", &m);
}

#[test]
fn a_failed_step_shown_after_a_pin_request_keeps_the_request() {
    // The driver logs step_failed, aborts, then asks a card PIN for the report signature; the UI
    // may read the log tail after that request.
    let mut m = at_step(3);
    driver(&mut m, DriverEvent::NeedPin(card_pin()));
    typed(&mut m, "Kq");
    let failed = EvidenceRow {
        seq: 100,
        time: "00:41:08".into(),
        kind: "step_failed".into(),
        hash: "0badf00d".into(),
        step: Some("activate-hsm".into()),
        reason: Some("C_Login failed: CKR_PIN_INCORRECT".into()),
    };
    update(&mut m, Msg::Evidence(vec![failed]));
    assert!(matches!(m.modal, Modal::Error { .. }), "{:?}", m.modal);
    key(&mut m, KeyCode::Enter);
    let Modal::Pin { ask, buffer, .. } = &m.modal else {
        panic!("{:?}", m.modal);
    };
    assert_eq!(ask.kind, PinKind::PersonalCard);
    assert!(buffer.is_empty());
}

/// After a card refused and the ceremony aborted: missing signatures first, then the signatures
/// made, then the card's refusals (the abort reason already says why), so 80×24 keeps what counts.
#[test]
fn the_final_screen_puts_signatures_before_a_cards_refusals() {
    let mut m = at_step(0);
    driver(
        &mut m,
        DriverEvent::Warning("Maria Keller's card refused the login".into()),
    );
    driver(
        &mut m,
        DriverEvent::Info("Sven Lindqvist (security-officer) signed report.json".into()),
    );
    driver(
        &mut m,
        DriverEvent::Warning("report signature missing: Maria Keller (carded participant)".into()),
    );
    driver(&mut m, DriverEvent::Finished(done()));
    let screen = render(&m, 120, 40);
    let at = |text: &str| {
        screen
            .find(text)
            .unwrap_or_else(|| panic!("{text}:\n{screen}"))
    };
    assert!(at("! report signature missing") < at("i Sven Lindqvist"));
    assert!(at("i Sven Lindqvist") < at("! Maria Keller's card refused"));
}

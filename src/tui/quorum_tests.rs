//! The quorum screen: update rules and snapshots at 80×24 and 120×40 (regenerate with
//! `INSTA_UPDATE=always cargo test --lib tui` and review the diff).

use super::model::*;
use super::quorum::{AskedCard, CardAsk, CardState};
use super::tests::{ctrl_c, driver, key, render, start};
use crate::driver::cards::CardPresentation;
use crate::engine::{Input, StepPlan};
use crate::script::{self, Script};
use ratatui::crossterm::event::KeyCode;
use std::path::Path;

const REFUSAL: &str = "card \"example-custodian-card-a\" of Aiko Tanaka was already presented at \
                       this step; the same card counts once";

fn script() -> Script {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ceremony-scripts/key-activation.toml");
    script::load(&path)
        .expect("the shipped script loads")
        .script
}

/// key-activation.toml at its activate-quorum step, after the go: the driver asks for a card.
fn asked(accepted: [bool; 4], refused: [bool; 4]) -> (Model, CardAsk) {
    let s = script();
    let mut m = Model::new(&s, true, "/srv/ceremony/out", true);
    update(&mut m, Msg::Tick("00:41:07".into()));
    for i in 0..2 {
        driver(&mut m, start(&s, i));
        driver(
            &mut m,
            DriverEvent::StepDone(StepPlan::from_step(&s.steps[i])),
        );
    }
    driver(&mut m, start(&s, 2));
    let quorum = s.quorum.as_ref().unwrap();
    let ask = CardAsk {
        step: "activate-quorum".into(),
        purpose: "quorum activation".into(),
        cards: quorum
            .cards
            .iter()
            .enumerate()
            .map(|(i, c)| AskedCard {
                holder: c.holder.clone(),
                label: c.token.label.clone().unwrap_or_default(),
                bag: c.bag.clone(),
                accepted: accepted[i],
                refused: refused[i],
            })
            .collect(),
        accepted: accepted.iter().filter(|a| **a).count(),
        needed: 2,
    };
    driver(&mut m, DriverEvent::NeedCard(ask.clone()));
    (m, ask)
}

fn snap(name: &str, m: &Model) {
    for (w, h) in [(80, 24), (120, 40)] {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), render(m, w, h));
    }
}

fn presented(commands: &[Command]) -> Option<&CardPresentation> {
    match commands {
        [Command::Card(p)] => Some(p),
        _ => None,
    }
}

#[test]
fn a_digit_presents_that_card_by_its_holder_and_the_verdict_marks_it() {
    let (mut m, mut ask) = asked([false; 4], [false; 4]);
    // c/g/x mean nothing here: the driver waits for a card, not for a confirmation.
    assert!(key(&mut m, KeyCode::Char('g')).is_empty());
    let c = key(&mut m, KeyCode::Char('3'));
    assert_eq!(
        presented(&c),
        Some(&CardPresentation::Card {
            card: 2,
            presented_by: "Chiara Russo".into()
        })
    );
    // Answered once: further keys do nothing until the driver asks again.
    assert!(key(&mut m, KeyCode::Char('1')).is_empty());
    driver(
        &mut m,
        DriverEvent::Info("card \"example-custodian-card-c\" of Chiara Russo: accepted".into()),
    );
    let q = m.quorum.as_ref().unwrap();
    assert_eq!(q.cards[2].state, CardState::Accepted);
    assert_eq!(q.accepted(), 1);
    ask.cards[2].accepted = true;
    driver(&mut m, DriverEvent::NeedCard(ask));
    // Arrows and Enter; the cursor starts on a card not yet accepted.
    assert!(key(&mut m, KeyCode::Down).is_empty());
    let c = key(&mut m, KeyCode::Enter);
    assert_eq!(
        presented(&c),
        Some(&CardPresentation::Card {
            card: 1,
            presented_by: "Bruno Costa".into()
        })
    );
}

#[test]
fn a_refusal_shows_its_reason_on_the_card_and_stays_on_the_next_ask() {
    let (mut m, mut ask) = asked([true, false, false, false], [false; 4]);
    // Card 2 refused: its row says why.
    key(&mut m, KeyCode::Char('2'));
    driver(&mut m, DriverEvent::Refused("wrong card PIN".into()));
    ask.cards[1].refused = true;
    driver(&mut m, DriverEvent::NeedCard(ask.clone()));
    let q = m.quorum.as_ref().unwrap();
    assert_eq!(
        q.cards[1].state,
        CardState::Refused("wrong card PIN".into())
    );
    // The same card twice: it stays accepted, and the refusal is shown below the list.
    key(&mut m, KeyCode::Char('1'));
    driver(&mut m, DriverEvent::Refused(REFUSAL.into()));
    ask.cards[0].refused = true;
    driver(&mut m, DriverEvent::NeedCard(ask));
    let q = m.quorum.as_ref().unwrap();
    assert_eq!(q.cards[0].state, CardState::Accepted);
    assert_eq!(
        q.cards[1].state,
        CardState::Refused("wrong card PIN".into())
    );
    assert_eq!(q.last_refusal, Some(format!("card 1: {REFUSAL}")));
    assert!(render(&m, 120, 40).contains("the same card counts once"));
}

#[test]
fn b_picks_who_presents_the_card_with_the_holder_preselected() {
    let (mut m, _) = asked([false; 4], [false; 4]);
    key(&mut m, KeyCode::Down);
    assert!(key(&mut m, KeyCode::Char('b')).is_empty());
    // Bruno Costa is participant 8.
    assert_eq!(m.quorum.as_ref().unwrap().by, Some((1, 7)));
    assert!(render(&m, 80, 24).contains("Who presents it?"));
    // Esc goes back to the cards; b again, then someone else by number.
    key(&mut m, KeyCode::Esc);
    assert_eq!(m.quorum.as_ref().unwrap().by, None);
    key(&mut m, KeyCode::Char('b'));
    let c = key(&mut m, KeyCode::Char('7'));
    assert_eq!(
        presented(&c),
        Some(&CardPresentation::Card {
            card: 1,
            presented_by: "Aiko Tanaka".into()
        })
    );
    // The holder by Enter.
    let (mut m, _) = asked([false; 4], [false; 4]);
    key(&mut m, KeyCode::Char('b'));
    let c = key(&mut m, KeyCode::Enter);
    assert_eq!(
        presented(&c),
        Some(&CardPresentation::Card {
            card: 0,
            presented_by: "Aiko Tanaka".into()
        })
    );
}

#[test]
fn n_says_no_further_card_and_an_abort_withdraws_the_ask() {
    let (mut m, _) = asked([false; 4], [false; 4]);
    let c = key(&mut m, KeyCode::Char('n'));
    assert_eq!(presented(&c), Some(&CardPresentation::NoMore));
    assert!(!m.quorum.as_ref().unwrap().asking);

    let (mut m, _) = asked([false; 4], [false; 4]);
    ctrl_c(&mut m);
    let c = key(&mut m, KeyCode::Char('y'));
    assert!(matches!(
        c.as_slice(),
        [Command::Card(CardPresentation::NoMore)]
    ));
    // The abort waits for the driver's next question.
    assert!(matches!(m.queued.front(), Some((_, Input::Abort { .. }))));
    // The next step closes the quorum screen.
    driver(&mut m, start(&script(), 3));
    assert!(m.quorum.is_none());
}

#[test]
fn screen_quorum_pending() {
    let (m, _) = asked([false; 4], [false; 4]);
    snap("quorum_pending", &m);
}

#[test]
fn screen_quorum_accepted_and_refused() {
    let (mut m, mut ask) = asked([true, false, false, false], [false; 4]);
    key(&mut m, KeyCode::Char('2'));
    driver(
        &mut m,
        DriverEvent::Refused(
            "card \"example-custodian-card-b\" of Bruno Costa holds no share of ceremony \
             \"EXAMPLE-ROOT-QUORUM-2026\"; it is not a card of this quorum"
                .into(),
        ),
    );
    ask.cards[1].refused = true;
    driver(&mut m, DriverEvent::NeedCard(ask));
    snap("quorum_refused", &m);
}

#[test]
fn screen_quorum_reached() {
    let (mut m, mut ask) = asked([true, false, false, false], [false; 4]);
    key(&mut m, KeyCode::Char('2'));
    driver(
        &mut m,
        DriverEvent::Refused(
            "card \"example-custodian-card-b\" of Bruno Costa: wrong card PIN (2 tries left)"
                .into(),
        ),
    );
    ask.cards[1].refused = true;
    driver(&mut m, DriverEvent::NeedCard(ask));
    key(&mut m, KeyCode::Char('3'));
    driver(
        &mut m,
        DriverEvent::Info("card \"example-custodian-card-c\" of Chiara Russo: accepted".into()),
    );
    assert_eq!(m.quorum.as_ref().unwrap().accepted(), 2);
    snap("quorum_reached", &m);
}

#[test]
fn screen_quorum_presented_by() {
    let (mut m, _) = asked([false; 4], [false; 4]);
    key(&mut m, KeyCode::Char('b'));
    snap("quorum_presented_by", &m);
}

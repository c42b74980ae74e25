//! The room's view (issue 14): scrolling instructions, the notes pane across steps, ten participants,
//! line editing in the PIN dialog, the working state, the final screen's summary.

use super::model::*;
use super::pin_view::summary;
use super::tests::{at_step, done, driver, hsm_pin, key, render, snap, typed, PIN};
use crate::engine::Input;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use secrecy::ExposeSecret;

const LAST: &str = "LAST-SENTENCE-OF-THE-STEP";

fn long_instructions(m: &mut Model) {
    let current = m.current.as_mut().unwrap();
    let filler =
        "Each custodian reads the bag serial aloud and compares it with the paper script. ";
    current.instructions = format!("{}{LAST}", filler.repeat(12));
}

fn ctrl(m: &mut Model, c: char) -> Vec<Command> {
    update(
        m,
        Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)),
    )
}

#[test]
fn a_long_instruction_scrolls_to_its_last_line_with_a_marker() {
    for (w, h) in [(80, 24), (120, 40)] {
        let mut m = at_step(1);
        long_instructions(&mut m);
        let first = render(&m, w, h);
        assert!(first.contains("▼ more below"), "{first}");
        assert!(!first.contains(LAST), "{first}");
        assert!(
            first.contains("PgDn"),
            "the help bar names the scroll keys: {first}"
        );
        let mut screen = first;
        for _ in 0..200 {
            if screen.contains(LAST) {
                break;
            }
            key(&mut m, KeyCode::Down);
            screen = render(&m, w, h);
        }
        assert!(screen.contains(LAST), "{screen}");
        assert!(screen.contains("▲ end"), "{screen}");
        // At the end, further presses change nothing, and one Up goes back at once.
        let end = m.scroll;
        key(&mut m, KeyCode::PageDown);
        assert_eq!(m.scroll, end);
        key(&mut m, KeyCode::Up);
        assert_eq!(m.scroll, end - 1);
    }
    let mut m = at_step(1);
    long_instructions(&mut m);
    snap("long_instructions_top", &m);
    for _ in 0..200 {
        render(&m, 80, 24);
        key(&mut m, KeyCode::PageDown);
    }
    assert!(render(&m, 80, 24).contains(LAST));
    snap("long_instructions_end", &m);
}

#[test]
fn a_new_step_starts_at_the_top_of_its_text() {
    let s = super::tests::script();
    let mut m = at_step(1);
    long_instructions(&mut m);
    render(&m, 80, 24);
    key(&mut m, KeyCode::PageDown);
    assert!(m.scroll > 0);
    driver(&mut m, super::tests::start(&s, 2));
    assert_eq!(m.scroll, 0);
}

#[test]
fn notes_stay_across_steps_oldest_first() {
    let s = super::tests::script();
    let mut m = at_step(0);
    driver(
        &mut m,
        DriverEvent::Warning("2 network interface(s) up: eth0, wlan0".into()),
    );
    driver(&mut m, super::tests::start(&s, 1));
    driver(&mut m, DriverEvent::NeedInput(super::tests::plan(&s, 1)));
    driver(
        &mut m,
        DriverEvent::Refused("Mallory is not a participant".into()),
    );
    for (w, h) in [(80, 24), (120, 40)] {
        let screen = render(&m, w, h);
        let warning = screen.find("network interface").expect("the warning stays");
        let refused = screen.find("refused").expect("the refusal shows");
        assert!(warning < refused, "oldest first: {screen}");
    }
    snap("notes_across_steps", &m);
}

fn ten_participants() -> Model {
    let mut m = at_step(1);
    for (name, roles) in [
        ("Ada Custodian", "custodian"),
        ("Ben Custodian", "custodian"),
        ("Cai Custodian", "custodian"),
        ("Dee Custodian", "custodian"),
    ] {
        m.participants.push(ParticipantRow {
            name: name.into(),
            roles: roles.into(),
        });
    }
    assert_eq!(m.participants.len(), 10);
    m
}

#[test]
fn ten_participants_all_show_at_80x24_and_the_tenth_is_picked_with_0() {
    let mut m = ten_participants();
    let screen = render(&m, 80, 24);
    for p in &m.participants {
        assert!(screen.contains(&p.name), "{} is missing:\n{screen}", p.name);
    }
    snap("ten_participants", &m);
    key(&mut m, KeyCode::Char('c'));
    snap("ten_participants_pick", &m);
    let commands = key(&mut m, KeyCode::Char('0'));
    assert!(
        matches!(&commands[..], [Command::Reply(Input::Confirm { person })] if person == "Dee Custodian"),
        "{commands:?}"
    );
}

#[test]
fn ctrl_u_clears_the_pin_and_the_right_pin_is_then_handed_over() {
    let mut m = at_step(3);
    driver(&mut m, DriverEvent::NeedPin(hsm_pin("User PIN: ")));
    typed(&mut m, "wrong-pin");
    assert!(ctrl(&mut m, 'u').is_empty());
    assert!(ctrl(&mut m, 'w').is_empty());
    assert!(ctrl(&mut m, 'a').is_empty(), "Ctrl-A types no letter");
    typed(&mut m, PIN);
    match &key(&mut m, KeyCode::Enter)[..] {
        [Command::Pin(Ok(pin))] => assert_eq!(pin.expose_secret(), PIN),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_exception_dialog_edits_the_line() {
    let mut m = at_step(2);
    key(&mut m, KeyCode::Char('x'));
    key(&mut m, KeyCode::Char('2'));
    typed(&mut m, "bag seal torn");
    ctrl(&mut m, 'w');
    typed(&mut m, "intact");
    ctrl(&mut m, 'a');
    typed(&mut m, "new ");
    snap("modal_exception_edited", &m);
    match &key(&mut m, KeyCode::Enter)[..] {
        [Command::Reply(Input::Exception { text, .. })] => {
            assert_eq!(text, "new bag seal intact")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn while_keyrite_works_the_screen_never_says_ready() {
    let s = super::tests::script();
    let mut m = at_step(4);
    let mut p = super::tests::plan(&s, 4);
    p.confirmed_by = vec!["Omar Haddad".into(), "Olga Petrova".into()];
    p.witnessed = vec![(
        crate::script::Role::IndependentWitness,
        "Ines Moreau".into(),
    )];
    driver(&mut m, DriverEvent::NeedInput(p));
    assert!(render(&m, 80, 24).contains("ready: press g"));
    key(&mut m, KeyCode::Char('g'));
    for (w, h) in [(80, 24), (120, 40)] {
        let screen = render(&m, w, h);
        assert!(!screen.contains("ready: press g"), "{screen}");
        assert!(screen.contains("working"), "{screen}");
    }
}

#[test]
fn the_evidence_pane_separates_the_hash_from_the_event() {
    let m = at_step(2);
    let screen = render(&m, 120, 40);
    assert!(screen.contains("step_started          · "), "{screen}");
    let small = render(&m, 80, 24);
    assert!(small.contains("confirmed             · "), "{small}");
}

#[test]
fn the_final_screen_lists_every_signature_and_the_summary_keeps_them() {
    let mut m = at_step(8);
    driver(
        &mut m,
        DriverEvent::Warning("2 network interface(s) up: eth0, wlan0".into()),
    );
    for i in 1..=12 {
        driver(
            &mut m,
            DriverEvent::Info(format!(
                "report.json signed by Participant {i:02} (signatures/p{i:02}.report.json.p7s)"
            )),
        );
    }
    driver(&mut m, DriverEvent::Finished(done()));
    let mut screen = render(&m, 80, 24);
    for _ in 0..100 {
        if screen.contains("Participant 12") {
            break;
        }
        key(&mut m, KeyCode::PageDown);
        screen = render(&m, 80, 24);
    }
    assert!(screen.contains("Participant 12"), "{screen}");
    snap("final_many_signatures_end", &m);
    let text = summary(&m).join("\n");
    for i in 1..=12 {
        assert!(text.contains(&format!("Participant {i:02}")), "{text}");
    }
    assert!(text.contains("network interface"), "{text}");
}

#[test]
fn the_participants_pane_follows_the_picker_with_markers() {
    let mut m = at_step(1);
    for i in 0..40 {
        m.participants.push(ParticipantRow {
            name: format!("Custodian {:02}", i + 1),
            roles: "custodian".into(),
        });
    }
    let last = m.participants.last().unwrap().name.clone();
    assert_eq!(m.participants.len(), 46);
    for (w, h) in [(80, 24), (120, 40)] {
        let top = render(&m, w, h);
        assert!(
            top.contains("▼") && top.contains("more (c lists everyone)"),
            "{top}"
        );
        assert!(!top.contains(&last), "{top}");
    }
    snap("many_participants_top", &m);
    key(&mut m, KeyCode::Char('c'));
    for _ in 0..m.participants.len() {
        key(&mut m, KeyCode::Down);
    }
    for (w, h) in [(80, 24), (120, 40)] {
        let screen = render(&m, w, h);
        // The picker covers most of the pane; its left edge shows the numbers and the marker.
        assert!(
            screen.contains("│ 46") && screen.contains("│  ▲"),
            "{screen}"
        );
        assert!(!screen.contains("│  1 "), "{screen}");
    }
    snap("many_participants_pick_last", &m);
}

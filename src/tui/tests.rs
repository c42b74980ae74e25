//! The TUI's update rules and a snapshot of every screen and modal at 80×24 and 120×40.
//! Regenerate the snapshots with `INSTA_UPDATE=always cargo test --lib tui` and review the diff.

use super::model::*;
use super::view::view;
use crate::engine::{Input, StepPlan};
use crate::script::{self, Action, Role, Script};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use secrecy::ExposeSecret;
use std::path::Path;

/// A PIN made of letters that never occur in hex output.
pub(super) const PIN: &str = "Kq-owl-Lime";

pub(super) fn script() -> Script {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ceremony-scripts/root-ca-p256.toml");
    script::load(&path)
        .expect("the shipped script loads")
        .script
}

pub(super) fn model() -> Model {
    let mut m = Model::new(&script(), true, "/srv/ceremony/out", true);
    update(&mut m, Msg::Tick("00:41:07".into()));
    m
}

pub(super) fn plan(script: &Script, index: usize) -> StepPlan {
    StepPlan::from_step(&script.steps[index])
}

/// The model as the driver leaves it at step `index`, waiting for input.
pub(super) fn at_step(index: usize) -> Model {
    let s = script();
    let mut m = model();
    for i in 0..index {
        driver(&mut m, start(&s, i));
        driver(&mut m, DriverEvent::StepDone(plan(&s, i)));
    }
    driver(&mut m, start(&s, index));
    driver(&mut m, DriverEvent::NeedInput(plan(&s, index)));
    let rows: Vec<EvidenceRow> = (0..(index as u64 * 6 + 2))
        .map(|seq| EvidenceRow {
            seq,
            time: "00:41:07".into(),
            kind: [
                "step_started",
                "confirmed",
                "step_authorised",
                "step_completed",
            ][seq as usize % 4]
                .into(),
            hash: format!("{:08x}", seq * 0x9e37_79b9 % 0xffff_ffff),
            step: None,
            reason: None,
        })
        .collect();
    update(&mut m, Msg::Evidence(rows));
    m
}

pub(super) fn start(s: &Script, index: usize) -> DriverEvent {
    DriverEvent::StepStarted {
        index,
        total: s.steps.len(),
        plan: plan(s, index),
        instructions: s.steps[index].instructions.clone(),
    }
}

pub(super) fn driver(m: &mut Model, event: DriverEvent) -> Vec<Command> {
    update(m, Msg::Driver(event))
}

pub(super) fn key(m: &mut Model, code: KeyCode) -> Vec<Command> {
    update(m, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

pub(super) fn ctrl_c(m: &mut Model) -> Vec<Command> {
    update(
        m,
        Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
    )
}

pub(super) fn typed(m: &mut Model, text: &str) {
    for c in text.chars() {
        assert!(key(m, KeyCode::Char(c)).is_empty());
    }
}

pub(super) fn render(m: &Model, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| view(m, f)).unwrap();
    format!("{}", terminal.backend())
}

pub(super) fn snap(name: &str, m: &Model) {
    for (w, h) in [(80, 24), (120, 40)] {
        let screen = render(m, w, h);
        assert!(!screen.contains(PIN), "{name}: the PIN shows");
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen);
    }
}

pub(super) fn hsm_pin(prompt: &str) -> PinAsk {
    PinAsk {
        kind: PinKind::Hsm,
        prompt: prompt.into(),
    }
}

pub(super) fn confirmed(m: &Model) -> Vec<String> {
    m.current.as_ref().unwrap().plan.confirmed_by.clone()
}

// ---- update ----

#[test]
fn picking_a_name_confirms_as_that_person() {
    let mut m = at_step(0);
    assert!(key(&mut m, KeyCode::Char('c')).is_empty());
    let cmds = key(&mut m, KeyCode::Char('1'));
    assert!(
        matches!(&cmds[..], [Command::Reply(Input::Confirm { person })] if person == "Maria Keller")
    );
    // Arrows and Enter pick too.
    driver(&mut m, DriverEvent::NeedInput(plan(&script(), 0)));
    key(&mut m, KeyCode::Char('c'));
    key(&mut m, KeyCode::Down);
    key(&mut m, KeyCode::Down);
    let cmds = key(&mut m, KeyCode::Enter);
    assert!(
        matches!(&cmds[..], [Command::Reply(Input::Confirm { person })] if person == "Olga Petrova")
    );
    assert!(confirmed(&m).is_empty(), "the TUI never decides who counts");
}

#[test]
fn inputs_given_while_the_driver_is_busy_wait_for_it() {
    let mut m = at_step(0);
    key(&mut m, KeyCode::Char('g'));
    assert!(!m.awaiting);
    key(&mut m, KeyCode::Char('c'));
    assert!(key(&mut m, KeyCode::Char('5')).is_empty(), "queued");
    let cmds = driver(&mut m, DriverEvent::NeedInput(plan(&script(), 0)));
    assert!(
        matches!(&cmds[..], [Command::Reply(Input::Confirm { person })] if person == "Wiebke Janssen")
    );
}

#[test]
fn a_confirmation_typed_during_one_step_never_lands_on_the_next() {
    let s = script();
    let mut m = at_step(0);
    key(&mut m, KeyCode::Char('g'));
    key(&mut m, KeyCode::Char('c'));
    key(&mut m, KeyCode::Char('1'));
    key(&mut m, KeyCode::Char('x'));
    key(&mut m, KeyCode::Char('5'));
    typed(&mut m, "late");
    key(&mut m, KeyCode::Enter);
    driver(&mut m, start(&s, 1));
    let cmds = driver(&mut m, DriverEvent::NeedInput(plan(&s, 1)));
    assert!(
        matches!(&cmds[..], [Command::Reply(Input::Exception { .. })]),
        "{cmds:?}"
    );
    assert!(m.queued.is_empty());
    assert!(m.notes.iter().any(|n| n.text.contains("was not used")));
}

#[test]
fn debug_output_never_shows_the_pin_being_typed() {
    let mut m = at_step(3);
    driver(&mut m, DriverEvent::NeedPin(hsm_pin("PIN?")));
    typed(&mut m, PIN);
    assert!(!format!("{:?}", m.modal).contains(PIN));
}

#[test]
fn ctrl_c_asks_before_aborting() {
    let mut m = at_step(2);
    assert!(ctrl_c(&mut m).is_empty());
    assert!(matches!(m.modal, Modal::ConfirmAbort));
    assert!(key(&mut m, KeyCode::Char('n')).is_empty());
    assert!(matches!(m.modal, Modal::None));
    ctrl_c(&mut m);
    let cmds = key(&mut m, KeyCode::Char('y'));
    assert!(matches!(&cmds[..], [Command::Reply(Input::Abort { .. })]));
}

#[test]
fn an_exception_names_who_and_what() {
    let mut m = at_step(2);
    key(&mut m, KeyCode::Char('x'));
    key(&mut m, KeyCode::Char('5'));
    typed(&mut m, "seal torn");
    let cmds = key(&mut m, KeyCode::Enter);
    assert!(
        matches!(&cmds[..], [Command::Reply(Input::Exception { person, text })]
        if person == "Wiebke Janssen" && text == "seal torn")
    );
}

#[test]
fn the_pin_modal_hands_over_the_typed_pin_and_can_be_cancelled() {
    let mut m = at_step(3);
    driver(
        &mut m,
        DriverEvent::NeedPin(hsm_pin("User PIN for token \"x\": ")),
    );
    typed(&mut m, "Kq-owl-Limx");
    key(&mut m, KeyCode::Backspace);
    typed(&mut m, "e");
    let cmds = key(&mut m, KeyCode::Enter);
    match &cmds[..] {
        [Command::Pin(Ok(pin))] => assert_eq!(pin.expose_secret(), PIN),
        other => panic!("{other:?}"),
    }
    assert!(matches!(m.modal, Modal::None));
    driver(&mut m, DriverEvent::NeedPin(hsm_pin("again")));
    assert!(matches!(
        &key(&mut m, KeyCode::Esc)[..],
        [Command::Pin(Err(_))]
    ));
}

#[test]
fn a_failed_step_opens_the_error_modal_and_marks_the_step() {
    let mut m = at_step(4);
    update(&mut m, Msg::Evidence(vec![failed_row()]));
    assert!(matches!(&m.modal, Modal::Error { what, .. } if what.contains("CKR_DEVICE_ERROR")));
    assert_eq!(m.steps[4].state, StepState::Failed);
    key(&mut m, KeyCode::Enter);
    assert!(matches!(m.modal, Modal::None));
}

#[test]
fn the_final_screen_leaves_on_q() {
    let mut m = at_step(8);
    driver(&mut m, DriverEvent::Finished(done()));
    assert!(m.is_final());
    assert!(matches!(
        &key(&mut m, KeyCode::Char('q'))[..],
        [Command::Quit]
    ));
}

#[test]
fn evidence_rows_come_from_the_audit_log() {
    let line = r#"{"actors":[],"event":{"kind":"step_failed","reason":"boom","step":"x"},"hash":"abcdef0123456789","prev":"00","seq":7,"step":"x","time":"2026-11-27T23:41:07Z"}"#;
    let rows = super::evidence_rows(&format!("{line}\n{{\"half"));
    assert_eq!(
        rows,
        vec![EvidenceRow {
            seq: 7,
            time: "23:41:07".into(),
            kind: "step_failed".into(),
            hash: "abcdef01".into(),
            step: Some("x".into()),
            reason: Some("boom".into()),
        }]
    );
}

// ---- screens ----

fn failed_row() -> EvidenceRow {
    EvidenceRow {
        seq: 40,
        time: "00:41:09".into(),
        kind: "step_failed".into(),
        hash: "5d1e0c2a".into(),
        step: Some("generate-root-key".into()),
        reason: Some("C_GenerateKeyPair failed with CKR_DEVICE_ERROR: the HSM reported a device error — check the HSM's connection and its own log, then start a new run".into()),
    }
}

pub(super) fn done() -> Finished {
    Finished {
        completed: true,
        reason: None,
        log_head: Some("14e9bae2271ef1ff6903703d063a57584e2433906533ce6f1389aded09c4278a".into()),
        report_sha256: Some(
            "c9db24b816b462e51bead6acd9be78cf0b93a1c0a9460f19006f60ce8a61acaf".into(),
        ),
        error: None,
    }
}

#[test]
fn screen_step_start() {
    snap("step_start", &at_step(0));
}

#[test]
fn screen_refused_twice_and_missing_role() {
    let s = script();
    let mut m = at_step(5);
    let mut p = plan(&s, 5);
    p.confirmed_by.push("Omar Haddad".into());
    driver(&mut m, DriverEvent::NeedInput(p));
    driver(
        &mut m,
        DriverEvent::Refused(
            "Omar Haddad has already confirmed this step; one person never counts twice".into(),
        ),
    );
    driver(&mut m, DriverEvent::Refused("confirm_fingerprint needs confirmations from 2 distinct persons in operator or security-officer (dual control); confirmed by Omar Haddad; the independent-witness has not witnessed it".into()));
    m.fingerprint = None;
    snap("refused", &m);
}

#[test]
fn screen_pick_person() {
    let mut m = at_step(3);
    key(&mut m, KeyCode::Char('c'));
    key(&mut m, KeyCode::Down);
    snap("modal_pick", &m);
}

#[test]
fn screen_exception() {
    let mut m = at_step(2);
    key(&mut m, KeyCode::Char('x'));
    key(&mut m, KeyCode::Char('5'));
    typed(&mut m, "bag serial differs from the inventory sheet");
    snap("modal_exception", &m);
}

#[test]
fn screen_pin() {
    let mut m = at_step(3);
    driver(
        &mut m,
        DriverEvent::Info("HSM: SoftHSM project SoftHSM v2, serial 44d6c8a3b52beca9, firmware 2.6, token \"example-root-hsm\" — compare with the label on the device".into()),
    );
    driver(
        &mut m,
        DriverEvent::NeedPin(hsm_pin(
            "User PIN for token \"example-root-hsm\" (serial 44d6c8a3b52beca9): ",
        )),
    );
    typed(&mut m, PIN);
    snap("modal_pin", &m);
}

#[test]
fn screen_abort() {
    let mut m = at_step(4);
    ctrl_c(&mut m);
    snap("modal_abort", &m);
}

#[test]
fn screen_working() {
    let s = script();
    let mut m = at_step(4);
    let mut p = plan(&s, 4);
    p.confirmed_by = vec!["Omar Haddad".into(), "Olga Petrova".into()];
    p.witnessed = vec![(Role::IndependentWitness, "Ines Moreau".into())];
    driver(&mut m, DriverEvent::NeedInput(p));
    key(&mut m, KeyCode::Char('g'));
    driver(
        &mut m,
        DriverEvent::Working {
            what: "generating P-256 key in the HSM".into(),
            secs: 3,
        },
    );
    snap("working", &m);
}

#[test]
fn screen_fingerprint() {
    let mut m = at_step(5);
    assert_eq!(
        m.current.as_ref().unwrap().plan.action,
        Action::ConfirmFingerprint
    );
    driver(
        &mut m,
        DriverEvent::Fingerprint {
            key: "example-root-p256-2026".into(),
            grouped_hash:
                "e582 94f2 e9a2 2748 6e8b 061b 31cc 528f d7fa 3f19 0a1b 2c3d 4e5f 6071 8293 a4b5"
                    .into(),
        },
    );
    let fp = m.fingerprint.as_ref().unwrap();
    assert_eq!(&fp.words[..3], ["topmost", "Istanbul", "Pluto"]);
    snap("fingerprint", &m);
}

#[test]
fn screen_error_step_failed() {
    let mut m = at_step(4);
    update(&mut m, Msg::Evidence(vec![failed_row()]));
    snap("modal_error_step_failed", &m);
}

#[test]
fn screen_error_keyrite_stopped() {
    let mut m = at_step(4);
    driver(
        &mut m,
        DriverEvent::Finished(Finished {
            completed: false,
            reason: None,
            log_head: None,
            report_sha256: None,
            error: Some("could not append to /srv/ceremony/out/audit.jsonl: No space left on device — free disk space".into()),
        }),
    );
    snap("modal_error_keyrite_stopped", &m);
}

#[test]
fn screen_final() {
    let mut m = at_step(8);
    driver(&mut m, DriverEvent::Finished(done()));
    snap("final_completed", &m);
    let mut m = at_step(4);
    driver(
        &mut m,
        DriverEvent::Finished(Finished {
            completed: false,
            reason: Some("aborted at the keyboard (Ctrl-C, confirmed)".into()),
            ..done()
        }),
    );
    snap("final_aborted", &m);
}

#[test]
fn screen_too_small_and_no_colour() {
    let m = at_step(0);
    let screen = render(&m, 79, 23);
    assert!(screen.contains("at least 80×24"), "{screen}");
    insta::assert_snapshot!("too_small_79x23", screen);
    // Without colour, the step states are still told apart by their symbols.
    let mut grey = at_step(3);
    grey.color = false;
    let screen = render(&grey, 80, 24);
    for symbol in ["✓", "▶", "·"] {
        assert!(screen.contains(symbol), "{symbol}");
    }
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| view(&grey, f)).unwrap();
    let colours = terminal
        .backend()
        .buffer()
        .content()
        .iter()
        .filter(|c| c.fg != ratatui::style::Color::Reset || c.bg != ratatui::style::Color::Reset)
        .count();
    assert_eq!(colours, 0, "NO_COLOR: no cell has a colour");
}

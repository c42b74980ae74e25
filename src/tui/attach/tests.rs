//! The `attach` path modal: the update rules (type, edit, submit, cancel, wait behind another
//! modal, dropped when the ceremony ends) and its snapshots at 80×24 and 120×40.

use super::super::model::*;
use super::super::tests::{at_step, ctrl_c, done, driver, key, render, snap, typed};
use ratatui::crossterm::event::KeyCode;

const STEP: &str = "record-video";
const DESCRIPTION: &str = "video recording of the whole key generation (camera 1, wide angle)";
const PATH: &str = "/media/usb-recorder/2026-11-28-root-ca-ceremony-camera-1.mp4";

fn asked() -> Model {
    let mut m = at_step(7);
    driver(
        &mut m,
        DriverEvent::NeedAttachment {
            step: STEP.into(),
            description: DESCRIPTION.into(),
        },
    );
    m
}

#[test]
fn the_path_modal_hands_over_the_typed_path() {
    let mut m = asked();
    assert!(
        matches!(&m.modal, Modal::AttachPath { step, text, .. } if step == STEP && text.value().is_empty()),
        "{:?}",
        m.modal
    );
    // Enter on an empty field does nothing: the modal stays.
    assert!(key(&mut m, KeyCode::Enter).is_empty());
    assert!(matches!(m.modal, Modal::AttachPath { .. }));
    typed(&mut m, "  '");
    typed(&mut m, PATH);
    typed(&mut m, "x");
    assert!(key(&mut m, KeyCode::Backspace).is_empty());
    typed(&mut m, "' ");
    match &key(&mut m, KeyCode::Enter)[..] {
        [Command::Attachment(Some(path))] => assert_eq!(path, PATH, "blanks and quotes dropped"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(m.modal, Modal::None));
}

#[test]
fn esc_or_ctrl_c_gives_no_path() {
    let mut m = asked();
    typed(&mut m, "/tmp/half");
    assert!(matches!(
        &key(&mut m, KeyCode::Esc)[..],
        [Command::Attachment(None)]
    ));
    assert!(matches!(m.modal, Modal::None));
    let mut m = asked();
    assert!(matches!(&ctrl_c(&mut m)[..], [Command::Attachment(None)]));
    // Ctrl-C in the path field does not also open the abort question.
    assert!(matches!(m.modal, Modal::None));
}

#[test]
fn a_request_waits_behind_the_modal_on_screen_and_is_dropped_at_the_end() {
    let mut m = at_step(7);
    key(&mut m, KeyCode::Char('x'));
    assert!(matches!(m.modal, Modal::Pick { .. }));
    driver(
        &mut m,
        DriverEvent::NeedAttachment {
            step: STEP.into(),
            description: DESCRIPTION.into(),
        },
    );
    // The pick keeps its keys; the path modal opens once it closes.
    assert!(matches!(m.modal, Modal::Pick { .. }));
    assert!(key(&mut m, KeyCode::Esc).is_empty());
    assert!(matches!(m.modal, Modal::AttachPath { .. }));

    let mut m = at_step(7);
    key(&mut m, KeyCode::Char('x'));
    driver(
        &mut m,
        DriverEvent::NeedAttachment {
            step: STEP.into(),
            description: DESCRIPTION.into(),
        },
    );
    driver(&mut m, DriverEvent::Finished(done()));
    assert!(m.pending_attach.is_none());
}

#[test]
fn screen_modal_attach_path() {
    let mut m = asked();
    typed(&mut m, PATH);
    let screen = render(&m, 80, 24);
    for text in [
        "File to attach",
        "record-video",
        "Path: /media/usb-recorder",
    ] {
        assert!(screen.contains(text), "{text}:\n{screen}");
    }
    let wide = render(&m, 120, 40);
    assert!(wide.contains("camera-1.mp4 "), "{wide}");
    snap("modal_attach_path", &m);
}

//! What each key does, given the modal on screen. Part of `update`: no IO, and no rules of its own:
//! a key becomes an engine `Input` (or a PIN for the driver), and the engine decides.

use super::model::{Command, Modal, Model, NoteKind, Purpose};
use crate::engine::Input;
use crate::error::Error;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use secrecy::SecretString;

pub(super) fn key(model: &mut Model, key: KeyEvent) -> Vec<Command> {
    let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
    let modal = std::mem::replace(&mut model.modal, Modal::None);
    match modal {
        Modal::Pin {
            ask,
            warning,
            mut buffer,
        } => match key.code {
            KeyCode::Enter if !buffer.is_empty() => {
                let pin = SecretString::from(buffer.as_str());
                vec![Command::Pin(Ok(pin))]
            }
            KeyCode::Esc => vec![Command::Pin(Err(Error::input(
                "PIN entry was cancelled",
                "start a new run and enter the PIN when asked",
            )))],
            _ if ctrl_c => vec![Command::Pin(Err(Error::input(
                "PIN entry was cancelled with Ctrl-C",
                "start a new run and enter the PIN when asked",
            )))],
            _ => {
                super::line_edit::pin_key(&mut buffer, key);
                model.modal = Modal::Pin {
                    ask,
                    warning,
                    buffer,
                };
                Vec::new()
            }
        },
        Modal::AttachPath {
            step,
            description,
            text,
        } => super::attach::key(model, (step, description, text), key, ctrl_c),
        Modal::Error { .. } if matches!(key.code, KeyCode::Enter | KeyCode::Esc) => Vec::new(),
        modal @ Modal::Error { .. } => {
            model.modal = modal;
            Vec::new()
        }
        _ if model.finished.is_some() => match key.code {
            KeyCode::Enter | KeyCode::Char('q') => vec![Command::Quit],
            KeyCode::Down | KeyCode::Char('j') => scroll(model, 1, true),
            KeyCode::Up | KeyCode::Char('k') => scroll(model, 1, false),
            KeyCode::PageDown | KeyCode::Char(' ') => scroll(model, 5, true),
            KeyCode::PageUp => scroll(model, 5, false),
            _ => Vec::new(),
        },
        Modal::ConfirmAbort => match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => {
                let mut commands = super::quorum_keys::withdraw(model);
                commands.extend(model.send(Input::Abort {
                    reason: "aborted at the keyboard (Ctrl-C, confirmed)".into(),
                }));
                commands
            }
            _ => Vec::new(),
        },
        _ if ctrl_c => {
            model.modal = Modal::ConfirmAbort;
            Vec::new()
        }
        Modal::Pick { purpose, cursor } => pick(model, purpose, cursor, key.code),
        Modal::ExceptionText { person, mut text } => match key.code {
            KeyCode::Esc => Vec::new(),
            KeyCode::Enter if !text.value().trim().is_empty() => {
                let text = text.value().trim().to_string();
                model.note(NoteKind::Info, format!("exception by {person}: {text}"));
                model.send(Input::Exception { person, text })
            }
            _ => {
                super::line_edit::edit(&mut text, key);
                model.modal = Modal::ExceptionText { person, text };
                Vec::new()
            }
        },
        Modal::None if super::quorum_keys::asking(model) => {
            super::quorum_keys::key(model, key.code)
        }
        Modal::None => match key.code {
            KeyCode::Char('c') => {
                model.modal = Modal::Pick {
                    purpose: Purpose::Confirm,
                    cursor: 0,
                };
                Vec::new()
            }
            KeyCode::Char('x') => {
                model.modal = Modal::Pick {
                    purpose: Purpose::Exception,
                    cursor: 0,
                };
                Vec::new()
            }
            KeyCode::Char('g') => model.send(Input::Proceed),
            KeyCode::Down | KeyCode::Char('j') => scroll(model, 1, true),
            KeyCode::Up | KeyCode::Char('k') => scroll(model, 1, false),
            KeyCode::PageDown | KeyCode::Char(' ') => scroll(model, 5, true),
            KeyCode::PageUp => scroll(model, 5, false),
            _ => Vec::new(),
        },
    }
}

/// Scroll the step's text by `lines`, no further than the view found there is to read.
pub(super) fn scroll(model: &mut Model, lines: u16, down: bool) -> Vec<Command> {
    model.scroll = if down {
        model
            .scroll
            .saturating_add(lines)
            .min(model.scroll_limit.get())
    } else {
        model.scroll.saturating_sub(lines)
    };
    Vec::new()
}

/// The key that picks the `index`th entry of a list: 1-9, then 0 for the 10th, then a-z.
pub(super) fn pick_label(index: usize) -> Option<char> {
    const LABELS: &str = "1234567890abcdefghijklmnopqrstuvwxyz";
    LABELS.chars().nth(index)
}

pub(super) fn pick_index(key: char) -> Option<usize> {
    (0..36).find(|&i| pick_label(i) == Some(key.to_ascii_lowercase()))
}

fn pick(model: &mut Model, purpose: Purpose, cursor: usize, code: KeyCode) -> Vec<Command> {
    let count = model.participants.len();
    let chosen = match code {
        KeyCode::Esc => return Vec::new(),
        KeyCode::Up => {
            model.modal = Modal::Pick {
                purpose,
                cursor: cursor.saturating_sub(1),
            };
            return Vec::new();
        }
        KeyCode::Down => {
            model.modal = Modal::Pick {
                purpose,
                cursor: (cursor + 1).min(count.saturating_sub(1)),
            };
            return Vec::new();
        }
        KeyCode::Enter => cursor,
        KeyCode::Char(c) if pick_index(c).is_some_and(|i| i < count) => {
            pick_index(c).unwrap_or(cursor)
        }
        _ => {
            model.modal = Modal::Pick { purpose, cursor };
            return Vec::new();
        }
    };
    let Some(person) = model.participants.get(chosen).map(|p| p.name.clone()) else {
        model.modal = Modal::Pick { purpose, cursor };
        return Vec::new();
    };
    match purpose {
        Purpose::Confirm => model.send(Input::Confirm { person }),
        Purpose::Exception => {
            model.modal = Modal::ExceptionText {
                person,
                text: Default::default(),
            };
            Vec::new()
        }
    }
}

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
            // The HSM's activation goes back to its step; other PIN requests stop as before.
            KeyCode::Esc => vec![Command::Pin(Err(crate::driver::pins::cancelled()))],
            _ if ctrl_c => vec![Command::Pin(Err(Error::input(
                "PIN entry was cancelled with Ctrl-C",
                "start a new run and enter the PIN when asked",
            )))],
            KeyCode::Backspace => {
                buffer.pop();
                model.modal = Modal::Pin {
                    ask,
                    warning,
                    buffer,
                };
                Vec::new()
            }
            KeyCode::Char(c) => {
                buffer.push(c);
                model.modal = Modal::Pin {
                    ask,
                    warning,
                    buffer,
                };
                Vec::new()
            }
            _ => {
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
        } => super::attach::key(model, (step, description, text), key.code, ctrl_c),
        Modal::Error { .. } if matches!(key.code, KeyCode::Enter | KeyCode::Esc) => Vec::new(),
        modal @ Modal::Error { .. } => {
            model.modal = modal;
            Vec::new()
        }
        _ if model.finished.is_some() => match key.code {
            KeyCode::Enter | KeyCode::Char('q') => vec![Command::Quit],
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
            KeyCode::Enter if !text.trim().is_empty() => {
                let text = text.trim().to_string();
                model.note(NoteKind::Info, format!("exception by {person}: {text}"));
                model.send(Input::Exception { person, text })
            }
            KeyCode::Backspace => {
                text.pop();
                model.modal = Modal::ExceptionText { person, text };
                Vec::new()
            }
            KeyCode::Char(c) => {
                text.push(c);
                model.modal = Modal::ExceptionText { person, text };
                Vec::new()
            }
            _ => {
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
            _ => Vec::new(),
        },
    }
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
        KeyCode::Char(d @ '1'..='9') => (d as usize) - ('1' as usize),
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
                text: String::new(),
            };
            Vec::new()
        }
    }
}

//! The `attach` path modal: when an `attach` step got no path from `--attach STEP=PATH`, the driver
//! asks the TUI (`Operator::attachment`), and the room types the path of the file to hash. Part of
//! the pure model and view: no IO here; the driver reads and hashes the file.

use super::line_edit::LineInput;
use super::model::{Command, Modal, Model};
use super::view::Theme;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::text::Line;

/// An attachment request waits while another modal (or a PIN) is on screen.
pub(super) fn open_pending(model: &mut Model) {
    if matches!(model.modal, Modal::None) && model.finished.is_none() {
        if let Some((step, description)) = model.pending_attach.take() {
            model.modal = Modal::AttachPath {
                step,
                description,
                text: LineInput::default(),
            };
        }
    }
}

/// A key in the path modal: Enter gives the path (surrounding blanks and quotes from a pasted path
/// dropped), Esc or Ctrl-C gives none (the driver then fails the step, on the record).
pub(super) fn key(
    model: &mut Model,
    (step, description, mut text): (String, String, LineInput),
    key: KeyEvent,
    ctrl_c: bool,
) -> Vec<Command> {
    match key.code {
        _ if ctrl_c => vec![Command::Attachment(None)],
        KeyCode::Esc => vec![Command::Attachment(None)],
        KeyCode::Enter if !cleaned(text.value()).is_empty() => {
            vec![Command::Attachment(Some(cleaned(text.value()).to_string()))]
        }
        _ => {
            super::line_edit::edit(&mut text, key);
            model.modal = Modal::AttachPath {
                step,
                description,
                text,
            };
            Vec::new()
        }
    }
}

/// A path as typed or pasted: blanks around it and one pair of enclosing quotes dropped.
fn cleaned(text: &str) -> &str {
    let t = text.trim();
    ['\'', '"']
        .iter()
        .find_map(|q| t.strip_prefix(*q).and_then(|r| r.strip_suffix(*q)))
        .unwrap_or(t)
}

/// Title, lines and height of the path modal, the height fitting the text wrapped to `inner_width`.
pub(super) fn modal<'a>(
    step: &str,
    description: &str,
    text: &LineInput,
    theme: &Theme,
    inner_width: u16,
) -> (String, Vec<Line<'a>>, u16) {
    let lines = vec![
        Line::styled(
            format!("Step \"{step}\" attaches: {description}"),
            theme.bold(),
        ),
        Line::from(""),
        Line::from(
            "Type the full path of the file (a recording, a scanned sheet). keyrite reads it, \
             records its SHA-256 and size in the log, and does not copy it.",
        ),
        Line::from(""),
        super::line_edit::line("Path: ", text, theme.bold()),
        Line::from(""),
        Line::styled(
            "Compare later with: sha256sum PATH. Without a file the step fails on the record. \
             Ctrl-U clears, Ctrl-W deletes a word, Ctrl-A/Ctrl-E and the arrows move.",
            theme.dim(),
        ),
    ];
    let width = usize::from(inner_width.max(1));
    let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(width)).sum();
    let height = u16::try_from(rows + 3).unwrap_or(u16::MAX);
    ("File to attach".to_string(), lines, height)
}

#[cfg(test)]
mod tests;

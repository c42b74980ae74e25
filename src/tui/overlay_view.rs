//! What covers the room's screen: the end-of-ceremony summary and the modal dialogs.

use super::model::{Modal, Model, Purpose};
use super::view::{block, render_scrolled, wrapped_height, Theme};
use crate::hsm::spki::grouped_hex;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

pub(super) fn render_final(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(done) = &model.finished else {
        return;
    };
    let mut lines = if done.completed {
        vec![Line::styled(
            "✓ Ceremony completed.",
            theme.good().add_modifier(Modifier::BOLD),
        )]
    } else {
        vec![Line::styled(
            format!(
                "✗ Ceremony aborted: {}",
                done.reason.as_deref().unwrap_or("no reason recorded")
            ),
            theme.bad(),
        )]
    };
    lines.push(Line::from(""));
    lines.push(Line::from("The evidence bundle is in:"));
    lines.push(Line::styled(format!("  {}", model.bundle), theme.bold()));
    lines.push(Line::from(""));
    lines.push(Line::from("Check it, now and on any other computer, with:"));
    lines.push(Line::styled(
        format!("  keyrite verify {}", model.bundle),
        theme.bold(),
    ));
    if let (Some(head), Some(report)) = (&done.log_head, &done.report_sha256) {
        lines.push(Line::from(""));
        lines.push(Line::from("Write on the paper script:"));
        for (label, hash) in [("log head", head), ("report.json SHA-256", report)] {
            lines.push(Line::from(format!("  {label}:")));
            let grouped = grouped_hex(hash);
            let groups: Vec<&str> = grouped.split(' ').collect();
            for chunk in groups.chunks(8) {
                lines.push(Line::styled(
                    format!("    {}", chunk.join(" ")),
                    theme.bold(),
                ));
            }
        }
    }
    super::pin_view::closing_notices(model, theme, &mut lines);
    if let Some(error) = &done.error {
        lines.push(Line::from(""));
        lines.push(Line::styled(
            format!("keyrite stopped: {error}"),
            theme.bad(),
        ));
    }
    // A small screen drops the blank lines first, then scrolls: every signature stays reachable.
    if wrapped_height(&lines, area.width.saturating_sub(2)) > area.height.saturating_sub(2) {
        lines.retain(|l| l.width() > 0);
    }
    let outer = block("Done");
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    render_scrolled(model, theme, frame, inner, lines);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

pub(super) fn render_modal(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
    let (title, lines, height): (String, Vec<Line>, u16) = match &model.modal {
        Modal::None => return,
        Modal::Pick { purpose, cursor } => {
            let title = match purpose {
                Purpose::Confirm => "Who confirms?",
                Purpose::Exception => "Who records the exception?",
            };
            let mut lines = vec![Line::from(match purpose {
                Purpose::Confirm => {
                    "Pick your own name. keyrite checks your role; one person never counts twice."
                }
                Purpose::Exception => "Pick the person who reports what happened.",
            })];
            // A long list scrolls with the cursor inside the screen.
            let rows = usize::from(area.height.saturating_sub(5)).max(1);
            let first = cursor.saturating_sub(rows - 1);
            for (i, p) in model.participants.iter().enumerate().skip(first).take(rows) {
                let marker = if i == *cursor { "›" } else { " " };
                let style = if i == *cursor {
                    theme.bold().add_modifier(Modifier::REVERSED)
                } else {
                    Style::default()
                };
                let label = super::keys::pick_label(i).unwrap_or(' ');
                lines.push(Line::styled(
                    format!("{marker} {label} {}  ({})", p.name, p.roles),
                    style,
                ));
            }
            let height = lines.len() as u16 + 4;
            (title.to_string(), lines, height)
        }
        Modal::ExceptionText { person, text } => (
            format!("Exception recorded by {person}"),
            vec![
                Line::from("What deviates from the script? It goes into the log at once."),
                Line::from(""),
                super::line_edit::line("> ", text, theme.bold()),
                Line::styled(
                    "Ctrl-U clears · Ctrl-W deletes a word · Ctrl-A/Ctrl-E, ←→ move",
                    theme.dim(),
                ),
            ],
            9,
        ),
        Modal::Pin {
            ask,
            warning,
            buffer,
        } => {
            let inner = area.width.saturating_sub(8).min(76).saturating_sub(2);
            super::pin_view::pin_modal(ask, warning.as_deref(), buffer, theme, inner)
        }
        Modal::AttachPath {
            step,
            description,
            text,
        } => {
            let inner = area.width.saturating_sub(8).min(76).saturating_sub(2);
            super::attach::modal(step, description, text, theme, inner)
        }
        Modal::ConfirmAbort => (
            "Abort the ceremony?".to_string(),
            vec![
                Line::from("Press y to abort. The abort is logged, the HSM is logged out, and"),
                Line::from("the evidence bundle stays verifiable. Any other key carries on."),
            ],
            6,
        ),
        Modal::Error { title, what, todo } => (
            title.clone(),
            vec![
                Line::styled("What failed:", theme.bold()),
                Line::styled(what.clone(), theme.bad()),
                Line::from(""),
                Line::styled("What to do:", theme.bold()),
                Line::from(todo.clone()),
            ],
            14,
        ),
    };
    let rect = centered(area, area.width.saturating_sub(8).min(76), height);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::bordered()
                .title(format!(" {title} "))
                .border_style(theme.bold()),
        ),
        rect,
    );
}

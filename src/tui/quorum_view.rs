//! The quorum screen: a pure function of the model. Each card's state shows as a symbol and a word
//! (never by colour alone); a refused card shows the driver's reason.

use super::model::Model;
use super::quorum::{CardState, QuorumView};
use super::view::Theme;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

/// The help bar's keys while the driver waits for a card.
pub(super) fn help(quorum: &QuorumView) -> &'static str {
    if quorum.by.is_some() {
        "1-9, 0, a-z or ↑↓ Enter: who presents the card · Esc: back"
    } else {
        "1-9/↑↓ Enter: card · b: by someone else · n: no more · PgDn: scroll · ^C: abort"
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

pub(super) fn render(
    model: &Model,
    quorum: &QuorumView,
    theme: &Theme,
    frame: &mut Frame,
    area: Rect,
) {
    let reached = quorum.accepted() >= quorum.threshold;
    let mut lines = vec![
        Line::styled(
            format!(
                "{}: {} of {} cards needed",
                capitalised(&quorum.purpose),
                quorum.threshold,
                quorum.total
            ),
            theme.bold(),
        ),
        Line::styled(
            quorum.summary(),
            if reached { theme.good() } else { theme.bold() },
        ),
        Line::from("Custodians present their cards in any order."),
        Line::from(""),
    ];
    for (i, card) in quorum.cards.iter().enumerate() {
        let (word, style) = match &card.state {
            CardState::Pending => ("waiting", theme.dim()),
            CardState::Accepted => ("accepted", theme.good()),
            CardState::Refused(_) => ("REFUSED", theme.bad()),
        };
        let here = quorum.asking && i == quorum.cursor;
        let marker = if here { "›" } else { " " };
        let name = format!(
            "{marker}{} {} {:<18}",
            i + 1,
            card.state.symbol(),
            card.holder
        );
        let name_style = if here {
            theme.bold().add_modifier(Modifier::REVERSED)
        } else {
            theme.bold()
        };
        lines.push(Line::from(vec![
            Span::styled(name, name_style),
            Span::styled(format!(" {word}"), style),
        ]));
        lines.push(Line::styled(
            format!("     {} · bag {}", card.label, card.bag),
            theme.dim(),
        ));
        if let CardState::Refused(why) = &card.state {
            lines.push(Line::styled(format!("     why: {why}"), theme.bad()));
        }
    }
    if let Some(refusal) = &quorum.last_refusal {
        lines.push(Line::from(""));
        lines.push(Line::styled(format!("✗ Refused {refusal}"), theme.bad()));
    }
    if let Some(card) = quorum.presented {
        lines.push(Line::from(""));
        lines.push(Line::styled(
            format!("Card {} presented; keyrite checks it…", card + 1),
            theme.warn(),
        ));
    } else if reached && !quorum.asking {
        lines.push(Line::from(""));
        lines.push(Line::styled(
            "Enough cards: keyrite goes on with the step.",
            theme.good(),
        ));
    } else if quorum.asking {
        lines.push(Line::from(""));
        lines.push(Line::from(
            "Press the card's number when it is presented (by its holder), b if someone else \
             presents it, n when no further card is presented.",
        ));
    }
    // The step's instructions are meant for the custodians: they follow the cards, scrollable.
    if let Some(current) = &model.current {
        lines.push(Line::from(""));
        lines.push(Line::styled(current.plan.title.clone(), theme.bold()));
        lines.extend(current.instructions.lines().map(Line::from));
    }
    let outer = Block::bordered().title(format!(" Quorum: custodian cards · {} ", quorum.step));
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    super::view::render_scrolled(model, theme, frame, inner, lines);
    if let Some((card, cursor)) = quorum.by {
        // Over the whole screen: the participant list is longer than the pane.
        let screen = frame.area();
        render_by(model, quorum, card, cursor, theme, frame, screen);
    }
}

/// The second picker: who presents the card (the holder is preselected).
fn render_by(
    model: &Model,
    quorum: &QuorumView,
    card: usize,
    cursor: usize,
    theme: &Theme,
    frame: &mut Frame,
    area: Rect,
) {
    let holder = quorum.cards.get(card).map_or("", |c| c.holder.as_str());
    let mut lines = vec![Line::from(format!(
        "Card {} belongs to {holder}. Who presents it?",
        card + 1
    ))];
    for (i, p) in model.participants.iter().enumerate() {
        let marker = if i == cursor { "›" } else { " " };
        let style = if i == cursor {
            theme.bold().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
        };
        let label = super::keys::pick_label(i).unwrap_or(' ');
        lines.push(Line::styled(format!("{marker} {label} {}", p.name), style));
    }
    let height = (lines.len() as u16 + 2).min(area.height);
    let width = area.width.saturating_sub(8).min(76);
    let rect = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::bordered()
                .title(" Presented by ")
                .border_style(theme.bold()),
        ),
        rect,
    );
}

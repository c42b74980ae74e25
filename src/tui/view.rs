//! `view(&Model, &mut Frame)`: a pure function of the model. States are shown by symbols and words,
//! never by colour alone; with NO_COLOR set, the model's `color` is false and only bold/reverse remain.

use super::model::{Current, Modal, Model, NoteKind};
use crate::script::Action;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;
const SPINNER: [&str; 4] = ["|", "/", "-", "\\"];

/// Styles that fall back to modifiers when colour is off.
pub(super) struct Theme(pub(super) bool);

impl Theme {
    fn fg(&self, color: Color) -> Style {
        if self.0 {
            Style::default().fg(color)
        } else {
            Style::default()
        }
    }
    pub(super) fn bold(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }
    pub(super) fn good(&self) -> Style {
        self.fg(Color::Green)
    }
    pub(super) fn bad(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
    pub(super) fn warn(&self) -> Style {
        self.fg(Color::Yellow)
    }
    pub(super) fn dim(&self) -> Style {
        self.fg(Color::DarkGray)
    }
    fn bar(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
}

pub fn view(model: &Model, frame: &mut Frame) {
    let area = frame.area();
    let theme = Theme(model.color);
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = vec![
            Line::from("The terminal is too small for keyrite."),
            Line::from(format!(
                "It is {}×{}; make it at least {MIN_WIDTH}×{MIN_HEIGHT}.",
                area.width, area.height
            )),
            Line::from("The ceremony waits; nothing is lost."),
        ];
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let [header, body, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(model, &theme, frame, header);
    if model.is_final() {
        super::overlay_view::render_final(model, &theme, frame, body);
    } else {
        render_body(model, &theme, frame, body);
        super::overlay_view::render_modal(model, &theme, frame, area);
    }
    // Last: the scroll keys show only when the text drawn above does not fit.
    frame.render_widget(Paragraph::new(help_text(model)).style(theme.bar()), help);
}

/// Steps and participants on the left; the step (or the fingerprint or quorum screen), the notes and
/// the evidence on the right. Every participant shows at 80×24 with up to 10 of them.
fn render_body(model: &Model, theme: &Theme, frame: &mut Frame, body: Rect) {
    let left_width = (body.width * 2 / 5).clamp(30, 44);
    let [left, right] =
        Layout::horizontal([Constraint::Length(left_width), Constraint::Min(1)]).areas(body);
    let people_height = (model.participants.len() as u16 + 2).min(left.height.saturating_sub(5));
    let [steps, people] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(people_height)]).areas(left);
    render_steps(model, theme, frame, steps);
    render_participants(model, theme, frame, people);
    // The fingerprint and quorum screens take the evidence pane's rows; the notes always stay.
    let full = model.quorum.is_some() || fingerprint_step(model);
    let large = body.height >= 30;
    // At 80×24 the step's text comes first; the evidence pane keeps its newest entry.
    let notes_height = if large { 8 } else { 5 };
    let evidence_height = match (full, large) {
        (true, _) => 0,
        (false, true) => 10,
        (false, false) => 3,
    };
    let [current, notes, evidence] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(notes_height),
        Constraint::Length(evidence_height),
    ])
    .areas(right);
    if let Some(quorum) = &model.quorum {
        super::quorum_view::render(model, quorum, theme, frame, current);
    } else if fingerprint_step(model) {
        render_fingerprint(model, theme, frame, current);
    } else {
        render_current(model, theme, frame, current);
    }
    render_notes(model, theme, frame, notes);
    if evidence_height > 0 {
        render_evidence(model, theme, frame, evidence);
    }
}

fn fingerprint_step(model: &Model) -> bool {
    model.fingerprint.is_some()
        && model
            .current
            .as_ref()
            .is_some_and(|c| c.plan.action == Action::ConfirmFingerprint)
}

fn render_header(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
    let [left_area, clock_area] =
        Layout::horizontal([Constraint::Min(1), Constraint::Length(14)]).areas(area);
    let mut left = vec![Span::styled(" keyrite ", theme.bold())];
    if model.rehearsal {
        left.push(Span::styled(
            " REHEARSAL ",
            theme.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    }
    // The ceremony type gives way on a narrow terminal; name and level stay.
    let kind = if area.width >= 100 {
        format!(" │ {}", model.kind)
    } else {
        String::new()
    };
    left.push(Span::raw(format!(
        "│ level {} │ {}{kind} ",
        model.level, model.name
    )));
    frame.render_widget(
        Paragraph::new(Line::from(left)).style(theme.bar()),
        left_area,
    );
    let clock = format!("{} UTC ", model.clock);
    frame.render_widget(
        Paragraph::new(clock)
            .alignment(Alignment::Right)
            .style(theme.bar()),
        clock_area,
    );
}

fn help_text(model: &Model) -> String {
    let keys = match &model.modal {
        Modal::Pick { .. } if model.participants.len() > 9 => {
            "1-9, 0, a-z or ↑↓ Enter: choose the person · Esc: cancel"
        }
        Modal::Pick { .. } => "1-9 or ↑↓ Enter: choose the person · Esc: cancel",
        Modal::ExceptionText { .. } => "type what happened · Enter: record it · Esc: cancel",
        Modal::Pin { .. } => {
            "type the PIN (not shown) · Ctrl-U: clear · Enter: submit · Esc: cancel"
        }
        Modal::AttachPath { .. } => "type the file's path · Enter: attach it · Esc: no file",
        Modal::ConfirmAbort => "y: abort the ceremony · any other key: carry on",
        Modal::Error { .. } => "Enter: close",
        Modal::None if model.finished.is_some() && model.scroll_limit.get() > 0 => {
            "↑↓ PgUp PgDn: scroll · Enter or q: leave keyrite (the summary stays in the terminal)"
        }
        Modal::None if model.finished.is_some() => {
            "Enter or q: leave keyrite (the summary stays in the terminal)"
        }
        Modal::None if model.quorum.as_ref().is_some_and(|q| q.asking) => {
            model.quorum.as_ref().map_or("", super::quorum_view::help)
        }
        Modal::None if model.scroll_limit.get() > 0 => {
            "c: confirm · g: go · x: exception · ↑↓ PgUp PgDn: scroll · ^C: abort"
        }
        Modal::None => {
            "c: confirm · g: go (perform the step) · x: record an exception · Ctrl-C: abort"
        }
    };
    format!(" {keys}")
}

pub(super) fn block(title: &str) -> Block<'_> {
    Block::bordered().title(format!(" {title} "))
}

fn render_steps(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
    // A long script scrolls so that the current step stays in view.
    let rows = usize::from(area.height.saturating_sub(2));
    let current = model.current.as_ref().map_or(0, |c| c.index);
    let first = current
        .saturating_sub(rows / 2)
        .min(model.steps.len().saturating_sub(rows));
    let lines: Vec<Line> = model
        .steps
        .iter()
        .enumerate()
        .skip(first)
        .take(rows)
        .map(|(i, s)| {
            let style = match s.state {
                super::model::StepState::Current => theme.bold(),
                super::model::StepState::Done => theme.good(),
                super::model::StepState::Failed => theme.bad(),
                super::model::StepState::Pending => theme.dim(),
            };
            Line::styled(
                format!("{} {:>2} {}", s.state.symbol(), i + 1, s.title),
                style,
            )
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block("Steps")), area);
}

/// What keyrite does when the step is performed, in the room's words.
fn action_text(action: Action) -> &'static str {
    match action {
        Action::Manual => "nothing on the HSM; it records who confirmed",
        Action::Preflight => "record the laptop, its clock and network interfaces",
        Action::ActivateHsm => "open the HSM session and ask for the PIN",
        Action::GenerateKey => "generate the key pair inside the HSM",
        Action::ConfirmFingerprint => "record that the key hash was read back",
        Action::SignCertificate => "build, sign and check the certificate",
        Action::DeactivateHsm => "log out of the HSM and close the session",
        Action::Attach => "hash the file you name and record its SHA-256 and size",
        Action::SplitActivation => {
            "make the activation secret, set the HSM PINs from it, write one share per card"
        }
        Action::ActivateQuorum => "combine the custodians' shares and log in to the HSM",
        Action::ShareHealthCheck => "check each presented card's share against the commitments",
        Action::Reshare => "split the same secret afresh onto the new cards",
        Action::RetireShares => "destroy the old shares on the old cards",
        Action::SignTestMessage => "sign a test message with the key and verify it",
        Action::SignSubordinateCa | Action::SignCrossCertificate => {
            "sign exactly what the notes show as TO BE SIGNED, then check it and its chain"
        }
        Action::SignCrl => "build the CRL, sign it in the HSM and check it with the issuer",
        Action::DestroyKey => {
            "destroy every object of the key on the token, then check that none remains"
        }
        Action::BackupKey => {
            "split a new key-encryption key onto the cards and wrap the key with it (SO PIN)"
        }
        Action::RestoreKey => {
            "rebuild the key-encryption key from the cards and unwrap the key into this token"
        }
    }
}

/// The step's status for the room, most urgent first (a small pane cuts from the bottom): the
/// engine's latest refusals, the HSM at work, who confirmed, what is still needed, then what keyrite
/// will do. `compact` (a small terminal) keeps two notes and leaves out the roles line: the engine's
/// "still needed" already names the missing roles.
fn status_lines<'a>(
    model: &'a Model,
    current: &'a Current,
    theme: &Theme,
    compact: bool,
    with_action: bool,
) -> Vec<Line<'a>> {
    let plan = &current.plan;
    let roles = |r: &[crate::script::Role]| {
        r.iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let mut lines = Vec::new();
    // While keyrite works, that is the status: never "ready: press g" at the same time.
    let working = if let Some((what, secs)) = &model.working {
        let spin = SPINNER[(model.ticks % 4) as usize];
        lines.push(Line::styled(
            format!("{spin} {what} … {secs}s"),
            theme.bold(),
        ));
        true
    } else if !model.awaiting && model.finished.is_none() {
        let spin = SPINNER[(model.ticks % 4) as usize];
        lines.push(Line::styled(
            format!("{spin} keyrite is working …"),
            theme.dim(),
        ));
        true
    } else {
        false
    };
    let mut who: Vec<String> = plan.confirmed_by.iter().map(|p| format!("✓ {p}")).collect();
    who.extend(
        plan.witnessed
            .iter()
            .map(|(_, p)| format!("✓ {p} (witness)")),
    );
    lines.push(Line::from(vec![
        Span::styled("confirmed: ", theme.bold()),
        Span::raw(if who.is_empty() {
            "nobody yet".to_string()
        } else {
            who.join(", ")
        }),
    ]));
    match plan.missing() {
        Some(missing) => lines.push(Line::styled(
            format!("still needed: {missing}"),
            theme.warn(),
        )),
        None if working => {}
        None => lines.push(Line::styled(
            "ready: press g to perform the step",
            theme.good().add_modifier(Modifier::BOLD),
        )),
    }
    // A small pane keeps what keyrite will do for when the step is ready.
    if with_action && (!compact || plan.missing().is_none()) {
        lines.push(Line::from(vec![
            Span::styled("keyrite will: ", theme.bold()),
            Span::raw(action_text(plan.action)),
        ]));
    }
    if !compact || plan.missing().is_none() {
        let mut needs = format!("{} × {}", plan.required, roles(&plan.confirm_by));
        if !plan.witnessed_by.is_empty() {
            needs.push_str(&format!(" · witnessed by {}", roles(&plan.witnessed_by)));
        }
        lines.push(Line::from(vec![
            Span::styled("roles: ", theme.bold()),
            Span::raw(needs),
        ]));
    }
    lines
}

/// `lines`, wrapped, scrolled by the model's scroll. When they do not fit, the last row says that
/// there is more and which keys scroll, and the model learns how far the keys may scroll.
pub(super) fn render_scrolled(
    model: &Model,
    theme: &Theme,
    frame: &mut Frame,
    area: Rect,
    lines: Vec<Line>,
) {
    let text = Paragraph::new(lines).wrap(Wrap { trim: false });
    let total = u16::try_from(text.line_count(area.width)).unwrap_or(u16::MAX);
    if total <= area.height || area.height < 2 {
        model.scroll_limit.set(0);
        frame.render_widget(text, area);
        return;
    }
    let visible = area.height - 1;
    let limit = total - visible;
    model.scroll_limit.set(limit);
    let offset = model.scroll.min(limit);
    let [body, marker] =
        Layout::vertical([Constraint::Length(visible), Constraint::Length(1)]).areas(area);
    frame.render_widget(text.scroll((offset, 0)), body);
    let shown = format!("lines {}-{} of {total}", offset + 1, offset + visible);
    let marker_text = if offset < limit {
        format!("▼ more below ({shown}) · ↓ PgDn")
    } else {
        format!("▲ end ({shown}) · ↑ PgUp")
    };
    frame.render_widget(
        Paragraph::new(marker_text).style(theme.bold().add_modifier(Modifier::REVERSED)),
        marker,
    );
}

pub(super) fn wrapped_height(lines: &[Line], width: u16) -> u16 {
    let width = usize::from(width.max(1));
    lines
        .iter()
        .map(|l| l.width().max(1).div_ceil(width) as u16)
        .sum()
}

fn render_current(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
    let Some(current) = &model.current else {
        frame.render_widget(
            Paragraph::new("Starting the ceremony …").block(block("Current step")),
            area,
        );
        return;
    };
    let title = format!(
        "Step {} of {} · {}",
        current.index + 1,
        current.total,
        current.plan.id
    );
    let outer = block(&title);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let status = status_lines(model, current, theme, inner.height < 16, true);
    let status_height = wrapped_height(&status, inner.width).min(inner.height.saturating_sub(3));
    let [top, bottom] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(status_height)]).areas(inner);
    let mut text = vec![Line::styled(current.plan.title.clone(), theme.bold())];
    text.extend(current.instructions.lines().map(Line::from));
    render_scrolled(model, theme, frame, top, text);
    frame.render_widget(Paragraph::new(status).wrap(Wrap { trim: true }), bottom);
}

fn render_fingerprint(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
    let (Some(fp), Some(current)) = (&model.fingerprint, &model.current) else {
        return;
    };
    let outer = block("Key hash: read it aloud, group by group");
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let compact = inner.height < 22;
    let mut lines = Vec::new();
    if !compact {
        lines.push(Line::styled(
            format!(
                "Step {} of {} · {}",
                current.index + 1,
                current.total,
                current.plan.title
            ),
            theme.bold(),
        ));
    }
    lines.push(Line::from(format!("SHA-256 of the public key {}:", fp.key)));
    let groups: Vec<&str> = fp.grouped_hash.split(' ').collect();
    for chunk in groups.chunks(8) {
        lines.push(Line::styled(format!("  {}", chunk.join(" ")), theme.bold()));
    }
    lines.push(Line::from("the same, as PGP words:"));
    let width = usize::from(inner.width.saturating_sub(2)).max(20);
    let mut line = String::new();
    for word in &fp.words {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(Line::from(format!("  {line}")));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(Line::from(format!("  {line}")));
    }
    // The hash stays put; the status and the step's instructions scroll beneath it.
    let fixed = Paragraph::new(lines).wrap(Wrap { trim: false });
    let fixed_height = u16::try_from(fixed.line_count(inner.width))
        .unwrap_or(u16::MAX)
        .min(inner.height.saturating_sub(3));
    let [top, rest] =
        Layout::vertical([Constraint::Length(fixed_height), Constraint::Min(1)]).areas(inner);
    frame.render_widget(fixed, top);
    let mut rest_lines = status_lines(model, current, theme, compact, false);
    rest_lines.push(Line::from(""));
    rest_lines.extend(current.instructions.lines().map(Line::from));
    render_scrolled(model, theme, frame, rest, rest_lines);
}

fn render_participants(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
    let acted = |name: &str| {
        model.current.as_ref().is_some_and(|c| {
            c.plan.confirmed_by.iter().any(|p| p == name)
                || c.plan.witnessed.iter().any(|(_, p)| p == name)
        })
    };
    let rows = usize::from(area.height.saturating_sub(2));
    let count = model.participants.len();
    // Too many for the pane: a window that follows the person being picked (or who acted last),
    // and a last row that says how many are above and below it (the picker lists all).
    let window = if count > rows {
        rows.saturating_sub(1)
    } else {
        count
    };
    let focus = participant_focus(model);
    let first = focus
        .map_or(0, |f| (f + 1).saturating_sub(window))
        .min(count - window);
    let mut lines: Vec<Line> = model
        .participants
        .iter()
        .enumerate()
        .skip(first)
        .take(window)
        .map(|(i, p)| {
            let mark = if acted(&p.name) { "✓" } else { " " };
            let name = if Some(i) == focus && window < count {
                theme.bold().add_modifier(Modifier::REVERSED)
            } else {
                theme.bold()
            };
            Line::from(vec![
                Span::raw(format!("{mark}{:>2} ", i + 1)),
                Span::styled(p.name.clone(), name),
                Span::styled(format!(" {}", p.roles), theme.dim()),
            ])
        })
        .collect();
    if window < count {
        let below = count - first - window;
        let mut marker = Vec::new();
        if first > 0 {
            marker.push(format!("▲ {first} above"));
        }
        if below > 0 {
            marker.push(format!("▼ {below} more"));
        }
        lines.push(Line::styled(
            format!("  {} (c lists everyone)", marker.join(" · ")),
            theme.bold(),
        ));
    }
    frame.render_widget(Paragraph::new(lines).block(block("Participants")), area);
}

/// The participant the pane keeps in view: the one under the picker's cursor, else the last one
/// who confirmed the current step.
fn participant_focus(model: &Model) -> Option<usize> {
    if let Modal::Pick { cursor, .. } = &model.modal {
        return Some(*cursor).filter(|c| *c < model.participants.len());
    }
    let current = model.current.as_ref()?;
    // The last counted confirmation: the person who acted last.
    let last = current.plan.confirmed_by.last()?;
    model.participants.iter().position(|p| &p.name == last)
}

fn render_evidence(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
    let rows = usize::from(area.height.saturating_sub(2));
    let skip = model.evidence.len().saturating_sub(rows);
    let lines: Vec<Line> = model.evidence[skip..]
        .iter()
        .map(|e| {
            Line::from(vec![
                Span::raw(format!("{:>3} {} ", e.seq, e.time)),
                Span::raw(format!("{:<21}", e.kind)),
                Span::styled(format!(" · {}", e.hash), theme.dim()),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(block("Evidence (audit.jsonl)")),
        area,
    );
}

/// The notes, refusals and warnings of the whole ceremony, oldest first, the newest always in view.
fn render_notes(model: &Model, theme: &Theme, frame: &mut Frame, area: Rect) {
    let lines: Vec<Line> = model
        .notes
        .iter()
        .map(|note| {
            let (prefix, style) = match note.kind {
                NoteKind::Refused => ("✗ refused: ", theme.bad()),
                NoteKind::Warning => ("! warning: ", theme.warn()),
                NoteKind::Info => ("i ", Style::default()),
            };
            let step = note.step.map(|n| format!("{n:>2} ")).unwrap_or_default();
            Line::styled(format!("{step}{prefix}{}", note.text), style)
        })
        .collect();
    let text = Paragraph::new(lines).wrap(Wrap { trim: false });
    let inner = block("").inner(area);
    let total = u16::try_from(text.line_count(inner.width)).unwrap_or(u16::MAX);
    let hidden = total.saturating_sub(inner.height);
    let title = if model.notes.is_empty() {
        "Notes and warnings: none yet".to_string()
    } else if hidden > 0 {
        format!("Notes and warnings ({hidden} more lines above)")
    } else {
        "Notes and warnings, oldest first".to_string()
    };
    frame.render_widget(text.scroll((hidden, 0)).block(block(&title)), area);
}

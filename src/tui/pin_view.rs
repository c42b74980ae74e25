//! The PIN modal's text, and the notices the final screen keeps (the report signatures, or why one
//! is missing). Part of the pure view: no IO.

use super::model::{Model, NoteKind, PinAsk, PinKind};
use super::view::Theme;
use crate::driver::personal_cards::SIGNATURE_MISSING;
use ratatui::text::Line;

/// Title, lines and height of the PIN modal. The prompt is the driver's own
/// (`PinRequest::prompt`); the typed PIN shows as one dot per character, never as text. The height
/// fits the text wrapped to `inner_width`.
pub(super) fn pin_modal<'a>(
    ask: &PinAsk,
    warning: Option<&str>,
    buffer: &str,
    theme: &Theme,
    inner_width: u16,
) -> (String, Vec<Line<'a>>, u16) {
    let (title, why) = match ask.kind {
        PinKind::Hsm => ("HSM PIN", None),
        PinKind::HsmSecurityOfficer => ("HSM security-officer PIN", None),
        PinKind::CustodianCard => ("Quorum card PIN", None),
        PinKind::PersonalCard => (
            "Personal card PIN",
            Some(
                "Your card signs, in your name, the confirmation you just gave (or, at the end, \
                 the ceremony report). Only you type this PIN.",
            ),
        ),
    };
    let mut lines = Vec::new();
    if let Some(warning) = warning {
        lines.push(Line::styled(format!("! {warning}"), theme.bad()));
        lines.push(Line::from(""));
    }
    lines.push(Line::styled(
        ask.prompt.trim_end().to_string(),
        theme.bold(),
    ));
    if let Some(why) = why {
        lines.push(Line::from(why));
    }
    lines.push(Line::from(""));
    lines.push(Line::styled(
        format!("PIN: {}", "•".repeat(buffer.chars().count())),
        theme.bold(),
    ));
    lines.push(Line::from(""));
    lines.push(Line::styled(
        "The PIN is never shown, logged or stored; it is wiped after login. Ctrl-U clears it.",
        theme.dim(),
    ));
    let width = usize::from(inner_width.max(1));
    let text: usize = lines.iter().map(|l| l.width().max(1).div_ceil(width)).sum();
    // Borders, and a spare line for word wrapping.
    let height = u16::try_from(text + 3).unwrap_or(u16::MAX);
    (title.to_string(), lines, height)
}

/// The notices given since the driver last asked for input: at the end of a ceremony, who signed
/// the report and whose signature is missing. Missing signatures first, so a small screen never cuts
/// them, then the signatures made, then other warnings (e.g. a card's refusals before an abort, whose
/// reason the screen already gives).
pub(super) fn closing_notices<'a>(model: &'a Model, theme: &Theme, lines: &mut Vec<Line<'a>>) {
    if model.closing.is_empty() {
        return;
    }
    lines.push(Line::from(""));
    lines.push(Line::styled("Report signatures and notices:", theme.bold()));
    let missing = |n: &&crate::tui::model::Note| {
        n.kind != NoteKind::Info && n.text.starts_with(SIGNATURE_MISSING)
    };
    let warnings = model.closing.iter().filter(|n| n.kind != NoteKind::Info);
    for note in warnings.clone().filter(missing) {
        lines.push(Line::styled(format!("  ! {}", note.text), theme.warn()));
    }
    for note in model.closing.iter().filter(|n| n.kind == NoteKind::Info) {
        lines.push(Line::from(format!("  i {}", note.text)));
    }
    for note in warnings.filter(|n| !missing(n)) {
        lines.push(Line::styled(format!("  ! {}", note.text), theme.warn()));
    }
}

/// The final screen's notices and the ceremony's warnings and refusals as plain lines, for the
/// terminal after the screen closes.
pub(super) fn summary(model: &Model) -> Vec<String> {
    let mut lines = Vec::new();
    let warnings: Vec<_> = model
        .notes
        .iter()
        .filter(|n| n.kind != NoteKind::Info)
        .collect();
    if !warnings.is_empty() {
        lines.push("warnings and refusals during the ceremony:".to_string());
        for note in warnings {
            let step = note.step.map(|n| format!("step {n}: ")).unwrap_or_default();
            let kind = if note.kind == NoteKind::Refused {
                "refused"
            } else {
                "warning"
            };
            lines.push(format!("  {step}{kind}: {}", note.text));
        }
    }
    if !model.closing.is_empty() {
        lines.push("report signatures and notices:".to_string());
        for note in &model.closing {
            let mark = if note.kind == NoteKind::Info {
                "i"
            } else {
                "!"
            };
            lines.push(format!("  {mark} {}", note.text));
        }
    }
    lines
}

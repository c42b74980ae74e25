//! How the TUI model takes what the driver and the audit-log tail report: the second half of
//! [`super::update`], kept apart so the model file stays one screen of types and dispatch.

use super::*;
use crate::engine::Input;
use crate::evidence::pgp_words::pgp_words;

/// How many closing notices the final screen keeps.
const CLOSING: usize = 64;

pub(super) fn evidence(model: &mut Model, rows: Vec<EvidenceRow>) {
    for row in &rows {
        if model.last_seq.is_some_and(|seen| row.seq <= seen) {
            continue;
        }
        if row.kind == "step_failed" {
            if let Some(step) = model
                .steps
                .iter_mut()
                .find(|s| Some(&s.id) == row.step.as_ref())
            {
                step.state = StepState::Failed;
            }
            // A PIN modal already open waits behind the error (its half-typed PIN is wiped).
            if let Modal::Pin { ask, warning, .. } =
                std::mem::replace(&mut model.modal, Modal::None)
            {
                model.pending_pin = Some((ask, warning));
            }
            model.modal = Modal::Error {
                title: format!(
                    "Step \"{}\" failed",
                    row.step.as_deref().unwrap_or("(none)")
                ),
                what: row.reason.clone().unwrap_or_default(),
                todo: "The ceremony stops here: a failed action is never retried inside a run, so \
                       the evidence stays one straight line. The bundle stays verifiable. Fix the \
                       cause, then start a new run."
                    .into(),
            };
        }
    }
    if let Some(last) = rows.last() {
        model.last_seq = Some(last.seq);
    }
    model.evidence = rows;
}

pub(super) fn driver(model: &mut Model, event: DriverEvent) -> Vec<Command> {
    let pin_warning = model.pin_warning.take();
    crate::tui::quorum::observe(model, &event);
    match &event {
        DriverEvent::Info(text) | DriverEvent::Warning(text) if model.closing.len() < CLOSING => {
            let kind = match event {
                DriverEvent::Info(_) => NoteKind::Info,
                _ => NoteKind::Warning,
            };
            model.closing.push(Note {
                kind,
                text: text.clone(),
                step: None,
            });
        }
        DriverEvent::StepStarted { .. } | DriverEvent::NeedInput(_) => model.closing.clear(),
        _ => {}
    }
    match event {
        DriverEvent::StepStarted {
            index,
            total,
            plan,
            instructions,
        } => {
            for (i, row) in model.steps.iter_mut().enumerate() {
                if i == index {
                    row.state = StepState::Current;
                } else if row.state == StepState::Current {
                    row.state = StepState::Done;
                }
            }
            model.current = Some(Current {
                index,
                total,
                plan,
                instructions: paragraphs(&instructions),
            });
            model.fingerprint = None;
            model.scroll = 0;
            model.working = None;
        }
        DriverEvent::Fingerprint { key, grouped_hash } => {
            let bytes = hex::decode(grouped_hash.replace(' ', "")).unwrap_or_default();
            model.fingerprint = Some(Fingerprint {
                key,
                grouped_hash,
                words: pgp_words(&bytes),
            });
        }
        DriverEvent::Refused(reason) => model.note(NoteKind::Refused, reason),
        DriverEvent::Working { what, secs } => model.working = Some((what, secs)),
        DriverEvent::StepDone(plan) => {
            model.working = None;
            if let Some(row) = model.steps.iter_mut().find(|s| s.id == plan.id) {
                row.state = StepState::Done;
            }
            if let Some(current) = model.current.as_mut() {
                current.plan = plan;
            }
        }
        DriverEvent::Warning(text) => {
            model.pin_warning = Some(text.clone());
            model.note(NoteKind::Warning, text);
        }
        DriverEvent::Info(text) => model.note(NoteKind::Info, text),
        DriverEvent::NeedInput(plan) => {
            model.working = None;
            let plan_id = plan.id.clone();
            if let Some(current) = model.current.as_mut() {
                current.plan = plan;
            }
            while let Some((given_at, input)) = model.queued.pop_front() {
                let for_this_step = matches!(input, Input::Exception { .. } | Input::Abort { .. })
                    || given_at.as_deref() == Some(plan_id.as_str());
                if for_this_step {
                    return vec![Command::Reply(input)];
                }
                model.note(
                    NoteKind::Warning,
                    "a confirmation or go typed during the previous step was not used; give it again"
                        .into(),
                );
            }
            model.awaiting = true;
        }
        DriverEvent::NeedPin(ask) => {
            // Opened by `open_pending_pin` now, or when the modal on screen closes.
            model.pending_pin = Some((ask, pin_warning));
        }
        DriverEvent::NeedAttachment { step, description } => {
            model.pending_attach = Some((step, description))
        }
        DriverEvent::NeedCard(ask) => crate::tui::quorum::ask(model, ask),
        DriverEvent::Finished(finished) => {
            model.working = None;
            model.pending_pin = None;
            model.pending_attach = None;
            model.awaiting = false;
            if !finished.completed {
                for row in &mut model.steps {
                    if row.state == StepState::Current {
                        row.state = StepState::Failed;
                    }
                }
            }
            if let Some(error) = &finished.error {
                model.modal = Modal::Error {
                    title: "keyrite stopped".into(),
                    what: error.clone(),
                    todo: "The ceremony was aborted and logged; keep the bundle and check it with \
                           keyrite verify."
                        .into(),
                };
            } else if !matches!(model.modal, Modal::Error { .. }) {
                model.modal = Modal::None;
            }
            model.scroll = 0;
            model.finished = Some(finished);
        }
    }
    Vec::new()
}

/// Scripts wrap instructions by hand; rejoin each paragraph so the pane can wrap it to its width.
fn paragraphs(text: &str) -> String {
    text.trim()
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

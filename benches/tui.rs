//! One frame of the terminal UI rendered at 200×60 into ratatui's TestBackend. Target ≤ 1 ms.

use criterion::{criterion_group, criterion_main, Criterion};
use keyrite::engine::StepPlan;
use keyrite::tui::model::{update, DriverEvent, EvidenceRow, Model, Msg};
use keyrite::tui::view::view;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::hint::black_box;
use std::path::Path;

fn model() -> Model {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ceremony-scripts/root-ca-p256.toml");
    let script = keyrite::script::load(&path)
        .expect("the shipped script loads")
        .script;
    let mut m = Model::new(&script, true, "/srv/ceremony/out", true);
    update(&mut m, Msg::Tick("00:41:07".into()));
    let step = &script.steps[4];
    let plan = StepPlan::from_step(step);
    update(
        &mut m,
        Msg::Driver(DriverEvent::StepStarted {
            index: 4,
            total: script.steps.len(),
            plan: plan.clone(),
            instructions: step.instructions.clone(),
        }),
    );
    update(&mut m, Msg::Driver(DriverEvent::NeedInput(plan)));
    let rows = (0..64)
        .map(|seq| EvidenceRow {
            seq,
            time: "00:41:07".into(),
            kind: "confirmed".into(),
            hash: "9e3779b9".into(),
            step: None,
            reason: None,
        })
        .collect();
    update(&mut m, Msg::Evidence(rows));
    m
}

fn frame(c: &mut Criterion) {
    let m = model();
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).expect("test backend");
    c.bench_function("tui frame 200x60", |b| {
        b.iter(|| {
            terminal.draw(|f| view(black_box(&m), f)).expect("draw");
        })
    });
}

criterion_group!(benches, frame);
criterion_main!(benches);

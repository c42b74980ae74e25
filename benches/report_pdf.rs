//! report.pdf rendering speed: a report with a 200-step transcript must render in ≤ 100 ms
//! (docs/performance.md records the measured number).

use criterion::{criterion_group, criterion_main, Criterion};
use keyrite::evidence::pdf::{render, sample::sample_report};
use std::hint::black_box;

fn report_pdf(c: &mut Criterion) {
    let report = sample_report(200);
    c.bench_function("report.pdf, 200-step transcript", |b| {
        b.iter(|| render(black_box(&report)))
    });
}

criterion_group!(benches, report_pdf);
criterion_main!(benches);

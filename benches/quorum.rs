//! Split + verify every share + combine M shares, for 3-of-5 and 9-of-16 (docs/performance.md).

use criterion::{criterion_group, criterion_main, Criterion};
use keyrite::quorum::{combine, split, Secret};

fn split_verify_combine(c: &mut Criterion) {
    let secret = Secret::generate(&[42u8; 32]).expect("secret");
    for (m, n) in [(3u16, 5u16), (9, 16)] {
        c.bench_function(&format!("split+verify+combine {m}-of-{n}"), |b| {
            b.iter(|| {
                let (shares, commitments) =
                    split(&secret, "BENCH", m, n, b"bench entropy").expect("split");
                for s in &shares {
                    commitments.verify(s).expect("verify");
                }
                combine(&shares[..usize::from(m)], &commitments).expect("combine")
            })
        });
    }
}

criterion_group!(benches, split_verify_combine);
criterion_main!(benches);

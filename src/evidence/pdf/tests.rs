use super::*;
use super::sample::sample_report;

#[test]
fn same_report_renders_to_identical_bytes() {
    let report = sample_report(12);
    let a = render(&report);
    let b = render(&report.clone());
    assert!(a.starts_with(b"%PDF-"));
    assert_eq!(a, b);
    let mut other = report;
    other.ceremony.place = "Room B3".into();
    assert_ne!(render(&other), a);
}

#[test]
fn long_transcripts_break_into_numbered_pages() {
    let pages = sections::layout(&sample_report(200));
    assert!(pages.len() > 10, "only {} pages", pages.len());
    let decorated = decorate(
        pages,
        &Footer {
            left: "x".into(),
            hash: "y".into(),
            watermark: true,
        },
    );
    let total = decorated.len();
    let last = format!("page {total} of {total}");
    let shows = |ops: &Vec<Op>, needle: &str| {
        ops.iter().any(|op| match op {
            Op::ShowText { items } => items
                .iter()
                .any(|i| matches!(i, printpdf::TextItem::Text(t) if t == needle)),
            _ => false,
        })
    };
    assert!(decorated.iter().all(|ops| shows(ops, "REHEARSAL")));
    assert!(shows(&decorated[total - 1], &last));
}

#[test]
fn key_hash_words_are_pgp_words_in_pairs() {
    let words = sections::key_hash_words("e58294f2");
    assert_eq!(words, "topmost Istanbul  /  Pluto vagabond");
}

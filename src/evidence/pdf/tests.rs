use super::sample::sample_report;
use super::*;

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

/// `KEYRITE_PDF_SAMPLE=/tmp/x.pdf cargo test --lib sample_pdf` writes the sample report to look at.
#[test]
fn sample_pdf_can_be_written_for_a_look() {
    let pdf = render(&sample_report(30));
    if let Some(path) = std::env::var_os("KEYRITE_PDF_SAMPLE") {
        std::fs::write(path, &pdf).unwrap();
    }
    assert!(pdf.len() > 1000);
}

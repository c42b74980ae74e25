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
    let footer = Footer {
        left: "x".into(),
        hash: "y".into(),
        watermark: true,
    };
    let total = pages.len();
    let last = format!("page {total} of {total}");
    let shows = |ops: &[Op], needle: &str| {
        ops.iter().any(|op| match op {
            Op::Text { text, .. } | Op::RotatedText { text, .. } => text == needle,
            _ => false,
        })
    };
    assert!(shows(&watermark(), "REHEARSAL"));
    assert!(shows(&footer_ops(&footer, total - 1, total), &last));
    // The rendering draws the watermark and a footer on every page.
    let pdf = render(&sample_report(200));
    let count = |needle: &[u8]| pdf.windows(needle.len()).filter(|w| w == &needle).count();
    assert!(count(b"/Type/Page/") > 10);
    assert_eq!(count(b"/Contents[8 0 R "), count(b"/Type/Page/"));
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

fn shown_text(pages: &[Vec<Op>]) -> Vec<String> {
    pages
        .iter()
        .flatten()
        .filter_map(|op| match op {
            Op::Text { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn cards_signed_confirmations_and_digital_signers_are_shown() {
    let report = sample_report(3);
    let text = shown_text(&sections::layout(&report));
    let has = |needle: &str| text.iter().any(|t| t.contains(needle));
    assert!(has("Personal cards"));
    for card in &report.personal_cards {
        assert!(has(&grouped_hex(&card.key_hash)), "{}", card.person);
    }
    assert!(has("REHEARSAL participants CA: a throw-away CA"));
    // Maria Keller has no card: her confirmations carry no mark; Sven Lindqvist's do.
    assert!(has("Sven Lindqvist (security-officer) [signed]"));
    assert!(has("Maria Keller (master-of-ceremony)"));
    assert!(!has("Maria Keller (master-of-ceremony) [signed]"));
    // Very-high: every carded participant signs; the files are named on the signature page.
    let signers = cards::required(&report);
    assert_eq!(signers.len(), 3);
    assert!(has("sven-lindqvist.report.json.p7s"));
    assert!(has("ines-moreau.report.pdf.p7s"));
    assert!(has("No digital signature required."));
    // Every line stays inside the page, however long the name.
    let long = "j-rg-m-ller-l-denscheidt-von-hohenzollern-sigmaringen.report.json.p7s";
    assert!(!has(long), "a long file name must wrap");
    assert!(text.concat().contains(long));
}

#[test]
fn signers_from_the_report_are_the_signers_from_the_script() {
    use crate::evidence::events::ParticipantRecord;
    use crate::script::signers::required_report_signers;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for level in [
        crate::script::SecurityLevel::Medium,
        crate::script::SecurityLevel::High,
        crate::script::SecurityLevel::VeryHigh,
    ] {
        let mut script = crate::script::load(&root.join("ceremony-scripts/root-ca-p256.toml"))
            .unwrap()
            .script;
        script.ceremony.security_level = level;
        // Take one card away, so "carded" matters.
        script.participants[0].card = None;
        let mut report = sample_report(1);
        report.ceremony.security_level = level;
        report.participants = script
            .participants
            .iter()
            .map(|p| ParticipantRecord {
                name: p.name.clone(),
                roles: p.roles().collect(),
                organisation: None,
            })
            .collect();
        let template = report.personal_cards[0].clone();
        report.personal_cards = script
            .participants
            .iter()
            .filter(|p| p.card.is_some())
            .map(|p| crate::evidence::events::PersonalCardRecord {
                person: p.name.clone(),
                ..template.clone()
            })
            .collect();
        let from_script = required_report_signers(&script);
        assert!(!from_script.is_empty());
        assert_eq!(cards::required(&report), from_script, "{level}");
    }
}

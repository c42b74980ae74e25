//! report.pdf: the ceremony report for people, rendered from report.json and nothing else.
//!
//! [`render`] is a pure function: no clock, no random ids. The PDF dates come from the report's end
//! time and the trailer /ID from the report.json SHA-256, so the same report.json always gives the
//! same bytes and `keyrite verify` re-renders report.pdf and demands byte equality.
//! The paper script for the room (`keyrite print`, [`script`]) shares the layout engine.

mod backup;
mod cards;
mod certificates;
mod crls;
mod destroy;
mod existing;
pub mod layout;
pub mod metrics;
mod paper;
#[doc(hidden)]
pub mod sample;
pub mod script;
mod sections;
mod signatures;

use super::report::Report;
use crate::hsm::spki::grouped_hex;
use layout::{grey, push_line, push_rotated_text, push_text, MARGIN_X, PAGE_H, PAGE_W};
use metrics::Face;
use printpdf::{
    CustomPdfConformance, Mm, Op, PdfConformance, PdfDocument, PdfPage, PdfSaveOptions,
};
use sha2::{Digest, Sha256};

/// Render report.pdf for `report`.
pub fn render(report: &Report) -> Vec<u8> {
    let report_sha256 = super::report::to_json(report)
        .map(|json| hex::encode(Sha256::digest(&json)))
        .unwrap_or_default();
    render_hashed(report, &report_sha256)
}

/// [`render`] for a caller that already holds `report_sha256`, the SHA-256 of
/// `report::to_json(report)` (the run's end, and verify once report.json is those bytes), so the
/// report is not encoded again.
pub fn render_hashed(report: &Report, report_sha256: &str) -> Vec<u8> {
    let pages = sections::layout(report);
    let footer = Footer {
        left: format!("{} - report.json SHA-256", report.ceremony.id),
        hash: grouped_hex(report_sha256),
        watermark: report.rehearsal,
    };
    let title = format!("Key ceremony report {}", report.ceremony.id);
    assemble(
        &title,
        &report.ended,
        report_sha256,
        decorate(pages, &footer),
    )
}

/// What goes at the bottom of every page.
pub(crate) struct Footer {
    pub left: String,
    pub hash: String,
    pub watermark: bool,
}

/// Add the watermark (under the content), the footer and "page x of y" to every page.
pub(crate) fn decorate(pages: Vec<Vec<Op>>, footer: &Footer) -> Vec<Vec<Op>> {
    let total = pages.len();
    pages
        .into_iter()
        .enumerate()
        .map(|(i, content)| {
            let mut ops = Vec::with_capacity(content.len() + 40);
            if footer.watermark {
                ops.push(Op::SaveGraphicsState);
                ops.push(Op::SetFillColor { col: grey(0.86) });
                let size = 96.0;
                let width = Face::Bold.width("REHEARSAL", size);
                // Centre the rotated word on the page: start half its length down the diagonal.
                let (s, c) = (45f32.to_radians().sin(), 45f32.to_radians().cos());
                let x = PAGE_W / 2.0 - c * width / 2.0 + s * size / 3.0;
                let y = PAGE_H / 2.0 - s * width / 2.0 - c * size / 3.0;
                push_rotated_text(&mut ops, x, y, 45.0, Face::Bold, size, "REHEARSAL");
                ops.push(Op::RestoreGraphicsState);
            }
            ops.push(Op::SetFillColor { col: grey(0.0) });
            ops.push(Op::SetOutlineColor { col: grey(0.0) });
            ops.extend(content);
            let y = 46.0;
            push_line(
                &mut ops,
                MARGIN_X,
                y + 12.0,
                PAGE_W - MARGIN_X,
                y + 12.0,
                0.4,
            );
            // The ceremony id is on the cover in full; in the footer it yields to the REHEARSAL mark.
            let room = PAGE_W - 2.0 * MARGIN_X - 130.0;
            push_text(
                &mut ops,
                MARGIN_X,
                y,
                Face::Regular,
                7.5,
                &fit(&footer.left, room),
            );
            let hash_x = MARGIN_X;
            push_text(&mut ops, hash_x, y - 10.0, Face::Mono, 7.5, &footer.hash);
            let page = format!("page {} of {}", i + 1, total);
            let page_w = Face::Regular.width(&page, 8.5);
            push_text(
                &mut ops,
                PAGE_W - MARGIN_X - page_w,
                y - 10.0,
                Face::Regular,
                8.5,
                &page,
            );
            if footer.watermark {
                let mark = "REHEARSAL - throw-away keys";
                let w = Face::Bold.width(mark, 7.5);
                push_text(&mut ops, PAGE_W - MARGIN_X - w, y, Face::Bold, 7.5, mark);
            }
            ops
        })
        .collect()
}

/// `text` shortened with "..." to at most `width` points in the footer face.
fn fit(text: &str, width: f32) -> String {
    let text = metrics::win_ansi(text);
    if Face::Regular.width(&text, 7.5) <= width {
        return text;
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty()
        && Face::Regular.width(&format!("{}...", String::from_iter(&chars)), 7.5) > width
    {
        chars.pop();
    }
    format!("{}...", String::from_iter(&chars))
}

/// Serialise the pages into a PDF whose every byte follows from the inputs.
pub(crate) fn assemble(title: &str, date: &str, id_seed: &str, pages: Vec<Vec<Op>>) -> Vec<u8> {
    let mut doc = PdfDocument::new(title);
    let seconds = time::OffsetDateTime::parse(date, &time::format_description::well_known::Rfc3339)
        .map_or(0, |t| t.unix_timestamp());
    let info = &mut doc.metadata.info;
    // The document dates are the report's end; printpdf's default is the Unix epoch, never "now".
    if let Ok(when) = printpdf::OffsetDateTime::from_unix_timestamp(seconds) {
        info.creation_date = when;
        info.modification_date = when;
        info.metadata_date = when;
    }
    info.creator = "keyrite".into();
    info.producer = format!("keyrite {}", env!("CARGO_PKG_VERSION"));
    info.conformance = PdfConformance::Custom(CustomPdfConformance {
        requires_xmp_metadata: false,
        requires_icc_profile: false,
        ..CustomPdfConformance::default()
    });
    let (w, h) = (Mm(PAGE_W * 25.4 / 72.0), Mm(PAGE_H * 25.4 / 72.0));
    doc.pages = pages
        .into_iter()
        .map(|ops| PdfPage::new(w, h, ops))
        .collect();
    let opts = PdfSaveOptions {
        optimize: true,
        subset_fonts: true,
        secure: true,
        image_optimization: None,
    };
    let mut warnings = Vec::new();
    let mut lo = doc.to_lopdf_document(&opts, &mut warnings);
    // printpdf draws the trailer /ID at random; derive it from the content instead.
    let id = Sha256::digest(format!("{title}\n{id_seed}").as_bytes())[..16].to_vec();
    lo.trailer.set(
        "ID",
        lopdf::Object::Array(vec![
            lopdf::Object::String(id.clone(), lopdf::StringFormat::Hexadecimal),
            lopdf::Object::String(id, lopdf::StringFormat::Hexadecimal),
        ]),
    );
    lo.compress();
    let mut bytes = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = lo.save_to(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests;

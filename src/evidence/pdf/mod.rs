//! report.pdf: the ceremony report for people, rendered from report.json and nothing else.
//!
//! [`render`] is a pure function: no clock, no random ids. The PDF dates come from the report's end
//! time and the trailer /ID from the report.json SHA-256, so the same report.json always gives the
//! same bytes and `keyrite verify` re-renders report.pdf and demands byte equality.
//! Pages are written as they are laid out ([`writer`]): rendering holds the report and one page.
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
mod writer;

use super::report::Report;
use crate::hsm::spki::grouped_hex;
use layout::{push_line, push_rotated_text, push_text, Layout, Op, MARGIN_X, PAGE_H, PAGE_W};
use metrics::Face;
use sha2::{Digest, Sha256};
use std::io::{self, Write};

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
    let mut bytes = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = render_to(report, report_sha256, &mut bytes);
    bytes
}

/// [`render_hashed`] written into `out` page by page (the file at the end of a run, the comparison
/// in verify), without the document in memory.
pub fn render_to(report: &Report, report_sha256: &str, out: impl Write + Send) -> io::Result<()> {
    let footer = Footer {
        left: format!("{} - report.json SHA-256", report.ceremony.id),
        hash: grouped_hex(report_sha256),
        watermark: report.rehearsal,
    };
    let info = writer::Info {
        title: &format!("Key ceremony report {}", report.ceremony.id),
        date: &report.ended,
        id_seed: report_sha256,
    };
    write_document(out, &info, &footer, |l| sections::lay_out(report, l))
}

/// What goes at the bottom of every page.
pub(crate) struct Footer {
    pub left: String,
    pub hash: String,
    pub watermark: bool,
}

/// Pages laid out ahead of the one being written: enough to keep both threads busy, while a
/// long report still holds only a few pages.
const PAGES_AHEAD: usize = 4;

/// Lay out a document with `lay_out` and write it into `out` as its pages fill. The pages are
/// encoded, compressed and written on a second thread while the next ones are laid out (about
/// half of a long report's rendering each; docs/performance.md). `lay_out` runs on this thread,
/// where verify's confirmations are at hand (report/stream.rs). The bytes are those of one
/// thread: the writer gets the same pages in the same order.
pub(crate) fn write_document<W: Write + Send>(
    out: W,
    info: &writer::Info,
    footer: &Footer,
    lay_out: impl FnOnce(&mut Layout),
) -> io::Result<()> {
    std::thread::scope(|scope| {
        let (pages, laid_out) = std::sync::mpsc::sync_channel::<Vec<Op>>(PAGES_AHEAD);
        let writer = scope.spawn(move || {
            let mut pdf = writer::Writer::new(out, footer.watermark.then(watermark));
            for ops in laid_out {
                pdf.page(&ops);
            }
            pdf.finish(info, |i, total| footer_ops(footer, i, total))
                .map(drop)
        });
        {
            // A writer that stopped has panicked: its join below says so.
            let mut sink = |ops: Vec<Op>| drop(pages.send(ops));
            let mut l = Layout::new(&mut sink);
            lay_out(&mut l);
            l.finish();
        }
        // The last page is sent: the writer's loop ends, and it writes the footers and the rest.
        drop(pages);
        writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the PDF writer thread failed")))
    })
}

/// The REHEARSAL mark under each page's content.
pub(crate) fn watermark() -> Vec<Op> {
    let mut ops = vec![Op::Save, Op::FillGrey(0.86)];
    let size = 96.0;
    let width = Face::Bold.width("REHEARSAL", size);
    // Centre the rotated word on the page: start half its length down the diagonal.
    let (s, c) = (45f32.to_radians().sin(), 45f32.to_radians().cos());
    let x = PAGE_W / 2.0 - c * width / 2.0 + s * size / 3.0;
    let y = PAGE_H / 2.0 - s * width / 2.0 - c * size / 3.0;
    push_rotated_text(&mut ops, x, y, 45.0, Face::Bold, size, "REHEARSAL");
    ops.push(Op::Restore);
    ops
}

/// The footer of page `i` (from 0) of `total`: the rule, the left text, the hash, "page x of y".
pub(crate) fn footer_ops(footer: &Footer, i: usize, total: usize) -> Vec<Op> {
    let mut ops = Vec::with_capacity(8);
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

#[cfg(test)]
mod tests;

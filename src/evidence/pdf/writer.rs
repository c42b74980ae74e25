//! keyrite's own PDF writer: pages are compressed and written as they are laid out, so a report
//! of any length holds one page of drawing operations, never the whole document (printpdf, used
//! before, held every page's operations and then lopdf's copy of them until the end).
//!
//! The output is a plain PDF 1.7 file: the three built-in fonts in WinAnsiEncoding, one content
//! stream per page (flate), and, on every page, a shared REHEARSAL watermark stream under the
//! content and a footer stream over it. The footers ("page x of y") are written last, when the
//! page count is known; each page object already names its footer's object number. Every byte
//! follows from the inputs: no clock, the trailer /ID derived from a hash.

use super::layout::{Op, PAGE_H, PAGE_W};
use super::metrics::Face;
use sha2::{Digest, Sha256};
use std::io::{self, Write};

const CATALOG: u32 = 1;
const PAGES: u32 = 2;
const INFO: u32 = 3;
const RESOURCES: u32 = 4;
const FONTS: [(Face, &str, u32); 3] = [
    (Face::Regular, "Helvetica", 5),
    (Face::Bold, "Helvetica-Bold", 6),
    (Face::Mono, "Courier", 7),
];
const WATERMARK: u32 = 8;
/// miniz's fastest level: content streams are repetitive text operators, which it still packs
/// about 6:1, at a fraction of the default level's time (verify re-renders every page).
const FLATE_LEVEL: u8 = 1;

/// A PDF being written page by page into `out`.
pub(crate) struct Writer<W: Write> {
    out: W,
    at: u64,
    /// Byte offset of every object written, by object number - 1 (0: not written yet).
    offsets: Vec<u64>,
    /// Each page's object and its footer's (written by [`Writer::finish`]).
    pages: Vec<(u32, u32)>,
    watermark: bool,
    /// The first write error; later writes are skipped.
    error: Option<io::Error>,
    content: Vec<u8>,
}

/// What the document's information dictionary and trailer say.
pub(crate) struct Info<'a> {
    pub title: &'a str,
    /// RFC 3339; the PDF dates. Empty or unparsable: the Unix epoch (never "now").
    pub date: &'a str,
    /// Hashed with the title into the trailer /ID.
    pub id_seed: &'a str,
}

impl<W: Write> Writer<W> {
    /// Start a document; with `watermark`, every page shows `watermark_ops` under its content.
    pub fn new(out: W, watermark: Option<Vec<Op>>) -> Self {
        let mut w = Writer {
            out,
            at: 0,
            // Object 8, the watermark, only when there is one.
            offsets: vec![0; WATERMARK as usize - usize::from(watermark.is_none())],
            pages: Vec::new(),
            watermark: watermark.is_some(),
            error: None,
            content: Vec::with_capacity(1 << 16),
        };
        // A binary comment line tells transfer tools the file is binary.
        w.bytes(b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n");
        let mut fonts = Vec::new();
        for (face, name, num) in FONTS {
            w.object(
                num,
                format!(
                    "<< /Type /Font /Subtype /Type1 /BaseFont /{name} /Encoding /WinAnsiEncoding >>"
                )
                .as_bytes(),
            );
            fonts.push(format!("/{} {num} 0 R", font_name(face)));
        }
        w.object(
            RESOURCES,
            format!("<< /Font << {} >> >>", fonts.join(" ")).as_bytes(),
        );
        if let Some(ops) = watermark {
            let mut content = Vec::new();
            encode(&mut content, &ops);
            w.stream(WATERMARK, &content);
        }
        w
    }

    /// Write one page: its content now, its footer (object number reserved) at the end.
    pub fn page(&mut self, ops: &[Op]) {
        let mut content = std::mem::take(&mut self.content);
        content.clear();
        // Black text and lines, whatever the watermark left.
        content.extend_from_slice(b"0 g\n0 G\n");
        encode(&mut content, ops);
        let next = self.offsets.len() as u32 + 1;
        let (stream, page, footer) = (next, next + 1, next + 2);
        self.offsets.extend([0, 0, 0]);
        self.stream(stream, &content);
        self.content = content;
        let under = if self.watermark {
            format!("{WATERMARK} 0 R ")
        } else {
            String::new()
        };
        self.object(
            page,
            format!(
                "<< /Type /Page /Parent {PAGES} 0 R /MediaBox [0 0 {} {}] /Resources {RESOURCES} 0 R \
                 /Contents [{under}{stream} 0 R {footer} 0 R] >>",
                fmt(PAGE_W, 100),
                fmt(PAGE_H, 100)
            )
            .as_bytes(),
        );
        self.pages.push((page, footer));
    }

    /// Write the footers (`footer(index, total)`), the page tree, the catalog, the information
    /// dictionary and the cross-reference table.
    pub fn finish(
        mut self,
        info: &Info,
        footer: impl Fn(usize, usize) -> Vec<Op>,
    ) -> io::Result<W> {
        let total = self.pages.len();
        let pages = std::mem::take(&mut self.pages);
        let mut content = Vec::new();
        for (i, &(_, footer_obj)) in pages.iter().enumerate() {
            content.clear();
            encode(&mut content, &footer(i, total));
            self.stream(footer_obj, &content);
        }
        let kids: Vec<String> = pages.iter().map(|(p, _)| format!("{p} 0 R")).collect();
        self.object(
            PAGES,
            format!(
                "<< /Type /Pages /Kids [{}] /Count {total} >>",
                kids.join(" ")
            )
            .as_bytes(),
        );
        self.object(
            CATALOG,
            format!("<< /Type /Catalog /Pages {PAGES} 0 R >>").as_bytes(),
        );
        let date = pdf_date(info.date);
        let mut dict = b"<< /Title ".to_vec();
        text_string(&mut dict, info.title);
        dict.extend_from_slice(
            format!(
                " /Creator (keyrite) /Producer (keyrite {}) /CreationDate ({date}) /ModDate ({date}) >>",
                env!("CARGO_PKG_VERSION")
            )
            .as_bytes(),
        );
        self.object(INFO, &dict);
        let xref = self.at;
        let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", self.offsets.len() + 1);
        for offset in &self.offsets {
            table.push_str(&format!("{offset:010} 00000 n \n"));
        }
        let id = hex::encode(&Sha256::digest(format!("{}\n{}", info.title, info.id_seed))[..16]);
        table.push_str(&format!(
            "trailer\n<< /Size {} /Root {CATALOG} 0 R /Info {INFO} 0 R /ID [<{id}> <{id}>] >>\nstartxref\n{xref}\n%%EOF\n",
            self.offsets.len() + 1
        ));
        self.bytes(table.as_bytes());
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(self.out),
        }
    }

    fn object(&mut self, num: u32, body: &[u8]) {
        self.offsets[num as usize - 1] = self.at;
        self.bytes(format!("{num} 0 obj\n").as_bytes());
        self.bytes(body);
        self.bytes(b"\nendobj\n");
    }

    fn stream(&mut self, num: u32, content: &[u8]) {
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(content, FLATE_LEVEL);
        self.offsets[num as usize - 1] = self.at;
        self.bytes(
            format!(
                "{num} 0 obj\n<< /Length {} /Filter /FlateDecode >>\nstream\n",
                packed.len()
            )
            .as_bytes(),
        );
        self.bytes(&packed);
        self.bytes(b"\nendstream\nendobj\n");
    }

    fn bytes(&mut self, b: &[u8]) {
        if self.error.is_some() {
            return;
        }
        match self.out.write_all(b) {
            Ok(()) => self.at += b.len() as u64,
            Err(e) => self.error = Some(e),
        }
    }
}

fn font_name(face: Face) -> &'static str {
    match face {
        Face::Regular => "F1",
        Face::Bold => "F2",
        Face::Mono => "F3",
    }
}

/// The content-stream operators for `ops`.
fn encode(out: &mut Vec<u8>, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Text {
                x,
                y,
                face,
                size,
                text,
            } => {
                out.extend_from_slice(b"BT /");
                out.extend_from_slice(font_name(*face).as_bytes());
                num(out, *size, 100);
                out.extend_from_slice(b" Tf");
                num(out, *x, 100);
                num(out, *y, 100);
                out.extend_from_slice(b" Td ");
                literal(out, text);
                out.extend_from_slice(b" Tj ET\n");
            }
            Op::RotatedText {
                x,
                y,
                degrees,
                face,
                size,
                text,
            } => {
                let (s, c) = degrees.to_radians().sin_cos();
                out.extend_from_slice(b"BT /");
                out.extend_from_slice(font_name(*face).as_bytes());
                num(out, *size, 100);
                out.extend_from_slice(b" Tf");
                for v in [c, s, -s, c] {
                    num(out, v, 10_000);
                }
                num(out, *x, 100);
                num(out, *y, 100);
                out.extend_from_slice(b" Tm ");
                literal(out, text);
                out.extend_from_slice(b" Tj ET\n");
            }
            Op::Line {
                x1,
                y1,
                x2,
                y2,
                thickness,
            } => {
                num(out, *thickness, 100);
                out.extend_from_slice(b" w");
                num(out, *x1, 100);
                num(out, *y1, 100);
                out.extend_from_slice(b" m");
                num(out, *x2, 100);
                num(out, *y2, 100);
                out.extend_from_slice(b" l S\n");
            }
            Op::FillRect { x, y, w, h, grey } => {
                out.extend_from_slice(b"q");
                num(out, *grey, 1000);
                out.extend_from_slice(b" g");
                for v in [x, y, w, h] {
                    num(out, *v, 100);
                }
                out.extend_from_slice(b" re f Q\n");
            }
            Op::FillGrey(level) => {
                num(out, *level, 1000);
                out.extend_from_slice(b" g\n");
            }
            Op::OutlineGrey(level) => {
                num(out, *level, 1000);
                out.extend_from_slice(b" G\n");
            }
            Op::Save => out.extend_from_slice(b"q\n"),
            Op::Restore => out.extend_from_slice(b"Q\n"),
        }
    }
}

/// " v" rounded to 1/`scale` (a power of ten), without trailing zeros.
fn num(out: &mut Vec<u8>, v: f32, scale: u32) {
    out.push(b' ');
    out.extend_from_slice(fmt(v, scale).as_bytes());
}

fn fmt(v: f32, scale: u32) -> String {
    let scaled = (f64::from(v) * f64::from(scale)).round() as i64;
    let sign = if scaled < 0 { "-" } else { "" };
    let (whole, mut frac) = (
        scaled.unsigned_abs() / u64::from(scale),
        scaled.unsigned_abs() % u64::from(scale),
    );
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let mut digits = scale.ilog10() as usize;
    while frac % 10 == 0 {
        frac /= 10;
        digits -= 1;
    }
    format!("{sign}{whole}.{frac:0digits$}")
}

/// `text` as a PDF literal string in WinAnsiEncoding (other characters become `?`).
fn literal(out: &mut Vec<u8>, text: &str) {
    out.push(b'(');
    for c in text.chars() {
        let b = win_ansi_byte(c).unwrap_or(b'?');
        if matches!(b, b'(' | b')' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b')');
}

/// A text string for the information dictionary: ASCII as a literal, anything else UTF-16BE.
fn text_string(out: &mut Vec<u8>, text: &str) {
    if text.chars().all(|c| (' '..='~').contains(&c)) {
        literal(out, text);
    } else {
        out.extend_from_slice(b"<FEFF");
        for unit in text.encode_utf16() {
            out.extend_from_slice(format!("{unit:04X}").as_bytes());
        }
        out.push(b'>');
    }
}

/// `D:YYYYMMDDHHmmSS+00'00'` for an RFC 3339 time (the epoch when it does not parse).
fn pdf_date(rfc3339: &str) -> String {
    let when = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "D:{:04}{:02}{:02}{:02}{:02}{:02}+00'00'",
        when.year(),
        u8::from(when.month()),
        when.day(),
        when.hour(),
        when.minute(),
        when.second()
    )
}

/// The single WinAnsi (CP1252) byte for `c` (PDF 32000-1 Annex D.2), or `None`.
fn win_ansi_byte(c: char) -> Option<u8> {
    if let cp @ (0x20..=0x7E | 0xA0..=0xFF) = c as u32 {
        return Some(cp as u8);
    }
    Some(match c {
        '\u{20AC}' => 0x80,
        '\u{201A}' => 0x82,
        '\u{0192}' => 0x83,
        '\u{201E}' => 0x84,
        '\u{2026}' => 0x85,
        '\u{2020}' => 0x86,
        '\u{2021}' => 0x87,
        '\u{02C6}' => 0x88,
        '\u{2030}' => 0x89,
        '\u{0160}' => 0x8A,
        '\u{2039}' => 0x8B,
        '\u{0152}' => 0x8C,
        '\u{017D}' => 0x8E,
        '\u{2018}' => 0x91,
        '\u{2019}' => 0x92,
        '\u{201C}' => 0x93,
        '\u{201D}' => 0x94,
        '\u{2022}' => 0x95,
        '\u{2013}' => 0x96,
        '\u{2014}' => 0x97,
        '\u{02DC}' => 0x98,
        '\u{2122}' => 0x99,
        '\u{0161}' => 0x9A,
        '\u{203A}' => 0x9B,
        '\u{0153}' => 0x9C,
        '\u{017E}' => 0x9E,
        '\u{0178}' => 0x9F,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_exact_to_their_scale() {
        assert_eq!(fmt(595.28, 100), "595.28");
        assert_eq!(fmt(50.0, 100), "50");
        assert_eq!(fmt(-0.5, 100), "-0.5");
        assert_eq!(fmt(0.70710677, 10_000), "0.7071");
        assert_eq!(fmt(0.05, 100), "0.05");
        assert_eq!(fmt(0.0, 100), "0");
    }

    #[test]
    fn text_is_win_ansi_with_parentheses_and_backslashes_escaped() {
        let mut out = Vec::new();
        literal(&mut out, "a(b)\\ é € 漢");
        assert_eq!(out, b"(a\\(b\\)\\\\ \xE9 \x80 ?)");
    }

    #[test]
    fn the_cross_reference_table_points_at_every_object() {
        let mut w = Writer::new(Vec::new(), Some(vec![Op::Save, Op::Restore]));
        for _ in 0..3 {
            w.page(&[Op::FillGrey(0.5)]);
        }
        let info = Info {
            title: "Titre é",
            date: "2026-12-02T10:00:00Z",
            id_seed: "x",
        };
        let pdf = w.finish(&info, |_, _| vec![Op::Save]).unwrap();
        let text = String::from_utf8_lossy(&pdf);
        let xref: usize = text
            .rsplit("startxref\n")
            .next()
            .and_then(|t| t.lines().next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        let table = std::str::from_utf8(&pdf[xref..]).unwrap();
        let count: usize = table.lines().nth(1).unwrap()[2..].parse().unwrap();
        assert_eq!(count, 8 + 3 * 3 + 1);
        for (n, line) in table.lines().skip(3).take(count - 1).enumerate() {
            let at: usize = line[..10].parse().unwrap();
            assert!(pdf[at..].starts_with(format!("{} 0 obj\n", n + 1).as_bytes()));
        }
        assert!(text.contains("/CreationDate (D:20261202100000+00'00')"));
        assert!(text.contains("/Count 3"));
    }
}

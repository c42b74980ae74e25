//! The PDF file of report.pdf and the paper script, written with pdf-writer (the typst project's
//! low-level writer): it numbers nothing and holds nothing, so pages are compressed and written as
//! they are laid out and a report of any length holds one page of drawing operations.
//!
//! The file: PDF 1.7, the three built-in fonts in WinAnsiEncoding, one flate content stream per
//! page, and on every page a shared REHEARSAL watermark stream under the content and a footer
//! stream over it. The footers ("page x of y") are written last, when the page count is known;
//! each page object already names its footer's object number. Every byte follows from the inputs:
//! no clock, the trailer /ID derived from a hash.
//!
//! Why not `pdf_writer::Pdf`: it keeps the whole file in one buffer until `finish`. report.pdf
//! is about 1 KB a step and 40 bytes a confirmation, 25 MB for verify's 1M-entry bench bundle,
//! which alone would be most of the 64 MB RSS target and would also delay verify's comparison
//! with the file on disk to the end (docs/performance.md, issue 15, fourth pass). So each object
//! is written into its own `Chunk` whose bytes go straight to `out`, its offset recorded; only the
//! cross-reference table and trailer are written here (`Pdf::finish` writes them from its own
//! buffer's offsets and pdf-writer takes none from outside).

use super::layout::{Op, PAGE_H, PAGE_W};
use super::metrics::{win_ansi_byte, Face};
use miniz_oxide::deflate::core::{
    compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};
use pdf_writer::writers::{Catalog, DocumentInfo, Resources};
use pdf_writer::{Chunk, Content, Date, Filter, Name, Rect, Ref, Settings, Str, TextStr};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::{self, Write};

const CATALOG: Ref = Ref::new(1);
const PAGES: Ref = Ref::new(2);
const INFO: Ref = Ref::new(3);
const RESOURCES: Ref = Ref::new(4);
const FONTS: [(Face, &[u8], Ref); 3] = [
    (Face::Regular, b"Helvetica", Ref::new(5)),
    (Face::Bold, b"Helvetica-Bold", Ref::new(6)),
    (Face::Mono, b"Courier", Ref::new(7)),
];
const WATERMARK: Ref = Ref::new(8);
/// miniz's fastest level: content streams are repetitive text operators, which it still packs
/// about 6:1, at a fraction of the default level's time (verify re-renders every page).
const FLATE_LEVEL: u8 = 1;
/// Compact: pdf-writer's default indents every dictionary for people reading the file.
const SETTINGS: Settings = Settings { pretty: false };

/// A PDF being written page by page into `out`.
pub(crate) struct Writer<W: Write> {
    out: W,
    at: u64,
    /// Byte offset of every object written, by object number - 1 (0: not written yet).
    offsets: Vec<u64>,
    /// Each page's object and its footer's (written by [`Writer::finish`]).
    pages: Vec<(Ref, Ref)>,
    watermark: bool,
    /// The first write error; later writes are skipped.
    error: Option<io::Error>,
    /// A line of text in WinAnsi, reused.
    text: Vec<u8>,
    deflate: Deflater,
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
    /// Start a document; with `watermark`, every page shows those operations under its content.
    pub fn new(out: W, watermark: Option<Vec<Op>>) -> Self {
        let mut w = Writer {
            out,
            at: 0,
            // Object 8, the watermark, only when there is one.
            offsets: vec![0; WATERMARK.get() as usize - usize::from(watermark.is_none())],
            pages: Vec::new(),
            watermark: watermark.is_some(),
            error: None,
            text: Vec::new(),
            deflate: Deflater::new(),
        };
        // A binary comment line tells transfer tools the file is binary.
        w.bytes(b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n");
        for (_, base, id) in FONTS {
            w.object(|c| {
                c.type1_font(id)
                    .base_font(Name(base))
                    .encoding_predefined(Name(b"WinAnsiEncoding"));
            });
        }
        w.object(|c| {
            let mut resources = c.indirect(RESOURCES).start::<Resources>();
            let mut fonts = resources.fonts();
            for (face, _, id) in FONTS {
                fonts.pair(font_name(face), id);
            }
        });
        if let Some(ops) = watermark {
            w.stream(WATERMARK, Content::with_settings(SETTINGS), &ops);
        }
        w
    }

    /// Write one page: its content now, its footer (object number reserved) at the end.
    pub fn page(&mut self, ops: &[Op]) {
        let next = self.offsets.len() as i32 + 1;
        let (stream, page, footer) = (Ref::new(next), Ref::new(next + 1), Ref::new(next + 2));
        self.offsets.extend([0, 0, 0]);
        let mut content = Content::with_settings_and_capacity(SETTINGS, 1 << 16);
        // Black text and lines, whatever the watermark left.
        content.set_fill_gray(0.0).set_stroke_gray(0.0);
        self.stream(stream, content, ops);
        let under = self.watermark.then_some(WATERMARK);
        self.object(|c| {
            c.page(page)
                .parent(PAGES)
                .media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H))
                .contents_array(under.into_iter().chain([stream, footer]))
                .pair(Name(b"Resources"), RESOURCES);
        });
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
        for (i, &(_, footer_obj)) in pages.iter().enumerate() {
            self.stream(
                footer_obj,
                Content::with_settings(SETTINGS),
                &footer(i, total),
            );
        }
        self.object(|c| {
            c.pages(PAGES)
                .kids(pages.iter().map(|&(page, _)| page))
                .count(total as i32);
        });
        self.object(|c| {
            c.indirect(CATALOG).start::<Catalog>().pages(PAGES);
        });
        let date = pdf_date(info.date);
        self.object(|c| {
            c.indirect(INFO)
                .start::<DocumentInfo>()
                .title(TextStr(info.title))
                .creator(TextStr("keyrite"))
                .producer(TextStr(concat!("keyrite ", env!("CARGO_PKG_VERSION"))))
                .creation_date(date)
                .modified_date(date);
        });
        self.xref_and_trailer(info);
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(self.out),
        }
    }

    /// The cross-reference table (20 bytes an object, written in pieces) and the trailer.
    fn xref_and_trailer(&mut self, info: &Info) {
        let xref = self.at;
        let size = self.offsets.len() + 1;
        let mut table = format!("xref\n0 {size}\n0000000000 65535 f \n");
        for offset in std::mem::take(&mut self.offsets) {
            // 20 bytes with the newline: the space before it is part of the entry.
            let _ = writeln!(table, "{offset:010} 00000 n ");
            if table.len() >= 1 << 14 {
                self.bytes(table.as_bytes());
                table.clear();
            }
        }
        let id = hex::encode(&Sha256::digest(format!("{}\n{}", info.title, info.id_seed))[..16]);
        let _ = write!(
            table,
            "trailer\n<</Size {size}/Root {} 0 R/Info {} 0 R/ID[<{id}><{id}>]>>\n\
             startxref\n{xref}\n%%EOF\n",
            CATALOG.get(),
            INFO.get()
        );
        self.bytes(table.as_bytes());
    }

    /// Write the one object `write` puts into a chunk, recording its offset.
    fn object(&mut self, write: impl FnOnce(&mut Chunk)) {
        let mut chunk = Chunk::with_settings(SETTINGS);
        write(&mut chunk);
        if let Some(id) = chunk.refs().next() {
            debug_assert_eq!(chunk.refs().len(), 1, "one object per chunk");
            self.offsets[id.get() as usize - 1] = self.at;
        }
        self.bytes(chunk.as_bytes());
    }

    /// Write `ops` after what `content` holds, compressed, as stream object `id`.
    fn stream(&mut self, id: Ref, mut content: Content, ops: &[Op]) {
        encode(&mut content, ops, &mut self.text);
        let n = self.deflate.zlib(&content.finish());
        // The output buffer lent out while the object is written (a Vec's take allocates nothing).
        let packed = std::mem::take(&mut self.deflate.out);
        self.object(|c| {
            c.stream(id, &packed[..n]).filter(Filter::FlateDecode);
        });
        self.deflate.out = packed;
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

/// `miniz_oxide::deflate::compress_to_vec_zlib` at [`FLATE_LEVEL`] with one compressor and one
/// output buffer for every stream: a new compressor is about 300 KB allocated and zeroed, twice a
/// page (content and footer), which was half the cost of deflating a page (docs/performance.md).
/// `reset` restores a new compressor's state, so the bytes are the same (a unit test compares).
struct Deflater {
    compressor: Box<CompressorOxide>,
    out: Vec<u8>,
}

impl Deflater {
    fn new() -> Self {
        // Window bits > 0: a zlib header and checksum, as compress_to_vec_zlib writes.
        let flags = create_comp_flags_from_zip_params(FLATE_LEVEL.into(), 1, 0);
        Deflater {
            compressor: Box::new(CompressorOxide::new(flags)),
            out: Vec::new(),
        }
    }

    /// `input` deflated in zlib format into the first bytes of `out`: their count.
    fn zlib(&mut self, mut input: &[u8]) -> usize {
        self.compressor.reset();
        self.out.clear();
        self.out.resize(input.len().div_ceil(2).max(64), 0);
        let mut at = 0;
        loop {
            let (status, read, written) = compress(
                &mut self.compressor,
                input,
                &mut self.out[at..],
                TDEFLFlush::Finish,
            );
            at += written;
            input = input.get(read..).unwrap_or_default();
            match status {
                TDEFLStatus::Okay if self.out.len() - at < 64 => {
                    let grown = self.out.len() * 2;
                    self.out.resize(grown, 0);
                }
                TDEFLStatus::Okay => {}
                // Done, or a failure miniz_oxide's own compress_to_vec_zlib treats as a bug (a
                // panic there): what was written ends the stream, and the comparison says so.
                _ => break,
            }
        }
        at
    }
}

fn font_name(face: Face) -> Name<'static> {
    Name(match face {
        Face::Regular => b"F1",
        Face::Bold => b"F2",
        Face::Mono => b"F3",
    })
}

/// The content-stream operators for `ops`. Coordinates are rounded to 1/100 point (grey levels to
/// 1/1000, the watermark's rotation to 1/10000): pdf-writer writes the shortest exact form of a
/// float, and a coordinate summed from many f32 steps would otherwise carry noise digits.
fn encode(content: &mut Content, ops: &[Op], text: &mut Vec<u8>) {
    for op in ops {
        match op {
            Op::Text {
                x,
                y,
                face,
                size,
                text: t,
            } => {
                content
                    .begin_text()
                    .set_font(font_name(*face), round(*size, 100))
                    .next_line(round(*x, 100), round(*y, 100))
                    .show(win_ansi(t, text))
                    .end_text();
            }
            Op::RotatedText {
                x,
                y,
                degrees,
                face,
                size,
                text: t,
            } => {
                let (s, c) = degrees.to_radians().sin_cos();
                let (s, c) = (round(s, 10_000), round(c, 10_000));
                content
                    .begin_text()
                    .set_font(font_name(*face), round(*size, 100))
                    .set_text_matrix([c, s, -s, c, round(*x, 100), round(*y, 100)])
                    .show(win_ansi(t, text))
                    .end_text();
            }
            Op::Line {
                x1,
                y1,
                x2,
                y2,
                thickness,
            } => {
                content
                    .set_line_width(round(*thickness, 100))
                    .move_to(round(*x1, 100), round(*y1, 100))
                    .line_to(round(*x2, 100), round(*y2, 100))
                    .stroke();
            }
            Op::FillRect { x, y, w, h, grey } => {
                content
                    .save_state()
                    .set_fill_gray(round(*grey, 1000))
                    .rect(
                        round(*x, 100),
                        round(*y, 100),
                        round(*w, 100),
                        round(*h, 100),
                    )
                    .fill_nonzero()
                    .restore_state();
            }
            Op::FillGrey(level) => {
                content.set_fill_gray(round(*level, 1000));
            }
            Op::OutlineGrey(level) => {
                content.set_stroke_gray(round(*level, 1000));
            }
            Op::Save => {
                content.save_state();
            }
            Op::Restore => {
                content.restore_state();
            }
        }
    }
}

/// `v` rounded to 1/`scale`.
fn round(v: f32, scale: u32) -> f32 {
    ((f64::from(v) * f64::from(scale)).round() / f64::from(scale)) as f32
}

/// `t` in WinAnsiEncoding, in `buf` (characters outside it become `?`).
fn win_ansi<'b>(t: &str, buf: &'b mut Vec<u8>) -> Str<'b> {
    buf.clear();
    buf.extend(t.chars().map(|c| win_ansi_byte(c).unwrap_or(b'?')));
    Str(buf)
}

/// The PDF date (UTC) of an RFC 3339 time (the epoch when it does not parse).
fn pdf_date(rfc3339: &str) -> Date {
    let when = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Date::new(when.year().clamp(0, 9999) as u16)
        .month(u8::from(when.month()))
        .day(when.day())
        .hour(when.hour())
        .minute(when.minute())
        .second(when.second())
        .utc_offset_hour(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reused_compressor_writes_what_a_new_one_per_stream_writes() {
        // Text-like, empty, one byte, incompressible (the output outgrows input / 2) and long
        // inputs, in an order where each follows a different kind.
        let mut noise = Vec::new();
        let mut x = 0x2545_f491_u32;
        for _ in 0..70_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            noise.push(x as u8);
        }
        let text = b"BT/F1 8 Tf 56.69 700.5 Td(Op 12 operator)Tj\nET\n".repeat(900);
        let inputs: [&[u8]; 7] = [
            &text,
            b"",
            b"x",
            &noise,
            &text[..5_000],
            &noise[..100],
            &text,
        ];
        let mut deflater = Deflater::new();
        for input in inputs {
            let fresh = miniz_oxide::deflate::compress_to_vec_zlib(input, FLATE_LEVEL);
            let n = deflater.zlib(input);
            assert_eq!(
                &deflater.out[..n],
                fresh.as_slice(),
                "{} bytes",
                input.len()
            );
        }
    }

    #[test]
    fn numbers_are_rounded_to_their_scale() {
        let mut content = Content::with_settings(SETTINGS);
        let ops = [Op::Line {
            x1: 595.28,
            y1: 50.0,
            x2: 12.345_67,
            y2: 773.540_04,
            thickness: 0.5,
        }];
        encode(&mut content, &ops, &mut Vec::new());
        let stream = String::from_utf8(content.finish().into_vec()).unwrap();
        assert_eq!(stream, " 0.5 w 595.28 50 m 12.35 773.54 l\nS");
    }

    #[test]
    fn text_is_win_ansi_with_parentheses_and_backslashes_escaped() {
        let mut content = Content::with_settings(SETTINGS);
        let text = |t: &str| Op::Text {
            x: 1.0,
            y: 2.0,
            face: Face::Mono,
            size: 8.5,
            text: t.into(),
        };
        encode(
            &mut content,
            &[text("a)(b\\"), text("é € 漢")],
            &mut Vec::new(),
        );
        assert_eq!(
            &*content.finish(),
            b"BT/F3 8.5 Tf 1 2 Td(a\\)\\(b\\\\)Tj\nET\nBT/F3 8.5 Tf 1 2 Td<E92080203F>Tj\nET"
                .as_slice()
        );
    }

    #[test]
    fn the_cross_reference_table_points_at_every_object() {
        let mut w = Writer::new(Vec::new(), Some(vec![Op::Save, Op::Restore]));
        for _ in 0..3 {
            w.page(&[Op::FillGrey(0.5)]);
        }
        let info = Info {
            title: "Titre é",
            date: "2026-12-02T10:00:00+01:00",
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
        assert!(table.starts_with("xref\n0 18\n0000000000 65535 f \n"));
        let count: usize = table.lines().nth(1).unwrap()[2..].parse().unwrap();
        assert_eq!(count, 8 + 3 * 3 + 1);
        for (n, line) in table.lines().skip(3).take(count - 1).enumerate() {
            assert_eq!(line.len() + 1, 20, "{line:?}");
            let at: usize = line[..10].parse().unwrap();
            assert!(pdf[at..].starts_with(format!("{} 0 obj\n", n + 1).as_bytes()));
        }
        assert!(text.contains("/CreationDate(D:20261202090000Z)"));
        assert!(text.contains("/Count 3"));
        assert!(text.contains("/Title<FEFF00540069007400720065002000E9>"));
    }
}

//! A small page layout engine: headings, wrapped paragraphs, key/value blocks and tables whose
//! cells wrap, with automatic page breaks. Each page is handed to a sink as soon as it is full
//! (the PDF writer compresses and writes it, so a long report never holds more than one page of
//! drawing operations). Nothing here reads a clock or a random source, so the same content always
//! gives the same operations.

use super::metrics::{wrap, Face};

/// A4 portrait, in points.
pub const PAGE_W: f32 = 595.28;
pub const PAGE_H: f32 = 841.89;
pub const MARGIN_X: f32 = 50.0;
/// Content starts here, measured from the bottom.
pub const TOP: f32 = PAGE_H - 56.0;
/// Content never goes below this line; the footer lives beneath it.
pub const BOTTOM: f32 = 72.0;
pub const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN_X;

pub const BODY: f32 = 9.5;
const CELL_PAD: f32 = 3.5;

fn leading(size: f32) -> f32 {
    size * 1.3
}

/// One table column: its header, its share of the content width, and its face.
pub struct Column {
    pub header: &'static str,
    pub width: f32,
    pub face: Face,
}

impl Column {
    pub fn new(header: &'static str, fraction: f32, face: Face) -> Self {
        Column {
            header,
            width: fraction * CONTENT_W,
            face,
        }
    }
}

/// One drawing operation (coordinates in points from the bottom left, grey levels 0 = black).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Text {
        x: f32,
        y: f32,
        face: Face,
        size: f32,
        text: String,
    },
    /// Text rotated by `degrees` around (x, y), for the watermark.
    RotatedText {
        x: f32,
        y: f32,
        degrees: f32,
        face: Face,
        size: f32,
        text: String,
    },
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        thickness: f32,
    },
    FillRect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        grey: f32,
    },
    FillGrey(f32),
    OutlineGrey(f32),
    Save,
    Restore,
}

/// Where finished pages go, in order.
pub type PageSink<'s> = &'s mut dyn FnMut(Vec<Op>);

pub struct Layout<'s> {
    sink: PageSink<'s>,
    ops: Vec<Op>,
    y: f32,
    /// Pages handed to the sink so far.
    pages: usize,
}

impl<'s> Layout<'s> {
    pub fn new(sink: PageSink<'s>) -> Self {
        Layout {
            sink,
            ops: Vec::new(),
            y: TOP,
            pages: 0,
        }
    }

    pub fn new_page(&mut self) {
        (self.sink)(std::mem::take(&mut self.ops));
        self.pages += 1;
        self.y = TOP;
    }

    /// Start a new page unless `height` points still fit on this one.
    pub fn ensure(&mut self, height: f32) {
        if self.y - height < BOTTOM {
            self.new_page();
        }
    }

    pub fn space(&mut self, height: f32) {
        self.y -= height;
    }

    /// Draw one line of text with its baseline at (x, y). The text must already fit.
    pub fn text_at(&mut self, x: f32, y: f32, face: Face, size: f32, text: &str) {
        push_text(&mut self.ops, x, y, face, size, text);
    }

    pub fn title(&mut self, text: &str, size: f32) {
        for line in wrap(text, Face::Bold, size, CONTENT_W) {
            self.ensure(leading(size));
            self.y -= size;
            self.text_at(MARGIN_X, self.y, Face::Bold, size, &line);
            self.y -= leading(size) - size;
        }
    }

    /// A section heading with a rule under it; never left alone at the bottom of a page.
    pub fn heading(&mut self, text: &str) {
        let size = 13.0;
        self.ensure(size + 60.0);
        self.space(10.0);
        self.title(text, size);
        self.y -= 3.0;
        self.rule(self.y, 0.8);
        self.y -= 8.0;
    }

    pub fn subheading(&mut self, text: &str) {
        self.ensure(40.0);
        self.space(4.0);
        self.title(text, 10.5);
        self.y -= 3.0;
    }

    /// A paragraph wrapped to the content width.
    pub fn para(&mut self, face: Face, size: f32, text: &str) {
        for line in wrap(text, face, size, CONTENT_W) {
            self.ensure(leading(size));
            self.y -= size;
            self.text_at(MARGIN_X, self.y, face, size, &line);
            self.y -= leading(size) - size;
        }
        self.y -= 4.0;
    }

    fn rule(&mut self, y: f32, thickness: f32) {
        self.line(MARGIN_X, y, MARGIN_X + CONTENT_W, y, thickness);
    }

    pub fn line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, thickness: f32) {
        push_line(&mut self.ops, x1, y1, x2, y2, thickness);
    }

    /// Label/value rows: labels in bold on the left, values wrapped on the right.
    pub fn key_values(&mut self, rows: &[(&str, String, Face)]) {
        let label_w = 0.27 * CONTENT_W;
        let value_w = CONTENT_W - label_w;
        for (label, value, face) in rows {
            let labels = wrap(label, Face::Bold, BODY, label_w - 8.0);
            let values = wrap(value, *face, BODY, value_w);
            let n = labels.len().max(values.len());
            for i in 0..n {
                self.ensure(leading(BODY));
                self.y -= BODY;
                if let Some(l) = labels.get(i) {
                    self.text_at(MARGIN_X, self.y, Face::Bold, BODY, l);
                }
                if let Some(v) = values.get(i) {
                    self.text_at(MARGIN_X + label_w, self.y, *face, BODY, v);
                }
                self.y -= leading(BODY) - BODY;
            }
            self.y -= 2.5;
        }
        self.y -= 4.0;
    }

    /// A bordered table. Every cell wraps inside its column; the header repeats on each new page; a
    /// row taller than a page continues on the next one.
    pub fn table<R: AsRef<[String]>>(
        &mut self,
        columns: &[Column],
        rows: impl IntoIterator<Item = R>,
    ) {
        let size = 8.5;
        let lead = leading(size);
        let wrapped_header: Vec<Vec<String>> = columns
            .iter()
            .map(|c| wrap(c.header, Face::Bold, size, c.width - 2.0 * CELL_PAD))
            .collect();
        let header_lines = wrapped_header.iter().map(Vec::len).max().unwrap_or(1);
        let header_h = header_lines as f32 * lead + 2.0 * CELL_PAD;
        let mut header_drawn = false;
        for row in rows {
            let row = row.as_ref();
            let cells: Vec<Vec<String>> = columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let text = row.get(i).map(String::as_str).unwrap_or("");
                    wrap(text, c.face, size, c.width - 2.0 * CELL_PAD)
                })
                .collect();
            let lines = cells.iter().map(Vec::len).max().unwrap_or(1).max(1);
            // Keep a row whole when it fits on a fresh page; only taller rows are split.
            let whole = lines as f32 * lead + 2.0 * CELL_PAD;
            let header_due = if header_drawn { 0.0 } else { header_h };
            if self.y - whole - header_due < BOTTOM && whole + header_h < TOP - BOTTOM {
                self.new_page();
                header_drawn = false;
            }
            let mut done = 0;
            while done < lines {
                // At least one line of the row (and the header, if due) must fit.
                let need = lead + 2.0 * CELL_PAD + if header_drawn { 0.0 } else { header_h };
                if self.y - need < BOTTOM {
                    self.new_page();
                    header_drawn = false;
                }
                if !header_drawn {
                    self.table_row(columns, &wrapped_header, 0, header_lines, size, true);
                    header_drawn = true;
                }
                let room = ((self.y - BOTTOM - 2.0 * CELL_PAD) / lead).floor().max(1.0) as usize;
                let take = room.min(lines - done);
                self.table_row(columns, &cells, done, take, size, false);
                done += take;
                if done < lines {
                    self.new_page();
                    header_drawn = false;
                }
            }
        }
        self.y -= 8.0;
    }

    fn table_row(
        &mut self,
        columns: &[Column],
        cells: &[Vec<String>],
        from: usize,
        count: usize,
        size: f32,
        header: bool,
    ) {
        let lead = leading(size);
        let height = count as f32 * lead + 2.0 * CELL_PAD;
        let top = self.y;
        if header {
            self.ops.push(Op::FillRect {
                x: MARGIN_X,
                y: top - height,
                w: CONTENT_W,
                h: height,
                grey: 0.9,
            });
        }
        let mut x = MARGIN_X;
        for (column, lines) in columns.iter().zip(cells) {
            let face = if header { Face::Bold } else { column.face };
            for (i, line) in lines.iter().skip(from).take(count).enumerate() {
                let baseline = top - CELL_PAD - size - i as f32 * lead + 1.0;
                push_text(&mut self.ops, x + CELL_PAD, baseline, face, size, line);
            }
            x += column.width;
        }
        // Borders: top, bottom, and every column edge.
        let bottom = top - height;
        self.line(MARGIN_X, top, MARGIN_X + CONTENT_W, top, 0.5);
        self.line(MARGIN_X, bottom, MARGIN_X + CONTENT_W, bottom, 0.5);
        let mut x = MARGIN_X;
        self.line(x, top, x, bottom, 0.5);
        for column in columns {
            x += column.width;
            self.line(x, top, x, bottom, 0.5);
        }
        self.y = bottom;
    }

    /// Finish: the last page to the sink, unless it was started but left empty. Returns the number
    /// of pages.
    pub fn finish(mut self) -> usize {
        if !self.ops.is_empty() || self.pages == 0 {
            (self.sink)(std::mem::take(&mut self.ops));
            self.pages += 1;
        }
        self.pages
    }

    pub fn y(&self) -> f32 {
        self.y
    }

    pub fn set_y(&mut self, y: f32) {
        self.y = y;
    }
}

pub fn push_text(ops: &mut Vec<Op>, x: f32, y: f32, face: Face, size: f32, text: &str) {
    ops.push(Op::Text {
        x,
        y,
        face,
        size,
        text: text.to_string(),
    });
}

/// Text rotated by `degrees` around (x, y), for the watermark.
pub fn push_rotated_text(
    ops: &mut Vec<Op>,
    x: f32,
    y: f32,
    degrees: f32,
    face: Face,
    size: f32,
    text: &str,
) {
    ops.push(Op::RotatedText {
        x,
        y,
        degrees,
        face,
        size,
        text: text.to_string(),
    });
}

pub fn push_line(ops: &mut Vec<Op>, x1: f32, y1: f32, x2: f32, y2: f32, thickness: f32) {
    ops.push(Op::Line {
        x1,
        y1,
        x2,
        y2,
        thickness,
    });
}

//! Text widths of the PDF built-in fonts, so text can be wrapped inside its cell.
//!
//! The built-in fonts are written with WinAnsiEncoding (CP1252). Characters outside it are shown as
//! `?`; [`win_ansi`] makes that substitution explicit so what is measured is what is printed.

/// The three faces the documents use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    Regular,
    Bold,
    Mono,
}

impl Face {
    /// Width of `text` in points at `size`.
    pub fn width(self, text: &str, size: f32) -> f32 {
        self.units(text) as f32 * size / 1000.0
    }

    /// Width of `text` in thousandths of the font size.
    fn units(self, text: &str) -> u32 {
        text.chars().map(|c| u32::from(self.char_width(c))).sum()
    }

    fn char_width(self, c: char) -> u16 {
        let table = match self {
            Face::Mono => return 600,
            Face::Regular => &HELVETICA,
            Face::Bold => &HELVETICA_BOLD,
        };
        let base = match c {
            ' '..='~' => c,
            _ => latin_base(c).unwrap_or('W'),
        };
        match base {
            // Ligature-like letters are wider than any base letter.
            'Æ' | 'Œ' => 1000,
            'æ' | 'œ' => 944,
            'ß' => 611,
            ' '..='~' => table[(base as usize) - 32],
            _ => 1000,
        }
    }
}

/// The text as the built-in fonts can show it: every character outside WinAnsi becomes `?`, and
/// control characters (tabs, stray newlines) become spaces.
pub fn win_ansi(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => ' ',
            _ if win_ansi_byte(c).is_some() => c,
            _ => '?',
        })
        .collect()
}

/// The single WinAnsi (CP1252) byte for `c` (PDF 32000-1 Annex D.2), or `None`.
pub fn win_ansi_byte(c: char) -> Option<u8> {
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

/// The unaccented letter an accented Latin letter is as wide as (Helvetica draws them alike).
fn latin_base(c: char) -> Option<char> {
    Some(match c {
        'À'..='Å' => 'A',
        'Ç' => 'C',
        'È'..='Ë' => 'E',
        'Ì'..='Ï' => 'I',
        'Ð' => 'D',
        'Ñ' => 'N',
        'Ò'..='Ö' | 'Ø' => 'O',
        'Ù'..='Ü' => 'U',
        'Ý' | 'Ÿ' => 'Y',
        'Þ' => 'P',
        'à'..='å' => 'a',
        'ç' => 'c',
        'è'..='ë' => 'e',
        'ì'..='ï' => 'i',
        'ð' | 'ò'..='ö' | 'ø' => 'o',
        'ñ' => 'n',
        'ù'..='ü' => 'u',
        'ý' | 'ÿ' => 'y',
        'þ' => 'p',
        'Š' => 'S',
        'š' => 's',
        'Ž' => 'Z',
        'ž' => 'z',
        'Æ' | 'Œ' | 'æ' | 'œ' | 'ß' => c,
        _ => return None,
    })
}

/// Widths of ' '..='~' in Helvetica, in 1/1000 em (Adobe AFM).
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

/// Widths of ' '..='~' in Helvetica-Bold, in 1/1000 em (Adobe AFM).
const HELVETICA_BOLD: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, 975, 722, 722, 722, 722, 667,
    611, 778, 722, 278, 556, 722, 611, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 333, 278, 333, 584, 556, 333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556,
    278, 889, 611, 611, 611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
];

/// Break `text` into lines no wider than `width` points. Words longer than a line (hashes, paths)
/// are broken between characters, so nothing ever runs outside its cell. Newlines are kept.
pub fn wrap(text: &str, face: Face, size: f32, width: f32) -> Vec<String> {
    wrap_as(text, face, size, width, true)
}

/// [`wrap`]; without `shortcut`, every paragraph goes through the word-by-word loop.
fn wrap_as(text: &str, face: Face, size: f32, width: f32, shortcut: bool) -> Vec<String> {
    // Widths are sums of whole font units, so a line's width grows by its next word's units: the
    // same figures as measuring each candidate line again, without rebuilding it.
    let fits = |units: u32| units as f32 * size / 1000.0 <= width;
    let space = face.units(" ");
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        // Most paragraphs of a long report (a confirmation's "time name (role)", a name, a role)
        // are one printable ASCII run, single spaced, that fits: that run is the line the loop
        // below would build, word by word, from its WinAnsi copy.
        if shortcut
            && paragraph.bytes().all(|b| (b' '..=b'~').contains(&b))
            && !paragraph.starts_with(' ')
            && !paragraph.ends_with(' ')
            && !paragraph.contains("  ")
            && fits(face.units(paragraph))
        {
            lines.push(paragraph.to_string());
            continue;
        }
        let paragraph = win_ansi(paragraph);
        let mut line = String::new();
        let mut line_units = 0;
        for word in paragraph.split(' ').filter(|w| !w.is_empty()) {
            let word_units = face.units(word);
            let candidate = if line.is_empty() {
                word_units
            } else {
                line_units + space + word_units
            };
            if fits(candidate) {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(word);
                line_units = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            if fits(word_units) {
                line.push_str(word);
                line_units = word_units;
                continue;
            }
            line_units = 0;
            for c in word.chars() {
                let next = line_units + u32::from(face.char_width(c));
                if !fits(next) && !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                    line.push(c);
                    line_units = u32::from(face.char_width(c));
                } else {
                    line.push(c);
                    line_units = next;
                }
            }
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_the_afm() {
        // "Hello" in Helvetica: H 722 + e 556 + l 222 + l 222 + o 556 = 2278.
        assert!((Face::Regular.width("Hello", 10.0) - 22.78).abs() < 1e-3);
        assert_eq!(Face::Mono.width("abcd", 10.0), 24.0);
        assert_eq!(
            Face::Regular.width("Müller", 10.0),
            Face::Regular.width("Muller", 10.0)
        );
    }

    #[test]
    fn wraps_words_and_breaks_long_tokens() {
        let lines = wrap("aaaa bbbb cccc", Face::Mono, 10.0, 6.0 * 9.0);
        assert_eq!(lines, ["aaaa bbbb", "cccc"]);
        let hash = "0123456789abcdef0123456789abcdef";
        let lines = wrap(hash, Face::Mono, 10.0, 60.0);
        assert_eq!(lines.concat(), hash);
        assert!(lines.iter().all(|l| Face::Mono.width(l, 10.0) <= 60.0));
        assert_eq!(wrap("a\nb", Face::Regular, 10.0, 100.0), ["a", "b"]);
    }

    proptest::proptest! {
        /// The one-line shortcut gives what the word-by-word loop gives, on any text and width.
        #[test]
        fn the_shortcut_wraps_as_the_loop_does(
            text in "[a-c ~é\\nŁ\t]{0,24}|[ -~]{0,40}|(( {0,2}[a-cW]{1,4} {0,2}){0,6}\\n?){0,3}",
            width in 0.0f32..120.0,
            face in 0usize..3,
        ) {
            let face = [Face::Regular, Face::Bold, Face::Mono][face];
            proptest::prop_assert_eq!(
                wrap(&text, face, 10.0, width),
                wrap_as(&text, face, 10.0, width, false)
            );
        }
    }

    #[test]
    fn keeps_latin_letters_and_marks_the_rest() {
        assert_eq!(
            win_ansi("Sven Lindqvist, Jörg Müller"),
            "Sven Lindqvist, Jörg Müller"
        );
        assert_eq!(win_ansi("Łukasz 李"), "?ukasz ?");
    }
}

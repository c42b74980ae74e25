//! Policy rules about script text: every string in a script is shown to people (terminal, TUI, report,
//! paper script) and must be shown, never obeyed. A control character can drive the terminal (ESC
//! sequences move the cursor, rewrite lines, retitle the window), a bidirectional control can make
//! "don't" read as "do", and an invisible character can make two different strings look the same. So
//! every string value, in every table, is checked here, including fields added later.
//! Participant names get the same test (and more) in participants.rs; they are skipped here so each
//! problem has one message.

use super::{root, Checker};
use crate::script::diagnostic::{is_hidden_char, KeyPath, Segment};
use toml::de::{DeTable, DeValue};
use unicode_normalization::UnicodeNormalization;

/// Explicit directional formatting characters (Unicode UAX #9): embeddings, overrides, isolates and
/// marks. They reorder the text around them on screen.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(
        u32::from(c),
        0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069
    )
}

/// What a refused character is, in the words a message uses.
pub(crate) fn char_kind(c: char) -> &'static str {
    match c {
        '\u{1b}' => "ESC, which starts terminal control sequences",
        '\t' => "a tab, a control character",
        c if c.is_control() => "a control character",
        c if is_bidi_control(c) => {
            "a bidirectional control character, which reorders the text around it on screen"
        }
        _ => "an invisible formatting character",
    }
}

/// The first character of `text` that must not be shown: hidden characters (controls, bidi controls,
/// invisible formatting; see [`is_hidden_char`]), except line breaks where `multi_line` allows them
/// (`\n`, and `\r` only as part of `\r\n`).
pub(crate) fn first_refused_char(text: &str, multi_line: bool) -> Option<char> {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let line_break = c == '\n' || (c == '\r' && chars.peek() == Some(&'\n'));
        if multi_line && line_break {
            continue;
        }
        if is_hidden_char(c) || is_bidi_control(c) {
            return Some(c);
        }
    }
    None
}

/// The key two participant names collide on: NFKC (so NFC and NFD spellings, full-width letters and
/// ligatures agree), lower case (the room types names in any case), then the Unicode TR 39 confusable
/// skeleton (so Cyrillic "а" and Latin "a", or "rn" and "m", agree).
pub(crate) fn name_key(name: &str) -> String {
    let folded: String = name.nfkc().collect::<String>().to_lowercase();
    unicode_security::skeleton(&folded).collect()
}

/// How two names that share a [`name_key`] differ, for the message: the first pair of characters that
/// only look alike, or that one is another Unicode form (NFD, full-width, …) of the other. `None` when
/// they differ in letter case only.
pub(crate) fn look_alike(a: &str, b: &str) -> Option<String> {
    let (na, nb): (String, String) = (a.nfkc().collect(), b.nfkc().collect());
    let differs = |x: &char, y: &char| !x.to_lowercase().eq(y.to_lowercase());
    if let Some((x, y)) = na.chars().zip(nb.chars()).find(|(x, y)| differs(x, y)) {
        return Some(format!(
            "U+{:04X} here looks like U+{:04X} there",
            u32::from(y),
            u32::from(x)
        ));
    }
    (a.to_lowercase() != b.to_lowercase())
        .then(|| "the same letters, written in another Unicode form (NFD, full-width, …)".into())
}

/// Where `c` is in a string value's source text (quotes included): the character itself, or the
/// escape that wrote it (`\u001B`, `\U0000001b`, `\e`, `\x1b`). `None` sends the caret to the value.
pub(crate) fn written_at(raw: &str, c: char) -> Option<usize> {
    if let Some(at) = raw.find(c) {
        return Some(at);
    }
    // ASCII lower-casing keeps every byte offset.
    let lower = raw.to_ascii_lowercase();
    let code = u32::from(c);
    let mut escapes = vec![format!("\\u{code:04x}"), format!("\\u{code:08x}")];
    if code <= 0xFF {
        escapes.push(format!("\\x{code:02x}"));
    }
    if c == '\u{1b}' {
        escapes.push("\\e".into());
    }
    escapes.iter().filter_map(|e| lower.find(e.as_str())).min()
}

/// How a message names the field at `path`: "`title` in [[steps]]" or "`ceremony.name`".
fn field_name(path: &KeyPath) -> String {
    if path
        .segments()
        .iter()
        .any(|s| matches!(s, Segment::Index(_)))
    {
        path.table_name()
    } else {
        format!("`{path}`")
    }
}

fn is_participant_name(path: &KeyPath) -> bool {
    matches!(path.segments(), [Segment::Key(p), Segment::Index(_), Segment::Key(n)] if p == "participants" && n == "name")
}

fn is_instructions(path: &KeyPath) -> bool {
    matches!(path.segments(), [Segment::Key(s), Segment::Index(_), Segment::Key(i)] if s == "steps" && i == "instructions")
}

/// Every string value in the document with its path, in document order.
fn strings(at: &KeyPath, value: &DeValue<'_>, out: &mut Vec<(KeyPath, String)>) {
    match value {
        DeValue::String(s) => out.push((at.clone(), s.to_string())),
        DeValue::Table(t) => {
            for (k, v) in t.iter() {
                strings(&at.clone().key(k.get_ref()), v.get_ref(), out);
            }
        }
        DeValue::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                strings(&at.clone().index(i), v.get_ref(), out);
            }
        }
        _ => {}
    }
}

impl Checker<'_> {
    /// Refuses control, bidi and invisible characters in every string of the script, with the caret on
    /// the character (or on the escape that wrote it).
    pub(super) fn displayed_text(&mut self) {
        // Without escapes (no backslash) and without multi-line strings, a string holds only
        // characters of one line of the source: if no line has a refused character, no string
        // has, and the second parse (about 25 times the file in memory) is not needed.
        let source = &self.l.source;
        if !source.contains('\\')
            && !source.contains("\"\"\"")
            && !source.contains("'''")
            && source
                .lines()
                .all(|line| first_refused_char(line, false).is_none())
        {
            return;
        }
        // The script parsed once already, so this parse succeeds; it is cheap next to the policy.
        let Ok(doc) = DeTable::parse(source) else {
            return;
        };
        let mut found = Vec::new();
        for (k, v) in doc.get_ref().iter() {
            strings(&root().key(k.get_ref()), v.get_ref(), &mut found);
        }
        for (path, text) in found {
            if is_participant_name(&path) {
                continue;
            }
            let multi_line = is_instructions(&path);
            let Some(c) = first_refused_char(&text, multi_line) else {
                continue;
            };
            let pos = self.locate_inside(&path, |raw| written_at(raw, c));
            let what = format!(
                "{} contains U+{:04X}, {}",
                field_name(&path),
                u32::from(c),
                char_kind(c)
            );
            let breaks = if multi_line {
                "; instructions may have line breaks, and spaces instead of tabs"
            } else {
                ""
            };
            let fix = format!(
                "delete it, or retype the text by hand if it was pasted: script text is shown to the room \
                 and must look exactly like what it says{breaks}"
            );
            self.error_at(pos, what, fix);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_bidi_and_invisibles_are_refused_line_breaks_only_in_instructions() {
        for bad in [
            "a\u{1b}[2Jb",
            "x\u{7}",
            "tab\there",
            "\u{85}",
            "\u{9b}31m",
            "abc\u{202E}fed",
            "\u{2066}x\u{2069}",
            "\u{200F}",
            "\u{61C}",
            "zero\u{200B}width",
            "tag\u{E0041}",
        ] {
            assert!(first_refused_char(bad, true).is_some(), "{bad:?}");
        }
        assert_eq!(first_refused_char("one\ntwo\r\nthree", true), None);
        assert_eq!(first_refused_char("one\ntwo", false), Some('\n'));
        assert_eq!(first_refused_char("lone\rreturn", true), Some('\r'));
        assert_eq!(first_refused_char("Zoë – “Ångström” 李小龍 ÷", false), None);
    }

    #[test]
    fn look_alike_names_share_a_key() {
        // Cyrillic а (U+0430) for Latin a; NFD ë for NFC ë; full-width letters; letter case.
        assert_eq!(name_key("\u{430}nna Berg"), name_key("Anna Berg"));
        assert_eq!(name_key("Zoe\u{308} Lund"), name_key("Zo\u{eb} Lund"));
        assert_eq!(name_key("ＢＯＢ"), name_key("bob"));
        assert_ne!(name_key("Anna Berg"), name_key("Anne Berg"));
        assert_ne!(name_key("Zoë"), name_key("Zoe"));
        assert_eq!(
            look_alike("Ola", "\u{41E}la").as_deref(),
            Some("U+041E here looks like U+004F there")
        );
        assert!(look_alike("Zo\u{eb}", "Zoe\u{308}").is_some_and(|m| m.contains("Unicode form")));
        assert_eq!(look_alike("Ann", "ANN"), None);
    }

    #[test]
    fn the_caret_finds_the_character_or_its_escape() {
        assert_eq!(written_at("\"ab\u{202E}c\"", '\u{202E}'), Some(3));
        assert_eq!(written_at("\"ab\\u001Bc\"", '\u{1b}'), Some(3));
        assert_eq!(written_at("\"ab\\U0000001bc\"", '\u{1b}'), Some(3));
        assert_eq!(written_at("\"a\\eb\"", '\u{1b}'), Some(2));
        assert_eq!(written_at("'x'", '\u{1b}'), None);
    }
}

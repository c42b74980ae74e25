//! Diagnostics in the form `file:line:col: error: what is wrong — what to do`, and the span index that lets
//! semantic checks point at the key or value they are about.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding about a script. `line` and `col` are 1-based; `col` counts characters, not bytes, so it
/// matches what an editor shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub severity: Severity,
    /// What is wrong.
    pub what: String,
    /// What to do about it.
    pub fix: String,
}

impl Diagnostic {
    /// `what` and `fix` pass through [`printable`]: they echo script text, which may hold a PIN in a URI
    /// or characters that hide text or drive the terminal.
    pub fn error(
        file: &str,
        (line, col): (usize, usize),
        what: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.to_owned(),
            line,
            col,
            severity: Severity::Error,
            what: printable(&what.into()),
            fix: printable(&fix.into()),
        }
    }

    pub fn warning(
        file: &str,
        (line, col): (usize, usize),
        what: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, (line, col), what, fix)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {} — {}",
            self.file, self.line, self.col, self.severity, self.what, self.fix
        )
    }
}

/// True if any diagnostic is an error (warnings alone do not stop a ceremony).
pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(Diagnostic::is_error)
}

/// Characters that show nothing, reorder text or are terminal controls: `char::is_control`, Unicode format
/// characters (general category Cf), the other default-ignorable code points (Hangul fillers, variation
/// selectors, U+034F, U+17B4/5) and U+2800, which renders as a blank. A name or message holding one can look
/// identical to another, or rewrite the screen.
pub(crate) fn is_hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            u32::from(c),
            0x00AD
                | 0x034F
                | 0x0600..=0x0605
                | 0x061C
                | 0x06DD
                | 0x070F
                | 0x0890..=0x0891
                | 0x08E2
                | 0x115F..=0x1160
                | 0x17B4..=0x17B5
                | 0x180B..=0x180F
                | 0x200B..=0x200F
                | 0x202A..=0x202E
                | 0x2060..=0x206F
                | 0x2800
                | 0x3164
                | 0xFE00..=0xFE0F
                | 0xFEFF
                | 0xFFA0
                | 0xFFF0..=0xFFFB
                | 0x110BD
                | 0x110CD
                | 0x13430..=0x1343F
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0000..=0xE0FFF
        )
}

/// Script text as it may reach a terminal or a log: the query of every `pkcs11:` URI (any letter case) is
/// redacted to `?…` because it may carry a PIN, and hidden characters (see [`is_hidden_char`]) and
/// whitespace other than a plain space are shown as `<U+XXXX>` so that nobody reads past them.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in redact_pkcs11_queries(text).chars() {
        if is_hidden_char(c) || (c.is_whitespace() && c != ' ') {
            out.push_str(&format!("<U+{:04X}>", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Every `pkcs11:` URI in `text` with its query redacted. A URI right after a `"` runs to the closing quote
/// (skipping `\"` escapes, as in serde's echo of a string), otherwise to the next whitespace. When in
/// doubt this redacts too much, never too little.
fn redact_pkcs11_queries(text: &str) -> String {
    // ASCII lowercasing keeps every byte offset, so positions found in `lower` index `text`.
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find("pkcs11:") {
        let start = pos + found;
        let end = uri_end(text, start, text[..start].ends_with('"'));
        out.push_str(&text[pos..start]);
        out.push_str(&super::model::redact_token_uri(&text[start..end]));
        pos = end;
    }
    out.push_str(&text[pos..]);
    out
}

fn uri_end(text: &str, start: usize, quoted: bool) -> usize {
    let mut escaped = false;
    for (i, c) in text[start..].char_indices() {
        if !quoted {
            if c.is_whitespace() {
                return start + i;
            }
        } else if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return start + i;
        }
    }
    text.len()
}

/// One step of a [`KeyPath`]: a table key or an array index (0-based).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Where a value sits in the document, e.g. `steps[3].confirm_by[1]`.
/// Built with `KeyPath::root().key("steps").index(3).key("confirm_by")`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    #[must_use]
    pub fn key(mut self, key: &str) -> Self {
        self.0.push(Segment::Key(key.to_owned()));
        self
    }

    #[must_use]
    pub fn index(mut self, index: usize) -> Self {
        self.0.push(Segment::Index(index));
        self
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn parent(&self) -> Option<KeyPath> {
        let (_, rest) = self.0.split_last()?;
        Some(KeyPath(rest.to_vec()))
    }

    /// The last table key in the path (the field name a message should mention).
    pub fn last_key(&self) -> Option<&str> {
        self.0.iter().rev().find_map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Index(_) => None,
        })
    }

    /// How a person finds this table in the file: `[hsm.token]`, `[[steps]]`, `` `subject` in [[certificates]] ``,
    /// or "the top level".
    pub fn table_name(&self) -> String {
        fn keys(segs: &[Segment]) -> String {
            let keys: Vec<&str> = segs
                .iter()
                .filter_map(|s| match s {
                    Segment::Key(k) => Some(k.as_str()),
                    Segment::Index(_) => None,
                })
                .collect();
            keys.join(".")
        }
        let segs = &self.0;
        match segs.iter().rposition(|s| matches!(s, Segment::Index(_))) {
            None if segs.is_empty() => "the top level".to_owned(),
            None => format!("[{}]", keys(segs)),
            Some(i) if i + 1 == segs.len() => format!("[[{}]]", keys(&segs[..i])),
            Some(i) => format!("`{}` in [[{}]]", keys(&segs[i + 1..]), keys(&segs[..i])),
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Which part of a `key = value` line a diagnostic should point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The key: for "this field does not belong here".
    Key,
    /// The value: for "this value is wrong". For a `[table]` or `[[array]]` entry, its header.
    Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Located {
    key: Option<Range<usize>>,
    value: Range<usize>,
}

/// Byte spans of every key and value in a parsed document, plus line starts for `line:col`.
/// Owned, so a [`super::parse::LoadedScript`] can keep it without borrowing the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanIndex {
    spans: HashMap<KeyPath, Located>,
    /// Byte offset where each line starts, and the source itself for counting characters.
    line_starts: Vec<usize>,
    source: String,
}

impl SpanIndex {
    pub fn build(source: &str, root: &DeTable<'_>) -> Self {
        let mut ix = SpanIndex {
            spans: HashMap::new(),
            line_starts: std::iter::once(0)
                .chain(source.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
            source: source.to_owned(),
        };
        ix.add_table(&KeyPath::root(), root);
        ix
    }

    fn add_table(&mut self, at: &KeyPath, table: &DeTable<'_>) {
        for (key, value) in table.iter() {
            let path = at.clone().key(key.get_ref());
            self.add_value(path, Some(key.span()), value);
        }
    }

    fn add_value(
        &mut self,
        path: KeyPath,
        key: Option<Range<usize>>,
        value: &Spanned<DeValue<'_>>,
    ) {
        match value.get_ref() {
            DeValue::Table(t) => self.add_table(&path, t),
            DeValue::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    self.add_value(path.clone().index(i), None, item);
                }
            }
            _ => {}
        }
        // Implicit tables (`a` in `[a.b]`) have no text of their own; an empty span would point at 1:1.
        let key = key.filter(|k| !k.is_empty());
        let value = value.span();
        if !value.is_empty() || key.is_some() {
            let value = if value.is_empty() {
                key.clone().unwrap_or(value)
            } else {
                value
            };
            self.spans.insert(path, Located { key, value });
        }
    }

    /// 1-based line and column (in characters) of a byte offset. Offsets past the end clamp to the end.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let line = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .max(1);
        let start = self.line_starts[line - 1];
        let col = self
            .source
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line, col + 1)
    }

    /// Byte range of the value at `path` itself (not a parent), for pointing inside a string.
    pub fn value_span(&self, path: &KeyPath) -> Option<Range<usize>> {
        self.spans.get(path).map(|loc| loc.value.clone())
    }

    /// Whether `path` itself (not a parent) was written in the file.
    pub fn contains(&self, path: &KeyPath) -> bool {
        self.spans.contains_key(path)
    }

    /// `line:col` of `path`, or of its nearest parent that appears in the file (a missing field points at
    /// the table that should hold it). The document root is 1:1.
    pub fn locate(&self, path: &KeyPath, target: Target) -> (usize, usize) {
        let mut at = Some(path.clone());
        while let Some(p) = at {
            if let Some(loc) = self.spans.get(&p) {
                // Only the path itself gets the key/value choice; a parent stands in with its header.
                let span = match (target, &loc.key) {
                    (Target::Key, Some(k)) if p == *path => k,
                    _ => &loc.value,
                };
                return self.position(span.start);
            }
            at = p.parent();
        }
        (1, 1)
    }

    /// The most specific path whose key or value contains `offset`: turns a serde error span back into the
    /// field it is about.
    pub fn path_at(&self, offset: usize) -> Option<KeyPath> {
        self.spans
            .iter()
            .filter(|(_, loc)| {
                loc.value.contains(&offset) || loc.key.as_ref().is_some_and(|k| k.contains(&offset))
            })
            .max_by(|(a, la), (b, lb)| {
                // Deeper wins; at equal depth the narrower span wins.
                a.segments()
                    .len()
                    .cmp(&b.segments().len())
                    .then((lb.value.end - lb.value.start).cmp(&(la.value.end - la.value.start)))
            })
            .map(|(p, _)| p.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(src: &str) -> SpanIndex {
        let table = DeTable::parse(src).unwrap();
        SpanIndex::build(src, table.get_ref())
    }

    #[test]
    fn display_has_position_severity_what_and_fix() {
        let d = Diagnostic::error("a.toml", (3, 7), "bad thing", "do this");
        assert_eq!(d.to_string(), "a.toml:3:7: error: bad thing — do this");
        let w = Diagnostic::warning("a.toml", (1, 1), "odd", "check");
        assert_eq!(w.to_string(), "a.toml:1:1: warning: odd — check");
    }

    #[test]
    fn diagnostics_never_show_a_uri_query_or_hidden_characters() {
        let d = Diagnostic::error(
            "a.toml",
            (1, 1),
            "uri \"PKCS11:token=a?pin-value=12 34\" and pkcs11:x?pin-value=9 here",
            "string \"pkcs11:t?pin-value=a\\\"b\" end",
        );
        assert_eq!(d.what, "uri \"PKCS11:token=a?…\" and pkcs11:x?… here");
        assert_eq!(d.fix, "string \"pkcs11:t?…\" end");
        assert_eq!(
            printable("Al\u{200B}ice\u{1b}[2J\tB\u{a0}"),
            "Al<U+200B>ice<U+001B>[2J<U+0009>B<U+00A0>"
        );
        assert_eq!(printable("Zoë — “ok” …"), "Zoë — “ok” …");
    }

    #[test]
    fn locates_keys_values_and_array_items() {
        let src = "format = 1\n\n[[steps]]\nid = \"a\"\n\n[[steps]]\nid = \"b\"\nconfirm_by = [\"operator\", \"x\"]\n";
        let ix = index(src);
        let steps = KeyPath::root().key("steps");
        assert_eq!(ix.locate(&steps.clone().index(1), Target::Value), (6, 1));
        let cb = steps.clone().index(1).key("confirm_by");
        assert_eq!(ix.locate(&cb, Target::Key), (8, 1));
        assert_eq!(ix.locate(&cb, Target::Value), (8, 14));
        assert_eq!(ix.locate(&cb.clone().index(1), Target::Value), (8, 27));
        // A missing field falls back to its table's header.
        assert_eq!(ix.locate(&steps.index(0).key("title"), Target::Key), (3, 1));
        assert_eq!(
            ix.locate(&KeyPath::root().key("nothing"), Target::Value),
            (1, 1)
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let ix = index("name = \"Zoë\"\nx = 1\n");
        assert_eq!(ix.position(7), (1, 8));
        assert_eq!(ix.position(14), (2, 1));
    }

    #[test]
    fn path_at_finds_the_deepest_field() {
        let src = "[hsm]\nmodule = \"m\"\ntoken = { label = \"t\" }\n";
        let ix = index(src);
        let offset = src.find("\"t\"").unwrap();
        assert_eq!(ix.path_at(offset).unwrap().to_string(), "hsm.token.label");
        assert_eq!(
            KeyPath::root().key("steps").index(2).table_name(),
            "[[steps]]"
        );
        assert_eq!(
            KeyPath::root().key("hsm").key("token").table_name(),
            "[hsm.token]"
        );
        let subject = KeyPath::root().key("certificates").index(0).key("subject");
        assert_eq!(subject.table_name(), "`subject` in [[certificates]]");
    }
}

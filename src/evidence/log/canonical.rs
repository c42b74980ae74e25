//! A log line read without building a `serde_json::Value`: one scan that locates its members and
//! proves the bytes canonical, so the chain check needs neither the parse nor the re-encoding.
//!
//! The scan accepts only a subset of canonical lines, each of which the exact check (parse into an
//! [`AuditEntry`](super::AuditEntry), re-encode, compare) also accepts: members in the entry's
//! fixed order, no whitespace, object keys without escapes in strictly increasing byte order (which
//! is the order serde_json's BTreeMap writes them in, and rules out duplicates), strings with no
//! raw control character and only the escapes serde_json writes for `"`, `\`, LF, CR and tab,
//! integers without a sign or leading zero that fit a u64, events nested at most [`MAX_DEPTH`]
//! deep. For anything else (a float, a `\u` escape, an escaped key, a tampered line) it answers
//! `None` and the caller takes the exact path, which gives the verdict and the message.

use std::ops::Range;

/// A line in the scanned subset, borrowed from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// The whole line, without its newline.
    pub line: &'a str,
    /// The `actors` array and the `event` object, as JSON.
    pub actors: &'a str,
    pub event: &'a str,
    /// The event's `kind` ("" when it has none).
    pub kind: &'a str,
    pub hash: &'a str,
    pub prev: &'a str,
    pub seq: u64,
    pub step: Option<&'a str>,
    pub time: &'a str,
    /// `"hash":"…",`, which the hash does not cover.
    hash_member: Range<usize>,
}

impl<'a> Line<'a> {
    /// The two parts of the line the hash covers: before and after the `hash` member.
    pub fn unhashed(&self) -> (&'a [u8], &'a [u8]) {
        let bytes = self.line.as_bytes();
        (
            &bytes[..self.hash_member.start],
            &bytes[self.hash_member.end..],
        )
    }

    /// Where its members are in the line, to rebuild the view over a copy of the line.
    pub fn spans(&self) -> Spans {
        // Every member is a slice of `line` (a missing kind its empty start: see `scan`), so a
        // member's range starts where its bytes do.
        let base = self.line.as_ptr() as usize;
        let at = |s: &str| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        Spans {
            actors: at(self.actors),
            event: at(self.event),
            kind: at(self.kind),
            hash: at(self.hash),
            prev: at(self.prev),
            seq: self.seq,
            step: self.step.map(at),
            time: at(self.time),
            hash_member: self.hash_member.clone(),
        }
    }
}

/// A scanned line's members as byte ranges of the line: a [`Line`] without the borrow, so it can
/// travel with a copy of the line (to another thread) and be rebuilt there by [`Spans::line`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spans {
    actors: Range<usize>,
    event: Range<usize>,
    /// `0..0` when the event has no `kind`.
    kind: Range<usize>,
    hash: Range<usize>,
    prev: Range<usize>,
    seq: u64,
    step: Option<Range<usize>>,
    time: Range<usize>,
    /// `"hash":"…",`, which the hash does not cover.
    hash_member: Range<usize>,
}

impl Spans {
    /// The view over `line`, which must be the line these spans were scanned from (or a copy).
    pub fn line(self, line: &str) -> Line<'_> {
        Line {
            line,
            actors: &line[self.actors],
            event: &line[self.event],
            kind: &line[self.kind],
            hash: &line[self.hash],
            prev: &line[self.prev],
            seq: self.seq,
            step: self.step.map(|r| &line[r]),
            time: &line[self.time],
            hash_member: self.hash_member,
        }
    }
}

/// The deepest nesting of arrays and objects inside an event that the scan follows (serde_json
/// itself stops at 128 for the whole line).
pub const MAX_DEPTH: usize = 64;

/// Locate the members of `line` if it is in the scanned subset of canonical lines.
pub fn scan(line: &str) -> Option<Line<'_>> {
    let mut c = Cursor {
        b: line.as_bytes(),
        at: 0,
    };
    c.lit(b"{\"actors\":")?;
    let start = c.at;
    c.lit(b"[")?;
    if !c.eat(b']') {
        loop {
            c.string()?;
            if c.eat(b']') {
                break;
            }
            c.lit(b",")?;
        }
    }
    let actors = start..c.at;
    c.lit(b",\"event\":")?;
    let start = c.at;
    let kind = c.event()?;
    let event = start..c.at;
    c.lit(b",")?;
    let member = c.at;
    c.lit(b"\"hash\":")?;
    let hash = c.plain()?;
    c.lit(b",")?;
    let hash_member = member..c.at;
    c.lit(b"\"prev\":")?;
    let prev = c.plain()?;
    c.lit(b",\"seq\":")?;
    let seq = c.uint()?;
    c.lit(b",\"step\":")?;
    let step = if c.eat_all(b"null") {
        None
    } else {
        Some(c.plain()?)
    };
    c.lit(b",\"time\":")?;
    let time = c.plain()?;
    c.lit(b"}")?;
    (c.at == c.b.len()).then(|| {
        Spans {
            actors,
            event,
            kind,
            hash,
            prev,
            seq,
            step,
            time,
            hash_member,
        }
        .line(line)
    })
}

/// A byte that ends a run of plain string contents: a quote, a backslash, a control character.
fn special(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// The index of the first [`special`] byte of `b`, eight bytes at a time (strings are most of a
/// line). In each word, a byte is flagged when it is zero after XOR with a quote or a backslash, or
/// below 0x20; the subtraction's borrow can flag a byte only after a truly flagged one, so the
/// lowest flag is exact.
fn special_at(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let mut words = b.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let w = u64::from_le_bytes(bytes);
        let flags = below(w ^ (ONES * u64::from(b'"')), 1)
            | below(w ^ (ONES * u64::from(b'\\')), 1)
            | below(w, 0x20);
        if flags != 0 {
            return Some(at + (flags.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&c| special(c))
        .map(|i| at + i)
}

struct Cursor<'b> {
    b: &'b [u8],
    at: usize,
}

impl<'b> Cursor<'b> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        self.at += usize::from(hit);
        hit
    }

    fn eat_all(&mut self, bytes: &[u8]) -> bool {
        let hit = self.b[self.at..].starts_with(bytes);
        if hit {
            self.at += bytes.len();
        }
        hit
    }

    fn lit(&mut self, bytes: &[u8]) -> Option<()> {
        self.eat_all(bytes).then_some(())
    }

    /// A string with no escape at all; where its contents are.
    fn plain(&mut self) -> Option<Range<usize>> {
        self.lit(b"\"")?;
        let start = self.at;
        self.at += special_at(&self.b[start..])?;
        let text = start..self.at;
        self.lit(b"\"")?;
        Some(text)
    }

    /// A string in serde_json's own escaping (within the subset); whether it had an escape.
    fn string(&mut self) -> Option<bool> {
        self.lit(b"\"")?;
        let mut escaped = false;
        loop {
            self.at += special_at(&self.b[self.at..])?;
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(escaped);
                }
                b'\\' => {
                    // The escapes serde_json writes for these characters; others take the exact path.
                    match self.b.get(self.at + 1)? {
                        b'"' | b'\\' | b'n' | b'r' | b't' => self.at += 2,
                        _ => return None,
                    }
                    escaped = true;
                }
                _ => return None, // a raw control character
            }
        }
    }

    /// An unsigned integer that fits a u64, without a leading zero.
    fn uint(&mut self) -> Option<u64> {
        let digits = self.b[self.at..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let text = &self.b[self.at..self.at + digits];
        if digits == 0 || (digits > 1 && text[0] == b'0') {
            return None;
        }
        let mut n: u64 = 0;
        for &d in text {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        self.at += digits;
        Some(n)
    }

    /// The event: an object; where its `kind` is when that is a plain string (`0..0`, the line's
    /// empty start, when it has none: every member of a [`Line`] is then a slice of the line).
    fn event(&mut self) -> Option<Range<usize>> {
        let mut kind = None;
        self.object(1, &mut kind)?;
        Some(kind.unwrap_or(0..0))
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(depth + 1, &mut None),
            b'[' => self.array(depth + 1),
            b'"' => self.string().map(drop),
            b't' => self.lit(b"true"),
            b'f' => self.lit(b"false"),
            b'n' => self.lit(b"null"),
            _ => self.uint().map(drop),
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.lit(b"[")?;
        if self.eat(b']') {
            return Some(());
        }
        loop {
            self.value(depth)?;
            if self.eat(b']') {
                return Some(());
            }
            self.lit(b",")?;
        }
    }

    /// An object with keys in strictly increasing order; at depth 1, its `kind` is noted.
    fn object(&mut self, depth: usize, kind: &mut Option<Range<usize>>) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.lit(b"{")?;
        if self.eat(b'}') {
            return Some(());
        }
        let mut last: Option<Range<usize>> = None;
        loop {
            // Keys without escapes: their bytes are the decoded key, so byte order is key order.
            self.lit(b"\"")?;
            let start = self.at;
            self.at += special_at(&self.b[start..])?;
            let key = start..self.at;
            self.lit(b"\"")?;
            if let Some(last) = &last {
                if self.b[last.clone()] >= self.b[key.clone()] {
                    return None;
                }
            }
            self.lit(b":")?;
            if depth == 1 && &self.b[key.clone()] == b"kind" {
                // The kind is read without decoding: a plain string, or the exact path decides.
                *kind = Some(self.plain()?);
            } else {
                self.value(depth)?;
            }
            last = Some(key);
            if self.eat(b'}') {
                return Some(());
            }
            self.lit(b",")?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_at_finds_the_first_special_byte_wherever_it_is() {
        let specials = [b'"', b'\\', 0x00, 0x1f, 0x0a];
        let others = [
            b'a', 0x20, 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']', 0x21, 0x5b, 0x5d,
        ];
        for len in 0..40 {
            for &fill in &others {
                let plain = vec![fill; len];
                assert_eq!(special_at(&plain), None);
                for at in 0..len {
                    for &sp in &specials {
                        let mut b = plain.clone();
                        b[at] = sp;
                        // Another special byte after it, and one below 0x20 after that.
                        if at + 1 < len {
                            b[at + 1] = 0x00;
                        }
                        assert_eq!(special_at(&b), Some(at), "{b:?}");
                        assert_eq!(special_at(&b), b.iter().position(|&c| special(c)), "{b:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn spans_rebuild_the_same_view_over_a_copy_of_the_line() {
        for line in [
            r#"{"actors":["A \"B\""],"event":{"a":[1,{"kind":"x"}],"kind":"k"},"hash":"h","prev":"p","seq":12,"step":"s","time":"t"}"#,
            r#"{"actors":[],"event":{"z":null},"hash":"h","prev":"p","seq":0,"step":null,"time":"t"}"#,
        ] {
            let scanned = scan(line).unwrap();
            let copy = line.to_string();
            let rebuilt = scanned.spans().line(&copy);
            assert_eq!(rebuilt, scan(&copy).unwrap());
            assert_eq!(rebuilt, scanned);
            assert_eq!(rebuilt.unhashed(), scanned.unhashed());
        }
    }
}

//! Reading a script: TOML syntax, the format version, then serde into the model. Every failure becomes a
//! [`Diagnostic`] at the exact `line:col` that caused it, with the fix spelled out.

use super::diagnostic::{Diagnostic, KeyPath, Segment, SpanIndex, Target};
use super::model::{
    Action, CertificateKind, HashAlgorithm, KeyAlgorithm, Role, Script, SecurityLevel,
    SCRIPT_FORMAT,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use toml::de::{DeTable, DeValue};

/// Script format versions this build reads.
pub const SUPPORTED_FORMATS: &[u32] = &[SCRIPT_FORMAT];

/// A real script is a few kilobytes; anything this large is the wrong file, and we should not read it all.
const MAX_SCRIPT_BYTES: u64 = 1024 * 1024;

/// A parsed script together with the exact text it came from.
#[derive(Debug, Clone)]
pub struct LoadedScript {
    pub script: Script,
    /// The script text exactly as read; the evidence bundle stores these bytes.
    pub source: String,
    /// Lowercase hex SHA-256 of the exact file bytes (recorded in the log's first entry).
    pub sha256: String,
    /// The name diagnostics show, usually the path as the user typed it.
    pub file_name: String,
    pub spans: SpanIndex,
}

impl LoadedScript {
    /// `line:col` of `path`, falling back to the nearest parent written in the file.
    pub fn locate(&self, path: &KeyPath, target: Target) -> (usize, usize) {
        self.spans.locate(path, target)
    }

    pub fn error(
        &self,
        path: &KeyPath,
        target: Target,
        what: impl Into<String>,
        fix: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::error(&self.file_name, self.locate(path, target), what, fix)
    }

    pub fn warning(
        &self,
        path: &KeyPath,
        target: Target,
        what: impl Into<String>,
        fix: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::warning(&self.file_name, self.locate(path, target), what, fix)
    }
}

/// Read and parse the script at `path`. Diagnostics name the file as `path` is written.
pub fn load(path: &Path) -> Result<LoadedScript, Vec<Diagnostic>> {
    let file_name = path.display().to_string();
    let io_error = |what: String, fix: &str| vec![Diagnostic::error(&file_name, (1, 1), what, fix)];
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SCRIPT_BYTES + 1).read_to_end(&mut bytes));
    if let Err(e) = read {
        return Err(io_error(
            format!("cannot read the script: {e}"),
            "check the path and that you may read the file",
        ));
    }
    if bytes.len() as u64 > MAX_SCRIPT_BYTES {
        return Err(io_error(
            format!("the file is larger than {MAX_SCRIPT_BYTES} bytes, far too large for a ceremony script"),
            "check that this is the right file",
        ));
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let col = String::from_utf8_lossy(&valid[line_start..])
                .chars()
                .count()
                + 1;
            return Err(vec![Diagnostic::error(
                &file_name,
                (line, col),
                "the script is not valid UTF-8",
                "save the file as UTF-8 (TOML requires it)",
            )]);
        }
    };
    parse(&file_name, &text)
}

/// Parse script text. `file_name` is only used in diagnostics.
pub fn parse(file_name: &str, source: &str) -> Result<LoadedScript, Vec<Diagnostic>> {
    let (table, errors) = DeTable::parse_recoverable(source);
    let spans = SpanIndex::build(source, table.get_ref());
    // Recovery after the first syntax error mostly produces echoes of it; the earliest one is the real one.
    if let Some(first) = errors
        .iter()
        .min_by_key(|e| e.span().map_or(0, |s| s.start))
    {
        return Err(vec![syntax_diagnostic(file_name, &spans, source, first)]);
    }
    check_format(file_name, &spans, table.get_ref())?;
    let script = Script::deserialize(toml::de::Deserializer::from(table))
        .map_err(|e| vec![serde_diagnostic(file_name, &spans, &e)])?;
    Ok(LoadedScript {
        script,
        source: source.to_owned(),
        sha256: hex::encode(Sha256::digest(source.as_bytes())),
        file_name: file_name.to_owned(),
        spans,
    })
}

fn supported_formats() -> String {
    SUPPORTED_FORMATS
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checked before serde: a script in another format may have other fields, and "unknown field" would hide
/// the real problem.
fn check_format(file: &str, spans: &SpanIndex, root: &DeTable<'_>) -> Result<(), Vec<Diagnostic>> {
    let at = spans.locate(&KeyPath::root().key("format"), Target::Value);
    let readable = supported_formats();
    let Some(value) = root.get("format") else {
        return Err(vec![Diagnostic::error(
            file,
            (1, 1),
            "the script does not say which format it is written in",
            format!("add `format = {SCRIPT_FORMAT}` as the first line (this build of keyrite reads format {readable})"),
        )]);
    };
    let version = match value.get_ref() {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    };
    match version {
        Some(v) if SUPPORTED_FORMATS.iter().any(|&f| i64::from(f) == v) => Ok(()),
        Some(v) => Err(vec![Diagnostic::error(
            file,
            at,
            format!("script format {v} is not supported"),
            format!(
                "this build of keyrite reads format {readable} only; rewrite the script for format {SCRIPT_FORMAT} \
                 (docs/script-format.md) or use a keyrite release that reads format {v}"
            ),
        )]),
        None => Err(vec![Diagnostic::error(
            file,
            at,
            "`format` must be a whole number",
            format!("write `format = {SCRIPT_FORMAT}` without quotes"),
        )]),
    }
}

fn syntax_diagnostic(
    file: &str,
    spans: &SpanIndex,
    source: &str,
    err: &toml::de::Error,
) -> Diagnostic {
    let span = err.span().unwrap_or(0..0);
    let message = err.message();
    let text = source.get(span.clone()).unwrap_or("");
    let fix = if message.starts_with("duplicate key") && source.contains(&format!("[[{text}]]")) {
        format!("start every entry of the {text} list with [[{text}]]")
    } else if message.starts_with("duplicate key") {
        "merge the two or remove one; a key or table may appear only once in its table".to_owned()
    } else if message.starts_with("string values must be quoted") {
        "put the text in double quotes, e.g. name = \"Alice\"".to_owned()
    } else if message.starts_with("invalid basic string")
        || message.starts_with("invalid literal string")
    {
        "close the string on the same line; use \"\"\" … \"\"\" for text that spans lines"
            .to_owned()
    } else if message.contains("array") {
        "separate list items with commas and close the list with `]`".to_owned()
    } else {
        "correct the TOML syntax at this position (https://toml.io/en/v1.0.0)".to_owned()
    };
    let what = if message.starts_with("duplicate key") {
        format!("TOML syntax error: duplicate key `{text}`")
    } else {
        format!("TOML syntax error: {message}")
    };
    Diagnostic::error(file, spans.position(span.start), what, fix)
}

/// The text between backticks in a serde message: serde quotes the offending name and the accepted ones so.
fn backticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// The accepted values of a unit enum, taken from serde's own "unknown variant" message so the list can never
/// drift from the model.
fn variants<T: DeserializeOwned>() -> Vec<String> {
    use serde::de::IntoDeserializer;
    let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> = "".into_deserializer();
    match T::deserialize(de) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .to_string()
            .split_once(", expected ")
            .map_or_else(Vec::new, |(_, tail)| {
                backticked(tail).into_iter().map(str::to_owned).collect()
            }),
    }
}

/// What a field holds and the values it accepts, for fields typed by an enum.
fn enum_field(field: &str) -> Option<(&'static str, Vec<String>)> {
    Some(match field {
        "role" | "also" | "confirm_by" | "witnessed_by" | "allow_role_pairs" => {
            ("role", variants::<Role>())
        }
        "algorithm" => ("key algorithm", variants::<KeyAlgorithm>()),
        "action" => ("action", variants::<Action>()),
        "security_level" => ("security level", variants::<SecurityLevel>()),
        "profile" => ("certificate profile", variants::<CertificateKind>()),
        "signature_hash" => ("signature hash", variants::<HashAlgorithm>()),
        _ => return None,
    })
}

fn quoted_list(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The accepted name closest to a typo, if it is close enough to be a plausible typo.
pub(crate) fn did_you_mean<'a>(wrong: &str, accepted: &'a [String]) -> Option<&'a str> {
    let wrong = wrong.to_lowercase();
    accepted
        .iter()
        .map(|a| (edit_distance(&wrong, &a.to_lowercase()), a))
        .filter(|(d, a)| *d <= (a.chars().count() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a.as_str())
}

fn unknown_value_fix(field: &str, wrong: &str, accepted: &[String]) -> String {
    let mut fix = match did_you_mean(wrong, accepted) {
        Some(m) => format!(
            "did you mean \"{m}\"? Accepted values: {}",
            quoted_list(accepted)
        ),
        None => format!("use one of {}", quoted_list(accepted)),
    };
    let lower = wrong.to_lowercase();
    if field == "algorithm" {
        fix.push_str("; keyrite allows only these for CA keys: RSA-2048 and smaller are too weak");
    } else if enum_field(field).is_some_and(|(noun, _)| noun == "role") {
        if lower.contains("audit") || lower.contains("notar") {
            fix.push_str("; an auditor or notary takes the role \"independent-witness\"");
        } else if lower.contains("crypto")
            || lower.contains("officer") && !lower.contains("security")
        {
            fix.push_str("; a crypto officer takes the role \"operator\"");
        }
    }
    fix
}

/// serde's names for types, in the words of the script's author.
fn plain_expected(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "i32" | "i64" => "a whole number".to_owned(),
        "a sequence" => "a list in square brackets".to_owned(),
        "a string" | "a borrowed string" => "a quoted string".to_owned(),
        "a boolean" => "true or false".to_owned(),
        e if e.starts_with("struct ") || e == "a map" => "a table".to_owned(),
        e => e.to_owned(),
    }
}

fn plain_found(found: &str) -> String {
    match found {
        "map" => "a table".to_owned(),
        "sequence" => "a list".to_owned(),
        f => f
            .replacen("string ", "the string ", 1)
            .replacen("integer ", "the number ", 1)
            .replacen("floating point ", "the number ", 1)
            .replacen("boolean ", "", 1)
            .replace('`', ""),
    }
}

fn type_fix(field: &str, expected: &str, found: &str) -> String {
    // A number in quotes is the common case; show the line as it should read.
    let quoted_number = found
        .strip_prefix("string \"")
        .and_then(|f| f.strip_suffix('"'))
        .filter(|n| n.parse::<u64>().is_ok());
    match expected {
        "a whole number" => match quoted_number {
            Some(n) => format!("write {field} = {n}, without quotes"),
            None => format!("write a number without quotes, e.g. {field} = 2"),
        },
        "a list in square brackets" => format!("write a list, e.g. {field} = [\"operator\"]"),
        "a quoted string" => format!("put the value in double quotes, e.g. {field} = \"…\""),
        "true or false" => format!("write {field} = true or {field} = false, without quotes"),
        "a table" => {
            format!("write it as a table, e.g. {field} = {{ … }} (see docs/script-format.md)")
        }
        e => format!("change the value to {e} (see docs/script-format.md)"),
    }
}

fn serde_diagnostic(file: &str, spans: &SpanIndex, err: &toml::de::Error) -> Diagnostic {
    let msg = err.message();
    // Serde reports a missing top-level field with an empty span at 0; that means the document, not `format`.
    let (at, path) = match err.span() {
        Some(s) if !s.is_empty() => (
            spans.position(s.start),
            spans.path_at(s.start).unwrap_or_default(),
        ),
        _ => ((1, 1), KeyPath::root()),
    };
    let field = path.last_key().unwrap_or("").to_owned();
    let table = |p: &KeyPath| p.parent().unwrap_or_default().table_name();
    let diag = |what: String, fix: String| Diagnostic::error(file, at, what, fix);

    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let (name, accepted) = split_expected(rest);
        let here = table(&path);
        let place = if path.segments().len() == 1 {
            "at the top level".to_owned()
        } else {
            format!("in {here}")
        };
        let list = accepted.join(", ");
        let fix = match did_you_mean(&name, &accepted) {
            Some(m) => format!("did you mean `{m}`? Otherwise remove it; {here} accepts: {list}"),
            None if accepted.is_empty() => "remove it".to_owned(),
            None => format!("remove it or correct its spelling; {here} accepts: {list}"),
        };
        return diag(format!("unknown field `{name}` {place}"), fix);
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        let (value, accepted) = split_expected(rest);
        let noun = enum_field(&field).map_or("value", |(n, _)| n);
        // An algorithm that is no typo of an allowed one is a policy refusal, not an unknown word.
        let what = if field == "algorithm" && did_you_mean(&value, &accepted).is_none() {
            format!("key algorithm \"{value}\" is not allowed for CA keys")
        } else {
            format!("unknown {noun} \"{value}\" in `{field}`")
        };
        return diag(what, unknown_value_fix(&field, &value, &accepted));
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        let name = backticked(rest).first().copied().unwrap_or(rest).to_owned();
        // The span is the table that lacks the field, so the path is the table itself.
        let (what, fix) = match (path.segments().is_empty(), name.as_str()) {
            (true, "ceremony" | "hsm") => (
                format!("the script has no [{name}] table"),
                format!("add a [{name}] table"),
            ),
            (true, "participants" | "steps") => (
                format!("the script has no [[{name}]] entries"),
                format!("add [[{name}]] entries"),
            ),
            _ => (
                format!(
                    "{} is missing the required field `{name}`",
                    path.table_name()
                ),
                format!("add `{name} = …` to it"),
            ),
        };
        return diag(what, format!("{fix} (see docs/script-format.md)"));
    }
    if msg == "wanted string or table" {
        // toml's message when an enum field holds a number, list or boolean.
        let (noun, accepted) = enum_field(&field).unwrap_or(("value", Vec::new()));
        let what = format!("`{field}` must be a {noun} written as a quoted string");
        return diag(what, format!("use one of {}", quoted_list(&accepted)));
    }
    if let Some((found, expected)) = msg
        .strip_prefix("invalid type: ")
        .and_then(|r| r.split_once(", expected "))
    {
        let found = &redact_hsm_string(&path, found);
        let expected = plain_expected(expected);
        let what = format!("`{field}` must be {expected}, not {}", plain_found(found));
        return diag(what, type_fix(&field, &expected, found));
    }
    if let Some((found, expected)) = msg
        .strip_prefix("invalid value: ")
        .and_then(|r| r.split_once(", expected "))
    {
        let found = &redact_hsm_string(&path, found);
        let range = match expected {
            "u8" => "a whole number from 0 to 255".to_owned(),
            "u32" => format!("a whole number from 0 to {}", u32::MAX),
            e => plain_expected(e),
        };
        return diag(
            format!("`{field}` must be {range}, not {}", plain_found(found)),
            "write a value in that range".to_owned(),
        );
    }
    if let Some((found, expected)) = msg
        .strip_prefix("invalid length ")
        .and_then(|r| r.split_once(", expected "))
    {
        let what = format!("`{field}` has {found} items, but must be {expected}");
        let fix = if field == "allow_role_pairs" {
            "write each pair as two roles, e.g. [\"security-officer\", \"custodian\"]".to_owned()
        } else {
            "correct the number of items".to_owned()
        };
        return diag(what, fix);
    }
    diag(
        format!("`{field}`: {msg}"),
        "correct the value (see docs/script-format.md)".to_owned(),
    )
}

/// serde's echo of a wrong value, with any query cut off when the value sits under `[hsm]`: a string written
/// where the token table belongs (`token = "…?pin-value=…"`) may be a URI with a PIN but without the
/// `pkcs11:` scheme that [`super::diagnostic::printable`] recognises.
fn redact_hsm_string(path: &KeyPath, found: &str) -> String {
    let under_hsm =
        matches!(path.segments().first(), Some(Segment::Key(k)) if k == "hsm" || k == "hsms");
    match found.split_once('?') {
        Some((head, _query)) if under_hsm => format!("{head}?…\""),
        _ => found.to_owned(),
    }
}

/// Splits "`name`, expected one of `a`, `b`" into the name and the accepted list.
fn split_expected(rest: &str) -> (String, Vec<String>) {
    let (head, tail) = rest.split_once(", expected ").unwrap_or((rest, ""));
    let name = head
        .strip_prefix('`')
        .and_then(|h| h.strip_suffix('`'))
        .unwrap_or(head);
    // "unknown field `x`, there are no fields" has no ", expected": keep just the quoted name.
    let name = if head.starts_with('`') && !head.ends_with('`') {
        backticked(head).first().copied().unwrap_or(head)
    } else {
        name
    };
    let name = name.to_owned();
    (
        name,
        backticked(tail).into_iter().map(str::to_owned).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = include_str!("../../tests/scripts/good/minimal-medium.toml");

    fn first_error(source: &str) -> String {
        parse("t.toml", source).unwrap_err()[0].to_string()
    }

    #[test]
    fn good_script_parses_and_hashes_its_bytes() {
        let loaded = parse("t.toml", GOOD).unwrap();
        assert_eq!(loaded.sha256, hex::encode(Sha256::digest(GOOD.as_bytes())));
        assert_eq!(loaded.script.participants.len(), 3);
    }

    #[test]
    fn format_must_be_a_bare_supported_number() {
        let quoted = GOOD.replace("format = 1", "format = \"1\"");
        assert_eq!(
            first_error(&quoted),
            "t.toml:2:10: error: `format` must be a whole number — write `format = 1` without quotes"
        );
    }

    #[test]
    fn enum_field_with_a_number_lists_the_accepted_values() {
        let src = GOOD.replace("security_level = \"medium\"", "security_level = 3");
        assert_eq!(
            first_error(&src),
            "t.toml:9:18: error: `security_level` must be a security level written as a quoted string — \
             use one of \"medium\", \"high\", \"very-high\""
        );
    }

    #[test]
    fn near_miss_enum_values_get_a_suggestion() {
        let src = GOOD.replace("security_level = \"medium\"", "security_level = \"Medium\"");
        assert!(
            first_error(&src).contains("did you mean \"medium\"?"),
            "{}",
            first_error(&src)
        );
    }

    #[test]
    fn unknown_fields_and_tables_say_where_and_what_is_accepted() {
        let src = GOOD.replace("[hsm]", "[hsm]\npin = \"1234\"");
        assert_eq!(
            first_error(&src),
            "t.toml:24:1: error: unknown field `pin` in [hsm] — remove it or correct its spelling; [hsm] accepts: \
             name, module, token, activation, cards_module, network_interface"
        );
        // OU is not among the attributes a CA certificate's subject may carry (CA/B BR 7.1.2.10.2).
        let src = GOOD.replace("C = \"NO\"", "C = \"NO\", OU = \"PKI\"");
        assert!(first_error(&src).contains("unknown field `OU` in `subject` in [[certificates]]"));
    }

    #[test]
    fn negative_numbers_and_wrong_lengths_are_explained() {
        let src = GOOD.replace("validity_days = 3650", "validity_days = -1");
        assert!(first_error(&src).contains(
            "`validity_days` must be a whole number from 0 to 4294967295, not the number -1"
        ));
        let src = GOOD.replace(
            "[[participants]]\nname = \"Mo\"",
            "[policy]\nallow_role_pairs = [[\"operator\"]]\n\n[[participants]]\nname = \"Mo\"",
        );
        let err = first_error(&src);
        assert!(
            err.contains("`allow_role_pairs` has 1 items, but must be an array of length 2"),
            "{err}"
        );
    }

    #[test]
    fn a_pin_in_a_misplaced_hsm_string_is_never_echoed() {
        let src = GOOD.replace(
            "token = { serial = \"0123456789abcdef\" }",
            "token = \"serial=0123456789abcdef?pin-value=97531\"",
        );
        assert_ne!(src, GOOD, "the fixture's token line changed");
        let err = first_error(&src);
        assert!(
            err.contains("not the string \"serial=0123456789abcdef?…\""),
            "{err}"
        );
        assert!(!err.contains("97531"), "{err}");
    }

    #[test]
    fn syntax_errors_report_the_earliest_position() {
        let src = "format = 1\n[ceremony]\nid = \"x\nname = [1, 2\n";
        assert!(first_error(src)
            .starts_with("t.toml:3:8: error: TOML syntax error: invalid basic string"));
    }
}

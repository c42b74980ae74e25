//! The script parser and the policy: `keyrite check` on hostile scripts.

use super::mutate::{fuzz, mutated};
use keyrite::script::{parse, policy, Diagnostic};
use proptest::prelude::*;
use std::path::Path;
use std::sync::Arc;

fn seeds() -> Arc<Vec<Vec<u8>>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = Vec::new();
    for dir in ["ceremony-scripts", "tests/scripts/good"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        seeds.extend(files.iter().map(|f| std::fs::read(f).unwrap()));
    }
    assert!(seeds.len() >= 6, "{} seed scripts", seeds.len());
    Arc::new(seeds)
}

/// Parse and, when it parses, run the policy: exactly what `keyrite check` does with a file.
fn check(text: &str) -> Vec<Diagnostic> {
    match parse::parse("fuzz.toml", text) {
        Ok(loaded) => policy::check(&loaded),
        Err(diagnostics) => {
            assert!(
                !diagnostics.is_empty(),
                "a refused script with no diagnostic"
            );
            diagnostics
        }
    }
}

/// Every diagnostic points into the file.
fn positions_in_file(text: &str, diagnostics: &[Diagnostic]) -> Result<(), TestCaseError> {
    let lines = text.split('\n').count();
    for d in diagnostics {
        prop_assert!(
            d.line >= 1 && d.line <= lines && d.col >= 1,
            "{d} is outside the {lines}-line file"
        );
    }
    Ok(())
}

#[test]
fn fuzz_script_parser_and_policy() {
    let seeds = seeds();
    fuzz("script", mutated(seeds), |bytes| {
        // `keyrite check` refuses non-UTF-8 before parsing; the lossy text keeps the rest of the bytes.
        let text = String::from_utf8_lossy(&bytes);
        positions_in_file(&text, &check(&text))
    });
}

/// Text a hostile script would use to drive the terminal or reorder what the room reads.
const HOSTILE: [&str; 6] = [
    "\\u001B[2J",
    "\\u001b]0;owned\\u0007",
    "\u{202E}",
    "\u{2067}",
    "\\u200F",
    "\\u009B31m",
];

#[test]
fn fuzz_hostile_text_in_any_string_is_refused_on_its_line() {
    let seeds = seeds();
    // Every `= "` (a basic string value) in every seed: where a hostile character goes.
    let targets: Vec<(usize, usize)> = seeds
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            let text = std::str::from_utf8(s).unwrap();
            text.match_indices("= \"")
                .filter(|(at, _)| !text[*at..].starts_with("= \"\"\""))
                .map(move |(at, _)| (i, at + 3))
                .collect::<Vec<_>>()
        })
        .collect();
    let count = targets.len();
    let strategy = (0..count, 0..HOSTILE.len(), any::<prop::sample::Index>());
    fuzz("hostile-text", strategy, |(t, h, offset)| {
        let (seed, at) = targets[t];
        let mut text = String::from_utf8(seeds[seed].clone()).unwrap();
        // Somewhere inside the value, not only at its start.
        let value_len = text[at..].find('"').unwrap_or(0);
        let mut at = at + offset.index(value_len + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.insert_str(at, HOSTILE[h]);
        let line = text[..at].matches('\n').count() + 1;
        let diagnostics = check(&text);
        prop_assert!(
            diagnostics.iter().any(|d| d.is_error() && d.line == line),
            "{:?} at line {line} was not refused there: {diagnostics:#?}",
            HOSTILE[h]
        );
        Ok(())
    });
}

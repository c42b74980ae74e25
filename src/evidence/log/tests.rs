use super::*;
use serde_json::json;

fn sample(dir: &Path) -> PathBuf {
    let path = dir.join("audit.jsonl");
    let mut log = AuditLog::create(&path).unwrap();
    log.append(
        "2026-01-01T00:00:00Z".into(),
        None,
        vec![],
        json!({"kind": "a", "z": 1, "b": [2]}),
    )
    .unwrap();
    log.append(
        "2026-01-01T00:00:01Z".into(),
        Some("s".into()),
        vec!["Ann".into()],
        json!({"kind": "b"}),
    )
    .unwrap();
    path
}

#[test]
fn chain_verifies_and_keys_are_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(sample(dir.path())).unwrap();
    let entries = read_chain(&bytes).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].prev, entries[0].hash);
    let first = String::from_utf8(bytes).unwrap();
    assert!(
        first.starts_with(r#"{"actors":[],"event":{"b":[2],"kind":"a","z":1},"hash":"#),
        "{first}"
    );
}

#[test]
fn every_single_byte_change_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(sample(dir.path())).unwrap();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        assert!(
            read_chain(&bad).is_err(),
            "flipping byte {i} went unnoticed"
        );
    }
}

#[test]
fn the_two_part_encoding_is_the_canonical_json_of_the_whole_entry() {
    let entry = AuditEntry {
        seq: 7,
        time: "2026-01-01T00:00:00Z".into(),
        step: None,
        actors: vec!["Zoë \"Z\" Ångström".into(), "a\\b\n".into()],
        event: json!({"kind": "k", "b": {"z": [1, "\u{1}"], "a": null}, "a": "é"}),
        prev: GENESIS_PREV.into(),
        hash: "x".into(),
    };
    let whole = serde_json::to_value(&entry).unwrap();
    assert_eq!(entry.to_line().as_bytes(), canonical_json(&whole));
    let mut unhashed = whole;
    unhashed.as_object_mut().unwrap().remove("hash");
    assert_eq!(
        entry.compute_hash(),
        hex::encode(Sha256::digest(canonical_json(&unhashed)))
    );
}

#[test]
fn unsynced_entries_chain_like_synced_ones_and_stream_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::create(&path).unwrap();
    let t = || "2026-01-01T00:00:00Z".to_string();
    let a = log
        .append_unsynced(t(), None, vec![], json!({"kind": "a"}))
        .unwrap();
    let b = log.append(t(), None, vec![], json!({"kind": "b"})).unwrap();
    let c = log
        .append_unsynced(t(), Some("s".into()), vec![], json!({"kind": "c"}))
        .unwrap();
    log.sync().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let streamed = ChainReader::new(&bytes[..])
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(streamed, vec![a, b, c]);
    assert_eq!(read_chain(&bytes).unwrap(), streamed);
}

#[test]
fn the_reader_names_the_broken_line_and_stops_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(sample(dir.path())).unwrap();
    bytes.pop(); // the last newline
    let mut reader = ChainReader::new(&bytes[..]);
    assert!(reader.next().unwrap().is_ok());
    let err = reader.next().unwrap().unwrap_err();
    assert_eq!(err.line, 2);
    assert!(err.what.contains("not terminated"), "{}", err.what);
    assert!(reader.next().is_none());
    assert_eq!(read_chain(b"").unwrap_err(), empty_log());
}

#[test]
fn an_existing_log_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = sample(dir.path());
    assert!(AuditLog::create(&path).is_err());
}

/// A log whose events hold every kind of JSON value the scan follows, and some it leaves to the
/// exact path (a float, a negative number, a `\u` escape, an escaped key, deep nesting).
fn varied(dir: &Path) -> Vec<u8> {
    let path = dir.join("audit.jsonl");
    let mut log = AuditLog::create(&path).unwrap();
    let mut deep = json!(1);
    for _ in 0..70 {
        deep = json!([deep]);
    }
    let events = [
        json!({"kind": "confirmed", "step": "s1", "person": "Zoë \"Z\" Å\\n", "role": "operator",
               "counts_for": "dual-control"}),
        json!({"kind": "x", "a": [1, 0, 18446744073709551615u64, true, false, null, "t\tr\r\n"],
               "b": {"": {}, "z": [], "y": {"k": "v"}}, "c": "\u{7f}\u{2028}"}),
        json!({"kind": "float", "f": 1.5}),
        json!({"kind": "negative", "n": -3}),
        json!({"kind": "control", "s": "\u{1}\u{8}\u{c}"}),
        json!({"kind": "escaped key", "a\"b": 1}),
        json!({"kind": "deep", "d": deep}),
        json!({"kind": "k\\ind"}),
        json!({"no kind": 1}),
    ];
    for (i, event) in events.into_iter().enumerate() {
        let step = (i % 2 == 0).then(|| format!("s{i}"));
        let actors = vec!["Ann".to_string(), "B \"b\"".to_string()][..i % 3].to_vec();
        log.append("2026-01-01T00:00:00Z".into(), step, actors, event)
            .unwrap();
    }
    std::fs::read(path).unwrap()
}

/// Check every line with the scan (falling back to the exact path) and with the exact path alone:
/// the same verdicts and the same messages.
fn both_paths(bytes: &[u8]) -> (Vec<Result<(), ChainError>>, usize) {
    let (mut fast, mut exact) = (ChainCheck::default(), ChainCheck::default());
    let mut scanned = 0;
    let mut results = Vec::new();
    for line in bytes.split(|&b| b == b'\n') {
        let a = fast.check(line);
        scanned += usize::from(matches!(a, Ok(Checked::Scanned(_))));
        let b = std::str::from_utf8(line)
            .map_err(|_| ChainError {
                line: exact.read + 1,
                what: "not UTF-8".into(),
            })
            .and_then(|l| {
                exact.read += 1;
                exact.exact(l)
            });
        if let (Ok(a), Ok(b)) = (&a, &b) {
            assert_eq!(a.view(), b.view());
        }
        let (a, b) = (a.map(drop), b.map(drop));
        assert_eq!(a, b, "line {:?}", String::from_utf8_lossy(line));
        results.push(a);
        if results.last().is_some_and(Result::is_err) {
            break;
        }
    }
    (results, scanned)
}

#[test]
fn the_scan_checks_what_the_exact_path_checks() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = varied(dir.path());
    let body = &bytes[..bytes.len() - 1];
    let (results, scanned) = both_paths(body);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // The first two lines and the last are in the scanned subset; the others each hold one thing
    // it leaves to the exact path.
    assert_eq!(scanned, 3, "{}", String::from_utf8_lossy(&bytes));
    // Every single-byte change, every byte dropped, and a few bytes inserted anywhere: both
    // paths give the same finding (the byte changes all break the chain).
    for i in 0..body.len() {
        for bad in [
            {
                let mut b = body.to_vec();
                b[i] ^= 0x01;
                b
            },
            [&body[..i], &body[i + 1..]].concat(),
            [&body[..i], b" ", &body[i..]].concat(),
            [&body[..i], b"0", &body[i..]].concat(),
            [&body[..i], b"\\", &body[i..]].concat(),
        ] {
            let (results, _) = both_paths(&bad);
            assert!(
                results.iter().any(Result::is_err),
                "a change at {i} went unnoticed"
            );
        }
    }
}

#[test]
fn a_scanned_line_gives_the_entry_of_the_exact_path() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = varied(dir.path());
    let mut chain = ChainCheck::default();
    let line = bytes.split(|&b| b == b'\n').next().unwrap();
    let checked = chain.check(line).unwrap();
    let Checked::Scanned(scanned) = &checked else {
        panic!("not scanned")
    };
    assert_eq!(scanned.kind, "confirmed");
    assert_eq!(scanned.step, Some("s0"));
    let entry: AuditEntry = serde_json::from_slice(line).unwrap();
    assert_eq!(checked.view(), entry.view());
    assert_eq!(checked.into_entry().unwrap(), entry);
}

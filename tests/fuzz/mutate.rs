//! Mutations of seed inputs and the runner shared by every harness.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One change to a byte string. Positions are taken modulo the current length, so every operation
/// applies to every input.
#[derive(Debug, Clone)]
pub enum Op {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Truncate {
        at: usize,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    /// Copy `len` bytes from seed `from` (at `src`) over position `at`: mixes structure between seeds.
    Splice {
        from: usize,
        src: usize,
        len: usize,
        at: usize,
    },
    Duplicate {
        at: usize,
        len: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let at = any::<usize>();
    prop_oneof![
        4 => (at, 0u8..8).prop_map(|(at, bit)| Op::Flip { at, bit }),
        2 => (at, any::<u8>()).prop_map(|(at, byte)| Op::Set { at, byte }),
        1 => at.prop_map(|at| Op::Truncate { at }),
        1 => (at, 1usize..64).prop_map(|(at, len)| Op::Delete { at, len }),
        2 => (at, prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Op::Insert { at, bytes }),
        1 => (any::<usize>(), at, 1usize..256, any::<usize>())
            .prop_map(|(from, src, len, at)| Op::Splice { from, src, len, at }),
        1 => (at, 1usize..64).prop_map(|(at, len)| Op::Duplicate { at, len }),
    ]
}

/// `seed` with `ops` applied in order; `seeds` feed splices.
pub fn apply(seed: &[u8], ops: &[Op], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for op in ops {
        let n = out.len().max(1);
        match op {
            Op::Flip { at, bit } if !out.is_empty() => out[at % n] ^= 1 << bit,
            Op::Set { at, byte } if !out.is_empty() => out[at % n] = *byte,
            Op::Truncate { at } => out.truncate(at % n),
            Op::Delete { at, len } if !out.is_empty() => {
                let start = at % n;
                let end = (start + len).min(out.len());
                out.drain(start..end);
            }
            Op::Insert { at, bytes } => {
                let at = at % (out.len() + 1);
                out.splice(at..at, bytes.iter().copied());
            }
            Op::Splice { from, src, len, at } => {
                let other = &seeds[from % seeds.len()];
                if other.is_empty() {
                    continue;
                }
                let start = src % other.len();
                let chunk = &other[start..(start + len).min(other.len())];
                let at = at % (out.len() + 1);
                let end = (at + chunk.len()).min(out.len());
                out.splice(at..end, chunk.iter().copied());
            }
            Op::Duplicate { at, len } if !out.is_empty() => {
                let start = at % n;
                let chunk = out[start..(start + len).min(out.len())].to_vec();
                out.splice(start..start, chunk);
            }
            _ => {}
        }
    }
    out
}

/// A seed with one to five mutations, or (one case in ten) random bytes alone.
pub fn mutated(seeds: Arc<Vec<Vec<u8>>>) -> impl Strategy<Value = Vec<u8>> {
    let count = seeds.len();
    prop_oneof![
        9 => (0..count, prop::collection::vec(op(), 1..6))
            .prop_map(move |(i, ops)| apply(&seeds[i], &ops, &seeds)),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// One bit flipped in one of `seeds`: `(seed index, byte offset, bit)`.
pub fn single_flip(seeds: Arc<Vec<Vec<u8>>>) -> impl Strategy<Value = (usize, usize, u8)> {
    (0..seeds.len()).prop_flat_map(move |i| (Just(i), 0..seeds[i].len(), 0u8..8))
}

/// Run `test` over `strategy`: PROPTEST_CASES cases (default 256), or, with KEYRITE_FUZZ_SECONDS set,
/// batches of fresh random cases until that many seconds have passed. In the timed run an input that
/// takes longer than KEYRITE_FUZZ_SLOW_MS to check fails the harness (a hang or a blow-up found).
pub fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let seconds = env_u64("KEYRITE_FUZZ_SECONDS");
    let slow =
        seconds.map(|_| Duration::from_millis(env_u64("KEYRITE_FUZZ_SLOW_MS").unwrap_or(2000)));
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    let started = Instant::now();
    let mut cases = 0u64;
    loop {
        let mut runner = TestRunner::new(config.clone());
        let result = runner.run(&strategy, |input| {
            let t = Instant::now();
            test(input)?;
            match slow {
                Some(limit) if t.elapsed() > limit => Err(TestCaseError::fail(format!(
                    "one input took {:?} (limit {limit:?})",
                    t.elapsed()
                ))),
                _ => Ok(()),
            }
        });
        cases += u64::from(config.cases);
        if let Err(e) = result {
            match e {
                TestError::Fail(why, input) => {
                    panic!("fuzz {name}: {why}\nminimal failing input: {input:?}")
                }
                TestError::Abort(why) => panic!("fuzz {name}: aborted: {why}"),
            }
        }
        match seconds {
            Some(s) if started.elapsed() < Duration::from_secs(s) => continue,
            _ => break,
        }
    }
    eprintln!(
        "fuzz {name}: {cases} cases in {:.1} s, no failure (the long run: KEYRITE_FUZZ_SECONDS=600 \
         cargo test --release --locked --test fuzz -- --nocapture --test-threads 1)",
        started.elapsed().as_secs_f64()
    );
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn mutations_stay_in_bounds_on_empty_and_tiny_inputs() {
    let seeds = vec![Vec::new(), vec![1]];
    let ops = [
        Op::Flip { at: 9, bit: 7 },
        Op::Delete { at: 3, len: 9 },
        Op::Duplicate { at: 0, len: 9 },
        Op::Splice {
            from: 1,
            src: 5,
            len: 300,
            at: 77,
        },
        Op::Insert {
            at: 99,
            bytes: vec![2, 3],
        },
        Op::Truncate { at: 1 },
    ];
    assert_eq!(apply(&[], &ops, &seeds), vec![1]);
    assert_eq!(apply(&[0xF0], &ops[..1], &seeds), vec![0x70]);
}

/// A JSON value a hostile writer might put anywhere: wrong types, huge or negative numbers, empty or
/// hostile strings, empty containers.
pub fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        Just(json!(-1)),
        Just(json!(1e308)),
        "[ -~]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "",
            "\u{1b}[2J",
            "\u{202E}",
            "\n",
            "0",
            "ffff",
            "../../etc/passwd",
            "completed",
        ])
        .prop_map(|s| Value::String(s.into())),
        Just(json!({})),
        Just(json!([])),
    ]
}

/// One change to one node of a JSON document.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Any value, most often of the wrong type.
    Replace(serde_json::Value),
    /// Removed from its object or array.
    Remove,
    /// A value of the same type: another string or number, the other bool, an array one longer or
    /// shorter. Most such documents still parse, so the reader behind the parser is reached.
    SameType(u64, String),
}

fn same_type(node: &serde_json::Value, n: u64, text: String) -> serde_json::Value {
    use serde_json::Value;
    match node {
        Value::String(_) => Value::String(text),
        Value::Number(_) if n.is_multiple_of(3) => serde_json::json!(n),
        Value::Number(_) => serde_json::json!(n % 100),
        Value::Bool(b) => Value::Bool(!b),
        Value::Array(a) if n.is_multiple_of(2) && !a.is_empty() => {
            Value::Array(a.iter().chain(a.first()).cloned().collect())
        }
        Value::Array(a) => Value::Array(a.iter().skip(1).cloned().collect()),
        other => other.clone(),
    }
}

/// `value` with one node (chosen by `pick` over a depth-first walk) changed by `edit`.
pub fn mutate_json(value: &mut serde_json::Value, pick: usize, edit: Edit) {
    use serde_json::Value;
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Object(m) => m.values().map(count).sum(),
            Value::Array(a) => a.iter().map(count).sum(),
            _ => 0,
        }
    }
    fn walk(v: &mut Value, mut n: usize, edit: Edit) {
        if n == 0 {
            *v = match edit {
                Edit::Replace(with) => with,
                Edit::SameType(k, text) => same_type(v, k, text),
                Edit::Remove => Value::Null,
            };
            return;
        }
        n -= 1;
        let sizes: Vec<usize> = match v {
            Value::Object(m) => m.values().map(count).collect(),
            Value::Array(a) => a.iter().map(count).collect(),
            _ => Vec::new(),
        };
        for (i, size) in sizes.into_iter().enumerate() {
            if n >= size {
                n -= size;
                continue;
            }
            let remove = n == 0 && matches!(edit, Edit::Remove);
            match v {
                Value::Object(m) if remove => {
                    let key = m.keys().nth(i).cloned().unwrap_or_default();
                    m.remove(&key);
                }
                Value::Array(a) if remove => {
                    a.remove(i);
                }
                Value::Object(m) => {
                    if let Some(child) = m.values_mut().nth(i) {
                        walk(child, n, edit);
                    }
                }
                Value::Array(a) => walk(&mut a[i], n, edit),
                _ => {}
            }
            return;
        }
    }
    let total = count(value);
    walk(value, pick % total, edit);
}

fn edit() -> impl Strategy<Value = Edit> {
    let text = prop_oneof![
        "[ -~]{0,12}",
        prop::sample::select(vec!["", "\u{1b}[2J", "\u{202E}x", "a\nb", "ÉVA", "../x"])
            .prop_map(String::from),
    ];
    prop_oneof![
        2 => json_value().prop_map(Edit::Replace),
        1 => Just(Edit::Remove),
        5 => (any::<u64>(), text).prop_map(|(n, s)| Edit::SameType(n, s)),
    ]
}

/// One to four JSON-aware edits: `(pick, edit)`.
pub fn json_edits() -> impl Strategy<Value = Vec<(usize, Edit)>> {
    prop::collection::vec((any::<usize>(), edit()), 1..5)
}

#[test]
fn json_mutations_reach_every_node() {
    let mut v = serde_json::json!({"a": [1, {"b": 2}], "c": 3});
    mutate_json(&mut v, 4, Edit::Replace(serde_json::json!("x")));
    assert_eq!(v, serde_json::json!({"a": [1, {"b": "x"}], "c": 3}));
    mutate_json(&mut v, 5, Edit::Remove);
    assert_eq!(v, serde_json::json!({"a": [1, {"b": "x"}]}));
    mutate_json(&mut v, 4, Edit::SameType(7, "y".into()));
    assert_eq!(v, serde_json::json!({"a": [1, {"b": "y"}]}));
    mutate_json(&mut v, 0, Edit::Replace(serde_json::json!([])));
    assert_eq!(v, serde_json::json!([]));
}

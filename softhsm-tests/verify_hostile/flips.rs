//! Random bit flips over finished bundles, each verified in-process: every flip must be tampering
//! (never verified, never INCOMPLETE) and the failing checks must name the flipped file.

use super::{copy_of, finished, have_tools, rehearsed, verdict};
use keyrite::evidence::verify::Verdict;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// xorshift64*: a fixed seed, so a failure names a flip that can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

/// Every file of the bundle, relative.
fn files(out: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for sub in ["", "artifacts", "signatures"] {
        for e in std::fs::read_dir(out.join(sub)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                let name = e.file_name().to_string_lossy().into_owned();
                found.push(if sub.is_empty() {
                    name
                } else {
                    format!("{sub}/{name}")
                });
            }
        }
    }
    found.sort();
    found
}

/// Flip `count` random bits, one at a time, in a copy of `bundle`; each must fail verify naming
/// its file. Returns the flips per file.
fn flip_bits(bundle: &Path, count: usize, seed: u64) -> BTreeMap<String, usize> {
    let dir = tempfile::tempdir().unwrap();
    let t = copy_of(bundle, dir.path(), "flips");
    assert_eq!(
        verdict(&t).0,
        Verdict::Verified,
        "{}",
        verdict(&t).1.table()
    );
    let files = files(&t);
    assert!(files.len() >= 10, "{files:?}");
    let mut rng = Rng(seed);
    let mut per_file = BTreeMap::new();
    for flip in 0..count {
        // A file at random, then a bit in it: every file gets its share of flips.
        let file = &files[rng.below(files.len())];
        let path = t.join(file);
        let original = std::fs::read(&path).unwrap();
        let mut bytes = original.clone();
        let bit = rng.below(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&path, &bytes).unwrap();
        let (got, v) = verdict(&t);
        let named = v
            .checks
            .iter()
            .any(|c| !c.ok && !c.incomplete && c.file == *file);
        assert!(
            got == Verdict::Failed && named,
            "flip {flip}: bit {bit} of {file} not detected as tampering of that file:\n{}",
            v.table()
        );
        std::fs::write(&path, &original).unwrap();
        *per_file.entry(file.clone()).or_insert(0) += 1;
    }
    assert_eq!(verdict(&t).0, Verdict::Verified);
    per_file
}

#[test]
fn a_thousand_random_bit_flips_are_each_detected_and_the_file_named() {
    if !have_tools() {
        return;
    }
    let per_file = flip_bits(finished(), 1000, 0x6b65_7972_6974_6531);
    eprintln!("root ceremony: 1000 bit flips detected, by file: {per_file:?}");
}

#[test]
fn a_thousand_bit_flips_over_a_quorum_split_bundle_are_each_detected() {
    if !have_tools() {
        return;
    }
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    let bundle = rehearsed("ceremony-scripts/root-ca-quorum.toml", &BUNDLE);
    let per_file = flip_bits(bundle, 1000, 0x7175_6f72_756d_0001);
    eprintln!("quorum split: 1000 bit flips detected, by file: {per_file:?}");
}

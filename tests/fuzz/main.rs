//! Hostile-input fuzzing on the stable toolchain (docs/threat-model.md, "Fuzzing"): property-based
//! mutation harnesses over every reader that takes bytes from outside. Each harness is seeded with
//! real inputs (shipped scripts, a real split's card objects, a log and report from a ceremony on the
//! mock HSM, a CMS signature made through the mock HSM), mutates them (bit flips, byte writes,
//! truncation, deletion, insertion of random bytes, splices between seeds, duplication, or random bytes
//! alone) and checks that the reader never panics and that inputs it must reject are rejected.
//!
//! CI runs each harness for PROPTEST_CASES cases (proptest's default, 256). The long run, which also
//! fails on any single input that takes more than KEYRITE_FUZZ_SLOW_MS (default 2000) to read:
//!
//! ```sh
//! KEYRITE_FUZZ_SECONDS=600 cargo test --release --locked --test fuzz -- --nocapture --test-threads 1
//! ```

mod cms;
mod evidence;
mod mutate;
mod quorum;
mod script;

//! keyrite: a key-ceremony orchestrator. See docs/architecture.md for how the folders map onto trust
//! boundaries.
#![forbid(unsafe_code)]
// No unwrap()/expect() outside tests: what a user or an HSM can cause is an error that says what to
// do (clippy.toml lets tests unwrap).
#![deny(clippy::unwrap_used, clippy::expect_used)]

/// mimalloc rather than glibc's malloc, for the binary and everything else built on this crate
/// (tests, benches): verify 10-13 % less CPU, RSS within every target (Cargo.toml, docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod cli;
pub mod commands;
pub mod driver;
pub mod engine;
pub mod error;
pub mod evidence;
pub mod hardening;
pub mod hsm;
pub mod quorum;
pub mod script;
pub mod tui;
pub mod x509;

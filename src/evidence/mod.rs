//! Evidence: the hash-chained audit log, the report derived from it, the bundle on disk, and the
//! offline verification of all of it.

pub mod backup;
pub mod bundle;
pub mod destroy;
pub mod events;
pub mod log;
pub mod pdf;
pub mod pgp_words;
pub mod quorum;
pub mod replay;
mod replay_tokens;
pub mod report;
pub mod safe_read;
pub mod scan;
pub mod signing;
pub mod tokens;
pub mod verify;

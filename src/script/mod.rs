//! The ceremony script: model, parsing with source locations, and the security-level policy.

pub mod model;

pub use model::*;

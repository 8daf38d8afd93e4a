//! warp adapter for hookwire-receiver: a Filter and rejection recovery.
//!
//! This crate is being built; see the workspace README for its scope.

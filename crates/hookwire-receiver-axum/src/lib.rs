//! axum adapter for hookwire-receiver: a tower Layer and extractors.
//!
//! This crate is being built; see the workspace README for its scope.

//! Background jobs: typed job definitions, the backend trait, the worker runtime and an in-memory backend.
//!
//! This crate is being built; see the workspace README for its scope.

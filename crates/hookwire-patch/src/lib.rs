//! Deep-merge JSON patches and deltas, plus RFC 7396 / RFC 6902 via json-patch.
//!
//! This crate is being built; see the workspace README for its scope.

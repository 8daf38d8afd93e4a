//! Server-Sent Events: version-keyed patch broadcast, state cache, presence, resume, lean acceptor.
//!
//! This crate is being built; see the workspace README for its scope.

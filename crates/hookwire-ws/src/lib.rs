//! WebSocket room gateway: rooms, org scoping, heartbeats, limits; axum integration.
//!
//! This crate is being built; see the workspace README for its scope.

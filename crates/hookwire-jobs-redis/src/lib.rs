//! The hookwire job backend on Redis: Lua-scripted transitions, leases, blocking fetch, cluster-safe keys.
//!
//! This crate is being built; see the workspace README for its scope.

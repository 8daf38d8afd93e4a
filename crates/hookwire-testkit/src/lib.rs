//! Shared conformance suites and real-service spawners (redis-server, sinks) for hookwire tests.
//!
//! This crate is being built; see the workspace README for its scope.

//! Inbound webhooks: verification, two-phase idempotency, a typed receiver and stores.
//!
//! This crate is being built; see the workspace README for its scope.

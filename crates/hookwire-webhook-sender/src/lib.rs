//! Outbound webhooks: signed, timed-out, idempotency-keyed, classified, retried deliveries and a subscription dispatcher.
//!
//! This crate is being built; see the workspace README for its scope.

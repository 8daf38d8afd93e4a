//! The outbox conformance suite on every store, and the store-specific cases (writing inside the
//! caller's own transaction).

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

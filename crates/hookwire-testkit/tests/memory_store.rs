//! The core `MemoryStore` against the idempotency conformance suite.

use std::sync::Arc;

use hookwire_core::{IdempotencyConfig, IdempotencyStore, MemoryStore};

fn memory(config: IdempotencyConfig) -> Arc<dyn IdempotencyStore> {
    Arc::new(MemoryStore::new(config))
}

hookwire_testkit::idempotency_conformance!(memory);

//! The engine's conformance suite on the memory store, and the signal race at scale.

use std::sync::Arc;

use hookwire_workflow::MemoryStore;
use hookwire_workflow::conformance::Store;

mod redis_store;
mod routes;
mod signals;

hookwire_workflow::workflow_conformance!(async { (Arc::new(MemoryStore::new()) as Store, ()) });

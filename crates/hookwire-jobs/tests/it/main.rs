//! The conformance suite against the in-memory backend.

use std::sync::Arc;

use hookwire_jobs::MemoryBackend;
use hookwire_jobs::conformance::Backend;

hookwire_jobs::jobs_conformance!(async { (Arc::new(MemoryBackend::new()) as Backend, ()) });

mod options;
mod shutdown;

#[cfg(feature = "events")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_events_reach_a_memory_bus() {
    let bus = hookwire_events::Bus::builder(hookwire_events::MemoryTransport::new())
        .build()
        .unwrap();
    hookwire_jobs::conformance::lifecycle_events_reach_the_bus(Arc::new(MemoryBackend::new()), bus)
        .await;
}

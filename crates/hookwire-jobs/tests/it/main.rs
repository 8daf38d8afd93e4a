//! The conformance suite against the in-memory backend.

use std::sync::Arc;

use hookwire_jobs::MemoryBackend;
use hookwire_jobs::conformance::Backend;

hookwire_jobs::jobs_conformance!(async { (Arc::new(MemoryBackend::new()) as Backend, ()) });

mod options;

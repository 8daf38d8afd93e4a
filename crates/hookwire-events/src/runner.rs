//! One subscription's handler call: upcast, correlation scope, timeout, panic capture, and the
//! verdict the transport acts on (done, retry later, dead letter now).

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use hookwire_core::Event;
use hookwire_core::error::is_retryable;

use crate::handler::Handler;
use crate::registry::Registry;

/// Longest error chain kept per failure.
const MAX_CHAIN: usize = 8;
/// Longest message kept per error in a chain, in bytes.
const MAX_MESSAGE: usize = 2048;

/// What became of one delivery.
#[derive(Debug)]
pub(crate) enum Outcome {
    Done,
    /// Failed, may be retried; the error chain.
    Retry(Vec<String>),
    /// Failed for good; the error chain.
    Dead(Vec<String>),
}

pub(crate) struct Runner {
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) timeout: Duration,
    pub(crate) registry: Option<Arc<Registry>>,
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The error and its sources, outermost first, bounded.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = Some(e);
    while let Some(e) = cur {
        if out.len() == MAX_CHAIN {
            break;
        }
        out.push(clip(e.to_string()));
        cur = e.source();
    }
    out
}

impl Runner {
    /// Runs the handler once for `event`.
    pub(crate) async fn run(&self, event: Event) -> Outcome {
        let event = match &self.registry {
            Some(r) => match r.upcast(event) {
                Ok(e) => e,
                Err(e) => {
                    let mut c = vec!["upcasting failed".to_owned()];
                    c.extend(chain(&*e));
                    return Outcome::Dead(c);
                }
            },
            None => event,
        };
        let fut = crate::context::scope_event(&event, self.handler.handle(event.clone()));
        let guarded = AssertUnwindSafe(fut).catch_unwind();
        match tokio::time::timeout(self.timeout, guarded).await {
            Ok(Ok(Ok(()))) => Outcome::Done,
            Ok(Ok(Err(e))) => {
                let c = chain(&*e);
                if is_retryable(&*e) {
                    Outcome::Retry(c)
                } else {
                    Outcome::Dead(c)
                }
            }
            Ok(Err(_)) => Outcome::Retry(vec!["handler panicked".to_owned()]),
            Err(_) => Outcome::Retry(vec![format!(
                "handler timed out after {} ms",
                self.timeout.as_millis()
            )]),
        }
    }
}

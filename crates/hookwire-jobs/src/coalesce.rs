//! Group commit for single dispatches: the dispatches of one queue that arrive while an add
//! call for that queue is in flight go together in the next call.
//!
//! A backend call has a fixed cost that dwarfs the per-job work (on Redis a script call costs
//! several times what one more job in the same call does), so many callers dispatching at once
//! (the starters of workflow runs, request handlers) would otherwise pay it once each. A lone
//! dispatch goes out at once; a batched one waits at most for the call in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::backend::JobBackend;
use crate::error::Error;
use crate::model::{Added, MAX_BULK, NewJob};

type Reply = oneshot::Sender<Result<Added, Error>>;

/// The dispatches of each queue waiting for a call. A queue has an entry exactly while its
/// flusher runs.
#[derive(Default)]
pub(crate) struct Coalescer {
    queues: Mutex<HashMap<String, Vec<(NewJob, Reply)>>>,
}

impl Coalescer {
    /// Stores `job` in `queue`, in the next add call of that queue.
    pub(crate) async fn add(
        self: &Arc<Self>,
        backend: &Arc<dyn JobBackend>,
        queue: &str,
        job: NewJob,
    ) -> Result<Added, Error> {
        // Checked here, before the job can share a call: backends check every job of a call
        // before storing any, so one caller's invalid job would fail the others' dispatches.
        job.validate()?;
        // Outside a Tokio runtime there is no task to flush with: the call goes out alone.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return one(backend.add(queue, vec![job]).await);
        };
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
            match queues.get_mut(queue) {
                // A flusher is running for this queue: it takes the job with its next call.
                Some(waiting) => {
                    waiting.push((job, tx));
                    false
                }
                None => {
                    queues.insert(queue.to_owned(), vec![(job, tx)]);
                    true
                }
            }
        };
        if lead {
            // A task of its own, not this caller's future: if the caller stops waiting, the
            // jobs queued behind it still go out.
            rt.spawn(self.clone().flush(backend.clone(), queue.to_owned()));
        }
        rx.await
            .unwrap_or_else(|_| Err(Error::backend("the dispatch was dropped unanswered")))
    }

    /// Sends the queue's waiting dispatches, up to [`MAX_BULK`] per call, until none is left.
    async fn flush(self: Arc<Self>, backend: Arc<dyn JobBackend>, queue: String) {
        loop {
            let batch = {
                let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(waiting) = queues.get_mut(&queue) else {
                    return;
                };
                if waiting.is_empty() {
                    queues.remove(&queue);
                    return;
                }
                let n = waiting.len().min(MAX_BULK);
                waiting.drain(..n).collect::<Vec<_>>()
            };
            let (jobs, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let r = backend.add(&queue, jobs).await;
            answer(r, replies);
        }
    }
}

/// The outcome of a one-job call.
fn one(r: Result<Vec<Added>, Error>) -> Result<Added, Error> {
    r?.pop()
        .ok_or_else(|| Error::backend("backend returned no outcome"))
}

/// Hands each caller its outcome; on error, the first caller gets the error itself (its source
/// chain intact) and the others one of the same kind and text.
fn answer(r: Result<Vec<Added>, Error>, replies: Vec<Reply>) {
    match r {
        Ok(added) if added.len() == replies.len() => {
            for (a, reply) in added.into_iter().zip(replies) {
                let _ = reply.send(Ok(a));
            }
        }
        Ok(_) => {
            for reply in replies {
                let _ = reply.send(Err(Error::backend(
                    "backend returned a different number of outcomes than jobs",
                )));
            }
        }
        Err(e) => {
            let (kind, text) = (e.kind(), e.source_text());
            let mut replies = replies.into_iter();
            if let Some(first) = replies.next() {
                let _ = first.send(Err(e));
            }
            for reply in replies {
                let _ = reply.send(Err(Error::new(kind, text.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::memory::MemoryBackend;

    #[tokio::test]
    async fn concurrent_dispatches_share_calls_and_each_gets_its_own_outcome() {
        let backend: Arc<dyn JobBackend> = Arc::new(MemoryBackend::new());
        let c = Arc::new(Coalescer::default());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let (c, b) = (c.clone(), backend.clone());
            tasks.push(tokio::spawn(async move {
                let mut j = NewJob::new(format!("{i}"));
                j.id = Some(format!("j-{}", i % 150));
                c.add(&b, "q", j).await
            }));
        }
        let mut created = 0;
        for t in tasks {
            let a = t.await.expect("task").expect("added");
            created += usize::from(a.created);
        }
        assert_eq!(created, 150, "ids repeated across a batch are deduplicated");
        assert_eq!(backend.counts("q").await.expect("counts").waiting, 150);
        assert!(
            c.queues.lock().expect("lock").is_empty(),
            "the flusher left"
        );
    }

    #[test]
    fn a_dispatch_outside_a_tokio_runtime_goes_out_alone() {
        let backend: Arc<dyn JobBackend> = Arc::new(MemoryBackend::new());
        let c = Arc::new(Coalescer::default());
        let added = hookwire_core::idempotency::block_on(c.add(&backend, "q", NewJob::new("1")))
            .expect("added");
        assert!(added.created);
    }

    #[tokio::test]
    async fn an_invalid_job_fails_alone() {
        let backend: Arc<dyn JobBackend> = Arc::new(MemoryBackend::new());
        let c = Arc::new(Coalescer::default());
        let mut tasks = Vec::new();
        for i in 0..50 {
            let (c, b) = (c.clone(), backend.clone());
            tasks.push(tokio::spawn(async move {
                let data = if i == 7 {
                    "{not json".to_owned()
                } else {
                    format!("{i}")
                };
                c.add(&b, "q", NewJob::new(data)).await
            }));
        }
        let mut failed = 0;
        for t in tasks {
            if let Err(e) = t.await.expect("task") {
                assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
                failed += 1;
            }
        }
        assert_eq!(failed, 1);
        assert_eq!(backend.counts("q").await.expect("counts").waiting, 49);
    }
}

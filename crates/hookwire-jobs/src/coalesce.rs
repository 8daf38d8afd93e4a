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

    /// Dispatches `n` jobs made by `job` from as many tasks at once; their outcomes in order.
    async fn dispatch_at_once(
        c: &Arc<Coalescer>,
        backend: &Arc<dyn JobBackend>,
        n: usize,
        job: fn(usize) -> NewJob,
    ) -> Vec<Result<Added, Error>> {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let (c, b) = (c.clone(), backend.clone());
                tokio::spawn(async move { c.add(&b, "q", job(i)).await })
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    }

    #[tokio::test]
    async fn concurrent_dispatches_share_calls_and_each_gets_its_own_outcome() {
        let backend: Arc<dyn JobBackend> = Arc::new(MemoryBackend::new());
        let c = Arc::new(Coalescer::default());
        let outcomes = dispatch_at_once(&c, &backend, 200, |i| {
            let mut j = NewJob::new(format!("{i}"));
            j.id = Some(format!("j-{}", i % 150));
            j
        })
        .await;
        let mut created = 0;
        for a in outcomes {
            created += usize::from(a.expect("added").created);
        }
        assert_eq!(created, 150, "ids repeated across a batch are deduplicated");
        assert_eq!(backend.counts("q").await.expect("counts").waiting, 150);
        assert!(
            c.queues.lock().expect("lock").is_empty(),
            "the flusher left"
        );
    }

    #[test]
    fn a_failed_call_fails_every_caller_and_the_first_keeps_the_source() {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..3).map(|_| oneshot::channel()).unzip();
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        answer(Err(Error::backend(io)), txs);
        let errs: Vec<Error> = rxs
            .into_iter()
            .map(|mut rx| rx.try_recv().expect("answered").expect_err("failed"))
            .collect();
        let first = std::error::Error::source(&errs[0]).expect("a source");
        assert!(
            first.downcast_ref::<std::io::Error>().is_some(),
            "{first:?}"
        );
        for e in &errs[1..] {
            assert!(e.is_backend());
            assert_eq!(e.to_string(), errs[0].to_string());
        }

        // A backend that answers a different number of outcomes than jobs fails them all.
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..2).map(|_| oneshot::channel()).unzip();
        answer(Ok(vec![Added::new("1", true)]), txs);
        for mut rx in rxs {
            assert!(
                rx.try_recv()
                    .expect("answered")
                    .expect_err("failed")
                    .is_backend()
            );
        }
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
        let outcomes = dispatch_at_once(&c, &backend, 50, |i| {
            NewJob::new(if i == 7 {
                "{not json".to_owned()
            } else {
                format!("{i}")
            })
        })
        .await;
        let mut failed = 0;
        for r in outcomes {
            if let Err(e) = r {
                assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
                failed += 1;
            }
        }
        assert_eq!(failed, 1);
        assert_eq!(backend.counts("q").await.expect("counts").waiting, 49);
    }
}

//! Group commit for transitions on a standalone Redis: the transitions that arrive while a
//! transition call is in flight go together in the next call, one script over all their keys.
//!
//! On this kind of workload a script call's fixed cost (argument tables, the call itself, the
//! event-loop round) is several times what one transition does inside it, and many runs move
//! at once. A lone transition goes out at once, as `transition.lua`; a batched one waits at
//! most for the call in flight. Not on Cluster: the keys of a batch are in different slots.

use std::sync::{Arc, Mutex, PoisonError};

use redis::aio::ConnectionLike;
use redis::{Script, Value};
use tokio::sync::oneshot;

use super::{TRANSITION, TRANSITION_MANY};
use crate::error::{Error, Result};

/// Most transitions in one call (two arguments each, well within Lua's stack).
const MAX_BATCH: usize = 64;

/// One transition waiting for a call.
struct Pending {
    key: String,
    rev: u64,
    packed: String,
    reply: oneshot::Sender<Result<Value>>,
}

/// The transitions waiting for the next call: `Some` exactly while a flusher runs.
#[derive(Default)]
pub(super) struct Batcher {
    waiting: Mutex<Option<Vec<Pending>>>,
}

impl Batcher {
    /// Runs the transition of `key` (expected revision `rev`, new run `packed`) in the next
    /// call and returns the script's answer for it (see `transition_many.lua`). Outside a Tokio
    /// runtime the call goes out alone.
    pub(super) async fn run<C>(
        self: &Arc<Self>,
        conn: &C,
        key: String,
        rev: u64,
        packed: String,
    ) -> Result<Value>
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return single(conn.clone(), &key, rev, &packed).await;
        };
        let (reply, rx) = oneshot::channel();
        let p = Pending {
            key,
            rev,
            packed,
            reply,
        };
        let lead = {
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            match waiting.as_mut() {
                Some(list) => {
                    list.push(p);
                    false
                }
                None => {
                    *waiting = Some(vec![p]);
                    true
                }
            }
        };
        if lead {
            // Its own task, not this caller's future: a caller that stops waiting does not
            // strand the transitions queued behind it.
            rt.spawn(self.clone().flush(conn.clone()));
        }
        rx.await
            .unwrap_or_else(|_| Err(Error::store("the transition was dropped unanswered")))
    }

    /// Sends the waiting transitions, up to [`MAX_BATCH`] per call, until none is left.
    async fn flush<C>(self: Arc<Self>, conn: C)
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        loop {
            let batch = {
                let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(list) = waiting.as_mut() else {
                    return;
                };
                if list.is_empty() {
                    *waiting = None;
                    return;
                }
                let n = list.len().min(MAX_BATCH);
                list.drain(..n).collect::<Vec<_>>()
            };
            if let [p] = batch.as_slice() {
                let r = single(conn.clone(), &p.key, p.rev, &p.packed).await;
                if let Some(p) = batch.into_iter().next() {
                    let _ = p.reply.send(r);
                }
                continue;
            }
            let mut inv = TRANSITION_MANY.prepare_invoke();
            for p in &batch {
                inv.key(&p.key);
            }
            for p in &batch {
                inv.arg(p.rev).arg(&p.packed);
            }
            let r = inv.invoke_async::<Vec<Value>>(&mut conn.clone()).await;
            answer(r, batch);
        }
    }
}

/// One transition in a call of its own, with the batch's answers: a run in the hash layout
/// of earlier versions (WRONGTYPE from `transition.lua`) is `-1`.
pub(super) async fn single<C>(conn: C, key: &str, rev: u64, packed: &str) -> Result<Value>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    invoke(&TRANSITION, conn, key, rev, packed).await
}

/// `script` on one run, with WRONGTYPE (the run is not in the layout the script reads) as `-1`.
pub(super) async fn invoke<C>(
    script: &Script,
    mut conn: C,
    key: &str,
    rev: u64,
    packed: &str,
) -> Result<Value>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    match script
        .key(key)
        .arg(rev)
        .arg(packed)
        .invoke_async::<Value>(&mut conn)
        .await
    {
        Err(e) if e.code() == Some("WRONGTYPE") => Ok(Value::Int(-1)),
        r => r.map_err(Error::store),
    }
}

/// Hands each caller its answer; on error the first caller gets the error itself (its source
/// chain intact) and the others one with the same text.
fn answer(r: redis::RedisResult<Vec<Value>>, batch: Vec<Pending>) {
    match r {
        Ok(values) if values.len() == batch.len() => {
            for (v, p) in values.into_iter().zip(batch) {
                let _ = p.reply.send(Ok(v));
            }
        }
        Ok(_) => {
            for p in batch {
                let _ = p.reply.send(Err(Error::store(
                    "the batch script answered a different number of runs",
                )));
            }
        }
        Err(e) => {
            let text = e.to_string();
            let mut batch = batch.into_iter();
            if let Some(first) = batch.next() {
                let _ = first.reply.send(Err(Error::store(e)));
            }
            for p in batch {
                let _ = p.reply.send(Err(Error::store(text.clone())));
            }
        }
    }
}

//! A broadcast subscription on Redis Streams: plain `XREAD` cursors kept by this node, one per
//! stream of the bus (the main stream and each partition's), starting at each stream's end when
//! the subscription starts.

use std::sync::Arc;

use hookwire_core::Event;
use redis::Value;
use redis::aio::ConnectionLike;

use super::value::{entries, read_streams};
use super::{BLOCK, POLL, Shared};
use crate::error::Result;
use crate::runner::Outcome;
use crate::transport::{Control, SubSpec, sleep_or_stop, stopped};

/// Reads the current last id (so the subscription starts at "now") and starts the reader.
pub(crate) async fn start<C>(shared: Arc<Shared<C>>, spec: SubSpec) -> Result<Arc<Control>>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let mut pipe = redis::pipe();
    for s in &shared.keys.streams {
        pipe.cmd("XREVRANGE")
            .arg(s)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
    }
    let mut c = shared.conn.clone();
    let lasts: Vec<Value> = pipe
        .query_async(&mut c)
        .await
        .map_err(crate::error::Error::transport)?;
    let cursors = lasts
        .into_iter()
        .map(|last| {
            entries(last)
                .into_iter()
                .next()
                .map_or_else(|| "0-0".to_owned(), |e| e.id)
        })
        .collect();
    let (control, stop) = Control::new();
    control.set_task(tokio::spawn(run(shared, spec, cursors, stop)));
    Ok(control)
}

async fn run<C>(
    shared: Arc<Shared<C>>,
    spec: SubSpec,
    mut cursors: Vec<String>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let mut conn: Option<(C, bool)> = None;
    let mut failures = 0u32;
    let backoff = hookwire_core::Backoff::exponential(std::time::Duration::from_millis(100))
        .with_max(std::time::Duration::from_secs(5));
    loop {
        if *stop.borrow() {
            return;
        }
        let (c, blocking) = match &mut conn {
            Some(c) => c,
            None => match shared.reader().await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::warn!(error = %e, "broadcast reader cannot connect");
                    failures += 1;
                    if sleep_or_stop(&mut stop, backoff.delay(failures - 1)).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(shared.cfg.read_batch);
        if *blocking {
            cmd.arg("BLOCK").arg(BLOCK.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&shared.keys.streams).arg(&cursors);
        let res: redis::RedisResult<Value> = tokio::select! {
            r = cmd.query_async(c) => r,
            () = stopped(&mut stop) => return,
        };
        let batch = match res {
            Ok(v) => {
                failures = 0;
                read_streams(v)
            }
            Err(e) => {
                tracing::warn!(error = %e, "broadcast read failed; resuming from the last id read");
                conn = None;
                failures += 1;
                if sleep_or_stop(&mut stop, backoff.delay(failures - 1)).await {
                    return;
                }
                continue;
            }
        };
        if batch.iter().all(|(_, es)| es.is_empty())
            && !*blocking
            && sleep_or_stop(&mut stop, POLL).await
        {
            return;
        }
        for (name, es) in batch {
            let Some(i) = shared.keys.streams.iter().position(|s| *s == name) else {
                continue;
            };
            for e in es {
                cursors[i].clone_from(&e.id);
                deliver(&spec, e).await;
            }
        }
    }
}

/// Runs the handler for each event of one entry that is for broadcast readers.
async fn deliver(spec: &SubSpec, e: super::value::Entry) {
    for p in e.parts() {
        // Redriven dead letters are addressed to one group only.
        if p.group.is_some() {
            continue;
        }
        let name = p.name.and_then(|t| std::str::from_utf8(t).ok());
        if !name.is_some_and(|n| spec.pattern.matches(n)) {
            continue;
        }
        let Ok(event) = serde_json::from_slice::<Event>(p.event) else {
            tracing::error!(id = %e.id, "broadcast skipped an unreadable event");
            continue;
        };
        match spec.runner.run(event).await {
            Outcome::Done => {}
            Outcome::Retry(c) | Outcome::Dead(c) => {
                tracing::warn!(id = %e.id, error = ?c, "broadcast handler failed");
            }
        }
    }
}

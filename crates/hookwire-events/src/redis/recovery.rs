//! Recovery of one group subscription: keeps its own in-flight entries fresh, sweeps up entries
//! silent consumers left pending (`XAUTOCLAIM`, following the cursor to its end), parks entries
//! that keep taking their consumer down, forgets consumers that are gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionLike;

use super::consumer::{ACK_BATCH, CLAIM_BATCH, Consumer, lock};
use super::value::{Entry, array, entries, string};
use crate::error::Result;
use crate::transport::sleep_or_stop;

impl<C> Consumer<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// `XAUTOCLAIM` of stream `sid` to this node, from `cursor`, for entries idle `claim_idle`.
    pub(super) fn autoclaim(&self, sid: usize, cursor: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&self.shared.keys.streams[sid])
            .arg(&self.group)
            .arg(&self.shared.cfg.node_id)
            .arg(self.shared.cfg.claim_idle.as_millis() as u64)
            .arg(cursor)
            .arg("COUNT")
            .arg(CLAIM_BATCH);
        cmd
    }

    /// Keeps this node's in-flight entries fresh every `claim_idle / 4`, on its own timer so a
    /// long sweep cannot delay it.
    pub(super) async fn keeper(self: Arc<Self>) {
        let mut stop = self.stop.clone();
        let every = (self.shared.cfg.claim_idle / 4).max(Duration::from_millis(25));
        loop {
            if sleep_or_stop(&mut stop, every).await {
                return;
            }
            if let Err(e) = self.keep_alive().await {
                tracing::warn!(group = %self.group, error = %e, "keep-alive of in-flight entries failed");
            }
        }
    }

    /// Takes over entries idle too long, at start-up and every `claim_idle / 2`.
    pub(super) async fn sweeper(self: Arc<Self>) {
        let mut stop = self.stop.clone();
        let every = (self.shared.cfg.claim_idle / 2).max(Duration::from_millis(50));
        loop {
            // The main stream, and the partitions held: their earlier owners' leftovers.
            for sid in self.read_set() {
                if let Err(e) = self.sweep(sid).await {
                    tracing::warn!(group = %self.group, error = %e, "recovery sweep failed");
                }
            }
            if let Err(e) = self.forget_gone_consumers().await {
                tracing::warn!(group = %self.group, error = %e, "cleaning up gone consumers failed");
            }
            if sleep_or_stop(&mut stop, every).await {
                return;
            }
        }
    }

    async fn keep_alive(&self) -> Result<()> {
        let mut by_stream: HashMap<usize, Vec<String>> = HashMap::new();
        for (sid, id) in lock(&self.inflight).iter() {
            by_stream.entry(*sid).or_default().push(id.clone());
        }
        for (sid, ids) in by_stream {
            for chunk in ids.chunks(ACK_BATCH) {
                let mut cmd = redis::cmd("XCLAIM");
                cmd.arg(&self.shared.keys.streams[sid])
                    .arg(&self.group)
                    .arg(&self.shared.cfg.node_id)
                    .arg(0)
                    .arg(chunk)
                    .arg("JUSTID");
                let _: Value = self.shared.query(&cmd).await?;
            }
        }
        Ok(())
    }

    /// Dispatches entries taken over from another consumer (or re-read after a take-over),
    /// parking those handed out more than `max_deliveries` times without an outcome.
    pub(super) async fn dispatch_checked(
        self: &Arc<Self>,
        sid: usize,
        claimed: Vec<Entry>,
    ) -> Result<()> {
        let handed = self.deliveries(sid, &claimed).await?;
        let max = u64::from(self.spec.delivery.max_deliveries);
        for e in claimed {
            if lock(&self.acked).1.contains(&(sid, e.id.clone())) {
                continue;
            }
            let n = handed.get(&e.id).copied().unwrap_or(0);
            // Handed out this often without an outcome: the entry takes its consumer down
            // (a crash, an OOM kill, a stall) before the handler can fail. Park it.
            let mine = lock(&self.inflight).contains(&(sid, e.id.clone()));
            if n > max && !mine {
                let why = format!(
                    "handed to a consumer {n} times without an outcome (the consumer died or stalled each time)"
                );
                tracing::error!(group = %self.group, id = %e.id, "{why}");
                self.park_entry(sid, &e, why).await?;
                continue;
            }
            self.dispatch(sid, e).await;
        }
        Ok(())
    }

    /// Deletes consumers of the group that hold nothing and were silent for `4 × claim_idle`
    /// (processes that ended under a random node id). A live consumer touches Redis at least
    /// every second, and one deleted anyway is recreated by its next read with nothing lost.
    async fn forget_gone_consumers(&self) -> Result<()> {
        let v: Value = self
            .shared
            .query(
                redis::cmd("XINFO")
                    .arg("CONSUMERS")
                    .arg(&self.shared.keys.stream)
                    .arg(&self.group),
            )
            .await?;
        let gone_after = (self.shared.cfg.claim_idle * 4).as_millis() as i64;
        for c in array(v) {
            let (mut name, mut pending, mut idle) = (None, -1i64, 0i64);
            let mut f = array(c).into_iter();
            while let (Some(k), Some(v)) = (f.next(), f.next()) {
                match (string(k).as_deref(), v) {
                    (Some("name"), v) => name = string(v),
                    (Some("pending"), Value::Int(n)) => pending = n,
                    (Some("idle"), Value::Int(n)) => idle = n,
                    _ => {}
                }
            }
            let Some(name) = name else { continue };
            if name != self.shared.cfg.node_id && pending == 0 && idle > gone_after {
                let _: i64 = self
                    .shared
                    .query(
                        redis::cmd("XGROUP")
                            .arg("DELCONSUMER")
                            .arg(&self.shared.keys.stream)
                            .arg(&self.group)
                            .arg(&name),
                    )
                    .await?;
                tracing::info!(group = %self.group, consumer = %name, "forgot a gone consumer");
            }
        }
        Ok(())
    }

    /// How often each of `claimed` (now pending with this consumer) was handed to a consumer.
    pub(super) async fn deliveries(
        &self,
        sid: usize,
        claimed: &[Entry],
    ) -> Result<HashMap<String, u64>> {
        let (Some(first), Some(last)) = (claimed.first(), claimed.last()) else {
            return Ok(HashMap::new());
        };
        let bound = claimed.len() + lock(&self.inflight).len();
        let v: Value = self
            .shared
            .query(
                redis::cmd("XPENDING")
                    .arg(&self.shared.keys.streams[sid])
                    .arg(&self.group)
                    .arg(&first.id)
                    .arg(&last.id)
                    .arg(bound)
                    .arg(&self.shared.cfg.node_id),
            )
            .await?;
        Ok(array(v)
            .into_iter()
            .filter_map(|row| {
                let mut f = array(row).into_iter();
                let id = string(f.next()?)?;
                let n = match f.nth(2)? {
                    Value::Int(n) => u64::try_from(n).ok()?,
                    _ => return None,
                };
                Some((id, n))
            })
            .collect())
    }

    /// Starts noting acknowledgements for a pass that reads entries this node may hold.
    pub(super) fn watch_acks(&self) {
        lock(&self.acked).0 += 1;
    }

    /// Ends a pass started with [`Self::watch_acks`].
    pub(super) fn unwatch_acks(&self) {
        let mut a = lock(&self.acked);
        a.0 = a.0.saturating_sub(1);
        if a.0 == 0 {
            a.1.clear();
        }
    }

    /// One full `XAUTOCLAIM` pass over stream `sid`: follows the cursor until it wraps to
    /// `0-0`.
    async fn sweep(self: &Arc<Self>, sid: usize) -> Result<()> {
        self.watch_acks();
        let r = self.sweep_watched(sid).await;
        self.unwatch_acks();
        r
    }

    async fn sweep_watched(self: &Arc<Self>, sid: usize) -> Result<()> {
        let mut cursor = "0-0".to_owned();
        loop {
            if self.is_stopped() {
                return Ok(());
            }
            let v: Value = self.shared.query(&self.autoclaim(sid, &cursor)).await?;
            let mut parts = array(v).into_iter();
            let next = parts
                .next()
                .and_then(string)
                .unwrap_or_else(|| "0-0".to_owned());
            let claimed = parts.next().map(entries).unwrap_or_default();
            let deleted = parts.next().map(array).map_or(0, |d| d.len());
            if deleted > 0 {
                tracing::error!(group = %self.group, deleted, "pending entries were trimmed before they were handled");
            }
            if !claimed.is_empty() {
                tracing::info!(group = %self.group, n = claimed.len(), "took over entries left by a silent consumer");
            }
            self.dispatch_checked(sid, claimed).await?;
            if next == "0-0" {
                return Ok(());
            }
            cursor = next;
        }
    }
}

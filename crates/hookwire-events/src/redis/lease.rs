//! Per-key order across nodes: which node handles which partition of a group.
//!
//! Keyed events live in one stream per partition. Each partition of each group is held by one
//! node at a time through a lease in Redis (`<node> <fencing token>`, with a TTL, renewed every
//! third of it by one script call that also heartbeats the node and takes free partitions up to
//! its fair share, `ceil(partitions / live nodes)`). A node reads only the partitions it holds.
//!
//! Hand-over never runs two events of a key at once:
//! - **Taking a partition** (joining): first every entry of it still pending with another
//!   consumer is taken over, which waits until those entries were idle for `claim_idle` (their
//!   former owner keeps the ones it still runs fresh, so this waits for it to finish); then the
//!   node re-reads its own pending entries of the partition in order, and only then reads new
//!   ones.
//! - **Giving a partition up** (over its share, or the lease was lost): no new handler call of
//!   the partition starts, waiting retries and queued entries stay pending, reads that might
//!   still return its entries finish, running calls finish and are acknowledged; then one script
//!   deletes the lease and marks the node's pending entries of the partition idle, so the next
//!   owner takes them at once.
//! - A node that cannot renew stops starting handler calls and reads of the partition when its
//!   lease would expire by its own clock (a tenth of the TTL early), and gives it up. The next
//!   owner waits out a blocking read the former one may still have open (`BLOCK`) before it
//!   takes the partition over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;
use redis::aio::ConnectionLike;
use tokio::sync::watch;

use super::consumer::{Consumer, lock};
use super::keys::partition_of;
use super::value::{array, read_streams, string};
use super::{BLOCK, scripts};
use crate::error::{Error, Result};
use crate::transport::{sleep_or_stop, stopped};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Taking over what earlier owners left; not read yet.
    Joining,
    /// Read and handled here.
    Active,
    /// Being given up: nothing new starts.
    Leaving,
}

/// One partition this node holds (or is giving up) in one group.
#[derive(Debug)]
pub(crate) struct Part {
    token: u64,
    /// When the lease runs out by this node's clock.
    until: Instant,
    state: State,
    /// Set when the partition is given up: ends waits for retries.
    halt: watch::Sender<bool>,
}

impl Part {
    fn new(token: u64, until: Instant) -> Self {
        Self {
            token,
            until,
            state: State::Joining,
            halt: watch::Sender::new(false),
        }
    }

    /// Taken over completely and still leased: read it.
    pub(crate) fn is_active(&self) -> bool {
        self.state == State::Active && Instant::now() < self.until
    }

    /// A handler call of this partition may start.
    pub(crate) fn may_run(&self) -> bool {
        self.state != State::Leaving && Instant::now() < self.until
    }

    /// A receiver that turns true when the partition is given up.
    pub(crate) fn halt(&self) -> watch::Receiver<bool> {
        self.halt.subscribe()
    }
}

/// `[share, [renewed…], [partition, token, …]]`.
type Tick = (usize, Vec<u16>, Vec<u64>);

impl<C> Consumer<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn stream_of(p: u16) -> usize {
        1 + usize::from(p)
    }

    fn lease_value(&self, token: u64) -> String {
        format!("{} {token}", self.shared.cfg.node_id)
    }

    /// Renews, takes and gives up partitions every `lease_ttl / 3` until the consumer stops.
    pub(super) async fn leases(self: Arc<Self>) {
        let ttl = self.shared.cfg.lease_ttl;
        let every = ttl / 3;
        let first = partition_of(
            self.shared.cfg.node_id.as_bytes(),
            self.shared.keys.partitions,
        );
        let mut stop = self.stop.clone();
        loop {
            let t0 = Instant::now();
            match self.lease_tick(first).await {
                Ok(tick) => self.apply(tick, t0 + ttl - ttl / 10),
                Err(e) => {
                    tracing::warn!(group = %self.group, error = %e, "partition lease renewal failed");
                    let expired: Vec<u16> = lock(&self.parts)
                        .iter()
                        .filter(|(_, p)| p.state != State::Leaving && p.until <= Instant::now())
                        .map(|(&p, _)| p)
                        .collect();
                    for p in expired {
                        self.leave(p);
                    }
                }
            }
            if sleep_or_stop(&mut stop, every).await {
                for p in lock(&self.parts).values() {
                    p.halt.send_replace(true);
                }
                return;
            }
        }
    }

    async fn lease_tick(&self, first: u16) -> Result<Tick> {
        let k = &self.shared.keys;
        let (mut held, mut leaving) = (String::new(), String::new());
        for (p, part) in lock(&self.parts).iter() {
            let list = if part.state == State::Leaving {
                &mut leaving
            } else {
                &mut held
            };
            list.push_str(&format!("{p} {},", part.token));
        }
        let mut inv = scripts::LEASE.prepare_invoke();
        inv.key(k.members(&self.group)).key(k.fences(&self.group));
        for p in 0..k.partitions {
            inv.key(k.lease(&self.group, p));
        }
        inv.arg(&self.shared.cfg.node_id)
            .arg(hookwire_core::time::unix_millis())
            .arg(self.shared.cfg.lease_ttl.as_millis() as u64)
            .arg(held)
            .arg(leaving)
            .arg(first);
        let mut c = self.shared.conn.clone();
        inv.invoke_async(&mut c).await.map_err(Error::transport)
    }

    /// Acts on one tick's answer: extends what was renewed, gives up what was lost or is over
    /// the fair share, starts taking over what was acquired.
    fn apply(self: &Arc<Self>, (share, renewed, acquired): Tick, until: Instant) {
        let mut give_up = Vec::new();
        let mut joined = Vec::new();
        {
            let mut parts = lock(&self.parts);
            let now = Instant::now();
            for (p, part) in parts.iter_mut() {
                // Ran out by this node's clock before the renewal came back: its lanes may have
                // dropped queued entries, so it must be handed over (and taken again in order),
                // never silently resumed.
                if renewed.contains(p) && part.until > now {
                    part.until = until;
                } else if part.state != State::Leaving {
                    tracing::warn!(group = %self.group, partition = p, "partition lease lost");
                    give_up.push(*p);
                }
            }
            for pair in acquired.chunks(2) {
                if let [p, token] = *pair {
                    let Ok(p) = u16::try_from(p) else { continue };
                    parts.insert(p, Part::new(token, until));
                    joined.push(p);
                }
            }
            let mut kept: Vec<u16> = parts
                .iter()
                .filter(|(p, x)| x.state != State::Leaving && !give_up.contains(p))
                .map(|(&p, _)| p)
                .collect();
            // Over the share (a node joined): give up the highest partitions.
            kept.sort_unstable();
            while kept.len() > share.max(1) {
                if let Some(p) = kept.pop() {
                    give_up.push(p);
                }
            }
        }
        for p in give_up {
            self.leave(p);
        }
        for p in joined {
            tokio::spawn(self.clone().join(p));
        }
    }

    /// Takes partition `p` over, then lets the read loop read it.
    async fn join(self: Arc<Self>, p: u16) {
        let sid = Self::stream_of(p);
        let mut stop = self.stop.clone();
        let wait = (self.shared.cfg.claim_idle / 4).max(Duration::from_millis(50));
        let joining = |me: &Self| {
            lock(&me.parts)
                .get(&p)
                .is_some_and(|x| x.state == State::Joining)
        };
        // A former owner whose lease ran out may still have a blocking read of this partition
        // open in Redis (begun before its lease ran out by its clock); such a read ends within
        // `BLOCK`. Entries it gets are pending with that owner, and taken over below.
        if sleep_or_stop(&mut stop, BLOCK + Duration::from_millis(200)).await {
            return;
        }
        loop {
            if !joining(&self) || self.is_stopped() {
                return;
            }
            match self.take_over(sid).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(group = %self.group, partition = p, error = %e, "taking over a partition failed");
                }
            }
            if sleep_or_stop(&mut stop, wait).await {
                return;
            }
        }
        self.watch_acks();
        let reread = self.reread(sid).await;
        self.unwatch_acks();
        if let Err(e) = reread {
            // The read loop's own pending re-read is not run for partitions: try again later.
            tracing::warn!(group = %self.group, partition = p, error = %e, "re-reading a partition failed");
            self.leave(p);
            return;
        }
        if let Some(x) = lock(&self.parts).get_mut(&p)
            && x.state == State::Joining
        {
            x.state = State::Active;
        }
    }

    /// Claims what other consumers left pending in stream `sid` once it was idle for
    /// `claim_idle`; true when nothing is pending with another consumer any more.
    async fn take_over(&self, sid: usize) -> Result<bool> {
        let stream = &self.shared.keys.streams[sid];
        let me = &self.shared.cfg.node_id;
        let others = |v: Value| {
            let mut parts = array(v).into_iter().skip(3);
            parts.next().map_or(0, |c| {
                array(c)
                    .into_iter()
                    .filter_map(|row| {
                        let mut f = array(row).into_iter();
                        let name = string(f.next()?)?;
                        let n: u64 = string(f.next()?)?.parse().ok()?;
                        (name != *me).then_some(n)
                    })
                    .sum::<u64>()
            })
        };
        let summary = || redis::cmd("XPENDING").arg(stream).arg(&self.group).clone();
        if others(self.shared.query(&summary()).await?) == 0 {
            return Ok(true);
        }
        let mut cursor = "0-0".to_owned();
        loop {
            let v: Value = self
                .shared
                .query(self.autoclaim(sid, &cursor).arg("JUSTID"))
                .await?;
            cursor = array(v)
                .into_iter()
                .next()
                .and_then(string)
                .unwrap_or_else(|| "0-0".to_owned());
            if cursor == "0-0" {
                break;
            }
        }
        Ok(others(self.shared.query(&summary()).await?) == 0)
    }

    /// Dispatches this node's pending entries of stream `sid`, oldest first.
    async fn reread(self: &Arc<Self>, sid: usize) -> Result<()> {
        let mut cursor = "0".to_owned();
        loop {
            if self.is_stopped() {
                return Ok(());
            }
            let v: Value = self
                .shared
                .query(
                    redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg(&self.group)
                        .arg(&self.shared.cfg.node_id)
                        .arg("COUNT")
                        .arg(self.shared.cfg.read_batch)
                        .arg("STREAMS")
                        .arg(&self.shared.keys.streams[sid])
                        .arg(&cursor),
                )
                .await?;
            let batch: Vec<_> = read_streams(v).into_iter().flat_map(|(_, es)| es).collect();
            let Some(last) = batch.last() else {
                return Ok(());
            };
            cursor.clone_from(&last.id);
            self.dispatch_checked(sid, batch).await?;
        }
    }

    /// Gives partition `p` up in the background: nothing new starts, then once nothing of it
    /// runs the lease is released and its pending entries are handed over.
    fn leave(self: &Arc<Self>, p: u16) {
        {
            let mut parts = lock(&self.parts);
            let Some(x) = parts.get_mut(&p) else { return };
            x.state = State::Leaving;
            x.halt.send_replace(true);
        }
        let me = self.clone();
        tokio::spawn(async move {
            let sid = Self::stream_of(p);
            let mut stop = me.stop.clone();
            // Two more reads: one that began before the partition left the read set may still
            // deliver its entries; they stay pending (not dispatched) and are handed over.
            let mut reads = me.reads.subscribe();
            let seen = *reads.borrow_and_update();
            tokio::select! {
                _ = reads.wait_for(|n| *n >= seen + 2) => {}
                () = stopped(&mut stop) => return,
            }
            loop {
                let busy = lock(&me.inflight).iter().any(|(s, _)| *s == sid);
                if !busy {
                    break;
                }
                if sleep_or_stop(&mut stop, Duration::from_millis(10)).await {
                    return;
                }
            }
            me.release(p).await;
        });
    }

    /// Deletes the lease of `p` (if still ours) and hands its pending entries over.
    async fn release(&self, p: u16) {
        let Some(token) = lock(&self.parts).get(&p).map(|x| x.token) else {
            return;
        };
        let k = &self.shared.keys;
        let idle = (self.shared.cfg.claim_idle * 2).as_millis() as u64;
        let mut inv = scripts::RELEASE.prepare_invoke();
        inv.key(k.lease(&self.group, p))
            .key(&k.streams[Self::stream_of(p)])
            .arg(self.lease_value(token))
            .arg(&self.group)
            .arg(&self.shared.cfg.node_id)
            .arg(idle);
        let mut c = self.shared.conn.clone();
        match inv.invoke_async::<u64>(&mut c).await {
            Ok(n) => {
                tracing::debug!(group = %self.group, partition = p, handed_over = n, "partition released");
            }
            Err(e) => {
                // The lease runs out by itself; the entries after `claim_idle`.
                tracing::warn!(group = %self.group, partition = p, error = %e, "releasing a partition failed");
            }
        }
        let mut parts = lock(&self.parts);
        if parts.get(&p).is_some_and(|x| x.token == token) {
            parts.remove(&p);
        }
    }

    /// At the end of the subscription (nothing of it runs any more): releases every
    /// partition and leaves the group's live nodes, so the others take over at once.
    pub(super) async fn release_all(&self) {
        if self.shared.keys.partitions == 0 {
            return;
        }
        let held: Vec<u16> = lock(&self.parts).keys().copied().collect();
        for p in held {
            self.release(p).await;
        }
        let _: Result<i64> = self
            .shared
            .query(
                redis::cmd("ZREM")
                    .arg(self.shared.keys.members(&self.group))
                    .arg(&self.shared.cfg.node_id),
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaving_or_expired_partition_runs_nothing() {
        let mut p = Part::new(1, Instant::now() + Duration::from_secs(5));
        assert!(p.may_run() && !p.is_active());
        p.state = State::Active;
        assert!(p.may_run() && p.is_active());
        p.state = State::Leaving;
        assert!(!p.may_run() && !p.is_active());
        let expired = Part::new(1, Instant::now());
        assert!(!expired.may_run());
    }
}

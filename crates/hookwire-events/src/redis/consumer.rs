//! One group subscription on one node: reads its own pending entries first, then new ones —
//! from the main stream and from the streams of the partitions it holds (see `lease`); runs
//! each partition key's events in order in a lane of its own (failures, parking and
//! acknowledgements: `finish`; sweeps of what dead consumers left behind: `recovery`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hookwire_core::{Backoff, Event};
use redis::Value;
use redis::aio::ConnectionLike;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::finish::{Ack, Pack};
use super::keys::MAIN;
use super::lease::Part;
use super::value::{Entry, EntryEvent, read_streams};
use super::{BLOCK, POLL, Shared};
use crate::error::Result;
use crate::runner::Outcome;
use crate::transport::{Control, Start, SubSpec, sleep_or_stop, stopped};

/// Entries claimed per `XAUTOCLAIM` call.
pub(super) const CLAIM_BATCH: usize = 100;
/// Ids per acknowledgement round trip and per keep-alive `XCLAIM`.
pub(super) const ACK_BATCH: usize = 1000;

/// An entry of one of the bus's streams: (stream index, entry id). Ids repeat across streams.
pub(super) type Ref = (usize, String);

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Back-off between reconnect attempts.
pub(super) fn reconnect_backoff() -> Backoff {
    Backoff::exponential(Duration::from_millis(100)).with_max(Duration::from_secs(5))
}

struct Item {
    pack: Arc<Pack>,
    part: usize,
    event: Event,
    failed: bool,
    permit: OwnedSemaphorePermit,
}

pub(super) struct Consumer<C> {
    pub(super) shared: Arc<Shared<C>>,
    pub(super) group: String,
    start: Start,
    pub(super) spec: SubSpec,
    /// Entries dispatched to a lane and not yet acknowledged or parked.
    pub(super) inflight: Mutex<HashSet<Ref>>,
    /// Waiting entries per partition key; a key is present while its lane runs.
    lanes: Mutex<HashMap<String, VecDeque<Item>>>,
    lane_tasks: Mutex<JoinSet<()>>,
    /// Handler calls running at once.
    slots: Arc<Semaphore>,
    /// Entries held in memory at once.
    budget: Arc<Semaphore>,
    /// One dispatch at a time, in the order they began: an entry's events join their lanes
    /// before a later entry's do (the read loop and a sweep may both dispatch, and a dispatch
    /// waits for the budget between events).
    dispatching: tokio::sync::Mutex<()>,
    pub(super) acks: Mutex<Option<mpsc::UnboundedSender<Ack>>>,
    pub(super) stop: watch::Receiver<bool>,
    /// The partitions this node holds in this group.
    pub(super) parts: Mutex<HashMap<u16, Part>>,
    /// Entries acknowledged while a sweep or re-read runs (count of those running, ids): an
    /// entry such a pass returned may have been finished and acknowledged since, and must not
    /// run again.
    pub(super) acked: Mutex<(usize, HashSet<Ref>)>,
    /// Reads completed by the read loop: a partition given up is out of every read that
    /// started after it was dropped from the read set once this has moved on by two.
    pub(super) reads: watch::Sender<u64>,
}

async fn create_group<C>(shared: &Shared<C>, group: &str, start: Start) -> Result<()>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let from = match start {
        Start::End => "$",
        Start::Beginning => "0",
    };
    for stream in &shared.keys.streams {
        let r: Result<()> = shared
            .query(
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(stream)
                    .arg(group)
                    .arg(from)
                    .arg("MKSTREAM"),
            )
            .await;
        match r {
            Err(e) if e.to_string().contains("BUSYGROUP") => {}
            r => r?,
        }
    }
    Ok(())
}

/// Creates the group if needed (so a dead Redis fails `subscribe`) and starts the consumer.
pub(crate) async fn start<C>(
    shared: Arc<Shared<C>>,
    group: String,
    start: Start,
    spec: SubSpec,
) -> Result<Arc<Control>>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    create_group(&shared, &group, start).await?;
    let (control, stop) = Control::new();
    let (tx, rx) = mpsc::unbounded_channel();
    let c = Arc::new(Consumer {
        slots: Arc::new(Semaphore::new(spec.delivery.concurrency)),
        budget: Arc::new(Semaphore::new(spec.delivery.max_in_flight)),
        dispatching: tokio::sync::Mutex::new(()),
        shared,
        group,
        start,
        spec,
        inflight: Mutex::new(HashSet::new()),
        lanes: Mutex::new(HashMap::new()),
        lane_tasks: Mutex::new(JoinSet::new()),
        acks: Mutex::new(Some(tx)),
        stop,
        parts: Mutex::new(HashMap::new()),
        acked: Mutex::new((0, HashSet::new())),
        reads: watch::Sender::new(0),
    });
    control.set_task(tokio::spawn(c.run(rx)));
    Ok(control)
}

impl<C> Consumer<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    pub(super) fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    async fn run(self: Arc<Self>, rx: mpsc::UnboundedReceiver<Ack>) {
        let acker = tokio::spawn(self.clone().acker(rx));
        let sweeper = tokio::spawn(self.clone().sweeper());
        let keeper = tokio::spawn(self.clone().keeper());
        let leases = (self.shared.keys.partitions > 0).then(|| tokio::spawn(self.clone().leases()));
        self.read_loop().await;
        let _ = sweeper.await;
        let _ = keeper.await;
        if let Some(l) = leases {
            let _ = l.await;
        }
        // Lanes see the stop: the handler calls running now finish, nothing new starts.
        let mut lanes = std::mem::take(&mut *lock(&self.lane_tasks));
        while lanes.join_next().await.is_some() {}
        lock(&self.acks).take();
        let _ = acker.await;
        // Nothing of ours runs any more: hand every partition over at once.
        self.release_all().await;
    }

    /// The streams to read now: the main stream and the partitions taken over completely.
    pub(super) fn read_set(&self) -> Vec<usize> {
        let mut set = vec![MAIN];
        set.extend(
            lock(&self.parts)
                .iter()
                .filter(|(_, p)| p.is_active())
                .map(|(&p, _)| 1 + usize::from(p)),
        );
        set.sort_unstable();
        set
    }

    async fn read_loop(self: &Arc<Self>) {
        let mut stop = self.stop.clone();
        let mut conn: Option<(C, bool)> = None;
        // A (re)started consumer first re-reads what is pending for it, per stream.
        let mut pending: HashMap<usize, String> = HashMap::from([(MAIN, "0".to_owned())]);
        let index: HashMap<&str, usize> = self
            .shared
            .keys
            .streams
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i))
            .collect();
        let mut failures = 0u32;
        // Events per entry seen by recent reads, in sixteenths (packs hold several).
        let mut per_entry = 16usize;
        loop {
            if self.is_stopped() {
                return;
            }
            let (c, blocking) = match &mut conn {
                Some(c) => c,
                None => match self.shared.reader().await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        tracing::warn!(group = %self.group, error = %e, "event reader cannot connect");
                        failures += 1;
                        if sleep_or_stop(&mut stop, reconnect_backoff().delay(failures - 1)).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            let set = self.read_set();
            pending.retain(|sid, _| set.contains(sid));
            // `COUNT` is per stream and in entries: together the streams return about the
            // free budget in events, packs counted at the size recent reads saw.
            let count =
                (self.budget.available_permits() * 16 / per_entry.max(16) / set.len().max(1))
                    .clamp(1, self.shared.cfg.read_batch);
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&self.group)
                .arg(&self.shared.cfg.node_id)
                .arg("COUNT")
                .arg(count);
            let reading: Vec<(usize, &str)> = if pending.is_empty() {
                if *blocking {
                    cmd.arg("BLOCK").arg(BLOCK.as_millis() as u64);
                }
                set.iter().map(|&sid| (sid, ">")).collect()
            } else {
                let mut p: Vec<(usize, &str)> =
                    pending.iter().map(|(&s, c)| (s, c.as_str())).collect();
                p.sort_unstable();
                p
            };
            cmd.arg("STREAMS");
            for (sid, _) in &reading {
                cmd.arg(&self.shared.keys.streams[*sid]);
            }
            for (_, cursor) in &reading {
                cmd.arg(*cursor);
            }
            let history = !pending.is_empty();
            // A reply can reach this loop long after Redis handed its entries out (a large
            // read, a busy runtime); a sweep may have taken such an entry over, run and
            // acknowledged it meanwhile. Acknowledgements are noted until the reply is held.
            self.watch_acks();
            let res: redis::RedisResult<Value> = tokio::select! {
                r = cmd.query_async(c) => r,
                () = stopped(&mut stop) => {
                    self.unwatch_acks();
                    return;
                }
            };
            match res {
                Err(e) => {
                    self.unwatch_acks();
                    tracing::warn!(group = %self.group, error = %e, "event read failed; resuming from pending entries");
                    if e.code() == Some("NOGROUP") {
                        // The stream or group vanished (a Redis restart without persistence,
                        // a manual delete): create it again where the subscription said.
                        if let Err(e) = create_group(&self.shared, &self.group, self.start).await {
                            tracing::warn!(group = %self.group, error = %e, "cannot recreate the group");
                        }
                    }
                    conn = None;
                    pending = set.iter().map(|&sid| (sid, "0".to_owned())).collect();
                    failures += 1;
                    if sleep_or_stop(&mut stop, reconnect_backoff().delay(failures - 1)).await {
                        return;
                    }
                }
                Ok(v) => {
                    failures = 0;
                    let mut got: HashMap<usize, Vec<Entry>> = read_streams(v)
                        .into_iter()
                        .filter_map(|(name, es)| Some((*index.get(name.as_str())?, es)))
                        .collect();
                    if history {
                        let streams: Vec<usize> = pending.keys().copied().collect();
                        for sid in streams {
                            match got.get(&sid).and_then(|es| es.last()) {
                                Some(last) => {
                                    pending.insert(sid, last.id.clone());
                                }
                                None => {
                                    pending.remove(&sid);
                                }
                            }
                        }
                    } else if got.values().all(Vec::is_empty)
                        && !*blocking
                        && sleep_or_stop(&mut stop, POLL).await
                    {
                        self.unwatch_acks();
                        return;
                    }
                    // Held at once, before any await: a sweep must not take over (and run) an
                    // entry this read returned while an earlier one waits for the budget.
                    let mut fresh = Vec::new();
                    let mut parts = 0usize;
                    {
                        let acked = lock(&self.acked);
                        let mut inflight = lock(&self.inflight);
                        for sid in set {
                            for e in got.remove(&sid).unwrap_or_default() {
                                let r = (sid, e.id.clone());
                                if !acked.1.contains(&r) && inflight.insert(r) {
                                    parts += e.event_count().max(1);
                                    fresh.push((sid, e));
                                }
                            }
                        }
                    }
                    self.unwatch_acks();
                    if !fresh.is_empty() {
                        // Events per entry in sixteenths, smoothed over reads.
                        let now = parts * 16 / fresh.len();
                        per_entry = (per_entry * 3 + now) / 4;
                    }
                    for (sid, e) in fresh {
                        self.dispatch_held(sid, e).await;
                    }
                    self.reads.send_modify(|n| *n += 1);
                }
            }
        }
    }

    /// Whether this group handles an event: not addressed to another group (a redriven dead
    /// letter), and of a type its pattern matches.
    pub(super) fn is_ours(&self, p: &EntryEvent<'_>) -> bool {
        p.group.is_none_or(|g| g == self.group.as_bytes())
            && p.name
                .and_then(|t| std::str::from_utf8(t).ok())
                .is_some_and(|n| self.spec.pattern.matches(n))
    }

    /// Whether entries of stream `sid` may start a handler call now: always on the main
    /// stream, on a partition's stream while this node holds it and is not giving it up.
    pub(super) fn may_run(&self, sid: usize) -> bool {
        if self.is_stopped() {
            return false;
        }
        if sid == MAIN {
            return true;
        }
        u16::try_from(sid - 1)
            .ok()
            .and_then(|p| lock(&self.parts).get(&p).map(Part::may_run))
            .unwrap_or(false)
    }

    pub(super) async fn dispatch(self: &Arc<Self>, sid: usize, e: Entry) {
        // Claimed here, before any await: the pending re-read and the recovery sweep may both
        // hand over the same entry, and only one of them may dispatch it.
        if lock(&self.inflight).insert((sid, e.id.clone())) {
            self.dispatch_held(sid, e).await;
        }
    }

    /// Dispatches an entry already marked in flight by the caller: each of its events joins
    /// its partition key's lane.
    async fn dispatch_held(self: &Arc<Self>, sid: usize, e: Entry) {
        let _turn = self.dispatching.lock().await;
        if e.fields.is_none() {
            tracing::error!(group = %self.group, id = %e.id, "a pending entry was trimmed before it was handled");
            return self.skip(sid, e.id);
        }
        let parts = e.parts();
        if parts.is_empty() {
            tracing::error!(group = %self.group, id = %e.id, "parking an entry without an event");
            if let Err(err) = self
                .park_entry(sid, &e, "entry has no event".to_owned())
                .await
            {
                tracing::warn!(error = %err, "cannot park an unreadable entry; it stays pending");
            }
            lock(&self.inflight).remove(&(sid, e.id));
            return;
        }
        let pack = Arc::new(Pack {
            sid,
            id: e.id.clone(),
            packed: parts.len() > 1,
            left: AtomicUsize::new(parts.len()),
            done: Mutex::new((Vec::new(), Vec::new())),
        });
        for (part, p) in parts.iter().enumerate() {
            if !self.is_ours(p) {
                self.finish(&pack, None, None);
                continue;
            }
            // A partition this node is giving up: the entry stays pending for the next owner.
            if !self.may_run(sid) {
                lock(&self.inflight).remove(&(sid, e.id));
                return;
            }
            let event: Event = match serde_json::from_slice(p.event) {
                Ok(ev) => ev,
                Err(err) => {
                    let why = format!("malformed event: {err}");
                    tracing::error!(group = %self.group, id = %e.id, part, why, "parking an unreadable event");
                    let r = pack.event_ref(part);
                    let at = pack.packed.then(|| (part, r.clone()));
                    match self.fail(sid, &e.id, at, vec![why], true).await {
                        Ok(_) if pack.packed => self.finish(&pack, Some(r), None),
                        Ok(_) => {
                            lock(&self.inflight).remove(&(sid, e.id));
                            return;
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot park an unreadable event; it stays pending");
                            lock(&self.inflight).remove(&(sid, e.id));
                            return;
                        }
                    }
                    continue;
                }
            };
            let mut stop = self.stop.clone();
            let permit = tokio::select! {
                p = self.budget.clone().acquire_owned() => p.ok(),
                () = stopped(&mut stop) => None,
            };
            let Some(permit) = permit else {
                lock(&self.inflight).remove(&(sid, e.id));
                return;
            };
            let key = match p.key {
                Some(k) => String::from_utf8_lossy(k).into_owned(),
                None => format!("\0{}#{part}", e.id),
            };
            let item = Item {
                pack: pack.clone(),
                part,
                event,
                failed: false,
                permit,
            };
            let mut lanes = lock(&self.lanes);
            if let Some(q) = lanes.get_mut(&key) {
                q.push_back(item);
                continue;
            }
            lanes.insert(key.clone(), VecDeque::new());
            drop(lanes);
            let me = self.clone();
            let mut tasks = lock(&self.lane_tasks);
            while tasks.try_join_next().is_some() {}
            tasks.spawn(me.lane(key, item));
        }
    }

    /// Runs one partition key's entries in order until its queue is empty.
    async fn lane(self: Arc<Self>, key: String, first: Item) {
        let mut item = first;
        let sid = item.pack.sid;
        loop {
            if !self.process(item).await || !self.may_run(sid) {
                break;
            }
            let next = {
                let mut lanes = lock(&self.lanes);
                match lanes.get_mut(&key).and_then(VecDeque::pop_front) {
                    Some(n) => n,
                    None => {
                        lanes.remove(&key);
                        return;
                    }
                }
            };
            item = next;
        }
        // Stopped, or the partition is being given up: what is still queued stays pending in
        // Redis for the next reader.
        let rest = lock(&self.lanes).remove(&key).unwrap_or_default();
        let mut inflight = lock(&self.inflight);
        for it in rest {
            inflight.remove(&(it.pack.sid, it.pack.id.clone()));
        }
    }

    /// Delivers one event until it is finished or parked (true), or the consumer stops or
    /// gives up the event's partition first (false; its entry stays pending).
    async fn process(&self, mut item: Item) -> bool {
        let sid = item.pack.sid;
        let mut halt = self.halt(sid);
        // The counters' reference is built only once the event has failed.
        let event_ref = |item: &Item| item.pack.event_ref(item.part);
        loop {
            let outcome = {
                let _slot = self.slots.acquire().await;
                // Checked after the wait for a slot: the lease may have gone meanwhile.
                if !self.may_run(sid) {
                    lock(&self.inflight).remove(&(sid, item.pack.id.clone()));
                    return false;
                }
                self.spec.runner.run(item.event.clone()).await
            };
            let (chain, park) = match outcome {
                Outcome::Done => {
                    let clear = item.failed.then(|| event_ref(&item));
                    self.finish(&item.pack, clear, Some(item.permit));
                    return true;
                }
                Outcome::Retry(c) => (c, false),
                Outcome::Dead(c) => (c, true),
            };
            let at = item.pack.packed.then(|| (item.part, event_ref(&item)));
            let delay = match self.fail(sid, &item.pack.id, at, chain, park).await {
                Ok((true, n)) => {
                    tracing::warn!(group = %self.group, id = %item.pack.id, event.id = %item.event.id, attempts = n, "event moved to the dead letters");
                    if item.pack.packed {
                        self.finish(&item.pack, Some(event_ref(&item)), Some(item.permit));
                    } else {
                        lock(&self.inflight).remove(&(sid, item.pack.id.clone()));
                    }
                    return true;
                }
                Ok((false, n)) => {
                    item.failed = true;
                    self.spec.delivery.backoff.delay(n.saturating_sub(1))
                }
                Err(e) => {
                    tracing::warn!(group = %self.group, id = %item.pack.id, error = %e, "cannot record a failed delivery; retrying");
                    self.spec.delivery.backoff.delay(0)
                }
            };
            // The handler slot is free while the event waits; later events of this key wait
            // behind it, other keys keep flowing.
            if sleep_or_stop(&mut halt, delay).await || !self.may_run(sid) {
                lock(&self.inflight).remove(&(sid, item.pack.id.clone()));
                return false;
            }
        }
    }

    /// What ends a wait for a retry: the consumer's stop, or giving up the partition.
    fn halt(&self, sid: usize) -> watch::Receiver<bool> {
        let part = u16::try_from(sid.wrapping_sub(1))
            .ok()
            .filter(|_| sid != MAIN)
            .and_then(|p| lock(&self.parts).get(&p).map(Part::halt));
        part.unwrap_or_else(|| self.stop.clone())
    }
}

//! One group subscription on one node: reads its own pending entries first, then new ones;
//! runs each partition key's events in order in a lane of its own; records failures, parks the
//! hopeless, acknowledges in batches; sweeps up entries dead consumers left behind.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hookwire_core::{Backoff, Event};
use redis::Value;
use redis::aio::ConnectionLike;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::value::{Entry, array, entries, read_reply, string};
use super::{BLOCK, POLL, Shared, scripts};
use crate::error::{Error, Result};
use crate::runner::Outcome;
use crate::transport::{Control, Start, SubSpec, sleep_or_stop, stopped};

/// Entries claimed per `XAUTOCLAIM` call.
const CLAIM_BATCH: usize = 100;
/// Ids per acknowledgement round trip and per keep-alive `XCLAIM`.
const ACK_BATCH: usize = 1000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Back-off between reconnect attempts.
fn reconnect_backoff() -> Backoff {
    Backoff::exponential(Duration::from_millis(100)).with_max(Duration::from_secs(5))
}

struct Item {
    id: String,
    event: Event,
    failed: bool,
    permit: OwnedSemaphorePermit,
}

struct Ack {
    id: String,
    failed: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

struct Consumer<C> {
    shared: Arc<Shared<C>>,
    group: String,
    start: Start,
    spec: SubSpec,
    /// Entries dispatched to a lane and not yet acknowledged or parked.
    inflight: Mutex<HashSet<String>>,
    /// Waiting entries per partition key; a key is present while its lane runs.
    lanes: Mutex<HashMap<String, VecDeque<Item>>>,
    lane_tasks: Mutex<JoinSet<()>>,
    /// Handler calls running at once.
    slots: Arc<Semaphore>,
    /// Entries held in memory at once.
    budget: Arc<Semaphore>,
    acks: Mutex<Option<mpsc::UnboundedSender<Ack>>>,
    stop: watch::Receiver<bool>,
}

async fn create_group<C>(shared: &Shared<C>, group: &str, start: Start) -> Result<()>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    let from = match start {
        Start::End => "$",
        Start::Beginning => "0",
    };
    let r: Result<()> = shared
        .query(
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&shared.keys.stream)
                .arg(group)
                .arg(from)
                .arg("MKSTREAM"),
        )
        .await;
    match r {
        Err(e) if e.to_string().contains("BUSYGROUP") => Ok(()),
        r => r,
    }
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
        shared,
        group,
        start,
        spec,
        inflight: Mutex::new(HashSet::new()),
        lanes: Mutex::new(HashMap::new()),
        lane_tasks: Mutex::new(JoinSet::new()),
        acks: Mutex::new(Some(tx)),
        stop,
    });
    control.set_task(tokio::spawn(c.run(rx)));
    Ok(control)
}

impl<C> Consumer<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    async fn run(self: Arc<Self>, rx: mpsc::UnboundedReceiver<Ack>) {
        let acker = tokio::spawn(self.clone().acker(rx));
        let sweeper = tokio::spawn(self.clone().sweeper());
        let keeper = tokio::spawn(self.clone().keeper());
        self.read_loop().await;
        let _ = sweeper.await;
        let _ = keeper.await;
        // Lanes see the stop: the handler calls running now finish, nothing new starts.
        let mut lanes = std::mem::take(&mut *lock(&self.lane_tasks));
        while lanes.join_next().await.is_some() {}
        lock(&self.acks).take();
        let _ = acker.await;
    }

    async fn read_loop(self: &Arc<Self>) {
        let mut stop = self.stop.clone();
        let mut conn: Option<(C, bool)> = None;
        // A (re)started consumer first re-reads what is pending for it.
        let mut pending: Option<String> = Some("0".to_owned());
        let mut failures = 0u32;
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
            let count = self
                .budget
                .available_permits()
                .clamp(1, self.shared.cfg.read_batch);
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&self.group)
                .arg(&self.shared.cfg.node_id)
                .arg("COUNT")
                .arg(count);
            if *blocking && pending.is_none() {
                cmd.arg("BLOCK").arg(BLOCK.as_millis() as u64);
            }
            cmd.arg("STREAMS")
                .arg(&self.shared.keys.stream)
                .arg(pending.as_deref().unwrap_or(">"));
            let res: redis::RedisResult<Value> = tokio::select! {
                r = cmd.query_async(c) => r,
                () = stopped(&mut stop) => return,
            };
            match res {
                Err(e) => {
                    tracing::warn!(group = %self.group, error = %e, "event read failed; resuming from pending entries");
                    if e.code() == Some("NOGROUP") {
                        // The stream or group vanished (a Redis restart without persistence,
                        // a manual delete): create it again where the subscription said.
                        if let Err(e) = create_group(&self.shared, &self.group, self.start).await {
                            tracing::warn!(group = %self.group, error = %e, "cannot recreate the group");
                        }
                    }
                    conn = None;
                    pending = Some("0".to_owned());
                    failures += 1;
                    if sleep_or_stop(&mut stop, reconnect_backoff().delay(failures - 1)).await {
                        return;
                    }
                }
                Ok(v) => {
                    failures = 0;
                    let batch = read_reply(v);
                    if pending.is_some() {
                        pending = batch.last().map(|e| e.id.clone());
                    } else if batch.is_empty() && !*blocking && sleep_or_stop(&mut stop, POLL).await
                    {
                        return;
                    }
                    for e in batch {
                        self.dispatch(e).await;
                    }
                }
            }
        }
    }

    /// Acknowledges an entry this group does not handle.
    fn skip(&self, id: String) {
        self.send_ack(Ack {
            id,
            failed: false,
            _permit: None,
        });
    }

    fn send_ack(&self, a: Ack) {
        if let Some(tx) = lock(&self.acks).as_ref() {
            let _ = tx.send(a);
        }
    }

    async fn dispatch(self: &Arc<Self>, e: Entry) {
        if e.fields.is_none() {
            tracing::error!(group = %self.group, id = %e.id, "a pending entry was trimmed before it was handled");
            return self.skip(e.id);
        }
        if e.field(b"g").is_some_and(|g| g != self.group.as_bytes()) {
            return self.skip(e.id);
        }
        let name = e.field(b"t").and_then(|t| std::str::from_utf8(t).ok());
        if !name.is_some_and(|n| self.spec.pattern.matches(n)) {
            return self.skip(e.id);
        }
        // Claimed here, before any await: the pending re-read and the recovery sweep may both
        // hand over the same entry, and only one of them may dispatch it.
        if !lock(&self.inflight).insert(e.id.clone()) {
            return;
        }
        let event: Event = match e.field(b"e").map(serde_json::from_slice) {
            Some(Ok(ev)) => ev,
            other => {
                let why = match other {
                    Some(Err(err)) => format!("malformed event: {err}"),
                    _ => "entry has no event".to_owned(),
                };
                tracing::error!(group = %self.group, id = %e.id, why, "parking an unreadable entry");
                if let Err(err) = self.fail(&e.id, vec![why], true).await {
                    tracing::warn!(error = %err, "cannot park an unreadable entry; it stays pending");
                }
                lock(&self.inflight).remove(&e.id);
                return;
            }
        };
        let mut stop = self.stop.clone();
        let permit = tokio::select! {
            p = self.budget.clone().acquire_owned() => p.ok(),
            () = stopped(&mut stop) => None,
        };
        let Some(permit) = permit else {
            lock(&self.inflight).remove(&e.id);
            return;
        };
        let key = match e.field(b"k") {
            Some(k) => String::from_utf8_lossy(k).into_owned(),
            None => format!("\0{}", e.id),
        };
        let item = Item {
            id: e.id,
            event,
            failed: false,
            permit,
        };
        let mut lanes = lock(&self.lanes);
        if let Some(q) = lanes.get_mut(&key) {
            q.push_back(item);
            return;
        }
        lanes.insert(key.clone(), VecDeque::new());
        drop(lanes);
        let me = self.clone();
        let mut tasks = lock(&self.lane_tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(me.lane(key, item));
    }

    /// Runs one partition key's entries in order until its queue is empty.
    async fn lane(self: Arc<Self>, key: String, first: Item) {
        let mut item = first;
        loop {
            if !self.process(item).await || self.is_stopped() {
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
        // Stopped: what is still queued stays pending in Redis for the next reader.
        let rest = lock(&self.lanes).remove(&key).unwrap_or_default();
        let mut inflight = lock(&self.inflight);
        for it in rest {
            inflight.remove(&it.id);
        }
    }

    /// Delivers one entry until it is acknowledged or parked (true), or the consumer stops
    /// while it waits for a retry (false; it stays pending).
    async fn process(&self, mut item: Item) -> bool {
        let mut stop = self.stop.clone();
        loop {
            let outcome = {
                let _slot = self.slots.acquire().await;
                self.spec.runner.run(item.event.clone()).await
            };
            let (chain, park) = match outcome {
                Outcome::Done => {
                    self.send_ack(Ack {
                        id: item.id,
                        failed: item.failed,
                        _permit: Some(item.permit),
                    });
                    return true;
                }
                Outcome::Retry(c) => (c, false),
                Outcome::Dead(c) => (c, true),
            };
            let delay = match self.fail(&item.id, chain, park).await {
                Ok((true, n)) => {
                    tracing::warn!(group = %self.group, id = %item.id, event.id = %item.event.id, attempts = n, "event moved to the dead letters");
                    lock(&self.inflight).remove(&item.id);
                    return true;
                }
                Ok((false, n)) => {
                    item.failed = true;
                    self.spec.delivery.backoff.delay(n.saturating_sub(1))
                }
                Err(e) => {
                    tracing::warn!(group = %self.group, id = %item.id, error = %e, "cannot record a failed delivery; retrying");
                    self.spec.delivery.backoff.delay(0)
                }
            };
            // The handler slot is free while the entry waits; later entries of this key wait
            // behind it, other keys keep flowing.
            if sleep_or_stop(&mut stop, delay).await {
                lock(&self.inflight).remove(&item.id);
                return false;
            }
        }
    }

    /// Records a failed delivery; returns (parked, failures so far).
    async fn fail(&self, id: &str, chain: Vec<String>, park: bool) -> Result<(bool, u32)> {
        let k = &self.shared.keys;
        let chain = serde_json::to_string(&chain).unwrap_or_else(|_| "[]".to_owned());
        let mut inv = scripts::FAIL.prepare_invoke();
        inv.key(&k.stream)
            .key(k.attempts(&self.group))
            .key(k.failures(&self.group))
            .key(&k.dl_events)
            .key(&k.dl_records)
            .key(&k.dl_index)
            .arg(&self.group)
            .arg(id)
            .arg(chain)
            .arg(hookwire_core::time::unix_millis())
            .arg(self.spec.delivery.max_deliveries)
            .arg(if park { "1" } else { "0" });
        let mut c = self.shared.conn.clone();
        let (parked, n): (u8, u32) = inv.invoke_async(&mut c).await.map_err(Error::transport)?;
        Ok((parked == 1, n))
    }

    /// Acknowledges in batches; a failed batch is retried until Redis answers or, once the
    /// consumer stops, given up (those entries stay pending and are delivered again).
    async fn acker(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Ack>) {
        let mut stop = self.stop.clone();
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < ACK_BATCH {
                match rx.try_recv() {
                    Ok(a) => batch.push(a),
                    Err(_) => break,
                }
            }
            let k = &self.shared.keys;
            let mut pipe = redis::pipe();
            let x = pipe.cmd("XACK").arg(&k.stream).arg(&self.group);
            for a in &batch {
                x.arg(&a.id);
            }
            x.ignore();
            let failed: Vec<&str> = batch
                .iter()
                .filter(|a| a.failed)
                .map(|a| a.id.as_str())
                .collect();
            if !failed.is_empty() {
                pipe.hdel(k.attempts(&self.group), &failed)
                    .ignore()
                    .hdel(k.failures(&self.group), &failed)
                    .ignore();
            }
            let mut tries = 0u32;
            loop {
                let mut c = self.shared.conn.clone();
                match pipe.query_async::<()>(&mut c).await {
                    Ok(()) => break,
                    Err(e) => {
                        tries += 1;
                        tracing::warn!(group = %self.group, error = %e, "acknowledgement failed");
                        if self.is_stopped() && tries >= 3 {
                            break;
                        }
                        let d = reconnect_backoff().delay(tries - 1);
                        if sleep_or_stop(&mut stop, d).await && tries >= 3 {
                            break;
                        }
                    }
                }
            }
            let mut inflight = lock(&self.inflight);
            for a in &batch {
                inflight.remove(&a.id);
            }
        }
    }

    /// Keeps this node's in-flight entries fresh every `claim_idle / 4`, on its own timer so a
    /// long sweep cannot delay it.
    async fn keeper(self: Arc<Self>) {
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
    async fn sweeper(self: Arc<Self>) {
        let mut stop = self.stop.clone();
        let every = (self.shared.cfg.claim_idle / 2).max(Duration::from_millis(50));
        loop {
            if let Err(e) = self.sweep().await {
                tracing::warn!(group = %self.group, error = %e, "recovery sweep failed");
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
        let ids: Vec<String> = lock(&self.inflight).iter().cloned().collect();
        for chunk in ids.chunks(ACK_BATCH) {
            let mut cmd = redis::cmd("XCLAIM");
            cmd.arg(&self.shared.keys.stream)
                .arg(&self.group)
                .arg(&self.shared.cfg.node_id)
                .arg(0)
                .arg(chunk)
                .arg("JUSTID");
            let _: Value = self.shared.query(&cmd).await?;
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
    async fn deliveries(&self, claimed: &[Entry]) -> Result<HashMap<String, u64>> {
        let (Some(first), Some(last)) = (claimed.first(), claimed.last()) else {
            return Ok(HashMap::new());
        };
        let bound = claimed.len() + lock(&self.inflight).len();
        let v: Value = self
            .shared
            .query(
                redis::cmd("XPENDING")
                    .arg(&self.shared.keys.stream)
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

    /// One full `XAUTOCLAIM` pass: follows the cursor until it wraps to `0-0`.
    async fn sweep(self: &Arc<Self>) -> Result<()> {
        let mut cursor = "0-0".to_owned();
        let idle = self.shared.cfg.claim_idle.as_millis() as u64;
        loop {
            if self.is_stopped() {
                return Ok(());
            }
            let v: Value = self
                .shared
                .query(
                    redis::cmd("XAUTOCLAIM")
                        .arg(&self.shared.keys.stream)
                        .arg(&self.group)
                        .arg(&self.shared.cfg.node_id)
                        .arg(idle)
                        .arg(&cursor)
                        .arg("COUNT")
                        .arg(CLAIM_BATCH),
                )
                .await?;
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
            let handed = self.deliveries(&claimed).await?;
            let max = u64::from(self.spec.delivery.max_deliveries);
            for e in claimed {
                let n = handed.get(&e.id).copied().unwrap_or(0);
                // Handed out this often without an outcome: the entry takes its consumer down
                // (a crash, an OOM kill, a stall) before the handler can fail. Park it.
                let mine = lock(&self.inflight).contains(&e.id);
                if n > max && !mine {
                    let why = format!(
                        "handed to a consumer {n} times without an outcome (the consumer died or stalled each time)"
                    );
                    tracing::error!(group = %self.group, id = %e.id, "{why}");
                    self.fail(&e.id, vec![why], true).await?;
                    continue;
                }
                self.dispatch(e).await;
            }
            if next == "0-0" {
                return Ok(());
            }
            cursor = next;
        }
    }
}

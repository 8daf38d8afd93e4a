//! [`SharedPresence`]: one presence roster across nodes, kept in Redis with TTL leases, so the
//! users of a node that crashed leave every roster within the lease time.
//!
//! Each node writes a lease per (stream, identity) it has connections for — a member
//! `<node>\n<identity>` of the sorted set `<prefix>:{<stream>}:presence`, scored with its expiry
//! time — and renews it every third of the TTL. Every renewal also drops expired members and
//! reads the stream's roster; the identities leased by other nodes become the tracker's remote
//! roster, and a changed roster is published to the stream's subscribers as a presence overlay.
//! A node that stops renewing (crash, network partition) simply lets its leases expire.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::Notify;

use crate::channel::{BroadcastChannel, BroadcastState};
use crate::presence::PresenceTracker;

/// Default lease time: a crashed node's users leave the roster within this long.
pub const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(15);

/// Shortest accepted lease (renewals run every third of it).
const MIN_TTL: Duration = Duration::from_millis(300);

/// Shares a node's [`PresenceTracker`] with the other nodes through Redis. Dropping it stops
/// renewing (the leases then expire, as after a crash); [`SharedPresence::leave`] removes this
/// node's leases at once, for a graceful shutdown.
///
/// ```no_run
/// use std::sync::Arc;
/// use hookwire_sse::{BroadcastChannel, PresenceTracker, redis::SharedPresence};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let channel: BroadcastChannel = BroadcastChannel::new();
/// let tracker = Arc::new(PresenceTracker::new());
/// let client = redis::Client::open("redis://127.0.0.1/")?;
/// let shared = SharedPresence::start(channel.clone(), tracker.clone(), "online", client, "hookwire:sse").await?;
/// // Mount `SseApp::new(channel, config).with_presence(tracker, "online")` as usual: the
/// // roster it publishes now covers every node.
/// # let _ = shared; Ok(()) }
/// ```
pub struct SharedPresence {
    inner: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SharedPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPresence")
            .field("node", &self.inner.node)
            .field("prefix", &self.inner.prefix)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

struct Shared {
    tracker: Arc<PresenceTracker>,
    conn: ConnectionManager,
    node: String,
    prefix: String,
    ttl: Duration,
    wake: Notify,
    /// Streams whose roster is read even without a local identity on them.
    watched: std::sync::Mutex<BTreeSet<String>>,
}

impl Drop for SharedPresence {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SharedPresence {
    /// Connects, writes this node's leases once, and starts renewing them every third of
    /// [`DEFAULT_PRESENCE_TTL`]; roster changes are published on `channel` as the overlay
    /// `{ key: [ids] }` (use the key given to `SseApp::with_presence`).
    pub async fn start<S: BroadcastState>(
        channel: BroadcastChannel<S>,
        tracker: Arc<PresenceTracker>,
        key: &str,
        client: redis::Client,
        prefix: &str,
    ) -> crate::Result<Self> {
        Self::start_with_ttl(channel, tracker, key, client, prefix, DEFAULT_PRESENCE_TTL).await
    }

    /// Like [`start`](Self::start) with lease time `ttl` (at least 300 ms; shorter is raised).
    pub async fn start_with_ttl<S: BroadcastState>(
        channel: BroadcastChannel<S>,
        tracker: Arc<PresenceTracker>,
        key: &str,
        client: redis::Client,
        prefix: &str,
        ttl: Duration,
    ) -> crate::Result<Self> {
        let conn = client
            .get_connection_manager()
            .await
            .map_err(crate::Error::redis)?;
        let inner = Arc::new(Shared {
            tracker,
            conn,
            node: format!("{:016x}", hookwire_core::id::random_u64()),
            prefix: prefix.to_owned(),
            ttl: ttl.max(MIN_TTL),
            wake: Notify::new(),
            watched: std::sync::Mutex::default(),
        });
        let mut written = HashMap::new();
        let first = inner.renew(&mut written).await?;
        announce(&channel, &inner.tracker, key, &first);
        let task = tokio::spawn(renew_loop(
            Arc::clone(&inner),
            channel,
            Arc::from(key),
            written,
        ));
        Ok(Self { inner, task })
    }

    /// This node's id in the leases.
    pub fn node_id(&self) -> &str {
        &self.inner.node
    }

    /// Also follows the roster of `stream` while no identity on this node is on it (for
    /// subscribers without identity); followed streams are read at every renewal.
    pub fn watch(&self, stream: &str) {
        crate::lock(&self.inner.watched).insert(stream.to_owned());
        self.nudge();
    }

    /// Renews now instead of at the next tick (after a join or leave, so other nodes see it
    /// sooner).
    pub fn nudge(&self) {
        self.inner.wake.notify_one();
    }

    /// Stops renewing and removes this node's leases from every roster at once.
    pub async fn leave(self) -> crate::Result<()> {
        self.task.abort();
        let mut conn = self.inner.conn.clone();
        let mut pipe = redis::pipe();
        for stream in self.inner.tracker.streams_here() {
            for id in self.inner.tracker.online_here(&stream) {
                pipe.zrem(self.inner.key(&stream), self.inner.member(&id))
                    .ignore();
            }
        }
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(crate::Error::redis)
    }
}

impl Shared {
    fn key(&self, stream: &str) -> String {
        format!("{}:{{{stream}}}:presence", self.prefix)
    }

    fn member(&self, id: &str) -> String {
        format!("{}\n{id}", self.node)
    }

    /// Writes this node's leases, withdraws the ones it no longer holds, and reads the roster
    /// of every stream it knows of; returns the streams whose roster changed.
    async fn renew(
        &self,
        written: &mut HashMap<String, Vec<String>>,
    ) -> crate::Result<Vec<String>> {
        let now = hookwire_core::time::unix_millis();
        let expiry = now + u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX / 2);
        let mut streams: BTreeSet<String> = self.tracker.streams_here().into_iter().collect();
        streams.extend(written.keys().cloned());
        streams.extend(self.tracker.remote_streams());
        streams.extend(crate::lock(&self.watched).iter().cloned());
        let mut pipe = redis::pipe();
        let mut next = HashMap::new();
        for stream in &streams {
            let key = self.key(stream);
            let here = self.tracker.online_here(stream);
            for id in &here {
                pipe.zadd(&key, self.member(id), expiry).ignore();
            }
            for gone in written
                .get(stream)
                .into_iter()
                .flatten()
                .filter(|id| !here.contains(id))
            {
                pipe.zrem(&key, self.member(gone)).ignore();
            }
            pipe.zrembyscore(&key, "-inf", now).ignore();
            // A key nobody renews disappears on its own.
            pipe.pexpire(
                &key,
                i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX) * 2,
            )
            .ignore();
            pipe.zrange(&key, 0, -1);
            if !here.is_empty() {
                next.insert(stream.clone(), here);
            }
        }
        if streams.is_empty() {
            written.clear();
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let rosters: Vec<Vec<String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(crate::Error::redis)?;
        *written = next;
        let mut changed = Vec::new();
        for (stream, members) in streams.into_iter().zip(rosters) {
            let others: BTreeSet<String> = members
                .iter()
                .filter_map(|m| m.split_once('\n'))
                .filter(|(node, _)| *node != self.node)
                .map(|(_, id)| id.to_owned())
                .collect();
            if self
                .tracker
                .set_remote(&stream, others.into_iter().collect())
            {
                changed.push(stream);
            }
        }
        Ok(changed)
    }
}

/// Publishes the roster of every changed stream as an overlay.
fn announce<S: BroadcastState>(
    channel: &BroadcastChannel<S>,
    tracker: &PresenceTracker,
    key: &str,
    changed: &[String],
) {
    for stream in changed {
        if let Err(e) = channel.overlay(stream, tracker.overlay_patch(stream, key)) {
            tracing::warn!(%stream, error = %e, "shared presence overlay refused");
        }
    }
}

async fn renew_loop<S: BroadcastState>(
    inner: Arc<Shared>,
    channel: BroadcastChannel<S>,
    key: Arc<str>,
    mut written: HashMap<String, Vec<String>>,
) {
    let every = inner.ttl / 3;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = inner.wake.notified() => {}
        }
        match inner.renew(&mut written).await {
            Ok(changed) => announce(&channel, &inner.tracker, &key, &changed),
            Err(e) => tracing::warn!(error = %e, "could not renew presence leases; retrying"),
        }
    }
}

//! The Redis transports: [`RedisStreams`] (durable, consumer groups) and [`RedisPubSub`]
//! (ephemeral broadcast).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use hookwire_core::{BoxFuture, Event};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Value};
use tokio::task::JoinHandle;

use crate::dead::{DeadLetter, Failure};
use crate::error::{Error, ErrorKind, Result};
use crate::transport::{Control, Driver, Encoded, Mode, SubSpec, Transport};

mod broadcast;
mod consumer;
mod finish;
mod keys;
mod lease;
mod pubsub;
mod recovery;
mod scripts;
mod value;

pub use pubsub::RedisPubSub;

use keys::Keys;

/// Makes a dedicated connection for a blocking reader.
type Factory<C> = Arc<dyn Fn() -> BoxFuture<'static, RedisResult<C>> + Send + Sync>;

/// Response timeout of command connections.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a blocking read waits for new entries before it checks for a stop.
pub(crate) const BLOCK: Duration = Duration::from_millis(1000);
/// Pause between polls when readers share the command connection and nothing was read.
pub(crate) const POLL: Duration = Duration::from_millis(20);

pub(crate) fn manager_config(response: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(response))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500))
}

/// Settings of a [`RedisStreams`] transport.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) node_id: String,
    pub(crate) claim_idle: Duration,
    pub(crate) read_batch: usize,
    pub(crate) retention: u64,
    pub(crate) max_len: u64,
    pub(crate) trim_interval: Duration,
    pub(crate) partitions: u16,
    pub(crate) lease_ttl: Duration,
}

/// The durable transport: one Redis stream per bus, a consumer group per [`Group`](crate::Group),
/// a per-node cursor per broadcast subscription.
///
/// - **Consumers** are named by the node id (stable across restarts: set it with
///   [`RedisStreams::node_id`]); a restarted node first re-reads its own pending entries.
/// - **Recovery**: entries another consumer left pending longer than
///   [`claim_idle`](RedisStreams::claim_idle) are taken over by a full `XAUTOCLAIM` sweep that
///   follows the cursor to the end, at start-up and every `claim_idle / 2`. Entries a node is
///   still working on (handler running or waiting for a retry) are kept fresh, so they are not
///   taken from it.
/// - **Packs**: `publish_many` writes the events of a call that go to one stream as packs of
///   up to 100 events (64 KiB) per entry; their events are delivered, retried and parked one
///   by one, and the entry is acknowledged with its last event. A recovered pack runs again
///   whole (at least once).
/// - **Retries** are counted per (group, event) in Redis; the event waits in its partition
///   key's lane with the handler slot free, and after `max_deliveries` failures one script
///   copies the whole event with its failures into the dead letters and acknowledges it (or,
///   in a pack, marks it parked).
/// - **Retention**: once the stream is longer than [`retention`](RedisStreams::retention),
///   entries every group has finished are trimmed; past [`max_len`](RedisStreams::max_len)
///   the stream is cut anyway and each group that lost unfinished entries gets an overrun
///   (counted, logged, [`Bus::overruns`](crate::Bus::overruns)).
///
/// Keys are `<prefix>{<stream>}:…` (one Cluster slot per bus). `C` is the command connection
/// ([`ConnectionManager`] by default, reconnecting by itself). With [`RedisStreams::connect`]
/// readers block on dedicated connections; over [`RedisStreams::new`] they share the given
/// connection and poll every 20 ms.
pub struct RedisStreams<C = ConnectionManager> {
    conn: C,
    readers: Option<Factory<C>>,
    prefix: String,
    stream: String,
    cfg: Config,
    invalid: Option<String>,
}

impl<C> fmt::Debug for RedisStreams<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStreams")
            .field("prefix", &self.prefix)
            .field("stream", &self.stream)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Names used inside keys and consumer names: `[A-Za-z0-9_.:-]`, 1–128 bytes.
fn check_name(what: &str, s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    (!ok).then(|| format!("{what} {s:?} must be 1-128 bytes of [A-Za-z0-9_.:-]"))
}

fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| check_name("", h).is_none());
    host.unwrap_or_else(|| hookwire_core::id::new_id("node"))
}

impl RedisStreams<ConnectionManager> {
    /// Connects to one Redis server (`redis://[:password@]host:port/[db]`). Commands share one
    /// reconnecting connection; each reader gets its own, so blocking reads never delay
    /// publishes.
    pub async fn connect(url: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(Error::transport)?;
        let conn = client
            .get_connection_manager_with_config(manager_config(RESPONSE_TIMEOUT))
            .await
            .map_err(Error::transport)?;
        let factory: Factory<ConnectionManager> = Arc::new(move || {
            let client = client.clone();
            Box::pin(async move {
                client
                    .get_connection_manager_with_config(manager_config(
                        BLOCK + Duration::from_secs(5),
                    ))
                    .await
            })
        });
        let mut s = Self::new(conn);
        s.readers = Some(factory);
        Ok(s)
    }
}

impl<C> RedisStreams<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A transport over `conn` (any async connection: a `ConnectionManager`, a cluster
    /// connection). Readers poll on it.
    pub fn new(conn: C) -> Self {
        Self {
            conn,
            readers: None,
            prefix: "hw:".to_owned(),
            stream: "events".to_owned(),
            cfg: Config {
                node_id: default_node_id(),
                claim_idle: Duration::from_secs(30),
                read_batch: 100,
                retention: 100_000,
                max_len: 1_000_000,
                trim_interval: Duration::from_secs(5),
                partitions: 16,
                lease_ttl: Duration::from_secs(10),
            },
            invalid: None,
        }
    }

    fn note(&mut self, problem: Option<String>) {
        if self.invalid.is_none() {
            self.invalid = problem;
        }
    }

    /// Key prefix (default `hw:`).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        if self.prefix.contains(['{', '}']) {
            self.note(Some("prefix must not contain braces".to_owned()));
        }
        self
    }

    /// The stream's name (default `events`); buses with one name share events.
    #[must_use]
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self.note(check_name("stream name", &self.stream));
        self
    }

    /// This node's consumer name (default `$HOSTNAME`, else random per process). Keep it
    /// stable across restarts so a node re-reads its own pending entries; never give two live
    /// nodes the same id (set it when several processes share a host).
    #[must_use]
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.cfg.node_id = id.into();
        self.note(check_name("node id", &self.cfg.node_id));
        self
    }

    /// How long an entry must sit unacknowledged with a silent consumer before another node
    /// takes it over (default 30 s, at least 100 ms).
    #[must_use]
    pub fn claim_idle(mut self, d: Duration) -> Self {
        self.cfg.claim_idle = d;
        if d < Duration::from_millis(100) {
            self.note(Some("claim_idle must be at least 100 ms".to_owned()));
        }
        self
    }

    /// Entries per read (default 100, 1..=10 000).
    #[must_use]
    pub fn read_batch(mut self, n: usize) -> Self {
        self.cfg.read_batch = n;
        if !(1..=10_000).contains(&n) {
            self.note(Some("read_batch must be 1..=10000".to_owned()));
        }
        self
    }

    /// Length (in entries: a pack is one) above which finished entries are trimmed (default
    /// 100 000, at least 1).
    #[must_use]
    pub fn retention(mut self, n: u64) -> Self {
        self.cfg.retention = n;
        if n == 0 {
            self.note(Some("retention must be at least 1".to_owned()));
        }
        self
    }

    /// Hard length cap (default 1 000 000; 0 for none): past it the stream is cut even if a
    /// group still needs the entries, and that group's overrun counter rises.
    #[must_use]
    pub fn max_len(mut self, n: u64) -> Self {
        self.cfg.max_len = n;
        self
    }

    /// Partitions of keyed events (default 16, 0..=1024; 0 puts every event in one stream and
    /// keeps per-key order within a node only). An event with a partition key goes to the
    /// stream of partition `fnv1a32(key) % partitions`; each partition of each group is handled
    /// by one node at a time. Every node of a bus must use the same number: changing it moves
    /// keys to other partitions while entries of the old layout may still be pending.
    #[must_use]
    pub fn partitions(mut self, n: u16) -> Self {
        self.cfg.partitions = n;
        if n > 1024 {
            self.note(Some("partitions must be 0..=1024".to_owned()));
        }
        self
    }

    /// How long a node's claim on a partition lasts without renewal (default 10 s, at least
    /// 300 ms; renewed every third of it). A dead node's partitions move to the others after
    /// at most `lease_ttl + claim_idle`.
    #[must_use]
    pub fn lease_ttl(mut self, d: Duration) -> Self {
        self.cfg.lease_ttl = d;
        if d < Duration::from_millis(300) {
            self.note(Some("lease_ttl must be at least 300 ms".to_owned()));
        }
        self
    }

    /// How often retention runs (default 5 s).
    #[must_use]
    pub fn trim_interval(mut self, d: Duration) -> Self {
        self.cfg.trim_interval = d;
        if d.is_zero() {
            self.note(Some("trim_interval must be positive".to_owned()));
        }
        self
    }
}

impl<C> From<RedisStreams<C>> for Transport
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn from(mut t: RedisStreams<C>) -> Self {
        if t.cfg.max_len != 0 && t.cfg.max_len < t.cfg.retention {
            t.note(Some("max_len must be 0 or at least retention".to_owned()));
        }
        let shared = Arc::new(Shared {
            conn: t.conn,
            readers: t.readers,
            keys: Keys::new(&t.prefix, &t.stream, t.cfg.partitions),
            cfg: t.cfg,
            maintenance: Mutex::new(None),
        });
        let mut tr = Transport::new(Arc::new(StreamsDriver { shared }));
        tr.invalid = t.invalid;
        tr
    }
}

/// What every task of one transport shares.
pub(crate) struct Shared<C> {
    pub(crate) conn: C,
    readers: Option<Factory<C>>,
    pub(crate) keys: Keys,
    pub(crate) cfg: Config,
    maintenance: Mutex<Option<JoinHandle<()>>>,
}

impl<C> fmt::Debug for Shared<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("keys", &self.keys)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl<C> Drop for Shared<C> {
    fn drop(&mut self) {
        if let Some(h) = self
            .maintenance
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            h.abort();
        }
    }
}

impl<C> Shared<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A connection for a reader and whether it may block.
    pub(crate) async fn reader(&self) -> RedisResult<(C, bool)> {
        match &self.readers {
            Some(f) => Ok((f().await?, true)),
            None => Ok((self.conn.clone(), false)),
        }
    }

    /// Runs `cmd` on the command connection.
    pub(crate) async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let mut c = self.conn.clone();
        cmd.query_async(&mut c).await.map_err(Error::transport)
    }

    /// Starts the retention task once (it holds only a weak reference, so it ends with the
    /// transport).
    fn ensure_maintenance(self: &Arc<Self>) {
        let mut m = self
            .maintenance
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if m.is_some() {
            return;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self.cfg.trim_interval;
        *m = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(me) = weak.upgrade() else { return };
                me.trim().await;
            }
        }));
    }

    /// One retention pass over every stream of the bus.
    pub(crate) async fn trim(&self) {
        for stream in &self.keys.streams {
            let mut inv = scripts::TRIM.prepare_invoke();
            inv.key(stream)
                .key(&self.keys.overruns)
                .arg(self.cfg.retention)
                .arg(self.cfg.max_len);
            let mut c = self.conn.clone();
            match inv.invoke_async::<Vec<String>>(&mut c).await {
                Ok(over) if !over.is_empty() => tracing::error!(
                    groups = ?over,
                    stream = %stream,
                    max_len = self.cfg.max_len,
                    "event stream cut at its hard cap: these groups lost entries they had not finished"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "event stream retention failed"),
            }
        }
    }
}

/// Events per pack: the most one stream entry holds.
pub(crate) const PACK_EVENTS: usize = 100;
/// Bytes of events per pack; a larger event travels in an entry of its own.
pub(crate) const PACK_BYTES: usize = 64 * 1024;

/// Splits one stream's events (in order) into packs within [`PACK_EVENTS`] and [`PACK_BYTES`].
fn packs<'a>(events: &'a [&'a Encoded]) -> impl Iterator<Item = &'a [&'a Encoded]> + 'a {
    let mut rest = events;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut n = 0;
        let mut bytes = 0;
        while n < rest.len() && n < PACK_EVENTS {
            bytes += rest[n].bytes.len();
            if n > 0 && bytes > PACK_BYTES {
                break;
            }
            n += 1;
        }
        let (pack, tail) = rest.split_at(n);
        rest = tail;
        Some(pack)
    })
}

struct StreamsDriver<C> {
    shared: Arc<Shared<C>>,
}

impl<C> fmt::Debug for StreamsDriver<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

/// Decodes one dead letter from its stored event bytes and record.
fn dead_letter(id: String, event_bytes: Vec<u8>, record: &[u8]) -> Option<DeadLetter> {
    let rec: serde_json::Value = serde_json::from_slice(record).ok()?;
    let num = |k: &str| rec.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let failures = match rec.get("failures") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|f| Failure {
                attempt: f
                    .get("attempt")
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0),
                at_ms: f.get("at").and_then(serde_json::Value::as_u64).unwrap_or(0),
                chain: match f.get("chain") {
                    Some(serde_json::Value::Array(c)) => c
                        .iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect(),
                    _ => Vec::new(),
                },
            })
            .collect(),
        _ => Vec::new(),
    };
    // An entry that never parsed is still kept: its bytes are in `event_bytes`.
    let event = serde_json::from_slice(&event_bytes).unwrap_or_else(|_| {
        Event::new(
            "$malformed",
            serde_json::Value::String(String::from_utf8_lossy(&event_bytes).into_owned()),
        )
    });
    Some(DeadLetter {
        group: rec.get("group")?.as_str()?.to_owned(),
        original_id: rec.get("original_id")?.as_str()?.to_owned(),
        id,
        event,
        event_bytes,
        attempts: u32::try_from(num("attempts")).unwrap_or(u32::MAX),
        failures,
        first_failed_at_ms: num("first"),
        last_failed_at_ms: num("last"),
    })
}

impl<C> Driver for StreamsDriver<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        "redis-streams"
    }

    fn publish<'a>(&'a self, batch: &'a [Encoded]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.shared.ensure_maintenance();
            let keys = &self.shared.keys;
            // Per stream, in publish order: the events of one stream are packed into as few
            // entries as the pack limits allow (one entry, one PEL record and one ack for up
            // to `PACK_EVENTS` events).
            let mut per_stream: Vec<(usize, Vec<&Encoded>)> = Vec::new();
            for e in batch {
                let sid = keys.stream_for(e.key.as_deref().map(str::as_bytes));
                match per_stream.iter_mut().find(|(s, _)| *s == sid) {
                    Some((_, es)) => es.push(e),
                    None => per_stream.push((sid, vec![e])),
                }
            }
            let mut pipe = redis::pipe();
            let mut entries = 0usize;
            for (sid, events) in &per_stream {
                for pack in packs(events) {
                    let c = pipe.cmd("XADD").arg(&keys.streams[*sid]).arg("*");
                    for e in pack {
                        c.arg("e").arg(&e.bytes).arg("t").arg(&e.event.name);
                        if let Some(k) = &e.key {
                            c.arg("k").arg(k);
                        }
                    }
                    c.ignore();
                    entries += 1;
                }
            }
            if entries > 1 {
                pipe.atomic();
            }
            let mut conn = self.shared.conn.clone();
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(Error::transport)
        })
    }

    fn subscribe(&self, spec: SubSpec) -> BoxFuture<'_, Result<Arc<Control>>> {
        Box::pin(async move {
            self.shared.ensure_maintenance();
            match spec.mode.clone() {
                Mode::Group { name, start } => {
                    consumer::start(self.shared.clone(), name, start, spec).await
                }
                Mode::Broadcast => broadcast::start(self.shared.clone(), spec).await,
            }
        })
    }

    fn dl_list(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let k = &self.shared.keys;
            let ids: Vec<String> = self
                .shared
                .query(redis::cmd("ZRANGE").arg(&k.dl_index).arg(0).arg(limit - 1))
                .await?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(d) = self.get(&id).await? {
                    out.push(d);
                }
            }
            Ok(out)
        })
    }

    fn dl_get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<DeadLetter>>> {
        Box::pin(self.get(id))
    }

    fn dl_redrive<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let k = &self.shared.keys;
            // A keyed event goes back to its partition's stream, behind the key's later events.
            let rec: Option<Vec<u8>> = self
                .shared
                .query(redis::cmd("HGET").arg(&k.dl_records).arg(id))
                .await?;
            let key = rec
                .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r).ok())
                .and_then(|r| r.get("key").and_then(|k| k.as_str().map(str::to_owned)));
            let mut inv = scripts::REDRIVE.prepare_invoke();
            inv.key(&k.streams[k.stream_for(key.as_deref().map(str::as_bytes))])
                .key(&k.dl_events)
                .key(&k.dl_records)
                .key(&k.dl_index)
                .arg(id);
            let mut c = self.shared.conn.clone();
            let r: Value = inv.invoke_async(&mut c).await.map_err(Error::transport)?;
            Ok(!matches!(r, Value::Nil))
        })
    }

    fn dl_discard<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let k = &self.shared.keys;
            let mut pipe = redis::pipe();
            pipe.atomic()
                .hdel(&k.dl_events, id)
                .hdel(&k.dl_records, id)
                .ignore()
                .zrem(&k.dl_index, id)
                .ignore();
            let mut c = self.shared.conn.clone();
            let (n,): (u64,) = pipe.query_async(&mut c).await.map_err(Error::transport)?;
            Ok(n > 0)
        })
    }

    fn overruns<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let n: Option<u64> = self
                .shared
                .query(
                    redis::cmd("HGET")
                        .arg(&self.shared.keys.overruns)
                        .arg(group),
                )
                .await?;
            Ok(n.unwrap_or(0))
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(h) = self
                .shared
                .maintenance
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                h.abort();
            }
        })
    }
}

impl<C> StreamsDriver<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn get(&self, id: &str) -> Result<Option<DeadLetter>> {
        let k = &self.shared.keys;
        let mut pipe = redis::pipe();
        pipe.hget(&k.dl_events, id).hget(&k.dl_records, id);
        let mut c = self.shared.conn.clone();
        let (ev, rec): (Option<Vec<u8>>, Option<Vec<u8>>) =
            pipe.query_async(&mut c).await.map_err(Error::transport)?;
        match (ev, rec) {
            (Some(ev), Some(rec)) => {
                dead_letter(id.to_owned(), ev, &rec)
                    .map(Some)
                    .ok_or_else(|| {
                        Error::new(ErrorKind::Serialize, format!("dead letter {id} is corrupt"))
                    })
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(len: usize) -> Encoded {
        Encoded {
            event: Event::new("a", serde_json::Value::Null),
            bytes: vec![b'x'; len],
            key: None,
        }
    }

    fn sizes(events: &[Encoded]) -> Vec<usize> {
        let refs: Vec<&Encoded> = events.iter().collect();
        packs(&refs).map(<[_]>::len).collect()
    }

    #[test]
    fn packs_hold_at_most_100_events_and_64_kib_and_keep_order() {
        assert_eq!(
            sizes(&(0..250).map(|_| encoded(10)).collect::<Vec<_>>()),
            [100, 100, 50]
        );
        // 1 000-byte events: 65 fit in 64 KiB.
        assert_eq!(
            sizes(&(0..100).map(|_| encoded(1000)).collect::<Vec<_>>()),
            [65, 35]
        );
        // An event over the byte limit travels alone, between its neighbours.
        let mixed = vec![encoded(10), encoded(PACK_BYTES + 1), encoded(10)];
        assert_eq!(sizes(&mixed), [1, 1, 1]);
        assert!(sizes(&[]).is_empty());
    }
}

//! [`RedisRunStore`]: the [`RunStore`] on Redis (feature `redis`). Every transition of a run
//! is one Lua script call on the run's own key, whose name is hash-tagged by the run id, so a
//! run's transition never leaves its Cluster slot; on a standalone Redis, transitions of
//! several runs that arrive together may share that call (`batch_transitions`). The id index
//! and the idempotency keys live under the store's tag and are written once per run, by the
//! insert.

mod batch;

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::future::try_join_all;
use hookwire_core::BoxFuture;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use crate::error::{Error, Result};
use crate::run::RunStatus;
use crate::store::{Inserted, Replaced, RunDoc, RunQuery, RunStore};

static INDEX: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../../lua/index.lua")));
static TRANSITION: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/transition.lua")));
static LEGACY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/legacy.lua")));
static TRANSITION_MANY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/transition_many.lua")));

/// Ids one list step reads from the index (then one `HMGET` per id, pipelined).
const LIST_BATCH: usize = 200;

/// The fields of a run stored as a hash by earlier versions, in the order a read asks for them.
const LEGACY_FIELDS: [&str; 5] = ["rev", "body", "status", "workflow", "org"];

/// The run store on Redis, generic over the connection (a `ConnectionManager` by default; any
/// `redis::aio::ConnectionLike`, e.g. a cluster connection, drops in).
///
/// Keys (prefix `hw:wf` by default): `hw:wf:run:{<id>}` (a string: a short head with the
/// revision, status, workflow and organization, then the document; hash-tagged by the run id;
/// runs stored as hashes by earlier versions are still read, and rewritten as strings by their
/// next transition), `{hw:wf}:runs` (zset of ids, listed by lexical range) and
/// `{hw:wf}:idem` (idempotency key → run id). Runs are kept until you delete them: run Redis
/// with persistence (AOF) and watch its memory.
///
/// ```no_run
/// # async fn demo() -> Result<(), hookwire_workflow::Error> {
/// let store = hookwire_workflow::RedisRunStore::connect("redis://127.0.0.1:6379/").await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisRunStore<C = ConnectionManager> {
    conn: C,
    prefix: String,
    /// Group commit of concurrent transitions (standalone Redis only).
    batcher: Option<Arc<batch::Batcher>>,
}

impl<C> fmt::Debug for RedisRunStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRunStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisRunStore<ConnectionManager> {
    /// Connects to `url` (a standalone Redis) with a reconnecting connection manager (10 s
    /// response timeout), transitions batched ([`RedisRunStore::batch_transitions`]).
    pub async fn connect(url: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(Error::store)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(2);
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(Error::store)?;
        Ok(Self::new(conn).batch_transitions(true))
    }
}

impl<C> RedisRunStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A store over `conn` with the prefix `hw:wf`.
    pub fn new(conn: C) -> Self {
        Self {
            conn,
            prefix: "hw:wf".to_owned(),
            batcher: None,
        }
    }

    /// Sends the transitions that arrive while one is in flight together, in one script call
    /// over all their runs' keys: the call's fixed cost, several times one transition's work,
    /// is paid once per batch. Only for a standalone Redis (a batch's keys sit in different
    /// Cluster slots). On by default for [`RedisRunStore::connect`], off for [`RedisRunStore::new`].
    #[must_use]
    pub fn batch_transitions(mut self, on: bool) -> Self {
        self.batcher = on.then(Arc::default);
        self
    }

    /// Uses `prefix` (no braces) for every key, e.g. one per environment: runs are
    /// `<prefix>:run:{<id>}`, the index and idempotency keys `{<prefix>}:runs` and
    /// `{<prefix>}:idem`.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self> {
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            return Err(Error::invalid(
                "a Redis key prefix must be non-empty and hold no braces",
            ));
        }
        prefix.clone_into(&mut self.prefix);
        Ok(self)
    }

    /// The run's hash, tagged by its id; `None` for an id no run can have (braces would move
    /// the hash tag).
    fn run_key(&self, id: &str) -> Option<String> {
        (!id.is_empty() && !id.contains(['{', '}']))
            .then(|| format!("{}:run:{{{id}}}", self.prefix))
    }

    fn global(&self, part: &str) -> String {
        format!("{{{}}}:{part}", self.prefix)
    }

    /// One run, read with `GET` (or `HMGET` for a run an earlier version stored as a hash).
    async fn read(&self, id: String) -> Result<Option<RunDoc>> {
        let Some(key) = self.run_key(&id) else {
            return Ok(None);
        };
        let mut conn = self.conn.clone();
        let packed: Option<String> = match redis::cmd("GET").arg(&key).query_async(&mut conn).await
        {
            Ok(v) => v,
            Err(e) if e.code() == Some("WRONGTYPE") => return self.read_legacy(id, key).await,
            Err(e) => return Err(Error::store(e)),
        };
        packed.map(|p| unpack(id, p)).transpose()
    }

    /// A run in the hash layout of earlier versions (rewritten as a string by its next
    /// transition).
    async fn read_legacy(&self, id: String, key: String) -> Result<Option<RunDoc>> {
        let mut conn = self.conn.clone();
        let f: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(key)
            .arg(&LEGACY_FIELDS)
            .query_async(&mut conn)
            .await
            .map_err(Error::store)?;
        let [Some(rev), Some(body), Some(status), Some(workflow), org] =
            <[Option<String>; 5]>::try_from(f).unwrap_or_default()
        else {
            return Ok(None);
        };
        doc_of(
            id,
            &rev,
            body,
            &status,
            workflow,
            org.as_deref().unwrap_or(""),
        )
        .map(Some)
    }

    /// The transition script: compare-and-set, answered with the stored run when stale.
    async fn transition(&self, doc: RunDoc, expected_rev: u64) -> Result<Replaced> {
        let Some(key) = self.run_key(&doc.id) else {
            return Ok(Replaced::Stale(None));
        };
        let packed = pack(&doc);
        // A run in the hash layout of earlier versions answers the string script with -1; its
        // own script moves it. Another writer may move it in between, hence the rounds.
        let mut legacy = false;
        for _ in 0..3 {
            let v = if legacy {
                // `-1` here: the run is a string by now (moved by another writer).
                batch::invoke(&LEGACY, self.conn.clone(), &key, expected_rev, &packed).await?
            } else if let Some(b) = &self.batcher {
                b.run(&self.conn, key.clone(), expected_rev, packed.clone())
                    .await?
            } else {
                batch::single(self.conn.clone(), &key, expected_rev, &packed).await?
            };
            match v {
                Value::Int(1) => return Ok(Replaced::Written),
                Value::Int(0) => return Ok(Replaced::Stale(None)),
                Value::Int(-1) => legacy = !legacy,
                Value::BulkString(b) => {
                    let stored = String::from_utf8(b)
                        .map_err(|_| Error::store("a stored run is not UTF-8"))?;
                    return Ok(Replaced::Stale(Some(unpack(doc.id, stored)?)));
                }
                other => {
                    return Err(Error::store(format!(
                        "unexpected transition reply {other:?}"
                    )));
                }
            }
        }
        Err(Error::store("the run changed layout during the transition"))
    }
}

/// A run as one string: `<rev> <status> <workflow> <org length>\n<org><document>`, where the
/// org part is empty (no organization) or `=` and the organization. The head is what the
/// transition script reads to compare revisions; the workflow id, status and revision hold no
/// spaces, and the organization is length-prefixed, so any organization name round-trips.
fn pack(doc: &RunDoc) -> String {
    let org = org_field(doc.organization.as_ref());
    format!(
        "{} {} {} {}\n{org}{}",
        doc.rev,
        doc.status.as_str(),
        doc.workflow,
        org.len(),
        doc.body
    )
}

fn unpack(id: String, mut packed: String) -> Result<RunDoc> {
    let bad = || Error::store(format!("run {id} is stored in an unknown format"));
    let Some(nl) = packed.find('\n') else {
        return Err(bad());
    };
    let head: Vec<&str> = packed[..nl].split(' ').collect();
    let [rev, status, workflow, org_len] = head[..] else {
        return Err(bad());
    };
    let org_end = org_len
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_add(nl + 1))
        .filter(|end| packed.is_char_boundary(*end))
        .ok_or_else(bad)?;
    let (rev, status, workflow) = (rev.to_owned(), status.to_owned(), workflow.to_owned());
    let org = packed[nl + 1..org_end].to_owned();
    let body = packed.split_off(org_end);
    doc_of(id, &rev, body, &status, workflow, &org)
}

fn org_field(org: Option<&String>) -> String {
    org.map_or_else(String::new, |o| format!("={o}"))
}

fn org_of(field: &str) -> Option<String> {
    field.strip_prefix('=').map(str::to_owned)
}

fn doc_of(
    id: String,
    rev: &str,
    body: String,
    status: &str,
    workflow: String,
    org: &str,
) -> Result<RunDoc> {
    let rev = rev
        .parse()
        .map_err(|_| Error::store(format!("run {id} has a bad revision")))?;
    let status = RunStatus::parse(status)
        .ok_or_else(|| Error::store(format!("run {id} has an unknown status")))?;
    Ok(RunDoc::new(id, workflow, org_of(org), status, rev, body))
}

impl<C> RunStore for RedisRunStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn insert<'a>(
        &'a self,
        doc: RunDoc,
        idempotency_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Inserted>> {
        Box::pin(async move {
            let key = self
                .run_key(&doc.id)
                .ok_or_else(|| Error::invalid("a run id holds no braces"))?;
            let mut conn = self.conn.clone();
            // The run first, then the index: a crash between the two leaves an unlisted run
            // (never queued, never listed), never an index entry or a key naming no run.
            // Plain commands where no script is needed: `SET NX` refuses a taken id in either
            // layout, and without an idempotency key indexing is one `ZADD` (a script call
            // costs Redis several times a plain command).
            let created: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(pack(&doc))
                .arg("NX")
                .query_async(&mut conn)
                .await
                .map_err(Error::store)?;
            if created.is_none() {
                return Err(Error::invalid(format!("run {} exists", doc.id)));
            }
            let Some(idempotency_key) = idempotency_key else {
                let _: i64 = redis::cmd("ZADD")
                    .arg(self.global("runs"))
                    .arg(0)
                    .arg(&doc.id)
                    .query_async(&mut conn)
                    .await
                    .map_err(Error::store)?;
                return Ok(Inserted::New);
            };
            let existing: String = INDEX
                .key(self.global("runs"))
                .key(self.global("idem"))
                .arg(&doc.id)
                .arg(idempotency_key)
                .invoke_async(&mut conn)
                .await
                .map_err(Error::store)?;
            if existing.is_empty() {
                return Ok(Inserted::New);
            }
            // The key names an earlier run: this one was never listed nor queued; drop it.
            let _: i64 = redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(Error::store)?;
            match self.read(existing.clone()).await? {
                Some(d) => Ok(Inserted::Existing(d)),
                None => Err(Error::store(format!(
                    "idempotency key names run {existing}, which is gone"
                ))),
            }
        })
    }

    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RunDoc>>> {
        Box::pin(self.read(id.to_owned()))
    }

    fn replace<'a>(&'a self, doc: RunDoc, expected_rev: u64) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            Ok(matches!(
                self.transition(doc, expected_rev).await?,
                Replaced::Written
            ))
        })
    }

    fn replace_or_current<'a>(
        &'a self,
        doc: RunDoc,
        expected_rev: u64,
    ) -> BoxFuture<'a, Result<Replaced>> {
        Box::pin(self.transition(doc, expected_rev))
    }

    fn list<'a>(&'a self, query: &'a RunQuery) -> BoxFuture<'a, Result<Vec<RunDoc>>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut out = Vec::new();
            let mut start = query
                .after
                .as_ref()
                .map_or_else(|| "-".to_owned(), |a| format!("({a}"));
            while out.len() < query.limit {
                let ids: Vec<String> = redis::cmd("ZRANGEBYLEX")
                    .arg(self.global("runs"))
                    .arg(&start)
                    .arg("+")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(LIST_BATCH)
                    .query_async(&mut conn)
                    .await
                    .map_err(Error::store)?;
                let Some(last) = ids.last() else {
                    break;
                };
                start = format!("({last}");
                // One read per run, concurrently: the connection pipelines them, and each read
                // goes to its run's slot on a cluster connection.
                let docs = try_join_all(ids.into_iter().map(|id| self.read(id))).await?;
                for d in docs.into_iter().flatten() {
                    if query.matches(&d) && out.len() < query.limit {
                        out.push(d);
                    }
                }
            }
            Ok(out)
        })
    }
}

//! [`RedisRunStore`]: the [`RunStore`] on Redis (feature `redis`). One Lua script per write:
//! insert (run + index + idempotency key) and replace (compare-and-set on the revision); reads
//! are one command or one script. Every key shares one hash tag, so the store is one Cluster slot.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use hookwire_core::BoxFuture;
use redis::Script;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};

use crate::error::{Error, Result};
use crate::run::RunStatus;
use crate::store::{Inserted, RunDoc, RunQuery, RunStore};

static INSERT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/insert.lua")));
static REPLACE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/replace.lua")));
static LIST: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../../lua/list.lua")));

/// Ids one list call scans at most before handing back a cursor, so a filter that matches few
/// runs never blocks Redis for long.
const SCAN_PER_CALL: usize = 2000;

/// The run store on Redis, generic over the connection (a `ConnectionManager` by default; any
/// `redis::aio::ConnectionLike`, e.g. a cluster connection, drops in).
///
/// Keys (prefix `hw:wf` by default, the hash tag): `{hw:wf}:run:<id>` (hash: rev, body, status,
/// workflow, org), `{hw:wf}:runs` (zset of ids, listed by lexical range) and `{hw:wf}:idem`
/// (idempotency key → run id). Runs are kept until you delete them: run Redis with persistence
/// (AOF) and watch its memory.
///
/// ```no_run
/// # async fn demo() -> Result<(), hookwire_workflow::Error> {
/// let store = hookwire_workflow::RedisRunStore::connect("redis://127.0.0.1:6379/").await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisRunStore<C = ConnectionManager> {
    conn: C,
    tag: String,
}

impl<C> fmt::Debug for RedisRunStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRunStore")
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl RedisRunStore<ConnectionManager> {
    /// Connects to `url` with a reconnecting connection manager (10 s response timeout).
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
        Ok(Self::new(conn))
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
            tag: "{hw:wf}".to_owned(),
        }
    }

    /// Uses `prefix` (no braces) as the hash tag of every key, e.g. one per environment.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self> {
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            return Err(Error::invalid(
                "a Redis key prefix must be non-empty and hold no braces",
            ));
        }
        self.tag = format!("{{{prefix}}}");
        Ok(self)
    }

    fn run_key(&self, id: &str) -> String {
        format!("{}:run:{id}", self.tag)
    }
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
            let mut conn = self.conn.clone();
            let (what, id): (String, String) = INSERT
                .key(format!("{}:runs", self.tag))
                .key(format!("{}:idem", self.tag))
                .key(self.run_key(&doc.id))
                .arg(&doc.id)
                .arg(doc.rev)
                .arg(&doc.body)
                .arg(doc.status.as_str())
                .arg(&doc.workflow)
                .arg(org_field(doc.organization.as_ref()))
                .arg(idempotency_key.unwrap_or(""))
                .invoke_async(&mut conn)
                .await
                .map_err(Error::store)?;
            match what.as_str() {
                "new" => Ok(Inserted::New),
                "existing" => match self.load(&id).await? {
                    Some(d) => Ok(Inserted::Existing(d)),
                    None => Err(Error::store(format!(
                        "idempotency key names run {id}, which is gone"
                    ))),
                },
                _ => Err(Error::invalid(format!("run {id} exists"))),
            }
        })
    }

    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<RunDoc>>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let f: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(self.run_key(id))
                .arg(&["rev", "body", "status", "workflow", "org"])
                .query_async(&mut conn)
                .await
                .map_err(Error::store)?;
            let [Some(rev), Some(body), Some(status), Some(workflow), org] =
                <[Option<String>; 5]>::try_from(f).unwrap_or_default()
            else {
                return Ok(None);
            };
            doc_of(
                id.to_owned(),
                &rev,
                body,
                &status,
                workflow,
                org.as_deref().unwrap_or(""),
            )
            .map(Some)
        })
    }

    fn replace<'a>(&'a self, doc: RunDoc, expected_rev: u64) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let n: i64 = REPLACE
                .key(self.run_key(&doc.id))
                .arg(expected_rev)
                .arg(doc.rev)
                .arg(&doc.body)
                .arg(doc.status.as_str())
                .invoke_async(&mut conn)
                .await
                .map_err(Error::store)?;
            Ok(n == 1)
        })
    }

    fn list<'a>(&'a self, query: &'a RunQuery) -> BoxFuture<'a, Result<Vec<RunDoc>>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut out = Vec::new();
            let mut after = query.after.clone().unwrap_or_default();
            let run_prefix = format!("{}:run:", self.tag);
            while out.len() < query.limit {
                let flat: Vec<String> = LIST
                    .key(format!("{}:runs", self.tag))
                    .arg(&after)
                    .arg(query.limit - out.len())
                    .arg(query.workflow.as_deref().unwrap_or(""))
                    .arg(query.status.map_or("", RunStatus::as_str))
                    .arg(org_field(query.organization.as_ref()))
                    .arg(&run_prefix)
                    .arg(SCAN_PER_CALL)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(Error::store)?;
                let mut it = flat.into_iter();
                let cursor = it.next().unwrap_or_default();
                let rest: Vec<String> = it.collect();
                // ok: `chunks_exact(6)` yields slices of exactly six fields.
                for c in rest.chunks_exact(6) {
                    out.push(doc_of(
                        c[0].clone(),
                        &c[1],
                        c[2].clone(),
                        &c[3],
                        c[4].clone(),
                        &c[5],
                    )?);
                }
                if cursor.is_empty() {
                    break;
                }
                after = cursor;
            }
            Ok(out)
        })
    }
}

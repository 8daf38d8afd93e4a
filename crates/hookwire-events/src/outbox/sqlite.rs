//! The SQLite outbox store (feature `sqlite`): embedded, on tokio's blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookwire_core::Event;
use rusqlite::{Connection, ErrorCode, TransactionBehavior, params};

use super::{
    ClaimedRow, CommitNotifier, CommitSignal, DeadLetter, DeadLetters, Failure, Lease, NewEntry,
    OutboxStore, clamp_delay, encode_all, entries,
};
use crate::error::{Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hookwire_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL UNIQUE,
    aggregate   TEXT NOT NULL DEFAULT '',
    payload     BLOB NOT NULL,
    state       INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    token       INTEGER NOT NULL DEFAULT 0,
    due_at      INTEGER NOT NULL,
    last_error  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS hookwire_outbox_live ON hookwire_outbox (state, id);
CREATE INDEX IF NOT EXISTS hookwire_outbox_aggregate ON hookwire_outbox (aggregate, state, id);
";

const INSERT: &str =
    "INSERT INTO hookwire_outbox (event_id, aggregate, payload, due_at) VALUES (?1, ?2, ?3, ?4)";

// Claims run in an IMMEDIATE transaction: SQLite has one writer, so two claimers can never take
// the same row. The order rule is the one of the module docs.
const CLAIM: &str =
    "UPDATE hookwire_outbox SET token = token + 1, attempts = attempts + 1, due_at = ?2
WHERE id IN (
    SELECT o.id FROM hookwire_outbox o
    WHERE o.state = 0 AND o.due_at <= ?1
      AND (o.aggregate = '' OR NOT EXISTS (
          SELECT 1 FROM hookwire_outbox p
          WHERE p.aggregate = o.aggregate AND p.state = 0 AND p.id < o.id))
    ORDER BY o.id LIMIT ?3)
RETURNING id, token, attempts, aggregate, payload";

/// An outbox in an SQLite database file, next to the application's own tables.
///
/// The store keeps one connection (WAL mode, 5 s busy timeout) and runs every statement on
/// tokio's blocking pool. Write business rows and events together with
/// [`transaction`](SqliteOutbox::transaction), which commits and then wakes relays in process.
/// Code that writes through its own connection uses [`SqliteOutbox::enqueue_in`] and either calls
/// [`notify_committed`](SqliteOutbox::notify_committed) after its commit or lets the relays find
/// the rows at their next poll.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use hookwire_events::outbox::SqliteOutbox;
/// let outbox = SqliteOutbox::open_in_memory().await.unwrap();
/// outbox
///     .transaction(|tx| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
///         tx.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY)", [])?;
///         tx.execute("INSERT INTO orders (id) VALUES ('o-1')", [])?;
///         let event = hookwire_core::Event::new("order.created", serde_json::json!({"id": "o-1"}));
///         SqliteOutbox::enqueue_in(tx, &event)?;
///         Ok(())
///     })
///     .await
///     .unwrap();
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    conn: Arc<Mutex<Connection>>,
    notifier: CommitNotifier,
}

fn sql(e: rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && f.code == ErrorCode::ConstraintViolation
    {
        return Error::invalid(format!("event id already in the outbox: {e}"));
    }
    Error::transport(e)
}

fn now_ms() -> i64 {
    i64::try_from(hookwire_core::time::unix_millis()).unwrap_or(i64::MAX)
}

fn later_ms(d: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(clamp_delay(d).as_millis()).unwrap_or(i64::MAX))
}

impl SqliteOutbox {
    /// Opens (creating if needed) a database file and creates the outbox table.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        Self::from_opener(move || Connection::open(path)).await
    }

    /// A private in-memory database (for tests and examples).
    pub async fn open_in_memory() -> Result<Self> {
        Self::from_opener(Connection::open_in_memory).await
    }

    async fn from_opener(
        open: impl FnOnce() -> rusqlite::Result<Connection> + Send + 'static,
    ) -> Result<Self> {
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            let conn = open().map_err(sql)?;
            conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(sql)?;
            Self::migrate_in(&conn)?;
            Ok(conn)
        })
        .await
        .map_err(Error::transport)??;
        let (notifier, _) = CommitSignal::channel();
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            notifier,
        })
    }

    /// Creates the outbox table and indexes on a connection if missing (idempotent).
    pub fn migrate_in(conn: &Connection) -> Result<()> {
        conn.execute_batch(SCHEMA).map_err(sql)
    }

    /// Writes an event inside the caller's transaction; it is published after that commit.
    pub fn enqueue_in(tx: &rusqlite::Transaction<'_>, event: &Event) -> Result<()> {
        let events = std::slice::from_ref(event);
        insert(tx, &entries(events, &encode_all(events)?))
    }

    /// Runs `f` in an IMMEDIATE transaction on the store's connection (on the blocking pool),
    /// commits when it returns `Ok`, rolls back otherwise, and wakes relays after the commit.
    pub async fn transaction<T, E, F>(&self, f: F) -> std::result::Result<T, E>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> std::result::Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let out = self
            .run(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql)?;
                Ok(match f(&tx) {
                    Ok(v) => tx.commit().map(|()| Ok(v)).map_err(sql)?,
                    // Dropping the transaction rolls it back.
                    Err(e) => Err(e),
                })
            })
            .await
            .map_err(E::from)?;
        if out.is_ok() {
            self.notifier.notify();
        }
        out
    }

    /// Wakes relays in this process after a commit made through another connection.
    pub fn notify_committed(&self) {
        self.notifier.notify();
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // Statements leave no half-applied state in memory, so a poisoned lock is usable.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(Error::transport)?
    }
}

fn insert(conn: &Connection, entries: &[NewEntry<'_>]) -> Result<()> {
    let mut stmt = conn.prepare_cached(INSERT).map_err(sql)?;
    let now = now_ms();
    for e in entries {
        stmt.execute(params![e.event_id(), e.aggregate(), e.payload(), now])
            .map_err(sql)?;
    }
    Ok(())
}

fn attempts(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl OutboxStore for SqliteOutbox {
    async fn append(&self, entries: &[NewEntry<'_>]) -> Result<()> {
        let owned: Vec<(String, String, Vec<u8>)> = entries
            .iter()
            .map(|e| {
                (
                    e.event_id().to_owned(),
                    e.aggregate().to_owned(),
                    e.payload().to_vec(),
                )
            })
            .collect();
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            let entries: Vec<NewEntry<'_>> = owned
                .iter()
                .map(|(i, a, p)| NewEntry::new(i, a, p))
                .collect();
            insert(&tx, &entries)?;
            tx.commit().map_err(sql)
        })
        .await?;
        self.notifier.notify();
        Ok(())
    }

    async fn claim(&self, max: usize, lease: Duration) -> Result<Vec<ClaimedRow>> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let mut out = self
            .run(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql)?;
                let rows = {
                    let mut stmt = tx.prepare_cached(CLAIM).map_err(sql)?;
                    stmt.query_map(params![now_ms(), later_ms(lease), limit], |r| {
                        Ok(ClaimedRow::new(
                            Lease::new(r.get(0)?, r.get(1)?),
                            attempts(r.get(2)?),
                            r.get(3)?,
                            r.get(4)?,
                        ))
                    })
                    .map_err(sql)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sql)?
                };
                tx.commit().map_err(sql)?;
                Ok(rows)
            })
            .await?;
        out.sort_by_key(|c| c.lease.id());
        Ok(out)
    }

    async fn ack(&self, leases: &[Lease]) -> Result<usize> {
        let leases = leases.to_vec();
        self.run(move |conn| {
            let tx = conn.transaction().map_err(sql)?;
            let mut n = 0;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "DELETE FROM hookwire_outbox WHERE id = ?1 AND token = ?2 AND state = 0",
                    )
                    .map_err(sql)?;
                for l in &leases {
                    n += stmt.execute(params![l.id(), l.token()]).map_err(sql)?;
                }
            }
            tx.commit().map_err(sql)?;
            Ok(n)
        })
        .await
    }

    async fn fail(&self, lease: Lease, failure: &Failure) -> Result<bool> {
        let failure = failure.clone();
        let parked = failure.retry_after().is_none();
        let ok = self
            .run(move |conn| {
                let n = match failure.retry_after() {
                    Some(after) => conn.execute(
                        "UPDATE hookwire_outbox SET due_at = ?3, last_error = ?4 \
                         WHERE id = ?1 AND token = ?2 AND state = 0",
                        params![lease.id(), lease.token(), later_ms(after), failure.error()],
                    ),
                    None => conn.execute(
                        "UPDATE hookwire_outbox SET state = 1, last_error = ?3 \
                         WHERE id = ?1 AND token = ?2 AND state = 0",
                        params![lease.id(), lease.token(), failure.error()],
                    ),
                }
                .map_err(sql)?;
                Ok(n == 1)
            })
            .await?;
        if ok && parked {
            self.notifier.notify();
        }
        Ok(ok)
    }

    fn commits(&self) -> Option<CommitSignal> {
        Some(self.notifier.subscribe())
    }
}

impl DeadLetters for SqliteOutbox {
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, event_id, aggregate, attempts, last_error, payload \
                     FROM hookwire_outbox WHERE state = 1 ORDER BY id LIMIT ?1",
                )
                .map_err(sql)?;
            stmt.query_map(params![limit], |r| {
                Ok(DeadLetter {
                    id: r.get(0)?,
                    event_id: r.get(1)?,
                    aggregate: r.get(2)?,
                    attempts: attempts(r.get(3)?),
                    error: r.get(4)?,
                    payload: r.get(5)?,
                })
            })
            .map_err(sql)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sql)
        })
        .await
    }

    async fn redrive(&self, id: i64) -> Result<bool> {
        let ok = self
            .run(move |conn| {
                conn.execute(
                    "UPDATE hookwire_outbox SET state = 0, attempts = 0, due_at = ?2 \
                     WHERE id = ?1 AND state = 1",
                    params![id, now_ms()],
                )
                .map(|n| n == 1)
                .map_err(sql)
            })
            .await?;
        if ok {
            self.notifier.notify();
        }
        Ok(ok)
    }
}

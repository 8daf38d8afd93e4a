//! The PostgreSQL outbox store (feature `postgres`): `FOR UPDATE SKIP LOCKED` claims, fencing
//! tokens, and `LISTEN`/`NOTIFY` wake-up on commit.

use std::sync::Arc;
use std::time::Duration;

use hookwire_core::Event;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, Config, GenericClient, NoTls, Transaction};

use super::{
    ClaimedRow, CommitNotifier, CommitSignal, DeadLetter, DeadLetters, Failure, Lease, NewEntry,
    OutboxStore, clamp_delay, encode_all, entries,
};
use crate::error::{Error, Result};

/// The notification channel the insert trigger signals on.
const CHANNEL: &str = "hookwire_outbox";

/// An arbitrary constant: the advisory lock that serializes concurrent [`PostgresOutbox::migrate`]
/// calls (`CREATE … IF NOT EXISTS` alone races between sessions).
const MIGRATE_LOCK: i64 = 0x686f_6f6b_7769_7265;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS hookwire_outbox (
    id          BIGSERIAL PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,
    aggregate   TEXT NOT NULL DEFAULT '',
    payload     BYTEA NOT NULL,
    state       SMALLINT NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    token       BIGINT NOT NULL DEFAULT 0,
    due_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS hookwire_outbox_due ON hookwire_outbox (id) WHERE state = 0;
CREATE INDEX IF NOT EXISTS hookwire_outbox_aggregate ON hookwire_outbox (aggregate, id) WHERE state = 0;
CREATE OR REPLACE FUNCTION hookwire_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hookwire_outbox', '');
    RETURN NULL;
END
$$;
-- The strict order rule (no earlier live row of the aggregate at all) is what keeps the claim
-- safe under concurrency: an earlier row only disappears by being acknowledged, so a claimer
-- that still sees it skips the later row, and one that no longer sees it is right to take it.
-- The planner settings pin the plan to the id-ordered index scan that stops after max_rows:
-- with stale statistics (a backlog inserted into a fresh table) it would otherwise scan and sort
-- every live row on each claim.
CREATE OR REPLACE FUNCTION hookwire_outbox_claim(max_rows BIGINT, lease_secs FLOAT8)
RETURNS TABLE (claimed_id BIGINT, claimed_token BIGINT, claimed_attempts INTEGER,
               claimed_aggregate TEXT, claimed_payload BYTEA)
LANGUAGE sql VOLATILE
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
AS $$
WITH due AS (
    SELECT o.id FROM hookwire_outbox o
    WHERE o.state = 0 AND o.due_at <= now()
      AND (o.aggregate = '' OR NOT EXISTS (
          SELECT 1 FROM hookwire_outbox p
          WHERE p.aggregate = o.aggregate AND p.state = 0 AND p.id < o.id))
    ORDER BY o.id
    LIMIT max_rows
    FOR UPDATE SKIP LOCKED
)
UPDATE hookwire_outbox t
SET token = t.token + 1, attempts = t.attempts + 1,
    due_at = now() + make_interval(secs => lease_secs)
FROM due WHERE t.id = due.id
RETURNING t.id, t.token, t.attempts, t.aggregate, t.payload
$$;
DROP TRIGGER IF EXISTS hookwire_outbox_notify ON hookwire_outbox;
CREATE TRIGGER hookwire_outbox_notify AFTER INSERT ON hookwire_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION hookwire_outbox_notify();
"#;

const INSERT: &str = "INSERT INTO hookwire_outbox (event_id, aggregate, payload) \
     SELECT e, a, p FROM unnest($1::text[], $2::text[], $3::bytea[]) WITH ORDINALITY AS t(e, a, p, n) \
     ORDER BY n";

// Claims run through a function created by the migration (see `SCHEMA`).
const CLAIM: &str = "SELECT * FROM hookwire_outbox_claim($1, $2)";

const ACK: &str = "DELETE FROM hookwire_outbox o USING unnest($1::bigint[], $2::bigint[]) AS l(id, token) \
     WHERE o.id = l.id AND o.token = l.token AND o.state = 0";

const RETRY: &str = "UPDATE hookwire_outbox SET due_at = now() + make_interval(secs => $3), last_error = $4 \
     WHERE id = $1 AND token = $2 AND state = 0";

const PARK: &str = "UPDATE hookwire_outbox SET state = 1, last_error = $3 \
     WHERE id = $1 AND token = $2 AND state = 0";

/// An outbox in a PostgreSQL table (`hookwire_outbox`), shared by any number of relays in any
/// number of processes.
///
/// Write events inside your own transaction with [`PostgresOutbox::enqueue_in`]; a trigger
/// `NOTIFY`s on insert, which PostgreSQL delivers at commit, and the store's listening connection
/// wakes the relays. The store keeps two connections: one for claims and acknowledgements
/// (requests are pipelined, so relays sharing a store do not wait on each other), replaced on
/// next use when it was lost, and one that `LISTEN`s and reconnects with backoff when lost
/// (relays poll meanwhile).
///
/// ```no_run
/// # async fn run() -> hookwire_events::Result<()> {
/// use hookwire_events::outbox::PostgresOutbox;
/// let outbox = PostgresOutbox::connect("postgres://app@127.0.0.1/shop").await?;
/// outbox.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PostgresOutbox {
    config: Config,
    /// The working connection; replaced by a new one when found closed.
    client: tokio::sync::Mutex<Arc<Client>>,
    notifier: CommitNotifier,
    listener: JoinHandle<()>,
}

impl Drop for PostgresOutbox {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Connects and drives the connection on its own task (it ends when the client is dropped).
async fn open(config: &Config) -> Result<Client> {
    let (client, conn) = config.connect(NoTls).await.map_err(Error::transport)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "outbox: postgres connection closed");
        }
    });
    Ok(client)
}

fn sql(e: tokio_postgres::Error) -> Error {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        return Error::invalid(format!("event id already in the outbox: {e}"));
    }
    Error::transport(e)
}

impl PostgresOutbox {
    /// Connects (a `postgres://` URL or a `key=value` string; TLS is not supported yet) and
    /// starts listening for commits. Does not create the table: call [`migrate`](Self::migrate).
    pub async fn connect(config: &str) -> Result<Self> {
        let config: Config = config
            .parse()
            .map_err(|e| Error::new(crate::ErrorKind::Config, e))?;
        let client = open(&config).await?;
        let (notifier, _) = CommitSignal::channel();
        let listener = tokio::spawn(listen(config.clone(), notifier.clone()));
        Ok(Self {
            config,
            client: tokio::sync::Mutex::new(Arc::new(client)),
            notifier,
            listener,
        })
    }

    /// The working connection, reconnecting when it was lost: the operation that met the loss
    /// failed with a transport error; the next one runs on a new connection.
    async fn client(&self) -> Result<Arc<Client>> {
        let mut slot = self.client.lock().await;
        if slot.is_closed() {
            *slot = Arc::new(open(&self.config).await?);
        }
        Ok(slot.clone())
    }

    /// Creates the table, its indexes and the notify trigger if missing (idempotent; concurrent
    /// calls are serialized by an advisory lock).
    pub async fn migrate(&self) -> Result<()> {
        migrate_on(&*self.client().await?).await
    }

    /// Writes an event inside the caller's transaction: it becomes visible to relays, and wakes
    /// them, when that transaction commits, and vanishes if it rolls back.
    ///
    /// ```no_run
    /// # async fn run(client: &mut tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use hookwire_events::outbox::PostgresOutbox;
    /// let tx = client.transaction().await?;
    /// tx.execute("INSERT INTO orders (id, total) VALUES ($1, $2)", &[&"o-1", &99_i64]).await?;
    /// let event = hookwire_core::Event::new("order.created", serde_json::json!({"id": "o-1"}))
    ///     .with_stream("order-o-1", 0);
    /// PostgresOutbox::enqueue_in(&tx, &event).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_in(tx: &Transaction<'_>, event: &Event) -> Result<()> {
        Self::enqueue_many_in(tx, std::slice::from_ref(event)).await
    }

    /// Writes several events inside the caller's transaction, in one statement.
    pub async fn enqueue_many_in(tx: &Transaction<'_>, events: &[Event]) -> Result<()> {
        let encoded = encode_all(events)?;
        insert(tx, &entries(events, &encoded)).await
    }

    /// Creates the outbox schema through any client or transaction (for migration tools).
    pub async fn migrate_in(tx: &Transaction<'_>) -> Result<()> {
        tx.query("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
            .await
            .map_err(sql)?;
        tx.batch_execute(SCHEMA).await.map_err(sql)
    }
}

async fn migrate_on(client: &Client) -> Result<()> {
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({MIGRATE_LOCK}); {SCHEMA} COMMIT;"
        ))
        .await
        .map_err(sql)
}

async fn insert(client: &impl GenericClient, entries: &[NewEntry<'_>]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = entries.iter().map(NewEntry::event_id).collect();
    let aggs: Vec<&str> = entries.iter().map(NewEntry::aggregate).collect();
    let payloads: Vec<&[u8]> = entries.iter().map(NewEntry::payload).collect();
    client
        .execute(INSERT, &[&ids, &aggs, &payloads])
        .await
        .map_err(sql)?;
    Ok(())
}

fn secs(d: Duration) -> f64 {
    clamp_delay(d).as_secs_f64()
}

fn attempts(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

impl OutboxStore for PostgresOutbox {
    async fn append(&self, entries: &[NewEntry<'_>]) -> Result<()> {
        insert(&*self.client().await?, entries).await
    }

    async fn claim(&self, max: usize, lease: Duration) -> Result<Vec<ClaimedRow>> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = self
            .client()
            .await?
            .query(CLAIM, &[&limit, &secs(lease)])
            .await
            .map_err(sql)?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(ClaimedRow::new(
                    Lease::new(r.try_get(0)?, r.try_get(1)?),
                    attempts(r.try_get(2)?),
                    r.try_get(3)?,
                    r.try_get(4)?,
                ))
            })
            .collect::<std::result::Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(sql)?;
        out.sort_by_key(|c| c.lease.id());
        Ok(out)
    }

    async fn ack(&self, leases: &[Lease]) -> Result<usize> {
        if leases.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = leases.iter().map(Lease::id).collect();
        let tokens: Vec<i64> = leases.iter().map(Lease::token).collect();
        let n = self
            .client()
            .await?
            .execute(ACK, &[&ids, &tokens])
            .await
            .map_err(sql)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn fail(&self, lease: Lease, failure: &Failure) -> Result<bool> {
        let client = self.client().await?;
        let n = match failure.retry_after() {
            Some(after) => client
                .execute(
                    RETRY,
                    &[&lease.id(), &lease.token(), &secs(after), &failure.error()],
                )
                .await
                .map_err(sql)?,
            None => {
                let n = client
                    .execute(PARK, &[&lease.id(), &lease.token(), &failure.error()])
                    .await
                    .map_err(sql)?;
                if n == 1 {
                    // The parked row no longer holds its aggregate back: wake every relay.
                    client
                        .execute("SELECT pg_notify($1, '')", &[&CHANNEL])
                        .await
                        .map_err(sql)?;
                }
                n
            }
        };
        Ok(n == 1)
    }

    fn commits(&self) -> Option<CommitSignal> {
        Some(self.notifier.subscribe())
    }
}

impl DeadLetters for PostgresOutbox {
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, event_id, aggregate, attempts, last_error, payload FROM hookwire_outbox \
                 WHERE state = 1 ORDER BY id LIMIT $1",
                &[&limit],
            )
            .await
            .map_err(sql)?;
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: r.try_get(0)?,
                    event_id: r.try_get(1)?,
                    aggregate: r.try_get(2)?,
                    attempts: attempts(r.try_get(3)?),
                    error: r.try_get(4)?,
                    payload: r.try_get(5)?,
                })
            })
            .collect::<std::result::Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(sql)
    }

    async fn redrive(&self, id: i64) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE hookwire_outbox SET state = 0, attempts = 0, due_at = now() \
                 WHERE id = $1 AND state = 1",
                &[&id],
            )
            .await
            .map_err(sql)?;
        if n == 1 {
            self.notifier.notify();
        }
        Ok(n == 1)
    }
}

/// Keeps a `LISTEN` connection up and turns notifications into commit signals; reconnects with
/// backoff (100 ms doubling to 5 s). Every (re)connect fires the signal once, since commits made
/// while it was down were not heard.
async fn listen(config: Config, notifier: CommitNotifier) {
    let mut delay = Duration::from_millis(100);
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let listen = client.batch_execute("LISTEN hookwire_outbox");
                tokio::pin!(listen);
                let mut listening = false;
                loop {
                    tokio::select! {
                        r = &mut listen, if !listening => match r {
                            Ok(()) => {
                                listening = true;
                                delay = Duration::from_millis(100);
                                notifier.notify();
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "outbox: LISTEN failed");
                                break;
                            }
                        },
                        m = std::future::poll_fn(|cx| conn.poll_message(cx)) => match m {
                            Some(Ok(AsyncMessage::Notification(_))) => notifier.notify(),
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "outbox: listen connection lost");
                                break;
                            }
                            None => break,
                        },
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "outbox: cannot connect the listener"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

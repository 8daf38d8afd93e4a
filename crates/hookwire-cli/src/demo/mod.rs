//! `hookwire demo`: every hookwire crate in one process, on embedded defaults.
//!
//! The path of one event (docs/architecture.md): a generator publishes `order.*` events on the
//! event bus → the webhook [`Dispatcher`], the bus's `webhooks` group → a signed POST to this process's own `/webhook` → the receiver
//! verifies the signature and claims the idempotency key → its handler enqueues a job whose id is
//! that key (a redelivery cannot enqueue twice) → the job applies the event to the order board
//! and publishes the new state as a version-keyed patch on the SSE stream `board`, and the event
//! itself to the WebSocket gateway at `/ws`, scoped to its organization.
//!
//! The generator publishes on the event bus; the dispatcher is the bus's `webhooks` group.
//! `--redis URL` moves the bus (Redis Streams), the job queue, the idempotency claims, the board
//! fan-out and presence to Redis, so several demo processes share one board.
//!
//! Each order is also a run of the durable `order` workflow ([`orders`]), served with its
//! routes under `/workflows` behind the page's demo token.

mod board;
mod orders;

use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use hookwire_core::{
    Backoff, Event, IdempotencyConfig, IdempotencyStore, MemoryStore, Pattern, Scheme,
};
use hookwire_events::Bus;
use hookwire_jobs::{DispatchOptions, JobBackend, JobDef, JobMeta, Jobs, MemoryBackend};
use hookwire_receiver::Context;
use hookwire_sse::http::{Access, RequestInfo, SseApp, SseConfig, query_param};
use hookwire_sse::{BroadcastChannel, PresenceTracker};
use hookwire_webhook_sender::ssrf::SsrfPolicy;
use hookwire_webhook_sender::{Dispatcher, Subscription};
use hookwire_ws::{DemoAuthenticator, WsGateway};
use serde_json::Value;
use tokio::sync::Mutex;

/// The board's SSE stream name (fixed: the page and the CLI guide name it).
const STREAM: &str = "board";
/// The job that applies one received event to the board.
const APPLY_JOB: &str = "demo.board.apply";
/// Longest accepted identity for presence (`?user=`): the roster is shown to every viewer.
const MAX_USER_LEN: usize = 64;
/// Most users shown online on the board; further ones are served without presence (every
/// join republishes the roster to every viewer).
const MAX_PRESENCE: usize = 100;
/// `POST /demo/resync` makes every viewer refetch the state: at most one per this period, the
/// rest get 429.
const RESYNC_EVERY: Duration = Duration::from_secs(1);

/// Run the end-to-end demo: sender → receiver → job → board → SSE and WebSocket.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to serve on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Redis URL: jobs, idempotency claims and fan-out go through Redis (several demos share one board).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Milliseconds between generated events.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    interval_ms: u64,
    /// Milliseconds an order's run sleeps (step `pack`) between payment and shipping.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    ship_after_ms: u64,
    /// Seconds an order's run waits for its `payment` signal before it fails.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    payment_timeout_s: u64,
}

pub(crate) fn run(args: Args) -> ExitCode {
    init_tracing();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    match rt.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

#[allow(
    clippy::print_stderr,
    reason = "the CLI reports fatal errors on stderr"
)]
fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("hookwire demo: {msg}");
    ExitCode::from(1)
}

/// Readable progress by default (`warn,hookwire=info`), `RUST_LOG` overrides; colours only on
/// a terminal so logs captured by tests and CI stay plain.
fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,hookwire=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Where the board's state goes: the local channel, or the version store in Redis first
/// (compare-and-set) and then, on the event bus, every node's channel in version order.
#[derive(Clone)]
enum Publisher {
    Local(BroadcastChannel),
    Bus(Arc<hookwire_sse::SseBusFanOut>),
}

impl Publisher {
    async fn publish(&self, state: Value, patches: Vec<Value>) -> Result<(), String> {
        match self {
            Self::Local(ch) => ch
                .publish(STREAM, state, patches)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Self::Bus(f) => f
                .publish(STREAM, state, patches)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// Everything the job handler needs.
struct Board {
    channel: BroadcastChannel,
    publisher: Publisher,
    ws: WsGateway,
    /// One writer per process: the board is read-modify-write. Across processes the Redis
    /// version check refuses a stale write and the job retries.
    lock: Mutex<()>,
}

impl Board {
    async fn apply(&self, body: &Value) -> Result<u64, String> {
        let name = body.get("type").and_then(Value::as_str).unwrap_or_default();
        let payload = body.get("payload").cloned().unwrap_or(Value::Null);
        let _guard = self.lock.lock().await;
        let current = self
            .channel
            .state(STREAM)
            .map(|s| (*s).clone())
            .unwrap_or_else(board::empty);
        let version = current.get("_v").and_then(Value::as_u64).unwrap_or(0);
        let mut next = board::apply(&current, name, &payload);
        if next == current {
            return Ok(version);
        }
        next["_v"] = Value::from(version + 1);
        let mut patch = hookwire_patch::delta(&current, &next);
        if let Some(p) = patch.as_object_mut() {
            p.remove("_v");
        }
        self.publisher.publish(next, vec![patch]).await?;
        // The WebSocket side gets the event itself, for its organization only. An event without
        // one goes out unscoped (to clients without an organization); never guess a tenant.
        let mut event = Event::new(name, payload.clone());
        if let Some(org) = payload.get("organization").and_then(Value::as_str) {
            event = event.with_organization(org);
        }
        self.ws.publish(&event);
        Ok(version + 1)
    }
}

async fn serve(args: Args) -> Result<(), Box<dyn Error>> {
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let addr = listener.local_addr()?;
    let redis = match &args.redis {
        Some(url) => {
            Some(redis::Client::open(url.as_str()).map_err(|e| format!("--redis {url}: {e}"))?)
        }
        None => None,
    };

    // SSE: the board stream, public, with presence from `?user=` (a demo identity, not auth).
    let channel: BroadcastChannel = BroadcastChannel::new();
    // The event bus: in process, or Redis Streams with `--redis` (every demo process is a node).
    let bus = demo_bus(args.redis.as_deref(), addr).await?;
    let publisher = match &redis {
        // The board's fan-out rides on the bus too (a broadcast subscription), with its version
        // store in Redis: one mechanism between processes for SSE and WebSocket.
        Some(client) => {
            let fan = hookwire_sse::SseBusFanOut::start(
                channel.clone(),
                &bus,
                client.clone(),
                "hookwire:demo:sse",
            )
            .await
            .map_err(|e| format!("redis (sse fan-out): {e}"))?;
            Publisher::Bus(Arc::new(fan))
        }
        None => Publisher::Local(channel.clone()),
    };
    let loaded = match &publisher {
        Publisher::Bus(f) => f
            .load(STREAM)
            .await
            .map_err(|e| format!("redis (board): {e}"))?,
        Publisher::Local(_) => false,
    };
    if !loaded {
        let mut genesis = board::empty();
        genesis["_v"] = Value::from(0);
        // Another demo may have written the genesis a moment ago: then load theirs.
        if publisher.publish(genesis, vec![]).await.is_err()
            && let Publisher::Bus(f) = &publisher
        {
            f.load(STREAM)
                .await
                .map_err(|e| format!("redis (board): {e}"))?;
        }
    }
    let presence = Arc::new(PresenceTracker::new().max_per_stream(MAX_PRESENCE)?);
    // With `--redis` the roster covers every demo process, with TTL leases: the viewers of a
    // process that dies leave the other pages' rosters within the lease time.
    let _shared_presence = match &redis {
        Some(client) => Some(
            hookwire_sse::redis::SharedPresence::start(
                channel.clone(),
                Arc::clone(&presence),
                "online",
                client.clone(),
                "hookwire:demo:sse",
            )
            .await
            .map_err(|e| format!("redis (presence): {e}"))?,
        ),
        None => None,
    };
    let sse = SseApp::new(
        channel.clone(),
        SseConfig::default().auth(presence_identity),
    )
    .with_presence(presence, "online");

    // WebSocket gateway: demo token auth (`user@org`), `order.*` events per organization.
    let mut ws = WsGateway::builder()
        .authenticator(DemoAuthenticator)
        .resources(["order", orders::ROOM]);
    if args.redis.is_some() {
        // The WebSocket fan-out rides on the bus: bus broadcasts, not a second pub/sub channel.
        let fan = hookwire_ws::BusFanOut::new(&bus)
            .await
            .map_err(|e| format!("redis (ws fan-out): {e}"))?;
        ws = ws.fan_out(fan);
    }
    let ws = ws.build()?;

    let board = Arc::new(Board {
        channel: channel.clone(),
        publisher,
        ws: ws.clone(),
        lock: Mutex::new(()),
    });

    // Jobs: the receiver's handler enqueues, a worker applies to the board.
    let backend: Arc<dyn JobBackend> = match &args.redis {
        Some(url) => Arc::new(
            hookwire_jobs_redis::RedisBackend::connect(url)
                .await
                .map_err(|e| format!("redis (jobs): {e}"))?,
        ),
        None => Arc::new(MemoryBackend::new()),
    };
    // The order flow: each order is a workflow run, on the same Redis with `--redis`.
    let flow = orders::FlowOptions {
        ship_after: Duration::from_millis(args.ship_after_ms),
        payment_timeout: Duration::from_secs(args.payment_timeout_s),
    };
    let orders = orders::Orders::start(
        flow,
        args.redis.as_deref().map(|url| (url, Arc::clone(&backend))),
        bus.clone(),
        ws.clone(),
    )
    .await?;

    let worker_board = board.clone();
    let worker_orders = orders.clone();
    let apply = JobDef::new(APPLY_JOB, move |body: Value, meta: JobMeta| {
        let board = worker_board.clone();
        let orders = worker_orders.clone();
        async move {
            let v = board.apply(&body).await.map_err(std::io::Error::other)?;
            let name = body.get("type").and_then(Value::as_str).unwrap_or_default();
            let payload = body.get("payload").unwrap_or(&Value::Null);
            orders
                .follow(name, payload)
                .await
                .map_err(std::io::Error::other)?;
            tracing::info!(target: "hookwire::demo", job = %meta.id, attempt = meta.attempt, version = v, "board updated");
            Ok::<_, std::io::Error>(v)
        }
    })
    .retries(20)
    .backoff(Backoff::exponential(Duration::from_millis(20)).with_max(Duration::from_secs(1)))
    .timeout(Duration::from_secs(10))
    .concurrency(1)
    .dead_letter_queue();
    let jobs = Jobs::builder_shared(backend).job(apply).start().await?;

    // Receiver at /webhook: verify, claim the key, enqueue. A failed enqueue answers 500 and
    // releases the claim, so the sender's retry is processed.
    let secret = format!(
        "{:016x}{:016x}",
        hookwire_core::id::random_u64(),
        hookwire_core::id::random_u64()
    );
    let store: Arc<dyn IdempotencyStore> = match &redis {
        Some(client) => Arc::new(hookwire_receiver::RedisIdempotencyStore::new(
            client.clone(),
            IdempotencyConfig::default(),
        )),
        None => Arc::new(MemoryStore::new(IdempotencyConfig::default())),
    };
    let enqueue = jobs.clone();
    let receiver = hookwire_receiver::receiver()
        .base_path("/webhook")
        .scheme(Scheme::Hookwire)
        .secret(&secret)
        .store(store)
        .on_pattern(
            Pattern::parse("order.*")?,
            move |body: Value, ctx: Context| {
                let jobs = enqueue.clone();
                async move {
                    let mut opts = DispatchOptions::new();
                    if let Some(key) = ctx.key {
                        opts = opts.job_id(key);
                    }
                    jobs.dispatch(APPLY_JOB, &body, opts).await.map(|_| ())
                }
            },
        )
        .build();

    // Sender: one subscription to our own receiver; the SSRF guard stays on and allows loopback only.
    let policy = SsrfPolicy::default()
        .allow("127.0.0.0/8".parse()?)
        .allow("::1/128".parse()?);
    let dispatcher = Dispatcher::builder()
        .ssrf(policy)
        .build()?
        // The dispatcher is the bus's `webhooks` group: each published event is dispatched by
        // one demo process, to that process's own `/webhook`. Only order events: the bus also
        // carries the SSE/WebSocket fan-out envelopes and workflow transitions, which no
        // webhook subscription wants, so the group need not read them.
        .on_bus(&bus)
        .pattern("order.*")
        .start()
        .await?;
    dispatcher
        .register(
            Subscription::new("demo-board", format!("http://{addr}/webhook"), &["order.*"])?
                .with_secret(secret.clone())
                .with_scheme(Scheme::Hookwire),
        )
        .await?;

    let resync_channel = channel.clone();
    let last_resync = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/demo/resync",
            post(move || {
                let ch = resync_channel.clone();
                let last = Arc::clone(&last_resync);
                async move {
                    // Demo control: tell every browser to refetch, as after a queue overflow.
                    // Each one costs a refetch per viewer, so it is rate limited.
                    if !due(&last, RESYNC_EVERY) {
                        return (
                            axum::http::StatusCode::TOO_MANY_REQUESTS,
                            [(axum::http::header::RETRY_AFTER, "1")],
                        )
                            .into_response();
                    }
                    ch.resync(STREAM);
                    axum::http::StatusCode::NO_CONTENT.into_response()
                }
            }),
        )
        .route_service("/webhook", receiver)
        .merge(hookwire_sse::axum::sse_router(sse))
        .merge(hookwire_ws::axum::ws_router(ws.clone()))
        .merge(orders.router()?);

    let generator = tokio::spawn(generate(
        bus.clone(),
        addr.port(),
        Duration::from_millis(args.interval_ms),
    ));

    report_listening(addr);
    let shutdown_channel = channel.clone();
    let shutdown_ws = ws.clone();
    // hookwire-server's accept loop: header-read and idle timeouts, a body timeout and a
    // connection cap below the open-file limit (docs/hookwire-cli.md), WebSocket upgrades.
    hookwire_server::ServerConfig::default()
        .serve(
            listener,
            hyper_util::service::TowerToHyperService::new(app),
            async move {
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!(target: "hookwire::demo", "shutting down");
                // Open streams would keep the server waiting forever: end them (browsers reconnect).
                shutdown_channel.shutdown();
                shutdown_ws.close_all();
            },
        )
        .await?;
    generator.abort();
    // Before the bus: the engine's last transitions are still published.
    orders.shutdown().await;
    dispatcher.stop().await;
    bus.shutdown().await;
    jobs.shutdown().await;
    Ok(())
}

/// The demo's bus: a `MemoryTransport` in one process, Redis Streams (node id from the listen
/// address, stable across restarts) with `--redis`.
async fn demo_bus(redis: Option<&str>, addr: SocketAddr) -> Result<Bus, Box<dyn Error>> {
    let transport: hookwire_events::Transport = match redis {
        Some(url) => {
            let node = format!("demo-{}", addr.port());
            hookwire_events::RedisStreams::connect(url)
                .await
                .map_err(|e| format!("redis (bus): {e}"))?
                .node_id(node)
                .into()
        }
        None => hookwire_events::MemoryTransport::new().into(),
    };
    Ok(Bus::builder(transport).build()?)
}

#[allow(
    clippy::print_stderr,
    reason = "the URL to open is the demo's first output"
)]
fn report_listening(addr: SocketAddr) {
    eprintln!("hookwire demo: listening on http://{addr}/  (Ctrl-C to stop)");
}

/// Presence identity from `?user=name@org` (any text up to [`MAX_USER_LEN`]); the board itself is
/// public. A real app derives identity from its session instead.
fn presence_identity(req: &RequestInfo<'_>) -> Result<Access, axum::http::StatusCode> {
    let user = req.query.and_then(|q| query_param(q, "user"));
    Ok(match user {
        Some(u) if !u.is_empty() && u.len() <= MAX_USER_LEN && !u.chars().any(char::is_control) => {
            Access::all().with_identity(u)
        }
        _ => Access::all(),
    })
}

/// Whether the period since the last accepted call has passed; if so, records this one.
fn due(last: &std::sync::Mutex<Option<std::time::Instant>>, every: Duration) -> bool {
    let mut g = last
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = std::time::Instant::now();
    if g.is_some_and(|t| now.duration_since(t) < every) {
        return false;
    }
    *g = Some(now);
    true
}

/// Publishes one event per interval on the bus; the dispatcher's group subscription delivers it
/// as a webhook. Each publish runs in its own task so a slow one never delays the next event.
async fn generate(bus: Bus, port: u16, every: Duration) {
    let mut generator = board::Generator::new(format!("{port}-"));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let e = generator.next_event();
        let event = Event::new(e.name, e.payload).with_organization(e.organization);
        let bus = bus.clone();
        tokio::spawn(async move {
            if let Err(e) = bus.publish(event).await {
                tracing::warn!(target: "hookwire::demo", error = %e, "publish failed");
            }
        });
    }
}

const PAGE: &str = include_str!("page.html");

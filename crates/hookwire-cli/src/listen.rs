//! `hookwire listen`: a receiver on an address that verifies, de-duplicates and prints (or
//! forwards) each accepted webhook.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hookwire_core::signing::{HeaderLookup, HeaderSource, SchemeChoice, VerifyOptions};
use hookwire_core::{IdempotencyConfig, IdempotencyStore, KeyRing, MemoryStore, Secret};
use hookwire_receiver::server::RequestBody;
use hookwire_receiver::{Admission, Gate, REPLAYED_HEADER, Reason, Rejection};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::common::usage_error;

/// Receive webhooks: verify, de-duplicate, print one JSON line per accepted request.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  hookwire listen --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw --scheme auto \\\n    --addr 127.0.0.1:4001 --path /webhook --redis redis://127.0.0.1:6379 --forward-to http://127.0.0.1:3000/hooks"
)]
pub(crate) struct Args {
    /// A secret; repeat for key rotation (valid if any verifies). Or set `HOOKWIRE_SECRET` (the environment is not shown by `ps`, the command line is).
    #[arg(long, required = true, env = "HOOKWIRE_SECRET", hide_env_values = true)]
    secret: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4001")]
    addr: SocketAddr,
    /// The path webhooks are posted to.
    #[arg(long, default_value = "/webhook")]
    path: String,
    /// auto, hookwire, standard, github, stripe, slack or body.
    #[arg(long, default_value = "auto")]
    scheme: String,
    /// Refuse requests without an idempotency key (400 missing-key). Without it such requests
    /// are accepted and never de-duplicated.
    #[arg(long)]
    require_idempotency_key: bool,
    /// Body limit in bytes (413 above it).
    #[arg(long, default_value_t = hookwire_receiver::DEFAULT_RECEIVER_MAX_BODY)]
    max_body: usize,
    /// Allowed clock difference, seconds.
    #[arg(long, default_value_t = 300)]
    tolerance: u64,
    /// Keep idempotency claims in Redis, shared by every listener on it.
    #[arg(long)]
    redis: Option<String>,
    /// Re-send each verified request to this local app (http://) and answer with its status;
    /// when it fails (5xx or down) the claim is released so the sender's retry is processed.
    #[arg(long)]
    forward_to: Option<String>,
    /// Seconds the app gets to answer `--forward-to`, response body included (502 after it).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    forward_timeout: u64,
    /// Seconds a claim lasts before a duplicate may take over; renewed while the app is still
    /// answering, so a slow app is never called twice for one key.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    lease: u64,
    /// Seconds a verified GitHub (or body) signature stays bound to its first delivery id: a
    /// resend under a new delivery id inside it is a duplicate.
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    replay_horizon: u64,
}

struct Listener {
    gate: Gate,
    path: String,
    forward: Option<Forward>,
    forward_timeout: Duration,
    lease: Duration,
    out: Output,
}

/// Most bytes of output lines waiting for stdout. Beyond it an accepted request is answered
/// 503 `output-busy` with `Retry-After` (its claim released) instead of blocking: a line never
/// waits on a slow or stuck stdout inside the runtime. One line is always allowed into an
/// empty queue, whatever its size.
pub(crate) const OUTPUT_QUEUE_BYTES: usize = 1024 * 1024;

/// Stdout, written by a thread of its own behind a queue bounded in bytes.
struct Output {
    queued: Arc<AtomicUsize>,
    tx: std::sync::mpsc::Sender<String>,
}

/// Room for one line in the output queue; given back unless the line is printed.
struct Slot<'a> {
    out: &'a Output,
    // Zero once the line is handed to the writer, which then gives the room back.
    len: usize,
}

impl Output {
    fn start() -> Self {
        let queued = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let q = queued.clone();
        std::thread::spawn(move || {
            let out = std::io::stdout();
            for line in rx {
                // Write errors (a closed pipe) drop the line; the queue must still drain.
                let mut out = out.lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
                q.fetch_sub(line.len() + 1, Ordering::AcqRel);
            }
        });
        Self { queued, tx }
    }

    /// Room for a line of `len` bytes, or `None` when the queue is full.
    fn reserve(&self, len: usize) -> Option<Slot<'_>> {
        let len = len + 1;
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q == 0 || q + len <= OUTPUT_QUEUE_BYTES).then_some(q + len)
            })
            .ok()?;
        Some(Slot { out: self, len })
    }

    /// Waits (at most `limit`) until every queued line is written.
    async fn drain(&self, limit: Duration) {
        let end = tokio::time::Instant::now() + limit;
        while self.queued.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Slot<'_> {
    fn print(mut self, line: String) {
        if self.out.tx.send(line).is_ok() {
            self.len = 0;
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if self.len > 0 {
            self.out.queued.fetch_sub(self.len, Ordering::AcqRel);
        }
    }
}

/// 503 `output-busy` with `Retry-After: 1`: stdout cannot keep up.
fn output_busy() -> Response<Full<Bytes>> {
    let mut r = Rejection::from(Reason::OutputBusy).to_response();
    r.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    r
}

struct Forward {
    addr: String,
    host: String,
    path: String,
}

fn parse_forward(url: &str) -> Result<Forward, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("--forward-to {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "--forward-to {url:?}: only http:// URLs (a local app) are supported"
        ));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("--forward-to {url:?}: no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    Ok(Forward {
        addr: format!("{host}:{port}"),
        host: uri
            .authority()
            .map_or(host.to_owned(), |a| a.as_str().to_owned()),
        path: uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned()),
    })
}

pub(crate) fn run(a: Args) -> ExitCode {
    let scheme: SchemeChoice = match a.scheme.parse() {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    let forward = match a.forward_to.as_deref().map(parse_forward).transpose() {
        Ok(f) => f,
        Err(e) => return usage_error(e),
    };
    let config = IdempotencyConfig::default().with_lease(Duration::from_secs(a.lease));
    let store: Arc<dyn IdempotencyStore> = match &a.redis {
        Some(url) => match hookwire_receiver::RedisIdempotencyStore::open(url, config) {
            Ok(s) => Arc::new(s),
            Err(e) => return usage_error(format!("--redis {url:?}: {e}")),
        },
        None => Arc::new(MemoryStore::new(config)),
    };
    let keys: KeyRing = a.secret.iter().map(Secret::new).collect();
    let gate = Gate::new()
        .keys(keys)
        .verify_options(VerifyOptions::new(scheme).tolerance(Duration::from_secs(a.tolerance)))
        .store(store)
        .require_key(a.require_idempotency_key)
        .replay_horizon(Duration::from_secs(a.replay_horizon))
        .max_body(a.max_body);
    let listener = Arc::new(Listener {
        gate,
        path: a.path,
        forward,
        forward_timeout: Duration::from_secs(a.forward_timeout),
        lease: Duration::from_secs(a.lease),
        out: Output::start(),
    });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return usage_error(format!("cannot start the runtime: {e}")),
    };
    rt.block_on(serve(listener, a.addr))
}

#[allow(clippy::print_stderr, reason = "readiness and errors go to stderr")]
async fn serve(l: Arc<Listener>, addr: SocketAddr) -> ExitCode {
    let tcp = match tokio::net::TcpListener::bind(addr).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("hookwire: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    let bound = tcp.local_addr().unwrap_or(addr);
    let path = l.path.clone();
    let handler = l.clone();
    let server = match hookwire_receiver::server::serve_with(tcp, move |req| {
        let l = handler.clone();
        async move { l.handle(req).await }
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hookwire: {e}");
            return ExitCode::from(1);
        }
    };
    let signal = shutdown_signal();
    eprintln!("listening on http://{bound}{path}");
    server.shutdown_on(signal).await;
    // Every request is answered; let the lines of the last ones reach stdout (bounded: a
    // stdout nobody reads must not keep the process alive).
    l.out.drain(Duration::from_secs(2)).await;
    ExitCode::SUCCESS
}

/// Installs the SIGINT/SIGTERM handlers now (before readiness is announced, so a signal sent
/// right after "listening on" is never lost to the default action) and returns a future that
/// completes on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            match (int, term) {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn header_str<'h>(h: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    match h.lookup(name) {
        HeaderLookup::One(v) => std::str::from_utf8(v).ok().filter(|s| !s.is_empty()),
        _ => None,
    }
}

fn reply(status: StatusCode, body: Bytes, replayed: bool) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    if replayed {
        r.headers_mut()
            .insert(REPLAYED_HEADER, http::HeaderValue::from_static("true"));
    }
    r
}

impl Listener {
    async fn handle(&self, req: Request<RequestBody>) -> Response<Full<Bytes>> {
        if req.method() != http::Method::POST || req.uri().path() != self.path {
            return Rejection::from(Reason::NotFound).to_response();
        }
        let (parts, body) = req.into_parts();
        let body = match hookwire_receiver::read_limited(body, self.gate.max_body_len()).await {
            Ok(b) => b,
            Err(r) => return r.to_response(),
        };
        let (checked, deduped) = match self.gate.check(&parts.headers, &body).await.into_result() {
            Ok(c) => c,
            Err(r) => return r.to_response(),
        };
        let line = Self::line(&parts.headers, &body, &checked, deduped);
        // Room for the line first: a request whose line could not be printed is refused (and
        // its claim released) before anything is processed.
        let Some(slot) = self.out.reserve(line.len()) else {
            if let Some(g) = checked.guard {
                g.release().await;
            }
            return output_busy();
        };
        if deduped {
            slot.print(line);
            return reply(StatusCode::NO_CONTENT, Bytes::new(), true);
        }
        let (status, resp_body) = match &self.forward {
            Some(f) => {
                let call = forward(f, &parts.headers, body, self.forward_timeout);
                let answer = match &checked.guard {
                    Some(g) => g.renew_while(self.lease, call).await,
                    None => call.await,
                };
                match answer {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "forward failed; releasing the claim");
                        if let Some(g) = checked.guard {
                            g.release().await;
                        }
                        return Rejection::from(Reason::ForwardFailed).to_response();
                    }
                }
            }
            None => (StatusCode::NO_CONTENT, Bytes::new()),
        };
        if let Some(g) = checked.guard {
            g.finish(status.as_u16()).await;
        }
        if status.as_u16() < 400 {
            slot.print(line);
        }
        reply(status, resp_body, false)
    }

    fn line(headers: &http::HeaderMap, body: &[u8], checked: &Admission, deduped: bool) -> String {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let ty = checked
            .verified
            .as_ref()
            .and_then(|v| v.event_type.clone())
            .or_else(|| {
                ["webhook-event", "x-webhook-event", "x-github-event"]
                    .into_iter()
                    .find_map(|n| header_str(headers, n).map(str::to_owned))
            })
            .or_else(|| {
                parsed
                    .as_ref()
                    .and_then(|v| v.get("type"))
                    .and_then(|t| t.as_str())
                    .map(str::to_owned)
            });
        let body = parsed.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned().into());
        serde_json::json!({
            "key": checked.key,
            "deduped": deduped,
            "scheme": checked.scheme().map(|s| s.as_str()),
            "type": ty,
            "body": body,
        })
        .to_string()
    }
}

/// Hop-by-hop headers that must not be relayed.
const HOP: [&str; 6] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
];

/// Sends the request to the app and reads its answer, status and body, within `timeout`.
async fn forward(
    f: &Forward,
    headers: &http::HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), String> {
    tokio::time::timeout(timeout, forward_once(f, headers, body))
        .await
        .map_err(|_| format!("the app did not answer within {timeout:?}"))?
}

async fn forward_once(
    f: &Forward,
    headers: &http::HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(&f.addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    // Dropped with this future on timeout: the connection to a stuck app is closed.
    let conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let mut req = Request::post(f.path.as_str()).header(http::header::HOST, f.host.as_str());
    for (k, v) in headers {
        if !HOP.contains(&k.as_str()) {
            req = req.header(k, v);
        }
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), 1024 * 1024)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    drop(conn);
    Ok((status, body))
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

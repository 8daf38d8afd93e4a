//! `hookwire listen`: a receiver on an address that verifies, de-duplicates and prints (or
//! forwards) each accepted webhook.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hookwire_core::signing::{HeaderLookup, HeaderSource, SchemeChoice, VerifyOptions};
use hookwire_core::{IdempotencyConfig, IdempotencyStore, KeyRing, MemoryStore, Secret};
use hookwire_receiver::server::TimedBody;
use hookwire_receiver::{Gate, REPLAYED_HEADER, Rejection};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::common::usage_error;

/// Receive webhooks: verify, de-duplicate, print one JSON line per accepted request.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  hookwire listen --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw --scheme auto \\\n    --addr 127.0.0.1:4001 --path /webhook --redis redis://127.0.0.1:6379 --forward-to http://127.0.0.1:3000/hooks"
)]
pub(crate) struct Args {
    /// A secret; repeat for key rotation (valid if any verifies).
    #[arg(long, required = true)]
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
    #[arg(long, default_value_t = hookwire_receiver::DEFAULT_MAX_BODY)]
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
}

struct Listener {
    gate: Gate,
    path: String,
    forward: Option<Forward>,
    out: Mutex<std::io::Stdout>,
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
    let config = IdempotencyConfig::default();
    let store: Arc<dyn IdempotencyStore> = match &a.redis {
        Some(url) => match hookwire_receiver::RedisStore::open(url, config) {
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
        .max_body(a.max_body);
    let listener = Arc::new(Listener {
        gate,
        path: a.path,
        forward,
        out: Mutex::new(std::io::stdout()),
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
    let server = match hookwire_receiver::server::serve_with(tcp, move |req| {
        let l = l.clone();
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
    async fn handle(&self, req: Request<TimedBody>) -> Response<Full<Bytes>> {
        if req.method() != http::Method::POST || req.uri().path() != self.path {
            return Rejection::new(404, "not-found").to_response();
        }
        let (parts, body) = req.into_parts();
        let body = match hookwire_receiver::read_limited(body, self.gate.max_body_len()).await {
            Ok(b) => b,
            Err(r) => return r.to_response(),
        };
        let checked = match self.gate.check(&parts.headers, &body).await {
            Ok(c) => c,
            Err(r) => return r.to_response(),
        };
        let line = Self::line(&parts.headers, &body, &checked);
        if checked.deduped {
            self.print(&line);
            return reply(StatusCode::NO_CONTENT, Bytes::new(), true);
        }
        let (status, resp_body) = match &self.forward {
            Some(f) => match forward(f, &parts.headers, body).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "forward failed; releasing the claim");
                    if let Some(g) = checked.guard {
                        g.release().await;
                    }
                    return Rejection::new(502, "forward-failed").to_response();
                }
            },
            None => (StatusCode::NO_CONTENT, Bytes::new()),
        };
        if let Some(g) = checked.guard {
            g.finish(status.as_u16()).await;
        }
        if status.as_u16() < 400 {
            self.print(&line);
        }
        reply(status, resp_body, false)
    }

    fn line(
        headers: &http::HeaderMap,
        body: &[u8],
        checked: &hookwire_receiver::Checked,
    ) -> String {
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
            "deduped": checked.deduped,
            "scheme": checked.scheme().map(|s| s.as_str()),
            "type": ty,
            "body": body,
        })
        .to_string()
    }

    fn print(&self, line: &str) {
        // One write per line under the lock: concurrent requests never interleave.
        let out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = out.lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
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

async fn forward(
    f: &Forward,
    headers: &http::HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Bytes), String> {
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(&f.addr),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::post(f.path.as_str()).header(http::header::HOST, f.host.as_str());
    for (k, v) in headers {
        if !HOP.contains(&k.as_str()) {
            req = req.header(k, v);
        }
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(30), send.send_request(req))
        .await
        .map_err(|_| "the app timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), 1024 * 1024)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

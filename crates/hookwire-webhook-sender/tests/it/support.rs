//! A real HTTP sink on 127.0.0.1 for the end-to-end tests, scripted per request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request the sink received.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) method: http::Method,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) at: Instant,
}

/// What the sink answers.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) delay: Duration,
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: &'static str,
}

impl Reply {
    pub(crate) fn status(status: u16) -> Self {
        Self {
            delay: Duration::ZERO,
            status,
            headers: Vec::new(),
            body: "",
        }
    }
    pub(crate) fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
    pub(crate) fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
    pub(crate) fn body(mut self, b: &'static str) -> Self {
        self.body = b;
        self
    }
}

type Script = Arc<dyn Fn(usize, &Hit) -> Reply + Send + Sync>;

/// A hyper HTTP/1.1 server; `script(n, hit)` decides the reply to the n-th request (0-based).
pub(crate) struct Sink {
    pub(crate) addr: SocketAddr,
    pub(crate) hits: Arc<Mutex<Vec<Hit>>>,
    /// Connections accepted so far.
    pub(crate) conns: Arc<std::sync::atomic::AtomicUsize>,
    /// Most requests in flight at once.
    pub(crate) max_inflight: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl Sink {
    pub(crate) async fn start(
        script: impl Fn(usize, &Hit) -> Reply + Send + Sync + 'static,
    ) -> Sink {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(l, Arc::new(script))
    }

    pub(crate) async fn start_on(
        addr: SocketAddr,
        script: impl Fn(usize, &Hit) -> Reply + Send + Sync + 'static,
    ) -> Sink {
        let l = TcpListener::bind(addr).await.unwrap();
        Self::serve(l, Arc::new(script))
    }

    /// Always answers `status`.
    pub(crate) async fn always(status: u16) -> Sink {
        Self::start(move |_, _| Reply::status(status)).await
    }

    fn serve(l: TcpListener, script: Script) -> Sink {
        let addr = l.local_addr().unwrap();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let h = Arc::clone(&hits);
        let conns: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let c = Arc::clone(&conns);
        let max_inflight: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let inflight: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let (mx, inf) = (Arc::clone(&max_inflight), inflight);
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let h = Arc::clone(&h);
                let script = Arc::clone(&script);
                let (mx, inf) = (Arc::clone(&mx), Arc::clone(&inf));
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let h = Arc::clone(&h);
                        let script = Arc::clone(&script);
                        let (mx, inf) = (Arc::clone(&mx), Arc::clone(&inf));
                        async move {
                            use std::sync::atomic::Ordering::SeqCst;
                            let now = inf.fetch_add(1, SeqCst) + 1;
                            mx.fetch_max(now, SeqCst);
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let hit = Hit {
                                method: parts.method,
                                path: parts.uri.path().to_owned(),
                                headers: parts.headers,
                                body,
                                at: Instant::now(),
                            };
                            let n = {
                                let mut v = h.lock().unwrap();
                                v.push(hit.clone());
                                v.len() - 1
                            };
                            let r = script(n, &hit);
                            tokio::time::sleep(r.delay).await;
                            inf.fetch_sub(1, SeqCst);
                            let mut resp =
                                Response::new(Full::new(Bytes::from_static(r.body.as_bytes())));
                            *resp.status_mut() = StatusCode::from_u16(r.status).unwrap();
                            for (k, v) in r.headers {
                                resp.headers_mut().insert(k, v.parse().unwrap());
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Sink {
            addr,
            hits,
            conns,
            max_inflight,
            task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub(crate) fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    pub(crate) fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Stop accepting so a test can take the sink down; open connections end with the runtime.
        self.task.abort();
    }
}

/// A raw TCP server that answers a 200 head promising 100 bytes, sends 3, then stalls for
/// `stall` — the timeout must cover the body read. Answers normally (200, full body) from the
/// `ok_from`-th connection on. Returns the address and a connection counter.
pub(crate) async fn stalling_body_server(
    ok_from: usize,
    stall: Duration,
) -> (SocketAddr, Arc<Mutex<usize>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(Mutex::new(0usize));
    let n2 = Arc::clone(&n);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let i = {
                let mut g = n2.lock().unwrap();
                *g += 1;
                *g
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // Read until the end of the head and the Content-Length body.
                loop {
                    let Ok(k) = s.read(&mut buf).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..k]);
                    if let Some(pos) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..pos]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= pos + 4 + len {
                            break;
                        }
                    }
                }
                if i >= ok_from {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                } else {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc")
                        .await;
                    tokio::time::sleep(stall).await;
                }
            });
        }
    });
    (addr, n)
}

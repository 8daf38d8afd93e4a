//! End-to-end over real sockets: snapshot then patches, drop, resume with `Last-Event-ID`,
//! a stalled client, status codes, and the event stream with filters.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hookwire_sse::http::{Access, Public, RequestInfo, SseApp, SseConfig};
use hookwire_sse::{BroadcastChannel, ChannelConfig, EventBroadcast, QueueLimits};
use serde_json::{Value, json};

use crate::support::Client;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

async fn start(app: SseApp) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(hookwire_sse::http::serve(l, app));
    addr
}

pub(crate) async fn resume_gets_exactly_the_missed_patches(
    addr: SocketAddr,
    ch: &BroadcastChannel,
) {
    ch.publish("board", json!({"_v": 0, "cards": {}}), vec![])
        .unwrap();
    let mut c = Client::connect(addr, "/events/board", None).await;
    assert_eq!(c.status, 200);
    assert_eq!(
        c.header("content-type").as_deref(),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(
        c.header("cache-control").as_deref(),
        Some("no-cache, no-store")
    );
    assert_eq!(c.header("x-accel-buffering").as_deref(), Some("no"));
    let snap = c.next(WAIT).await.unwrap();
    assert_eq!(
        (snap.event.as_str(), snap.id.as_deref()),
        ("snapshot", Some("0"))
    );
    assert!(
        c.retry.is_some_and(|r| (1000..4000).contains(&r)),
        "{:?}",
        c.retry
    );
    let mut state = snap.json();
    for v in 1..=2u64 {
        ch.publish(
            "board",
            json!({"_v": v, "cards": {"c": v}}),
            vec![json!({"cards": {"c": v}})],
        )
        .unwrap();
        let ev = c.next(WAIT).await.unwrap();
        assert_eq!(
            (ev.event.as_str(), ev.id.clone()),
            ("patch", Some(v.to_string()))
        );
        state = hookwire_sse::apply_patch_message(&ev.json(), Some(&state)).unwrap();
    }
    drop(c);
    for v in 3..=5u64 {
        ch.publish(
            "board",
            json!({"_v": v, "cards": {"c": v}}),
            vec![json!({"cards": {"c": v}})],
        )
        .unwrap();
    }
    let mut c = Client::connect(addr, "/events/board", Some("2")).await;
    let mut ids = Vec::new();
    while let Some(ev) = c.next(QUIET).await {
        assert_eq!(ev.event, "patch");
        state = hookwire_sse::apply_patch_message(&ev.json(), Some(&state)).unwrap();
        ids.push(ev.id.unwrap());
    }
    assert_eq!(ids, ["3", "4", "5"], "exactly the missed patches");
    assert_eq!(state, *ch.state("board").unwrap());
    // Query parameter form (the first connect of a browser) and garbage → snapshot.
    let mut c = Client::connect(addr, "/events/board?last_event_id=4", None).await;
    assert_eq!(c.next(WAIT).await.unwrap().id.as_deref(), Some("5"));
    for garbage in ["x", "99", "-1"] {
        let mut c = Client::connect(addr, "/events/board", Some(garbage)).await;
        assert_eq!(c.next(WAIT).await.unwrap().event, "snapshot", "{garbage}");
    }
}

#[tokio::test]
async fn hyper_snapshot_patches_resume() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    let addr = start(SseApp::new(ch.clone(), SseConfig::default().auth(Public))).await;
    resume_gets_exactly_the_missed_patches(addr, &ch).await;
}

/// Three fast clients receive `frames` patches after version `from`; returns how long until
/// all of them had every frame. Asserts order, no loss and no resync for them.
async fn fast_round(addr: SocketAddr, ch: &BroadcastChannel, from: u64, frames: u64) -> Duration {
    let mut fast = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(addr, "/events/s", None).await;
        assert_eq!(c.next(WAIT).await.unwrap().event, "snapshot");
        fast.push(c);
    }
    let end = from + frames;
    let readers: Vec<_> = fast
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut last = from;
                while last < end {
                    let ev = c.next(WAIT).await.expect("fast client keeps receiving");
                    assert!(
                        !ev.data.contains("_resync"),
                        "fast clients are never resynced"
                    );
                    let v: u64 = ev.id.as_deref().unwrap().parse().unwrap();
                    assert_eq!(v, last + 1, "in order, nothing lost");
                    last = v;
                }
            })
        })
        .collect();
    let blob = "x".repeat(8000);
    let start = Instant::now();
    for v in from + 1..=end {
        ch.publish(
            "s",
            json!({"_v": v, "blob": blob}),
            vec![json!({"blob": blob, "n": v})],
        )
        .unwrap();
        // Pace the publisher a little so the fast readers (sharing two cores with it) are
        // never the ones that fall behind.
        if v % 8 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    for r in readers {
        r.await.unwrap();
    }
    start.elapsed()
}

pub(crate) async fn stalled_client_does_not_slow_the_others(
    addr: SocketAddr,
    ch: &BroadcastChannel,
) {
    ch.publish("s", json!({"_v": 0}), vec![]).unwrap();
    // Baseline: the fast clients alone.
    let without = fast_round(addr, ch, 0, 200).await;
    // A client with a tiny receive buffer that never reads.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    let stalled_tcp = sock.connect(addr).await.unwrap();
    let stalled = Client::connect_with(stalled_tcp, "/events/s", None, "").await;
    // ≈ 3.2 MB of 8 KB frames: far beyond the stalled socket's buffers and its queue bound.
    // If a publish waited for the stalled client, the fast clients would time out.
    let with = fast_round(addr, ch, 200, 400).await;
    // Printed for the record; the assertions are structural, not timing (house rule).
    let per = |d: Duration, n: u32| d / n;
    println!(
        "stalled client: fast clients {:?}/frame without it, {:?}/frame with it (ratio {:.2})",
        per(without, 200),
        per(with, 400),
        per(with, 400).as_secs_f64() / per(without, 200).as_secs_f64()
    );
    assert!(
        ch.stats().overflow_resyncs >= 1,
        "the stalled client's queue overflowed: {:?}",
        ch.stats()
    );
    // When it finally reads, the stalled client is told to refetch instead of replaying.
    let mut stalled = stalled;
    let mut saw_resync = false;
    while let Some(ev) = stalled.next(QUIET).await {
        saw_resync |= ev.data.contains("_resync");
    }
    assert!(saw_resync, "stalled client gets _resync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_stalled_client() {
    let ch: BroadcastChannel =
        BroadcastChannel::with_config(ChannelConfig::default().queue(QueueLimits {
            frames: 128,
            bytes: 512 * 1024,
        }));
    let addr = start(SseApp::new(ch.clone(), SseConfig::default().auth(Public))).await;
    stalled_client_does_not_slow_the_others(addr, &ch).await;
}

#[tokio::test]
async fn statuses_are_deliberate() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    ch.publish("open", json!({"_v": 1, "a": "x\ny"}), vec![])
        .unwrap();
    let auth = |r: &RequestInfo<'_>| {
        if r.stream == "secret" && r.headers.get("authorization").is_none() {
            Err(http::StatusCode::UNAUTHORIZED)
        } else {
            Ok(Access::all())
        }
    };
    let addr = start(SseApp::new(ch.clone(), SseConfig::default().auth(auth))).await;
    for (path, status) in [
        ("/events/secret", 401),
        ("/events/bad%20name", 400),
        ("/nope", 404),
        ("/state/missing", 404),
        ("/events/secret-not", 200),
    ] {
        let c = Client::connect(addr, path, None).await;
        assert_eq!(c.status, status, "{path}");
    }
    let mut c = Client::connect(addr, "/state/open", None).await;
    assert_eq!(c.status, 200);
    let body = c.read_to_end(QUIET).await;
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains(r#"{"_v":1,"a":"x\ny"}"#), "{text}");
    let mut c = Client::connect(addr, "/hookwire-sse.js", None).await;
    assert_eq!(c.status, 200);
    assert!(String::from_utf8_lossy(&c.read_to_end(QUIET).await).contains("applyPatchMessage"));
}

#[tokio::test]
async fn keep_alive_comments_flow_on_idle_streams() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    let cfg = SseConfig::default()
        .auth(Public)
        .keep_alive(Duration::from_millis(50));
    let app = SseApp::new(ch.clone(), cfg).with_events(EventBroadcast::new(8));
    let addr = start(app).await;
    for path in ["/events/idle", "/events?filter=*"] {
        let mut c = Client::connect(addr, path, None).await;
        let bytes = c.read_to_end(Duration::from_millis(400)).await;
        let n = bytes.windows(5).filter(|w| w == b":\n\n\r\n").count();
        assert!(
            n >= 2,
            "{path} keep-alives: {n} in {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[tokio::test]
async fn event_stream_filters_by_pattern_and_organization() {
    use hookwire_core::Event;
    let ch: BroadcastChannel = BroadcastChannel::new();
    let events = EventBroadcast::new(64);
    // Demo-style authenticator: `Authorization: Bearer user@org` scopes to `org`.
    let auth =
        |r: &RequestInfo<'_>| match r.headers.get("authorization").and_then(|v| v.to_str().ok()) {
            Some(t) => Ok(Access::organization(
                t.rsplit('@').next().unwrap_or_default(),
            )),
            None => Ok(Access::all()),
        };
    let app = SseApp::new(ch, SseConfig::default().auth(auth)).with_events(events.clone());
    let addr = start(app).await;
    let mut c = Client::connect(addr, "/events?filter=order.*", None).await;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut acme = Client::connect_with(
        tcp,
        "/events?filter=order.paid",
        None,
        "Authorization: Bearer ann@acme\r\n",
    )
    .await;
    let mut bad = Client::connect(addr, "/events?filter=order.*.x", None).await;
    assert_eq!(bad.status, 400);
    let _ = bad.read_to_end(QUIET).await;
    while events.subscriber_count() < 2 {
        tokio::task::yield_now().await;
    }
    events.publish(&Event::new("user.created", json!({})));
    events.publish(
        &Event::new("order.paid", json!({"who": "globex\r\nevent: x"})).with_organization("globex"),
    );
    events.publish(&Event::new("order.paid", json!({"n": 2})).with_organization("acme"));
    let a = c.next(WAIT).await.unwrap();
    assert_eq!(
        (a.event.as_str(), a.id.as_deref()),
        ("order.paid", Some("2"))
    );
    assert_eq!(a.json()["data"]["who"], "globex\r\nevent: x");
    assert_eq!(c.next(WAIT).await.unwrap().id.as_deref(), Some("3"));
    let only = acme.next(WAIT).await.unwrap();
    assert_eq!(only.json()["data"]["n"], 2);
    assert!(acme.next(QUIET).await.is_none(), "no cross-tenant delivery");
}

#[cfg(feature = "axum")]
async fn start_axum(app: SseApp) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let router = hookwire_sse::axum::sse_router(app);
    use axum::serve::ListenerExt;
    let l = l.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(l, router).await });
    addr
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_snapshot_patches_resume() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    let addr = start_axum(SseApp::new(ch.clone(), SseConfig::default().auth(Public))).await;
    resume_gets_exactly_the_missed_patches(addr, &ch).await;
}

#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_stalled_client() {
    let ch: BroadcastChannel =
        BroadcastChannel::with_config(ChannelConfig::default().queue(QueueLimits {
            frames: 128,
            bytes: 512 * 1024,
        }));
    let addr = start_axum(SseApp::new(ch.clone(), SseConfig::default().auth(Public))).await;
    stalled_client_does_not_slow_the_others(addr, &ch).await;
}

async fn start_lean(ch: &BroadcastChannel, cfg: SseConfig, max: usize) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = hookwire_sse::lean::LeanAcceptor::new(ch.clone(), cfg).max_subscribers(max);
    tokio::spawn(acceptor.serve(l));
    addr
}

#[tokio::test]
async fn lean_snapshot_patches_resume() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    let addr = start_lean(&ch, SseConfig::default().auth(Public), 100).await;
    resume_gets_exactly_the_missed_patches(addr, &ch).await;
}

/// Bursts published while every lean subscriber waits reach each of them whole and in order
/// (they are read from the stream's log as one joined buffer), and a shorter burst after a
/// longer one carries nothing of the earlier one.
#[tokio::test]
async fn lean_bursts_reach_every_subscriber_whole_and_in_order() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    ch.publish("board", json!({"_v": 0, "n": 0}), vec![])
        .unwrap();
    let addr = start_lean(&ch, SseConfig::default().auth(Public), 100).await;
    let mut clients = Vec::new();
    let mut states = Vec::new();
    for _ in 0..8 {
        let mut c = Client::connect(addr, "/events/board", None).await;
        let snap = c.next(WAIT).await.unwrap();
        assert_eq!(snap.event, "snapshot");
        states.push(snap.json());
        clients.push(c);
    }
    let mut v = 0u64;
    for burst in [50u64, 3] {
        // No await between publishes: every subscriber is woken once for the whole burst.
        for _ in 0..burst {
            v += 1;
            ch.publish("board", json!({"_v": v, "n": v}), vec![json!({"n": v})])
                .unwrap();
        }
        for (c, state) in clients.iter_mut().zip(states.iter_mut()) {
            for want in v - burst + 1..=v {
                let ev = c.next(WAIT).await.unwrap();
                assert_eq!(
                    (ev.event.as_str(), ev.id.clone()),
                    ("patch", Some(want.to_string()))
                );
                *state = hookwire_sse::apply_patch_message(&ev.json(), Some(state)).unwrap();
            }
            assert_eq!(*state, *ch.state("board").unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lean_stalled_client() {
    let ch: BroadcastChannel =
        BroadcastChannel::with_config(ChannelConfig::default().queue(QueueLimits {
            frames: 128,
            bytes: 512 * 1024,
        }));
    let addr = start_lean(&ch, SseConfig::default().auth(Public), 100).await;
    stalled_client_does_not_slow_the_others(addr, &ch).await;
}

#[tokio::test]
async fn lean_statuses_and_limits() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    ch.publish("open", json!({"_v": 1}), vec![]).unwrap();
    let auth = |r: &RequestInfo<'_>| {
        if r.stream == "secret" {
            Err(http::StatusCode::FORBIDDEN)
        } else {
            Ok(Access::all())
        }
    };
    let addr = start_lean(&ch, SseConfig::default().auth(auth), 1).await;
    for (path, status) in [
        ("/events/secret", 403),
        ("/events/a%2Fb", 400),
        ("/x", 404),
        ("/state/none", 404),
    ] {
        assert_eq!(
            Client::connect(addr, path, None).await.status,
            status,
            "{path}"
        );
    }
    let mut st = Client::connect(addr, "/state/open", None).await;
    assert_eq!(st.status, 200);
    assert_eq!(st.read_to_end(QUIET).await, br#"{"_v":1}"#);
    // One stream allowed: the second gets 503 until the first goes away.
    let mut first = Client::connect(addr, "/events/open", None).await;
    assert_eq!(first.next(WAIT).await.unwrap().event, "snapshot");
    assert_eq!(
        Client::connect(addr, "/events/open", None).await.status,
        503
    );
    drop(first);
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if Client::connect(addr, "/events/open", None).await.status == 200 {
            ok = true;
            break;
        }
    }
    assert!(ok, "slot freed after disconnect");
    // Oversized and malformed heads.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for req in [
        format!(
            "GET /events/open HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(9000)
        ),
        "BAD\0\r\n\r\n".to_owned(),
    ] {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = tcp.write_all(req.as_bytes()).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 431") || text.starts_with("HTTP/1.1 400"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn lean_ends_the_stream_on_disconnect() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    ch.publish("s", json!({"_v": 1}), vec![]).unwrap();
    let addr = start_lean(&ch, SseConfig::default().auth(Public), 10).await;
    let mut c = Client::connect(addr, "/events/s", None).await;
    assert_eq!(c.next(WAIT).await.unwrap().event, "snapshot");
    ch.disconnect("s");
    let rest = c.read_to_end(WAIT).await;
    assert!(
        rest.ends_with(b"0\r\n\r\n"),
        "chunked end: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Presence follows open connections: two tabs of one identity need two disconnects.
async fn presence_follows_connections(addr: SocketAddr, ch: &BroadcastChannel) {
    ch.publish("room", json!({"_v": 1}), vec![]).unwrap();
    let online = |ch: &BroadcastChannel| ch.state("room").unwrap().get("online").cloned();
    async fn until(ch: &BroadcastChannel, want: Value) {
        for _ in 0..250 {
            if ch.state("room").unwrap().get("online") == Some(&want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("online never became {want}: {:?}", ch.state("room"));
    }
    let open = |who: &'static str| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut c = Client::connect_with(
            tcp,
            "/events/room",
            None,
            &format!("Authorization: Bearer {who}\r\n"),
        )
        .await;
        assert_eq!(c.next(WAIT).await.unwrap().event, "snapshot");
        c
    };
    let ann1 = open("ann@acme").await;
    until(ch, json!(["ann@acme"])).await;
    let mut ann2 = open("ann@acme").await;
    let bob = open("bob@acme").await;
    until(ch, json!(["ann@acme", "bob@acme"])).await;
    // The other subscribers saw the roster as an overlay at the same version.
    let ev = ann2.next(WAIT).await.unwrap();
    assert!(
        ev.data.contains("_overlay") && ev.data.contains("bob@acme"),
        "{ev:?}"
    );
    assert_eq!(ev.id.as_deref(), Some("1"));
    drop(ann1);
    drop(bob);
    until(ch, json!(["ann@acme"])).await;
    drop(ann2);
    until(ch, json!([])).await;
    assert!(online(ch).is_some());
}

fn presence_app(ch: &BroadcastChannel) -> SseApp {
    let auth = |r: &RequestInfo<'_>| {
        let who = r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.strip_prefix("Bearer "));
        match who {
            Some(w) => {
                Ok(Access::organization(w.rsplit('@').next().unwrap_or_default()).with_identity(w))
            }
            None => Err(http::StatusCode::UNAUTHORIZED),
        }
    };
    SseApp::new(ch.clone(), SseConfig::default().auth(auth)).with_presence(
        std::sync::Arc::new(hookwire_sse::PresenceTracker::new()),
        "online",
    )
}

#[tokio::test]
async fn hyper_presence() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    let addr = start(presence_app(&ch)).await;
    presence_follows_connections(addr, &ch).await;
}

#[tokio::test]
async fn lean_presence() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(hookwire_sse::lean::LeanAcceptor::from_app(presence_app(&ch)).serve(l));
    presence_follows_connections(addr, &ch).await;
}

/// A standalone `SseApp` (and the lean acceptor on the same config) without an explicit
/// authentication choice refuses every stream with 401 instead of serving it publicly;
/// choosing `Public` serves it.
#[tokio::test]
async fn an_app_without_an_auth_choice_refuses_every_stream() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    ch.publish("board", json!({"_v": 1}), vec![]).unwrap();
    let hyper = start(SseApp::new(ch.clone(), SseConfig::default())).await;
    let lean = start_lean(&ch, SseConfig::default(), 10).await;
    for addr in [hyper, lean] {
        for path in ["/events/board", "/state/board"] {
            assert_eq!(
                Client::connect(addr, path, None).await.status,
                401,
                "{path}"
            );
        }
    }
    let public = start(SseApp::new(ch.clone(), SseConfig::default().auth(Public))).await;
    assert_eq!(
        Client::connect(public, "/events/board", None).await.status,
        200
    );
}

/// The hook returns a service account; the scope rules refuse what it lacks on every server
/// (hyper and lean), with a 403 naming the scope (RFC 6750 `insufficient_scope`).
#[tokio::test]
async fn a_service_account_without_a_rules_scope_is_refused_with_insufficient_scope() {
    let ch: BroadcastChannel = BroadcastChannel::new();
    ch.publish("audit", json!({"_v": 1}), vec![]).unwrap();
    ch.publish("board", json!({"_v": 1}), vec![]).unwrap();
    let mut rules = hookwire_core::scope::ScopeRules::new();
    rules.require("audit.*", "audit:read").unwrap();
    let auth = |r: &RequestInfo<'_>| {
        let q = r.query.unwrap_or("");
        let scopes: &[&str] = if q.contains("grant") {
            &["audit:read"]
        } else {
            &[]
        };
        Ok(Access::organization("acme").with_service("etl", scopes))
    };
    let cfg = SseConfig::default().auth(auth).scope_rules(rules);
    let events = EventBroadcast::new(8);
    let hyper = start(SseApp::new(ch.clone(), cfg.clone()).with_events(events.clone())).await;
    let lean = start_lean(&ch, cfg, 10).await;
    let refused = |c: &Client| {
        let head = c.head.to_ascii_lowercase();
        c.status == 403
            && head.contains(
                r#"www-authenticate: bearer error="insufficient_scope", scope="audit:read""#,
            )
    };
    for addr in [hyper, lean] {
        for path in ["/events/audit", "/state/audit"] {
            let c = Client::connect(addr, path, None).await;
            assert!(refused(&c), "{path}: {}", c.head);
        }
        assert_eq!(
            Client::connect(addr, "/events/board", None).await.status,
            200
        );
        assert_eq!(
            Client::connect(addr, "/events/audit?grant", None)
                .await
                .status,
            200
        );
    }
    for path in [
        "/events?filter=audit.*",
        "/events?filter=*",
        "/events?filter=order.*,audit.login",
    ] {
        let c = Client::connect(hyper, path, None).await;
        assert!(refused(&c), "{path}: {}", c.head);
    }
    let mut ok = Client::connect(hyper, "/events?filter=audit.*&grant", None).await;
    assert_eq!(ok.status, 200);
    while events.subscriber_count() < 1 {
        tokio::task::yield_now().await;
    }
    for org in ["globex", "acme"] {
        events.publish(
            &hookwire_core::Event::new("audit.login", json!({"org": org})).with_organization(org),
        );
    }
    // Still scoped to its organization: globex's event never arrives.
    assert_eq!(ok.next(WAIT).await.unwrap().json()["data"]["org"], "acme");
    assert!(ok.next(QUIET).await.is_none(), "no cross-tenant delivery");
}

//! `hookwire demo` as a black box: the real binary on a free port, real sockets, a real
//! redis-server, and a headless Chromium loading the page.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use hookwire_testkit::browser::Chromium;
use serde_json::Value;
use support::{Demo, eventually, http, screenshot_path};

fn state(addr: SocketAddr) -> Value {
    let (status, _, body) = http(addr, "GET", "/state/board", &[]);
    assert_eq!(status, 200, "GET /state/board: {body}");
    serde_json::from_str(&body).unwrap()
}

fn version(addr: SocketAddr) -> u64 {
    state(addr)["_v"].as_u64().expect("state has _v")
}

#[test]
fn fixed_routes_answer_as_the_spec_names_them() {
    let demo = Demo::start(&[]);
    let (status, _, body) = http(demo.addr, "GET", "/healthz", &[]);
    assert_eq!((status, body.as_str()), (200, "ok"));

    // The board advances: events go sender → receiver → job → board.
    let v0 = version(demo.addr);
    eventually(Duration::from_secs(10), "the board to advance", || {
        version(demo.addr) >= v0 + 3
    });
    let s = state(demo.addr);
    let orders = s["orders"].as_array().unwrap();
    assert!(!orders.is_empty() && orders.len() <= 8, "{s}");
    assert!(
        orders
            .iter()
            .all(|o| ["created", "paid", "shipped"].contains(&o["status"].as_str().unwrap()))
    );

    // The SSE stream starts with a snapshot whose id is the version.
    let mut sse = TcpStream::connect(demo.addr).unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        sse,
        "GET /events/board HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        demo.addr
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains("event: patch") {
        let n = sse.read(&mut chunk).unwrap();
        assert!(n > 0, "stream ended early");
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/event-stream"));
    let snap = text.find("event: snapshot").expect("a snapshot frame");
    assert!(
        snap < text.find("event: patch").unwrap(),
        "snapshot first: {text}"
    );

    // The page, the client script, and the WebSocket gateway's fail-closed auth.
    assert_eq!(http(demo.addr, "GET", "/", &[]).0, 200);
    let (status, head, body) = http(demo.addr, "GET", "/hookwire-sse.js", &[]);
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("javascript"), "{head}");
    assert!(body.contains("export function applyPatchMessage"));
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    assert_eq!(
        http(demo.addr, "GET", "/ws", &upgrade).0,
        401,
        "no token → 401"
    );
    let mut s = TcpStream::connect(demo.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET /ws?token=ann@acme HTTP/1.1\r\nHost: {}\r\n", demo.addr);
    for (k, v) in upgrade {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    s.write_all(format!("{req}\r\n").as_bytes()).unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101", "a demo token upgrades");

    // A forged webhook is refused: only the demo's own signed deliveries reach the board.
    let (status, _, body) = http(
        demo.addr,
        "POST",
        "/webhook",
        &[("Content-Type", "application/json")],
    );
    assert!(status == 400 || status == 401, "{status} {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_updates_live_shows_presence_and_survives_a_forced_resync() {
    let demo = Demo::start(&[]);
    let page = Chromium::open(&demo.url("/?user=ann@acme"))
        .await
        .expect("chromium");
    let t = Duration::from_secs(20);

    page.wait_for("window.demo && demo.state && demo.state._v > 0", t)
        .await
        .unwrap();
    let v1 = page.eval("demo.state._v").await.unwrap().as_u64().unwrap();
    page.wait_for(&format!("demo.state._v >= {}", v1 + 3), t)
        .await
        .unwrap();
    // The table on screen follows the state.
    page.wait_for("document.querySelectorAll('#orders tr').length > 0", t)
        .await
        .unwrap();
    // Both in one evaluation: a patch arriving between two would make them differ.
    let both = page
        .eval("[document.querySelectorAll('#orders tr').length, demo.state.orders.length]")
        .await
        .unwrap();
    assert_eq!(both[0], both[1], "rows on screen vs orders in the state");

    // Presence: this tab is online, and so is a second viewer while its stream is open.
    page.wait_for("(demo.state.online || []).includes('ann@acme')", t)
        .await
        .unwrap();
    let mut other = TcpStream::connect(demo.addr).unwrap();
    write!(
        other,
        "GET /events/board?user=bob@globex HTTP/1.1\r\nHost: {}\r\n\r\n",
        demo.addr
    )
    .unwrap();
    page.wait_for("(demo.state.online || []).includes('bob@globex')", t)
        .await
        .unwrap();
    drop(other);
    page.wait_for("!(demo.state.online || []).includes('bob@globex')", t)
        .await
        .unwrap();

    // WebSocket: order events arrive, and only acme's (every third order is globex's).
    page.wait_for("demo.wsEvents.length >= 3", t).await.unwrap();
    let foreign = page
        .eval("demo.wsEvents.filter(e => e.meta.organizationId !== 'acme').length")
        .await
        .unwrap();
    assert_eq!(foreign, 0, "another tenant's event reached acme");
    let board_has_globex = page
        .eval("demo.state.orders.some(o => o.organization === 'globex')")
        .await
        .unwrap();
    assert_eq!(
        board_has_globex, true,
        "the board itself shows every organization"
    );

    // A server-side `_resync`: the client refetches /state/board and keeps following.
    let before = page
        .eval("demo.live.resyncs")
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    assert_eq!(http(demo.addr, "POST", "/demo/resync", &[]).0, 204);
    page.wait_for(&format!("demo.live.resyncs > {before}"), t)
        .await
        .unwrap();
    let v2 = page.eval("demo.state._v").await.unwrap().as_u64().unwrap();
    page.wait_for(&format!("demo.state._v >= {}", v2 + 3), t)
        .await
        .unwrap();
    // And it agrees with the server.
    let server = version(demo.addr);
    page.wait_for(&format!("demo.state._v >= {server}"), t)
        .await
        .unwrap();

    page.screenshot(screenshot_path("demo-screenshot.png"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_demos_on_one_redis_share_the_board() {
    let redis = hookwire_testkit::RedisServer::start().expect("redis-server");
    let url = redis.url();
    let a = Demo::start(&["--redis", &url]);
    let b = Demo::start(&["--redis", &url]);
    let t = Duration::from_secs(30);

    // Each process generates its own orders (ids prefixed with its port); both boards converge
    // on one shared state holding both.
    let prefix_a = format!("{}-", a.addr.port());
    let prefix_b = format!("{}-", b.addr.port());
    let has = |s: &Value, p: &str| {
        s["orders"].as_array().is_some_and(|o| {
            o.iter()
                .any(|o| o["id"].as_str().unwrap_or("").starts_with(p))
        })
    };

    // A browser on either node sees the other node's updates.
    let page_b = Chromium::open(&b.url("/?user=bea@acme"))
        .await
        .expect("chromium");
    let page_a = Chromium::open(&a.url("/?user=al@acme"))
        .await
        .expect("chromium");
    let js = |p: &str| format!("demo.state && demo.state.orders.some(o => o.id.startsWith('{p}'))");
    page_b.wait_for(&js(&prefix_a), t).await.unwrap();
    page_a.wait_for(&js(&prefix_b), t).await.unwrap();
    // Presence is shared (TTL leases in Redis): each page's roster shows the other node's user.
    let online = |u: &str| format!("demo.state && (demo.state.online || []).includes('{u}')");
    page_a.wait_for(&online("bea@acme"), t).await.unwrap();
    page_b.wait_for(&online("al@acme"), t).await.unwrap();

    // Both nodes serve the same versions: a state read on either is never behind the other's
    // by more than the events in flight.
    eventually(t, "both states to hold both nodes' orders", || {
        let (sa, sb) = (state(a.addr), state(b.addr));
        has(&sa, &prefix_b) && has(&sb, &prefix_a)
    });
    let va = version(a.addr);
    eventually(t, "node b to reach node a's version", || {
        version(b.addr) >= va
    });
    // Every update processed once: the shared counter equals the version.
    let s = state(a.addr);
    assert_eq!(s["processed"].as_u64(), s["_v"].as_u64(), "{s}");
}

/// Presence is bounded: past 100 users on the board further ones are served without appearing
/// in the roster (each join republishes the roster to every viewer); leaving frees a place.
#[test]
fn presence_is_bounded_per_stream() {
    let demo = Demo::start(&[]);
    let mut streams = Vec::new();
    for i in 0..120 {
        let mut s = TcpStream::connect(demo.addr).unwrap();
        write!(
            s,
            "GET /events/board?user=u{i}@acme HTTP/1.1\r\nHost: {}\r\n\r\n",
            demo.addr
        )
        .unwrap();
        streams.push(s);
    }
    // Every viewer but the last reads its stream, as a browser does: a stream nobody reads
    // fills its socket buffers with roster updates until the demo drops it as a slow consumer,
    // and its user leaves the roster (how many do depends on the machine's load).
    for s in &streams[..119] {
        let mut r = s.try_clone().unwrap();
        std::thread::spawn(move || std::io::copy(&mut r, &mut std::io::sink()));
    }
    let online = |addr| {
        state(addr)["online"]
            .as_array()
            .map_or(0, std::vec::Vec::len)
    };
    eventually(Duration::from_secs(20), "100 users online", || {
        online(demo.addr) == 100
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(online(demo.addr), 100, "the roster grew past its bound");
    // Every stream is still served: the 120th gets its snapshot.
    let mut last = streams.pop().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = last.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Leaving closes the socket (the reader above holds a second handle to it).
    streams[0].shutdown(std::net::Shutdown::Both).unwrap();
    eventually(Duration::from_secs(20), "a freed place", || {
        !state(demo.addr)["online"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == "u0@acme")
    });
}

/// `POST /demo/resync` (a refetch by every viewer) is rate limited: one per second, the rest
/// get 429 with `Retry-After`.
#[test]
fn resync_is_rate_limited() {
    let demo = Demo::start(&[]);
    assert_eq!(http(demo.addr, "POST", "/demo/resync", &[]).0, 204);
    let (status, head, _) = http(demo.addr, "POST", "/demo/resync", &[]);
    assert_eq!(status, 429);
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(http(demo.addr, "POST", "/demo/resync", &[]).0, 204);
}

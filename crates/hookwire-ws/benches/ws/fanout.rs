//! Room fan-out of `cargo xtask bench ws`: hookwire against the Node `ws` peer at two sizes,
//! driven by the same client in the same run, interleaved rounds.
//!
//! The client is single-threaded raw TCP (no WebSocket library), so it is not the bottleneck
//! of either server: it sends the upgrade request, parses server frames by their headers only,
//! answers application pings (`{"type":"ping"}`) and protocol pings, and counts text frames that
//! start with `{"type":"bench.tick"`. Publishes are commands on a control connection (user
//! `ctl`, not subscribed): `bench.publish` (one event) and `bench.burst` (M events back to back),
//! handled inside the server like an application publish.
//!
//! Per round and server: fan-out latency of single publishes (the median over publishes of the
//! per-publish p50/p99 over clients, from sending the command to each receipt) and burst
//! throughput (deliveries/s = N·M / time until every client has all M frames, the median of a
//! few bursts), at N = 2 000 and, after growing the same fleet, N = 10 000.

#![allow(clippy::print_stderr, reason = "the bench reports progress on stderr")]

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hookwire_testkit::bench::median;
use tokio::net::TcpStream;

const TICK: &[u8] = br#"{"type":"bench.tick""#;
const PING: &[u8] = br#"{"type":"ping"}"#;
const PONG: &[u8] = br#"{"type":"pong"}"#;
const CONNECTED: &[u8] = br#"{"type":"connected""#;
const SUBSCRIBED: &[u8] = br#"{"type":"subscribed""#;
const SUBSCRIBE: &[u8] = br#"{"type":"subscribe","resource":"bench"}"#;
const MASK: [u8; 4] = [0x5a, 0x1c, 0xe3, 0x07];

/// Sizes and counts of the fan-out phase.
pub(crate) struct Params {
    pub(crate) rounds: usize,
    pub(crate) sizes: [usize; 2],
    pub(crate) warmup: usize,
    pub(crate) publishes: usize,
    pub(crate) spacing: Duration,
    pub(crate) bursts: usize,
    pub(crate) burst: usize,
}

/// Client state shared by every connection task (one thread, so `Cell`s).
#[derive(Default)]
struct Shared {
    carry: RefCell<Vec<Vec<u8>>>,
    subscribed: Cell<usize>,
    got: Cell<usize>,
    target: Cell<usize>,
    sent_at: Cell<Option<Instant>>,
    last: Cell<Option<Instant>>,
    lat_ns: RefCell<Vec<u64>>,
    notify: tokio::sync::Notify,
    scratch: RefCell<Vec<u8>>,
}

impl Shared {
    fn arm(&self, target: usize) {
        self.got.set(0);
        self.target.set(target);
        self.lat_ns.borrow_mut().clear();
        self.last.set(None);
        self.sent_at.set(Some(Instant::now()));
    }

    fn record(&self, now: Instant) {
        self.got.set(self.got.get() + 1);
        if let Some(t) = self.sent_at.get() {
            let ns = now.saturating_duration_since(t).as_nanos();
            self.lat_ns
                .borrow_mut()
                .push(u64::try_from(ns).unwrap_or(u64::MAX));
        }
        self.last.set(Some(now));
        if self.got.get() == self.target.get() {
            self.notify.notify_one();
        }
    }
}

/// A masked client frame (RFC 6455 §5.3: every client frame is masked).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 8);
    f.push(0x80 | opcode);
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(
            &u16::try_from(payload.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
    }
    f.extend_from_slice(&MASK);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    f
}

async fn write_all(tcp: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        tcp.writable().await?;
        match tcp.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Splits `buf` into complete server frames, calling `f(opcode, payload)` for each; returns the
/// bytes consumed (the rest is an incomplete frame).
fn frames(buf: &[u8], mut f: impl FnMut(u8, &[u8])) -> usize {
    let mut pos = 0;
    loop {
        let b = &buf[pos..];
        if b.len() < 2 {
            return pos;
        }
        let (len, head) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => {
                let mut l = [0u8; 8];
                l.copy_from_slice(&b[2..10]);
                (
                    usize::try_from(u64::from_be_bytes(l)).unwrap_or(usize::MAX),
                    10,
                )
            }
            126 | 127 => return pos,
            n => (usize::from(n), 2),
        };
        let head = head + if b[1] & 0x80 != 0 { 4 } else { 0 };
        if b.len() - head < len {
            return pos;
        }
        f(b[0] & 0x0f, &b[head..head + len]);
        pos += head + len;
    }
}

/// Connects and completes the upgrade; returns the stream and any frame bytes that came with
/// the response head.
async fn upgrade(addr: SocketAddr, user: &str) -> std::io::Result<(TcpStream, Vec<u8>)> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let req = format!(
        "GET /ws?token={user}@acme HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    write_all(&tcp, req.as_bytes()).await?;
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    loop {
        tcp.readable().await?;
        match tcp.try_read(&mut b) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => head.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            if !head.starts_with(b"HTTP/1.1 101") {
                return Err(std::io::Error::other("upgrade refused"));
            }
            return Ok((tcp, head.split_off(end + 4)));
        }
    }
}

impl Shared {
    /// Handles the frames in connection `i`'s carried bytes followed by `data`; queues replies
    /// and returns false once the server closed.
    fn process(&self, i: usize, data: &[u8], now: Instant, replies: &mut Vec<Vec<u8>>) -> bool {
        let mut carry = self.carry.borrow_mut();
        let c = &mut carry[i];
        let joined;
        let input: &[u8] = if c.is_empty() {
            data
        } else {
            let mut j = std::mem::take(c);
            j.extend_from_slice(data);
            joined = j;
            &joined
        };
        let mut open = true;
        let used = frames(input, |op, p| match op {
            1 if p.starts_with(TICK) => self.record(now),
            1 if p == PING => replies.push(client_frame(1, PONG)),
            1 if p.starts_with(CONNECTED) => replies.push(client_frame(1, SUBSCRIBE)),
            1 if p.starts_with(SUBSCRIBED) => self.subscribed.set(self.subscribed.get() + 1),
            9 => replies.push(client_frame(10, p)),
            8 => open = false,
            _ => {}
        });
        if used < input.len() {
            *c = input[used..].to_vec();
        }
        open
    }
}

/// One subscribed client: counts ticks, answers pings, subscribes once connected. Reads go
/// into one scratch buffer shared by every connection; only an incomplete frame is kept.
async fn subscriber(i: usize, addr: SocketAddr, sh: Rc<Shared>) {
    let Ok((tcp, first)) = upgrade(addr, &format!("u{i}")).await else {
        return;
    };
    let mut replies: Vec<Vec<u8>> = Vec::new();
    let mut open = sh.process(i, &first, Instant::now(), &mut replies);
    drop(first);
    while open {
        for r in replies.drain(..) {
            if write_all(&tcp, &r).await.is_err() {
                return;
            }
        }
        if tcp.readable().await.is_err() {
            return;
        }
        let mut scratch = sh.scratch.borrow_mut();
        match tcp.try_read(&mut scratch) {
            Ok(0) => return,
            Ok(n) => open = sh.process(i, &scratch[..n], Instant::now(), &mut replies),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// The control connection: sends publish commands, answers pings, ignores everything else.
struct Control {
    tcp: Rc<TcpStream>,
    task: tokio::task::JoinHandle<()>,
}

impl Control {
    async fn connect(addr: SocketAddr) -> Option<Self> {
        let (tcp, _) = upgrade(addr, "ctl").await.ok()?;
        let tcp = Rc::new(tcp);
        let reader = Rc::clone(&tcp);
        let task = tokio::task::spawn_local(async move {
            let mut buf = Vec::new();
            let mut b = vec![0u8; 16 * 1024];
            loop {
                if reader.readable().await.is_err() {
                    return;
                }
                match reader.try_read(&mut b) {
                    Ok(0) => return,
                    Ok(n) => buf.extend_from_slice(&b[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => return,
                }
                let mut replies = Vec::new();
                let used = frames(&buf, |op, p| match op {
                    1 if p == PING => replies.push(client_frame(1, PONG)),
                    9 => replies.push(client_frame(10, p)),
                    _ => {}
                });
                buf.drain(..used);
                for r in replies {
                    if write_all(&reader, &r).await.is_err() {
                        return;
                    }
                }
            }
        });
        Some(Self { tcp, task })
    }

    async fn command(&self, json: &str) -> bool {
        write_all(&self.tcp, &client_frame(1, json.as_bytes()))
            .await
            .is_ok()
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Fleet {
    sh: Rc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    seq: Cell<u64>,
}

impl Fleet {
    fn new() -> Self {
        let sh = Rc::new(Shared::default());
        sh.scratch.borrow_mut().resize(64 * 1024, 0);
        Self {
            sh,
            tasks: Vec::new(),
            seq: Cell::new(0),
        }
    }

    /// Grows to `n` subscribed clients, 1 000 connections at a time (somaxconn is 4096);
    /// false when they do not all subscribe within 60 s.
    async fn grow(&mut self, addr: SocketAddr, n: usize) -> bool {
        while self.tasks.len() < n {
            let batch = (n - self.tasks.len()).min(1000);
            for _ in 0..batch {
                let i = self.tasks.len();
                self.sh.carry.borrow_mut().push(Vec::new());
                self.tasks.push(tokio::task::spawn_local(subscriber(
                    i,
                    addr,
                    Rc::clone(&self.sh),
                )));
            }
            let want = self.tasks.len();
            let deadline = Instant::now() + Duration::from_secs(60);
            while self.sh.subscribed.get() < want {
                if Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        true
    }

    /// Sends a publish of `frames` events and waits (at most `limit`) until every client has
    /// them: the latencies (ns), the time from the command to the last receipt and the frames
    /// received. After a timeout the rest of the publish is let drain first (it must not count
    /// towards the next one) and the time is `limit`.
    async fn publish(
        &self,
        ctl: &Control,
        frames: usize,
        limit: Duration,
    ) -> Option<(Vec<u64>, Duration, usize)> {
        let seq = self.seq.get();
        self.seq.set(seq + frames as u64);
        let notified = self.sh.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        self.sh.arm(self.tasks.len() * frames);
        let cmd = if frames == 1 {
            format!(r#"{{"type":"bench.publish","seq":{seq}}}"#)
        } else {
            format!(r#"{{"type":"bench.burst","seq":{seq},"n":{frames}}}"#)
        };
        if !ctl.command(&cmd).await {
            return None;
        }
        if tokio::time::timeout(limit, notified).await.is_err() {
            let got = self.sh.got.get();
            eprintln!("publish timed out: {got} of {}", self.sh.target.get());
            self.settle().await;
            return Some((self.sh.lat_ns.borrow().clone(), limit, got));
        }
        let sent = self.sh.sent_at.get()?;
        let last = self.sh.last.get()?;
        Some((
            self.sh.lat_ns.borrow().clone(),
            last.saturating_duration_since(sent),
            self.sh.got.get(),
        ))
    }

    /// Waits until no frame has arrived for a second.
    async fn settle(&self) {
        loop {
            let before = self.sh.got.get();
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.sh.got.get() == before {
                return;
            }
        }
    }

    fn close(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

fn pct_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1e6
}

/// Longest wait for a burst to reach every client.
const BURST_LIMIT: Duration = Duration::from_secs(120);

/// Latency and burst throughput of one server at the fleet's current size, as
/// `(name, value)` figures prefixed with `tag`.
async fn measure(
    p: &Params,
    fleet: &Fleet,
    ctl: &Control,
    tag: &str,
    warm: bool,
    out: &mut Vec<(String, f64)>,
    notes: &mut Vec<String>,
) {
    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    for i in 0..p.warmup + p.publishes {
        tokio::time::sleep(p.spacing).await;
        let Some((mut lat, _, _)) = fleet.publish(ctl, 1, Duration::from_secs(30)).await else {
            continue;
        };
        if i < p.warmup {
            continue;
        }
        lat.sort_unstable();
        p50.push(pct_ms(&lat, 0.5));
        p99.push(pct_ms(&lat, 0.99));
    }
    out.push((format!("{tag}_p50_ms"), median(&p50)));
    out.push((format!("{tag}_p99_ms"), median(&p99)));
    let mut rates = Vec::new();
    let mut timed_out = false;
    for i in 0..p.bursts + usize::from(warm) {
        tokio::time::sleep(p.spacing).await;
        let Some((_, took, got)) = fleet.publish(ctl, p.burst, BURST_LIMIT).await else {
            continue;
        };
        timed_out |= got < fleet.tasks.len() * p.burst;
        if i > 0 || !warm {
            rates.push(got as f64 / took.as_secs_f64());
        }
    }
    out.push((format!("{tag}_deliveries_per_s"), median(&rates)));
    if timed_out {
        notes.push(format!(
            "{tag}: a burst did not complete within {} s; its rate counts the frames received by then",
            BURST_LIMIT.as_secs()
        ));
    }
}

/// One server of `role`: measured at the small size, then the fleet grows to the large size
/// and it is measured again. Figures are named `<role>_<2k|10k>_…`.
async fn one_server(p: &Params, role: &str, out: &mut Vec<(String, f64)>, notes: &mut Vec<String>) {
    let server = super::Server::start_with(role, super::FANOUT_HEARTBEAT).await;
    let mut fleet = Fleet::new();
    for (i, (n, label)) in p.sizes.iter().zip(["2k", "10k"]).enumerate() {
        if !fleet.grow(server.addr, *n).await {
            notes.push(format!(
                "{role}: only {} of {n} clients subscribed",
                fleet.sh.subscribed.get()
            ));
            break;
        }
        let Some(ctl) = Control::connect(server.addr).await else {
            notes.push(format!("{role}: control connection refused"));
            break;
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        // At the larger size the server is warm already: no uncounted burst first.
        let tag = format!("{role}_{label}");
        measure(p, &fleet, &ctl, &tag, i == 0, out, notes).await;
        let rss = super::proc_status_kib(server.child.id(), "VmRSS:");
        out.push((format!("{role}_{label}_rss_kib_after"), rss));
    }
    fleet.close();
    drop(server);
}

/// Every round of the fan-out phase, on this thread's own single-threaded runtime: the
/// figures in recording order, and notes.
pub(crate) fn run(p: &Params, roles: &[&str]) -> (Vec<(String, f64)>, Vec<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let (mut out, mut notes) = (Vec::new(), Vec::new());
        for round in 0..p.rounds {
            eprintln!("fan-out round {}/{}", round + 1, p.rounds);
            let mut order = roles.to_vec();
            let k = round % order.len().max(1);
            order.rotate_left(k);
            for role in order {
                one_server(p, role, &mut out, &mut notes).await;
            }
        }
        (out, notes)
    })
}

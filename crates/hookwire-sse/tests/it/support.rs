//! A raw-TCP SSE client for the end-to-end tests: no HTTP library, so the test sees exactly
//! the bytes on the wire (head, chunking, SSE framing).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One dispatched SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ev {
    pub(crate) id: Option<String>,
    pub(crate) event: String,
    pub(crate) data: String,
}

impl Ev {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).expect("data is JSON")
    }
}

pub(crate) struct Client {
    tcp: TcpStream,
    pub(crate) status: u16,
    pub(crate) head: String,
    raw: Vec<u8>,
    body: Vec<u8>,
    chunked: bool,
    pub(crate) retry: Option<u64>,
    last_id: Option<String>,
}

impl Client {
    pub(crate) async fn connect(
        addr: std::net::SocketAddr,
        path: &str,
        last: Option<&str>,
    ) -> Self {
        Self::connect_with(TcpStream::connect(addr).await.unwrap(), path, last, "").await
    }

    pub(crate) async fn connect_with(
        mut tcp: TcpStream,
        path: &str,
        last: Option<&str>,
        extra: &str,
    ) -> Self {
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{extra}");
        if let Some(l) = last {
            req.push_str(&format!("Last-Event-ID: {l}\r\n"));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
                .await
                .expect("head in time")
                .unwrap();
            assert!(n > 0, "closed before head");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let status = head[9..12].parse().unwrap();
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let rest = raw[end + 4..].to_vec();
        let mut c = Self {
            tcp,
            status,
            head,
            raw: Vec::new(),
            body: Vec::new(),
            chunked,
            retry: None,
            last_id: None,
        };
        c.feed(&rest);
        c
    }

    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    fn feed(&mut self, b: &[u8]) {
        if !self.chunked {
            self.body.extend_from_slice(b);
            return;
        }
        self.raw.extend_from_slice(b);
        loop {
            let Some(i) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let len =
                usize::from_str_radix(std::str::from_utf8(&self.raw[..i]).unwrap().trim(), 16)
                    .unwrap();
            if self.raw.len() < i + 2 + len + 2 {
                return;
            }
            self.body.extend_from_slice(&self.raw[i + 2..i + 2 + len]);
            self.raw.drain(..i + 2 + len + 2);
        }
    }

    /// Next complete event from the buffer, parsing like a browser (comments skipped).
    fn parse_one(&mut self) -> Option<Ev> {
        loop {
            let i = self.body.windows(2).position(|w| w == b"\n\n")?;
            let block: Vec<u8> = self.body.drain(..i + 2).collect();
            let text = String::from_utf8(block).expect("utf-8");
            let mut ev = Ev {
                id: None,
                event: "message".into(),
                data: String::new(),
            };
            let mut has_data = false;
            for line in text.lines() {
                if line.starts_with(':') || line.is_empty() {
                    continue;
                }
                let (k, v) = line.split_once(':').unwrap_or((line, ""));
                let v = v.strip_prefix(' ').unwrap_or(v);
                match k {
                    "id" => self.last_id = Some(v.to_owned()),
                    "event" => ev.event = v.to_owned(),
                    "retry" => self.retry = v.parse().ok(),
                    "data" => {
                        if has_data {
                            ev.data.push('\n');
                        }
                        ev.data.push_str(v);
                        has_data = true;
                    }
                    other => panic!("unknown field {other}"),
                }
            }
            if has_data {
                ev.id.clone_from(&self.last_id);
                return Some(ev);
            }
        }
    }

    /// Waits up to `wait` for the next event.
    pub(crate) async fn next(&mut self, wait: Duration) -> Option<Ev> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(ev) = self.parse_one() {
                return Some(ev);
            }
            let n = tokio::time::timeout_at(deadline, self.tcp.read(&mut buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.feed(&buf[..n]);
        }
    }

    /// Whether the server has ended the response (EOF) within `wait`.
    pub(crate) async fn read_to_end(&mut self, wait: Duration) -> Vec<u8> {
        let mut more = Vec::new();
        let _ = tokio::time::timeout(wait, self.tcp.read_to_end(&mut more)).await;
        let mut out = std::mem::take(&mut self.body);
        out.extend_from_slice(&self.raw);
        out.extend_from_slice(&more);
        out
    }
}

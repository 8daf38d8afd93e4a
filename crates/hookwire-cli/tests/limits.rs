//! `hookwire listen` and `hookwire demo` under a 1 024 open-file limit against 1 100
//! connections that never finish their request head: the server keeps answering real requests
//! (the header-read timeout frees the stalled connections, the connection cap keeps it below
//! its descriptor limit). Before, the stalled connections held every descriptor forever and a
//! real request never got an answer.
#![allow(
    clippy::print_stdout,
    reason = "the test prints the measured delay for the record"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hookwire");
const STALLED: usize = 1100;

/// A `hookwire` process started under `prlimit --nofile=1024:1024`; killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `hookwire args…` with a 1 024 descriptor limit and returns it with the address from
/// its "listening on http://ADDR/…" line.
fn start(args: &[&str]) -> (Proc, SocketAddr) {
    let mut child = Command::new("prlimit")
        .arg("--nofile=1024:1024")
        .arg(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) and the hookwire binary");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let proc = Proc(child);
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "exited early");
        if let Some(i) = line.find("listening on http://") {
            let rest = &line[i + "listening on http://".len()..];
            break rest.split('/').next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = err.read_to_string(&mut sink);
    });
    (proc, addr)
}

/// Opens the stalled connections, then proves a real request is answered within `within`.
fn survives_stalled_heads(addr: SocketAddr, request: &str, within: Duration) {
    let mut stalled = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        stalled.push(s);
    }
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(within)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut head = [0u8; 12];
    let got = s.read_exact(&mut head);
    assert!(
        got.is_ok(),
        "no answer within {within:?} behind {STALLED} stalled connections: {got:?}"
    );
    assert!(head.starts_with(b"HTTP/1.1 "), "{head:?}");
    println!(
        "answered after {:?} behind {STALLED} stalled connections",
        started.elapsed()
    );
    drop(stalled);
}

#[test]
fn listen_answers_behind_1100_stalled_heads_at_a_1024_file_limit() {
    let (_p, addr) = start(&["listen", "--secret", "s3cret", "--addr", "127.0.0.1:0"]);
    // Unsigned: any answer (401) proves the request was read and served.
    survives_stalled_heads(
        addr,
        "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        Duration::from_secs(25),
    );
}

#[test]
fn demo_answers_behind_1100_stalled_heads_at_a_1024_file_limit() {
    let (_p, addr) = start(&["demo", "--addr", "127.0.0.1:0"]);
    survives_stalled_heads(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(25),
    );
}

//! Bounds on response heads for the connections hyper drives (the default path for http and
//! https).
//!
//! Neither hyper's HTTP/1.1 client nor the `h2` crate limits interim (1xx) responses: both skip
//! any number of them while waiting for the final one, so a receiver streaming `100 Continue`
//! keeps the sender parsing until the timeout. [`Metered`] sits between the transport and hyper
//! and fails the connection's read once a request has seen more than [`MAX_INTERIM`] of them:
//! - HTTP/1.1: the bytes of each response head are followed from the request's first write to
//!   the blank line that ends the final (non-1xx) head; the body bytes after it pass untouched.
//!   Interim heads are counted, and the heads of one response together are held to
//!   [`MAX_HEAD`], the same limits as the lean exchange (`h1.rs`). hyper sends the next request
//!   only once the previous response is complete, so a write marks the start of a new response
//!   (a server answering before the request body is fully written could have the rest of that
//!   response taken for heads; hyper's own parser still decides what the bytes mean).
//! - HTTP/2: the server-to-client frames are followed by their 9-byte headers (the payloads are
//!   skipped, never copied aside), and a stream with more than `MAX_INTERIM + 1` HEADERS frames
//!   before its first DATA frame (interim heads plus the final head; trailers come after the
//!   body) fails the connection. Header-block size is held to [`MAX_HEAD`] by `h2`'s header-list
//!   limit (set in `client.rs`).
//!
//! The refusal is an I/O error whose message hyper keeps in its error's source chain.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};

/// Largest response head accepted; interim (1xx) heads count toward it too, so the bytes read
/// before the final status line and headers are bounded whatever the server sends.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Most interim (1xx) responses read before the final one (RFC 9110 allows any number; real
/// servers send one `100 Continue` or a `103 Early Hints` or two).
pub(crate) const MAX_INTERIM: usize = 4;

/// The error text when a server sends more than [`MAX_INTERIM`] interim responses (shared by
/// every HTTP path of the client).
pub(crate) fn too_many_interim() -> String {
    format!("more than {MAX_INTERIM} interim (1xx) responses before the final one")
}

/// The error text when a response's heads pass [`MAX_HEAD`].
pub(crate) const HEAD_TOO_LARGE: &str = "response head too large";

/// HTTP/2 streams tracked before old ones are forgotten: ids more than [`STREAM_WINDOW`] behind
/// the newest belong to requests that finished or were abandoned long ago (servers allow a few
/// hundred concurrent streams), so the table never holds more than `STREAM_WINDOW` entries.
const MAX_TRACKED_STREAMS: usize = 1024;
/// How many stream ids behind the newest one are still tracked.
const STREAM_WINDOW: u32 = 2048;

/// Follows the response heads of an HTTP/1.1 connection (hyper sends one request at a time).
#[derive(Debug, Default)]
struct H1Heads {
    /// Between a request's first write and the end of its final response head.
    active: bool,
    /// Bytes of this response's heads so far (interim ones included).
    bytes: usize,
    interim: usize,
    /// Line feeds in a row (carriage returns ignored): two end a head.
    newlines: u8,
    /// The start of the current head's status line (`HTTP/1.1 1xx`).
    line: [u8; 12],
    line_len: usize,
}

impl H1Heads {
    fn on_write(&mut self) {
        if !self.active {
            *self = Self {
                active: true,
                ..Self::default()
            };
        }
    }

    /// Consumes response bytes; the error text when a limit is passed.
    fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        for &b in data {
            if !self.active {
                break;
            }
            self.bytes += 1;
            if self.bytes > MAX_HEAD {
                return Err(HEAD_TOO_LARGE.to_owned());
            }
            if self.line_len < self.line.len() {
                self.line[self.line_len] = b;
                self.line_len += 1;
            }
            match b {
                b'\n' => self.newlines += 1,
                b'\r' => {}
                _ => self.newlines = 0,
            }
            if self.newlines < 2 {
                continue;
            }
            // The end of a head: interim (1xx other than 101) or final.
            let interim = self.line_len == self.line.len()
                && self.line.starts_with(b"HTTP/")
                && self.line[9] == b'1'
                && &self.line[9..] != b"101";
            self.newlines = 0;
            self.line_len = 0;
            if !interim {
                self.active = false;
            } else {
                self.interim += 1;
                if self.interim > MAX_INTERIM {
                    return Err(too_many_interim());
                }
            }
        }
        Ok(())
    }
}

/// Follows HTTP/2 frame boundaries in the bytes a server sends.
#[derive(Debug, Default)]
struct H2Frames {
    head: [u8; 9],
    have: usize,
    skip: usize,
    /// Per open stream: HEADERS frames seen, and whether a DATA frame came (the head phase is
    /// then over: a later HEADERS frame is the trailers).
    open_heads: HashMap<u32, (usize, bool)>,
}

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const END_STREAM: u8 = 0x1;

impl H2Frames {
    /// Consumes `data`; `false` when a stream got more interim responses than allowed.
    fn feed(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let n = (9 - self.have).min(data.len());
            self.head[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have < 9 {
                break;
            }
            self.have = 0;
            let h = self.head;
            self.skip = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
            let stream = u32::from_be_bytes([h[5] & 0x7f, h[6], h[7], h[8]]);
            let ends = h[4] & END_STREAM != 0;
            match h[3] {
                HEADERS => {
                    if !self.count_head(stream) {
                        return false;
                    }
                    if ends {
                        self.open_heads.remove(&stream);
                    }
                }
                DATA if ends => {
                    self.open_heads.remove(&stream);
                }
                DATA => {
                    self.track(stream).1 = true;
                }
                RST_STREAM => {
                    self.open_heads.remove(&stream);
                }
                _ => {}
            }
        }
        true
    }

    fn track(&mut self, stream: u32) -> &mut (usize, bool) {
        if self.open_heads.len() >= MAX_TRACKED_STREAMS && !self.open_heads.contains_key(&stream) {
            let floor = stream.saturating_sub(STREAM_WINDOW);
            self.open_heads.retain(|id, _| *id > floor);
        }
        self.open_heads.entry(stream).or_insert((0, false))
    }

    /// Counts a HEADERS frame; `false` when the stream is over the limit.
    fn count_head(&mut self, stream: u32) -> bool {
        let (heads, body) = self.track(stream);
        if *body {
            return true; // trailers
        }
        *heads += 1;
        // Interim heads plus the final head.
        *heads <= MAX_INTERIM + 1
    }
}

/// What [`Metered`] follows on its connection.
#[derive(Debug)]
enum Frames {
    H1(H1Heads),
    H2(H2Frames),
}

/// A transport under hyper that enforces the head limits (see the module docs).
#[derive(Debug)]
pub(crate) struct Metered<T> {
    io: T,
    frames: Frames,
    /// Bytes read from `io`, looked at, then handed to hyper.
    scratch: Vec<u8>,
    /// Set once a limit was passed: every later read fails with it.
    refused: Option<String>,
}

impl<T> Metered<T> {
    /// An HTTP/1.1 connection.
    pub(crate) fn h1(io: T) -> Self {
        Self::with(io, Frames::H1(H1Heads::default()))
    }

    /// An HTTP/2 connection.
    pub(crate) fn h2(io: T) -> Self {
        Self::with(io, Frames::H2(H2Frames::default()))
    }

    fn with(io: T, frames: Frames) -> Self {
        Self {
            io,
            frames,
            scratch: Vec::new(),
            refused: None,
        }
    }

    fn wrote(&mut self) {
        if let Frames::H1(h) = &mut self.frames {
            h.on_write();
        }
    }
}

impl<T: Connection> Connection for Metered<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<T: Read + Unpin> Read for Metered<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(why) = &this.refused {
            return Poll::Ready(Err(io::Error::other(why.clone())));
        }
        if let Frames::H1(h) = &this.frames
            && !h.active
        {
            // A response body: nothing to follow.
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        // Read through a scratch buffer to see the bytes (no unsafe access to the caller's
        // uninitialized buffer).
        let want = buf.remaining().min(16 * 1024);
        this.scratch.resize(want, 0);
        let mut rb = ReadBuf::new(&mut this.scratch);
        match Pin::new(&mut this.io).poll_read(cx, rb.unfilled()) {
            Poll::Ready(Ok(())) => {
                let got = rb.filled();
                let verdict = match &mut this.frames {
                    Frames::H1(h) => h.feed(got),
                    Frames::H2(f) => {
                        if f.feed(got) {
                            Ok(())
                        } else {
                            Err(too_many_interim())
                        }
                    }
                };
                if let Err(why) = verdict {
                    this.refused = Some(why.clone());
                    return Poll::Ready(Err(io::Error::other(why)));
                }
                buf.put_slice(got);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: Write + Unpin> Write for Metered<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.wrote();
        Pin::new(&mut this.io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.wrote();
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: usize) -> Vec<u8> {
        let mut f = vec![
            (payload >> 16) as u8,
            (payload >> 8) as u8,
            payload as u8,
            kind,
            flags,
        ];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend(std::iter::repeat_n(0xAA, payload));
        f
    }

    #[test]
    fn interim_heads_per_stream_are_counted_across_split_reads() {
        let mut f = H2Frames::default();
        let mut bytes = Vec::new();
        // Four interim heads and the final head on stream 1, a body, trailers.
        for _ in 0..=MAX_INTERIM {
            bytes.extend(frame(HEADERS, 0x4, 1, 7));
        }
        bytes.extend(frame(DATA, 0, 1, 3));
        bytes.extend(frame(HEADERS, 0x4 | END_STREAM, 1, 2));
        // Byte by byte: frame headers split anywhere.
        for b in &bytes {
            assert!(f.feed(std::slice::from_ref(b)));
        }
        assert!(f.open_heads.is_empty());
        // One more interim head on stream 3 than allowed.
        for _ in 0..=MAX_INTERIM {
            assert!(f.feed(&frame(HEADERS, 0x4, 3, 5)));
        }
        assert!(!f.feed(&frame(HEADERS, 0x4, 3, 5)));
        // Five interim heads and a final head that ends the stream.
        let mut f = H2Frames::default();
        for _ in 0..=MAX_INTERIM {
            assert!(f.feed(&frame(HEADERS, 0x4, 1, 5)));
        }
        assert!(!f.feed(&frame(HEADERS, 0x4 | END_STREAM, 1, 5)));
    }

    #[test]
    fn finished_and_reset_streams_are_forgotten() {
        let mut f = H2Frames::default();
        assert!(f.feed(&frame(HEADERS, 0x4, 5, 0)));
        assert!(f.feed(&frame(RST_STREAM, 0, 5, 4)));
        assert!(f.feed(&frame(HEADERS, 0x4 | END_STREAM, 7, 0)));
        assert!(f.open_heads.is_empty());
        // Many abandoned streams: old ids are dropped, the table stays bounded.
        for i in 0..10_000u32 {
            assert!(f.feed(&frame(HEADERS, 0x4, 2 * i + 1, 0)));
        }
        assert!(f.open_heads.len() <= STREAM_WINDOW as usize);
    }

    #[test]
    fn http1_heads_are_followed_until_the_final_one() {
        let mut h = H1Heads::default();
        h.on_write();
        let four =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\nlink: </a>\n\n".repeat(2);
        for b in &four {
            assert!(h.feed(std::slice::from_ref(b)).is_ok());
        }
        assert!(h.active);
        assert!(
            h.feed(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n\r\n\r\nHTTP/1.1 100 X\r\n\r\n")
                .is_ok()
        );
        assert!(!h.active, "the body is not looked at");
        h.on_write();
        assert_eq!(
            h.feed(&b"HTTP/1.1 100 Continue\r\n\r\n".repeat(5)),
            Err(too_many_interim())
        );
        let mut h = H1Heads::default();
        h.on_write();
        assert!(h.feed(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").is_ok());
        assert!(!h.active, "101 is final");
        h.on_write();
        let big = format!("HTTP/1.1 200 OK\r\nx: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(h.feed(big.as_bytes()), Err(HEAD_TOO_LARGE.to_owned()));
    }
}

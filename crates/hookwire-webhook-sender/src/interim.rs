//! Bounds on interim (1xx) responses for the connections hyper drives (https, and plain http when
//! the lean exchange is off).
//!
//! Neither hyper's HTTP/1.1 client nor the `h2` crate limits interim responses: both skip any
//! number of them while waiting for the final one, so a receiver streaming `100 Continue` keeps
//! the sender parsing until the timeout. [`Metered`] sits between the transport and hyper and
//! ends the connection once a request has seen more than [`MAX_INTERIM`] of them:
//! - HTTP/1.1: hyper reports each interim head to a per-request callback ([`Meter::watch`]),
//!   which counts it; the next read fails once the count is over the limit, and a final response
//!   that arrives after too many is refused by the client. Each head is also held to
//!   [`MAX_HEAD`] by hyper's header-size limit (set in `client.rs`).
//! - HTTP/2: the server-to-client frames are followed by their 9-byte headers (the payloads are
//!   skipped, never copied aside), and a stream with more than `MAX_INTERIM + 1` HEADERS frames
//!   before its first DATA frame (interim heads plus the final head; trailers come after the
//!   body) fails the connection. Header-block size is held to [`MAX_HEAD`] by `h2`'s header-list
//!   limit.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};

pub(crate) use crate::h1::{MAX_HEAD, MAX_INTERIM, too_many_interim};

/// HTTP/2 streams tracked before old ones are forgotten: ids more than [`STREAM_WINDOW`] behind
/// the newest belong to requests that finished or were abandoned long ago (servers allow a few
/// hundred concurrent streams), so the table never holds more than `STREAM_WINDOW` entries.
const MAX_TRACKED_STREAMS: usize = 1024;
/// How many stream ids behind the newest one are still tracked.
const STREAM_WINDOW: u32 = 2048;

/// The interim-response count of the request in flight on one HTTP/1.1 connection, or the
/// "refused" mark of an HTTP/2 connection (shared by the connection and its requests).
#[derive(Debug, Default)]
pub(crate) struct Meter {
    interim: AtomicUsize,
}

impl Meter {
    /// Starts a request on this HTTP/1.1 connection: resets the count and counts every interim
    /// response hyper parses for `req`.
    pub(crate) fn watch<B>(self: &Arc<Self>, req: &mut http::Request<B>) {
        self.interim.store(0, Ordering::Relaxed);
        let me = Arc::clone(self);
        hyper::ext::on_informational(req, move |_| {
            me.interim.fetch_add(1, Ordering::Relaxed);
        });
    }

    /// Whether the limit was passed (the error hyper reports is then ours).
    pub(crate) fn exceeded(&self) -> bool {
        self.interim.load(Ordering::Relaxed) > MAX_INTERIM
    }

    fn refuse(&self) {
        self.interim.store(MAX_INTERIM + 1, Ordering::Relaxed);
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

/// A transport under hyper that enforces the interim-response limit (see the module docs).
#[derive(Debug)]
pub(crate) struct Metered<T> {
    io: T,
    meter: Arc<Meter>,
    /// `Some` on HTTP/2 connections.
    h2: Option<(H2Frames, Vec<u8>)>,
}

impl<T> Metered<T> {
    /// An HTTP/1.1 connection; `meter` is given each request with [`Meter::watch`].
    pub(crate) fn h1(io: T, meter: Arc<Meter>) -> Self {
        Self {
            io,
            meter,
            h2: None,
        }
    }

    /// An HTTP/2 connection.
    pub(crate) fn h2(io: T, meter: Arc<Meter>) -> Self {
        Self {
            io,
            meter,
            h2: Some((H2Frames::default(), Vec::new())),
        }
    }
}

fn refused() -> io::Error {
    io::Error::other(too_many_interim())
}

impl<T: Read + Unpin> Read for Metered<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.meter.exceeded() {
            return Poll::Ready(Err(refused()));
        }
        let Some((frames, scratch)) = &mut this.h2 else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        // HTTP/2: read through a scratch buffer to see the bytes (no unsafe access to the
        // caller's uninitialized buffer).
        let want = buf.remaining().min(16 * 1024);
        scratch.resize(want, 0);
        let mut rb = ReadBuf::new(scratch);
        match Pin::new(&mut this.io).poll_read(cx, rb.unfilled()) {
            Poll::Ready(Ok(())) => {
                let got = rb.filled();
                if !frames.feed(got) {
                    this.meter.refuse();
                    return Poll::Ready(Err(refused()));
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
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
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
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
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
}

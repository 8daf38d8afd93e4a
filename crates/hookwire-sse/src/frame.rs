//! Encoded frames: serialized once per publish and shared by every subscriber as [`Bytes`].
//!
//! A [`Frame`] carries three views of the same message so that every transport can write it
//! without re-encoding: the JSON payload (for WebSocket text frames), the SSE event text, and
//! the SSE event wrapped as one HTTP/1.1 chunk (for the lean acceptor and the raw-write bench).

use std::sync::{Arc, LazyLock};

use bytes::{BufMut, Bytes, BytesMut};

/// What a frame tells the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameKind {
    /// The full state (`event: snapshot`); the client replaces its copy.
    Snapshot,
    /// A version-keyed patch message (`event: patch`).
    Patch,
    /// A version-neutral overlay at the current version (`event: patch`, `_overlay: true`).
    Overlay,
    /// `{"_resync":true}` (`event: patch`): the client must refetch the state.
    Resync,
    /// An application event from an [`EventBroadcast`](crate::EventBroadcast).
    Event,
    /// A keep-alive comment (`:`), carries no data.
    KeepAlive,
}

impl FrameKind {
    /// The SSE `event:` name used for this kind, if any.
    pub fn event_name(self) -> Option<&'static str> {
        match self {
            Self::Snapshot => Some("snapshot"),
            Self::Patch | Self::Overlay | Self::Resync => Some("patch"),
            Self::Event | Self::KeepAlive => None,
        }
    }
}

#[derive(Debug)]
struct Inner {
    kind: FrameKind,
    first: u64,
    version: u64,
    json: Bytes,
    chunked: Bytes,
    // Range of the SSE text inside `chunked` (after the chunk-size line, before the CRLF).
    sse_start: usize,
    sse_end: usize,
}

/// One encoded message, cheap to clone (one reference count).
///
/// ```
/// use hookwire_sse::{Frame, FrameKind};
/// let f = Frame::patch(4, 5, br#"{"4":{"a":1},"5":{"b":2}}"#.to_vec());
/// assert_eq!(f.kind(), FrameKind::Patch);
/// assert_eq!(f.version(), Some(5));
/// assert_eq!(&f.sse()[..], b"id: 5\nevent: patch\ndata: {\"4\":{\"a\":1},\"5\":{\"b\":2}}\n\n");
/// ```
#[derive(Debug, Clone)]
pub struct Frame(Arc<Inner>);

static KEEP_ALIVE: LazyLock<Frame> =
    LazyLock::new(|| Frame::build(FrameKind::KeepAlive, 0, 0, None, None, Bytes::new()));
static RESYNC: LazyLock<Frame> = LazyLock::new(|| {
    Frame::build(
        FrameKind::Resync,
        0,
        0,
        None,
        Some("patch"),
        Bytes::from_static(br#"{"_resync":true}"#),
    )
});

impl Frame {
    /// A snapshot frame for `state_json` at `version`.
    pub fn snapshot(version: u64, state_json: impl Into<Bytes>) -> Self {
        let id = version.to_string();
        Self::build(
            FrameKind::Snapshot,
            version,
            version,
            Some(&id),
            Some("snapshot"),
            state_json.into(),
        )
    }

    /// A patch frame covering versions `first..=version` whose payload is the message JSON.
    pub fn patch(first: u64, version: u64, message_json: impl Into<Bytes>) -> Self {
        let id = version.to_string();
        Self::build(
            FrameKind::Patch,
            first,
            version,
            Some(&id),
            Some("patch"),
            message_json.into(),
        )
    }

    /// An overlay frame at `version` whose payload is the message JSON (with `_overlay: true`).
    pub fn overlay(version: u64, message_json: impl Into<Bytes>) -> Self {
        let id = version.to_string();
        Self::build(
            FrameKind::Overlay,
            version,
            version,
            Some(&id),
            Some("patch"),
            message_json.into(),
        )
    }

    /// The shared `{"_resync":true}` frame. It has no `id:` line, so the client's last event ID
    /// stays what it was.
    pub fn resync() -> Self {
        RESYNC.clone()
    }

    /// The shared keep-alive comment frame (`:\n\n`).
    pub fn keep_alive() -> Self {
        KEEP_ALIVE.clone()
    }

    /// An application event frame. `id` and `event` lose any CR, LF and NUL (they would break
    /// or be ignored by the SSE parser); `data` is split into several `data:` lines on CR, LF
    /// or CRLF, so any user text is safe and round-trips through a browser's `EventSource`
    /// (which joins the lines with LF).
    ///
    /// ```
    /// use hookwire_sse::Frame;
    /// let f = Frame::event(7, Some("7"), Some("order.\ncreated"), b"a\r\nb\0c\rd".to_vec());
    /// assert_eq!(&f.sse()[..], b"id: 7\nevent: order.created\ndata: a\ndata: b\0c\ndata: d\n\n");
    /// ```
    pub fn event(seq: u64, id: Option<&str>, event: Option<&str>, data: impl Into<Bytes>) -> Self {
        Self::build(FrameKind::Event, seq, seq, id, event, data.into())
    }

    fn build(
        kind: FrameKind,
        first: u64,
        version: u64,
        id: Option<&str>,
        event: Option<&str>,
        data: Bytes,
    ) -> Self {
        let mut sse = BytesMut::with_capacity(data.len() + 48);
        if kind == FrameKind::KeepAlive {
            sse.put_slice(b":\n\n");
        } else {
            if let Some(id) = id {
                sse.put_slice(b"id: ");
                put_field(&mut sse, id);
                sse.put_u8(b'\n');
            }
            if let Some(event) = event {
                sse.put_slice(b"event: ");
                put_field(&mut sse, event);
                sse.put_u8(b'\n');
            }
            put_data(&mut sse, &data);
            sse.put_u8(b'\n');
        }
        let head = format!("{:x}\r\n", sse.len());
        let mut chunked = BytesMut::with_capacity(head.len() + sse.len() + 2);
        chunked.put_slice(head.as_bytes());
        chunked.put_slice(&sse);
        chunked.put_slice(b"\r\n");
        let sse_start = head.len();
        let sse_end = sse_start + sse.len();
        Self(Arc::new(Inner {
            kind,
            first,
            version,
            json: data,
            chunked: chunked.freeze(),
            sse_start,
            sse_end,
        }))
    }

    /// The unwritten rest of this frame's chunked form after `written` bytes went out (for a
    /// partial direct write); only [`chunked`](Self::chunked) is meaningful on the result.
    pub(crate) fn tail(&self, written: usize) -> Self {
        let chunked = self.0.chunked.slice(written.min(self.0.chunked.len())..);
        Self(Arc::new(Inner {
            kind: self.0.kind,
            first: self.0.first,
            version: self.0.version,
            json: Bytes::new(),
            chunked,
            sse_start: 0,
            sse_end: 0,
        }))
    }

    /// Several frames' chunked forms joined into one buffer, written with one plain `write`
    /// instead of a `writev` of many tiny segments (which the kernel copies one by one); only
    /// [`chunked`](Self::chunked) is meaningful on the result.
    pub(crate) fn joined<'a>(frames: impl Iterator<Item = &'a Frame> + Clone) -> Self {
        let len = frames.clone().map(Frame::len).sum();
        let mut chunked = BytesMut::with_capacity(len);
        let (mut first, mut version) = (None, 0);
        for f in frames {
            chunked.extend_from_slice(f.chunked());
            first.get_or_insert(f.0.first);
            version = f.0.version;
        }
        Self(Arc::new(Inner {
            kind: FrameKind::Patch,
            first: first.unwrap_or(0),
            version,
            json: Bytes::new(),
            chunked: chunked.freeze(),
            sse_start: 0,
            sse_end: 0,
        }))
    }

    /// The end of a chunked body (`0\r\n\r\n`), as a frame so it is written in order.
    pub(crate) fn end_of_stream() -> Self {
        Self(Arc::new(Inner {
            kind: FrameKind::KeepAlive,
            first: 0,
            version: 0,
            json: Bytes::new(),
            chunked: Bytes::from_static(b"0\r\n\r\n"),
            sse_start: 0,
            sse_end: 0,
        }))
    }

    /// What the frame tells the client.
    pub fn kind(&self) -> FrameKind {
        self.0.kind
    }

    /// The state version after this frame (the SSE `id:`), for snapshot, patch and overlay
    /// frames; the sequence number for event frames.
    pub fn version(&self) -> Option<u64> {
        match self.0.kind {
            FrameKind::Resync | FrameKind::KeepAlive => None,
            _ => Some(self.0.version),
        }
    }

    /// The first version a patch frame covers (equal to [`version`](Self::version) otherwise).
    pub fn first_version(&self) -> Option<u64> {
        self.version().map(|_| self.0.first)
    }

    /// The JSON payload: the state, the patch message, or the event's data.
    pub fn json(&self) -> &Bytes {
        &self.0.json
    }

    /// The SSE event text (`id:`/`event:`/`data:` lines and the blank line).
    pub fn sse(&self) -> Bytes {
        self.0.chunked.slice(self.0.sse_start..self.0.sse_end)
    }

    /// The SSE event as one HTTP/1.1 chunk (`<hex len>\r\n<event>\r\n`).
    pub fn chunked(&self) -> &Bytes {
        &self.0.chunked
    }

    /// Whether `other` is this very frame (a clone of it), not merely equal bytes.
    #[cfg(test)]
    pub(crate) fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Encoded size in bytes (the chunked form), used for queue byte limits.
    pub fn len(&self) -> usize {
        self.0.chunked.len()
    }

    /// Always false: every frame has at least its framing bytes.
    pub fn is_empty(&self) -> bool {
        self.0.chunked.is_empty()
    }

    /// Whether two handles share one encoding (no per-subscriber copy was made).
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

fn put_field(out: &mut BytesMut, s: &str) {
    for &b in s.as_bytes() {
        if b != b'\r' && b != b'\n' && b != 0 {
            out.put_u8(b);
        }
    }
}

fn put_data(out: &mut BytesMut, data: &[u8]) {
    let mut rest = data;
    loop {
        let cut = rest.iter().position(|&b| b == b'\r' || b == b'\n');
        out.put_slice(b"data: ");
        match cut {
            None => {
                out.put_slice(rest);
                out.put_u8(b'\n');
                return;
            }
            Some(i) => {
                out.put_slice(&rest[..i]);
                out.put_u8(b'\n');
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[i + skip..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_form_wraps_the_sse_text() {
        let f = Frame::snapshot(3, br#"{"_v":3}"#.to_vec());
        let sse = f.sse();
        assert_eq!(&sse[..], b"id: 3\nevent: snapshot\ndata: {\"_v\":3}\n\n");
        let expect = format!(
            "{:x}\r\n{}\r\n",
            sse.len(),
            std::str::from_utf8(&sse).unwrap()
        );
        assert_eq!(&f.chunked()[..], expect.as_bytes());
    }

    #[test]
    fn resync_and_keep_alive_are_shared() {
        assert!(Frame::resync().ptr_eq(&Frame::resync()));
        assert_eq!(
            &Frame::resync().sse()[..],
            b"event: patch\ndata: {\"_resync\":true}\n\n"
        );
        assert_eq!(&Frame::keep_alive().sse()[..], b":\n\n");
        assert_eq!(Frame::resync().version(), None);
    }

    #[test]
    fn empty_and_trailing_newline_data_stay_well_formed() {
        let f = Frame::event(1, None, None, Vec::new());
        assert_eq!(&f.sse()[..], b"data: \n\n");
        let f = Frame::event(1, None, None, b"x\n".to_vec());
        assert_eq!(&f.sse()[..], b"data: x\ndata: \n\n");
    }

    proptest::proptest! {
        #[test]
        fn any_user_text_yields_one_event(id in ".*", ev in ".*", data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let f = Frame::event(1, Some(&id), Some(&ev), data.clone());
            let sse = f.sse();
            // Exactly one blank line, at the end: the frame dispatches exactly one event.
            let text = &sse[..];
            proptest::prop_assert!(text.ends_with(b"\n\n"));
            let body = &text[..text.len() - 1];
            proptest::prop_assert!(!body.windows(2).any(|w| w == b"\n\n"));
            proptest::prop_assert!(!body.contains(&b'\r'));
            // Reassemble the data lines as a browser does and compare with the input
            // (line breaks normalised to LF).
            let mut joined = Vec::new();
            for (i, line) in body.split(|&b| b == b'\n').filter(|l| l.starts_with(b"data: ")).enumerate() {
                if i > 0 { joined.push(b'\n'); }
                joined.extend_from_slice(&line[6..]);
            }
            let mut norm = Vec::new();
            let mut i = 0;
            while i < data.len() {
                if data[i] == b'\r' {
                    norm.push(b'\n');
                    if data.get(i + 1) == Some(&b'\n') { i += 1; }
                } else { norm.push(data[i]); }
                i += 1;
            }
            proptest::prop_assert_eq!(joined, norm);
        }
    }
}

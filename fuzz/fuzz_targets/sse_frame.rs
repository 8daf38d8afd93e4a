//! SSE frame encoding: whatever id, event name and data an application passes, the encoded
//! event parses (with the WHATWG `EventSource` algorithm, written out below) as exactly one
//! event carrying exactly that id, event name and data, and nothing else: no injected field,
//! no second event, no id dropped by a NUL. The chunked form wraps the same bytes.
#![no_main]

use hookwire_fuzz::bytes;
use hookwire_sse::{Frame, FrameKind};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Default, PartialEq)]
struct Parsed {
    events: usize,
    id: Option<Vec<u8>>,
    event: Vec<u8>,
    data: Vec<u8>,
    other_fields: Vec<Vec<u8>>,
    comments: usize,
}

/// The WHATWG "interpret an event stream" steps for one block of text (bytes, since the
/// encoder never splits a UTF-8 sequence and the spec works on the decoded text line by line).
fn parse(stream: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    let mut data = Vec::new();
    let mut event = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => {
                (&rest[..i], &rest[i + 2..])
            }
            Some(i) => (&rest[..i], &rest[i + 1..]),
            // An unterminated last line is discarded.
            None => break,
        };
        rest = next;
        if line.is_empty() {
            if !data.is_empty() {
                data.pop(); // the trailing LF
                out.events += 1;
                out.data = std::mem::take(&mut data);
                out.event = std::mem::take(&mut event);
            }
            continue;
        }
        if line[0] == b':' {
            out.comments += 1;
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => event = value.to_vec(),
            b"data" => {
                data.extend_from_slice(value);
                data.push(b'\n');
            }
            b"id" if !value.contains(&0) => out.id = Some(value.to_vec()),
            _ => out.other_fields.push(line.to_vec()),
        }
    }
    out
}

fn strip(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(|&b| !matches!(b, b'\r' | b'\n' | 0))
        .collect()
}

fn normalize_newlines(d: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(d.len());
    let mut i = 0;
    while i < d.len() {
        match d[i] {
            b'\r' if d.get(i + 1) == Some(&b'\n') => {
                out.push(b'\n');
                i += 1;
            }
            b'\r' => out.push(b'\n'),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn text(u: &mut Unstructured<'_>) -> Result<Option<String>> {
    if !u.arbitrary()? {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(bytes(u, 24)?).into_owned()))
}

fn check_chunk(f: &Frame) {
    let sse = f.sse();
    let expect = [format!("{:x}\r\n", sse.len()).as_bytes(), &sse[..], b"\r\n"].concat();
    assert_eq!(
        &f.chunked()[..],
        &expect[..],
        "chunked form does not wrap the SSE text"
    );
    assert_eq!(f.len(), expect.len());
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let seq: u64 = u.arbitrary()?;
    let id = text(u)?;
    let event = text(u)?;
    let data = bytes(u, 200)?.to_vec();
    let f = Frame::event(seq, id.as_deref(), event.as_deref(), data.clone());
    assert_eq!(f.kind(), FrameKind::Event);
    assert_eq!(f.version(), Some(seq));
    assert_eq!(&f.json()[..], &data[..]);
    check_chunk(&f);
    let p = parse(&f.sse());
    assert_eq!(p.events, 1, "not exactly one event: {:?}", f.sse());
    assert!(
        p.other_fields.is_empty(),
        "injected field(s): {:?}",
        p.other_fields
    );
    assert_eq!(p.comments, 0);
    assert_eq!(p.id, id.as_deref().map(strip), "id changed");
    assert_eq!(
        p.event,
        event.as_deref().map(strip).unwrap_or_default(),
        "event name changed"
    );
    assert_eq!(p.data, normalize_newlines(&data), "data changed");
    assert!(f.sse().ends_with(b"\n\n"));

    // State frames put the version in the id and carry any payload the same way.
    let version: u64 = u.arbitrary()?;
    for (f, name) in [
        (Frame::snapshot(version, data.clone()), "snapshot"),
        (
            Frame::patch(version.saturating_sub(1), version, data.clone()),
            "patch",
        ),
        (Frame::overlay(version, data.clone()), "patch"),
    ] {
        check_chunk(&f);
        let p = parse(&f.sse());
        assert_eq!(p.events, 1);
        assert!(
            p.other_fields.is_empty(),
            "injected field(s): {:?}",
            p.other_fields
        );
        assert_eq!(p.id, Some(version.to_string().into_bytes()));
        assert_eq!(p.event, name.as_bytes());
        assert_eq!(p.data, normalize_newlines(&data));
        assert_eq!(f.version(), Some(version));
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

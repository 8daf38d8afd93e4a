//! Reading stream replies (`XREAD`, `XREADGROUP`, `XAUTOCLAIM`, `XRANGE`) out of raw values.

use redis::Value;

/// One stream entry; `fields` is `None` when the entry was deleted while still pending.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// One event of an entry. An entry holds one event, or several that one `publish_many` sent
/// to the same stream (a pack): each starts at its `e` field, and the `t`, `k` and `g` fields
/// after it belong to it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EntryEvent<'a> {
    pub(crate) event: &'a [u8],
    pub(crate) name: Option<&'a [u8]>,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) group: Option<&'a [u8]>,
}

impl Entry {
    /// How many events the entry holds (its `e` fields).
    pub(crate) fn event_count(&self) -> usize {
        self.fields
            .iter()
            .flatten()
            .filter(|(k, _)| k.as_slice() == b"e")
            .count()
    }

    /// The entry's events in publish order; empty when it holds none (or was deleted).
    pub(crate) fn parts(&self) -> Vec<EntryEvent<'_>> {
        let mut out: Vec<EntryEvent<'_>> = Vec::new();
        for (k, v) in self.fields.iter().flatten() {
            let v = v.as_slice();
            match (k.as_slice(), out.last_mut()) {
                (b"e", _) => out.push(EntryEvent {
                    event: v,
                    ..EntryEvent::default()
                }),
                (b"t", Some(p)) => p.name = Some(v),
                (b"k", Some(p)) => p.key = Some(v),
                (b"g", Some(p)) => p.group = Some(v),
                _ => {}
            }
        }
        out
    }
}

pub(crate) fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

pub(crate) fn string(v: Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

pub(crate) fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => Vec::new(),
    }
}

/// `[[id, [k, v, …] | nil], …]`.
pub(crate) fn entries(v: Value) -> Vec<Entry> {
    array(v)
        .into_iter()
        .filter_map(|e| {
            let mut parts = array(e).into_iter();
            let id = string(parts.next()?)?;
            let fields = match parts.next() {
                Some(Value::Array(kv)) => {
                    let mut out = Vec::with_capacity(kv.len() / 2);
                    let mut it = kv.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        if let (Some(k), Some(v)) = (bytes(k), bytes(v)) {
                            out.push((k, v));
                        }
                    }
                    Some(out)
                }
                Some(Value::Map(kv)) => Some(
                    kv.into_iter()
                        .filter_map(|(k, v)| Some((bytes(k)?, bytes(v)?)))
                        .collect(),
                ),
                _ => None,
            };
            Some(Entry { id, fields })
        })
        .collect()
}

/// `XREAD`/`XREADGROUP` reply: nil, `[[stream, entries], …]` or a RESP3 map, per stream.
pub(crate) fn read_streams(v: Value) -> Vec<(String, Vec<Entry>)> {
    match v {
        Value::Map(m) => m
            .into_iter()
            .filter_map(|(k, e)| Some((string(k)?, entries(e))))
            .collect(),
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| {
                let mut parts = array(s).into_iter();
                let name = string(parts.next()?)?;
                Some((name, parts.next().map(entries).unwrap_or_default()))
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, &str)]) -> Entry {
        Entry {
            id: "1-0".to_owned(),
            fields: Some(
                fields
                    .iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                    .collect(),
            ),
        }
    }

    #[test]
    fn a_pack_splits_at_each_event_field_and_keeps_each_events_own_fields() {
        let e = entry(&[
            ("e", "A"),
            ("t", "a.x"),
            ("k", "k1"),
            ("e", "B"),
            ("t", "b.y"),
            ("e", "C"),
            ("t", "c.z"),
            ("g", "billing"),
        ]);
        let p = e.parts();
        assert_eq!(p.len(), 3);
        assert_eq!(e.event_count(), 3);
        assert_eq!(
            (p[0].event, p[0].name, p[0].key),
            (&b"A"[..], Some(&b"a.x"[..]), Some(&b"k1"[..]))
        );
        assert_eq!(
            (p[1].event, p[1].name, p[1].key, p[1].group),
            (&b"B"[..], Some(&b"b.y"[..]), None, None)
        );
        assert_eq!((p[2].event, p[2].group), (&b"C"[..], Some(&b"billing"[..])));
    }

    #[test]
    fn fields_before_any_event_and_deleted_entries_give_no_parts() {
        assert!(entry(&[("t", "a"), ("k", "b")]).parts().is_empty());
        let gone = Entry {
            id: "1-0".to_owned(),
            fields: None,
        };
        assert!(gone.parts().is_empty());
        let one = entry(&[("t", "early"), ("e", "A"), ("t", "a.x")]);
        assert_eq!(one.parts().len(), 1);
        assert_eq!(one.parts()[0].name, Some(&b"a.x"[..]));
    }
}

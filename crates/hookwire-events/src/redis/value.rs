//! Reading stream replies (`XREAD`, `XREADGROUP`, `XAUTOCLAIM`, `XRANGE`) out of raw values.

use redis::Value;

/// One stream entry; `fields` is `None` when the entry was deleted while still pending.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl Entry {
    pub(crate) fn field(&self, name: &[u8]) -> Option<&[u8]> {
        self.fields
            .as_ref()?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
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

//! Key layout: every key of a bus shares the hash tag `{<stream>}`, so a bus lives in one
//! Cluster slot and every script touches one slot only.

/// The keys of one bus: `<prefix>{<stream>}:<suffix>`.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    base: String,
    pub(crate) stream: String,
    pub(crate) dl_events: String,
    pub(crate) dl_records: String,
    pub(crate) dl_index: String,
    pub(crate) overruns: String,
    pub(crate) channel: String,
    /// Every stream of the bus: [`MAIN`] (events without a partition key), then partition `p`
    /// at `1 + p`.
    pub(crate) streams: Vec<String>,
    /// Partitions of keyed events (0: every event in the main stream).
    pub(crate) partitions: u16,
}

/// Index of the stream of events without a partition key in [`Keys::streams`].
pub(crate) const MAIN: usize = 0;

/// The partition of a key: FNV-1a (32 bits) of its bytes, modulo `partitions`. Fixed forever:
/// every node and every version must agree on it.
pub(crate) fn partition_of(key: &[u8], partitions: u16) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in key {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    // The remainder is below `partitions`, itself a u16.
    (h % u32::from(partitions.max(1))) as u16
}

impl Keys {
    /// Names are validated by the builders (no braces), so the tag cannot be broken.
    pub(crate) fn new(prefix: &str, stream: &str, partitions: u16) -> Self {
        let base = format!("{prefix}{{{stream}}}:");
        let main = format!("{base}s");
        let mut streams = vec![main.clone()];
        streams.extend((0..partitions).map(|p| format!("{main}:{p}")));
        Self {
            stream: main,
            streams,
            partitions,
            dl_events: format!("{base}dl:ev"),
            dl_records: format!("{base}dl:rec"),
            dl_index: format!("{base}dl:idx"),
            overruns: format!("{base}overrun"),
            channel: format!("{base}ps"),
            base,
        }
    }
    /// Per-entry delivery counts of `group`.
    pub(crate) fn attempts(&self, group: &str) -> String {
        format!("{}att:{group}", self.base)
    }
    /// Per-entry failure records of `group`.
    pub(crate) fn failures(&self, group: &str) -> String {
        format!("{}err:{group}", self.base)
    }
    /// The lease of partition `p` in `group`: `<node> <fencing token>`.
    pub(crate) fn lease(&self, group: &str, p: u16) -> String {
        format!("{}lease:{group}:{p}", self.base)
    }
    /// Live nodes of `group` (sorted set: node → last heartbeat, ms).
    pub(crate) fn members(&self, group: &str) -> String {
        format!("{}nodes:{group}", self.base)
    }
    /// Fencing token counters of `group`'s partitions (hash: partition → last token).
    pub(crate) fn fences(&self, group: &str) -> String {
        format!("{}fence:{group}", self.base)
    }
    /// The stream index of an event with partition key `key`.
    pub(crate) fn stream_for(&self, key: Option<&[u8]>) -> usize {
        match key {
            Some(k) if self.partitions > 0 => 1 + usize::from(partition_of(k, self.partitions)),
            _ => MAIN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_stream_hash_tag() {
        let k = Keys::new("hw:", "events", 4);
        for key in k.streams.iter().chain([
            &k.stream,
            &k.dl_events,
            &k.dl_records,
            &k.dl_index,
            &k.overruns,
            &k.channel,
            &k.attempts("billing"),
            &k.failures("billing"),
            &k.lease("billing", 3),
            &k.members("billing"),
            &k.fences("billing"),
        ]) {
            assert!(key.starts_with("hw:{events}:"), "{key}");
        }
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        // Pinned values: the mapping is part of the data on disk.
        assert_eq!(partition_of(b"", 16), (0x811c_9dc5u32 % 16) as u16);
        assert_eq!(partition_of(b"k1", 16), partition_of(b"k1", 16));
        let mut seen = [0u32; 16];
        for i in 0..1600 {
            seen[usize::from(partition_of(format!("k{i}").as_bytes(), 16))] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        let k = Keys::new("hw:", "events", 16);
        assert_eq!(k.stream_for(None), MAIN);
        assert!((1..=16).contains(&k.stream_for(Some(b"k1"))));
        assert_eq!(Keys::new("hw:", "events", 0).stream_for(Some(b"k1")), MAIN);
    }
}

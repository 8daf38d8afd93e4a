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
}

impl Keys {
    /// Names are validated by the builders (no braces), so the tag cannot be broken.
    pub(crate) fn new(prefix: &str, stream: &str) -> Self {
        let base = format!("{prefix}{{{stream}}}:");
        Self {
            stream: format!("{base}s"),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_stream_hash_tag() {
        let k = Keys::new("hw:", "events");
        for key in [
            &k.stream,
            &k.dl_events,
            &k.dl_records,
            &k.dl_index,
            &k.overruns,
            &k.channel,
            &k.attempts("billing"),
            &k.failures("billing"),
        ] {
            assert!(key.starts_with("hw:{events}:"), "{key}");
        }
    }
}

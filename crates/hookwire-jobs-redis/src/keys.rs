//! Key layout: every key of a queue shares the hash tag `{queue}`, so a queue lives in one
//! Cluster slot and every script touches one slot only.

/// Key suffixes in the order the scripts expect them as `KEYS[1..]` (see `lua/common.lua`).
const SUFFIXES: [&str; 22] = [
    "seq",
    "wait",
    "delayed",
    "active",
    "lease",
    "ready",
    "meta",
    "att",
    "stall",
    "err",
    "res",
    "fin",
    "completed",
    "failed",
    "dead",
    "mark",
    "limit",
    "prog",
    "paused",
    "sched",
    "schedlast",
    "schedruns",
];

/// Index of the wake-up marker list in [`keys`].
pub(crate) const MARK: usize = 15;
/// Index of the pause flag in [`keys`].
pub(crate) const PAUSED: usize = 18;

/// The keys of `queue` under `prefix`: `<prefix>{<queue>}:<suffix>`.
///
/// Queue names are validated (no braces), so the tag cannot be broken by a name.
pub(crate) fn keys(prefix: &str, queue: &str) -> Vec<String> {
    SUFFIXES
        .iter()
        .map(|s| format!("{prefix}{{{queue}}}:{s}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_queue_hash_tag() {
        let k = keys("hw:", "send-email");
        assert_eq!(k.len(), 22);
        assert!(k.iter().all(|k| k.starts_with("hw:{send-email}:")));
        assert_eq!(k[MARK], "hw:{send-email}:mark");
        assert_eq!(k[5], "hw:{send-email}:ready");
        assert_eq!(k[PAUSED], "hw:{send-email}:paused");
    }
}

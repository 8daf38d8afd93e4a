//! How an entry's events finish for one group: the pack that counts them, failure records and
//! parking (`fail.lua`), and the acknowledgements, sent in batches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use redis::aio::ConnectionLike;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::consumer::{ACK_BATCH, Consumer, lock, reconnect_backoff};
use super::keys::MAIN;
use super::scripts;
use super::value::Entry;
use crate::error::{Error, Result};
use crate::transport::sleep_or_stop;

/// One entry being worked on: acknowledged once each of its events is finished (handled,
/// skipped or parked).
pub(super) struct Pack {
    pub(super) sid: usize,
    pub(super) id: String,
    /// Whether the entry holds several events (their counters are kept per event).
    pub(super) packed: bool,
    pub(super) left: AtomicUsize,
    /// What the acknowledgement takes along: the counters of events that failed on the way
    /// (or were parked), and the budget permit of an entry of one event.
    pub(super) done: Mutex<(Vec<String>, Vec<OwnedSemaphorePermit>)>,
}

impl Pack {
    /// The counters' reference of event `part`.
    pub(super) fn event_ref(&self, part: usize) -> String {
        let r = entry_ref(self.sid, &self.id);
        if self.packed {
            format!("{r}#{part}")
        } else {
            r
        }
    }
}

/// The entry's reference in the failure counters and dead letters.
pub(super) fn entry_ref(sid: usize, id: &str) -> String {
    if sid == MAIN {
        id.to_owned()
    } else {
        format!("{}/{id}", sid - 1)
    }
}

/// An entry to acknowledge, with the counters its events left behind.
pub(super) struct Ack {
    pub(super) sid: usize,
    pub(super) id: String,
    /// Counter references to forget.
    pub(super) clear: Vec<String>,
    pub(super) _permits: Vec<OwnedSemaphorePermit>,
}

impl<C> Consumer<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// Acknowledges an entry this group does not handle.
    pub(super) fn skip(&self, sid: usize, id: String) {
        self.send_ack(Ack {
            sid,
            id,
            clear: Vec::new(),
            _permits: Vec::new(),
        });
    }

    /// Marks one event of `pack` finished; the last one acknowledges the entry.
    pub(super) fn finish(
        &self,
        pack: &Pack,
        clear: Option<String>,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let (clear, permits) = {
            let mut d = lock(&pack.done);
            d.0.extend(clear);
            // A pack's events give their budget back as they finish: a pack may hold more
            // events than the budget has permits. An entry of one event keeps its permit until
            // acknowledged, which bounds what waits for the acker.
            if !pack.packed {
                d.1.extend(permit);
            }
            if pack.left.fetch_sub(1, Ordering::AcqRel) != 1 {
                return;
            }
            (std::mem::take(&mut d.0), std::mem::take(&mut d.1))
        };
        self.send_ack(Ack {
            sid: pack.sid,
            id: pack.id.clone(),
            clear,
            _permits: permits,
        });
    }

    /// Parks an entry (it took its consumers down too often, or holds no event at all) and
    /// acknowledges it: of a pack, every event this group handles (the others never ran here).
    pub(super) async fn park_entry(&self, sid: usize, e: &Entry, why: String) -> Result<()> {
        let parts = e.parts();
        if parts.len() <= 1 {
            self.fail(sid, &e.id, None, vec![why], true).await?;
            return Ok(());
        }
        let mut clear = Vec::with_capacity(parts.len());
        for (part, p) in parts.iter().enumerate() {
            if !self.is_ours(p) {
                continue;
            }
            let r = format!("{}#{part}", entry_ref(sid, &e.id));
            self.fail(sid, &e.id, Some((part, r.clone())), vec![why.clone()], true)
                .await?;
            clear.push(r);
        }
        self.send_ack(Ack {
            sid,
            id: e.id.clone(),
            clear,
            _permits: Vec::new(),
        });
        Ok(())
    }

    pub(super) fn send_ack(&self, a: Ack) {
        if let Some(tx) = lock(&self.acks).as_ref() {
            let _ = tx.send(a);
        }
    }

    /// Records a failed delivery of entry `id` (of its event `part`, with that event's counter
    /// reference, when the entry is a pack); returns (parked, failures so far).
    pub(super) async fn fail(
        &self,
        sid: usize,
        id: &str,
        part: Option<(usize, String)>,
        chain: Vec<String>,
        park: bool,
    ) -> Result<(bool, u32)> {
        let k = &self.shared.keys;
        let chain = serde_json::to_string(&chain).unwrap_or_else(|_| "[]".to_owned());
        let mut inv = scripts::FAIL.prepare_invoke();
        inv.key(&k.streams[sid])
            .key(k.attempts(&self.group))
            .key(k.failures(&self.group))
            .key(&k.dl_events)
            .key(&k.dl_records)
            .key(&k.dl_index)
            .arg(&self.group)
            .arg(id)
            .arg(chain)
            .arg(hookwire_core::time::unix_millis())
            .arg(self.spec.delivery.max_deliveries)
            .arg(if park { "1" } else { "0" });
        match part {
            Some((n, r)) => inv.arg(r).arg(n),
            None => inv.arg(entry_ref(sid, id)).arg(""),
        };
        let mut c = self.shared.conn.clone();
        let (parked, n): (u8, u32) = inv.invoke_async(&mut c).await.map_err(Error::transport)?;
        Ok((parked == 1, n))
    }

    /// Acknowledges in batches; a failed batch is retried until Redis answers or, once the
    /// consumer stops, given up (those entries stay pending and are delivered again).
    pub(super) async fn acker(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Ack>) {
        let mut stop = self.stop.clone();
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < ACK_BATCH {
                match rx.try_recv() {
                    Ok(a) => batch.push(a),
                    Err(_) => break,
                }
            }
            let k = &self.shared.keys;
            let mut pipe = redis::pipe();
            let mut by_stream: Vec<(usize, Vec<&str>)> = Vec::new();
            for a in &batch {
                match by_stream.iter_mut().find(|(s, _)| *s == a.sid) {
                    Some((_, ids)) => ids.push(&a.id),
                    None => by_stream.push((a.sid, vec![&a.id])),
                }
            }
            for (sid, ids) in &by_stream {
                pipe.cmd("XACK")
                    .arg(&k.streams[*sid])
                    .arg(&self.group)
                    .arg(ids)
                    .ignore();
            }
            let failed: Vec<&String> = batch.iter().flat_map(|a| &a.clear).collect();
            if !failed.is_empty() {
                pipe.hdel(k.attempts(&self.group), &failed)
                    .ignore()
                    .hdel(k.failures(&self.group), &failed)
                    .ignore();
            }
            let mut tries = 0u32;
            loop {
                let mut c = self.shared.conn.clone();
                match pipe.query_async::<()>(&mut c).await {
                    Ok(()) => break,
                    Err(e) => {
                        tries += 1;
                        tracing::warn!(group = %self.group, error = %e, "acknowledgement failed");
                        if self.is_stopped() && tries >= 3 {
                            break;
                        }
                        let d = reconnect_backoff().delay(tries - 1);
                        if sleep_or_stop(&mut stop, d).await && tries >= 3 {
                            break;
                        }
                    }
                }
            }
            let mut acked = lock(&self.acked);
            let mut inflight = lock(&self.inflight);
            for a in batch {
                let r = (a.sid, a.id);
                inflight.remove(&r);
                if acked.0 > 0 {
                    acked.1.insert(r);
                }
            }
        }
    }
}

//! [`MemoryTransport`]: in process, awaited, for tests and the demo.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hookwire_core::{BoxFuture, Event};
use tokio::task::JoinSet;

use super::{Control, Driver, Encoded, Mode, SubSpec, Transport};
use crate::dead::{DeadLetter, Failure};
use crate::error::Result;
use crate::runner::Outcome;

/// The in-process transport.
///
/// `publish` runs the first delivery of every matching subscription before it returns, in
/// subscription order (the order `subscribe`/`broadcast` were called), one after the other; a
/// group with several subscriptions (several buses on one transport) takes turns. A failed
/// delivery is retried on a background task after the bus's backoff, so `publish` never waits
/// through a retry; after `max_deliveries` the event joins the dead letters. Nothing survives
/// the process: pending retries are dropped by `shutdown`, and a new group has no backlog to
/// read.
///
/// Clones share subscriptions, so several [`Bus`](crate::Bus)es on clones of one transport act
/// as nodes of one process.
#[derive(Debug, Clone, Default)]
pub struct MemoryTransport {
    inner: Arc<Mem>,
}

#[derive(Debug, Default)]
struct Mem {
    subs: Mutex<Vec<(Arc<Control>, SubSpec)>>,
    turn: Mutex<HashMap<String, usize>>,
    dead: Mutex<BTreeMap<String, DeadLetter>>,
    retries: Mutex<JoinSet<()>>,
    seq: AtomicU64,
}

impl MemoryTransport {
    /// An empty transport.
    pub fn new() -> Self {
        Self::default()
    }
}

impl From<MemoryTransport> for Transport {
    fn from(t: MemoryTransport) -> Self {
        Transport::new(Arc::new(MemDriver { mem: t.inner }))
    }
}

/// The driver: an owned handle on the shared state, so deliveries can spawn retry tasks.
#[derive(Debug)]
struct MemDriver {
    mem: Arc<Mem>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One event on its way to one subscription.
#[derive(Debug, Clone)]
struct Delivery {
    event: Event,
    bytes: Arc<Vec<u8>>,
    attempt: u32,
    failures: Vec<Failure>,
}

impl Mem {
    /// The subscriptions that get `name`: every broadcast one, one per group (taking turns).
    fn targets(&self, name: &str) -> Vec<(Arc<Control>, SubSpec)> {
        let mut subs = lock(&self.subs);
        subs.retain(|(c, _)| !c.is_stopped());
        let mut out = Vec::new();
        let mut by_group: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, (_, s)) in subs.iter().enumerate() {
            if !s.pattern.matches(name) {
                continue;
            }
            match &s.mode {
                Mode::Broadcast => out.push(i),
                Mode::Group { name, .. } => match by_group.iter_mut().find(|(g, _)| g == name) {
                    Some((_, v)) => v.push(i),
                    None => {
                        out.push(i);
                        by_group.push((name.clone(), vec![i]));
                    }
                },
            }
        }
        let mut turn = lock(&self.turn);
        for (g, members) in by_group {
            if members.len() > 1 {
                let t = turn.entry(g).or_insert(0);
                let pick = members[*t % members.len()];
                *t = t.wrapping_add(1);
                if let Some(slot) = out.iter_mut().find(|i| **i == members[0]) {
                    *slot = pick;
                }
            }
        }
        out.into_iter().map(|i| subs[i].clone()).collect()
    }

    fn deliver(self: Arc<Self>, spec: SubSpec, mut d: Delivery) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let (chain, dead) = match spec.runner.run(d.event.clone()).await {
                Outcome::Done => return,
                Outcome::Retry(c) => (c, false),
                Outcome::Dead(c) => (c, true),
            };
            let now = hookwire_core::time::unix_millis();
            d.failures.push(Failure {
                attempt: d.attempt,
                at_ms: now,
                chain,
            });
            let group = match &spec.mode {
                Mode::Group { name, .. } => name.clone(),
                Mode::Broadcast => {
                    tracing::warn!(event.id = %d.event.id, "broadcast handler failed");
                    return;
                }
            };
            if dead || d.attempt >= spec.delivery.max_deliveries {
                let n = self.seq.fetch_add(1, Ordering::Relaxed);
                let id = format!("{group}/m{n:020}");
                let first = d.failures.first().map_or(now, |f| f.at_ms);
                lock(&self.dead).insert(
                    id.clone(),
                    DeadLetter {
                        id,
                        group,
                        original_id: format!("m{n}"),
                        event: d.event,
                        event_bytes: d.bytes.to_vec(),
                        attempts: d.attempt,
                        failures: d.failures,
                        first_failed_at_ms: first,
                        last_failed_at_ms: now,
                    },
                );
                return;
            }
            let delay = spec.delivery.backoff.delay(d.attempt - 1);
            d.attempt += 1;
            let me = self.clone();
            let mut retries = lock(&self.retries);
            while retries.try_join_next().is_some() {}
            retries.spawn(async move {
                tokio::time::sleep(delay).await;
                me.deliver(spec, d).await;
            });
        })
    }
}

impl Driver for MemDriver {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn publish<'a>(&'a self, batch: &'a [Encoded]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let me = self.mem.clone();
            for enc in batch {
                let bytes = Arc::new(enc.bytes.clone());
                for (_, spec) in me.targets(&enc.event.name) {
                    let d = Delivery {
                        event: enc.event.clone(),
                        bytes: bytes.clone(),
                        attempt: 1,
                        failures: Vec::new(),
                    };
                    me.clone().deliver(spec, d).await;
                }
            }
            Ok(())
        })
    }

    fn subscribe(&self, spec: SubSpec) -> BoxFuture<'_, Result<Arc<Control>>> {
        Box::pin(async move {
            let (control, _rx) = Control::new();
            lock(&self.mem.subs).push((control.clone(), spec));
            Ok(control)
        })
    }

    fn dl_list(&self, limit: usize) -> BoxFuture<'_, Result<Vec<DeadLetter>>> {
        let mut v: Vec<_> = lock(&self.mem.dead).values().cloned().collect();
        v.sort_by_key(|d| d.last_failed_at_ms);
        v.truncate(limit);
        Box::pin(async move { Ok(v) })
    }

    fn dl_get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<DeadLetter>>> {
        let d = lock(&self.mem.dead).get(id).cloned();
        Box::pin(async move { Ok(d) })
    }

    fn dl_redrive<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let Some(d) = lock(&self.mem.dead).remove(id) else {
                return Ok(false);
            };
            let event: Event = serde_json::from_slice(&d.event_bytes)
                .map_err(|e| crate::Error::new(crate::ErrorKind::Serialize, e))?;
            let target = {
                let subs = lock(&self.mem.subs);
                subs.iter()
                    .find(|(c, s)| {
                        !c.is_stopped()
                            && matches!(&s.mode, Mode::Group { name, .. } if *name == d.group)
                    })
                    .map(|(_, s)| s.clone())
            };
            let Some(spec) = target else {
                let group = d.group.clone();
                lock(&self.mem.dead).insert(id.to_owned(), d);
                return Err(crate::Error::invalid(format!(
                    "group {group} has no subscription on this transport"
                )));
            };
            let del = Delivery {
                event,
                bytes: Arc::new(d.event_bytes),
                attempt: 1,
                failures: Vec::new(),
            };
            self.mem.clone().deliver(spec, del).await;
            Ok(true)
        })
    }

    fn dl_discard<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool>> {
        let found = lock(&self.mem.dead).remove(id).is_some();
        Box::pin(async move { Ok(found) })
    }

    fn overruns<'a>(&'a self, _group: &'a str) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async { Ok(0) })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            lock(&self.mem.retries).abort_all();
            lock(&self.mem.subs).clear();
        })
    }
}

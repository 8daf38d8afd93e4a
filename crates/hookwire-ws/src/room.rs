//! The [`RoomManager`]: who is in which room, and delivery of one pre-serialized frame to a
//! room's members without ever waiting on any of them.
//!
//! Members are indexed by room, then by organization (`Option<org>` as a map key, never a
//! `"org:room"` string, so no organization or room name can collide with another; spec `ws.md`,
//! "Pitfalls"). Delivery is a non-blocking push into each member's bounded queue: a full
//! queue marks that member for a 1013 close and the loop moves on, so a slow client never
//! blocks the broadcaster or the other members.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

use tokio::sync::Notify;

use crate::Identity;
use crate::frame::{CLOSE_SLOW_CLIENT, ErrorCode};

/// Which members of a room a frame is for.
///
/// ```
/// let a = hookwire_ws::Audience::Org("acme".into());
/// assert_ne!(a, hookwire_ws::Audience::All);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "org", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Audience {
    /// Every member, whatever its organization (explicitly global broadcasts).
    All,
    /// Only members of this organization.
    Org(Arc<str>),
    /// Only members without an organization (an event without organization under org scoping).
    NoOrg,
}

/// Tells a connection's driver to close it, from anywhere (a broadcaster that found its queue
/// full, a shutdown); the first code set wins.
#[derive(Debug, Default)]
pub struct KillSignal {
    code: AtomicU16,
    notify: Notify,
}

impl KillSignal {
    /// Requests a close with `code` (ignored if a close was already requested).
    ///
    /// ```
    /// let k = hookwire_ws::KillSignal::default();
    /// k.kill(1013);
    /// k.kill(4000);
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// assert_eq!(rt.block_on(k.wait()), 1013);
    /// ```
    pub fn kill(&self, code: u16) {
        if self
            .code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // notify_one stores a permit when nobody waits yet, so the kill is never lost.
            self.notify.notify_one();
        }
    }

    /// Waits for a close request and returns its code. Cancel safe.
    pub async fn wait(&self) -> u16 {
        loop {
            let code = self.code.load(Ordering::Acquire);
            if code != 0 {
                return code;
            }
            self.notify.notified().await;
        }
    }

    /// Whether a close was requested.
    ///
    /// ```
    /// assert!(!hookwire_ws::KillSignal::default().is_killed());
    /// ```
    pub fn is_killed(&self) -> bool {
        self.code.load(Ordering::Acquire) != 0
    }
}

/// A client's bounded outbound queue of shared frames, drained by its connection driver.
///
/// Lighter than a channel: an idle client's queue allocates nothing (a channel allocates its
/// first block of slots up front), and capacity left by a burst is given back once it drains.
///
/// ```
/// use hookwire_ws::{Identity, RoomManager};
/// let rooms = RoomManager::new(10);
/// let m = rooms.register("ws_1".into(), Identity::new(), 4);
/// assert!(m.outbox().try_recv().is_none());
/// ```
#[derive(Debug)]
pub struct Outbox {
    frames: std::sync::Mutex<VecDeque<Bytes>>,
    cap: usize,
    /// Shared with the member's kill signal: one `Notify` wakes the driver for a frame *or* a
    /// close, so its loop registers one waiter instead of two per wake-up.
    signal: Arc<KillSignal>,
}

/// What a connection's driver gets from its [`Outbox`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outbound {
    /// A frame to write.
    Frame(Bytes),
    /// Close the socket with this code (queue overflow, shutdown, …).
    Close(u16),
}

/// Capacity an empty queue may keep after a burst before it is shrunk.
const OUTBOX_KEEP: usize = 16;

impl Outbox {
    fn new(cap: usize) -> Self {
        Self {
            frames: std::sync::Mutex::new(VecDeque::new()),
            cap: cap.max(1),
            signal: Arc::default(),
        }
    }

    /// Appends `frame` unless the queue holds `cap` frames already.
    fn push(&self, frame: Bytes) -> bool {
        let mut q = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.cap {
            return false;
        }
        q.push_back(frame);
        drop(q);
        // One consumer: notify_one leaves a permit if the driver is not waiting yet.
        self.signal.notify.notify_one();
        true
    }

    /// The next frame if one is queued.
    pub fn try_recv(&self) -> Option<Bytes> {
        let mut q = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        let f = q.pop_front();
        if q.is_empty() && q.capacity() > OUTBOX_KEEP {
            q.shrink_to(OUTBOX_KEEP);
        }
        f
    }

    /// Waits for the next frame, or for a close request (which wins over queued frames).
    /// Cancel safe (a frame is only taken when returned); one consumer at a time.
    pub async fn recv(&self) -> Outbound {
        loop {
            let code = self.signal.code.load(Ordering::Acquire);
            if code != 0 {
                return Outbound::Close(code);
            }
            if let Some(f) = self.try_recv() {
                return Outbound::Frame(f);
            }
            self.signal.notify.notified().await;
        }
    }

    /// Frames queued now.
    pub fn len(&self) -> usize {
        self.frames.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One connected client as the rooms see it: its identity and its bounded outbound queue.
#[derive(Debug)]
pub struct Member {
    key: u64,
    client_id: String,
    identity: Identity,
    outbox: Outbox,
}

impl Member {
    /// The protocol client id (`ws_…`).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
    /// Who the client is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
    /// The member's kill signal.
    pub fn kill_signal(&self) -> &Arc<KillSignal> {
        &self.outbox.signal
    }
    /// The member's outbound queue.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    /// Queues `frame` without waiting: `false` if the queue is full (the member is then marked
    /// for a 1013 close) or the member is already closing.
    pub(crate) fn offer(&self, frame: Bytes) -> bool {
        if self.outbox.signal.is_killed() {
            return false;
        }
        if self.outbox.push(frame) {
            return true;
        }
        self.outbox.signal.kill(CLOSE_SLOW_CLIENT);
        false
    }
}

#[derive(Debug, Default)]
struct Room {
    len: usize,
    by_org: HashMap<Option<Arc<str>>, HashMap<u64, Arc<Member>>>,
}

/// Every registered member, by key and by client id.
#[derive(Debug, Default)]
struct Registry {
    by_key: HashMap<u64, Arc<Member>>,
    by_id: HashMap<Arc<str>, u64>,
}

/// Counts for the stats endpoint (`GET <path>/stats`).
///
/// ```
/// let rooms = hookwire_ws::RoomManager::new(10);
/// let s = rooms.stats(|_| true);
/// assert_eq!((s.clients, s.rooms), (0, 0));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Connected clients on this node.
    pub clients: usize,
    /// Non-empty rooms on this node.
    pub rooms: usize,
    /// Members per room, for the rooms the caller may see named (the configured resources);
    /// other rooms are counted in `rooms` but not listed.
    pub subscriptions: BTreeMap<String, usize>,
}

/// Rooms and their members on this node (framework-agnostic).
///
/// ```
/// use hookwire_ws::{Audience, Identity, RoomManager};
/// let rooms = RoomManager::new(10_000);
/// let ann = rooms.register("ws_1".into(), Identity::new().with_organization("acme"), 8);
/// rooms.subscribe(&ann, "order").unwrap();
/// let n = rooms.deliver("order", &Audience::Org("acme".into()), bytes::Bytes::from_static(b"{}"));
/// assert_eq!(n, 1);
/// assert_eq!(ann.outbox().try_recv().unwrap(), bytes::Bytes::from_static(b"{}"));
/// assert_eq!(rooms.deliver("order", &Audience::Org("globex".into()), bytes::Bytes::new()), 0);
/// ```
#[derive(Debug)]
pub struct RoomManager {
    max_per_room: usize,
    rooms: RwLock<HashMap<Arc<str>, Room>>,
    clients: AtomicUsize,
    /// Every registered client, so a shutdown can close sockets that hold no room and a client
    /// can be looked up by id. Several members may share an id (`register` takes any string):
    /// the newest one is found, and removing an older one keeps it findable.
    members: std::sync::Mutex<Registry>,
    next_key: AtomicU64,
    slow_dropped: AtomicU64,
}

impl RoomManager {
    /// An empty manager whose rooms hold at most `max_per_room` members.
    pub fn new(max_per_room: usize) -> Self {
        Self {
            max_per_room,
            rooms: RwLock::default(),
            clients: AtomicUsize::new(0),
            members: std::sync::Mutex::default(),
            next_key: AtomicU64::new(1),
            slow_dropped: AtomicU64::new(0),
        }
    }

    /// Registers a client with an outbound queue of `queue` frames (drained through
    /// [`Member::outbox`]). Pair with [`RoomManager::remove`].
    pub fn register(&self, client_id: String, identity: Identity, queue: usize) -> Arc<Member> {
        let member = Arc::new(Member {
            key: self.next_key.fetch_add(1, Ordering::Relaxed),
            client_id,
            identity,
            outbox: Outbox::new(queue),
        });
        self.clients.fetch_add(1, Ordering::Relaxed);
        let mut reg = self.lock_members();
        reg.by_id.insert(Arc::from(member.client_id()), member.key);
        reg.by_key.insert(member.key, Arc::clone(&member));
        drop(reg);
        member
    }

    fn lock_members(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The registered client `client_id`, if any.
    ///
    /// ```
    /// use hookwire_ws::{Identity, RoomManager};
    /// let rooms = RoomManager::new(10);
    /// let m = rooms.register("ws_1".into(), Identity::new(), 4);
    /// assert!(rooms.client("ws_1").is_some_and(|c| std::sync::Arc::ptr_eq(&c, &m)));
    /// rooms.remove(&m, []);
    /// assert!(rooms.client("ws_1").is_none());
    /// ```
    pub fn client(&self, client_id: &str) -> Option<Arc<Member>> {
        let reg = self.lock_members();
        let key = reg.by_id.get(client_id)?;
        reg.by_key.get(key).cloned()
    }

    /// Whether `member` is in `room`.
    ///
    /// ```
    /// use hookwire_ws::{Identity, RoomManager};
    /// let rooms = RoomManager::new(10);
    /// let m = rooms.register("ws_1".into(), Identity::new(), 4);
    /// rooms.subscribe(&m, "r").unwrap();
    /// assert!(rooms.holds(&m, "r") && !rooms.holds(&m, "s"));
    /// ```
    pub fn holds(&self, member: &Member, room: &str) -> bool {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        rooms.get(room).is_some_and(|r| {
            r.by_org
                .get(&member.identity.org_arc())
                .is_some_and(|m| m.contains_key(&member.key))
        })
    }

    /// Adds `member` to `room` (idempotent). Fails with [`ErrorCode::RoomFull`] when the room
    /// already has `max_per_room` other members.
    pub fn subscribe(&self, member: &Arc<Member>, room: &str) -> Result<(), ErrorCode> {
        let mut rooms = self.rooms.write().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = rooms.get(room) {
            let org = member.identity.org_arc();
            if r.by_org
                .get(&org)
                .is_some_and(|m| m.contains_key(&member.key))
            {
                return Ok(());
            }
            if r.len >= self.max_per_room {
                return Err(ErrorCode::RoomFull);
            }
        } else if self.max_per_room == 0 {
            return Err(ErrorCode::RoomFull);
        }
        let r = rooms.entry(Arc::from(room)).or_default();
        r.by_org
            .entry(member.identity.org_arc())
            .or_default()
            .insert(member.key, Arc::clone(member));
        r.len += 1;
        Ok(())
    }

    /// Removes `member` from `room`; `true` if it was a member. Empty rooms are forgotten.
    pub fn unsubscribe(&self, member: &Member, room: &str) -> bool {
        let mut rooms = self.rooms.write().unwrap_or_else(|e| e.into_inner());
        let Some(r) = rooms.get_mut(room) else {
            return false;
        };
        let org = member.identity.org_arc();
        let removed = r
            .by_org
            .get_mut(&org)
            .is_some_and(|m| m.remove(&member.key).is_some());
        if removed {
            r.len -= 1;
            if r.by_org.get(&org).is_some_and(HashMap::is_empty) {
                r.by_org.remove(&org);
            }
            if r.len == 0 {
                rooms.remove(room);
            }
        }
        removed
    }

    /// Forgets a client: removes it from `rooms` (the rooms it holds) and from the count.
    pub fn remove<'a>(&self, member: &Member, rooms: impl IntoIterator<Item = &'a str>) {
        for room in rooms {
            self.unsubscribe(member, room);
        }
        self.clients.fetch_sub(1, Ordering::Relaxed);
        let mut reg = self.lock_members();
        reg.by_key.remove(&member.key);
        if reg.by_id.get(member.client_id()) == Some(&member.key) {
            reg.by_id.remove(member.client_id());
        }
    }

    /// Queues `frame` for the members of `room` in `audience`, never waiting; returns how many
    /// accepted it. Members whose queue is full are marked for a 1013 close.
    pub fn deliver(&self, room: &str, audience: &Audience, frame: Bytes) -> usize {
        self.deliver_except(room, audience, frame, None)
    }

    /// Like [`deliver`](Self::deliver), skipping `except` (the sender of a relayed message).
    ///
    /// ```
    /// use hookwire_ws::{Audience, Identity, RoomManager};
    /// let rooms = RoomManager::new(10);
    /// let a = rooms.register("ws_a".into(), Identity::new(), 4);
    /// let b = rooms.register("ws_b".into(), Identity::new(), 4);
    /// rooms.subscribe(&a, "r").unwrap();
    /// rooms.subscribe(&b, "r").unwrap();
    /// assert_eq!(rooms.deliver_except("r", &Audience::All, bytes::Bytes::new(), Some(&a)), 1);
    /// assert!(a.outbox().is_empty());
    /// ```
    pub fn deliver_except(
        &self,
        room: &str,
        audience: &Audience,
        frame: Bytes,
        except: Option<&Member>,
    ) -> usize {
        let skip = except.map(|m| m.key);
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        let Some(r) = rooms.get(room) else {
            return 0;
        };
        let mut sent = 0;
        let mut offer = |members: &HashMap<u64, Arc<Member>>| {
            for m in members.values() {
                if Some(m.key) == skip {
                    continue;
                }
                if m.offer(frame.clone()) {
                    sent += 1;
                } else if m.kill_signal().is_killed() {
                    self.slow_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        };
        match audience {
            Audience::All => r.by_org.values().for_each(&mut offer),
            Audience::Org(org) => {
                if let Some(m) = r.by_org.get(&Some(Arc::clone(org))) {
                    offer(m);
                }
            }
            Audience::NoOrg => {
                if let Some(m) = r.by_org.get(&None) {
                    offer(m);
                }
            }
        }
        sent
    }

    /// Asks every connected client's driver to close with `code` (for example
    /// [`crate::CLOSE_GOING_AWAY`] on shutdown); returns how many were asked.
    ///
    /// ```
    /// use hookwire_ws::{Identity, RoomManager};
    /// let rooms = RoomManager::new(10);
    /// let m = rooms.register("ws_1".into(), Identity::new(), 4);
    /// assert_eq!(rooms.close_all(hookwire_ws::CLOSE_GOING_AWAY), 1);
    /// assert!(m.kill_signal().is_killed());
    /// ```
    pub fn close_all(&self, code: u16) -> usize {
        let reg = self.lock_members();
        for m in reg.by_key.values() {
            m.kill_signal().kill(code);
        }
        reg.by_key.len()
    }

    /// Members of `room` on this node.
    ///
    /// ```
    /// assert_eq!(hookwire_ws::RoomManager::new(1).room_len("x"), 0);
    /// ```
    pub fn room_len(&self, room: &str) -> usize {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        rooms.get(room).map_or(0, |r| r.len)
    }

    /// Connected clients on this node.
    ///
    /// ```
    /// assert_eq!(hookwire_ws::RoomManager::new(1).client_count(), 0);
    /// ```
    pub fn client_count(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// How many deliveries found a member's queue full (each marks that member for closing).
    ///
    /// ```
    /// assert_eq!(hookwire_ws::RoomManager::new(1).slow_drops(), 0);
    /// ```
    pub fn slow_drops(&self) -> u64 {
        self.slow_dropped.load(Ordering::Relaxed)
    }

    /// Counts; rooms for which `named(room)` is true are listed by name.
    pub fn stats(&self, named: impl Fn(&str) -> bool) -> Stats {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        Stats {
            clients: self.client_count(),
            rooms: rooms.len(),
            subscriptions: rooms
                .iter()
                .filter(|(k, _)| named(k))
                .map(|(k, r)| (k.to_string(), r.len))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(rooms: &RoomManager, org: Option<&str>, q: usize) -> Arc<Member> {
        let mut id = Identity::new();
        if let Some(o) = org {
            id = id.with_organization(o);
        }
        rooms.register("ws_x".into(), id, q)
    }

    #[test]
    fn org_and_room_names_with_separators_never_collide() {
        let rooms = RoomManager::new(100);
        // With "org:room" string keys, org "a:b"+room "c" and org "a"+room "b:c" collide.
        let m1 = member(&rooms, Some("a:b"), 4);
        let m2 = member(&rooms, Some("a"), 4);
        rooms.subscribe(&m1, "c").unwrap();
        rooms.subscribe(&m2, "b:c").unwrap();
        assert_eq!(
            rooms.deliver("c", &Audience::Org("a".into()), Bytes::from_static(b"1")),
            0
        );
        assert_eq!(
            rooms.deliver(
                "b:c",
                &Audience::Org("a:b".into()),
                Bytes::from_static(b"2")
            ),
            0
        );
        assert!(m1.outbox().is_empty() && m2.outbox().is_empty());
    }

    #[test]
    fn no_org_audience_skips_org_members() {
        let rooms = RoomManager::new(100);
        let m1 = member(&rooms, Some("acme"), 4);
        let m2 = member(&rooms, None, 4);
        rooms.subscribe(&m1, "r").unwrap();
        rooms.subscribe(&m2, "r").unwrap();
        assert_eq!(
            rooms.deliver("r", &Audience::NoOrg, Bytes::from_static(b"x")),
            1
        );
        assert!(m1.outbox().try_recv().is_none());
        assert!(m2.outbox().try_recv().is_some());
        assert_eq!(
            rooms.deliver("r", &Audience::All, Bytes::from_static(b"y")),
            2
        );
    }

    #[test]
    fn full_queue_kills_only_that_member() {
        let rooms = RoomManager::new(100);
        let slow = member(&rooms, None, 1);
        let fast = member(&rooms, None, 8);
        rooms.subscribe(&slow, "r").unwrap();
        rooms.subscribe(&fast, "r").unwrap();
        for _ in 0..3 {
            rooms.deliver("r", &Audience::All, Bytes::from_static(b"x"));
            fast.outbox().try_recv().unwrap();
        }
        assert!(slow.kill_signal().is_killed());
        assert!(!fast.kill_signal().is_killed());
        assert_eq!(rooms.slow_drops(), 2);
    }

    #[test]
    fn room_capacity_and_idempotent_subscribe() {
        let rooms = RoomManager::new(1);
        let a = member(&rooms, None, 1);
        let b = member(&rooms, None, 1);
        rooms.subscribe(&a, "r").unwrap();
        rooms.subscribe(&a, "r").unwrap();
        assert_eq!(rooms.subscribe(&b, "r"), Err(ErrorCode::RoomFull));
        assert!(rooms.unsubscribe(&a, "r"));
        assert_eq!(rooms.stats(|_| true).rooms, 0);
        rooms.subscribe(&b, "r").unwrap();
    }

    #[test]
    fn outbox_gives_back_burst_capacity_once_drained() {
        let o = Outbox::new(500);
        for _ in 0..300 {
            assert!(o.push(Bytes::from_static(b"x")));
        }
        while o.try_recv().is_some() {}
        let cap = o.frames.lock().unwrap().capacity();
        assert!(cap <= OUTBOX_KEEP, "kept {cap} slots");
    }

    #[test]
    fn outbox_recv_wakes_on_push_from_another_thread() {
        let o = Arc::new(Outbox::new(4));
        let o2 = Arc::clone(&o);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            o2.push(Bytes::from_static(b"late"))
        });
        let got = rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), o.recv()).await
        });
        assert_eq!(got.unwrap(), Outbound::Frame(Bytes::from_static(b"late")));
        assert!(t.join().unwrap());
    }
}

//! The dispatcher as a consumer group of the event bus (feature `events`): every event published
//! on the bus is dispatched to the matching subscriptions, once per group across all nodes, and
//! subscription changes made on one node reach every node.
//!
//! Changes travel as small broadcast announcements (`{"subscription", "change"}`, never the
//! subscription itself: secrets stay in the store), and each node answers one by re-reading the
//! shared store ([`Dispatcher::reload`]). Announcements are at most once, so every node also
//! reloads on a timer: a node that missed one is stale for at most the reload interval.

use std::sync::Arc;
use std::time::Duration;

use hookwire_core::{Event, Pattern};
use hookwire_events::{Bus, BusSubscription, Group, HandlerError};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

use super::{Dispatcher, HealthEventKind, Subscription};
use crate::error::{Error, ErrorKind};

/// The event type of subscription-change announcements, unless
/// [`BusDispatcherBuilder::changes_event`] says otherwise. The group subscription never
/// dispatches it to webhooks.
pub const DEFAULT_CHANGES_EVENT: &str = "hookwire.webhooks.changed";

/// How often every node re-reads the store even without an announcement (default 30 s): the
/// bound on how long a node that missed an announcement stays stale.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// The shortest time between two reloads of one node, however many announcements arrive:
/// a burst of changes costs one store read per gap, not one per change.
const MIN_RELOAD_GAP: Duration = Duration::from_millis(100);

/// Configures a [`BusDispatcher`]; made by [`Dispatcher::on_bus`].
#[derive(Debug)]
#[must_use]
pub struct BusDispatcherBuilder {
    dispatcher: Dispatcher,
    bus: Bus,
    group: Group,
    pattern: String,
    changes: String,
    reload_interval: Duration,
}

impl BusDispatcherBuilder {
    /// The consumer group (default `Group::at_end("webhooks")`: a new group dispatches events
    /// published from its creation on). Every node of one deployment uses the same group.
    pub fn group(mut self, group: Group) -> Self {
        self.group = group;
        self
    }
    /// Which bus events are dispatched at all (default `*`); each subscription's own patterns
    /// and organization filter then choose its events among them.
    pub fn pattern(mut self, pattern: &str) -> Self {
        pattern.clone_into(&mut self.pattern);
        self
    }
    /// The event type of subscription-change announcements (default
    /// [`DEFAULT_CHANGES_EVENT`]); the same on every node.
    pub fn changes_event(mut self, event_type: &str) -> Self {
        event_type.clone_into(&mut self.changes);
        self
    }
    /// How often the store is re-read without an announcement (default
    /// [`DEFAULT_RELOAD_INTERVAL`]; at least 100 ms).
    pub fn reload_interval(mut self, every: Duration) -> Self {
        self.reload_interval = every;
        self
    }

    /// Reads the store, then starts the change listener, the reload timer and the group
    /// subscription.
    ///
    /// # Errors
    /// [`ErrorKind::Build`] for a changes event type that is not a plain event name or a
    /// reload interval under 100 ms, [`ErrorKind::Store`] when the store cannot be read,
    /// [`ErrorKind::Bus`] when the bus refuses a subscription (an invalid pattern or group, a
    /// second subscription of the group on this bus, a transport failure).
    pub async fn start(self) -> Result<BusDispatcher, Error> {
        if self.changes.contains('*') || Pattern::parse(&self.changes).is_err() {
            return Err(Error::build(format!(
                "the changes event type {:?} must be a plain event name",
                self.changes
            )));
        }
        if self.reload_interval < MIN_RELOAD_GAP {
            return Err(Error::build("the reload interval must be at least 100 ms"));
        }
        let bus_err = |e: hookwire_events::Error| Error::new(ErrorKind::Bus, e);
        let changes: Arc<str> = Arc::from(self.changes.as_str());
        let wake = Arc::new(Notify::new());
        // Listen before the first read, so a change made in between is not missed.
        let listener = {
            let wake = Arc::clone(&wake);
            self.bus
                .broadcast(&self.changes, move |_: Event| {
                    wake.notify_one();
                    std::future::ready(Ok::<(), HandlerError>(()))
                })
                .await
                .map_err(bus_err)?
        };
        self.dispatcher.reload().await?;
        let mut tasks = vec![tokio::spawn(reload_loop(
            self.dispatcher.clone(),
            Arc::clone(&wake),
            self.reload_interval,
        ))];
        let announcer = Announcer {
            bus: self.bus.clone(),
            changes: Arc::clone(&changes),
        };
        tasks.push(tokio::spawn(announce_health(
            self.dispatcher.health_events(),
            announcer.clone(),
        )));
        let handler = {
            let (d, changes) = (self.dispatcher.clone(), Arc::clone(&changes));
            move |event: Event| {
                let (d, skip) = (d.clone(), *event.name == *changes);
                async move {
                    if !skip {
                        d.publish(&event).await?;
                    }
                    Ok::<(), Error>(())
                }
            }
        };
        let group = match self.bus.subscribe(self.group, &self.pattern, handler).await {
            Ok(g) => g,
            Err(e) => {
                tasks.iter().for_each(JoinHandle::abort);
                return Err(bus_err(e));
            }
        };
        Ok(BusDispatcher {
            dispatcher: self.dispatcher,
            announcer,
            group: Some(group),
            listener: Some(listener),
            tasks,
        })
    }
}

/// Publishes subscription-change announcements.
#[derive(Debug, Clone)]
struct Announcer {
    bus: Bus,
    changes: Arc<str>,
}

impl Announcer {
    /// Tells every node to re-read the store. A failed announcement is logged, not returned:
    /// the change itself is saved, and nodes pick it up at their next timed reload.
    async fn announce(&self, id: &str, change: &str) {
        let e = Event::new(
            &*self.changes,
            serde_json::json!({"subscription": id, "change": change}),
        );
        if let Err(err) = self.bus.publish(e).await {
            tracing::warn!(subscription = %id, change, error = %err,
                "could not announce a subscription change; other nodes see it at their next reload");
        }
    }
}

/// Re-reads the store when woken (coalescing bursts) and at least every `every`.
async fn reload_loop(dispatcher: Dispatcher, wake: Arc<Notify>, every: Duration) {
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(every) => {}
        }
        if let Err(e) = dispatcher.reload().await {
            tracing::warn!(error = %e, "could not reload webhook subscriptions; keeping the current ones");
        }
        tokio::time::sleep(MIN_RELOAD_GAP).await;
    }
}

/// Announces the enable/disable transitions this node's health tracker (or an operator calling
/// [`Dispatcher::enable`] / [`Dispatcher::disable`]) makes, so the other nodes apply them too.
async fn announce_health(mut rx: broadcast::Receiver<super::HealthEvent>, announcer: Announcer) {
    loop {
        match rx.recv().await {
            Ok(ev) => match ev.kind {
                HealthEventKind::Disabled { .. } => {
                    announcer.announce(&ev.subscription_id, "disabled").await;
                }
                HealthEventKind::Enabled => {
                    announcer.announce(&ev.subscription_id, "enabled").await;
                }
                _ => {}
            },
            // Some transitions were missed: one announcement makes every node re-read anyway.
            Err(broadcast::error::RecvError::Lagged(_)) => announcer.announce("*", "many").await,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// A [`Dispatcher`] running as a consumer group of an event bus: events published on the bus
/// are dispatched to the matching subscriptions (patterns and organization filter), each event
/// by one node of the group; subscription changes made through any node reach every node.
///
/// Dropping it stops the subscriptions and the background tasks; [`BusDispatcher::stop`] also
/// waits for in-flight dispatches.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use hookwire_events::{Bus, Event, MemoryTransport};
/// use hookwire_webhook_sender::{Dispatcher, Subscription};
/// let bus = Bus::builder(MemoryTransport::new()).build().unwrap();
/// let node = Dispatcher::builder().build().unwrap().on_bus(&bus).start().await.unwrap();
/// node.register(
///     Subscription::new("acme", "https://acme.example/hooks", &["order.*"])
///         .unwrap()
///         .with_organization("acme"),
/// )
/// .await
/// .unwrap();
/// assert_eq!(node.dispatcher().list().len(), 1);
/// node.stop().await;
/// # });
/// ```
#[derive(Debug)]
pub struct BusDispatcher {
    dispatcher: Dispatcher,
    announcer: Announcer,
    group: Option<BusSubscription>,
    listener: Option<BusSubscription>,
    tasks: Vec<JoinHandle<()>>,
}

impl Dispatcher {
    /// Runs this dispatcher as a consumer group of `bus`: configure, then
    /// [`BusDispatcherBuilder::start`]. Give every node a store they share (for example
    /// `RedisSubscriptionStore`), so a change announced by one node can be read by the others.
    pub fn on_bus(&self, bus: &Bus) -> BusDispatcherBuilder {
        BusDispatcherBuilder {
            dispatcher: self.clone(),
            bus: bus.clone(),
            group: Group::at_end("webhooks"),
            pattern: "*".to_owned(),
            changes: DEFAULT_CHANGES_EVENT.to_owned(),
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        }
    }
}

impl BusDispatcher {
    /// The dispatcher (delivery log, health events, `list`, durable workers).
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// [`Dispatcher::register`], then tells every node.
    pub async fn register(&self, sub: Subscription) -> Result<(), Error> {
        let id = sub.id.clone();
        self.dispatcher.register(sub).await?;
        self.announcer.announce(&id, "saved").await;
        Ok(())
    }

    /// [`Dispatcher::unregister`], then tells every node.
    pub async fn unregister(&self, id: &str) -> Result<bool, Error> {
        let existed = self.dispatcher.unregister(id).await?;
        self.announcer.announce(id, "removed").await;
        Ok(existed)
    }

    /// [`Dispatcher::enable`]; every node is told (as for any enable transition).
    pub async fn enable(&self, id: &str) -> Result<(), Error> {
        self.dispatcher.enable(id).await
    }

    /// [`Dispatcher::disable`]; every node is told (as for any disable transition).
    pub async fn disable(&self, id: &str, reason: &str) -> Result<(), Error> {
        self.dispatcher.disable(id, reason).await
    }

    /// Stops reading the bus and waits for in-flight dispatches (their events are
    /// acknowledged); stops the reload timer and the change listener.
    pub async fn stop(mut self) {
        if let Some(g) = self.group.take() {
            g.stop().await;
        }
        if let Some(l) = self.listener.take() {
            l.stop().await;
        }
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl Drop for BusDispatcher {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

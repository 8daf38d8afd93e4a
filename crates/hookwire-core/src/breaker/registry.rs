//! [`BreakerRegistry`]: one breaker per key (an endpoint, a host), bounded in size.

use super::*;

/// The registry was full of breakers that are not closed, so none could be evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryFull;

impl fmt::Display for RegistryFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("breaker registry is full and every breaker in it is open or half-open")
    }
}

impl std::error::Error for RegistryFull {}

type KeyListener<K> = Arc<dyn Fn(&K, Transition) + Send + Sync>;

struct Slot {
    breaker: CircuitBreaker,
    last_used: u64,
}

struct Table<K> {
    map: HashMap<K, Slot>,
    tick: u64,
}

/// One breaker per key (an endpoint, a host, a tenant), all built from one template, at most
/// `max_keys` at once. When full, the least recently used **closed** breaker is evicted; if every
/// breaker is open or half-open, a new key is refused with [`RegistryFull`] rather than dropping
/// what the registry knows about a failing dependency.
pub struct BreakerRegistry<K> {
    template: BreakerBuilder,
    max_keys: usize,
    listener: Option<KeyListener<K>>,
    table: Mutex<Table<K>>,
}

impl<K> fmt::Debug for BreakerRegistry<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("template", &self.template)
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

impl<K: Eq + Hash + Clone + Send + Sync + 'static> BreakerRegistry<K> {
    /// A registry whose breakers use `template`'s options (checked here) and which holds at most
    /// `max_keys` breakers.
    pub fn new(template: BreakerBuilder, max_keys: usize) -> Result<Self, ConfigError> {
        template.check()?;
        if max_keys == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        Ok(Self {
            template,
            max_keys,
            listener: None,
            table: Mutex::new(Table {
                map: HashMap::new(),
                tick: 0,
            }),
        })
    }

    /// Hear every state change of every breaker, with its key (in addition to any listener set
    /// on the template).
    pub fn on_state_change(mut self, f: impl Fn(&K, Transition) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(f));
        self
    }

    fn lock(&self) -> MutexGuard<'_, Table<K>> {
        // The table is consistent after each statement; a poisoned lock only means a panic
        // elsewhere, so keep serving.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The breaker for `key`, created on first use.
    pub fn get(&self, key: &K) -> Result<CircuitBreaker, RegistryFull> {
        let mut table = self.lock();
        table.tick += 1;
        let tick = table.tick;
        if let Some(slot) = table.map.get_mut(key) {
            slot.last_used = tick;
            return Ok(slot.breaker.clone());
        }
        if table.map.len() >= self.max_keys {
            let victim = table
                .map
                .iter()
                .filter(|(_, s)| s.breaker.state() == State::Closed)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    table.map.remove(&k);
                }
                None => return Err(RegistryFull),
            }
        }
        let breaker = self.make(key);
        table.map.insert(
            key.clone(),
            Slot {
                breaker: breaker.clone(),
                last_used: tick,
            },
        );
        Ok(breaker)
    }

    fn make(&self, key: &K) -> CircuitBreaker {
        let mut b = self.template.clone();
        if let Some(l) = self.listener.clone() {
            let own = b.listener.take();
            let key = key.clone();
            b.listener = Some(Arc::new(move |t| {
                if let Some(own) = &own {
                    own(t);
                }
                l(&key, t);
            }));
        }
        CircuitBreaker::from_checked(b)
    }

    /// The breaker for `key` if the registry holds one (does not create or touch it).
    pub fn peek(&self, key: &K) -> Option<CircuitBreaker> {
        self.lock().map.get(key).map(|s| s.breaker.clone())
    }

    /// Forget `key`'s breaker.
    pub fn remove(&self, key: &K) {
        self.lock().map.remove(key);
    }

    /// How many breakers the registry holds.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the registry holds no breaker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key with its breaker's stats.
    pub fn stats(&self) -> Vec<(K, BreakerStats)> {
        let breakers: Vec<(K, CircuitBreaker)> = self
            .lock()
            .map
            .iter()
            .map(|(k, s)| (k.clone(), s.breaker.clone()))
            .collect();
        breakers.into_iter().map(|(k, b)| (k, b.stats())).collect()
    }

    /// Reset every breaker.
    pub fn reset_all(&self) {
        let breakers: Vec<CircuitBreaker> = self
            .lock()
            .map
            .values()
            .map(|s| s.breaker.clone())
            .collect();
        for b in breakers {
            b.reset();
        }
    }
}

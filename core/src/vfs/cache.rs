//! A least-recently-used cache bounded by the bytes of what it holds.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;

/// Values are shared (`Arc`), so an evicted value lives on while a reader still holds it.
pub struct LruCache<K, V> {
    map: HashMap<K, (Arc<V>, usize, u64)>,
    order: BTreeMap<u64, K>,
    tick: u64,
    bytes: usize,
    budget: usize,
}

impl<K: Hash + Eq + Clone, V> LruCache<K, V> {
    /// A cache holding at most `budget` bytes (as the callers count them).
    pub fn new(budget: usize) -> Self {
        LruCache {
            map: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            bytes: 0,
            budget,
        }
    }

    /// Whether `k` is cached (without making it recent).
    pub fn contains(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    /// The value for `k`, marking it recently used.
    pub fn get(&mut self, k: &K) -> Option<Arc<V>> {
        self.tick += 1;
        let tick = self.tick;
        let (v, _, t) = self.map.get_mut(k)?;
        self.order.remove(t);
        *t = tick;
        self.order.insert(tick, k.clone());
        Some(v.clone())
    }

    /// Stores `v` (of `size` bytes) under `k`, evicting the least recently used entries beyond
    /// the budget. A value larger than the whole budget is not kept.
    pub fn put(&mut self, k: K, v: Arc<V>, size: usize) {
        if size > self.budget {
            return;
        }
        if let Some((_, s, t)) = self.map.remove(&k) {
            self.order.remove(&t);
            self.bytes -= s;
        }
        self.tick += 1;
        self.order.insert(self.tick, k.clone());
        self.map.insert(k, (v, size, self.tick));
        self.bytes += size;
        while self.bytes > self.budget {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, s, _)) = self.map.remove(&old) {
                self.bytes -= s;
            }
        }
    }

    /// Drops `k`, if cached.
    pub fn remove(&mut self, k: &K) {
        if let Some((_, s, t)) = self.map.remove(k) {
            self.order.remove(&t);
            self.bytes -= s;
        }
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let mut c = LruCache::new(10);
        c.put(1, Arc::new("a"), 4);
        c.put(2, Arc::new("b"), 4);
        assert!(c.get(&1).is_some()); // 2 is now the oldest
        c.put(3, Arc::new("c"), 4);
        assert!(c.get(&2).is_none());
        assert!(c.get(&1).is_some() && c.get(&3).is_some());
        assert_eq!(c.bytes(), 8);
        c.put(4, Arc::new("too big"), 11);
        assert!(c.get(&4).is_none());
        c.put(1, Arc::new("a2"), 2);
        assert_eq!(c.bytes(), 6);
        assert_eq!(*c.get(&1).expect("kept"), "a2");
        c.remove(&1);
        assert!(c.get(&1).is_none());
        assert_eq!(c.bytes(), 4);
    }
}

//! A map with a fixed capacity and least-recently-used eviction.

use alloc::collections::BTreeMap;

/// A map holding at most `capacity` entries.
///
/// Every [`get_mut`](Self::get_mut) and [`insert`](Self::insert) marks the
/// entry as most recently used. Inserting a new key into a full map evicts
/// the least recently used entry and returns it, so the caller can count it.
/// All operations are `O(log n)`.
///
/// Invariant: `by_key` and `by_age` hold the same entries; `by_age` maps the
/// touch sequence number of each entry to its key.
#[derive(Debug, Clone)]
pub struct LruMap<K: Ord + Clone, V> {
    capacity: usize,
    seq: u64,
    by_key: BTreeMap<K, (u64, V)>,
    by_age: BTreeMap<u64, K>,
}

impl<K: Ord + Clone, V> LruMap<K, V> {
    /// An empty map. A capacity of 0 is treated as 1.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            seq: 0,
            by_key: BTreeMap::new(),
            by_age: BTreeMap::new(),
        }
    }

    /// The bound given at construction.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True if there is no entry.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Looks an entry up without touching its age.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.by_key.get(key).map(|(_, v)| v)
    }

    /// Looks an entry up and marks it most recently used.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let seq = self.next_seq();
        let (old, v) = self.by_key.get_mut(key)?;
        let prev = core::mem::replace(old, seq);
        if let Some(k) = self.by_age.remove(&prev) {
            self.by_age.insert(seq, k);
        }
        Some(v)
    }

    /// Inserts or replaces `key`, marking it most recently used. Returns the
    /// entry evicted to make room, if any (never the key just inserted).
    pub fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        let seq = self.next_seq();
        if let Some((old, _)) = self.by_key.get(&key) {
            let old = *old;
            self.by_age.remove(&old);
            self.by_key.insert(key.clone(), (seq, value));
            self.by_age.insert(seq, key);
            return None;
        }
        let evicted = if self.by_key.len() >= self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        self.by_key.insert(key.clone(), (seq, value));
        self.by_age.insert(seq, key);
        evicted
    }

    /// Returns the entry for `key`, inserting `make()` first if it is absent,
    /// and marks it most recently used. The second value is the entry evicted
    /// to make room, if any (never `key` itself).
    pub fn get_or_insert_with(
        &mut self,
        key: K,
        make: impl FnOnce() -> V,
    ) -> (&mut V, Option<(K, V)>) {
        let evicted = if !self.by_key.contains_key(&key) && self.by_key.len() >= self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        let seq = self.next_seq();
        let slot = self
            .by_key
            .entry(key.clone())
            .or_insert_with(|| (seq, make()));
        let prev = core::mem::replace(&mut slot.0, seq);
        if prev != seq {
            self.by_age.remove(&prev);
        }
        self.by_age.insert(seq, key);
        (&mut slot.1, evicted)
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (seq, v) = self.by_key.remove(key)?;
        self.by_age.remove(&seq);
        Some(v)
    }

    /// Removes and returns the least recently used entry.
    pub fn pop_oldest(&mut self) -> Option<(K, V)> {
        let (_, key) = self.by_age.pop_first()?;
        let (_, v) = self.by_key.remove(&key)?;
        Some((key, v))
    }

    /// Iterates entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.by_key.iter().map(|(k, (_, v))| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn evicts_least_recently_used() {
        let mut m = LruMap::new(2);
        assert_eq!(m.insert(1, "a"), None);
        assert_eq!(m.insert(2, "b"), None);
        assert!(m.get_mut(&1).is_some()); // 2 is now the oldest
        assert_eq!(m.insert(3, "c"), Some((2, "b")));
        assert_eq!(m.peek(&1), Some(&"a"));
        assert_eq!(m.peek(&3), Some(&"c"));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn replacing_a_key_never_evicts() {
        let mut m = LruMap::new(2);
        m.insert(1, 10);
        m.insert(2, 20);
        assert_eq!(m.insert(1, 11), None);
        assert_eq!(m.peek(&1), Some(&11));
        assert_eq!(m.pop_oldest(), Some((2, 20)));
    }

    #[test]
    fn get_or_insert_touches_and_evicts() {
        let mut m = LruMap::new(2);
        m.insert(1, 0u32);
        m.insert(2, 0u32);
        let (v, ev) = m.get_or_insert_with(1, || 99);
        *v += 1;
        assert_eq!(ev, None);
        let (v, ev) = m.get_or_insert_with(3, || 7);
        assert_eq!(*v, 7);
        assert_eq!(ev, Some((2, 0)));
        assert_eq!(m.peek(&1), Some(&1));
    }

    proptest! {
        /// Against a simple model: never over capacity, eviction order is
        /// exactly least-recently-touched.
        #[test]
        fn matches_model(ops in proptest::collection::vec((0u8..3, 0u8..8), 0..200), cap in 1usize..5) {
            let mut m = LruMap::new(cap);
            let mut model: alloc::vec::Vec<u8> = alloc::vec::Vec::new(); // oldest first
            for (op, k) in ops {
                match op {
                    0 => {
                        let ev = m.insert(k, ());
                        let expect = if model.contains(&k) {
                            model.retain(|x| *x != k);
                            None
                        } else if model.len() >= cap {
                            Some(model.remove(0))
                        } else { None };
                        model.push(k);
                        prop_assert_eq!(ev.map(|e| e.0), expect);
                    }
                    1 => {
                        let hit = m.get_mut(&k).is_some();
                        prop_assert_eq!(hit, model.contains(&k));
                        if hit { model.retain(|x| *x != k); model.push(k); }
                    }
                    _ => {
                        let hit = m.remove(&k).is_some();
                        prop_assert_eq!(hit, model.contains(&k));
                        model.retain(|x| *x != k);
                    }
                }
                prop_assert!(m.len() <= cap);
                prop_assert_eq!(m.len(), model.len());
            }
        }
    }
}

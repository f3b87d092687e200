//! A map with a fixed capacity and least-recently-used eviction.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// No entry (end of the recency list).
const NIL: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Entry<K> {
    key: K,
    /// Less recently used neighbour, or `NIL`.
    prev: u32,
    /// More recently used neighbour, or `NIL`.
    next: u32,
}

/// A map holding at most `capacity` entries.
///
/// Every [`get_mut`](Self::get_mut) and [`insert`](Self::insert) marks the
/// entry as most recently used. Inserting a new key into a full map evicts
/// the least recently used entry and returns it, so the caller can count it.
/// All operations are `O(log n)`.
///
/// Layout (compact): `index` maps each key to its value and its slot in
/// `entries`, where the keys sit densely in a `Vec`, each with two `u32`
/// links into the recency list, least recently used first. Invariant:
/// `index` and `entries` hold the same keys, each slot number in `index`
/// is that key's slot, and the list visits every entry once.
#[derive(Debug, Clone)]
pub struct LruMap<K: Ord + Clone, V> {
    capacity: usize,
    index: BTreeMap<K, (u32, V)>,
    entries: Vec<Entry<K>>,
    /// Least recently used entry, or `NIL`.
    head: u32,
    /// Most recently used entry, or `NIL`.
    tail: u32,
}

impl<K: Ord + Clone, V> LruMap<K, V> {
    /// An empty map. A capacity of 0 is treated as 1, one above
    /// `u32::MAX - 1` as `u32::MAX - 1` (entries are numbered by `u32`).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.clamp(1, NIL as usize - 1),
            index: BTreeMap::new(),
            entries: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    /// The bound given at construction.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets the `prev` link of slot `i`; `NIL` (past the most recent end)
    /// stands for `tail`.
    fn set_prev(&mut self, i: u32, to: u32) {
        match self.entries.get_mut(i as usize) {
            Some(e) => e.prev = to,
            None => self.tail = to,
        }
    }

    /// Sets the `next` link of slot `i`; `NIL` (before the least recent
    /// end) stands for `head`.
    fn set_next(&mut self, i: u32, to: u32) {
        match self.entries.get_mut(i as usize) {
            Some(e) => e.next = to,
            None => self.head = to,
        }
    }

    /// Takes entry `i` out of the recency list.
    fn unlink(&mut self, i: u32) {
        let Some((prev, next)) = self.entries.get(i as usize).map(|e| (e.prev, e.next)) else {
            return;
        };
        self.set_next(prev, next);
        self.set_prev(next, prev);
    }

    /// Links entry `i` in as the most recently used.
    fn link_last(&mut self, i: u32) {
        let tail = self.tail;
        if let Some(e) = self.entries.get_mut(i as usize) {
            e.prev = tail;
            e.next = NIL;
        }
        self.set_next(tail, i);
        self.tail = i;
    }

    fn touch(&mut self, i: u32) {
        if self.tail != i {
            self.unlink(i);
            self.link_last(i);
        }
    }

    /// Appends a slot for a new key (the caller made room) as the most
    /// recent; returns its number.
    fn push_new(&mut self, key: K) -> u32 {
        let i = u32::try_from(self.entries.len()).unwrap_or(NIL);
        if self.entries.len() == self.entries.capacity() {
            // Grow by 1/8, not 2x: the table is a per-key cost.
            self.entries.reserve_exact(self.entries.len() / 8 + 4);
        }
        self.entries.push(Entry {
            key,
            prev: NIL,
            next: NIL,
        });
        self.link_last(i);
        i
    }

    /// Removes slot `i` (its key already left `index`); the last slot
    /// moves into it.
    fn remove_slot(&mut self, i: u32) -> Option<K> {
        self.unlink(i);
        let last = u32::try_from(self.entries.len().checked_sub(1)?).unwrap_or(NIL);
        if i != last {
            // The last entry's neighbours will point at slot `i`.
            let (prev, next) = self.entries.get(last as usize).map(|e| (e.prev, e.next))?;
            self.set_next(prev, i);
            self.set_prev(next, i);
        }
        let gone = self.entries.swap_remove(i as usize);
        if let Some(moved) = self.entries.get(i as usize) {
            if let Some(x) = self.index.get_mut(&moved.key) {
                x.0 = i;
            }
        }
        if self.entries.capacity() > 2 * self.entries.len() + 16 {
            let n = self.entries.len();
            self.entries.shrink_to(n + n / 8 + 4);
        }
        Some(gone.key)
    }

    /// Looks an entry up without touching its age.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.index.get(key).map(|(_, v)| v)
    }

    /// Looks an entry up and marks it most recently used.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = self.index.get(key)?.0;
        self.touch(i);
        self.index.get_mut(key).map(|(_, v)| v)
    }

    /// Inserts or replaces `key`, marking it most recently used. Returns the
    /// entry evicted to make room, if any (never the key just inserted).
    pub fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        if let Some((i, v)) = self.index.get_mut(&key) {
            *v = value;
            let i = *i;
            self.touch(i);
            return None;
        }
        let evicted = if self.len() >= self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        let i = self.push_new(key.clone());
        self.index.insert(key, (i, value));
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
        let (fresh, evicted) = match self.index.get(&key) {
            Some(&(i, _)) => {
                self.touch(i);
                (NIL, None)
            }
            None => {
                let evicted = if self.len() >= self.capacity {
                    self.pop_oldest()
                } else {
                    None
                };
                (self.push_new(key.clone()), evicted)
            }
        };
        // Absent exactly when a slot was just pushed for it.
        let (_, v) = self.index.entry(key).or_insert_with(|| (fresh, make()));
        (v, evicted)
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (i, v) = self.index.remove(key)?;
        self.remove_slot(i);
        Some(v)
    }

    /// Removes and returns the least recently used entry.
    pub fn pop_oldest(&mut self) -> Option<(K, V)> {
        let key = self.entries.get(self.head as usize)?.key.clone();
        let (i, v) = self.index.remove(&key)?;
        self.remove_slot(i);
        Some((key, v))
    }

    /// Checks the layout invariant; used by tests.
    #[cfg(test)]
    fn check(&self) {
        assert_eq!(self.index.len(), self.entries.len());
        for (k, (i, _)) in &self.index {
            assert!(self.entries[*i as usize].key == *k);
        }
        let (mut at, mut prev, mut n) = (self.head, NIL, 0);
        while at != NIL {
            let e = &self.entries[at as usize];
            assert_eq!(e.prev, prev);
            (prev, at, n) = (at, e.next, n + 1);
        }
        assert_eq!(prev, self.tail);
        assert_eq!(n, self.entries.len());
    }

    /// Iterates entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.index.iter().map(|(k, (_, v))| (k, v))
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
                m.check();
                prop_assert!(m.len() <= cap);
                prop_assert_eq!(m.len(), model.len());
            }
        }
    }
}

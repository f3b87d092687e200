//! The journal: records bounded by count and bytes, with fair retention.
//!
//! Invariants (checked by `debug_check` in tests):
//! * `records.len() <= max_records` and `bytes <= max_bytes` after every
//!   insert — the bounds are live: evicting frees room for good, there is
//!   no lifetime allowance.
//! * `bytes` is the sum of the records' wire lengths; each account's
//!   `bytes` and `ids` match its records; `by_bytes` and `by_count` hold
//!   exactly one entry per account with records.
//! * Record ids are assigned 1, 2, 3, … on insert and never reused, so a
//!   missing id in a range is a record that was evicted. `u64::MAX` is never
//!   an id.
//!
//! Fair retention: when an insert needs room, logd evicts the oldest record
//! of the sender with the largest share of the bound that is hit — the most
//! records when the record bound is hit, the most bytes when the byte bound
//! is (ties: the higher sender id) — repeatedly. A spammer therefore evicts
//! its own records first, whether it sends many small records or a few
//! large ones, and a quiet sender keeps its records as long as it holds
//! less than the others.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;

use nexus_bounds::LruMap;
use nexus_ipc::ServiceId;
use nexus_log::proto::SenderStats;
use nexus_log::Record;

/// Counters kept per sender, also after its last record is gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    evicted: u64,
    rejected: u64,
}

/// Accounting of a sender that holds records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Account {
    bytes: u64,
    counts: Counts,
    /// Ids of this sender's records, oldest first.
    ids: VecDeque<u64>,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// The new record's id.
    pub id: u64,
    /// Records evicted to make room.
    pub evicted: u32,
}

/// Why a record read back from storage was not restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreError {
    /// Its id is not above every id seen so far (or is `u64::MAX`).
    IdOutOfOrder,
    /// It is larger than the journal's byte bound.
    TooLarge,
}

/// The bounded journal.
#[derive(Debug)]
pub struct Journal {
    max_records: usize,
    max_bytes: u64,
    records: BTreeMap<u64, Record>,
    bytes: u64,
    next_id: u64,
    accounts: BTreeMap<ServiceId, Account>,
    /// Counters of senders with no records left, bounded: the least
    /// recently touched is forgotten.
    retired: LruMap<ServiceId, Counts>,
    by_bytes: BTreeSet<(u64, ServiceId)>,
    by_count: BTreeSet<(usize, ServiceId)>,
    evicted_total: u64,
    appended_total: u64,
}

impl Journal {
    /// An empty journal. `max_retired` bounds the counters kept for senders
    /// whose records are all gone.
    pub fn new(max_records: u32, max_bytes: u32, max_retired: u32) -> Self {
        Self {
            max_records: usize::try_from(max_records).unwrap_or(usize::MAX).max(1),
            max_bytes: u64::from(max_bytes),
            records: BTreeMap::new(),
            bytes: 0,
            next_id: 1,
            accounts: BTreeMap::new(),
            retired: LruMap::new(usize::try_from(max_retired).unwrap_or(usize::MAX)),
            by_bytes: BTreeSet::new(),
            by_count: BTreeSet::new(),
            evicted_total: 0,
            appended_total: 0,
        }
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True if no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The id the next record will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Oldest retained id.
    pub fn first_id(&self) -> Option<u64> {
        self.records.keys().next().copied()
    }

    /// Records evicted since start.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    /// Records accepted since start.
    pub fn appended_total(&self) -> u64 {
        self.appended_total
    }

    /// The record with `id`, if held.
    pub fn get(&self, id: u64) -> Option<&Record> {
        self.records.get(&id)
    }

    /// Records with id `>= from`, in id order.
    pub fn range_from(&self, from: u64) -> impl Iterator<Item = (&u64, &Record)> {
        self.records.range(from..)
    }

    /// Inserts `rec` (its `id` is overwritten with the next id), evicting
    /// fairly until it fits. The caller guarantees
    /// `rec.wire_len() <= max_bytes` (logd's config validation does).
    pub fn insert(&mut self, rec: Record) -> Inserted {
        let id = self.next_id;
        self.place(rec, id)
    }

    /// Restores a record read back from storage, keeping its id. Ids must
    /// arrive in increasing order.
    pub fn restore(&mut self, rec: Record) -> Result<Inserted, RestoreError> {
        if rec.id < self.next_id || rec.id == u64::MAX {
            return Err(RestoreError::IdOutOfOrder);
        }
        if rec.wire_len() as u64 > self.max_bytes {
            return Err(RestoreError::TooLarge);
        }
        let id = rec.id;
        Ok(self.place(rec, id))
    }

    fn place(&mut self, mut rec: Record, id: u64) -> Inserted {
        let size = rec.wire_len() as u64;
        let mut evicted = 0u32;
        loop {
            let by_count = self.records.len() >= self.max_records;
            let by_bytes = self.bytes + size > self.max_bytes;
            if self.records.is_empty() || !(by_count || by_bytes) {
                break;
            }
            let victim = if by_count {
                self.by_count.last().map(|e| e.1)
            } else {
                self.by_bytes.last().map(|e| e.1)
            };
            if !victim.is_some_and(|v| self.evict_oldest_of(v)) {
                break;
            }
            evicted += 1;
        }
        // Ids stay below u64::MAX: `restore` refuses it and 2^64 - 1
        // appends do not happen.
        self.next_id = id.saturating_add(1);
        rec.id = id;
        let sender = rec.sender;
        let mut acc = self.accounts.remove(&sender).unwrap_or_else(|| Account {
            counts: self.retired.remove(&sender).unwrap_or_default(),
            ..Account::default()
        });
        self.unindex(sender, &acc);
        acc.bytes += size;
        acc.ids.push_back(id);
        self.index(sender, &acc);
        self.accounts.insert(sender, acc);
        self.records.insert(id, rec);
        self.bytes += size;
        self.appended_total += 1;
        Inserted { id, evicted }
    }

    fn index(&mut self, sender: ServiceId, acc: &Account) {
        if !acc.ids.is_empty() {
            self.by_bytes.insert((acc.bytes, sender));
            self.by_count.insert((acc.ids.len(), sender));
        }
    }

    fn unindex(&mut self, sender: ServiceId, acc: &Account) {
        self.by_bytes.remove(&(acc.bytes, sender));
        self.by_count.remove(&(acc.ids.len(), sender));
    }

    /// Evicts the oldest record of `sender`.
    fn evict_oldest_of(&mut self, sender: ServiceId) -> bool {
        let Some(mut acc) = self.accounts.remove(&sender) else {
            return false;
        };
        self.unindex(sender, &acc);
        let Some(id) = acc.ids.pop_front() else {
            return false;
        };
        let size = self.records.remove(&id).map_or(0, |r| r.wire_len() as u64);
        acc.bytes = acc.bytes.saturating_sub(size);
        acc.counts.evicted += 1;
        self.bytes = self.bytes.saturating_sub(size);
        self.evicted_total += 1;
        if acc.ids.is_empty() {
            self.retired.insert(sender, acc.counts);
        } else {
            // Give memory back when a heavy sender shrinks, so a sender's id
            // list never keeps more than ~4x what it holds.
            if acc.ids.capacity() > 64 && acc.ids.len() < acc.ids.capacity() / 4 {
                acc.ids.shrink_to(acc.ids.len() * 2);
            }
            self.index(sender, &acc);
            self.accounts.insert(sender, acc);
        }
        true
    }

    /// Counts a rejected append against `sender`.
    pub fn note_rejected(&mut self, sender: ServiceId) {
        if let Some(a) = self.accounts.get_mut(&sender) {
            a.counts.rejected += 1;
            return;
        }
        let (c, _) = self.retired.get_or_insert_with(sender, Counts::default);
        c.rejected += 1;
    }

    fn sender_stats(sender: ServiceId, a: &Account) -> SenderStats {
        SenderStats {
            sender,
            records: a.ids.len() as u64,
            bytes: a.bytes,
            evicted: a.counts.evicted,
            rejected: a.counts.rejected,
        }
    }

    /// Accounting of one sender (zeros if unknown).
    pub fn sender(&self, sender: ServiceId) -> SenderStats {
        if let Some(a) = self.accounts.get(&sender) {
            return Self::sender_stats(sender, a);
        }
        let c = self.retired.peek(&sender).copied().unwrap_or_default();
        SenderStats {
            sender,
            records: 0,
            bytes: 0,
            evicted: c.evicted,
            rejected: c.rejected,
        }
    }

    /// The `n` senders holding the most bytes, heaviest first.
    pub fn heaviest(&self, n: usize) -> Vec<SenderStats> {
        self.by_bytes
            .iter()
            .rev()
            .take(n)
            .filter_map(|(_, s)| self.accounts.get(s).map(|a| Self::sender_stats(*s, a)))
            .collect()
    }

    /// Checks every invariant; used by tests.
    #[cfg(test)]
    pub fn debug_check(&self) {
        assert!(self.records.len() <= self.max_records);
        assert!(self.bytes <= self.max_bytes);
        let sum: u64 = self.records.values().map(|r| r.wire_len() as u64).sum();
        assert_eq!(sum, self.bytes);
        assert_eq!(self.by_bytes.len(), self.accounts.len());
        assert_eq!(self.by_count.len(), self.accounts.len());
        for (s, a) in &self.accounts {
            assert!(!a.ids.is_empty());
            assert!(self.by_bytes.contains(&(a.bytes, *s)));
            assert!(self.by_count.contains(&(a.ids.len(), *s)));
            let b: u64 = a
                .ids
                .iter()
                .map(|id| {
                    let r = &self.records[id];
                    assert_eq!(r.sender, *s);
                    r.wire_len() as u64
                })
                .sum();
            assert_eq!(b, a.bytes);
        }
        let held: usize = self.accounts.values().map(|a| a.ids.len()).sum();
        assert_eq!(held, self.records.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use nexus_log::{Fields, Level};
    use proptest::prelude::*;

    fn rec(sender: u32, len: usize) -> Record {
        Record {
            id: 0,
            ts_ns: 0,
            sender: ServiceId::new(sender),
            level: Level::Info,
            target: String::from("t"),
            message: "m".repeat(len),
            fields: Fields::empty(),
        }
    }

    #[test]
    fn restore_keeps_ids_and_refuses_going_back() {
        let mut j = Journal::new(10, 10_000, 4);
        let mut r = rec(1, 3);
        r.id = 40;
        assert_eq!(j.restore(r.clone()).map(|i| i.id), Ok(40));
        assert_eq!(j.restore(r.clone()), Err(RestoreError::IdOutOfOrder));
        assert_eq!(j.insert(rec(1, 1)).id, 41);
        r.id = u64::MAX;
        assert_eq!(j.restore(r.clone()), Err(RestoreError::IdOutOfOrder));
        let mut big = rec(2, 20_000);
        big.id = 100;
        assert_eq!(j.restore(big), Err(RestoreError::TooLarge));
        j.debug_check();
    }

    #[test]
    fn retired_accounts_are_bounded_and_keep_counts() {
        let mut j = Journal::new(1, 10_000, 2);
        for s in 1..=5 {
            j.insert(rec(s, 1));
        }
        // Senders 1..=4 lost their only record; only the 2 most recent stay.
        assert_eq!(j.retired.len(), 2);
        assert_eq!(j.sender(ServiceId::new(4)).evicted, 1);
        assert_eq!(j.sender(ServiceId::new(1)).evicted, 0, "forgotten");
        j.note_rejected(ServiceId::new(9));
        assert_eq!(j.retired.len(), 2);
        assert_eq!(j.sender(ServiceId::new(9)).rejected, 1);
        j.debug_check();
    }

    #[test]
    fn many_tiny_records_do_not_evict_a_quiet_senders_large_ones() {
        // Record bound hit long before the byte bound: the sender with the
        // most records pays, not the one with the most bytes.
        let mut j = Journal::new(200, 1 << 20, 8);
        for _ in 0..50 {
            j.insert(rec(1, 3000));
        }
        for _ in 0..5000 {
            j.insert(rec(2, 0));
        }
        assert_eq!(j.sender(ServiceId::new(1)).records, 50);
        assert_eq!(j.sender(ServiceId::new(1)).evicted, 0);
        assert_eq!(j.sender(ServiceId::new(2)).records, 150);
        j.debug_check();
    }

    #[test]
    fn id_lists_give_memory_back() {
        let mut j = Journal::new(1000, 1 << 20, 8);
        for _ in 0..1000 {
            j.insert(rec(1, 0));
        }
        for _ in 0..990 {
            j.insert(rec(2, 0));
        }
        let a = &j.accounts[&ServiceId::new(1)];
        assert!(a.ids.len() <= 500);
        assert!(a.ids.capacity() <= 4 * a.ids.len().max(64));
        j.debug_check();
    }

    proptest! {
        #[test]
        fn invariants_hold_under_any_insert_sequence(
            ops in proptest::collection::vec((1u32..6, 0usize..300), 1..400),
            max_records in 1u32..50,
            max_bytes in 330u32..5000,
        ) {
            let mut j = Journal::new(max_records, max_bytes, 8);
            let mut last = 0;
            for (s, len) in ops {
                let ins = j.insert(rec(s, len));
                prop_assert!(ins.id > last);
                last = ins.id;
                j.debug_check();
                // The record just inserted is always kept.
                prop_assert!(j.records.contains_key(&ins.id));
            }
            prop_assert_eq!(j.appended_total(), j.evicted_total() + j.len() as u64);
        }
    }
}

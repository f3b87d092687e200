//! The journal: records bounded by count and bytes, with fair retention.
//!
//! Invariants (checked by `debug_check` in tests):
//! * `records.len() <= max_records` and `bytes <= max_bytes` after every
//!   insert — the bounds are live: evicting frees room for good, there is
//!   no lifetime allowance.
//! * `bytes` is the sum of the records' wire lengths; each account's
//!   `records`/`bytes` are the sums over its records, and `heaviest` holds
//!   exactly one `(bytes, sender)` entry per account with records.
//! * Record ids are assigned 1, 2, 3, … on insert and never reused, so a
//!   missing id in a range is a record that was evicted.
//!
//! Fair retention: when an insert needs room, the oldest record of the
//! sender holding the most bytes is evicted (ties: the higher sender id),
//! repeatedly. A spammer therefore evicts its own records first, and a
//! quiet sender keeps its records as long as it holds less than the others.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;

use nexus_bounds::LruMap;
use nexus_ipc::ServiceId;
use nexus_log::proto::SenderStats;
use nexus_log::Record;

/// Per-sender accounting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Account {
    bytes: u64,
    evicted: u64,
    rejected: u64,
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

/// The bounded journal.
#[derive(Debug)]
pub struct Journal {
    max_records: usize,
    max_bytes: u64,
    records: BTreeMap<u64, Record>,
    bytes: u64,
    next_id: u64,
    accounts: BTreeMap<ServiceId, Account>,
    /// Accounts of senders with no records left (their evicted/rejected
    /// counts), bounded: the least recently touched is forgotten.
    retired: LruMap<ServiceId, Account>,
    heaviest: BTreeSet<(u64, ServiceId)>,
    evicted_total: u64,
    appended_total: u64,
}

impl Journal {
    /// An empty journal. `max_retired` bounds the accounts kept for senders
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
            heaviest: BTreeSet::new(),
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

    /// Records with id `>= from`, in id order.
    pub fn range_from(&self, from: u64) -> impl Iterator<Item = (&u64, &Record)> {
        self.records.range(from..)
    }

    /// Inserts `rec` (its `id` is overwritten with the next id), evicting
    /// fairly until it fits. The caller guarantees
    /// `rec.wire_len() <= max_bytes`.
    pub fn insert(&mut self, rec: Record) -> Inserted {
        let id = self.next_id;
        self.place(rec, id)
    }

    /// Restores a record read back from storage, keeping its id. Ids must
    /// arrive in increasing order; an id not above every id assigned so far
    /// is refused (`None`).
    pub fn restore(&mut self, rec: Record) -> Option<Inserted> {
        if rec.id < self.next_id {
            return None;
        }
        let id = rec.id;
        Some(self.place(rec, id))
    }

    fn place(&mut self, mut rec: Record, id: u64) -> Inserted {
        let size = rec.wire_len() as u64;
        let mut evicted = 0u32;
        while !self.records.is_empty()
            && (self.records.len() >= self.max_records || self.bytes + size > self.max_bytes)
        {
            if !self.evict_one() {
                break;
            }
            evicted += 1;
        }
        self.next_id = id.saturating_add(1);
        rec.id = id;
        let sender = rec.sender;
        let mut acc = self.take_account(sender);
        if acc.bytes > 0 {
            self.heaviest.remove(&(acc.bytes, sender));
        }
        acc.bytes += size;
        acc.ids.push_back(id);
        self.heaviest.insert((acc.bytes, sender));
        self.accounts.insert(sender, acc);
        self.records.insert(id, rec);
        self.bytes += size;
        self.appended_total += 1;
        Inserted { id, evicted }
    }

    fn take_account(&mut self, sender: ServiceId) -> Account {
        if let Some(a) = self.accounts.remove(&sender) {
            return a;
        }
        self.retired.remove(&sender).unwrap_or_default()
    }

    /// Evicts the oldest record of the heaviest sender.
    fn evict_one(&mut self) -> bool {
        let Some(&(bytes, sender)) = self.heaviest.last() else {
            return false;
        };
        let Some(acc) = self.accounts.get_mut(&sender) else {
            return false;
        };
        let Some(id) = acc.ids.pop_front() else {
            return false;
        };
        let size = self.records.remove(&id).map_or(0, |r| r.wire_len() as u64);
        self.heaviest.remove(&(bytes, sender));
        acc.bytes = acc.bytes.saturating_sub(size);
        acc.evicted += 1;
        self.bytes = self.bytes.saturating_sub(size);
        self.evicted_total += 1;
        if acc.ids.is_empty() {
            if let Some(a) = self.accounts.remove(&sender) {
                self.retired.insert(sender, a);
            }
        } else {
            self.heaviest.insert((acc.bytes, sender));
        }
        true
    }

    /// Counts a rejected append against `sender`.
    pub fn note_rejected(&mut self, sender: ServiceId) {
        if let Some(a) = self.accounts.get_mut(&sender) {
            a.rejected += 1;
            return;
        }
        let (a, _) = self.retired.get_or_insert_with(sender, Account::default);
        a.rejected += 1;
    }

    fn sender_stats(sender: ServiceId, a: &Account) -> SenderStats {
        SenderStats {
            sender,
            records: a.ids.len() as u64,
            bytes: a.bytes,
            evicted: a.evicted,
            rejected: a.rejected,
        }
    }

    /// Accounting of one sender (zeros if unknown).
    pub fn sender(&self, sender: ServiceId) -> SenderStats {
        self.accounts
            .get(&sender)
            .or_else(|| self.retired.peek(&sender))
            .map_or(
                SenderStats {
                    sender,
                    records: 0,
                    bytes: 0,
                    evicted: 0,
                    rejected: 0,
                },
                |a| Self::sender_stats(sender, a),
            )
    }

    /// The `n` senders holding the most bytes, heaviest first.
    pub fn heaviest(&self, n: usize) -> Vec<SenderStats> {
        self.heaviest
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
        assert_eq!(self.heaviest.len(), self.accounts.len());
        for (s, a) in &self.accounts {
            assert!(!a.ids.is_empty());
            assert!(self.heaviest.contains(&(a.bytes, *s)));
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
        assert_eq!(j.restore(r.clone()).map(|i| i.id), Some(40));
        assert_eq!(j.restore(r), None);
        assert_eq!(j.insert(rec(1, 1)).id, 41);
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

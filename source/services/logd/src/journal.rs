//! The journal: records bounded by count and bytes, with fair retention,
//! stored compactly and indexed so that a page costs O(page + log N).
//!
//! # Storage
//!
//! Records are kept in their wire form (the QUERY record layout, the same
//! bytes the state store keeps), back to back in one byte arena, in id
//! order. Per record logd also keeps a `u32` arena offset (`slots`, id
//! order) and a `u32` slot position in its sender's list (oldest first); a
//! record's length is the distance to the next slot. An evicted record is
//! only marked dead (one bit, `Tombs`) until a compaction squeezes the
//! dead records out of the arena and the slot list, in place, in one pass.
//! Compaction runs when the arena (or the slot list) is full and at least
//! 1/16 of it is dead; otherwise the arena grows by 1/32. So the heap is
//! at most about `1.14 × peak bytes + 10 B × records` plus a few hundred bytes per
//! sender (see `docs/observability/logd.md`, *Memory*), and an append costs
//! amortized O(1): a compaction moves at most 16 bytes per byte appended
//! since the last one.
//!
//! # Indexes
//!
//! * By id: ids increase with the slot position, so a cursor is a binary
//!   search over `slots` (O(log N)).
//! * By sender: each sender's slot positions, so a sender-filtered page
//!   visits only that sender's records.
//! * By time: `ts_ns` is logd's clock at acceptance, so it does not
//!   decrease from one slot to the next — except when the clock went back
//!   (restored records of an earlier boot, whose clock started at 0). The
//!   journal remembers where that happened (`runs`); within a run a binary
//!   search finds the first record at or after `since_ns`.
//! * Held ids in a range (for `gap`): the dead bits are counted per 64
//!   slots in a Fenwick tree, so the number of held records before a slot
//!   is O(log N).
//!
//! Invariants (checked by `debug_check` in tests):
//! * `len() <= max_records` and `bytes <= max_bytes` after every insert —
//!   the bounds are live: evicting frees room for good, there is no
//!   lifetime allowance.
//! * `bytes` is the sum of the live records' wire lengths, `garbage` that
//!   of the dead ones still in the arena; each account's `bytes` and `pos`
//!   match its records; `index` maps each account's sender to its slot in
//!   `accounts`; `by_bytes` and `by_count` are max-heaps holding exactly
//!   one entry per account (each account knows its place in both).
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

use alloc::collections::{BinaryHeap, VecDeque};
use alloc::vec::Vec;

use nexus_bounds::LruMap;
use nexus_ipc::ServiceId;
use nexus_log::proto::{
    decode_record_bytes, encode_record_parts, QueryPage, RecordParts, SenderStats,
};
use nexus_log::{Level, Record};

/// Offsets of the fixed fields in the record wire layout.
const AT_ID: usize = 0;
const AT_TS: usize = 8;
const AT_LEVEL: usize = 20;

/// The little-endian `u64` at `at` in `buf` (0 if out of range: never,
/// for a slot's bytes).
fn u64_at(buf: &[u8], at: usize) -> u64 {
    buf.get(at..at.saturating_add(8))
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

/// Sender → account slot, as a vector sorted by sender: 8 bytes a sender
/// (a B-tree costs about three times that), found by binary search.
/// Inserting is O(senders); senders with records are at most the record
/// bound.
#[derive(Debug, Clone, Default)]
struct SlotIndex {
    entries: Vec<(ServiceId, u32)>,
}

impl SlotIndex {
    fn find(&self, sender: &ServiceId) -> Result<usize, usize> {
        self.entries.binary_search_by(|(s, _)| s.cmp(sender))
    }
    fn get(&self, sender: &ServiceId) -> Option<&u32> {
        let i = self.find(sender).ok()?;
        self.entries.get(i).map(|(_, k)| k)
    }
    fn get_mut(&mut self, sender: &ServiceId) -> Option<&mut u32> {
        let i = self.find(sender).ok()?;
        self.entries.get_mut(i).map(|(_, k)| k)
    }
    fn insert(&mut self, sender: ServiceId, k: u32) {
        match self.find(&sender) {
            Ok(i) => {
                if let Some(e) = self.entries.get_mut(i) {
                    e.1 = k;
                }
            }
            Err(i) => self.entries.insert(i, (sender, k)),
        }
    }
    fn remove(&mut self, sender: &ServiceId) -> Option<u32> {
        let i = self.find(sender).ok()?;
        Some(self.entries.remove(i).1)
    }
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Counters kept per sender, also after its last record is gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    evicted: u64,
    rejected: u64,
}

/// Accounting of a sender that holds records: one slot in
/// `Journal::accounts` (64 bytes plus its position list).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Account {
    sender: ServiceId,
    /// Wire bytes of its records: at most the journal's `max_bytes`, a
    /// `u32` (saturating).
    bytes: u32,
    /// Its place in `Journal::by_count` and `Journal::by_bytes`.
    at: [u32; 2],
    counts: Counts,
    /// Slot positions of this sender's records, oldest first.
    pos: VecDeque<u32>,
}

/// The two eviction orders: most records, most bytes (ties: the higher
/// sender id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Count = 0,
    Bytes = 1,
}

impl Order {
    fn key(self, a: &Account) -> (u64, ServiceId) {
        match self {
            Self::Count => (a.pos.len() as u64, a.sender),
            Self::Bytes => (u64::from(a.bytes), a.sender),
        }
    }
}

/// Pushes onto a per-sender list, growing it by 1/8 (not 2x): these lists
/// are a per-sender cost.
fn push_slim<T>(v: &mut Vec<T>, x: T) {
    if v.len() == v.capacity() {
        v.reserve_exact(v.len() / 8 + 4);
    }
    v.push(x);
}

/// Gives memory back when a per-sender list has shrunk to under half of
/// its capacity (amortized O(1): it must shrink by ~half again first).
fn trim<T>(v: &mut Vec<T>) {
    if v.capacity() > 2 * v.len() + 16 {
        v.shrink_to(v.len() + v.len() / 8 + 4);
    }
}

/// An indexed binary max-heap of account slots under one [`Order`]; each
/// account stores its position (`Account::at`), so a key change or a
/// removal is O(log senders).
#[derive(Debug, Default)]
struct Heap {
    items: Vec<u32>,
}

impl Heap {
    fn key(&self, accts: &[Account], o: Order, i: usize) -> Option<(u64, ServiceId)> {
        let a = self.items.get(i)?;
        accts.get(*a as usize).map(|a| o.key(a))
    }

    fn set(&mut self, accts: &mut [Account], o: Order, i: usize, acct: u32) {
        if let Some(x) = self.items.get_mut(i) {
            *x = acct;
        }
        if let Some(a) = accts.get_mut(acct as usize) {
            if let Some(at) = a.at.get_mut(o as usize) {
                *at = u32::try_from(i).unwrap_or(u32::MAX);
            }
        }
    }

    fn swap(&mut self, accts: &mut [Account], o: Order, i: usize, j: usize) {
        let (Some(&x), Some(&y)) = (self.items.get(i), self.items.get(j)) else {
            return;
        };
        self.set(accts, o, i, y);
        self.set(accts, o, j, x);
    }

    /// Restores the heap order around position `i`.
    fn fix(&mut self, accts: &mut [Account], o: Order, mut i: usize) {
        while i > 0 {
            let up = (i - 1) / 2;
            if self.key(accts, o, up) >= self.key(accts, o, i) {
                break;
            }
            self.swap(accts, o, i, up);
            i = up;
        }
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut top = i;
            if self.key(accts, o, l) > self.key(accts, o, top) {
                top = l;
            }
            if self.key(accts, o, r) > self.key(accts, o, top) {
                top = r;
            }
            if top == i {
                break;
            }
            self.swap(accts, o, i, top);
            i = top;
        }
    }

    fn push(&mut self, accts: &mut [Account], o: Order, acct: u32) {
        let i = self.items.len();
        push_slim(&mut self.items, acct);
        self.set(accts, o, i, acct);
        self.fix(accts, o, i);
    }

    fn remove(&mut self, accts: &mut [Account], o: Order, i: usize) {
        let last = self.items.len().saturating_sub(1);
        self.swap(accts, o, i, last);
        self.items.pop();
        trim(&mut self.items);
        if i < self.items.len() {
            self.fix(accts, o, i);
        }
    }

    fn top(&self) -> Option<u32> {
        self.items.first().copied()
    }
}

/// Dead slots: one bit per slot, and a Fenwick tree of the dead count per
/// 64-slot word, so "dead slots before position p" is O(log N).
#[derive(Debug, Default)]
struct Tombs {
    words: Vec<u64>,
    /// Fenwick tree over `words` (node `i` at index `i - 1`).
    tree: Vec<u32>,
    dead: usize,
}

impl Tombs {
    /// Dead slots in words `[0, w)`.
    fn prefix_words(&self, w: usize) -> u32 {
        let mut i = w.min(self.tree.len());
        let mut sum = 0u32;
        while i > 0 {
            sum = sum.saturating_add(self.tree.get(i - 1).copied().unwrap_or(0));
            i &= i - 1;
        }
        sum
    }

    /// Makes sure there are bits for `slots` slots (new ones live).
    fn grow_to(&mut self, slots: usize) {
        while self.words.len().saturating_mul(64) < slots {
            // A Fenwick node covers (i - lowbit(i), i]; the new word is 0.
            let i = self.words.len() + 1;
            let low = i & i.wrapping_neg();
            let node = self
                .prefix_words(i - 1)
                .saturating_sub(self.prefix_words(i - low));
            self.words.push(0);
            self.tree.push(node);
        }
    }

    /// All slots live again, `slots` of them (after a compaction).
    fn reset(&mut self, slots: usize) {
        self.words.clear();
        self.tree.clear();
        self.dead = 0;
        let n = slots.div_ceil(64);
        self.words.resize(n, 0);
        self.tree.resize(n, 0);
    }

    fn is_dead(&self, pos: usize) -> bool {
        self.words
            .get(pos / 64)
            .is_some_and(|w| w & (1u64 << (pos % 64)) != 0)
    }

    /// Marks `pos` dead; false if it already was (or does not exist).
    fn kill(&mut self, pos: usize) -> bool {
        let w = pos / 64;
        let bit = 1u64 << (pos % 64);
        match self.words.get_mut(w) {
            Some(word) if *word & bit == 0 => *word |= bit,
            _ => return false,
        }
        let mut i = w + 1;
        while let Some(node) = self.tree.get_mut(i - 1) {
            *node = node.saturating_add(1);
            i += i & i.wrapping_neg();
        }
        self.dead += 1;
        true
    }

    /// Dead slots at positions `< pos`.
    fn dead_before(&self, pos: usize) -> usize {
        let w = pos / 64;
        let mask = (1u64 << (pos % 64)).wrapping_sub(1);
        let partial = self.words.get(w).map_or(0, |x| (x & mask).count_ones());
        self.prefix_words(w).saturating_add(partial) as usize
    }

    /// The first live position `>= pos`, or `len`.
    fn next_live(&self, pos: usize, len: usize) -> usize {
        let mut w = pos / 64;
        let mut mask = u64::MAX << (pos % 64);
        while w.saturating_mul(64) < len {
            let live = !self.words.get(w).copied().unwrap_or(0) & mask;
            if live != 0 {
                return (w * 64 + live.trailing_zeros() as usize).min(len);
            }
            w += 1;
            mask = u64::MAX;
        }
        len
    }
}

/// What a QUERY page selects (already checked by the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    /// Only this sender's records.
    pub sender: Option<ServiceId>,
    /// Records at least this severe.
    pub min_level: Level,
    /// Records with `ts_ns >= since_ns`.
    pub since_ns: u64,
    /// Records with `ts_ns <= until_ns`.
    pub until_ns: u64,
}

/// How large a page may get (already lowered to the config's bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    /// Records per page (at least 1).
    pub max_count: usize,
    /// Record bytes per page (a page holds at least one record).
    pub max_bytes: u64,
    /// Records examined per page.
    pub max_scan: usize,
}

/// A QUERY page without its records (they were written in wire form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHead {
    /// The cursor for the next page.
    pub next: u64,
    /// Ids in the scanned range that are no longer held.
    pub gap: u64,
    /// The page stopped early (count, bytes or scan bound).
    pub more: bool,
    /// Records written.
    pub count: u16,
}

/// Length of the wire record at the start of `buf`, if it holds one.
fn wire_len(buf: &[u8]) -> Option<usize> {
    let t = usize::from(*buf.get(21)?);
    let m = buf.get(22 + t..24 + t)?;
    let m = usize::from(u16::from_le_bytes([*m.first()?, *m.get(1)?]));
    let f = buf.get(24 + t + m..26 + t + m)?;
    let f = usize::from(u16::from_le_bytes([*f.first()?, *f.get(1)?]));
    let len = 26 + t + m + f;
    (len <= buf.len()).then_some(len)
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
    /// Records in wire form, in id order, dead ones until compaction.
    arena: Vec<u8>,
    /// Arena offset of each record in the arena (live or dead), id order.
    slots: Vec<u32>,
    tombs: Tombs,
    /// Slot positions where `ts_ns` went back (a new time run starts).
    runs: Vec<u32>,
    /// Wire bytes of the live records.
    bytes: u64,
    /// Wire bytes of the dead records still in the arena.
    garbage: u64,
    next_id: u64,
    /// The senders holding records, in no order.
    accounts: Vec<Account>,
    /// Sender → its slot in `accounts`.
    index: SlotIndex,
    /// Counters of senders with no records left, bounded: the least
    /// recently touched is forgotten.
    retired: LruMap<ServiceId, Counts>,
    by_count: Heap,
    by_bytes: Heap,
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
            arena: Vec::new(),
            slots: Vec::new(),
            tombs: Tombs::default(),
            runs: Vec::new(),
            bytes: 0,
            garbage: 0,
            next_id: 1,
            accounts: Vec::new(),
            index: SlotIndex::default(),
            retired: LruMap::new(usize::try_from(max_retired).unwrap_or(usize::MAX)),
            by_count: Heap::default(),
            by_bytes: Heap::default(),
            evicted_total: 0,
            appended_total: 0,
        }
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.slots.len() - self.tombs.dead
    }

    /// True if no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held (wire lengths of the records held).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The id the next record will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Oldest retained id.
    pub fn first_id(&self) -> Option<u64> {
        let p = self.tombs.next_live(0, self.slots.len());
        (p < self.slots.len()).then(|| self.id_at(p))
    }

    /// Records evicted since start.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    /// Records accepted since start.
    pub fn appended_total(&self) -> u64 {
        self.appended_total
    }

    /// The wire bytes of slot `pos` (live or dead).
    fn rec_at(&self, pos: usize) -> &[u8] {
        let Some(&a) = self.slots.get(pos) else {
            return &[];
        };
        let b = self
            .slots
            .get(pos + 1)
            .map_or(self.arena.len(), |&o| o as usize);
        self.arena.get(a as usize..b).unwrap_or(&[])
    }

    fn id_at(&self, pos: usize) -> u64 {
        u64_at(self.rec_at(pos), AT_ID)
    }

    fn ts_at(&self, pos: usize) -> u64 {
        u64_at(self.rec_at(pos), AT_TS)
    }

    /// The first slot position whose id is `>= id`.
    fn lower_bound(&self, id: u64) -> usize {
        self.slots
            .partition_point(|&off| u64_at(&self.arena, off as usize + AT_ID) < id)
    }

    /// Live records at positions `< pos`.
    fn live_before(&self, pos: usize) -> usize {
        pos.saturating_sub(self.tombs.dead_before(pos))
    }

    /// The held record with `id`, in wire form.
    pub fn wire(&self, id: u64) -> Option<&[u8]> {
        let p = self.lower_bound(id);
        (p < self.slots.len() && !self.tombs.is_dead(p) && self.id_at(p) == id)
            .then(|| self.rec_at(p))
    }

    /// The record with `id`, if held.
    pub fn get(&self, id: u64) -> Option<Record> {
        self.wire(id).and_then(|b| decode_record_bytes(b).ok())
    }

    /// The held records with id `>= from`, in id order, in wire form.
    pub fn wire_from(&self, from: u64) -> impl Iterator<Item = &[u8]> {
        let n = self.slots.len();
        (self.lower_bound(from)..n)
            .filter(move |&p| !self.tombs.is_dead(p))
            .map(move |p| self.rec_at(p))
    }

    /// The held records with id `>= from`, in id order.
    pub fn range_from(&self, from: u64) -> impl Iterator<Item = Record> + '_ {
        self.wire_from(from)
            .filter_map(|b| decode_record_bytes(b).ok())
    }

    /// Inserts `rec` (its `id` is overwritten with the next id), evicting
    /// fairly until it fits. The caller guarantees
    /// `rec.wire_len() <= max_bytes` (logd's config validation does).
    pub fn insert(&mut self, rec: Record) -> Inserted {
        self.insert_parts(RecordParts::of(&rec))
    }

    /// [`Self::insert`] from borrowed parts (`id` is overwritten): the
    /// record is written straight into the journal's storage.
    pub fn insert_parts(&mut self, rec: RecordParts<'_>) -> Inserted {
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
        Ok(self.place(RecordParts::of(&rec), rec.id))
    }

    fn place(&mut self, mut rec: RecordParts<'_>, id: u64) -> Inserted {
        let wire_len = rec.wire_len();
        let size = wire_len as u64;
        let mut evicted = 0u32;
        loop {
            let by_count = self.len() >= self.max_records;
            let by_bytes = self.bytes + size > self.max_bytes;
            if self.is_empty() || !(by_count || by_bytes) {
                break;
            }
            let victim = if by_count {
                self.by_count.top()
            } else {
                self.by_bytes.top()
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
        // May compact, which renumbers positions: before taking any.
        self.make_room(wire_len);
        let pos = self.slots.len();
        let pos32 = u32::try_from(pos).unwrap_or(u32::MAX);
        let off = self.arena.len();
        let back = self.slots.last().map(|_| self.ts_at(pos - 1));
        encode_record_parts(&mut self.arena, &rec);
        let size = (self.arena.len() - off) as u64;
        self.slots.push(u32::try_from(off).unwrap_or(u32::MAX));
        self.tombs.grow_to(self.slots.len());
        if back.is_some_and(|t| rec.ts_ns < t) {
            self.runs.push(pos32);
        }
        let k = self.account_of(rec.sender);
        if let Some(acc) = self.accounts.get_mut(k as usize) {
            acc.bytes = acc
                .bytes
                .saturating_add(u32::try_from(size).unwrap_or(u32::MAX));
            if acc.pos.len() == acc.pos.capacity() {
                // Grow by 1/16, not 2x: the lists are a per-record cost.
                acc.pos.reserve_exact(acc.pos.len() / 16 + 1);
            }
            acc.pos.push_back(pos32);
        }
        self.reorder(k);
        self.bytes += size;
        self.appended_total += 1;
        Inserted { id, evicted }
    }

    /// Makes room for one more slot and `size` arena bytes: compacts when
    /// the arena or the slot list is full and at least 1/16 of it is dead
    /// (or offsets would pass `u32`), else grows it by 1/32.
    fn make_room(&mut self, size: usize) {
        let limit = u32::MAX as usize;
        let need = self.arena.len().saturating_add(size);
        let arena_full = need > self.arena.capacity();
        let slots_full = self.slots.len() == self.slots.capacity();
        if !(arena_full || slots_full) {
            return;
        }
        let worth = self.garbage.saturating_mul(16) >= self.arena.len() as u64
            || self.tombs.dead.saturating_mul(16) >= self.slots.len();
        let overflow = need > limit || self.slots.len() >= limit;
        if self.tombs.dead > 0 && (worth || overflow) {
            self.compact();
        }
        let need = self.arena.len().saturating_add(size);
        let cap = self.arena.capacity();
        if need > cap {
            let target = need.max(cap + cap / 32).max(256).min(limit).max(need);
            self.arena.reserve_exact(target - self.arena.len());
        }
        if self.slots.len() == self.slots.capacity() {
            self.slots.reserve_exact(self.slots.len() / 16 + 16);
        }
    }

    /// Squeezes the dead records out of the arena and the slot list, in
    /// place, and renumbers the positions kept elsewhere (sender lists,
    /// time runs). O(slots).
    fn compact(&mut self) {
        let tombs = &self.tombs;
        let mut before = Vec::with_capacity(tombs.words.len());
        let mut dead = 0u32;
        for w in &tombs.words {
            before.push(dead);
            dead = dead.saturating_add(w.count_ones());
        }
        // The new position of a live slot: its position minus the dead
        // slots before it (a dead one maps to the next live one).
        let remap = |p: &mut u32| {
            let i = *p as usize;
            let mask = (1u64 << (i % 64)).wrapping_sub(1);
            let word = tombs.words.get(i / 64).copied().unwrap_or(0);
            let d = before.get(i / 64).copied().unwrap_or(dead) + (word & mask).count_ones();
            *p = p.saturating_sub(d);
        };
        for acc in &mut self.accounts {
            acc.pos.iter_mut().for_each(remap);
        }
        let live = self.slots.len() - tombs.dead;
        self.runs.iter_mut().for_each(remap);
        self.runs.retain(|&r| r > 0 && (r as usize) < live);
        self.runs.dedup();

        let end = self.arena.len();
        let (mut w, mut k) = (0usize, 0usize);
        for p in 0..self.slots.len() {
            let Some(&a) = self.slots.get(p) else { break };
            let a = a as usize;
            let b = self.slots.get(p + 1).map_or(end, |&o| o as usize);
            if self.tombs.is_dead(p) || b < a || b > end {
                continue;
            }
            if a != w {
                self.arena.copy_within(a..b, w);
            }
            if let Some(s) = self.slots.get_mut(k) {
                *s = u32::try_from(w).unwrap_or(u32::MAX);
            }
            w += b - a;
            k += 1;
        }
        self.arena.truncate(w);
        self.slots.truncate(k);
        self.tombs.reset(k);
        self.garbage = 0;
    }

    /// The slot of `sender`'s account, opened (with its retired counters,
    /// if any) if it has none.
    fn account_of(&mut self, sender: ServiceId) -> u32 {
        if let Some(&k) = self.index.get(&sender) {
            return k;
        }
        let counts = self.retired.remove(&sender).unwrap_or_default();
        // At most `max_records` accounts (each holds a record): a u32.
        let k = u32::try_from(self.accounts.len()).unwrap_or(u32::MAX);
        push_slim(
            &mut self.accounts,
            Account {
                sender,
                bytes: 0,
                at: [0; 2],
                counts,
                pos: VecDeque::new(),
            },
        );
        self.index.insert(sender, k);
        self.by_count.push(&mut self.accounts, Order::Count, k);
        self.by_bytes.push(&mut self.accounts, Order::Bytes, k);
        k
    }

    /// Restores both eviction orders after account `k` changed.
    fn reorder(&mut self, k: u32) {
        let Some(at) = self.accounts.get(k as usize).map(|a| a.at) else {
            return;
        };
        self.by_count
            .fix(&mut self.accounts, Order::Count, at[0] as usize);
        self.by_bytes
            .fix(&mut self.accounts, Order::Bytes, at[1] as usize);
    }

    /// Closes account `k` (it holds no record): it leaves both orders and
    /// the last account takes its slot.
    fn close(&mut self, k: u32) {
        let Some(at) = self.accounts.get(k as usize).map(|a| a.at) else {
            return;
        };
        self.by_count
            .remove(&mut self.accounts, Order::Count, at[0] as usize);
        self.by_bytes
            .remove(&mut self.accounts, Order::Bytes, at[1] as usize);
        let gone = self.accounts.swap_remove(k as usize);
        self.index.remove(&gone.sender);
        self.retired.insert(gone.sender, gone.counts);
        if let Some(moved) = self.accounts.get(k as usize) {
            let (sender, at) = (moved.sender, moved.at);
            if let Some(x) = self.by_count.items.get_mut(at[0] as usize) {
                *x = k;
            }
            if let Some(x) = self.by_bytes.items.get_mut(at[1] as usize) {
                *x = k;
            }
            if let Some(x) = self.index.get_mut(&sender) {
                *x = k;
            }
        }
        trim(&mut self.accounts);
    }

    fn account(&self, sender: ServiceId) -> Option<&Account> {
        let k = self.index.get(&sender)?;
        self.accounts.get(*k as usize)
    }

    /// Evicts the oldest record of the account in slot `k`.
    fn evict_oldest_of(&mut self, k: u32) -> bool {
        let Some(acc) = self.accounts.get_mut(k as usize) else {
            return false;
        };
        let Some(pos) = acc.pos.pop_front() else {
            return false;
        };
        let pos = pos as usize;
        let size = {
            let a = self.slots.get(pos).map_or(0, |&o| o as usize);
            let b = self
                .slots
                .get(pos + 1)
                .map_or(self.arena.len(), |&o| o as usize);
            b.saturating_sub(a) as u64
        };
        if self.tombs.kill(pos) {
            self.garbage += size;
            self.bytes = self.bytes.saturating_sub(size);
        }
        acc.bytes = acc
            .bytes
            .saturating_sub(u32::try_from(size).unwrap_or(u32::MAX));
        acc.counts.evicted += 1;
        self.evicted_total += 1;
        let len = acc.pos.len();
        if len > 0 && acc.pos.capacity() > len + len / 4 + 16 {
            // Give memory back when a sender shrinks: its list keeps at
            // most ~1.25x what it holds.
            acc.pos.shrink_to(len + len / 16 + 4);
        }
        if len == 0 {
            self.close(k);
        } else {
            self.reorder(k);
        }
        true
    }

    /// The first slot position `>= from` whose `ts_ns` is within
    /// `[since, until]`, or `slots.len()`. Within a time run the stamps do
    /// not decrease, so each run costs one binary search.
    fn seek_time(&self, from: usize, since: u64, until: u64) -> usize {
        let n = self.slots.len();
        let mut k = self.runs.partition_point(|&r| r as usize <= from);
        let mut lo = from;
        while lo < n {
            let hi = self.runs.get(k).map_or(n, |&r| r as usize).min(n);
            if let Some(run) = self.slots.get(lo..hi) {
                let p = lo
                    + run.partition_point(|&off| u64_at(&self.arena, off as usize + AT_TS) < since);
                if p < hi && self.ts_at(p) <= until {
                    return p;
                }
            }
            lo = hi.max(lo + 1);
            k += 1;
        }
        n
    }

    /// One QUERY page starting at id `start`, decoded (see [`Self::page_wire`]).
    pub fn page(&self, start: u64, f: &Filter, lim: &PageLimits) -> QueryPage {
        let mut buf = Vec::new();
        let head = self.page_wire(start, f, lim, &mut buf);
        let mut records = Vec::with_capacity(usize::from(head.count));
        let mut rest = buf.as_slice();
        while let Some(len) = wire_len(rest) {
            let (rec, tail) = rest.split_at_checked(len).unwrap_or((rest, &[]));
            records.extend(decode_record_bytes(rec).ok());
            rest = tail;
        }
        QueryPage {
            next: head.next,
            gap: head.gap,
            more: head.more,
            records,
        }
    }

    /// One QUERY page starting at id `start`: the records matching `f`, in
    /// id order, within `lim`, appended to `out` in wire form (the reply's
    /// record layout). Costs O(log N) to find the first candidate and O(1)
    /// per record examined: a sender filter visits only that sender's
    /// records, and a time window skips non-matching stretches by binary
    /// search (records skipped that way are not "examined").
    ///
    /// `next` is the first id not examined when the page stopped early
    /// (`more`), else the next id to be assigned; `gap` is the number of ids
    /// in `[start, next)` not held.
    pub fn page_wire(
        &self,
        start: u64,
        f: &Filter,
        lim: &PageLimits,
        out: &mut Vec<u8>,
    ) -> PageHead {
        enum Source<'a> {
            All,
            Sender(&'a VecDeque<u32>),
            Nothing,
        }
        let src = match f.sender {
            None => Source::All,
            Some(s) => self
                .account(s)
                .map_or(Source::Nothing, |a| Source::Sender(&a.pos)),
        };
        let n = self.slots.len();
        let first = self.lower_bound(start);
        let timed = f.since_ns > 0 || f.until_ns < u64::MAX;
        let min_level = f.min_level.as_u8();
        let max_count = lim.max_count.min(usize::from(u16::MAX));
        let mut head = PageHead {
            next: start,
            gap: 0,
            more: false,
            count: 0,
        };
        let mut next = start;
        let mut bytes = 0u64;
        let mut examined = 0usize;
        let mut at = first;
        let mut idx = match &src {
            Source::Sender(list) => list.partition_point(|&q| (q as usize) < at),
            _ => 0,
        };
        loop {
            let p = match &src {
                Source::All => self.tombs.next_live(at, n),
                Source::Sender(list) => list.get(idx).map_or(n, |&q| q as usize),
                Source::Nothing => n,
            };
            if p >= n {
                break;
            }
            if examined >= lim.max_scan || usize::from(head.count) >= max_count {
                head.more = true;
                break;
            }
            let rec = self.rec_at(p);
            if timed {
                let ts = u64_at(rec, AT_TS);
                if ts < f.since_ns || ts > f.until_ns {
                    at = self.seek_time(p + 1, f.since_ns, f.until_ns);
                    if let Source::Sender(list) = &src {
                        idx = list.partition_point(|&q| (q as usize) < at);
                    }
                    continue;
                }
            }
            examined += 1;
            if rec.get(AT_LEVEL).is_some_and(|&l| l >= min_level) {
                let size = rec.len() as u64;
                // A page always carries at least one record, so paging
                // progresses whatever max_bytes is.
                if head.count > 0 && bytes + size > lim.max_bytes {
                    head.more = true;
                    break;
                }
                bytes += size;
                out.extend_from_slice(rec);
                head.count += 1;
            }
            next = u64_at(rec, AT_ID).saturating_add(1);
            at = p + 1;
            idx += 1;
        }
        head.next = if head.more {
            next
        } else {
            next.max(self.next_id)
        };
        let held = self
            .live_before(self.lower_bound(head.next))
            .saturating_sub(self.live_before(first)) as u64;
        head.gap = head.next.saturating_sub(start).saturating_sub(held);
        head
    }

    /// Counts a rejected append against `sender`.
    pub fn note_rejected(&mut self, sender: ServiceId) {
        if let Some(&k) = self.index.get(&sender) {
            if let Some(a) = self.accounts.get_mut(k as usize) {
                a.counts.rejected += 1;
                return;
            }
        }
        let (c, _) = self.retired.get_or_insert_with(sender, Counts::default);
        c.rejected += 1;
    }

    fn sender_stats(a: &Account) -> SenderStats {
        SenderStats {
            sender: a.sender,
            records: a.pos.len() as u64,
            bytes: u64::from(a.bytes),
            evicted: a.counts.evicted,
            rejected: a.counts.rejected,
        }
    }

    /// Accounting of one sender (zeros if unknown).
    pub fn sender(&self, sender: ServiceId) -> SenderStats {
        if let Some(a) = self.account(sender) {
            return Self::sender_stats(a);
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

    /// The `n` senders holding the most bytes, heaviest first (ties: the
    /// higher sender id). O(n log n): a walk down the byte heap.
    pub fn heaviest(&self, n: usize) -> Vec<SenderStats> {
        let h = &self.by_bytes;
        let mut out = Vec::new();
        let mut front = BinaryHeap::new();
        front.extend(h.key(&self.accounts, Order::Bytes, 0).map(|k| (k, 0usize)));
        while out.len() < n {
            let Some((_, i)) = front.pop() else { break };
            if let Some(a) = h.items.get(i).and_then(|&k| self.accounts.get(k as usize)) {
                out.push(Self::sender_stats(a));
            }
            for c in [2 * i + 1, 2 * i + 2] {
                front.extend(h.key(&self.accounts, Order::Bytes, c).map(|k| (k, c)));
            }
        }
        out
    }

    /// Checks every invariant; used by tests.
    #[cfg(test)]
    pub fn debug_check(&self) {
        assert!(self.len() <= self.max_records);
        assert!(self.bytes <= self.max_bytes);
        let n = self.slots.len();
        let (mut live, mut dead) = (0u64, 0u64);
        let mut last_id = 0;
        for p in 0..n {
            let r = self.rec_at(p);
            let id = u64_at(r, AT_ID);
            assert!(id > last_id, "ids increase with the position");
            last_id = id;
            assert_eq!(
                decode_record_bytes(r).map(|d| d.wire_len()),
                Ok(r.len()),
                "a slot holds exactly one record"
            );
            if self.tombs.is_dead(p) {
                dead += r.len() as u64;
            } else {
                live += r.len() as u64;
            }
            assert_eq!(
                self.tombs.dead_before(p),
                (0..p).filter(|&q| self.tombs.is_dead(q)).count()
            );
        }
        assert_eq!(live, self.bytes);
        assert_eq!(dead, self.garbage);
        assert!(self.runs.windows(2).all(|w| w[0] < w[1]));
        for (i, w) in self.slots.windows(2).enumerate() {
            // Within a time run, stamps do not decrease.
            if !self.runs.contains(&((i + 1) as u32)) {
                assert!(
                    u64_at(&self.arena, w[0] as usize + AT_TS)
                        <= u64_at(&self.arena, w[1] as usize + AT_TS)
                );
            }
        }
        assert_eq!(self.by_bytes.items.len(), self.accounts.len());
        assert_eq!(self.by_count.items.len(), self.accounts.len());
        assert_eq!(self.index.len(), self.accounts.len());
        for (o, h) in [
            (Order::Count, &self.by_count),
            (Order::Bytes, &self.by_bytes),
        ] {
            for (i, &k) in h.items.iter().enumerate() {
                assert_eq!(self.accounts[k as usize].at[o as usize] as usize, i);
                if i > 0 {
                    let up = h.items[(i - 1) / 2] as usize;
                    assert!(o.key(&self.accounts[up]) > o.key(&self.accounts[k as usize]));
                }
            }
        }
        for (k, a) in self.accounts.iter().enumerate() {
            let s = &a.sender;
            assert_eq!(self.index.get(s).copied().unwrap() as usize, k);
            assert!(!a.pos.is_empty());
            assert!(a.pos.iter().zip(a.pos.iter().skip(1)).all(|(x, y)| x < y));
            let b: u64 = a
                .pos
                .iter()
                .map(|&p| {
                    let p = p as usize;
                    assert!(!self.tombs.is_dead(p));
                    let r = decode_record_bytes(self.rec_at(p)).unwrap();
                    assert_eq!(r.sender, *s);
                    r.wire_len() as u64
                })
                .sum();
            assert_eq!(b, u64::from(a.bytes));
        }
        let held: usize = self.accounts.iter().map(|a| a.pos.len()).sum();
        assert_eq!(held, self.len());
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
        let a = j.account(ServiceId::new(1)).unwrap();
        assert!(a.pos.len() <= 500);
        assert!(a.pos.capacity() <= a.pos.len() + a.pos.len() / 4 + 16);
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
                prop_assert!(j.get(ins.id).is_some());
                let mut all: Vec<SenderStats> = (1..6).map(|s| j.sender(ServiceId::new(s))).filter(|s| s.records > 0).collect();
                all.sort_by_key(|s| core::cmp::Reverse((s.bytes, s.sender)));
                all.truncate(3);
                prop_assert_eq!(j.heaviest(3), all);
            }
            prop_assert_eq!(j.appended_total(), j.evicted_total() + j.len() as u64);
        }
    }
    /// What a page must hold, computed the slow way from the held records.
    fn matching(j: &Journal, start: u64, f: &Filter) -> Vec<u64> {
        j.range_from(start)
            .filter(|r| {
                f.sender.is_none_or(|s| r.sender == s)
                    && r.level >= f.min_level
                    && r.ts_ns >= f.since_ns
                    && r.ts_ns <= f.until_ns
            })
            .map(|r| r.id)
            .collect()
    }

    fn held_in(j: &Journal, from: u64, to: u64) -> u64 {
        j.range_from(from).take_while(|r| r.id < to).count() as u64
    }

    proptest! {
        #[test]
        fn pages_match_a_full_scan_and_count_gaps_exactly(
            // (sender, message length, level, clock step; a step of 0 sends
            // the clock back, like a reboot between restored records)
            ops in proptest::collection::vec((1u32..5, 0usize..80, 0u8..5, 0u64..4), 1..300),
            max_records in 1u32..60,
            max_bytes in 200u32..4000,
            queries in proptest::collection::vec(
                (0u32..6, 0u8..5, 0u64..400, 0u64..400, 0u64..320, 1usize..8, 1usize..20, 1u64..400),
                1..12,
            ),
        ) {
            let mut j = Journal::new(max_records, max_bytes, 8);
            let mut ts = 0u64;
            for (s, len, level, step) in ops {
                ts = if step == 0 { ts / 3 } else { ts + step };
                let mut r = rec(s, len);
                r.ts_ns = ts;
                r.level = Level::from_u8(level).unwrap();
                j.insert(r);
                j.debug_check();
            }
            for (s, lvl, since, span, cursor, count, scan, bytes) in queries {
                let f = Filter {
                    sender: (s > 0).then(|| ServiceId::new(s)),
                    min_level: Level::from_u8(lvl).unwrap(),
                    since_ns: since,
                    until_ns: if span == 399 { u64::MAX } else { since + span },
                };
                let lim = PageLimits { max_count: count, max_bytes: bytes * 10, max_scan: scan };
                let start = cursor.min(j.next_id()).max(1);
                let want = matching(&j, start, &f);
                let mut got = Vec::new();
                let mut at = start;
                for n in 0.. {
                    prop_assert!(n < 10_000, "paging progresses");
                    let p = j.page(at, &f, &lim);
                    prop_assert!(p.next >= at);
                    prop_assert_eq!(p.gap, (p.next - at) - held_in(&j, at, p.next));
                    if n == 0 && lvl == 0 {
                        // Only the level filter is scanned: the first page
                        // starts at the first matching record.
                        prop_assert_eq!(p.records.first().map(|r| r.id), want.first().copied());
                    }
                    got.extend(p.records.iter().map(|r| r.id));
                    at = p.next;
                    if !p.more {
                        prop_assert_eq!(p.next, j.next_id());
                        break;
                    }
                }
                prop_assert_eq!(got, want);
            }
        }
    }
}

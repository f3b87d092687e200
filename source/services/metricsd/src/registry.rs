//! The series registry: deduplicated by (owner, name, sorted labels), with
//! per-metric, per-sender and global caps, and one definition per name.
//!
//! Invariants:
//! * a metric **name** has one kind, one bucket layout and one help text
//!   across all owners (a [`Family`]); a registration that disagrees is
//!   refused (`invalid_args`) and counted ([`Refusal`]);
//! * no name is one of another family's sample names: a histogram `h`
//!   writes `h_bucket`, `h_sum` and `h_count`, so those names cannot be
//!   registered next to it, nor `h` as a histogram next to them;
//! * names under [`RESERVED_PREFIX`] are metricsd's own (`denied`), and a
//!   histogram cannot have a label `le` (its buckets use it);
//! * `series.len() <= max_series_global`, each owner holds at most
//!   `max_series_per_sender`, each (owner, name) at most
//!   `max_series_per_metric`;
//! * a registration beyond a cap is refused with `over_limit` and counted
//!   in its (owner, name) `overflow` (exported as
//!   `metricsd_series_overflow_total{metric, owner}`) — live series are
//!   never evicted to make room;
//! * series ids are assigned 1, 2, 3, … (at most [`MAX_SERIES_ID`]) and
//!   never reused; series are never removed, so a slot index is stable.
//!
//! The families are kept sorted (name, then owner, then labels): that is
//! the exposition order, and [`Registry::walk`] resumes it from any series
//! in `O(log n)`, which is what makes a scrape page cost `O(page)`.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ops::Bound;

use nexus_bounds::LruMap;
use nexus_ipc::ServiceId;
use nexus_metrics::proto::Status;
use nexus_metrics::{Buckets, Help, Labels, MetricKind, MetricName};

use crate::config::Cardinality;

/// Names metricsd writes itself; a client cannot register one.
pub const RESERVED_PREFIX: &str = "metricsd_";

/// The sample-name suffixes of a histogram family.
pub const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

/// The label a histogram's buckets use.
pub const LE_LABEL: &str = "le";

/// Largest series id (the scrape cursor keeps two bits for its section).
pub const MAX_SERIES_ID: u32 = 0x3FFF_FFFF;

/// A series' current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Monotonic.
    Counter(u64),
    /// Set or added to.
    Gauge(i64),
    /// Non-cumulative counts per bucket (finite bounds, then `+Inf`), sum
    /// and count of observations.
    Histogram {
        /// Per-bucket counts.
        counts: Vec<u64>,
        /// Sum of observations.
        sum: u64,
        /// Number of observations.
        count: u64,
    },
}

/// One series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// Its id.
    pub id: u32,
    /// The registering sender (transport identity).
    pub owner: ServiceId,
    /// Family name.
    pub name: MetricName,
    /// Labels.
    pub labels: Labels,
    /// Value.
    pub value: Value,
}

/// One metric name, across every owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// Kind.
    pub kind: MetricKind,
    /// Histogram layout.
    pub buckets: Option<Buckets>,
    /// Help text (the first one registered; empty if none was).
    pub help: Help,
    /// (owner, labels) to slot, in exposition order.
    series: BTreeMap<(ServiceId, Labels), u32>,
    /// Series per owner (the per-metric cap).
    per_owner: BTreeMap<ServiceId, u32>,
}

impl Family {
    /// Number of series, all owners.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True if there is no series (never, once created).
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Series of `owner`.
    pub fn owner_len(&self, owner: ServiceId) -> u32 {
        self.per_owner.get(&owner).copied().unwrap_or(0)
    }
}

/// Overflow counters kept per (owner, metric): at most this many, least
/// recently bumped forgotten first (refused names cannot grow memory).
pub const MAX_OVERFLOW_SERIES: usize = 256;

/// A registration to apply (from a client, or replayed from the WAL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Owner.
    pub owner: ServiceId,
    /// Kind.
    pub kind: MetricKind,
    /// Name.
    pub name: MetricName,
    /// Labels.
    pub labels: Labels,
    /// Histogram bounds.
    pub buckets: Option<Buckets>,
    /// Help text (empty: none).
    pub help: Help,
}

/// What [`Registry::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// The series already existed.
    Existing(u32),
    /// A new series.
    New(u32),
}

impl Registered {
    /// The id either way.
    pub fn id(self) -> u32 {
        match self {
            Registered::Existing(id) | Registered::New(id) => id,
        }
    }
}

nexus_wire::byte_enum! {
    /// Why a registration disagreeing with the registry was refused
    /// (counted in `metricsd_register_conflicts_total{reason}`).
    pub enum Refusal {
        /// The name exists with another kind.
        Kind = 0 => "kind",
        /// The name is a histogram with other bounds.
        Layout = 1 => "layout",
        /// The name is metricsd's own ([`RESERVED_PREFIX`]).
        ReservedName = 2 => "reserved_name",
        /// The name is, or would make, a histogram's `_bucket`, `_sum` or
        /// `_count` sample name.
        SampleName = 3 => "sample_name",
        /// A histogram with a label `le`.
        LeLabel = 4 => "le_label",
    }
}

impl Refusal {
    /// The status a client gets.
    pub fn status(self) -> Status {
        match self {
            Refusal::ReservedName => Status::Denied,
            _ => Status::InvalidArgs,
        }
    }
}

/// One series as [`Registry::walk`] yields it, in exposition order.
#[derive(Debug, Clone, Copy)]
pub struct Walked<'a> {
    /// The family's name.
    pub name: &'a MetricName,
    /// The family.
    pub family: &'a Family,
    /// True for the family's first series (its `# HELP`/`# TYPE` go first).
    pub first: bool,
    /// The series.
    pub series: &'a Series,
}

/// The registry.
#[derive(Debug, Clone)]
pub struct Registry {
    caps: Cardinality,
    families: BTreeMap<MetricName, Family>,
    /// Every series, in registration order (a slot never moves).
    slots: Vec<Series>,
    /// Series id to slot.
    ids: BTreeMap<u32, u32>,
    per_owner: BTreeMap<ServiceId, u32>,
    next_id: u32,
    overflow_total: u64,
    overflow: LruMap<(ServiceId, MetricName), u64>,
    refusals: [u64; 5],
}

impl Registry {
    /// An empty registry.
    pub fn new(caps: Cardinality) -> Self {
        Self {
            caps,
            families: BTreeMap::new(),
            slots: Vec::new(),
            ids: BTreeMap::new(),
            per_owner: BTreeMap::new(),
            next_id: 1,
            overflow_total: 0,
            overflow: LruMap::new(MAX_OVERFLOW_SERIES),
            refusals: [0; 5],
        }
    }

    /// Registers (or finds) a series. `invalid_args` or `denied` for a
    /// registration that disagrees with the registry ([`Refusal`]);
    /// `over_limit` beyond a cap.
    pub fn register(&mut self, r: &Registration) -> Result<Registered, Status> {
        self.register_as(r, None)
    }

    /// Replays a registration with its original id (from the WAL). Ids must
    /// not collide; later fresh ids continue after the largest seen.
    pub fn restore(&mut self, r: &Registration, id: u32) -> Result<Registered, Status> {
        if id == 0 || id > MAX_SERIES_ID || self.ids.contains_key(&id) {
            return Err(Status::InvalidArgs);
        }
        self.register_as(r, Some(id))
    }

    /// Why `r` cannot join the registry as it is, if it cannot.
    fn refusal(&self, r: &Registration) -> Option<Refusal> {
        let name = r.name.as_str();
        if name.starts_with(RESERVED_PREFIX) {
            return Some(Refusal::ReservedName);
        }
        let histogram = r.kind == MetricKind::Histogram;
        if histogram && r.labels.iter().any(|(k, _)| k == LE_LABEL) {
            return Some(Refusal::LeLabel);
        }
        if let Some(f) = self.families.get(name) {
            if f.kind != r.kind {
                return Some(Refusal::Kind);
            }
            if f.buckets != r.buckets {
                return Some(Refusal::Layout);
            }
            return None;
        }
        // A new name: not a sample name of an existing histogram, and (a
        // histogram) its sample names not existing names.
        let is_sample_of_histogram = HISTOGRAM_SUFFIXES.iter().any(|suf| {
            name.strip_suffix(suf)
                .and_then(|base| self.families.get(base))
                .is_some_and(|f| f.kind == MetricKind::Histogram)
        });
        let would_shadow = histogram
            && HISTOGRAM_SUFFIXES.iter().any(|suf| {
                let mut sample = alloc::string::String::with_capacity(name.len() + suf.len());
                sample.push_str(name);
                sample.push_str(suf);
                self.families.contains_key(sample.as_str())
            });
        (is_sample_of_histogram || would_shadow).then_some(Refusal::SampleName)
    }

    fn register_as(&mut self, r: &Registration, fixed: Option<u32>) -> Result<Registered, Status> {
        if let Some(why) = self.refusal(r) {
            if let Some(n) = self.refusals.get_mut(usize::from(why.as_u8())) {
                *n += 1;
            }
            return Err(why.status());
        }
        let fam = self.families.get(r.name.as_str());
        if let Some(slot) = fam.and_then(|f| f.series.get(&(r.owner, r.labels.clone()))) {
            let id = self.slots.get(*slot as usize).map_or(0, |s| s.id);
            if !r.help.is_empty() {
                if let Some(f) = self.families.get_mut(r.name.as_str()) {
                    if f.help.is_empty() {
                        f.help = r.help.clone();
                    }
                }
            }
            return Ok(Registered::Existing(id));
        }
        let owner_count = self.per_owner.get(&r.owner).copied().unwrap_or(0);
        let family_count = fam.map_or(0, |f| f.owner_len(r.owner));
        let over = family_count >= self.caps.max_series_per_metric
            || owner_count >= self.caps.max_series_per_sender
            || self.slots.len() >= self.caps.max_series_global as usize;
        if over {
            self.overflow_total += 1;
            let (n, _) = self
                .overflow
                .get_or_insert_with((r.owner, r.name.clone()), || 0);
            *n += 1;
            return Err(Status::OverLimit);
        }
        let id = fixed.unwrap_or(self.next_id);
        if id > MAX_SERIES_ID {
            return Err(Status::OverLimit);
        }
        let slot = u32::try_from(self.slots.len()).map_err(|_| Status::OverLimit)?;
        self.next_id = self.next_id.max(id.saturating_add(1));
        let value = match (&r.kind, &r.buckets) {
            (MetricKind::Counter, None) => Value::Counter(0),
            (MetricKind::Gauge, None) => Value::Gauge(0),
            (MetricKind::Histogram, Some(b)) => Value::Histogram {
                counts: alloc::vec![0; b.bounds().len() + 1],
                sum: 0,
                count: 0,
            },
            _ => return Err(Status::InvalidArgs),
        };
        let fam = self
            .families
            .entry(r.name.clone())
            .or_insert_with(|| Family {
                kind: r.kind,
                buckets: r.buckets.clone(),
                help: r.help.clone(),
                series: BTreeMap::new(),
                per_owner: BTreeMap::new(),
            });
        if fam.help.is_empty() {
            fam.help = r.help.clone();
        }
        fam.series.insert((r.owner, r.labels.clone()), slot);
        *fam.per_owner.entry(r.owner).or_insert(0) += 1;
        self.slots.push(Series {
            id,
            owner: r.owner,
            name: r.name.clone(),
            labels: r.labels.clone(),
            value,
        });
        self.ids.insert(id, slot);
        *self.per_owner.entry(r.owner).or_insert(0) += 1;
        Ok(Registered::New(id))
    }

    fn owned(&mut self, owner: ServiceId, id: u32) -> Result<&mut Series, Status> {
        let slot = self.ids.get(&id).copied();
        match slot.and_then(|i| self.slots.get_mut(i as usize)) {
            Some(s) if s.owner == owner => Ok(s),
            // Someone else's series: as unknown as a missing one.
            _ => Err(Status::InvalidArgs),
        }
    }

    /// Adds `delta` to a counter. Wrapping is refused.
    pub fn inc(&mut self, owner: ServiceId, id: u32, delta: u64) -> Result<i64, Status> {
        match &mut self.owned(owner, id)?.value {
            Value::Counter(v) => {
                *v = v.checked_add(delta).ok_or(Status::InvalidArgs)?;
                Ok(i64::try_from(delta).unwrap_or(i64::MAX))
            }
            _ => Err(Status::InvalidArgs),
        }
    }

    /// Sets a gauge.
    pub fn set(&mut self, owner: ServiceId, id: u32, value: i64) -> Result<i64, Status> {
        match &mut self.owned(owner, id)?.value {
            Value::Gauge(v) => {
                *v = value;
                Ok(value)
            }
            _ => Err(Status::InvalidArgs),
        }
    }

    /// Adds to a gauge. Overflow is refused.
    pub fn add(&mut self, owner: ServiceId, id: u32, delta: i64) -> Result<i64, Status> {
        match &mut self.owned(owner, id)?.value {
            Value::Gauge(v) => {
                *v = v.checked_add(delta).ok_or(Status::InvalidArgs)?;
                Ok(*v)
            }
            _ => Err(Status::InvalidArgs),
        }
    }

    /// Adds per-bucket deltas and a sum delta to a histogram. The layout
    /// must match; overflow is refused. Returns the sample for rollups
    /// (the sum delta).
    pub fn observe(
        &mut self,
        owner: ServiceId,
        id: u32,
        deltas: &[u64],
        sum_delta: u64,
    ) -> Result<i64, Status> {
        match &mut self.owned(owner, id)?.value {
            Value::Histogram { counts, sum, count } => {
                if deltas.len() != counts.len() {
                    return Err(Status::InvalidArgs);
                }
                let mut new_counts = counts.clone();
                let mut added = 0u64;
                for (c, d) in new_counts.iter_mut().zip(deltas) {
                    *c = c.checked_add(*d).ok_or(Status::InvalidArgs)?;
                    added = added.checked_add(*d).ok_or(Status::InvalidArgs)?;
                }
                let new_sum = sum.checked_add(sum_delta).ok_or(Status::InvalidArgs)?;
                let new_count = count.checked_add(added).ok_or(Status::InvalidArgs)?;
                *counts = new_counts;
                *sum = new_sum;
                *count = new_count;
                Ok(i64::try_from(sum_delta).unwrap_or(i64::MAX))
            }
            _ => Err(Status::InvalidArgs),
        }
    }

    /// A series by id.
    pub fn get(&self, id: u32) -> Option<&Series> {
        self.slots.get(*self.ids.get(&id)? as usize)
    }

    /// Every series in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Series)> {
        self.ids
            .iter()
            .filter_map(|(id, slot)| Some((*id, self.slots.get(*slot as usize)?)))
    }

    /// Every family in name order.
    pub fn families(&self) -> impl Iterator<Item = (&MetricName, &Family)> {
        self.families.iter()
    }

    /// The family of a name.
    pub fn family(&self, name: &MetricName) -> Option<&Family> {
        self.families.get(name.as_str())
    }

    /// Every series in exposition order (name, owner, labels), starting at
    /// series `from` (the start when `None` or unknown). Finding the start
    /// costs `O(log n)`; each step after it `O(1)` amortized.
    pub fn walk(&self, from: Option<u32>) -> impl Iterator<Item = Walked<'_>> + '_ {
        let start = from.and_then(|id| self.get(id));
        let lower: Bound<&str> =
            start.map_or(Bound::Unbounded, |s| Bound::Included(s.name.as_str()));
        let key = start.map(|s| (s.owner, s.labels.clone()));
        self.families
            .range::<str, _>((lower, Bound::Unbounded))
            .enumerate()
            .flat_map(move |(i, (name, family))| {
                let from_key = if i == 0 { key.clone() } else { None };
                let first_key = family.series.keys().next();
                let range = match from_key {
                    Some(k) => family.series.range((Bound::Included(k), Bound::Unbounded)),
                    None => family.series.range(..),
                };
                // Only the range's first series can be the family's first
                // (compare keys once, not per series).
                range.enumerate().filter_map(move |(j, (k, slot))| {
                    Some(Walked {
                        name,
                        family,
                        first: j == 0 && Some(k) == first_key,
                        series: self.slots.get(*slot as usize)?,
                    })
                })
            })
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True if there is no series.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Refused registrations per (owner, metric), for the overflow series.
    pub fn overflow(&self) -> impl Iterator<Item = (&(ServiceId, MetricName), &u64)> {
        self.overflow.iter()
    }

    /// Registrations refused by a cap, in total.
    pub fn overflow_total(&self) -> u64 {
        self.overflow_total
    }

    /// Registrations refused for disagreeing with the registry, by reason.
    pub fn refusals(&self) -> impl Iterator<Item = (Refusal, u64)> + '_ {
        Refusal::ALL
            .iter()
            .zip(self.refusals.iter())
            .map(|(r, n)| (*r, *n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn caps(m: u32, s: u32, g: u32) -> Cardinality {
        Cardinality {
            max_series_per_metric: m,
            max_series_per_sender: s,
            max_series_global: g,
        }
    }

    fn reg(owner: u32, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Registration {
        Registration {
            owner: ServiceId::new(owner),
            kind,
            name: MetricName::new(name).unwrap(),
            labels: Labels::new(labels).unwrap(),
            buckets: None,
            help: Help::default(),
        }
    }

    #[test]
    fn dedupes_by_owner_name_and_sorted_labels() {
        let mut r = Registry::new(caps(8, 8, 8));
        let a = r
            .register(&reg(1, MetricKind::Counter, "c", &[("a", "1"), ("b", "2")]))
            .unwrap();
        let b = r
            .register(&reg(1, MetricKind::Counter, "c", &[("b", "2"), ("a", "1")]))
            .unwrap();
        assert_eq!((a, b), (Registered::New(1), Registered::Existing(1)));
        // Another owner gets its own series.
        let c = r
            .register(&reg(2, MetricKind::Counter, "c", &[("a", "1"), ("b", "2")]))
            .unwrap();
        assert_eq!(c, Registered::New(2));
        // Same name, other kind: conflict.
        assert_eq!(
            r.register(&reg(1, MetricKind::Gauge, "c", &[])),
            Err(Status::InvalidArgs)
        );
    }

    #[test]
    fn counters_are_monotonic_and_refuse_wrapping() {
        let mut r = Registry::new(caps(8, 8, 8));
        let id = r
            .register(&reg(1, MetricKind::Counter, "c", &[]))
            .unwrap()
            .id();
        let me = ServiceId::new(1);
        r.inc(me, id, 5).unwrap();
        r.inc(me, id, u64::MAX - 5).unwrap();
        assert_eq!(r.inc(me, id, 1), Err(Status::InvalidArgs));
        assert_eq!(r.get(id).unwrap().value, Value::Counter(u64::MAX));
        assert_eq!(
            r.set(me, id, 1),
            Err(Status::InvalidArgs),
            "a counter cannot be set"
        );
        assert_eq!(
            r.add(me, id, -1),
            Err(Status::InvalidArgs),
            "nor decremented"
        );
        assert_eq!(
            r.inc(ServiceId::new(2), id, 1),
            Err(Status::InvalidArgs),
            "nor touched by another owner"
        );
    }

    #[test]
    fn gauges_set_and_add() {
        let mut r = Registry::new(caps(8, 8, 8));
        let id = r
            .register(&reg(1, MetricKind::Gauge, "g", &[]))
            .unwrap()
            .id();
        let me = ServiceId::new(1);
        r.set(me, id, -7).unwrap();
        r.add(me, id, 10).unwrap();
        assert_eq!(r.get(id).unwrap().value, Value::Gauge(3));
        r.set(me, id, i64::MAX).unwrap();
        assert_eq!(r.add(me, id, 1), Err(Status::InvalidArgs));
        r.set(me, id, 4).unwrap();
        assert_eq!(r.get(id).unwrap().value, Value::Gauge(4), "set replaces");
    }

    #[test]
    fn histograms_accumulate_per_bucket() {
        let mut r = Registry::new(caps(8, 8, 8));
        let mut g = reg(1, MetricKind::Histogram, "h", &[]);
        g.buckets = Some(Buckets::new(&[10, 100]).unwrap());
        let id = r.register(&g).unwrap().id();
        let me = ServiceId::new(1);
        r.observe(me, id, &[1, 2, 3], 500).unwrap();
        r.observe(me, id, &[0, 1, 0], 50).unwrap();
        assert_eq!(
            r.get(id).unwrap().value,
            Value::Histogram {
                counts: alloc::vec![1, 3, 3],
                sum: 550,
                count: 7
            }
        );
        assert_eq!(
            r.observe(me, id, &[1, 1], 1),
            Err(Status::InvalidArgs),
            "layout mismatch"
        );
        let mut other = g.clone();
        other.buckets = Some(Buckets::new(&[5]).unwrap());
        assert_eq!(
            r.register(&other),
            Err(Status::InvalidArgs),
            "bucket conflict"
        );
    }

    #[test]
    fn caps_refuse_and_count_overflow_without_evicting() {
        let mut r = Registry::new(caps(2, 3, 4));
        for v in ["a", "b"] {
            r.register(&reg(1, MetricKind::Counter, "m", &[("k", v)]))
                .unwrap();
        }
        assert_eq!(
            r.register(&reg(1, MetricKind::Counter, "m", &[("k", "c")])),
            Err(Status::OverLimit)
        );
        let of: Vec<_> = r
            .overflow()
            .map(|((o, n), c)| (o.get(), n.as_str().to_string(), *c))
            .collect();
        assert_eq!(of, [(1, "m".to_string(), 1)]);
        r.register(&reg(1, MetricKind::Counter, "n", &[])).unwrap();
        assert_eq!(
            r.register(&reg(1, MetricKind::Counter, "o", &[])),
            Err(Status::OverLimit),
            "per sender"
        );
        r.register(&reg(2, MetricKind::Counter, "m", &[])).unwrap();
        assert_eq!(
            r.register(&reg(3, MetricKind::Counter, "m", &[])),
            Err(Status::OverLimit),
            "global"
        );
        assert_eq!(r.len(), 4);
        assert_eq!(r.overflow_total(), 3);
        // Every refusal is in a per-(owner, metric) series, new names too.
        let sum: u64 = r.overflow().map(|(_, c)| *c).sum();
        assert_eq!(sum, r.overflow_total());
        // Every refusal is in a per-(owner, metric) series, new names too.
        let sum: u64 = r.overflow().map(|(_, c)| *c).sum();
        assert_eq!(sum, r.overflow_total());
        // Existing series are still served at the cap.
        assert!(r
            .register(&reg(1, MetricKind::Counter, "m", &[("k", "a")]))
            .is_ok());
    }
}

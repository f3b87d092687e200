//! The series registry: deduplicated by (owner, name, sorted labels), with
//! per-metric, per-sender and global caps.
//!
//! Invariants:
//! * every series belongs to exactly one family, keyed `(owner, name)`,
//!   and a family has one kind (and, for histograms, one bucket layout);
//! * `series.len() <= max_series_global`, each owner holds at most
//!   `max_series_per_sender`, each family at most `max_series_per_metric`;
//! * a registration beyond a cap is refused with `over_limit` and counted
//!   in its family's `overflow` (exported as
//!   `metricsd_series_overflow_total{metric, owner}`) — live series are
//!   never evicted to make room;
//! * series ids are assigned 1, 2, 3, … and never reused.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use nexus_bounds::LruMap;
use nexus_ipc::ServiceId;
use nexus_metrics::proto::Status;
use nexus_metrics::{Buckets, Labels, MetricKind, MetricName};

use crate::config::Cardinality;

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
    /// The registering sender (transport identity).
    pub owner: ServiceId,
    /// Family name.
    pub name: MetricName,
    /// Labels.
    pub labels: Labels,
    /// Value.
    pub value: Value,
}

/// One metric of one owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// Kind.
    pub kind: MetricKind,
    /// Histogram layout.
    pub buckets: Option<Buckets>,
    /// Labels to series id.
    pub series: BTreeMap<Labels, u32>,
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

/// The registry.
#[derive(Debug, Clone)]
pub struct Registry {
    caps: Cardinality,
    families: BTreeMap<(ServiceId, MetricName), Family>,
    series: BTreeMap<u32, Series>,
    per_owner: BTreeMap<ServiceId, u32>,
    next_id: u32,
    overflow_total: u64,
    overflow: LruMap<(ServiceId, MetricName), u64>,
}

impl Registry {
    /// An empty registry.
    pub fn new(caps: Cardinality) -> Self {
        Self {
            caps,
            families: BTreeMap::new(),
            series: BTreeMap::new(),
            per_owner: BTreeMap::new(),
            next_id: 1,
            overflow_total: 0,
            overflow: LruMap::new(MAX_OVERFLOW_SERIES),
        }
    }

    /// Registers (or finds) a series. `invalid_args` for a kind or bucket
    /// conflict with the family; `over_limit` beyond a cap.
    pub fn register(&mut self, r: &Registration) -> Result<Registered, Status> {
        self.register_as(r, None)
    }

    /// Replays a registration with its original id (from the WAL). Ids must
    /// not collide; later fresh ids continue after the largest seen.
    pub fn restore(&mut self, r: &Registration, id: u32) -> Result<Registered, Status> {
        if id == 0 || self.series.contains_key(&id) {
            return Err(Status::InvalidArgs);
        }
        self.register_as(r, Some(id))
    }

    fn register_as(&mut self, r: &Registration, fixed: Option<u32>) -> Result<Registered, Status> {
        let key = (r.owner, r.name.clone());
        if let Some(f) = self.families.get(&key) {
            if f.kind != r.kind || f.buckets != r.buckets {
                return Err(Status::InvalidArgs);
            }
            if let Some(id) = f.series.get(&r.labels) {
                return Ok(Registered::Existing(*id));
            }
        }
        let owner_count = self.per_owner.get(&r.owner).copied().unwrap_or(0);
        let family_count = self.families.get(&key).map_or(0, |f| f.series.len());
        let over = family_count >= self.caps.max_series_per_metric as usize
            || owner_count >= self.caps.max_series_per_sender
            || self.series.len() >= self.caps.max_series_global as usize;
        if over {
            self.overflow_total += 1;
            let (n, _) = self.overflow.get_or_insert_with(key, || 0);
            *n += 1;
            return Err(Status::OverLimit);
        }
        let id = match fixed {
            Some(id) => id,
            None => self.next_id,
        };
        let next = id.checked_add(1).ok_or(Status::OverLimit)?;
        self.next_id = self.next_id.max(next);
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
        let fam = self.families.entry(key).or_insert_with(|| Family {
            kind: r.kind,
            buckets: r.buckets.clone(),
            series: BTreeMap::new(),
        });
        fam.series.insert(r.labels.clone(), id);
        self.series.insert(
            id,
            Series {
                owner: r.owner,
                name: r.name.clone(),
                labels: r.labels.clone(),
                value,
            },
        );
        *self.per_owner.entry(r.owner).or_insert(0) += 1;
        Ok(Registered::New(id))
    }

    fn owned(&mut self, owner: ServiceId, id: u32) -> Result<&mut Series, Status> {
        match self.series.get_mut(&id) {
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
        self.series.get(&id)
    }

    /// Every series in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Series)> {
        self.series.iter().map(|(id, s)| (*id, s))
    }

    /// Every family in (owner, name) order.
    pub fn families(&self) -> impl Iterator<Item = (&(ServiceId, MetricName), &Family)> {
        self.families.iter()
    }

    /// The family of a series.
    pub fn family(&self, owner: ServiceId, name: &MetricName) -> Option<&Family> {
        self.families.get(&(owner, name.clone()))
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True if there is no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Refused registrations per (owner, metric), for the overflow series.
    pub fn overflow(&self) -> impl Iterator<Item = (&(ServiceId, MetricName), &u64)> {
        self.overflow.iter()
    }

    /// Registrations refused by a cap, in total.
    pub fn overflow_total(&self) -> u64 {
        self.overflow_total
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

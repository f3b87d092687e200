//! metricsd on the state store: registrations, the WAL of raw samples, and
//! closed rollup segments, as entries of a `nexus_store::StateStore`.
//!
//! ```text
//! R  tag 'R' | id u32 | owner u32 | kind u8 | name u8-len | nlabels u8
//!    | (key u8-len, value u8-len)* | nbounds u8 | bound u64*
//! H  tag 'H', then R's layout, then help u8-len   (a registration with help;
//!    one without help is always written as R, byte for byte as before)
//! W  tag 'W' | series u32 | ts_ns u64 | value i64              (21 bytes)
//! S  a rollup segment, `rollup::Segment::encode`                (46 bytes)
//! ```
//!
//! Every entry is crc32-checked by the store; a torn tail is skipped and
//! reported at mount. When the store's active half is full, it is
//! compacted to the live set: every registration, every retained segment,
//! and the raw samples of windows still open (the newest
//! `retention.wal_max_samples`; older ones are dropped and counted). Replay
//! puts registrations back with their ids, segments into retention, and
//! samples into the rollup, which reopens and recloses their windows: a
//! re-closed window yields the identical segment, so replay is idempotent.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use nexus_ipc::ServiceId;
use nexus_metrics::proto::{read_pairs, read_u64s, write_pairs, write_u64s};
use nexus_metrics::{Buckets, Help, Labels, MetricKind, MetricName};
use nexus_store::{BlockDevice, MountReport, StateStore, StoreError};
use nexus_svc::Persist;
use nexus_wire::{Reader, Writer};

use crate::registry::Registration;
use crate::rollup::{Segment, Tier, SEGMENT_TAG};
use crate::server::{Metricsd, Persisted};
use crate::service::MetricsdService;

const REGISTER_TAG: u8 = b'R';
const SAMPLE_TAG: u8 = b'W';
const REGISTER_HELP_TAG: u8 = b'H';

/// Encodes one persisted item.
pub fn encode(p: &Persisted) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    let mut w = Writer::new(&mut out);
    match p {
        Persisted::Register(id, r) => {
            let tag = if r.help.is_empty() {
                REGISTER_TAG
            } else {
                REGISTER_HELP_TAG
            };
            w.u8(tag)
                .u32(*id)
                .u32(r.owner.get())
                .u8(r.kind.as_u8())
                .str_u8(r.name.as_str());
            let labels: Vec<(&str, &str)> = r.labels.iter().collect();
            write_pairs(&mut w, labels.iter().copied());
            write_u64s(&mut w, r.buckets.as_ref().map_or(&[][..], |b| b.bounds()));
            if !r.help.is_empty() {
                w.str_u8(r.help.as_str());
            }
        }
        Persisted::Sample {
            series,
            ts_ns,
            value,
        } => {
            w.u8(SAMPLE_TAG).u32(*series).u64(*ts_ns).i64(*value);
        }
        Persisted::Segment(s) => s.write(&mut w),
    }
    // Names, labels and bounds are validated newtypes, far inside their
    // prefixes (64-byte names, 8 labels, 16 bounds): cannot fail.
    let _ = w.finish();
    out
}

/// Decodes one entry; `None` for anything malformed. Never panics.
pub fn decode(bytes: &[u8]) -> Option<Persisted> {
    let mut r = Reader::new(bytes);
    let p = match r.u8().ok()? {
        SEGMENT_TAG => return Segment::decode(bytes).map(Persisted::Segment),
        SAMPLE_TAG => Persisted::Sample {
            series: r.u32().ok()?,
            ts_ns: r.u64().ok()?,
            value: r.i64().ok()?,
        },
        tag @ (REGISTER_TAG | REGISTER_HELP_TAG) => {
            let id = r.u32().ok()?;
            let owner = ServiceId::new(r.u32().ok()?);
            let kind = r.enum_u8(MetricKind::from_u8).ok()?;
            let name = MetricName::new(r.str_u8().ok()?).ok()?;
            let labels = Labels::new(&read_pairs(&mut r).ok()?).ok()?;
            let bounds = read_u64s(&mut r).ok()?;
            // A histogram always has a layout (no bound: `+Inf` only).
            let buckets = if bounds.is_empty() && kind != MetricKind::Histogram {
                None
            } else {
                Some(Buckets::new(&bounds).ok()?)
            };
            let help = if tag == REGISTER_HELP_TAG {
                Help::new(r.str_u8().ok()?).ok()?
            } else {
                Help::default()
            };
            Persisted::Register(
                id,
                Registration {
                    owner,
                    kind,
                    name,
                    labels,
                    buckets,
                    help,
                },
            )
        }
        _ => return None,
    };
    r.finish().ok()?;
    Some(p)
}

/// What opening the store found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// The store's report (boot counter, torn tail, …).
    pub mount: MountReport,
    /// Registrations restored.
    pub series: u64,
    /// Segments restored.
    pub segments: u64,
    /// Samples replayed into the rollup.
    pub samples: u64,
    /// Entries skipped (undecodable, or refused on replay).
    pub skipped: u64,
}

/// Counters of the persistence path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PersistStats {
    /// Entries appended.
    pub written: u64,
    /// Compactions.
    pub compactions: u64,
    /// Entries that could not be written.
    pub failed: u64,
    /// Raw samples dropped from the compaction set (beyond `wal_max_samples`).
    pub wal_dropped: u64,
}

/// metricsd's persistence.
#[derive(Debug)]
pub struct MetricsStore<D: BlockDevice> {
    store: StateStore<D>,
    recent: VecDeque<(u32, u64, i64)>,
    max_recent: usize,
    stats: PersistStats,
}

impl<D: BlockDevice> MetricsStore<D> {
    /// Mounts the store on `dev` and replays it into `m`.
    pub fn open(dev: D, m: &mut Metricsd) -> Result<(Self, Replayed), StoreError<D::Error>> {
        let (store, mount, entries) = StateStore::mount(dev)?;
        let mut rep = Replayed {
            mount,
            series: 0,
            segments: 0,
            samples: 0,
            skipped: 0,
        };
        let mut me = Self {
            store,
            recent: VecDeque::new(),
            max_recent: m.config().retention.wal_max_samples as usize,
            stats: PersistStats::default(),
        };
        // Registrations first, then segments (which tell the rollup which
        // windows are already closed), then the WAL samples.
        let decoded: Vec<Option<Persisted>> = entries.iter().map(|e| decode(e)).collect();
        let mut segments = Vec::new();
        for p in &decoded {
            match p {
                Some(Persisted::Register(id, r)) if m.replay_register(*id, r) => rep.series += 1,
                Some(Persisted::Register(..)) | None => rep.skipped += 1,
                Some(Persisted::Segment(s)) => segments.push(*s),
                Some(Persisted::Sample { .. }) => {}
            }
        }
        rep.segments = segments.len() as u64;
        m.replay_segments(&segments);
        for p in &decoded {
            if let Some(Persisted::Sample {
                series,
                ts_ns,
                value,
            }) = p
            {
                m.replay_sample(*series, *ts_ns, *value);
                me.remember(*series, *ts_ns, *value);
                rep.samples += 1;
            }
        }
        Ok((me, rep))
    }

    fn remember(&mut self, series: u32, ts_ns: u64, value: i64) {
        if self.recent.len() >= self.max_recent {
            self.recent.pop_front();
            self.stats.wal_dropped += 1;
        }
        self.recent.push_back((series, ts_ns, value));
    }

    /// Appends what `m` produced since the last call; compacts when full.
    /// Returns how many items there were.
    pub fn write(&mut self, m: &mut Metricsd) -> usize {
        let items = m.drain_persisted();
        let n = items.len();
        for p in items {
            if let Persisted::Sample {
                series,
                ts_ns,
                value,
            } = p
            {
                self.remember(series, ts_ns, value);
            }
            match self.store.append(&encode(&p)) {
                Ok(()) => self.stats.written += 1,
                Err(StoreError::Full) => self.compact(m),
                Err(_) => self.stats.failed += 1,
            }
        }
        n
    }

    /// Rewrites the store with the live set of `m`.
    fn compact(&mut self, m: &Metricsd) {
        let open_from = self
            .recent
            .back()
            .map_or(0, |(_, ts, _)| Tier::S60.window_start(*ts));
        self.recent.retain(|(_, ts, _)| *ts >= open_from);
        let mut live: Vec<Vec<u8>> = Vec::new();
        for (id, s) in m.registry().iter() {
            let Some(fam) = m.registry().family(&s.name) else {
                continue;
            };
            live.push(encode(&Persisted::Register(
                id,
                Registration {
                    owner: s.owner,
                    kind: fam.kind,
                    name: s.name.clone(),
                    labels: s.labels.clone(),
                    buckets: fam.buckets.clone(),
                    help: fam.help.clone(),
                },
            )));
        }
        for seg in m.retention().iter() {
            live.push(encode(&Persisted::Segment(*seg)));
        }
        for (series, ts_ns, value) in &self.recent {
            live.push(encode(&Persisted::Sample {
                series: *series,
                ts_ns: *ts_ns,
                value: *value,
            }));
        }
        match self.store.compact(live.iter().map(Vec::as_slice)) {
            Ok(()) => self.stats.compactions += 1,
            Err(_) => self.stats.failed += 1,
        }
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> Result<(), StoreError<D::Error>> {
        self.store.flush()
    }

    /// Counters.
    pub fn stats(&self) -> PersistStats {
        self.stats
    }

    /// The device back (tests reopen it to simulate a reboot).
    pub fn into_device(self) -> D {
        self.store.into_device()
    }
}

impl<D: BlockDevice> Persist<MetricsdService> for MetricsStore<D> {
    fn save(&mut self, svc: &mut MetricsdService) -> u32 {
        u32::try_from(MetricsStore::write(self, &mut svc.core)).unwrap_or(u32::MAX)
    }
    fn flush(&mut self) -> bool {
        MetricsStore::flush(self).is_ok()
    }
}

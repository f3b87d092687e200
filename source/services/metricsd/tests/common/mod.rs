//! Helpers shared by the metricsd suites.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use metricsd::{Config, Metricsd};
use nexus_ipc::ServiceId;
use nexus_metrics::proto::{self, BatchResult, Entry, MetricsStats, Register, Reply, Status};

pub const SEC: u64 = 1_000_000_000;

pub fn sid(n: u32) -> ServiceId {
    ServiceId::new(n)
}

pub fn unlimited(mut cfg: Config) -> Config {
    cfg.rate.events_per_sec = u32::MAX / 2;
    cfg.rate.events_burst = u32::MAX / 2;
    cfg.rate.bytes_per_sec = u32::MAX / 2;
    cfg.rate.bytes_burst = u32::MAX / 2;
    cfg
}

pub fn md(cfg: Config) -> Metricsd {
    Metricsd::new(cfg).unwrap()
}

pub fn call(m: &mut Metricsd, now: u64, s: ServiceId, frame: &[u8]) -> Reply {
    let h = m.handle(now, s, frame);
    proto::decode_reply(&h.reply.expect("a reply")).unwrap().1
}

pub fn register(
    m: &mut Metricsd,
    now: u64,
    s: ServiceId,
    kind: u8,
    name: &str,
    labels: &[(&str, &str)],
    bounds: &[u64],
) -> Result<u32, Status> {
    let frame = proto::encode_register(
        1,
        &Register {
            kind,
            name,
            labels: labels.to_vec(),
            bounds: bounds.to_vec(),
            help: "",
        },
    )
    .unwrap();
    match call(m, now, s, &frame) {
        Reply::Registered(id) => Ok(id),
        Reply::Rejected(st) => Err(st),
        other => panic!("unexpected {other:?}"),
    }
}

pub fn batch(
    m: &mut Metricsd,
    now: u64,
    s: ServiceId,
    entries: &[Entry<'_>],
) -> Result<BatchResult, Status> {
    match call(m, now, s, &proto::encode_batch(2, false, entries).unwrap()) {
        Reply::Batch(b) => Ok(b),
        Reply::Rejected(st) => Err(st),
        other => panic!("unexpected {other:?}"),
    }
}

pub fn stats(m: &mut Metricsd, s: ServiceId) -> MetricsStats {
    match call(m, 0, s, &proto::encode_stats(3)) {
        Reply::Stats(st) => st,
        other => panic!("unexpected {other:?}"),
    }
}

pub fn one_reject(r: Result<BatchResult, Status>) -> Status {
    let b = r.unwrap();
    assert_eq!((b.accepted, b.rejected), (0, 1), "{b:?}");
    b.first_reject
}

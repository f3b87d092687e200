//! Remote observability on the host: node A runs busd, logd and metricsd
//! (serving `obs.logs` and `obs.metrics`); node B runs busd and the
//! collector. Two in-process buses, two busd over loopback TCP, every
//! service in the generic shell on its own thread.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg(feature = "testkit")]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use busd::testkit::{config as busd_config, free_port, id_of, key, Node, WallClock, TIMEOUT};
use nexus_bounds::Clock;
use nexus_bus::DeviceId;
use nexus_ipc::host::HostEndpoint;
use nexus_ipc::Endpoint;
use nexus_log::{Fields, Level, LogdClient};
use nexus_metrics::{Metrics, MetricsConfig};
use nexus_remote::logs::keep;
use nexus_svc::{InMemory, Links};
use obsscraped::query::{self, LogsQuery, Reply, Request};
use obsscraped::storage::MemStorage;
use obsscraped::testkit::*;
use obsscraped::Collector;

fn append(c: &mut LogdClient<HostEndpoint>, n: u32, level: Level) -> Vec<(u64, Level)> {
    (0..n)
        .map(|i| {
            let f = Fields::parse(&format!("seq={i}\n")).unwrap();
            (c.append(level, "app", "remote record", &f).unwrap(), level)
        })
        .collect()
}

#[test]
fn logs_are_sampled_deterministically_and_resume_exactly_after_a_dropped_session() {
    let mut w = world(500_000, 100_000);
    let mut app = LogdClient::new(w.a.bus.endpoint("app").unwrap(), w.logd_a, TIMEOUT);
    let mut ids = append(&mut app, 200, Level::Info);
    ids.extend(append(&mut app, 20, Level::Error));
    let mut q = w.b.bus.endpoint("query").unwrap();
    wait_for("220 records on B", || {
        stats(&mut q, w.collector).records_received >= 220
    });
    let raw = u64::from_be_bytes(w.id_a.0);
    let expect_kept = ids
        .iter()
        .filter(|(id, lvl)| keep(raw, *id, *lvl, 500_000, true))
        .count() as u64;
    let s = stats(&mut q, w.collector);
    assert_eq!(s.records_received, 220);
    assert_eq!(s.records_kept, expect_kept);
    assert!(
        (20 + 60..220).contains(&expect_kept),
        "sampling reduces volume: {expect_kept}"
    );
    assert_eq!(s.records_kept + s.records_sampled_out, 220);
    // Every error record is kept.
    let Reply::Logs { lines, .. } = ask(
        &mut q,
        w.collector,
        &Request::Logs(LogsQuery {
            min_level: Level::Error.as_u8(),
            max: 256,
            ..LogsQuery::default()
        }),
    ) else {
        panic!()
    };
    assert_eq!(lines.len(), 20);

    // B drops the session; busd redials; the collector resumes.
    let mut control = w.b.control();
    control.drop_peer(w.id_a).unwrap();
    ids.extend(append(&mut app, 50, Level::Info));
    wait_for("270 records on B", || {
        stats(&mut q, w.collector).records_received >= 270
    });
    std::thread::sleep(Duration::from_millis(100));
    let s = stats(&mut q, w.collector);
    assert_eq!(s.records_received, 270, "exactly once across the reconnect");
    assert_eq!(s.disconnects, 0, "no duplicate or out-of-order id");
    assert!(s.connects >= 3, "logs twice and metrics: {}", s.connects);
    assert_eq!(s.records_missing, 0);
}

#[test]
fn the_rate_limit_holds_the_peer_back_without_loss() {
    let w = world(1_000_000, 200);
    let mut app = LogdClient::new(w.a.bus.endpoint("app").unwrap(), w.logd_a, TIMEOUT);
    append(&mut app, 600, Level::Info);
    let mut q = w.b.bus.endpoint("query").unwrap();
    wait_for("the first records", || {
        stats(&mut q, w.collector).records_received > 0
    });
    let early = stats(&mut q, w.collector);
    // 200/s with a burst of 200: far from all 600 right away.
    assert!(early.records_received < 600, "{early:?}");
    wait_for("all 600", || {
        stats(&mut q, w.collector).records_received >= 600
    });
    let s = stats(&mut q, w.collector);
    assert_eq!(s.records_received, 600);
    // The bucket held the peer back (no wall-clock assertion: the
    // machine's load decides how long the appends themselves take).
    assert!(s.throttled > 0);
}

#[test]
fn metrics_arrive_as_deltas_and_equal_the_peers_values() {
    let w = world(1_000_000, 100_000);
    let clock = WallClock::new();
    let mut m = Metrics::new(
        w.a.bus.endpoint("app-m").unwrap(),
        w.metricsd_a,
        clock,
        MetricsConfig {
            timeout_ns: TIMEOUT,
            ..MetricsConfig::default()
        },
    );
    let c = m
        .counter("remote_requests_total", &[("route", "/x")])
        .unwrap();
    c.add(42);
    let g = m.gauge("remote_temperature", &[]).unwrap();
    g.set(-7);
    let h = m.histogram("remote_latency_us", &[], &[10, 100]).unwrap();
    for v in [5, 50, 500] {
        h.observe(v);
    }
    m.flush_sync().unwrap();
    let mut q = w.b.bus.endpoint("query").unwrap();
    let find = |q: &mut HostEndpoint, name: &str| -> Option<query::SeriesValue> {
        match ask(
            q,
            w.collector,
            &Request::Metrics {
                peer: w.id_a.0,
                prefix: name,
            },
        ) {
            Reply::Metrics(list) => list.into_iter().find(|s| s.name == name),
            _ => None,
        }
    };
    wait_for("the counter at 42", || {
        find(&mut q, "remote_requests_total").is_some_and(|s| s.value == 42)
    });
    wait_for("the gauge", || {
        find(&mut q, "remote_temperature").is_some_and(|s| s.value == -7)
    });
    wait_for("the histogram", || {
        find(&mut q, "remote_latency_us").is_some_and(|s| (s.sum, s.count) == (555, 3))
    });
    let counter = find(&mut q, "remote_requests_total").unwrap();
    assert!(
        counter.labels.contains("route=\"/x\""),
        "{}",
        counter.labels
    );
    // A later change arrives as a delta.
    c.add(8);
    m.flush_sync().unwrap();
    wait_for("the counter at 50", || {
        find(&mut q, "remote_requests_total").is_some_and(|s| s.value == 50)
    });
    let scrape = m.scrape(64).unwrap();
    assert!(
        scrape
            .lines()
            .any(|l| l.starts_with("remote_requests_total{") && l.ends_with(" 50")),
        "A's own scrape agrees"
    );
}

#[test]
fn a_peer_missing_from_busd_is_never_connected() {
    // The collector lists a device busd does not know: OPEN is refused at
    // once, again and again, and nothing is ever connected.
    let (ka, pa) = (key(1), free_port());
    let a = Node::start(ka, busd_config(pa, &[(ka, pa, STREAMS)], 8));
    let stop = Arc::new(AtomicBool::new(false));
    let c_ep = a.bus.endpoint("obsscraped").unwrap();
    let collector = c_ep.id();
    let mut links = Links::new();
    links.insert("busd", a.busd);
    let col = Collector::new(
        collector_config(DeviceId([9; 8]), 1_000_000, 1000),
        MemStorage::new(),
        0,
    );
    let t = spawn(c_ep, col, InMemory, links, &stop);
    let mut q = a.bus.endpoint("query").unwrap();
    wait_for("refusals", || stats(&mut q, collector).open_refused >= 2);
    assert_eq!(stats(&mut q, collector).connects, 0);
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    let _ = WallClock::new().now_ns();
}

#[test]
fn segments_rotate_into_files_on_size_and_time_and_are_dropped_by_budget() {
    use obsscraped::files::FileStorage;
    use obsscraped::rotate::{Budget, Kind, Rotator, Storage};
    let dir = std::env::temp_dir().join(format!("obsscraped-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut st = FileStorage::new(&dir).unwrap();
    let budget = Budget {
        segment_bytes: 100,
        segment_secs: 60,
        retention_secs: 0,
        max_bytes: 250,
    };
    let mut rot = Rotator::new(budget);
    const S: u64 = 1_000_000_000;
    let line = [b'x'; 39];
    // 40 bytes a line: 2 per segment by size; a minute later by time.
    for (i, t) in [0, 1, 2, 3, 70, 71, 72, 73].iter().enumerate() {
        let plan = rot.write(t * S, 40).unwrap();
        if let Some(idx) = plan.open {
            assert!(st.open(Kind::Logs, idx));
        }
        for d in plan.delete {
            assert!(st.delete(Kind::Logs, d), "delete {d} at line {i}");
        }
        assert!(st.append(Kind::Logs, &line));
    }
    let found: Vec<u64> = st.found(Kind::Logs).iter().map(|s| s.index).collect();
    let kept: Vec<u64> = rot.segments().map(|s| s.index).collect();
    assert_eq!(found, kept, "the files are exactly the rotator's segments");
    assert_eq!(kept, [2, 3, 4]);
    for s in st.found(Kind::Logs) {
        assert_eq!(s.bytes, 80);
    }
    // A restart resumes numbering after the files found.
    let resumed = Rotator::resume(budget, st.found(Kind::Logs));
    assert_eq!(resumed.segments().last().unwrap().index, 4);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_hostile_peers_malformed_frames_disconnect_it_with_a_reason() {
    // Node A runs no logd: a fake one (a busd client) answers obs.logs
    // with a frame that is not a HEADER, then with garbage.
    let (ka, kb) = (key(1), key(2));
    let (pa, pb) = (free_port(), free_port());
    let peers = [(ka, pa, STREAMS), (kb, pb, STREAMS)];
    let a = Node::start(ka, busd_config(pa, &peers, 8));
    let b = Node::start(kb, busd_config(pb, &peers, 8));
    let stop = Arc::new(AtomicBool::new(false));
    let c_ep = b.bus.endpoint("obsscraped").unwrap();
    let collector = c_ep.id();
    let mut links = Links::new();
    links.insert("busd", b.busd);
    let col = Collector::new(
        collector_config(id_of(ka), 1_000_000, 100_000),
        MemStorage::new(),
        0,
    );
    let t = spawn(c_ep, col, InMemory, links, &stop);
    let mut fake = a.client("fake-logd");
    fake.listen("obs.logs").unwrap();
    let mut served = 0;
    let t0 = Instant::now();
    while served < 2 && t0.elapsed() < Duration::from_secs(20) {
        if let Some(nexus_bus::proto::BusEvent::Incoming { handle, .. }) =
            fake.next_event(10_000_000)
        {
            let junk: Vec<u8> = if served == 0 {
                // A well-framed OPEN where a HEADER must come.
                let open = nexus_remote::logs::encode_open(&nexus_remote::logs::Open {
                    resume_after: 0,
                    max_records_per_chunk: 1,
                })
                .unwrap();
                nexus_remote::frame::frame(&open).unwrap()
            } else {
                // A length prefix over the frame limit.
                vec![0xff, 0xff, 0xff, 0x7f, 1, 2, 3]
            };
            let _ = fake.send(handle, &junk);
            served += 1;
        }
    }
    assert_eq!(
        served, 2,
        "the collector came back after the first disconnect"
    );
    let mut q = b.bus.endpoint("query").unwrap();
    wait_for("two disconnects", || {
        stats(&mut q, collector).disconnects >= 2
    });
    let s = stats(&mut q, collector);
    assert_eq!(s.records_received, 0);
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
}

#[test]
fn segments_on_a_region_survive_a_reboot_and_deletion_compacts_them() {
    use obsscraped::region::RegionStorage;
    use obsscraped::rotate::{Kind, Storage};
    let mut disk = nexus_store::MemDisk::new(64);
    {
        let (mut st, found) = RegionStorage::open(&mut disk).unwrap();
        assert!(found.is_empty());
        assert!(st.open(Kind::Logs, 1));
        assert!(st.append(Kind::Logs, b"{\"a\":1}"));
        assert!(st.open(Kind::Logs, 2));
        assert!(st.append(Kind::Logs, b"{\"b\":2}"));
        assert!(st.open(Kind::Metrics, 1));
        assert!(st.append(Kind::Metrics, b"{\"m\":3}"));
        assert!(st.delete(Kind::Logs, 1));
        assert!(st.flush());
        assert_eq!(st.failed, 0);
    }
    // "Reboot": the segments come back, the deleted one does not.
    let (st, found) = RegionStorage::open(&mut disk).unwrap();
    let kinds: Vec<(Kind, u64)> = found.iter().map(|(k, s)| (*k, s.index)).collect();
    assert_eq!(kinds, [(Kind::Logs, 2), (Kind::Metrics, 1)]);
    assert_eq!(st.mem().segment(Kind::Logs, 2).unwrap(), b"{\"b\":2}\n");
    assert_eq!(st.mem().segment(Kind::Metrics, 1).unwrap(), b"{\"m\":3}\n");
    assert!(st.mem().segment(Kind::Logs, 1).is_none());
}

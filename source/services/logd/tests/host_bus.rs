//! End to end over the in-process bus: logd in a thread, clients with
//! transport-stamped identities, the best-effort sink, and correlation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg(feature = "std")]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use logd::{Config, Logd, LogdService};
use nexus_bounds::ManualClock;
use nexus_ipc::host::HostBus;
use nexus_ipc::router::RouterConfig;
use nexus_ipc::Endpoint;
use nexus_log::proto::{self, QueryRequest, Status};
use nexus_log::{info, warn, ClientError, Fields, Level, LogdClient, LogdSink};
use nexus_svc::host::serve;
use nexus_svc::{InMemory, Links, Shell};

const TIMEOUT: u64 = 5_000_000_000;

struct Running {
    bus: HostBus,
    reader: Option<nexus_ipc::host::HostEndpoint>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn start(cfg: Config, queue_depth: usize) -> Running {
    let bus = HostBus::new(RouterConfig {
        queue_depth,
        ..RouterConfig::default()
    });
    let mut ep = bus.endpoint("logd").unwrap();
    let reader = bus.endpoint("logd-reader").unwrap();
    let reader_id = reader.id();
    let logd = Logd::new(cfg, RouterConfig::default().max_frame_bytes, [reader_id]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        let clock = ManualClock::new(1_000);
        let mut shell = Shell::new(LogdService::new(logd), InMemory, Links::new());
        serve(&mut shell, &mut ep, &clock, &s2, 1_000_000, &mut |_| {});
    });
    Running {
        bus,
        reader: Some(reader),
        stop,
        thread: Some(thread),
    }
}

#[test]
fn clients_append_and_query_with_stamped_identity() {
    let run = start(Config::default(), 256);
    let logd = run.bus.lookup("logd").unwrap();
    let mut a = LogdClient::new(run.bus.endpoint("app-a").unwrap(), logd, TIMEOUT);
    let mut b = LogdClient::new(run.bus.endpoint("app-b").unwrap(), logd, TIMEOUT);
    let f = Fields::parse("k=v\n").unwrap();
    let id1 = a.append(Level::Info, "a", "hello from a", &f).unwrap();
    let id2 = b
        .append(Level::Warn, "b", "hello from b", &Fields::empty())
        .unwrap();
    assert_eq!((id1, id2), (1, 2));
    let page = a.query(&QueryRequest::all(10)).unwrap();
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.records[0].sender, a.endpoint().id());
    assert_eq!(page.records[0].fields.get("k"), Some("v"));
    let mut q = QueryRequest::all(10);
    q.sender = Some(b.endpoint().id());
    assert_eq!(a.query(&q), Err(ClientError::Rejected(Status::Denied)));
    let bad = proto::encode_append(
        99,
        false,
        &proto::AppendRequest {
            level: 2,
            target: "t",
            message: "m",
            fields: "service_id=1\n",
        },
    )
    .unwrap();
    assert_eq!(
        a.call_raw(99, &bad),
        Ok(proto::Reply::Rejected(Status::InvalidArgs))
    );
    assert_eq!(a.stats().unwrap().identity_spoofs, 1);
}

#[test]
fn sink_is_best_effort_and_macros_reach_logd() {
    let mut run = start(Config::default(), 256);
    let logd = run.bus.lookup("logd").unwrap();
    let mut sink = LogdSink::new(run.bus.endpoint("app").unwrap(), logd, Level::Info);
    let app = sink.endpoint().id();
    info!(sink, "started {} workers", 4; workers = 4, "net.port" = 8080);
    warn!(sink, target: "disk", "slow write"; ms = 120, err = "a\nb");
    nexus_log::debug!(sink, "filtered out");
    nexus_log::error!(sink, "bad key"; Upper = 1);
    let s = sink.stats();
    assert_eq!((s.sent, s.dropped_invalid, s.filtered), (2, 1, 0));

    // logd handles its queue in order: the sink's one-way frames were queued
    // before this query, so they are in the journal when it is answered.
    let mut reader = LogdClient::new(run.reader.take().unwrap(), logd, TIMEOUT);
    let mut q = QueryRequest::all(10);
    q.sender = Some(app);
    let page = reader.query(&q).unwrap();
    let got: Vec<_> = page
        .records
        .iter()
        .map(|r| {
            (
                r.level,
                r.target.as_str(),
                r.message.as_str(),
                r.fields.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Level::Info,
                "host_bus",
                "started 4 workers",
                "net.port:i=8080\nworkers:i=4\n"
            ),
            (Level::Warn, "disk", "slow write", "err=a\\nb\nms:i=120\n"),
        ]
    );
    // Typed values went through logd (version 2 frames) and come out of
    // the JSON formatter as numbers; strings stay strings.
    let first = nexus_log::json::record_to_json(&page.records[0]);
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["workers"], serde_json::json!(4));
    assert_eq!(v["net.port"], serde_json::json!(8080));
    let second = nexus_log::json::record_to_json(&page.records[1]);
    let v: serde_json::Value = serde_json::from_str(&second).unwrap();
    assert_eq!(
        (v["ms"].clone(), v["err"].clone()),
        (serde_json::json!(120), serde_json::json!("a\\nb"))
    );
    // Each renders as one valid JSON line with the standard fields.
    for r in &page.records {
        let line = nexus_log::json::record_to_json(r);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["sender"], u64::from(app.get()));
        assert_eq!(v["message"], r.message.as_str());
    }
}

#[test]
fn a_full_logd_queue_drops_sink_events_and_counts_them() {
    // logd is not started: its queue (depth 4) fills and stays full.
    let bus = HostBus::new(RouterConfig {
        queue_depth: 4,
        ..RouterConfig::default()
    });
    let logd = bus.endpoint("logd").unwrap();
    let mut sink = LogdSink::new(bus.endpoint("app").unwrap(), logd.id(), Level::Info);
    for i in 0..10 {
        info!(sink, "n {}", i);
    }
    let s = sink.stats();
    assert_eq!((s.sent, s.dropped_queue_full), (4, 6));
}

#[test]
fn replies_from_strangers_and_stale_nonces_are_dropped_and_counted() {
    let run = start(Config::default(), 256);
    let logd = run.bus.lookup("logd").unwrap();
    let mut stranger = run.bus.endpoint("stranger").unwrap();
    let mut c = LogdClient::new(run.bus.endpoint("client").unwrap(), logd, TIMEOUT);
    let cid = c.endpoint().id();
    // A forged "reply" from a non-logd endpoint, queued before the call.
    let forged = proto::encode_reply(
        &nexus_wire::Header {
            magic: proto::MAGIC,
            version: 1,
            op: proto::op::APPEND,
            nonce: 1,
        },
        &proto::Reply::Appended(12345),
    );
    stranger.send(cid, &forged).unwrap();
    let id = c.append(Level::Info, "t", "m", &Fields::empty()).unwrap();
    assert_eq!(id, 1, "the forged id was ignored");
    assert_eq!(c.unmatched(), 1);
}

//! traced as a host service: a thread shell (`nexus_svc::host::serve`)
//! with the host store. Spans sent over IPC become one completed trace
//! that lands in a JSONL file and, with `[otlp] enabled`, at a local
//! OTLP/HTTP endpoint, decoded with the official protobuf definitions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg(feature = "otlp")]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nexus_bounds::Clock;
use nexus_ipc::host::HostBus;
use nexus_ipc::router::RouterConfig;
use nexus_ipc::Endpoint;
use nexus_svc::host::serve;
use nexus_svc::{Links, Shell};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use traced::config::OtlpConfig;
use traced::files::{FileBounds, JsonlFiles};
use traced::host::HostStore;
use traced::proto;
use traced::{Config, Traced, TracedService};

#[derive(Debug, Clone, Copy)]
struct Wall(std::time::Instant);

impl Clock for Wall {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap()
    }
}

#[test]
fn a_host_traced_writes_completed_traces_to_files_and_otlp() {
    // The OTLP endpoint: 127.0.0.1 only, records every body.
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let addr = server.server_addr().to_ip().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let http = {
        let (server, bodies) = (Arc::clone(&server), Arc::clone(&bodies));
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let mut body = Vec::new();
                req.as_reader().read_to_end(&mut body).unwrap();
                bodies.lock().unwrap().push(body);
                req.respond(tiny_http::Response::from_string("{}")).unwrap();
            }
        })
    };
    let dir = std::env::temp_dir().join(format!("traced-host-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let otlp = OtlpConfig {
        enabled: true,
        endpoint: format!("http://{addr}/v1/traces"),
        ..OtlpConfig::default()
    };
    let cfg = Config {
        idle_timeout_ns: 100_000_000,
        ..Config::default()
    };
    let store = HostStore::files(
        &dir,
        FileBounds {
            max_file_bytes: 1 << 20,
            max_files: 4,
        },
    )
    .unwrap()
    .with_otlp(&otlp)
    .unwrap();

    let bus = HostBus::new(RouterConfig::default());
    let mut ep = bus.endpoint("traced").unwrap();
    let traced_id = ep.id();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let mut svc = TracedService::new(Traced::new(cfg.clone(), 0xab));
    svc.traced.export_completed(cfg.store_queue);
    let shell_thread = std::thread::spawn(move || {
        let mut shell = Shell::new(svc, store, Links::new());
        let clock = Wall(std::time::Instant::now());
        serve(&mut shell, &mut ep, &clock, &stop2, 200_000, &mut |_| {});
        shell
    });

    let mut app = bus.endpoint("app").unwrap();
    let mut batch = proto::SpansFrame::new(0);
    batch
        .push(&common::record(0x77, 1, None, 1_000, 9_000))
        .unwrap();
    batch
        .push(&common::record(0x77, 2, Some(1), 2_000, 3_000))
        .unwrap();
    app.send(traced_id, &batch.finish().unwrap()).unwrap();

    // The file gets the trace's line (bounded wait).
    let mut lines = Vec::new();
    for _ in 0..400 {
        lines = JsonlFiles::list(&dir)
            .unwrap()
            .iter()
            .flat_map(|(_, p)| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        if !lines.is_empty() && !bodies.lock().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(lines.len(), 1, "{lines:?}");
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["trace_id"], format!("{:032x}", 0x77));
    assert_eq!(v["spans"].as_array().unwrap().len(), 2);
    assert_eq!(v["spans"][1]["parent_span_id"], format!("{:016x}", 1));
    assert_eq!(v["spans"][0]["service"], u64::from(app.id().get()));

    // The OTLP request, decoded with the official definitions.
    let body = bodies.lock().unwrap()[0].clone();
    let req: ExportTraceServiceRequest = serde_json::from_slice(&body).unwrap();
    let spans: Vec<_> = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    assert_eq!(spans.len(), 2);
    assert!(spans.iter().all(|s| s.trace_id == {
        let mut t = vec![0u8; 15];
        t.push(0x77);
        t
    }));
    let child = spans.iter().find(|s| s.name == "op2").unwrap();
    assert_eq!(child.parent_span_id, 1u64.to_be_bytes().to_vec());

    stop.store(true, Ordering::Relaxed);
    let mut shell = shell_thread.join().unwrap();
    let st = shell.persist_mut().stats();
    assert_eq!((st.written, st.otlp_queued, st.otlp_dropped), (1, 1, 0));
    let o = shell.persist_mut().finish_otlp().unwrap();
    assert_eq!(o.exported_spans, 2);
    server.unblock();
    http.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

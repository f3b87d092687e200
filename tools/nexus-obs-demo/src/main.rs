//! `make run`: logd on the host, a few senders, rejects, fairness, a query.
//!
//! Usage: `nexus-obs-demo [path/to/logd.toml]` (default: the recipe in the
//! repository).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use logd::host::{load_recipe, SystemClock};
use logd::{Logd, LogdService};
use nexus_ipc::host::HostBus;
use nexus_ipc::router::RouterConfig;
use nexus_ipc::Endpoint;
use nexus_log::proto::{AppendRequest, QueryRequest, Stats};
use nexus_log::{info, json, warn, ClientError, Fields, Level, LogdClient, LogdSink};
use nexus_svc::host::serve;
use nexus_svc::{InMemory, Links, Shell};

const TIMEOUT_NS: u64 = 5_000_000_000;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../recipes/observability/logd.toml"
        )
        .into()
    });
    let mut cfg = load_recipe(std::path::Path::new(&path))?;
    // Small enough that the demo shows eviction and rate limiting quickly.
    cfg.journal.max_records = 32;
    cfg.rate.events_burst = 40;
    cfg.rate.events_per_sec = 10;
    println!("== logd bounds (from {path}, journal and burst lowered for the demo)");
    println!(
        "   journal: {} records / {} bytes; record <= {} bytes; {} events/s per sender (burst {})",
        cfg.journal.max_records,
        cfg.journal.max_bytes,
        cfg.record.max_record_bytes,
        cfg.rate.events_per_sec,
        cfg.rate.events_burst
    );

    let router = RouterConfig::default();
    let bus = HostBus::new(router);
    let mut logd_ep = bus.endpoint("logd").map_err(|e| format!("{e:?}"))?;
    let reader_ep = bus.endpoint("logd-reader").map_err(|e| format!("{e:?}"))?;
    let readers = cfg
        .query
        .readers
        .iter()
        .filter_map(|n| bus.lookup(n))
        .collect::<Vec<_>>();
    let logd = Logd::new(cfg, router.max_frame_bytes, readers).map_err(|e| format!("{e:?}"))?;
    let logd_id = logd_ep.id();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let server = std::thread::spawn(move || {
        let clock = SystemClock::default();
        let mut shell = Shell::new(LogdService::new(logd), InMemory, Links::new());
        serve(
            &mut shell,
            &mut logd_ep,
            &clock,
            &stop2,
            10_000_000,
            &mut |_| {},
        );
    });

    let ep = |name: &str| bus.endpoint(name).map_err(|e| format!("{name}: {e:?}"));
    let mut app = LogdClient::new(ep("app.web")?, logd_id, TIMEOUT_NS);
    let mut quiet = LogdSink::new(ep("app.quiet")?, logd_id, Level::Info);
    let mut spammer = LogdSink::new(ep("app.spammer")?, logd_id, Level::Trace);
    println!(
        "== senders: app.web={} app.quiet={} app.spammer={} (ids stamped by the bus)",
        app.endpoint().id(),
        quiet.endpoint().id(),
        spammer.endpoint().id()
    );

    println!("== appends");
    let f = Fields::parse("method=GET\npath=/index\nstatus=200\n").map_err(|e| e.to_string())?;
    let id = app
        .append(Level::Info, "http", "request served", &f)
        .map_err(|e| e.to_string())?;
    println!("   app.web   APPEND ok id={id}");
    for i in 0..3 {
        info!(quiet, target: "sensor", "reading {}", i; celsius = 20 + i, "unit.id" = "t-1");
    }
    println!(
        "   app.quiet 3 one-way appends via the sink (sent={})",
        quiet.stats().sent
    );

    println!("== hostile appends (each is refused with a status)");
    let show = |what: &str, r: Result<u64, ClientError>| match r {
        Ok(id) => println!("   {what:<34} accepted id={id}"),
        Err(e) => println!("   {what:<34} {e}"),
    };
    let huge = "x".repeat(2000);
    show(
        "message of 2000 bytes",
        app.append(Level::Info, "http", &huge, &Fields::empty()),
    );
    show(
        "fields claiming service_id=1",
        app.append_raw(&AppendRequest {
            level: 2,
            target: "http",
            message: "i am logd",
            fields: "service_id=1\n",
        }),
    );
    show(
        "level byte 9",
        app.append_raw(&AppendRequest {
            level: 9,
            target: "http",
            message: "?",
            fields: "",
        }),
    );

    println!("== app.spammer floods 500 events");
    for i in 0..500 {
        warn!(spammer, "flood {}", i; n = i);
    }
    println!("   sink: {:?}", spammer.stats());

    // The flood filled logd's queue (that is what the sink's
    // dropped_queue_full shows); a reader retries until logd drained it.
    let mut reader = LogdClient::new(reader_ep, logd_id, TIMEOUT_NS);
    let mut tries = 0;
    let all = loop {
        match reader.query_all(&QueryRequest::all(16), 1000) {
            Err(ClientError::Send(nexus_ipc::SendError::QueueFull)) if tries < 200 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other.map_err(|e| e.to_string())?,
        }
    };
    println!(
        "== reader pages through the journal: {} records in {} pages, gap {}",
        all.records.len(),
        all.pages,
        all.gap
    );
    for r in all.records.iter().take(6) {
        println!("{}", json::record_to_json(r));
    }
    if all.records.len() > 6 {
        println!("   … ({} more)", all.records.len() - 6);
    }
    let stats = reader.stats().map_err(|e| e.to_string())?;
    print_stats(&stats);

    stop.store(true, Ordering::Relaxed);
    server
        .join()
        .map_err(|_| "logd thread panicked".to_string())?;
    Ok(())
}

fn print_stats(s: &Stats) {
    println!("== logd STATS");
    println!(
        "   held {} / {} records, {} / {} bytes; appended {}, evicted {}",
        s.records, s.max_records, s.bytes, s.max_bytes, s.appended, s.evicted
    );
    let r = &s.rejects;
    println!(
        "   rejects: malformed {} unsupported {} invalid_args {} over_limit {} rate_limited {} denied {}; identity spoofs {}",
        r.malformed, r.unsupported, r.invalid_args, r.over_limit, r.rate_limited, r.denied, s.identity_spoofs
    );
    for e in &s.senders {
        println!(
            "   {:>7}: {:>3} records {:>6} bytes, {:>3} evicted, {:>3} rejected",
            e.sender.to_string(),
            e.records,
            e.bytes,
            e.evicted,
            e.rejected
        );
    }
}

//! `nexus-obs serve` against a node run on the host: the endpoints, the
//! exposition formats, token ownership, and hostile requests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_nexus-obs");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Setup {
    base: String,
    path: std::path::PathBuf,
    _node: Kill,
    _serve: Kill,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn setup(tag: &str) -> Setup {
    setup_with(tag, "")
}

fn setup_with(tag: &str, extra: &str) -> Setup {
    let (h, a, b, http) = (free_port(), free_port(), free_port(), free_port());
    let mut text = format!(
        "[host]\nname = \"host\"\nsecret = \"{}\"\nport = {h}\n\
         [[node]]\nname = \"node-a\"\nsecret = \"{}\"\nport = {a}\n\
         [[node]]\nname = \"node-b\"\nkey = \"{}\"\nport = {b}\n\
         [[token]]\ntoken = \"all-reader-1\"\nread = [\"*\"]\n\
         [[token]]\ntoken = \"b-only-reader\"\nread = [\"node-b\"]\n\
         [[token]]\ntoken = \"a-logd-reader\"\nread = [\"node-a/1\"]\n",
        "c4".repeat(32),
        "a1".repeat(32),
        // node-b: a public key only (watched, never run here).
        "db48257e1237976a74ad8cfedca00213408fe89ac6251f1b930245f242b5c31a"
    );
    text.push_str(extra);
    let path =
        std::env::temp_dir().join(format!("nexus-obs-serve-{}-{tag}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let spawn = |args: &[&str]| {
        Kill(
            Command::new(BIN)
                .arg("--config")
                .arg(&path)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let node = spawn(&["node", "node-a", "--load", "100ms", "--for", "120s"]);
    let listen = format!("127.0.0.1:{http}");
    let serve = spawn(&["serve", "--listen", &listen, "--for", "120s"]);
    let base = format!("http://{listen}");
    // Ready once /metrics carries the node's demo counter.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = ureq::get(&format!("{base}/metrics")).call() {
            if r.into_string()
                .unwrap()
                .contains("nexus_obs_demo_ticks_total")
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "serve never had the node's series"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Setup {
        base,
        path,
        _node: node,
        _serve: serve,
    }
}

/// (status, content type, body) of a GET.
fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut req = ureq::get(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let r = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{url}: {e}"),
    };
    let (status, ct) = (r.status(), r.content_type().to_string());
    (status, ct, r.into_string().unwrap())
}

#[test]
fn metrics_in_both_formats_with_a_node_label() {
    let s = setup("metrics");
    let (st, ct, body) = get(&format!("{}/metrics", s.base), &[]);
    assert_eq!((st, ct.as_str()), (200, "text/plain"));
    assert!(
        body.contains("# TYPE nexus_obs_demo_ticks_total counter"),
        "{body}"
    );
    let line = body
        .lines()
        .find(|l| l.starts_with("nexus_obs_demo_ticks_total{"))
        .unwrap();
    assert!(
        line.starts_with("nexus_obs_demo_ticks_total{node=\"node-a\",app=\"demo\""),
        "{line}"
    );
    assert!(body.contains("nexus_obs_node_up{node=\"node-a\"} 1"));
    assert!(body.contains("nexus_obs_node_up{node=\"node-b\"} 0"));
    assert!(!body.contains("# EOF"));
    let (st, ct, om) = get(
        &format!("{}/metrics", s.base),
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
    );
    assert_eq!((st, ct.as_str()), (200, "application/openmetrics-text"));
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE nexus_obs_demo_ticks counter"));
    assert!(om.contains("\nnexus_obs_demo_ticks_total{node=\"node-a\",app=\"demo\""));
    let (st, _, h) = get(&format!("{}/healthz", s.base), &[]);
    assert_eq!((st, h.as_str()), (200, "ok\n"));
}

#[test]
fn logs_need_a_token_and_see_only_what_it_may_read() {
    let s = setup("logs");
    let url = format!("{}/v1/logs?tail=5&node=node-a", s.base);
    assert_eq!(get(&url, &[]).0, 401);
    assert_eq!(
        get(&url, &[("Authorization", "Bearer nope-nope-nope")]).0,
        401
    );
    assert_eq!(
        get(&url, &[("Authorization", "Bearer b-only-reader")]).0,
        403
    );
    let (st, ct, body) = get(&url, &[("Authorization", "Bearer all-reader-1")]);
    assert_eq!((st, ct.as_str()), (200, "application/json"));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let logs = v["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 5, "{body}");
    for l in logs {
        assert_eq!(l["node"], "node-a");
        assert!(l["seq"].as_u64().unwrap() > 0);
        assert!(l["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    // The demo app's records among the last 100 (metricsd's snapshot
    // records share the journal).
    let (_, _, body) = get(
        &format!("{}/v1/logs?tail=100&node=node-a", s.base),
        &[("Authorization", "Bearer all-reader-1")],
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let demo: Vec<_> = v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["target"] == "demo")
        .collect();
    assert!(!demo.is_empty(), "{body}");
    for l in demo {
        assert_eq!(l["message"], "tick");
        assert!(l["fields"]["n"].as_u64().is_some());
    }
    // A token for node-a's logd only: the demo app (another service)
    // is not readable with it, so nothing comes back.
    let (st, _, body) = get(&url, &[("Authorization", "Bearer a-logd-reader")]);
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["service"] == 1));
    // Bad parameters: a clear 400.
    for q in ["tail=0", "tail=99999", "since=yesterday", "next_token=abc"] {
        let (st, _, body) = get(
            &format!("{}/v1/logs?{q}", s.base),
            &[("Authorization", "Bearer all-reader-1")],
        );
        assert_eq!(st, 400, "{q}: {body}");
        assert!(body.contains("error"));
    }
    assert_eq!(
        get(
            &format!("{}/v1/logs?node=node-z", s.base),
            &[("Authorization", "Bearer all-reader-1")]
        )
        .0,
        404
    );
}

#[test]
fn a_trace_by_id_with_its_ownership() {
    let s = setup("traces");
    // A trace id from a log record of the demo app.
    let auth = [("Authorization", "Bearer all-reader-1")];
    let deadline = Instant::now() + Duration::from_secs(30);
    let (st, body) = loop {
        let (_, _, logs) = get(&format!("{}/v1/logs?tail=50&node=node-a", s.base), &auth);
        let v: serde_json::Value = serde_json::from_str(&logs).unwrap();
        // The demo app's records carry their trace (metricsd's snapshot
        // records do not).
        let id = v["logs"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|l| l["trace_id"].as_str())
            .unwrap()
            .to_string();
        let (st, _, body) = get(&format!("{}/v1/traces/{id}", s.base), &auth);
        if st == 200 || Instant::now() > deadline {
            break (st, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["spans"].as_array().unwrap().len(), 2);
    let id = v["trace_id"].as_str().unwrap();
    let (st, _, _) = get(
        &format!("{}/v1/traces/{id}", s.base),
        &[("Authorization", "Bearer b-only-reader")],
    );
    assert_eq!(st, 403);
    assert_eq!(get(&format!("{}/v1/traces/{id}", s.base), &[]).0, 401);
    assert_eq!(get(&format!("{}/v1/traces/xyz", s.base), &auth).0, 400);
    assert_eq!(
        get(&format!("{}/v1/traces/{}", s.base, "1".repeat(32)), &auth).0,
        404
    );
}

#[test]
fn test_reject_hostile_requests_and_keep_serving() {
    let s = setup("hostile");
    let addr = s.base.trim_start_matches("http://").to_string();
    let raw = |bytes: &[u8]| {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(bytes).unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        String::from_utf8_lossy(&out).to_string()
    };
    // Garbage, a huge header, a large body, a wrong method.
    let _ = raw(b"\x00\x01\x02 not http\r\n\r\n");
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(20_000)
    );
    let r = raw(big.as_bytes());
    assert!(
        r.starts_with("HTTP/1.1 431") || r.starts_with("HTTP/1.1 400"),
        "{r}"
    );
    let body = "x".repeat(10_000);
    let post = format!(
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert!(raw(post.as_bytes()).starts_with("HTTP/1.1 413"));
    let r = ureq::post(&format!("{}/metrics", s.base)).send_string("x");
    assert!(matches!(r, Err(ureq::Error::Status(405, _))));
    assert_eq!(get(&format!("{}/nope", s.base), &[]).0, 404);
    // Still serving.
    assert_eq!(get(&format!("{}/healthz", s.base), &[]).0, 200);
}

#[test]
fn completed_traces_go_to_an_otlp_endpoint_when_configured() {
    // The OTLP/HTTP endpoint: records every body, answers 200.
    let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let addr = server.server_addr().to_ip().unwrap();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let log_bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let http = {
        let (server, bodies, log_bodies) = (server.clone(), bodies.clone(), log_bodies.clone());
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let mut body = Vec::new();
                req.as_reader().read_to_end(&mut body).unwrap();
                match req.url() {
                    "/v1/logs" => log_bodies.lock().unwrap().push(body),
                    _ => bodies.lock().unwrap().push(body),
                }
                req.respond(tiny_http::Response::from_string("{}")).unwrap();
            }
        })
    };
    let s = setup_with(
        "otlp",
        &format!("[otlp]\nendpoint = \"http://{addr}/v1/traces\"\n"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans: Vec<_> = bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                serde_json::from_slice::<
                    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
                >(b)
                .unwrap()
            })
            .flat_map(|r| r.resource_spans)
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect();
        if spans.iter().any(|s| s.name == "demo.work") || Instant::now() > deadline {
            break spans;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let work = spans
        .iter()
        .find(|s| s.name == "demo.work")
        .expect("demo.work exported");
    let tick = spans
        .iter()
        .find(|s| s.name == "demo.tick" && s.trace_id == work.trace_id)
        .expect("its parent exported with it");
    assert_eq!(work.parent_span_id, tick.span_id);
    // Wall-clock times (a host node): after 2020.
    assert!(tick.start_time_unix_nano > 1_600_000_000_000_000_000);

    // The node's log records, on /v1/logs.
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (resources, records) = loop {
        let reqs: Vec<ExportLogsServiceRequest> = log_bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect();
        let resources: Vec<_> = reqs
            .iter()
            .flat_map(|r| &r.resource_logs)
            .filter_map(|r| r.resource.clone())
            .collect();
        let records: Vec<_> = reqs
            .into_iter()
            .flat_map(|r| r.resource_logs)
            .flat_map(|r| r.scope_logs)
            .flat_map(|s| s.log_records)
            .collect();
        if records.iter().any(|r| !r.trace_id.is_empty()) || Instant::now() > deadline {
            break (resources, records);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let tick_log = records
        .iter()
        .find(|r| !r.trace_id.is_empty())
        .expect("a demo record exported");
    assert!(matches!(
        tick_log.body.as_ref().and_then(|b| b.value.clone()),
        Some(Any::StringValue(m)) if m == "tick"
    ));
    assert!(tick_log.severity_number == 9 || tick_log.severity_number == 13);
    assert_eq!((tick_log.trace_id.len(), tick_log.span_id.len()), (16, 8));
    assert!(tick_log.time_unix_nano > 1_600_000_000_000_000_000);
    assert!(tick_log.attributes.iter().any(|a| a.key == "n"
        && matches!(
            a.value.as_ref().and_then(|v| v.value.clone()),
            Some(Any::IntValue(_))
        )));
    assert!(resources.iter().all(|r| r.attributes.iter().any(|a| a.key == "host.name"
        && matches!(a.value.as_ref().and_then(|v| v.value.clone()), Some(Any::StringValue(n)) if n == "node-a"))));
    drop(s);
    server.unblock();
    http.join().unwrap();
}

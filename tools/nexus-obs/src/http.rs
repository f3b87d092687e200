//! `nexus-obs serve`: the collected data over HTTP on 127.0.0.1 (the
//! server is `tiny_http`; nothing here parses HTTP by hand).
//!
//! | path | answer |
//! |------|--------|
//! | `GET /metrics` | every node's series with a `node` label, plus the host collector's own; Prometheus text 0.0.4, or OpenMetrics 1.0 when the `Accept` header asks for `application/openmetrics-text` |
//! | `GET /v1/logs?tail=&since=&next_token=&node=` | `{"logs":[…],"next_token":"…"}`, bearer token required, filtered to what the token may read |
//! | `GET /v1/traces/{id}` | the completed trace's JSON line (bearer token; every node of the trace must be readable) |
//! | `GET /healthz` | `ok` when the collector and traced answer |
//!
//! Bounds: a request body over [`MAX_BODY`] bytes or headers over
//! [`MAX_HEADER_BYTES`] get 413/431 and nothing else happens; unknown
//! paths 404, other methods 405. Tokens are compared in constant time and
//! never logged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;

use obsscraped::query::{LogsQuery, SeriesValue};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::config::Token;
use crate::render::LogLine;
use crate::viewer::Viewer;

/// Largest request body read.
pub const MAX_BODY: usize = 4096;
/// Largest total size of the request headers.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most log lines in one `/v1/logs` answer.
pub const MAX_TAIL: u16 = obsscraped::query::MAX_LOG_LINES;

/// The help of a node's series (the collector does not carry the node's
/// own help texts).
const NODE_HELP: &str = "A node's series, as its metricsd reports it (collected by nexus-obs).";
const PROM_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One answer: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

fn answer(status: u16, content_type: &'static str, body: impl Into<String>) -> Answer {
    Answer {
        status,
        content_type,
        body: body.into(),
    }
}

fn error(status: u16, why: &str) -> Answer {
    answer(
        status,
        "application/json",
        serde_json::json!({ "error": why }).to_string(),
    )
}

/// Serves until `stop` is set; with `logs`, also exports every node's new
/// records over OTLP about once a second.
pub fn serve(
    viewer: &mut Viewer,
    server: &Server,
    stop: &std::sync::atomic::AtomicBool,
    mut logs: Option<&mut crate::otlp_logs::LogsExport>,
) -> Result<(), String> {
    let nodes = viewer.cluster.nodes.clone();
    // Per node: the highest record id exported.
    let mut exported: Vec<u64> = vec![0; nodes.len()];
    let mut next_export = std::time::Instant::now();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Some(x) = logs.as_deref_mut() {
            if std::time::Instant::now() >= next_export {
                next_export = std::time::Instant::now() + std::time::Duration::from_secs(1);
                for (n, last) in nodes.iter().zip(exported.iter_mut()) {
                    let fresh = new_lines(viewer, n, *last);
                    if let Some(m) = fresh.iter().map(LogLine::id).max() {
                        *last = m;
                        x.push(n, &fresh);
                    }
                }
            }
        }
        let req = match server.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => return Err(format!("http: {e}")),
        };
        respond(viewer, req);
    }
    Ok(())
}

/// Every record of `node` the collector holds with an id above `after`,
/// oldest first.
fn new_lines(viewer: &mut Viewer, node: &crate::config::NodeEntry, after: u64) -> Vec<LogLine> {
    let mut out = Vec::new();
    let mut token = 0;
    loop {
        let Ok((lines, next)) = viewer.logs(LogsQuery {
            peer: node.id.0,
            token,
            max: MAX_TAIL,
            ..LogsQuery::default()
        }) else {
            return out;
        };
        out.extend(
            lines
                .iter()
                .filter_map(|l| LogLine::parse(&node.name, l))
                .filter(|l| l.id() > after),
        );
        if next == 0 {
            out.sort_by_key(LogLine::id);
            return out;
        }
        token = next;
    }
}

fn respond(viewer: &mut Viewer, mut req: Request) {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|h| h.field.as_str().as_str().len() + h.value.as_str().len() + 4)
        .sum();
    let a = if header_bytes > MAX_HEADER_BYTES {
        error(431, "request headers too large")
    } else if req.body_length().unwrap_or(0) > MAX_BODY {
        error(413, "request body too large")
    } else {
        // Read (and drop) a small body so the connection stays usable.
        let mut sink = Vec::new();
        let _ = req
            .as_reader()
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut sink);
        if sink.len() > MAX_BODY {
            error(413, "request body too large")
        } else {
            let header = |name: &'static str| {
                req.headers()
                    .iter()
                    .find(|h| h.field.equiv(name))
                    .map(|h| h.value.as_str().to_string())
            };
            let (accept, auth) = (header("Accept"), header("Authorization"));
            route(
                viewer,
                req.method(),
                req.url(),
                accept.as_deref(),
                auth.as_deref(),
            )
        }
    };
    let mut resp = Response::from_string(a.body).with_status_code(a.status);
    if let Ok(h) = Header::from_bytes("Content-Type", a.content_type) {
        resp = resp.with_header(h);
    }
    let _ = req.respond(resp);
}

/// Decides one request (pure apart from the viewer's queries): the
/// server's whole behaviour, testable without sockets.
pub fn route(
    viewer: &mut Viewer,
    method: &Method,
    url: &str,
    accept: Option<&str>,
    auth: Option<&str>,
) -> Answer {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let params: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if *method != Method::Get {
        return error(405, "only GET is served");
    }
    match path {
        "/healthz" => match (viewer.stats(), viewer.traced_stats()) {
            (Ok(_), Ok(_)) => answer(200, "text/plain; charset=utf-8", "ok\n"),
            (Err(e), _) | (_, Err(e)) => error(503, &e),
        },
        "/metrics" => {
            let open = accept.is_some_and(|a| a.contains("application/openmetrics-text"));
            match exposition(viewer, open) {
                Ok(body) => answer(200, if open { OPENMETRICS } else { PROM_TEXT }, body),
                Err(e) => error(503, &e),
            }
        }
        "/v1/logs" => match token(viewer, auth) {
            Err(a) => a,
            Ok(t) => logs(viewer, &t, &params),
        },
        p if p.starts_with("/v1/traces/") => match token(viewer, auth) {
            Err(a) => a,
            Ok(t) => trace(viewer, &t, p.trim_start_matches("/v1/traces/")),
        },
        _ => error(404, "no such path"),
    }
}

fn token(viewer: &Viewer, auth: Option<&str>) -> Result<Token, Answer> {
    let presented = auth
        .and_then(|a| a.strip_prefix("Bearer "))
        .ok_or_else(|| error(401, "a bearer token is required"))?;
    viewer
        .cluster
        .token(presented.trim())
        .cloned()
        .ok_or_else(|| error(401, "unknown token"))
}

fn logs(viewer: &mut Viewer, t: &Token, params: &BTreeMap<String, String>) -> Answer {
    let tail = match params.get("tail").map(|s| s.parse::<u16>()) {
        None => 100,
        Some(Ok(n)) if (1..=MAX_TAIL).contains(&n) => n,
        Some(_) => return error(400, &format!("tail must be 1..={MAX_TAIL}")),
    };
    let since_ns = match params.get("since") {
        None => 0,
        Some(s) => match crate::time::parse_instant(s) {
            Ok(ns) => ns,
            Err(e) => return error(400, &e),
        },
    };
    let token = match params.get("next_token").map(|s| s.parse::<u64>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return error(400, "next_token is not one this server gave"),
    };
    let nodes: Vec<_> = match params.get("node") {
        Some(n) => match viewer.cluster.node(n) {
            Ok(e) => vec![e.clone()],
            Err(e) => return error(404, &e.0),
        },
        None => viewer.cluster.nodes.clone(),
    };
    if nodes.len() == 1 && nodes.iter().all(|n| !t.allows_node(&n.name)) {
        return error(403, "the token may not read this node");
    }
    let mut out = Vec::new();
    let mut next = 0u64;
    for n in nodes.iter().filter(|n| t.allows_node(&n.name)) {
        let q = LogsQuery {
            since_ns,
            peer: n.id.0,
            tail: if token == 0 { tail } else { 0 },
            token,
            max: tail,
            ..LogsQuery::default()
        };
        match viewer.logs(q) {
            Ok((lines, nt)) => {
                next = next.max(nt);
                for l in lines {
                    if let Some(line) = LogLine::parse(&n.name, &l) {
                        if t.allows(&n.name, line.sender()) {
                            out.push(serde_json::json!({
                                "timestamp": line.record.get("timestamp"),
                                "level": line.level(),
                                "message": line.record.get("message"),
                                "target": line.record.get("target"),
                                "node": n.name,
                                "service": line.sender(),
                                "seq": line.id(),
                                "trace_id": line.record.get("trace_id"),
                                "span_id": line.record.get("span_id"),
                                "fields": line
                                    .fields()
                                    .into_iter()
                                    .filter(|(k, _)| *k != "trace_id" && *k != "span_id")
                                    .map(|(k, v)| (k.to_string(), v.clone()))
                                    .collect::<serde_json::Map<_, _>>(),
                            }));
                        }
                    }
                }
            }
            Err(e) => return error(503, &e),
        }
    }
    let body = serde_json::json!({
        "logs": out,
        "next_token": if next == 0 { serde_json::Value::Null } else { next.to_string().into() },
    });
    answer(200, "application/json", body.to_string())
}

fn trace(viewer: &mut Viewer, t: &Token, id: &str) -> Answer {
    let Ok(id) = nexus_trace::TraceId::from_hex(id) else {
        return error(400, "a trace id is 32 lower-case hex digits, not all zero");
    };
    match viewer.trace(id) {
        Ok(Some(line)) => {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let readable = v
                .get("spans")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|spans| {
                    spans.iter().all(|s| {
                        let node = s
                            .get("node")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("");
                        let name = viewer
                            .cluster
                            .nodes
                            .iter()
                            .find(|n| n.id.to_string() == node)
                            .map_or("", |n| n.name.as_str());
                        t.allows_node(name)
                    })
                });
            if readable {
                answer(200, "application/json", line)
            } else {
                error(403, "the token may not read every node of this trace")
            }
        }
        Ok(None) => error(404, "no completed trace with this id"),
        Err(e) => error(503, &e),
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition of every node's series (with `node`) and the host's
/// own counters; `open`: OpenMetrics 1.0 instead of Prometheus 0.0.4.
pub fn exposition(viewer: &mut Viewer, open: bool) -> Result<String, String> {
    let mut by_name: BTreeMap<String, Vec<(String, SeriesValue)>> = BTreeMap::new();
    for n in viewer.cluster.nodes.clone() {
        for s in viewer.metrics(n.id.0)? {
            by_name
                .entry(s.name.clone())
                .or_default()
                .push((n.name.clone(), s));
        }
    }
    let mut out = String::new();
    for (name, series) in &by_name {
        let Some((_, first)) = series.first() else {
            continue;
        };
        let kind = crate::render::kind_name(first.kind);
        let labels = |node: &str, s: &SeriesValue| {
            let mut l = format!("node=\"{}\"", escape_label(node));
            if !s.labels.is_empty() {
                l.push(',');
                l.push_str(&s.labels);
            }
            l
        };
        match kind {
            "counter" => {
                let family = if open {
                    name.strip_suffix("_total").unwrap_or(name)
                } else {
                    name
                };
                let sample = format!("{family}_total");
                let sample = if open { sample.as_str() } else { name.as_str() };
                let _ = writeln!(out, "# HELP {family} {NODE_HELP}");
                let _ = writeln!(out, "# TYPE {family} counter");
                for (node, s) in series.iter().filter(|(_, s)| s.kind == first.kind) {
                    let _ = writeln!(out, "{sample}{{{}}} {}", labels(node, s), s.value);
                }
            }
            "gauge" => {
                let _ = writeln!(out, "# HELP {name} {NODE_HELP}");
                let _ = writeln!(out, "# TYPE {name} gauge");
                for (node, s) in series.iter().filter(|(_, s)| s.kind == first.kind) {
                    let _ = writeln!(out, "{name}{{{}}} {}", labels(node, s), s.value);
                }
            }
            "histogram" => {
                // The collector keeps sum and count of a histogram (no
                // buckets): exposed as a summary without quantiles.
                let _ = writeln!(out, "# HELP {name} {NODE_HELP}");
                let _ = writeln!(out, "# TYPE {name} summary");
                for (node, s) in series.iter().filter(|(_, s)| s.kind == first.kind) {
                    let l = labels(node, s);
                    let _ = writeln!(out, "{name}_sum{{{l}}} {}", s.sum);
                    let _ = writeln!(out, "{name}_count{{{l}}} {}", s.count);
                }
            }
            _ => {}
        }
    }
    // The host's own view: which nodes have a session, what the collector
    // took in.
    let peers = viewer.peers()?;
    let _ = writeln!(
        out,
        "# HELP nexus_obs_node_up A bus session with the node is up."
    );
    let _ = writeln!(out, "# TYPE nexus_obs_node_up gauge");
    for n in &viewer.cluster.nodes {
        let up = peers.iter().any(|p| p.id == n.id && p.up);
        let _ = writeln!(
            out,
            "nexus_obs_node_up{{node=\"{}\"}} {}",
            escape_label(&n.name),
            u8::from(up)
        );
    }
    let s = viewer.stats()?;
    for (name, help, v) in [
        (
            "nexus_obs_records_received",
            "Log records received from the nodes.",
            s.records_received,
        ),
        (
            "nexus_obs_records_missing",
            "Log ids the nodes reported evicted before the host read them.",
            s.records_missing,
        ),
        (
            "nexus_obs_stream_disconnects",
            "Streams dropped for a node's protocol error.",
            s.disconnects,
        ),
        (
            "nexus_obs_open_refused",
            "Streams a node or busd refused.",
            s.open_refused,
        ),
        (
            "nexus_obs_series_refused",
            "Series refused by the cardinality cap.",
            s.series_refused,
        ),
    ] {
        let sample = format!("{name}_total");
        let family = if open { name } else { sample.as_str() };
        let _ = writeln!(out, "# HELP {family} {help}");
        let _ = writeln!(out, "# TYPE {family} counter");
        let _ = writeln!(out, "{sample} {v}");
    }
    if open {
        out.push_str("# EOF\n");
    }
    Ok(out)
}

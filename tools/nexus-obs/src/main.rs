//! `nexus-obs`: watch nexus-obs nodes from the host. See `--help`.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use nexus_bus::DeviceId;
use nexus_obs::config::{Cluster, NodeEntry};
use nexus_obs::render::{self, LogLine};
use nexus_obs::time::{parse_when, When};
use nexus_obs::viewer::Viewer;
use obsscraped::query::LogsQuery;

/// Watch nexus-obs nodes from the host: their logs, metrics and traces,
/// collected over the device bus on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(name = "nexus-obs", version, about, long_about = None)]
struct Cli {
    /// The cluster file [default: the shipped recipes/observability/nexus-obs.toml]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How long to wait for the nodes' first data (like 3s, 500ms)
    #[arg(long, global = true, default_value = "3s", value_parser = duration)]
    wait: Duration,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LevelArg {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LevelArg {
    fn level(self) -> nexus_log::Level {
        match self {
            LevelArg::Trace => nexus_log::Level::Trace,
            LevelArg::Debug => nexus_log::Level::Debug,
            LevelArg::Info => nexus_log::Level::Info,
            LevelArg::Warn => nexus_log::Level::Warn,
            LevelArg::Error => nexus_log::Level::Error,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a node of the cluster file on the host (logd, metricsd, busd, traced)
    Node {
        /// The node's name in the cluster file
        name: String,
        /// Also run a demo app that logs, counts and traces every PERIOD (like 1s)
        #[arg(long, value_name = "PERIOD", value_parser = duration)]
        load: Option<Duration>,
        /// Stop after this long (default: run until interrupted)
        #[arg(long = "for", value_name = "DURATION", value_parser = duration)]
        run_for: Option<Duration>,
    },
    /// Show the nodes' log records, oldest first
    Logs {
        /// Keep printing records as they arrive
        #[arg(short, long)]
        follow: bool,
        /// Only records at or after this (5m, 1h, or an RFC 3339 time)
        #[arg(long, value_parser = when)]
        since: Option<When>,
        /// Only records at or before this (5m, or an RFC 3339 time)
        #[arg(long, value_parser = when)]
        until: Option<When>,
        /// Lowest level shown
        #[arg(long, value_enum)]
        level: Option<LevelArg>,
        /// Only this node
        #[arg(long)]
        node: Option<String>,
        /// Only this service (the sender id logd stamped)
        #[arg(long)]
        service: Option<u32>,
        /// Only records whose message, target or fields contain this text
        #[arg(long)]
        grep: Option<String>,
        /// Only the last N records
        #[arg(short = 'n', long = "tail", value_name = "N")]
        tail: Option<usize>,
        /// JSON lines with the standard fields (and `node`)
        #[arg(long)]
        json: bool,
    },
    /// Show the latest value of every series
    Metrics {
        /// Only this node
        #[arg(long)]
        node: Option<String>,
        /// Refresh every INTERVAL (like 2s) until interrupted
        #[arg(long, value_name = "INTERVAL", value_parser = duration)]
        watch: Option<Duration>,
        /// JSON lines instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Recent traces, or one trace as a waterfall across nodes
    Traces {
        /// A trace id (32 hex digits): show that trace
        id: Option<String>,
        /// Most traces listed
        #[arg(long, default_value_t = 10)]
        max: u8,
        /// The trace's JSON line instead of the waterfall
        #[arg(long)]
        json: bool,
    },
    /// Check every node and the host's view; non-zero exit if a check fails
    Doctor,
    /// Serve /metrics, /v1/logs, /v1/traces/{id} and /healthz over HTTP on 127.0.0.1
    Serve {
        /// Address to listen on (loopback only)
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: SocketAddr,
        /// Stop after this long (default: run until interrupted)
        #[arg(long = "for", value_name = "DURATION", value_parser = duration)]
        run_for: Option<Duration>,
    },
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration (like 5s, 500ms, 2m): {e}"))
}

fn when(s: &str) -> Result<When, String> {
    parse_when(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nexus-obs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_cluster(path: Option<&PathBuf>) -> Result<Cluster, String> {
    match path {
        None => Cluster::builtin().map_err(|e| e.to_string()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read the cluster file {}: {e}", p.display()))?;
            Cluster::parse(&text).map_err(|e| format!("{}: {e}", p.display()))
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let cluster = load_cluster(cli.config.as_ref())?;
    match cli.cmd {
        Cmd::Node {
            name,
            load,
            run_for,
        } => run_node(&cluster, &name, load, run_for),
        Cmd::Logs {
            follow,
            since,
            until,
            level,
            node,
            service,
            grep,
            tail,
            json,
        } => {
            let nodes = selected(&cluster, node.as_deref())?;
            let mut v = start_viewer(cluster, &nodes, cli.wait)?;
            let filter = Filter {
                since,
                until,
                level: level.map(LevelArg::level),
                service,
                grep,
            };
            logs(&mut v, &nodes, &filter, tail, follow, json)
        }
        Cmd::Metrics { node, watch, json } => {
            let nodes = selected(&cluster, node.as_deref())?;
            let mut v = start_viewer(cluster, &nodes, cli.wait)?;
            loop {
                let mut rows = Vec::new();
                for n in &nodes {
                    for s in v.metrics(n.id.0)? {
                        rows.push((n.name.clone(), s));
                    }
                }
                let mut out = anstream::stdout();
                if watch.is_some() && std::io::stdout().is_terminal() {
                    let _ = write!(out, "\x1b[2J\x1b[H");
                }
                if json {
                    for (node, s) in &rows {
                        let _ = writeln!(
                            out,
                            "{}",
                            serde_json::json!({
                                "node": node, "name": s.name, "labels": s.labels,
                                "kind": render::kind_name(s.kind), "value": s.value,
                                "sum": s.sum, "count": s.count,
                            })
                        );
                    }
                } else {
                    let _ = write!(out, "{}", render::metrics_table(&rows));
                }
                let _ = out.flush();
                match watch {
                    Some(d) => std::thread::sleep(d),
                    None => return Ok(ExitCode::SUCCESS),
                }
            }
        }
        Cmd::Traces { id, max, json } => {
            let nodes = selected(&cluster, None)?;
            let mut v = start_viewer(cluster, &nodes, cli.wait)?;
            traces(&mut v, id.as_deref(), max, json, cli.wait)
        }
        Cmd::Doctor => doctor(cluster, cli.wait),
        Cmd::Serve { listen, run_for } => {
            if !listen.ip().is_loopback() {
                return Err(format!(
                    "--listen {listen}: only loopback addresses (127.0.0.1, ::1) are served"
                ));
            }
            let nodes = selected(&cluster, None)?;
            let mut v = start_viewer(cluster, &nodes, cli.wait)?;
            let server = tiny_http::Server::http(listen)
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            eprintln!("nexus-obs: serving on http://{listen} (/metrics, /v1/logs, /v1/traces/ID, /healthz)");
            let stop = std::sync::Arc::new(AtomicBool::new(false));
            if let Some(d) = run_for {
                let s = std::sync::Arc::clone(&stop);
                std::thread::spawn(move || {
                    std::thread::sleep(d);
                    s.store(true, std::sync::atomic::Ordering::Relaxed);
                });
            }
            let mut logs = match v.cluster.otlp_logs.clone() {
                Some(cfg) => Some(nexus_obs::otlp_logs::LogsExport::start(&cfg)?),
                None => None,
            };
            nexus_obs::http::serve(&mut v, &server, &stop, logs.as_mut())?;
            if let Some(l) = logs {
                let dropped = l.dropped;
                if let Some(s) = l.finish() {
                    eprintln!(
                        "nexus-obs: OTLP logs: {} records exported in {} requests, {} dropped (queue full), {} refused, {} given up",
                        s.exported_spans, s.exported_requests, dropped, s.dropped_rejected, s.dropped_exhausted
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn selected(cluster: &Cluster, node: Option<&str>) -> Result<Vec<NodeEntry>, String> {
    match node {
        Some(n) => Ok(vec![cluster.node(n).map_err(|e| e.to_string())?.clone()]),
        None => Ok(cluster.nodes.clone()),
    }
}

fn start_viewer(cluster: Cluster, nodes: &[NodeEntry], wait: Duration) -> Result<Viewer, String> {
    let port = cluster.host.port;
    let mut v = Viewer::start(cluster)
        .map_err(|e| format!("{e} (is another nexus-obs using 127.0.0.1:{port}?)"))?;
    let ids: Vec<DeviceId> = nodes.iter().map(|n| n.id).collect();
    let missing = v.wait_nodes(&ids, wait);
    for id in &missing {
        if let Some(n) = nodes.iter().find(|n| n.id == *id) {
            eprintln!(
                "nexus-obs: no data from {} (127.0.0.1:{}) within {}: is it running (`nexus-obs node {}`)?",
                n.name,
                n.port,
                humantime::format_duration(wait),
                n.name
            );
        }
    }
    if !nodes.is_empty() && missing.len() == nodes.len() {
        return Err(String::from("no node answered"));
    }
    Ok(v)
}

fn run_node(
    cluster: &Cluster,
    name: &str,
    load: Option<Duration>,
    run_for: Option<Duration>,
) -> Result<ExitCode, String> {
    let mut node = nexus_obs::node::start(cluster, name)?;
    if let Some(p) = load {
        nexus_obs::node::start_load(&mut node, p)?;
    }
    let entry = cluster.node(name).map_err(|e| e.to_string())?;
    let services: Vec<String> = node
        .services
        .iter()
        .map(|(n, id)| format!("{n}={}", id.get()))
        .collect();
    eprintln!(
        "nexus-obs: node {name} ({}) on 127.0.0.1:{}: {}",
        entry.id,
        entry.port,
        services.join(" ")
    );
    let start = Instant::now();
    let mut printed = 0;
    loop {
        // Its services' console lines, as they come.
        let lines = node.threads.lines();
        for l in lines.iter().skip(printed) {
            eprintln!("{l}");
        }
        printed = lines.len();
        if run_for.is_some_and(|d| start.elapsed() >= d) {
            node.threads.stop();
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Filter {
    since: Option<When>,
    until: Option<When>,
    level: Option<nexus_log::Level>,
    service: Option<u32>,
    grep: Option<String>,
}

/// Every line the collector holds for `n` that passes the collector-side
/// filters (level, service, absolute until), oldest first.
fn fetch(v: &mut Viewer, n: &NodeEntry, f: &Filter, since_ns: u64) -> Result<Vec<LogLine>, String> {
    let mut out = Vec::new();
    let mut token = 0;
    loop {
        let (lines, next) = v.logs(LogsQuery {
            since_ns,
            until_ns: match f.until {
                Some(When::At(t)) => t,
                _ => 0,
            },
            min_level: f.level.map_or(0, |l| l.as_u8()),
            peer: n.id.0,
            sender: f.service.unwrap_or(0),
            token,
            max: obsscraped::query::MAX_LOG_LINES,
            ..LogsQuery::default()
        })?;
        out.extend(lines.iter().filter_map(|l| LogLine::parse(&n.name, l)));
        if next == 0 {
            return Ok(out);
        }
        token = next;
    }
}

fn logs(
    v: &mut Viewer,
    nodes: &[NodeEntry],
    f: &Filter,
    tail: Option<usize>,
    follow: bool,
    json: bool,
) -> Result<ExitCode, String> {
    let mut all = Vec::new();
    // Per node: the highest record id and timestamp seen (follow goes on
    // from there).
    let mut cursors: Vec<(u64, u64)> = Vec::with_capacity(nodes.len());
    for n in nodes {
        let since_abs = match f.since {
            Some(When::At(t)) => t,
            _ => 0,
        };
        let mut lines = fetch(v, n, f, since_abs)?;
        let newest = lines
            .iter()
            .filter_map(|l| nexus_obs::time::record_ns(&l.record))
            .max()
            .unwrap_or(0);
        cursors.push((lines.iter().map(LogLine::id).max().unwrap_or(0), newest));
        if let Some(When::Ago(d)) = f.since {
            let from = newest.saturating_sub(d);
            lines.retain(|l| nexus_obs::time::record_ns(&l.record).is_some_and(|t| t >= from));
        }
        if let Some(When::Ago(d)) = f.until {
            let to = newest.saturating_sub(d);
            lines.retain(|l| nexus_obs::time::record_ns(&l.record).is_some_and(|t| t <= to));
        }
        all.extend(lines);
    }
    if let Some(g) = &f.grep {
        all.retain(|l| l.contains(g));
    }
    // One node: its ids are its order (they keep growing across boots,
    // its clock does not). Several: by timestamp, then id.
    if nodes.len() == 1 {
        all.sort_by_key(LogLine::id);
    } else {
        all.sort_by_key(|l| (nexus_obs::time::record_ns(&l.record).unwrap_or(0), l.id()));
    }
    if let Some(n) = tail {
        let skip = all.len().saturating_sub(n);
        all.drain(..skip);
    }
    let color = std::io::stdout().is_terminal();
    let mut out = anstream::stdout();
    let print = |out: &mut anstream::Stdout, l: &LogLine| {
        let line = if json { l.json() } else { l.human(color) };
        writeln!(out, "{line}").and_then(|()| out.flush())
    };
    for l in &all {
        if print(&mut out, l).is_err() {
            return Ok(ExitCode::SUCCESS); // the reader went away (a pipe closed)
        }
    }
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::sleep(Duration::from_millis(200));
        for (n, (last_id, last_ts)) in nodes.iter().zip(cursors.iter_mut()) {
            let mut fresh: Vec<LogLine> = fetch(v, n, f, *last_ts)?
                .into_iter()
                .filter(|l| l.id() > *last_id)
                .collect();
            for l in &fresh {
                *last_id = (*last_id).max(l.id());
                if let Some(t) = nexus_obs::time::record_ns(&l.record) {
                    *last_ts = (*last_ts).max(t);
                }
            }
            if let Some(g) = &f.grep {
                fresh.retain(|l| l.contains(g));
            }
            for l in &fresh {
                if print(&mut out, l).is_err() {
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
    }
}

fn traces(
    v: &mut Viewer,
    id: Option<&str>,
    max: u8,
    json: bool,
    wait: Duration,
) -> Result<ExitCode, String> {
    // The nodes replay their recent traces when the host's trace
    // collector connects; they complete here after traced's idle time.
    let _ = v.wait_traces(wait);
    match id {
        None => {
            let list = v.recent_traces(max)?;
            let mut out = anstream::stdout();
            let _ = writeln!(out, "{:<32}  {:>5}  {:>12}", "TRACE", "SPANS", "DURATION");
            for t in list {
                let _ = writeln!(
                    out,
                    "{}  {:>5}  {:>12}",
                    t.trace,
                    t.spans,
                    render::human_ns(t.end_ns.saturating_sub(t.start_ns))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(s) => {
            let trace = nexus_trace::TraceId::from_hex(s).map_err(|_| {
                format!("'{s}' is not a trace id (32 lower-case hex digits, not all zero)")
            })?;
            let line = v
                .trace(trace)?
                .ok_or_else(|| format!("no completed trace {trace} on the host (it may still be open, or older than the recent list)"))?;
            if json {
                println!("{line}");
            } else {
                let cluster = v.cluster.clone();
                let name = move |hexid: &str| {
                    cluster
                        .nodes
                        .iter()
                        .find(|n| n.id.to_string() == hexid)
                        .map_or_else(|| hexid.to_string(), |n| n.name.clone())
                };
                let w = render::waterfall(&line, &name, 40)
                    .ok_or("the trace line is not in the expected form")?;
                print!("{w}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The largest error bound of a node's measured clock offset doctor
/// accepts: spans are aligned only as well as this.
const MAX_CLOCK_ERROR_NS: u64 = 100_000_000;

fn signed_ns(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "+" };
    format!("{sign}{}", render::human_ns(ns.unsigned_abs()))
}

/// One check: what, verdict, detail.
struct Check {
    what: String,
    verdict: Verdict,
    detail: String,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Verdict {
    Ok,
    Warn,
    Fail,
}

fn doctor(cluster: Cluster, wait: Duration) -> Result<ExitCode, String> {
    let mut checks = Vec::new();
    let nodes = cluster.nodes.clone();
    let mut v = Viewer::start(cluster).map_err(|e| format!("the host's own bus device: {e}"))?;
    let ids: Vec<DeviceId> = nodes.iter().map(|n| n.id).collect();
    let missing = v.wait_nodes(&ids, wait);
    let peers = v.peers()?;
    for n in &nodes {
        let up = peers.iter().any(|p| p.id == n.id && p.up);
        checks.push(Check {
            what: format!("{}: reachable and authenticated", n.name),
            verdict: if up { Verdict::Ok } else { Verdict::Fail },
            detail: if up {
                format!("bus session with {} (127.0.0.1:{})", n.id, n.port)
            } else {
                format!("no bus session with 127.0.0.1:{} (is the node running? does it list this host's key?)", n.port)
            },
        });
        if !up {
            continue;
        }
        let series = v.metrics(n.id.0)?;
        let has = |prefix: &str| series.iter().any(|s| s.name.starts_with(prefix));
        for svc in ["logd", "metricsd", "busd", "traced"] {
            // metricsd answers by serving the series at all; the others
            // by their own metrics among them.
            let ok = match svc {
                "metricsd" => !series.is_empty(),
                _ => has(&format!("{svc}_")),
            };
            checks.push(Check {
                what: format!("{}: {svc} answering", n.name),
                verdict: if ok { Verdict::Ok } else { Verdict::Fail },
                detail: if ok {
                    match svc {
                        "metricsd" => String::from("it serves the node's series"),
                        _ => format!("{svc}'s own metrics arrive"),
                    }
                } else {
                    format!("none of {svc}'s own metrics arrived")
                },
            });
        }
        let logs_in = !missing.contains(&n.id)
            && v.logs(LogsQuery {
                peer: n.id.0,
                max: 1,
                ..LogsQuery::default()
            })
            .is_ok_and(|(l, _)| !l.is_empty());
        checks.push(Check {
            what: format!("{}: log stream", n.name),
            verdict: if logs_in { Verdict::Ok } else { Verdict::Warn },
            detail: if logs_in {
                String::from("records arrive on obs.logs")
            } else {
                String::from("no record yet (an idle node logs nothing)")
            },
        });
        let losses: Vec<String> = series
            .iter()
            .filter(|s| {
                (s.name.contains("dropped")
                    || s.name.contains("reject")
                    || s.name.contains("evict"))
                    && s.value > 0
            })
            .map(|s| format!("{}{{{}}}={}", s.name, s.labels, s.value))
            .collect();
        checks.push(Check {
            what: format!("{}: drops, rejects, evictions", n.name),
            verdict: if losses.is_empty() {
                Verdict::Ok
            } else {
                Verdict::Warn
            },
            detail: if losses.is_empty() {
                String::from("none counted")
            } else {
                losses.join(", ")
            },
        });
    }
    let s = v.stats()?;
    let bad = s.store_failures > 0 || s.disconnects > 0;
    checks.push(Check {
        what: String::from("host: collector"),
        verdict: if s.store_failures > 0 {
            Verdict::Fail
        } else if bad || s.records_missing > 0 {
            Verdict::Warn
        } else {
            Verdict::Ok
        },
        detail: format!(
            "{} records in, {} missing (evicted before read), {} streams dropped, {} store failures",
            s.records_received, s.records_missing, s.disconnects, s.store_failures
        ),
    });
    let t = v.traced_stats()?;
    checks.push(Check {
        what: String::from("host: trace collector"),
        verdict: if t.correlator.spans_dropped_full > 0 {
            Verdict::Warn
        } else {
            Verdict::Ok
        },
        detail: format!(
            "{} spans correlated, {} traces completed, {} dropped (trace full)",
            t.correlator.spans_added,
            t.correlator.completed_idle + t.correlator.completed_evicted,
            t.correlator.spans_dropped_full
        ),
    });
    let offsets = v.offsets()?;
    for n in &nodes {
        let node = traced::remote::node_of(n.id);
        let (verdict, detail) = match offsets.iter().find(|o| o.node == node) {
            None => (
                Verdict::Warn,
                String::from("not measured: the node's traced is not forwarding to the host"),
            ),
            Some(o) if o.error_ns > MAX_CLOCK_ERROR_NS => (
                Verdict::Fail,
                format!(
                    "offset {} ± {}: the error bound is over {}",
                    signed_ns(o.offset_ns),
                    render::human_ns(o.error_ns),
                    render::human_ns(MAX_CLOCK_ERROR_NS)
                ),
            ),
            Some(o) => (
                Verdict::Ok,
                format!(
                    "offset {} ± {} (round trip {})",
                    signed_ns(o.offset_ns),
                    render::human_ns(o.error_ns),
                    render::human_ns(o.rtt_ns)
                ),
            ),
        };
        checks.push(Check {
            what: format!("{}: clock offset", n.name),
            verdict,
            detail,
        });
    }
    let color = std::io::stdout().is_terminal();
    let mut out = anstream::stdout();
    for c in &checks {
        let (word, style) = match c.verdict {
            Verdict::Ok => ("ok", anstyle::AnsiColor::Green.on_default()),
            Verdict::Warn => ("warn", anstyle::AnsiColor::Yellow.on_default()),
            Verdict::Fail => ("FAIL", anstyle::AnsiColor::Red.on_default().bold()),
        };
        let (a, b) = if color {
            (style.render().to_string(), style.render_reset().to_string())
        } else {
            Default::default()
        };
        let _ = writeln!(out, "{a}{word:<4}{b}  {}: {}", c.what, c.detail);
    }
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    let _ = writeln!(out, "{} checks, {} failed", checks.len(), failed);
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

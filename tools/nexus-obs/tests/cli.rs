//! Every subcommand of the real binary against a node run on the host
//! (`nexus-obs node`, the same service cores as on the OS), over the bus
//! on 127.0.0.1. Each test has its own cluster file with free ports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_nexus-obs");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A cluster file: host, node-a (run by the test), node-b (never runs
/// unless `with_b`), two tokens.
struct Cluster {
    path: PathBuf,
}

impl Cluster {
    fn new(tag: &str, with_b: bool) -> Cluster {
        let (h, a, b) = (free_port(), free_port(), free_port());
        let mut text = format!(
            "[host]\nname = \"host\"\nsecret = \"{}\"\nport = {h}\n\
             [[node]]\nname = \"node-a\"\nsecret = \"{}\"\nport = {a}\n",
            "c4".repeat(32),
            "a1".repeat(32)
        );
        if with_b {
            text.push_str(&format!(
                "[[node]]\nname = \"node-b\"\nsecret = \"{}\"\nport = {b}\n",
                "b2".repeat(32)
            ));
        }
        text.push_str(
            "[[token]]\ntoken = \"all-reader-1\"\nread = [\"*\"]\n\
             [[token]]\ntoken = \"b-only-reader\"\nread = [\"node-b\"]\n",
        );
        let path =
            std::env::temp_dir().join(format!("nexus-obs-{}-{tag}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        Cluster { path }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(&self.path).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `nexus-obs node node-a` with a demo load, killed on drop.
struct RunningNode(Child);

impl RunningNode {
    fn start(c: &Cluster) -> RunningNode {
        let child = c
            .cmd(&["node", "node-a", "--load", "100ms", "--for", "120s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        RunningNode(child)
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Runs `args` until its output satisfies `ok` (bounded), returns it.
fn until(c: &Cluster, args: &[&str], ok: impl Fn(&Output) -> bool) -> Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = c.run(args);
        if ok(&o) || Instant::now() > deadline {
            return o;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn logs_prints_the_nodes_records_as_json_lines_and_tails() {
    let c = Cluster::new("logs", false);
    let _n = RunningNode::start(&c);
    let o = until(&c, &["logs", "-n", "3", "--json"], |o| {
        o.status.success() && json_lines(&stdout(o)).len() == 3
    });
    assert!(o.status.success(), "{}", stderr(&o));
    let tail = json_lines(&stdout(&o));
    assert_eq!(tail.len(), 3);
    let ids: Vec<u64> = tail.iter().map(|l| l["id"].as_u64().unwrap()).collect();
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "oldest first: {ids:?}");
    // The node's logd also holds metricsd's snapshot records: the demo
    // app's are the ones with target `demo`.
    let all = json_lines(&stdout(&c.run(&["logs", "--json"])));
    assert!(all.len() > 3 && all.iter().all(|l| l["node"] == "node-a"));
    let demo: Vec<_> = all.iter().filter(|l| l["target"] == "demo").collect();
    let lines = &demo[demo.len().saturating_sub(3)..];
    assert_eq!(lines.len(), 3);
    for l in lines {
        assert_eq!(l["target"], "demo");
        assert_eq!(l["message"], "tick");
        assert!(l["level"] == "info" || l["level"] == "warn");
        assert_eq!(l["trace_id"].as_str().unwrap().len(), 32);
        assert_eq!(l["span_id"].as_str().unwrap().len(), 16);
        assert!(l["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    let n: Vec<u64> = lines.iter().map(|l| l["n"].as_u64().unwrap()).collect();
    assert!(n[0] < n[1] && n[1] < n[2], "oldest first: {n:?}");
    // Level filter: only the warnings (every tenth tick).
    let o = until(&c, &["logs", "--level", "warn", "--json"], |o| {
        !json_lines(&stdout(o)).is_empty()
    });
    let w = json_lines(&stdout(&o));
    assert!(w
        .iter()
        .all(|l| l["level"] == "warn" && l["n"].as_u64().unwrap() % 10 == 0));
    // grep on a field value.
    let o = c.run(&[
        "logs",
        "--json",
        "--grep",
        w[0]["trace_id"].as_str().unwrap(),
    ]);
    assert_eq!(json_lines(&stdout(&o)).len(), 1);
    // Piped: no colour codes.
    let o = c.run(&["logs", "-n", "2"]);
    assert!(!stdout(&o).contains('\x1b'), "{}", stdout(&o));
    assert!(stdout(&o).contains("node-a/"));
}

#[test]
fn logs_follow_prints_records_as_they_arrive() {
    let c = Cluster::new("follow", false);
    let _n = RunningNode::start(&c);
    let mut child = c
        .cmd(&["logs", "--follow", "--json", "-n", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut r = BufReader::new(child.stdout.take().unwrap());
    let mut ns = Vec::new();
    let mut line = String::new();
    while ns.len() < 6 {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "follow ended");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        // The demo app's records (metricsd's snapshots share the journal).
        if v["target"] == "demo" {
            ns.push(v["n"].as_u64().unwrap());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // The first line is the tail; the rest came later, each once, in order.
    assert!(ns.windows(2).all(|w| w[0] < w[1]), "{ns:?}");
    assert!(ns[5] >= ns[0] + 5);
}

#[test]
fn colours_only_on_a_terminal() {
    let c = Cluster::new("tty", false);
    let _n = RunningNode::start(&c);
    let _ = until(&c, &["logs", "-n", "1", "--json"], |o| {
        !stdout(o).is_empty()
    });
    // `script` runs the command under a pseudo-terminal.
    let cmd = format!("{BIN} --config {} logs -n 3 --level info", c.path.display());
    // script(1) ends when its stdin does: keep a pipe open until it exits.
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    let stdin = child.stdin.take();
    let o = child.wait_with_output().unwrap();
    drop(stdin);
    let s = stdout(&o);
    assert!(o.status.success(), "{s}");
    assert!(s.contains("\x1b["), "no colour on a terminal: {s:?}");
}

#[test]
fn metrics_shows_the_nodes_series() {
    let c = Cluster::new("metrics", false);
    let _n = RunningNode::start(&c);
    let o = until(&c, &["metrics"], |o| {
        stdout(o).contains("nexus_obs_demo_ticks_total")
    });
    let s = stdout(&o);
    assert!(s.starts_with("NODE"), "{s}");
    let row = s
        .lines()
        .find(|l| l.contains("nexus_obs_demo_ticks_total"))
        .unwrap();
    assert!(row.starts_with("node-a") && row.contains("app=\"demo\"") && row.contains("counter"));
    let o = c.run(&["metrics", "--json"]);
    let rows = json_lines(&stdout(&o));
    let t = rows
        .iter()
        .find(|r| r["name"] == "nexus_obs_demo_ticks_total")
        .unwrap();
    assert_eq!(t["node"], "node-a");
    assert!(t["value"].as_i64().unwrap() > 0);
    assert!(rows.iter().any(|r| r["name"] == "logd_appended_total"));
    // busd's own series too (metricsd, itself a busd client, once
    // swallowed busd's registrations as bus frames).
    let o = until(&c, &["metrics", "--json"], |o| {
        json_lines(&stdout(o))
            .iter()
            .any(|r| r["name"] == "busd_sessions_total")
    });
    assert!(json_lines(&stdout(&o))
        .iter()
        .any(|r| r["name"] == "busd_sessions_total" && r["node"] == "node-a"));
}

#[test]
fn traces_lists_and_draws_a_trace() {
    let c = Cluster::new("traces", false);
    let _n = RunningNode::start(&c);
    let o = until(&c, &["traces"], |o| stdout(o).lines().count() > 1);
    let s = stdout(&o);
    let id = s
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 32);
    let o = c.run(&["traces", &id]);
    let w = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(w.starts_with(&format!("trace {id} (2 spans")), "{w}");
    let tick = w.lines().find(|l| l.starts_with("demo.tick")).unwrap();
    let work = w.lines().find(|l| l.starts_with("  demo.work")).unwrap();
    assert!(tick.contains("node-a/") && work.contains("node-a/"));
    let o = c.run(&["traces", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["trace_id"], id);
    assert_eq!(v["spans"].as_array().unwrap().len(), 2);
    let o = c.run(&["traces", "00000000000000000000000000000000"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a trace id"));
}

#[test]
fn doctor_says_what_is_wrong_and_fails_on_a_missing_node() {
    let c = Cluster::new("doctor-ok", false);
    let _n = RunningNode::start(&c);
    let o = until(&c, &["doctor"], |o| {
        o.status.success() && stdout(o).contains("ok    node-a: clock offset")
    });
    let s = stdout(&o);
    assert!(o.status.success(), "{s}");
    // A host node reads the wall clock as the host does: offset within
    // its error bound of zero is not asserted (scheduling), only measured.
    assert!(
        s.contains("ok    node-a: clock offset") && s.contains("round trip"),
        "{s}"
    );
    assert!(
        s.contains("ok    node-a: reachable and authenticated"),
        "{s}"
    );
    assert!(s.contains("ok    node-a: traced answering"), "{s}");
    assert!(s.contains(", 0 failed"));
    let c2 = Cluster::new("doctor-b", true);
    let _n2 = RunningNode::start(&c2);
    let o = until(&c2, &["doctor"], |o| {
        stdout(o).contains("ok    node-a: logd answering")
    });
    let s = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{s}");
    assert!(
        s.contains("FAIL  node-b: reachable and authenticated"),
        "{s}"
    );
    assert!(s.contains("ok    node-a: logd answering"), "{s}");
}

#[test]
fn test_reject_bad_input_with_one_clear_line() {
    let c = Cluster::new("bad", false);
    let o = c.run(&["logs", "--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).lines().next().unwrap().contains("--bogus"));
    let o = c.run(&["logs", "--since", "5 parsecs"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("neither a duration"), "{}", stderr(&o));
    let o = c.run(&["logs", "--until", "2026-13-45T99:00:00Z"]);
    assert_eq!(o.status.code(), Some(2));
    let o = c.run(&["--wait", "300ms", "logs"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("no data from node-a") && e.contains("no node answered"),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    let o = c.run(&["logs", "--node", "node-z"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no node 'node-z'"));
    let o = Command::new(BIN)
        .args(["--config", "/nonexistent.toml", "logs"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read the cluster file"));
    let o = c.run(&["serve", "--listen", "0.0.0.0:9464"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("only loopback"));
}

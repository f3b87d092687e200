//! The host's own device on the bus: busd on 127.0.0.1 (peers: the
//! cluster's nodes), obsscraped's collector (the same core as on the OS,
//! storage in memory) pulling `obs.logs` and `obs.metrics` from every
//! node, and traced collecting the spans the nodes forward on
//! `obs.traces`. Queries go over the in-process bus with the services'
//! own contracts.

use std::time::Duration;

use dsoftbus::identity::DeviceKey;
use nexus_bus::proto::PeerInfo;
use nexus_bus::{BusClient, DeviceId};
use nexus_ipc::host::{HostBus, HostEndpoint};
use nexus_ipc::router::RouterConfig;
use nexus_ipc::{Endpoint, ServiceId};
use nexus_svc::host::net::StdNetwork;
use nexus_svc::{InMemory, Links};
use obsscraped::config::PeerConfig;
use obsscraped::query::{self, CollectorStats, LogsQuery, Reply, Request, SeriesValue};
use obsscraped::storage::MemStorage;
use obsscraped::Collector;
use traced::proto::{self as tproto, Reply as TReply, Request as TRequest, TraceSummary};

use crate::config::Cluster;
use crate::node::{busd_config, entropy, Threads};

/// How long one query waits for its answer.
const ASK_NS: u64 = 5_000_000_000;

/// The host's services and a query endpoint.
#[derive(Debug)]
pub struct Viewer {
    /// The cluster it watches.
    pub cluster: Cluster,
    /// Asks busd for its peers (one endpoint for the viewer's life).
    peers_client: BusClient<HostEndpoint>,
    collector: ServiceId,
    traced: ServiceId,
    q: HostEndpoint,
    nonce: u64,
    threads: Threads,
}

/// What a query can fail with.
pub type QueryResult<T> = Result<T, String>;

impl Viewer {
    /// Starts the host's busd, collector and traced for `cluster`.
    pub fn start(cluster: Cluster) -> Result<Viewer, String> {
        let peers: Vec<(&str, [u8; 32], u16, &[&str])> = cluster
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.public, n.port, &["obs.traces"][..]))
            .collect();
        let bus_cfg = busd_config(cluster.host.port, &peers)?;
        let bus = HostBus::new(RouterConfig::default());
        let reg = |n: &str| bus.endpoint(n).map_err(|e| format!("register {n}: {e:?}"));
        let (busd_ep, col_ep, traced_ep, q, peers_ep) = (
            reg("busd")?,
            reg("obsscraped")?,
            reg("traced")?,
            reg("nexus-obs")?,
            reg("nexus-obs-peers")?,
        );
        let (busd, collector, traced) = (busd_ep.id(), col_ep.id(), traced_ep.id());
        let mut links = Links::new();
        links.insert("busd", busd);
        let mut threads = Threads::default();
        let key = DeviceKey::from_secret(cluster.host.secret);
        let b = busd::Busd::new(bus_cfg, StdNetwork, key, entropy()?, vec![])
            .map_err(|e| format!("busd: {e}"))?;
        threads.spawn(busd_ep, b, InMemory, Links::new());
        let mut cfg = obsscraped::Config::builtin()?;
        cfg.retry_ms = 200;
        // Everything the nodes send is kept: the host is where people
        // look, so no sampling here.
        cfg.logs.sample_ppm = 1_000_000;
        cfg.peers = cluster
            .nodes
            .iter()
            .map(|n| PeerConfig {
                name: n.name.clone(),
                device: n.id.to_string(),
                logs: true,
                metrics: true,
            })
            .collect();
        let col = Collector::new(cfg, MemStorage::new(), 0);
        threads.spawn(col_ep, col, InMemory, links.clone());
        let tcfg = traced::Config::from_toml(traced::config::RECIPE)
            .map_err(|e| format!("traced: {e}"))?;
        let node = traced::remote::node_of(cluster.host_id());
        let mut svc =
            traced::TracedService::new(traced::Traced::new(tcfg.clone(), node)).collecting(busd);
        match &cluster.otlp {
            Some(otlp) => {
                // Completed traces also go to the OTLP endpoint (on the
                // store's own thread, behind a bounded queue).
                svc.traced.export_completed(tcfg.store_queue);
                let store = traced::host::HostStore::none()
                    .with_otlp(otlp)
                    .map_err(|e| format!("otlp: {e}"))?;
                threads.spawn(traced_ep, svc, store, links);
            }
            None => threads.spawn(traced_ep, svc, InMemory, links),
        }
        Ok(Viewer {
            cluster,
            peers_client: BusClient::new(peers_ep, busd, ASK_NS),
            collector,
            traced,
            q,
            nonce: 0,
            threads,
        })
    }

    /// Console lines of the host's services (connects, drops, refusals).
    pub fn console(&self) -> Vec<String> {
        self.threads.lines()
    }

    fn ask(&mut self, req: &Request<'_>) -> QueryResult<Reply> {
        self.nonce += 1;
        let nonce = self.nonce;
        let frame = query::encode_request(nonce, req).map_err(|e| format!("query: {e}"))?;
        self.q
            .send(self.collector, &frame)
            .map_err(|e| format!("query: {e:?}"))?;
        loop {
            let f = self
                .q
                .recv_timeout(ASK_NS)
                .ok_or("the collector did not answer")?;
            if let Ok((h, r)) = query::decode_reply(&f.bytes) {
                if h.nonce == nonce {
                    return Ok(r);
                }
            }
        }
    }

    fn ask_traced(&mut self, req: &TRequest) -> QueryResult<TReply> {
        self.nonce += 1;
        let nonce = self.nonce;
        let frame = tproto::encode_request(nonce, req).map_err(|e| format!("query: {e}"))?;
        self.q
            .send(self.traced, &frame)
            .map_err(|e| format!("query: {e:?}"))?;
        loop {
            let f = self.q.recv_timeout(ASK_NS).ok_or("traced did not answer")?;
            if let Ok((h, r)) = tproto::decode_reply(&f.bytes) {
                if h.nonce == nonce {
                    return Ok(r);
                }
            }
        }
    }

    /// One page of log lines matching `q` (the collector's JSON lines),
    /// and the token of the next page (0: none).
    pub fn logs(&mut self, q: LogsQuery) -> QueryResult<(Vec<String>, u64)> {
        match self.ask(&Request::Logs(q))? {
            Reply::Logs { next_token, lines } => Ok((lines, next_token)),
            Reply::Rejected(s) => Err(format!("the collector refused the query: {s}")),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// The latest value of every series of `peer` (zeros: every node).
    pub fn metrics(&mut self, peer: [u8; 8]) -> QueryResult<Vec<SeriesValue>> {
        match self.ask(&Request::Metrics { peer, prefix: "" })? {
            Reply::Metrics(list) => Ok(list),
            Reply::Rejected(s) => Err(format!("the collector refused the query: {s}")),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// The collector's counters.
    pub fn stats(&mut self) -> QueryResult<CollectorStats> {
        match self.ask(&Request::Stats)? {
            Reply::Stats(s) => Ok(s),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// The most recent completed traces (newest first).
    pub fn recent_traces(&mut self, max: u8) -> QueryResult<Vec<TraceSummary>> {
        match self.ask_traced(&TRequest::Recent(max.clamp(1, tproto::MAX_RECENT)))? {
            TReply::Recent(list) => Ok(list),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// A completed trace as its JSON line, if traced holds it.
    pub fn trace(&mut self, id: nexus_trace::TraceId) -> QueryResult<Option<String>> {
        match self.ask_traced(&TRequest::Trace(id))? {
            TReply::Trace(line) => Ok(Some(line)),
            TReply::Rejected(nexus_wire::Status::Unavailable) => Ok(None),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// traced's counters.
    pub fn traced_stats(&mut self) -> QueryResult<tproto::TracedStats> {
        match self.ask_traced(&TRequest::Stats)? {
            TReply::Stats(s) => Ok(s),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// The clock offsets the host's traced measured, per forwarding node.
    pub fn offsets(&mut self) -> QueryResult<Vec<tproto::PeerOffset>> {
        match self.ask_traced(&TRequest::Offsets)? {
            TReply::Offsets(list) => Ok(list),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// busd's view of the peers (session up, sessions so far).
    pub fn peers(&mut self) -> QueryResult<Vec<PeerInfo>> {
        self.peers_client.peers().map_err(|e| format!("busd: {e}"))
    }

    /// Waits (at most `timeout`) until every node in `nodes` has a session
    /// up and at least one record or series arrived from it; returns the
    /// nodes still missing.
    pub fn wait_nodes(&mut self, nodes: &[DeviceId], timeout: Duration) -> Vec<DeviceId> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let mut missing = Vec::new();
            for id in nodes {
                let logs = self
                    .logs(LogsQuery {
                        peer: id.0,
                        max: 1,
                        ..LogsQuery::default()
                    })
                    .map(|(l, _)| !l.is_empty())
                    .unwrap_or(false);
                let metrics = self.metrics(id.0).map(|m| !m.is_empty()).unwrap_or(false);
                if !(logs || metrics) {
                    missing.push(*id);
                }
            }
            if missing.is_empty() || std::time::Instant::now() >= deadline {
                if missing.is_empty() {
                    self.settle(deadline);
                }
                return missing;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// After the first data: waits (at most until `deadline`) for the
    /// catch-up to end, i.e. until fewer than a handful of records arrive
    /// in 100 ms (the nodes' retained records come in chunks of hundreds;
    /// a live node adds a few).
    fn settle(&mut self, deadline: std::time::Instant) {
        let mut last = self.stats().map_or(0, |s| s.records_received);
        while std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.stats().map_or(0, |s| s.records_received);
            if now.saturating_sub(last) <= 4 {
                return;
            }
            last = now;
        }
    }

    /// Waits (at most `timeout`) until traced holds a completed trace.
    pub fn wait_traces(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.recent_traces(1).is_ok_and(|l| !l.is_empty()) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

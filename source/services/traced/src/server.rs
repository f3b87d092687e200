//! traced's pure server logic: decode → decide → encode, with the clock
//! and the sender given by the caller (the shell on the OS, tests on the
//! host).

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use nexus_trace::SpanRecord;

use nexus_wire::{answer, Answer, Header, Rejects, Status};

use crate::config::Config;
use crate::correlate::{Completed, Correlator, Origin, TracedSpan};
use crate::jsonl;
use crate::proto::{self, Reply, Request, TraceSummary, TracedStats};

/// traced's state: the correlator and the most recently completed traces
/// (at most `Config::recent_traces`, oldest dropped first and counted).
#[derive(Debug)]
pub struct Traced {
    node: u64,
    recent_cap: usize,
    correlator: Correlator,
    recent: VecDeque<Completed>,
    batches: u64,
    spans_received: u64,
    recent_evicted: u64,
    rejects: Rejects,
    scratch: Vec<Completed>,
    /// Local spans waiting to go to the collector node (`None`: this node
    /// does not forward). Bounded by `forward_cap`, oldest dropped.
    forward: Option<VecDeque<(u32, SpanRecord)>>,
    forward_cap: usize,
    forward_dropped: u64,
    /// Completed traces waiting for the store (`None`: no store). Bounded
    /// by `export_cap`, oldest dropped.
    export: Option<VecDeque<Completed>>,
    export_cap: usize,
    export_dropped: u64,
    /// Completed traces holding a span whose parent was recorded on
    /// another node (a real cross-node edge).
    cross_node_traces: u64,
}

impl Traced {
    /// A collector on node `node` (its device id: the node of every span
    /// that arrives over IPC).
    pub fn new(cfg: Config, node: u64) -> Self {
        Self {
            node,
            recent_cap: cfg.recent_traces,
            correlator: Correlator::new(cfg),
            recent: VecDeque::new(),
            batches: 0,
            spans_received: 0,
            recent_evicted: 0,
            rejects: Rejects::default(),
            scratch: Vec::new(),
            forward: None,
            forward_cap: 0,
            forward_dropped: 0,
            export: None,
            export_cap: 0,
            export_dropped: 0,
            cross_node_traces: 0,
        }
    }

    /// This node's id (the node of every span that arrives over IPC).
    pub fn node(&self) -> u64 {
        self.node
    }

    /// Keeps a copy of every local span for the collector node, at most
    /// `cap` waiting (the oldest dropped first, counted).
    pub fn forward_to_collector(&mut self, cap: usize) {
        self.forward_cap = cap;
        self.forward.get_or_insert_with(VecDeque::new);
    }

    /// The oldest local span waiting for the collector, with the service
    /// it came from.
    pub fn next_forward(&mut self) -> Option<(u32, SpanRecord)> {
        self.forward.as_mut()?.pop_front()
    }

    /// Puts back a span [`next_forward`](Self::next_forward) gave that did
    /// not fit the frame being built.
    pub fn unforward(&mut self, service: u32, span: SpanRecord) {
        if let Some(q) = self.forward.as_mut() {
            q.push_front((service, span));
        }
    }

    /// Local spans dropped because the forward queue was full.
    pub fn forward_dropped(&self) -> u64 {
        self.forward_dropped
    }

    /// Keeps every completed trace for a store, at most `cap` waiting
    /// (the oldest dropped first, counted).
    pub fn export_completed(&mut self, cap: usize) {
        self.export_cap = cap;
        self.export.get_or_insert_with(VecDeque::new);
    }

    /// The oldest completed trace waiting for the store.
    pub fn next_export(&mut self) -> Option<Completed> {
        self.export.as_mut()?.pop_front()
    }

    /// Completed traces the store never got (its queue was full).
    pub fn export_dropped(&self) -> u64 {
        self.export_dropped
    }

    /// True if `trace` completed recently here and is not open again.
    pub fn completed_recently(&self, trace: nexus_trace::TraceId) -> bool {
        self.correlator.completed_recently(trace)
    }

    /// The local spans of the completed traces held (oldest trace first),
    /// at most `max`, with the service each came from: what a forwarder
    /// replays to a collector that just connected.
    pub fn recent_local_spans(&self, max: usize) -> Vec<(u32, SpanRecord)> {
        let mut out: Vec<(u32, SpanRecord)> = self
            .recent
            .iter()
            .rev()
            .flat_map(|t| t.spans.iter())
            .filter(|s| s.offset.is_none() && s.origin.node == self.node)
            .take(max)
            .map(|s| (s.origin.service, s.record.clone()))
            .collect();
        out.reverse();
        out
    }

    /// Completed traces with a cross-node parent edge.
    pub fn cross_node_traces(&self) -> u64 {
        self.cross_node_traces
    }

    /// Handles one IPC frame from `sender` (stamped by the transport) at
    /// `now_ns`.
    pub fn handle(&mut self, now_ns: u64, sender: u32, frame: &[u8]) -> Answer {
        let oneway = proto::Op::Spans.as_u8();
        let (h, req) = match proto::decode_request(frame) {
            Ok(x) => x,
            Err((status, h)) => {
                let h = h.unwrap_or(Header::request(proto::MAGIC, proto::VERSION, oneway, 0));
                return answer(&mut self.rejects, &h, oneway, &Reply::Rejected(status));
            }
        };
        let reply = match req {
            Request::Spans(spans) => {
                let n = spans.len();
                let origin = Origin {
                    node: self.node,
                    service: sender,
                };
                for s in spans {
                    if let Some(q) = self.forward.as_mut() {
                        if q.len() >= self.forward_cap {
                            q.pop_front();
                            self.forward_dropped += 1;
                        }
                        if self.forward_cap > 0 {
                            q.push_back((sender, s.clone()));
                        }
                    }
                    self.ingest(now_ns, TracedSpan::local(s, origin));
                }
                self.batches += 1;
                self.spans_received += n as u64;
                Reply::Spans(u8::try_from(n).unwrap_or(u8::MAX))
            }
            Request::Trace(id) => match self.recent.iter().rev().find(|t| t.trace == id) {
                Some(t) => {
                    let mut line = Vec::new();
                    match jsonl::write_line(t, &mut line) {
                        Ok(()) => {
                            line.pop();
                            Reply::Trace(String::from_utf8(line).unwrap_or_default())
                        }
                        Err(_) => Reply::Rejected(Status::InvalidArgs),
                    }
                }
                None => Reply::Rejected(Status::Unavailable),
            },
            Request::Recent(max) => Reply::Recent(
                self.recent
                    .iter()
                    .rev()
                    .take(usize::from(max))
                    .map(summary)
                    .collect(),
            ),
            Request::Stats => Reply::Stats(self.stats()),
            // Only a collecting service knows offsets (it answers before
            // the core is asked).
            Request::Offsets => Reply::Rejected(Status::Unavailable),
        };
        answer(&mut self.rejects, &h, oneway, &reply)
    }

    /// Adds a span from anywhere (IPC, a peer's `obs.traces` stream with
    /// its clock offset, logd's span-end records).
    pub fn ingest(&mut self, now_ns: u64, span: TracedSpan) {
        let (_, evicted) = self.correlator.ingest(now_ns, span);
        if let Some(c) = evicted {
            self.keep(c);
        }
    }

    /// Periodic work: completes idle traces.
    pub fn tick(&mut self, now_ns: u64) {
        let mut done = core::mem::take(&mut self.scratch);
        self.correlator.tick(now_ns, &mut done);
        for c in done.drain(..) {
            self.keep(c);
        }
        self.scratch = done;
    }

    fn keep(&mut self, c: Completed) {
        if crosses_nodes(&c) {
            self.cross_node_traces += 1;
        }
        if let Some(q) = self.export.as_mut() {
            if q.len() >= self.export_cap {
                q.pop_front();
                self.export_dropped += 1;
            }
            if self.export_cap > 0 {
                q.push_back(c.clone());
            }
        }
        if self.recent_cap == 0 {
            self.recent_evicted += 1;
            return;
        }
        while self.recent.len() >= self.recent_cap {
            self.recent.pop_front();
            self.recent_evicted += 1;
        }
        self.recent.push_back(c);
    }

    /// Completed traces held, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &Completed> {
        self.recent.iter()
    }

    /// Traces being assembled.
    pub fn active(&self) -> usize {
        self.correlator.active()
    }

    /// Counters.
    pub fn stats(&self) -> TracedStats {
        TracedStats {
            correlator: self.correlator.stats(),
            batches: self.batches,
            spans_received: self.spans_received,
            recent_evicted: self.recent_evicted,
            rejects: self.rejects,
        }
    }
}

/// A span in `t` whose parent span, also in `t`, came from another node.
fn crosses_nodes(t: &Completed) -> bool {
    t.spans.iter().any(|child| {
        child.record.parent.is_some_and(|p| {
            t.spans
                .iter()
                .any(|s| s.record.context.span == p && s.origin.node != child.origin.node)
        })
    })
}

fn summary(t: &Completed) -> TraceSummary {
    TraceSummary {
        trace: t.trace,
        spans: u16::try_from(t.spans.len()).unwrap_or(u16::MAX),
        start_ns: t
            .spans
            .iter()
            .map(TracedSpan::aligned_start_ns)
            .min()
            .unwrap_or(0),
        end_ns: t
            .spans
            .iter()
            .map(TracedSpan::aligned_end_ns)
            .max()
            .unwrap_or(0),
        continuation: t.continuation,
    }
}

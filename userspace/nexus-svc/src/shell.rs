//! The one shell every service runs in.

use alloc::format;
use alloc::vec::Vec;

use nexus_ipc::{Endpoint, ServiceId};
use nexus_metrics::reporter::Reporter;
use nexus_wire::Status;

use crate::node::{Task, TaskIo};
use crate::{Ctx, Event, Links, Persist, Service, ShellStats, METRICSD, REPORT_INTERVAL_NS};

/// The reject statuses that get a console marker the first time a service
/// produces them (the evidence is the status itself, seen in the service).
const MARKED: [Status; 3] = [Status::InvalidArgs, Status::OverLimit, Status::RateLimited];

/// What one [`Shell::step`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Frames handled.
    pub frames: u32,
    /// Entries the persistence buffered.
    pub saved: u32,
    /// Frames the service sent (replies, exports, reports).
    pub sent: u32,
    /// The service made progress outside IPC ([`crate::Ctx::progressed`]).
    pub progressed: bool,
}

impl StepReport {
    /// Whether the step did anything (a scheduler polls again if so).
    pub fn worked(&self) -> bool {
        self.frames > 0 || self.saved > 0 || self.sent > 0 || self.progressed
    }
}

/// A service, its persistence, its links and its self-reporting.
#[derive(Debug)]
pub struct Shell<S, P> {
    svc: S,
    persist: P,
    links: Links,
    reporter: Option<Reporter>,
    last_report_ns: Option<u64>,
    marked: [bool; MARKED.len()],
    stats: ShellStats,
    events: Vec<Event>,
}

impl<S: Service, P: Persist<S>> Shell<S, P> {
    /// A shell for `svc`. If the service declares self-metrics and `links`
    /// has [`METRICSD`], it reports them there every
    /// [`REPORT_INTERVAL_NS`].
    pub fn new(svc: S, persist: P, links: Links) -> Self {
        let specs = svc.self_metrics();
        let reporter = match links.get(METRICSD) {
            Some(md) if !specs.is_empty() => Some(Reporter::new(md, specs)),
            _ => None,
        };
        Self {
            svc,
            persist,
            links,
            reporter,
            last_report_ns: None,
            marked: [false; MARKED.len()],
            stats: ShellStats::default(),
            events: Vec::new(),
        }
    }

    /// The service core.
    pub fn service(&self) -> &S {
        &self.svc
    }

    /// The service core, mutably (tests, restore).
    pub fn service_mut(&mut self) -> &mut S {
        &mut self.svc
    }

    /// The persistence (e.g. to take the device back in tests).
    pub fn persist_mut(&mut self) -> &mut P {
        &mut self.persist
    }

    /// The service and its persistence, back (tests reopen a store to
    /// simulate a reboot).
    pub fn into_parts(self) -> (S, P) {
        (self.svc, self.persist)
    }

    /// The shell's counters.
    pub fn stats(&self) -> ShellStats {
        self.stats
    }

    /// The links the service was started with.
    pub fn links(&self) -> &Links {
        &self.links
    }

    /// Handles everything queued at `now_ns`, ticks, persists, reports.
    /// `console` gets `<name>: reject <status>` the first time the service
    /// refuses with a marked status.
    pub fn step(
        &mut self,
        ep: &mut dyn Endpoint,
        now_ns: u64,
        console: &mut dyn FnMut(&str),
    ) -> StepReport {
        let mut out = StepReport::default();
        let mut sent = 0u32;
        let progress_before = self.stats.progress;
        while let Some(frame) = ep.try_recv() {
            out.frames = out.frames.saturating_add(1);
            self.stats.frames = self.stats.frames.saturating_add(1);
            if self.reporter.as_mut().is_some_and(|r| r.on_frame(&frame)) {
                continue;
            }
            self.with_ctx(ep, now_ns, &mut sent, |svc, cx| {
                svc.handle(cx, frame.meta.sender, &frame.bytes)
            });
        }
        self.with_ctx(ep, now_ns, &mut sent, |svc, cx| svc.tick(cx));
        out.saved = self.persist.save(&mut self.svc);
        if (out.saved > 0 || out.frames > 0) && !self.persist.flush() {
            self.stats.flush_failures = self.stats.flush_failures.saturating_add(1);
        }
        if self.report_due(now_ns) {
            if let Some(rep) = self.reporter.as_mut() {
                self.last_report_ns = Some(now_ns);
                let mut values = Vec::new();
                self.svc.self_metric_values(now_ns, &mut values);
                rep.report(
                    &mut CountingEp {
                        ep,
                        sent: &mut sent,
                    },
                    &values,
                );
                self.stats.reports = self.stats.reports.saturating_add(1);
            }
        }
        out.sent = sent;
        out.progressed = self.stats.progress != progress_before;
        for e in core::mem::take(&mut self.events) {
            let s = match e {
                Event::Rejected(s) => s,
                Event::Console(line) => {
                    console(&line);
                    continue;
                }
            };
            if let Some(seen) = MARKED
                .iter()
                .position(|m| *m == s)
                .and_then(|i| self.marked.get_mut(i))
            {
                if !*seen {
                    *seen = true;
                    console(&format!("{}: reject {}", self.svc.name(), s.as_str()));
                }
            }
        }
        out
    }

    /// Runs `f` on the service with a context over `ep` that counts sends.
    fn with_ctx(
        &mut self,
        ep: &mut dyn Endpoint,
        now_ns: u64,
        sent: &mut u32,
        f: impl FnOnce(&mut S, &mut Ctx<'_>),
    ) {
        let mut counting = CountingEp { ep, sent };
        let mut cx = Ctx::new(
            now_ns,
            &mut counting,
            &self.links,
            &mut self.events,
            &mut self.stats,
        );
        f(&mut self.svc, &mut cx);
    }

    fn report_due(&self, now_ns: u64) -> bool {
        self.reporter.is_some()
            && self
                .last_report_ns
                .is_none_or(|t| now_ns.saturating_sub(t) >= REPORT_INTERVAL_NS)
    }
}

impl<S: Service, P: Persist<S>> Task for Shell<S, P> {
    fn name(&self) -> &str {
        self.svc.name()
    }

    fn poll(&mut self, io: &mut TaskIo<'_>) -> bool {
        let now = io.now_ns;
        self.step(io.ep, now, io.console).worked()
    }
}

/// An endpoint that counts the frames a service sent through it.
struct CountingEp<'a, 'b> {
    ep: &'a mut dyn Endpoint,
    sent: &'b mut u32,
}

impl Endpoint for CountingEp<'_, '_> {
    fn id(&self) -> ServiceId {
        self.ep.id()
    }
    fn send(&mut self, to: ServiceId, frame: &[u8]) -> Result<(), nexus_ipc::SendError> {
        let r = self.ep.send(to, frame);
        if r.is_ok() {
            *self.sent = self.sent.saturating_add(1);
        }
        r
    }
    fn try_recv(&mut self) -> Option<nexus_ipc::Frame> {
        self.ep.try_recv()
    }
    fn recv_timeout(&mut self, timeout_ns: u64) -> Option<nexus_ipc::Frame> {
        self.ep.recv_timeout(timeout_ns)
    }
}

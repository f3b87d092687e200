//! The generic shell and node with a toy service: frames, replies, ticks,
//! persistence, first-reject markers, self-metric reports, idle waits.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::RefCell;
use std::rc::Rc;

use nexus_bounds::ManualClock;
use nexus_ipc::router::RouterConfig;
use nexus_ipc::{Endpoint, ServiceId};
use nexus_metrics::proto::{self, Reply};
use nexus_metrics::reporter::Spec;
use nexus_metrics::MetricKind;
use nexus_svc::node::{Idle, Node};
use nexus_svc::{
    Ctx, Event, InMemory, Links, Persist, Service, Shell, METRICSD, REPORT_INTERVAL_NS,
};
use nexus_wire::Status;

/// Echoes every frame back; a frame starting with 0xFF is refused with
/// `invalid_args`; every frame is "unsaved" until the persistence takes it.
#[derive(Default)]
struct Echo {
    handled: u64,
    ticks: u64,
    unsaved: Vec<Vec<u8>>,
}

const SPECS: [Spec; 1] = [Spec {
    kind: MetricKind::Counter,
    name: "echo_frames_total",
}];

impl Service for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn handle(&mut self, cx: &mut Ctx<'_>, sender: ServiceId, frame: &[u8]) {
        self.handled += 1;
        if frame.first() == Some(&0xFF) {
            cx.event(Event::Rejected(Status::InvalidArgs));
            return;
        }
        self.unsaved.push(frame.to_vec());
        let _ = cx.send(sender, frame);
    }
    fn tick(&mut self, _cx: &mut Ctx<'_>) {
        self.ticks += 1;
    }
    fn self_metrics(&self) -> &'static [Spec] {
        &SPECS
    }
    fn self_metric_values(&self, _now_ns: u64, out: &mut Vec<i64>) {
        out.push(self.handled as i64);
    }
    fn discard_unsaved(&mut self) {
        self.unsaved.clear();
    }
}

/// Records what it was given.
#[derive(Default, Clone)]
struct Log(Rc<RefCell<(Vec<Vec<u8>>, u32)>>);

impl Persist<Echo> for Log {
    fn save(&mut self, svc: &mut Echo) -> u32 {
        let n = svc.unsaved.len() as u32;
        self.0.borrow_mut().0.append(&mut svc.unsaved);
        n
    }
    fn flush(&mut self) -> bool {
        self.0.borrow_mut().1 += 1;
        true
    }
}

fn node() -> (Node<Rc<ManualClock>>, Rc<RefCell<Vec<String>>>) {
    let lines = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&lines);
    let node = Node::new(
        RouterConfig::default(),
        Rc::new(ManualClock::new(0)),
        Idle::ReturnWhenIdle,
        Box::new(move |l: &str| sink.borrow_mut().push(l.to_string())),
    );
    (node, lines)
}

#[test]
fn frames_are_handled_replied_persisted_and_first_rejects_marked_once() {
    let (node, lines) = node();
    let echo = node.register("echo").unwrap();
    let app = node.register("app").unwrap();
    let log = Log::default();
    node.add_task(
        echo,
        Box::new(Shell::new(Echo::default(), log.clone(), Links::new())),
    );
    let mut ep = node.endpoint(app);
    for f in [&b"one"[..], &[0xFF], b"two", &[0xFF, 1]] {
        ep.send(echo, f).unwrap();
    }
    node.settle(10);
    let replies: Vec<Vec<u8>> = std::iter::from_fn(|| ep.try_recv())
        .map(|f| {
            assert_eq!(f.meta.sender, echo, "stamped by the router");
            f.bytes
        })
        .collect();
    assert_eq!(replies, [b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(log.0.borrow().0, [b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(log.0.borrow().1, 1, "one flush for the step that saved");
    assert_eq!(*lines.borrow(), ["echo: reject invalid_args"]);
}

#[test]
fn in_memory_persistence_discards_so_nothing_piles_up() {
    let (node, _) = node();
    let echo = node.register("echo").unwrap();
    let app = node.register("app").unwrap();
    let mut shell = Shell::new(Echo::default(), InMemory, Links::new());
    let mut ep = node.endpoint(app);
    ep.send(echo, b"x").unwrap();
    let r = shell.step(&mut node.endpoint(echo), 0, &mut |_| {});
    assert_eq!((r.frames, r.saved, r.sent), (1, 0, 1));
    assert!(shell.service().unsaved.is_empty());
    assert_eq!(shell.service().ticks, 1);
}

#[test]
fn self_metrics_are_reported_to_the_metricsd_link_every_interval() {
    let (node, _) = node();
    let echo = node.register("echo").unwrap();
    let md = node.register(METRICSD).unwrap();
    let app = node.register("app").unwrap();
    let mut links = Links::new();
    links.insert(METRICSD, md);
    let mut shell = Shell::new(Echo::default(), InMemory, links);
    let mut md_ep = node.endpoint(md);
    let mut step = |now| shell.step(&mut node.endpoint(echo), now, &mut |_| {});
    step(0);
    // Play metricsd: answer the registration.
    let reg = md_ep
        .try_recv()
        .expect("registration goes out at the first step");
    assert_eq!(reg.meta.sender, echo);
    let (h, _) = proto::decode_request(&reg.bytes).unwrap();
    md_ep
        .send(echo, &proto::encode_reply(&h, &Reply::Registered(7)))
        .unwrap();
    step(1);
    assert!(md_ep.try_recv().is_none(), "not before the interval");
    // The counter moves: the next report carries it.
    node.endpoint(app).send(echo, b"x").unwrap();
    step(REPORT_INTERVAL_NS);
    let batch = md_ep.try_recv().expect("a report once registered and due");
    assert!(matches!(
        proto::decode_request(&batch.bytes),
        Ok((_, proto::Request::Batch { .. }))
    ));
    step(REPORT_INTERVAL_NS + 1);
    assert!(md_ep.try_recv().is_none(), "one report per interval");
}

#[test]
fn without_a_metricsd_link_nothing_is_reported() {
    let (node, _) = node();
    let echo = node.register("echo").unwrap();
    let md = node.register(METRICSD).unwrap();
    let mut shell = Shell::new(Echo::default(), InMemory, Links::new());
    let r = shell.step(&mut node.endpoint(echo), 0, &mut |_| {});
    assert_eq!(r.sent, 0);
    assert!(node.endpoint(md).try_recv().is_none());
    assert_eq!(shell.stats().reports, 0);
}

#[test]
fn a_waiting_app_runs_the_tasks_and_gives_up_when_idle() {
    let (node, _) = node();
    let echo = node.register("echo").unwrap();
    let app = node.register("app").unwrap();
    node.add_task(
        echo,
        Box::new(Shell::new(Echo::default(), InMemory, Links::new())),
    );
    let mut ep = node.endpoint(app);
    ep.send(echo, b"ping").unwrap();
    let f = ep.recv_timeout(u64::MAX).unwrap();
    assert_eq!(f.bytes, b"ping");
    // Nothing will ever answer: with a manual clock the wait ends when a
    // whole round did nothing, instead of spinning forever.
    assert!(ep.recv_timeout(u64::MAX).is_none());
}

#[test]
fn links_resolve_by_name() {
    let mut l = Links::new();
    l.insert("logd", ServiceId::new(3));
    l.insert("logd", ServiceId::new(4));
    assert_eq!(l.get("logd"), Some(ServiceId::new(4)));
    assert_eq!(l.get("metricsd"), None);
    assert_eq!(l.iter().count(), 1);
}

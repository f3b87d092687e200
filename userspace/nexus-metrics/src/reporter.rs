//! A reporter for services: metrics without ever waiting.
//!
//! A service (logd, say) must not block on a reply, so it cannot use the
//! blocking [`crate::Metrics`] client. A [`Reporter`] sends its REGISTER
//! requests, recognises metricsd's replies among the frames the service
//! receives ([`Reporter::on_frame`]), and once a series has an id, reports
//! it in one-way BATCH frames ([`Reporter::report`]): gauges as SET,
//! counters as INC of the increase since the last report.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use nexus_ipc::correlate::NonceGen;
use nexus_ipc::{Endpoint, Frame, ServiceId};

use crate::proto::{self, Entry, Register, Reply, Status};
use crate::types::MetricKind;

/// One metric a service reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Counter or gauge.
    pub kind: MetricKind,
    /// Metric name (validated by metricsd).
    pub name: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Unsent,
    /// Sent with this nonce, `u32` reports ago.
    Pending(u64, u32),
    Ready(u32),
    /// metricsd refused it for good (bad name, cap reached).
    Refused,
}

/// Reports a registration may stay unanswered before it is sent again (the
/// reply may have been lost to a full queue).
pub const RESEND_AFTER_REPORTS: u32 = 5;

/// Registers and reports a fixed set of metrics without blocking.
#[derive(Debug)]
pub struct Reporter {
    metricsd: ServiceId,
    specs: Vec<Spec>,
    state: Vec<State>,
    last: Vec<i64>,
    nonces: NonceGen,
    pending: BTreeMap<u64, usize>,
    sent: u64,
    failed: u64,
}

impl Reporter {
    /// A reporter of `specs` to metricsd at `metricsd`.
    pub fn new(metricsd: ServiceId, specs: &[Spec]) -> Self {
        Self {
            metricsd,
            specs: Vec::from(specs),
            state: alloc::vec![State::Unsent; specs.len()],
            last: alloc::vec![0; specs.len()],
            nonces: NonceGen::default(),
            pending: BTreeMap::new(),
            sent: 0,
            failed: 0,
        }
    }

    /// Takes `f` if it is metricsd's reply to one of our registrations.
    /// Returns whether it was consumed (the service must not handle it).
    pub fn on_frame(&mut self, f: &Frame) -> bool {
        if f.meta.sender != self.metricsd {
            return false;
        }
        // metricsd also sends the service requests of its own (its exports
        // to logd): only metricsd-protocol replies are ours.
        let Ok((h, reply)) = proto::decode_reply(&f.bytes) else {
            return false;
        };
        let Some(i) = self.pending.remove(&h.nonce) else {
            return false; // a reply, but not to us (e.g. a stale nonce)
        };
        if let Some(st) = self.state.get_mut(i) {
            *st = match reply {
                Reply::Registered(id) => State::Ready(id),
                // Budget and transient refusals are retried; the rest is final.
                Reply::Rejected(Status::RateLimited) => State::Unsent,
                _ => State::Refused,
            };
        }
        true
    }

    /// True once every metric has a series (or was refused).
    pub fn registered(&self) -> bool {
        self.state
            .iter()
            .all(|s| matches!(s, State::Ready(_) | State::Refused))
    }

    /// One-way frames sent, and sends that failed.
    pub fn counts(&self) -> (u64, u64) {
        (self.sent, self.failed)
    }

    /// Sends registrations still needed, and a BATCH of `values` (one per
    /// spec, in order) for the metrics that have a series. Never waits.
    pub fn report<E: Endpoint>(&mut self, ep: &mut E, values: &[i64]) {
        for st in self.state.iter_mut() {
            if let State::Pending(nonce, age) = st {
                if *age >= RESEND_AFTER_REPORTS {
                    self.pending.remove(nonce);
                    *st = State::Unsent;
                } else {
                    *age += 1;
                }
            }
        }
        for (i, spec) in self.specs.iter().enumerate() {
            if self.state.get(i) != Some(&State::Unsent) {
                continue;
            }
            let nonce = self.nonces.next_nonce();
            let reg = Register {
                kind: spec.kind as u8,
                name: spec.name,
                labels: Vec::new(),
                bounds: Vec::new(),
                help: "",
            };
            let Ok(frame) = proto::encode_register(nonce, &reg) else {
                continue;
            };
            if ep.send(self.metricsd, &frame).is_ok() {
                self.pending.insert(nonce, i);
                if let Some(st) = self.state.get_mut(i) {
                    *st = State::Pending(nonce, 0);
                }
            } else {
                self.failed += 1;
            }
        }
        let before = self.last.clone();
        let mut entries = Vec::new();
        for (i, (spec, v)) in self.specs.iter().zip(values).enumerate() {
            let (Some(State::Ready(series)), Some(last)) =
                (self.state.get(i), self.last.get_mut(i))
            else {
                continue;
            };
            match spec.kind {
                MetricKind::Counter if *v > *last => {
                    entries.push(Entry::Inc {
                        series: *series,
                        delta: v.abs_diff(*last),
                    });
                    *last = *v;
                }
                MetricKind::Gauge if *v != *last => {
                    entries.push(Entry::Set {
                        series: *series,
                        value: *v,
                    });
                    *last = *v;
                }
                _ => {}
            }
        }
        if entries.is_empty() {
            return;
        }
        let Ok(frame) = proto::encode_batch(self.nonces.next_nonce(), true, &entries) else {
            return;
        };
        if ep.send(self.metricsd, &frame).is_ok() {
            self.sent += 1;
        } else {
            self.failed += 1;
            // Not sent: report the same changes next time.
            self.last = before;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use nexus_ipc::router::{Router, RouterConfig};
    use nexus_ipc::FrameMeta;

    #[test]
    fn registers_without_waiting_then_reports_deltas_and_values() {
        let mut r = Router::new(RouterConfig::default());
        let svc = r.register("svc").unwrap();
        let md = r.register("metricsd").unwrap();
        struct Ep<'a>(&'a mut Router, ServiceId);
        impl Endpoint for Ep<'_> {
            fn id(&self) -> ServiceId {
                self.1
            }
            fn send(&mut self, to: ServiceId, f: &[u8]) -> Result<(), nexus_ipc::SendError> {
                self.0.send(self.1, to, f)
            }
            fn try_recv(&mut self) -> Option<Frame> {
                self.0.recv(self.1)
            }
            fn recv_timeout(&mut self, _: u64) -> Option<Frame> {
                self.try_recv()
            }
        }
        let specs = [
            Spec {
                kind: MetricKind::Counter,
                name: "appended_total",
            },
            Spec {
                kind: MetricKind::Gauge,
                name: "records",
            },
        ];
        let mut rep = Reporter::new(md, &specs);
        rep.report(&mut Ep(&mut r, svc), &[5, 2]);
        // Two registrations went out; nothing is reported before the ids.
        let mut regs = Vec::new();
        while let Some(f) = r.recv(md) {
            let (h, req) = proto::decode_request(&f.bytes).unwrap();
            assert!(matches!(req, proto::Request::Register(_)));
            regs.push(h);
        }
        assert_eq!(regs.len(), 2);
        assert!(!rep.registered());
        for (i, h) in regs.iter().enumerate() {
            let reply = proto::encode_reply(h, &Reply::Registered(10 + i as u32));
            let f = Frame {
                meta: FrameMeta { sender: md },
                bytes: reply,
            };
            assert!(rep.on_frame(&f));
        }
        assert!(rep.registered());
        let other = Frame {
            meta: FrameMeta { sender: svc },
            bytes: alloc::vec![1],
        };
        assert!(
            !rep.on_frame(&other),
            "frames from others are the service's"
        );
        rep.report(&mut Ep(&mut r, svc), &[5, 2]);
        rep.report(&mut Ep(&mut r, svc), &[9, 2]);
        let batches: Vec<_> = core::iter::from_fn(|| r.recv(md))
            .map(|f| match proto::decode_request(&f.bytes).unwrap().1 {
                proto::Request::Batch {
                    oneway: true,
                    entries,
                } => entries
                    .iter()
                    .map(|e| alloc::format!("{e:?}"))
                    .collect::<Vec<_>>(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            batches,
            [
                alloc::vec![
                    "Inc { series: 10, delta: 5 }".to_string(),
                    "Set { series: 11, value: 2 }".into()
                ],
                alloc::vec!["Inc { series: 10, delta: 4 }".to_string()],
            ]
        );
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;
    use nexus_ipc::router::{Router, RouterConfig};
    use nexus_ipc::FrameMeta;

    struct Ep<'a>(&'a mut Router, ServiceId);
    impl Endpoint for Ep<'_> {
        fn id(&self) -> ServiceId {
            self.1
        }
        fn send(&mut self, to: ServiceId, f: &[u8]) -> Result<(), nexus_ipc::SendError> {
            self.0.send(self.1, to, f)
        }
        fn try_recv(&mut self) -> Option<Frame> {
            self.0.recv(self.1)
        }
        fn recv_timeout(&mut self, _: u64) -> Option<Frame> {
            self.try_recv()
        }
    }

    #[test]
    fn lost_or_rate_limited_registrations_are_sent_again() {
        let mut r = Router::new(RouterConfig::default());
        let svc = r.register("svc").unwrap();
        let md = r.register("metricsd").unwrap();
        let mut rep = Reporter::new(
            md,
            &[Spec {
                kind: MetricKind::Gauge,
                name: "g",
            }],
        );
        rep.report(&mut Ep(&mut r, svc), &[1]);
        let first = r.recv(md).unwrap();
        // The reply is "lost": after RESEND_AFTER_REPORTS reports it goes again.
        for _ in 0..RESEND_AFTER_REPORTS {
            rep.report(&mut Ep(&mut r, svc), &[1]);
            assert!(r.recv(md).is_none());
        }
        rep.report(&mut Ep(&mut r, svc), &[1]);
        let second = r.recv(md).unwrap();
        assert_ne!(first.bytes, second.bytes, "a fresh nonce");
        // Rate limited: retried at the next report.
        let (h, _) = proto::decode_request(&second.bytes).unwrap();
        let limited = proto::encode_reply(&h, &Reply::Rejected(Status::RateLimited));
        assert!(rep.on_frame(&Frame {
            meta: FrameMeta { sender: md },
            bytes: limited
        }));
        rep.report(&mut Ep(&mut r, svc), &[1]);
        let third = r.recv(md).unwrap();
        let (h, _) = proto::decode_request(&third.bytes).unwrap();
        let ok = proto::encode_reply(&h, &Reply::Registered(7));
        assert!(rep.on_frame(&Frame {
            meta: FrameMeta { sender: md },
            bytes: ok
        }));
        assert!(rep.registered());
    }
}

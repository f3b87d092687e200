//! Mux v2 against itself: a loopback pair (initiator and responder) moving
//! frames in memory, plus hand-made hostile frames and fuzzing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeSet, VecDeque};

use dsoftbus::mux::wire::{self, Frame, OpenMeta};
use dsoftbus::mux::*;
use proptest::prelude::*;

const T0: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

fn cfg() -> MuxConfig {
    MuxConfig {
        max_streams: 8,
        window: 4096,
        max_frame_payload: 512,
        max_buffered_total: 1 << 20,
        keepalive_interval_ns: 0,
        keepalive_timeout_ns: 0,
    }
}

fn allow_all(_: &str) -> bool {
    true
}

fn raw(f: Frame<'_>) -> Vec<u8> {
    f.to_vec().unwrap()
}

fn open_frame(stream: u32, window: u32, name: &str) -> Vec<u8> {
    let meta = OpenMeta {
        name,
        priority: 0,
        trace: None,
    }
    .to_vec()
    .unwrap();
    raw(Frame::Open {
        stream,
        window,
        meta: &meta,
    })
}

/// (type byte, stream) of an encoded frame.
fn kind(frame: &[u8]) -> (u8, u32) {
    let f = Frame::parse(frame).unwrap();
    (f.type_byte(), f.stream())
}

/// A mux past the greeting: the peer's CAPS (trace on) received, its own
/// CAPS transmitted.
fn greeted(role: Role, c: MuxConfig) -> Mux {
    let mut m = Mux::new(role, c, T0);
    m.on_frame(&raw(Frame::Caps { caps: LOCAL_CAPS }), T0, &mut allow_all)
        .unwrap();
    let caps = m.poll_transmit(T0).unwrap();
    assert_eq!(kind(&caps), (wire::TYPE_CAPS, 0));
    assert!(m.trace_on());
    m
}

fn drain_tx(m: &mut Mux, now: u64) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| m.poll_transmit(now)).collect()
}

fn drain_events(m: &mut Mux) -> Vec<Event> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn is_violation(r: Result<(), MuxError>) -> bool {
    matches!(r, Err(MuxError::ProtocolViolation(_)))
}

/// Two muxes wired back to back.
struct Pair {
    a: Mux,
    b: Mux,
    now: u64,
    policy_a: fn(&str) -> bool,
    policy_b: fn(&str) -> bool,
    ev_a: Vec<Event>,
    ev_b: Vec<Event>,
}

impl Pair {
    fn new(ca: MuxConfig, cb: MuxConfig) -> Self {
        Self {
            a: Mux::new(Role::Initiator, ca, T0),
            b: Mux::new(Role::Responder, cb, T0),
            now: T0,
            policy_a: allow_all,
            policy_b: allow_all,
            ev_a: Vec::new(),
            ev_b: Vec::new(),
        }
        .greeted()
    }

    /// Both CAPS delivered: the session as the application first sees it.
    fn greeted(mut self) -> Self {
        assert_eq!(self.a_to_b() + self.b_to_a(), 2);
        assert!(self.a.trace_on() && self.b.trace_on());
        self
    }

    fn a_to_b(&mut self) -> usize {
        let frames = drain_tx(&mut self.a, self.now);
        for f in &frames {
            self.b.on_frame(f, self.now, &mut self.policy_b).unwrap();
        }
        frames.len()
    }

    fn b_to_a(&mut self) -> usize {
        let frames = drain_tx(&mut self.b, self.now);
        for f in &frames {
            self.a.on_frame(f, self.now, &mut self.policy_a).unwrap();
        }
        frames.len()
    }

    /// Moves frames both ways until both sides are quiet, then collects
    /// events.
    fn pump(&mut self) {
        while self.a_to_b() + self.b_to_a() > 0 {}
        self.ev_a.extend(drain_events(&mut self.a));
        self.ev_b.extend(drain_events(&mut self.b));
    }

    /// Opens a stream from a and gets it accepted by b.
    fn open_ab(&mut self, name: &str) -> u32 {
        let s = self.a.open(name, 0, None).unwrap();
        self.pump();
        assert!(self.ev_a.contains(&Event::Accepted { stream: s }));
        s
    }

    fn read_all(m: &mut Mux, stream: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            let n = m.recv(stream, &mut buf).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }
}

// ---- round trip --------------------------------------------------------

#[test]
fn open_accept_data_close_round_trip() {
    let mut p = Pair::new(cfg(), cfg());
    let s = p.a.open("obs.logs", 3, None).unwrap();
    assert_eq!(s, 1, "initiator opens odd ids");
    assert_eq!(p.a.stream_count(), 1);
    p.pump();
    assert_eq!(
        p.ev_b,
        [Event::Opened {
            stream: s,
            name: "obs.logs".into(),
            priority: 3,
            trace: None
        }]
    );
    assert_eq!(p.ev_a, [Event::Accepted { stream: s }]);
    p.ev_a.clear();
    p.ev_b.clear();

    assert_eq!(p.a.send(s, b"hello").unwrap(), 5);
    assert_eq!(p.b.send(s, b"world").unwrap(), 5);
    p.pump();
    assert!(p.ev_b.contains(&Event::Readable { stream: s }));
    assert!(p.ev_a.contains(&Event::Readable { stream: s }));
    assert_eq!(Pair::read_all(&mut p.b, s), b"hello");
    assert_eq!(Pair::read_all(&mut p.a, s), b"world");

    // Half-close a→b: b can still send.
    p.a.close(s).unwrap();
    assert_eq!(p.a.send(s, b"x"), Err(StreamError::LocalClosed));
    p.pump();
    assert!(p.ev_b.contains(&Event::Closed { stream: s }));
    assert_eq!(p.b.send(s, b"late").unwrap(), 4);
    p.pump();
    assert_eq!(Pair::read_all(&mut p.a, s), b"late");
    assert_eq!(p.a.stream_count(), 1);
    assert_eq!(p.b.stream_count(), 1);

    p.b.close(s).unwrap();
    p.pump();
    assert!(p.ev_a.contains(&Event::Closed { stream: s }));
    assert_eq!(p.a.stream_count(), 0);
    assert_eq!(p.b.stream_count(), 0);
    assert_eq!(p.a.buffered() + p.b.buffered(), 0);
    assert_eq!(p.a.recv(s, &mut [0; 4]), Err(StreamError::UnknownStream));
    assert_eq!(p.b.send(s, b"x"), Err(StreamError::UnknownStream));

    // The responder opens even ids, and ids are never reused.
    let r = p.b.open("obs.metrics", 0, None).unwrap();
    assert_eq!(r, 2);
    assert_eq!(p.a.open("obs.logs", 0, None).unwrap(), 3);
    p.pump();
    assert_eq!(p.a.stream_count(), 2);
    assert_eq!(p.b.stream_count(), 2);
}

#[test]
fn unread_bytes_keep_a_closed_stream_until_read() {
    let mut p = Pair::new(cfg(), cfg());
    let s = p.open_ab("obs.logs");
    p.a.send(s, b"tail").unwrap();
    p.a.close(s).unwrap();
    p.b.close(s).unwrap();
    p.pump();
    assert_eq!(p.a.stream_count(), 0);
    assert_eq!(p.b.stream_count(), 1, "four unread bytes keep it");
    assert_eq!(p.b.buffered(), 4);
    assert_eq!(Pair::read_all_until_gone(&mut p.b, s), b"tail");
    assert_eq!(p.b.stream_count(), 0);
    assert_eq!(p.b.buffered(), 0);
}

impl Pair {
    /// Reads until the stream is freed or empty.
    fn read_all_until_gone(m: &mut Mux, stream: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 3];
        while let Ok(n) = m.recv(stream, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }
}

// ---- flow control --------------------------------------------------------

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[test]
fn slow_reader_bounds_memory_and_keeps_order() {
    let window = 1024u32;
    let c = MuxConfig {
        window,
        max_frame_payload: 128,
        ..cfg()
    };
    let w = window as usize;
    let mut p = Pair::new(c, c);
    let s = p.open_ab("bulk");
    let total = 100 * w;
    let data: Vec<u8> = (0..total)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 7)) as u8)
        .collect();
    let mut sent = 0;
    let mut got = Vec::with_capacity(total);
    let mut buf = [0u8; 100];
    let (mut max_a, mut max_b) = (0, 0);
    let mut short_sends = 0;
    let mut writable = 0;
    let mut rounds = 0;
    while got.len() < total {
        rounds += 1;
        assert!(rounds < 100_000, "no progress");
        if sent < total {
            let want = total - sent;
            let room = p.a.send_capacity(s).unwrap();
            let n = p.a.send(s, &data[sent..]).unwrap();
            assert_eq!(n, room.min(want), "send takes exactly what credit allows");
            if n < want {
                short_sends += 1;
            }
            sent += n;
        }
        max_a = max_a.max(p.a.buffered());
        // One frame per round: the wire is slow too.
        if let Some(f) = p.a.poll_transmit(p.now) {
            p.b.on_frame(&f, p.now, &mut allow_all).unwrap();
        }
        max_b = max_b.max(p.b.buffered());
        assert!(p.b.buffered() <= w, "receive buffer over the window");
        assert!(p.a.buffered() <= w, "send buffer over the window");
        // The reader takes at most 100 bytes every third round.
        if rounds % 3 == 0 {
            let n = p.b.recv(s, &mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        while let Some(f) = p.b.poll_transmit(p.now) {
            assert_eq!(kind(&f).0, wire::TYPE_CREDIT);
            p.a.on_frame(&f, p.now, &mut allow_all).unwrap();
        }
        writable += drain_events(&mut p.a)
            .iter()
            .filter(|e| **e == Event::Writable { stream: s })
            .count();
        drain_events(&mut p.b);
    }
    assert_eq!(got.len(), total);
    assert_eq!(fnv1a(&got), fnv1a(&data));
    assert!(got == data, "bytes out of order");
    assert!(max_b > w / 2, "the slow reader's buffer filled up: {max_b}");
    assert!(max_a <= w);
    assert!(short_sends > 0 && writable > 0, "the sender was held back");
    assert_eq!(p.a.stats().events_dropped + p.b.stats().events_dropped, 0);
}

#[test]
fn send_never_exceeds_granted_credit() {
    let c = MuxConfig {
        window: 100,
        max_frame_payload: 64,
        ..cfg()
    };
    let mut p = Pair::new(c, c);
    let s = p.a.open("s", 0, None).unwrap();
    assert_eq!(
        p.a.send(s, &[1; 10]).unwrap(),
        0,
        "no credit before OPEN_ACK"
    );
    p.pump();
    assert!(p.ev_a.contains(&Event::Accepted { stream: s }));
    assert_eq!(p.a.send_capacity(s).unwrap(), 100);
    assert_eq!(p.a.send(s, &[1; 250]).unwrap(), 100);
    assert_eq!(p.a.send(s, &[1; 250]).unwrap(), 0);
    p.pump();
    assert_eq!(p.b.buffered(), 100);
    assert_eq!(p.a.send(s, &[1; 250]).unwrap(), 0, "reader has not read");
    assert_eq!(p.b.recv(s, &mut [0; 30]).unwrap(), 30);
    p.pump();
    // Window 100 < two frames: every read returns credit at once.
    assert!(p.ev_a.contains(&Event::Writable { stream: s }));
    assert_eq!(p.a.send(s, &[1; 250]).unwrap(), 30);
}

#[test]
fn credit_returns_at_half_window() {
    let c = MuxConfig {
        window: 4096,
        max_frame_payload: 512,
        ..cfg()
    };
    let mut p = Pair::new(c, c);
    let s = p.open_ab("s");
    p.a.send(s, &[7; 4096]).unwrap();
    p.pump();
    assert_eq!(p.b.recv(s, &mut [0; 2047]).unwrap(), 2047);
    assert!(p.b.poll_transmit(p.now).is_none(), "under half a window");
    assert_eq!(p.b.recv(s, &mut [0; 1]).unwrap(), 1);
    let f = p.b.poll_transmit(p.now).unwrap();
    assert_eq!(
        Frame::parse(&f).unwrap(),
        Frame::Credit {
            stream: s,
            increment: 2048
        }
    );
}

#[test]
fn data_beyond_credit_is_a_violation() {
    let mut b = greeted(Role::Responder, cfg());
    b.on_frame(&open_frame(1, 0, "s"), T0, &mut allow_all)
        .unwrap();
    drain_tx(&mut b, T0); // OPEN_ACK
    let ok = raw(Frame::Data {
        stream: 1,
        payload: &[0; 512],
    });
    for _ in 0..8 {
        b.on_frame(&ok, T0, &mut allow_all).unwrap();
    }
    assert_eq!(b.buffered(), 4096);
    let one_more = raw(Frame::Data {
        stream: 1,
        payload: &[0; 1],
    });
    let r = b.on_frame(&one_more, T0, &mut allow_all);
    assert_eq!(
        r,
        Err(MuxError::ProtocolViolation(
            "DATA beyond the credit granted"
        ))
    );
    assert!(b.is_dead());
    assert_eq!((b.stream_count(), b.buffered()), (0, 0));
    assert_eq!(
        b.on_frame(&ok, T0, &mut allow_all),
        Err(MuxError::SessionDead)
    );
    assert_eq!(b.open("x", 0, None), Err(OpenError::SessionDead));
}

#[test]
fn buffered_total_caps_streams_and_sends() {
    let c = MuxConfig {
        window: 1000,
        max_buffered_total: 2500,
        ..cfg()
    };
    let mut p = Pair::new(c, cfg());
    let s1 = p.open_ab("one");
    let s2 = p.open_ab("two");
    assert_eq!(p.a.open("three", 0, None), Err(OpenError::BufferLimit));
    // Two receive windows reserved: 500 bytes left for unsent data.
    assert_eq!(p.a.send(s1, &[0; 1000]).unwrap(), 500);
    assert_eq!(p.a.send(s2, &[0; 1000]).unwrap(), 0);
    assert!(p.a.buffered() <= 2500);
    p.pump();
    assert!(p.ev_a.contains(&Event::Writable { stream: s2 }));

    // The same budget refuses an incoming OPEN with REJECT 2.
    let mut p = Pair::new(cfg(), c);
    p.open_ab("one");
    p.open_ab("two");
    let s3 = p.a.open("three", 0, None).unwrap();
    p.pump();
    assert!(p.ev_a.contains(&Event::Rejected {
        stream: s3,
        reason: RejectReason::TooManyStreams
    }));
    assert_eq!(p.b.stream_count(), 2);
}

// ---- reset -------------------------------------------------------------

#[test]
fn rst_frees_both_directions_at_once() {
    let mut p = Pair::new(cfg(), cfg());
    let s = p.open_ab("s");
    p.a.send(s, &[1; 3000]).unwrap();
    p.b.send(s, &[2; 3000]).unwrap();
    p.pump();
    p.a.send(s, &[3; 1000]).unwrap();
    assert!(p.b.buffered() > 0 && p.a.buffered() > 0);
    p.b.reset(s, 42).unwrap();
    assert_eq!((p.b.stream_count(), p.b.buffered()), (0, 0));
    assert_eq!(p.b.recv(s, &mut [0; 8]), Err(StreamError::UnknownStream));
    // a's queued DATA crosses the RST on the wire: dropped, not a violation.
    p.pump();
    assert!(p.ev_a.contains(&Event::Reset {
        stream: s,
        reason: 42
    }));
    assert_eq!((p.a.stream_count(), p.a.buffered()), (0, 0));
    assert!(p.b.stats().stale_frames > 0);
    assert!(!p.a.is_dead() && !p.b.is_dead());
    assert_eq!(p.a.reset(s, 1), Err(StreamError::UnknownStream));
}

#[test]
fn reset_of_an_unsent_open_sends_nothing() {
    let mut a = greeted(Role::Initiator, cfg());
    let s = a.open("s", 0, None).unwrap();
    a.reset(s, 1).unwrap();
    assert_eq!(a.stream_count(), 0);
    assert!(a.poll_transmit(T0).is_none());
}

#[test]
fn reset_before_accept_is_seen_by_the_acceptor() {
    let mut p = Pair::new(cfg(), cfg());
    let s = p.a.open("s", 0, None).unwrap();
    p.a_to_b(); // OPEN
    p.a.reset(s, 9).unwrap(); // the OPEN_ACK is on its way
    p.b_to_a();
    p.pump();
    assert!(p.ev_b.contains(&Event::Reset {
        stream: s,
        reason: 9
    }));
    assert_eq!(p.a.stream_count() + p.b.stream_count(), 0);
    assert!(p.a.stats().stale_frames > 0, "the late OPEN_ACK is dropped");
}

// ---- keepalive -----------------------------------------------------------

#[test]
fn keepalive_pings_and_times_out() {
    let c = MuxConfig {
        keepalive_interval_ns: SEC,
        keepalive_timeout_ns: 3 * SEC,
        ..cfg()
    };
    let mut p = Pair::new(c, c);
    let s = p.open_ab("s");
    p.a.send(s, &[1; 100]).unwrap();
    // A PING goes out before the queued DATA.
    let f = p.a.poll_transmit(T0 + SEC).unwrap();
    assert_eq!(kind(&f), (wire::TYPE_PING, 0));
    p.b.on_frame(&f, T0 + SEC, &mut allow_all).unwrap();
    let f = p.b.poll_transmit(T0 + SEC).unwrap();
    assert_eq!(kind(&f).0, wire::TYPE_PONG);
    p.a.on_frame(&f, T0 + SEC, &mut allow_all).unwrap();
    assert!(p.a.buffered() > 0);

    // From now on nothing reaches a.
    p.a.tick(T0 + 2 * SEC);
    p.a.tick(T0 + 4 * SEC - 1);
    assert!(!p.a.is_dead());
    assert!(drain_events(&mut p.a).is_empty());
    p.a.tick(T0 + 4 * SEC);
    assert_eq!(drain_events(&mut p.a), [Event::PeerTimeout]);
    assert!(p.a.is_dead());
    assert_eq!((p.a.stream_count(), p.a.buffered()), (0, 0));
    assert!(p.a.poll_transmit(T0 + 5 * SEC).is_none());
    assert_eq!(p.a.open("x", 0, None), Err(OpenError::SessionDead));
    assert_eq!(p.a.send(s, b"x"), Err(StreamError::SessionDead));
    p.a.tick(T0 + 9 * SEC);
    assert!(p.a.poll_event().is_none(), "PeerTimeout is reported once");
}

#[test]
fn traffic_keeps_the_session_alive() {
    let c = MuxConfig {
        keepalive_interval_ns: SEC,
        keepalive_timeout_ns: 3 * SEC,
        ..cfg()
    };
    let mut p = Pair::new(c, c);
    for _ in 0..20 {
        p.now += SEC;
        p.a.tick(p.now);
        p.b.tick(p.now);
        p.pump();
    }
    assert!(!p.a.is_dead() && !p.b.is_dead());
    assert!(!p.ev_a.contains(&Event::PeerTimeout));
}

// ---- policy, caps --------------------------------------------------------

#[test]
fn policy_reject_keeps_no_state() {
    let mut p = Pair::new(cfg(), cfg());
    p.policy_b = |name| name.starts_with("obs.");
    let s = p.a.open("secret.keys", 0, None).unwrap();
    p.pump();
    assert!(p.ev_b.is_empty());
    assert_eq!(p.b.stream_count(), 0);
    assert_eq!(
        p.ev_a,
        [Event::Rejected {
            stream: s,
            reason: RejectReason::Policy
        }]
    );
    assert_eq!(p.a.stream_count(), 0);
    assert_eq!(p.b.stats().opens_rejected, 1);
    // The session goes on.
    let ok = p.a.open("obs.logs", 0, None).unwrap();
    p.pump();
    assert!(p.ev_a.contains(&Event::Accepted { stream: ok }));
}

#[test]
fn stream_cap_rejects_incoming_and_refuses_outgoing() {
    let small = MuxConfig {
        max_streams: 2,
        ..cfg()
    };
    let mut p = Pair::new(cfg(), small);
    let s1 = p.open_ab("one");
    p.open_ab("two");
    let s3 = p.a.open("three", 0, None).unwrap();
    p.pump();
    assert!(p.ev_a.contains(&Event::Rejected {
        stream: s3,
        reason: RejectReason::TooManyStreams
    }));
    assert_eq!(p.b.stream_count(), 2);

    let mut a = greeted(Role::Initiator, small);
    a.open("one", 0, None).unwrap();
    let s = a.open("two", 0, None).unwrap();
    assert_eq!(a.open("three", 0, None), Err(OpenError::TooManyStreams));
    a.reset(s, 0).unwrap();
    assert!(a.open("three", 0, None).is_ok());

    // Freed slots are reusable on the accepting side too.
    p.a.reset(s1, 0).unwrap();
    let s4 = p.a.open("four", 0, None).unwrap();
    p.pump();
    assert!(p.ev_a.contains(&Event::Accepted { stream: s4 }));
}

#[test]
fn open_validates_name_and_trace() {
    let mut a = greeted(Role::Initiator, cfg());
    assert_eq!(a.open("", 0, None), Err(OpenError::BadName));
    assert_eq!(a.open(&"n".repeat(65), 0, None), Err(OpenError::BadName));
    assert_eq!(a.open("n", 0, Some(&[0; 65])), Err(OpenError::TraceTooLong));
    assert!(a.open(&"n".repeat(64), 0, Some(&[0; 64])).is_ok());
    assert_eq!(a.stream_count(), 1);
}

#[test]
fn unpolled_events_hold_back_new_streams() {
    let small = MuxConfig {
        max_streams: 2,
        ..cfg()
    };
    let mut b = greeted(Role::Responder, small);
    let mut rejected_at = None;
    for i in 0..50u32 {
        let id = 2 * i + 1;
        b.on_frame(&open_frame(id, 0, "s"), T0, &mut allow_all)
            .unwrap();
        let tx = drain_tx(&mut b, T0);
        if tx.iter().any(|f| kind(f).0 == wire::TYPE_REJECT) {
            rejected_at = Some(i);
            break;
        }
        b.on_frame(
            &raw(Frame::Rst {
                stream: id,
                reason: 0,
            }),
            T0,
            &mut allow_all,
        )
        .unwrap();
    }
    assert!(rejected_at.is_some(), "the event queue would grow forever");
    let events = drain_events(&mut b);
    assert!(events.len() <= 10 * small.max_streams + 1);
    assert_eq!(b.stats().events_dropped, 0);
    b.on_frame(&open_frame(201, 0, "s"), T0, &mut allow_all)
        .unwrap();
    assert_eq!(b.stream_count(), 1, "admitted again once events were read");
}

// ---- fairness ------------------------------------------------------------

#[test]
fn concurrent_streams_interleave_fairly() {
    let c = MuxConfig {
        window: 16 * 1024,
        max_frame_payload: 512,
        ..cfg()
    };
    let mut p = Pair::new(c, c);
    let s1 = p.open_ab("one");
    let s3 = p.open_ab("three");
    assert_eq!(p.a.send(s1, &[1; 16 * 1024]).unwrap(), 16 * 1024);
    // s1 alone for a while.
    let mut order = Vec::new();
    for _ in 0..4 {
        order.push(kind(&p.a.poll_transmit(p.now).unwrap()).1);
    }
    assert_eq!(order, [s1; 4]);
    assert_eq!(p.a.send(s3, &[3; 16 * 1024]).unwrap(), 16 * 1024);
    let order: Vec<u32> = drain_tx(&mut p.a, p.now)
        .iter()
        .map(|f| {
            let (t, s) = kind(f);
            assert_eq!(t, wire::TYPE_DATA);
            s
        })
        .collect();
    // 28 frames of s1 left, 32 of s3: strict alternation while both have data.
    assert_eq!(order.len(), 60);
    for pair in order[..56].chunks(2) {
        assert_eq!(pair, [s3, s1]);
    }
    assert_eq!(order[56..], [s3; 4]);
}

#[test]
fn concurrent_streams_progress_together_under_flow_control() {
    let c = MuxConfig {
        window: 2048,
        max_frame_payload: 256,
        ..cfg()
    };
    let mut p = Pair::new(c, c);
    let s1 = p.open_ab("one");
    let s3 = p.open_ab("three");
    let total = 64 * 1024;
    let (mut sent1, mut sent3, mut got1, mut got3) = (0, 0, 0, 0);
    let mut buf = [0u8; 512];
    while got1 < total || got3 < total {
        sent1 += p.a.send(s1, &vec![1; total - sent1]).unwrap();
        sent3 += p.a.send(s3, &vec![3; total - sent3]).unwrap();
        p.pump();
        got1 += p.b.recv(s1, &mut buf).unwrap();
        got3 += p.b.recv(s3, &mut buf).unwrap();
        // Neither stream gets more than a window ahead of the other.
        assert!(got1.abs_diff(got3) <= 2048, "{got1} vs {got3}");
    }
}

// ---- trace context --------------------------------------------------------

#[test]
fn trace_context_reaches_the_acceptor() {
    let mut p = Pair::new(cfg(), cfg());
    let tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let s = p.a.open("obs.trace", 5, Some(tp)).unwrap();
    p.pump();
    assert_eq!(
        p.ev_b,
        [Event::Opened {
            stream: s,
            name: "obs.trace".into(),
            priority: 5,
            trace: Some(tp.to_vec())
        }]
    );
}

// ---- hostile peers ---------------------------------------------------------

/// A responder that accepted stream 1 (OPEN_ACK sent) with `window` credit.
fn responder_with_stream(window: u32) -> Mux {
    let mut b = greeted(Role::Responder, cfg());
    b.on_frame(&open_frame(1, window, "s"), T0, &mut allow_all)
        .unwrap();
    assert_eq!(drain_tx(&mut b, T0).len(), 1);
    drain_events(&mut b);
    b
}

/// What the case shows, frames that set it up, the violating frame.
type Case = (&'static str, Vec<Vec<u8>>, Vec<u8>);

#[test]
fn violations_end_the_session_and_free_everything() {
    let data = |stream, len: usize| {
        raw(Frame::Data {
            stream,
            payload: &vec![0; len],
        })
    };
    let mut long_meta = vec![1, 1, 0, 0, 0, 0, 0, 0, 0];
    long_meta.extend_from_slice(&257u16.to_le_bytes());
    long_meta.extend_from_slice(&[0; 257]);
    let mut trailing = data(1, 4);
    trailing.push(0);
    let cases: Vec<Case> = vec![
        ("duplicate id", vec![], open_frame(1, 0, "again")),
        (
            "reused id",
            vec![open_frame(5, 0, "s")],
            open_frame(3, 0, "s"),
        ),
        ("wrong parity", vec![], open_frame(2, 0, "s")),
        ("DATA on unknown stream", vec![], data(7, 4)),
        (
            "DATA after CLOSE",
            vec![raw(Frame::Close { stream: 1 })],
            data(1, 4),
        ),
        ("oversized DATA", vec![], data(1, 513)),
        ("empty DATA", vec![], data(1, 0)),
        ("DATA beyond credit", vec![data(1, 512); 8], data(1, 1)),
        ("meta over 256", vec![], long_meta),
        ("trailing bytes", vec![], trailing),
        ("unknown type", vec![], vec![42, 1, 0, 0, 0]),
        ("stream frame on stream 0", vec![], vec![7, 0, 0, 0, 0]),
        (
            "OPEN_ACK for the peer's stream",
            vec![],
            raw(Frame::OpenAck {
                stream: 1,
                window: 0,
            }),
        ),
        (
            "OPEN_ACK for a stream never opened",
            vec![],
            raw(Frame::OpenAck {
                stream: 2,
                window: 0,
            }),
        ),
        (
            "REJECT for the peer's stream",
            vec![],
            raw(Frame::Reject {
                stream: 1,
                reason: RejectReason::Unknown,
            }),
        ),
        (
            "duplicate CLOSE",
            vec![raw(Frame::Close { stream: 1 })],
            raw(Frame::Close { stream: 1 }),
        ),
        (
            "CLOSE on unknown stream",
            vec![],
            raw(Frame::Close { stream: 9 }),
        ),
        (
            "RST on unknown stream",
            vec![],
            raw(Frame::Rst {
                stream: 9,
                reason: 0,
            }),
        ),
        (
            "CREDIT on unknown stream",
            vec![],
            raw(Frame::Credit {
                stream: 9,
                increment: 1,
            }),
        ),
        (
            "CREDIT overflow",
            vec![],
            raw(Frame::Credit {
                stream: 1,
                increment: u32::MAX,
            }),
        ),
    ];
    for (what, setup, bad) in cases {
        let mut b = responder_with_stream(10);
        b.send(1, b"queued").unwrap();
        for f in &setup {
            b.on_frame(f, T0, &mut allow_all).unwrap();
        }
        let r = b.on_frame(&bad, T0, &mut allow_all);
        assert!(is_violation(r), "{what}: {r:?}");
        assert!(b.is_dead(), "{what}");
        assert_eq!((b.stream_count(), b.buffered()), (0, 0), "{what}");
        assert!(b.poll_transmit(T0).is_none(), "{what}");
        assert!(b.poll_event().is_none(), "{what}");
    }
}

#[test]
fn data_on_a_stream_freed_by_close_is_a_violation() {
    let mut b = responder_with_stream(10);
    b.on_frame(&raw(Frame::Close { stream: 1 }), T0, &mut allow_all)
        .unwrap();
    b.close(1).unwrap();
    assert_eq!(kind(&b.poll_transmit(T0).unwrap()), (wire::TYPE_CLOSE, 1));
    assert_eq!(b.stream_count(), 0);
    let d = raw(Frame::Data {
        stream: 1,
        payload: b"x",
    });
    assert_eq!(
        b.on_frame(&d, T0, &mut allow_all),
        Err(MuxError::ProtocolViolation("DATA on a closed stream"))
    );
}

#[test]
fn data_crossing_many_resets_is_dropped() {
    // Ring of 2 reset ids: after three resets the first id left the ring,
    // yet the peer's DATA for it may still be on the wire.
    let small = MuxConfig {
        max_streams: 1,
        ..cfg()
    };
    let mut b = greeted(Role::Responder, small);
    for id in [1, 3, 5] {
        b.on_frame(&open_frame(id, 0, "s"), T0, &mut allow_all)
            .unwrap();
        drain_tx(&mut b, T0);
        b.reset(id, 0).unwrap();
        drain_tx(&mut b, T0);
        drain_events(&mut b);
    }
    for id in [1, 3, 5] {
        let d = raw(Frame::Data {
            stream: id,
            payload: b"late",
        });
        b.on_frame(&d, T0, &mut allow_all).unwrap();
    }
    assert_eq!(b.stats().stale_frames, 3);
    assert!(!b.is_dead());
}

#[test]
fn data_before_open_ack_is_a_violation() {
    // The acceptor's OPEN_ACK has not gone out: the opener has no credit.
    let mut b = greeted(Role::Responder, cfg());
    b.on_frame(&open_frame(1, 0, "s"), T0, &mut allow_all)
        .unwrap();
    let d = raw(Frame::Data {
        stream: 1,
        payload: b"x",
    });
    assert!(is_violation(b.on_frame(&d, T0, &mut allow_all)));
    // The opener has not been accepted yet.
    let mut a = greeted(Role::Initiator, cfg());
    let s = a.open("s", 0, None).unwrap();
    drain_tx(&mut a, T0);
    let d = raw(Frame::Data {
        stream: s,
        payload: b"x",
    });
    assert!(is_violation(a.on_frame(&d, T0, &mut allow_all)));
}

#[test]
fn malformed_metadata_is_rejected_without_ending_the_session() {
    let mut b = greeted(Role::Responder, cfg());
    let bad_metas: [&[u8]; 5] = [
        &[],                       // no name
        &[1, 1, 0xff],             // not UTF-8
        &[1, 3, b'a'],             // TLV runs past the block
        &[1, 1, b'a', 2, 2, 0, 0], // two-byte priority
        &[1, 1, b'a', 1, 1, b'b'], // two names
    ];
    for (i, meta) in bad_metas.iter().enumerate() {
        let id = 2 * i as u32 + 1;
        let f = raw(Frame::Open {
            stream: id,
            window: 0,
            meta,
        });
        b.on_frame(&f, T0, &mut allow_all).unwrap();
        let tx = drain_tx(&mut b, T0);
        assert_eq!(
            tx.iter()
                .map(|f| Frame::parse(f).unwrap())
                .collect::<Vec<_>>(),
            [Frame::Reject {
                stream: id,
                reason: RejectReason::BadMetadata
            }]
        );
        assert_eq!(b.stream_count(), 0);
    }
    assert!(b.poll_event().is_none());
    // Unknown tags are skipped.
    let f = raw(Frame::Open {
        stream: 99,
        window: 0,
        meta: &[9, 2, 0, 0, 1, 1, b'a'],
    });
    b.on_frame(&f, T0, &mut allow_all).unwrap();
    assert_eq!(b.stream_count(), 1);
}

#[test]
fn no_leak_after_many_stream_lifetimes() {
    let c = MuxConfig {
        max_streams: 4,
        window: 256,
        max_frame_payload: 64,
        ..cfg()
    };
    let mut p = Pair::new(c, c);
    for round in 0..200u32 {
        let mut ids = Vec::new();
        for k in 0..4 {
            let s = if k % 2 == 0 {
                p.a.open("a", 0, None).unwrap()
            } else {
                p.b.open("b", 0, None).unwrap()
            };
            ids.push(s);
        }
        p.pump();
        for (k, &s) in ids.iter().enumerate() {
            p.a.send(s, &[k as u8; 100]).unwrap();
            p.b.send(s, &[k as u8; 100]).unwrap();
        }
        p.pump();
        for (k, &s) in ids.iter().enumerate() {
            if (k + round as usize).is_multiple_of(3) {
                p.b.reset(s, 1).unwrap();
            } else {
                p.a.close(s).unwrap();
                p.b.close(s).unwrap();
            }
        }
        p.pump();
        for &s in &ids {
            let _ = Pair::read_all_until_gone(&mut p.a, s);
            let _ = Pair::read_all_until_gone(&mut p.b, s);
        }
        p.pump();
        p.ev_a.clear();
        p.ev_b.clear();
        assert_eq!(
            (p.a.stream_count(), p.b.stream_count()),
            (0, 0),
            "round {round}"
        );
        assert_eq!((p.a.buffered(), p.b.buffered()), (0, 0), "round {round}");
    }
    assert_eq!(p.a.stats().events_dropped + p.b.stats().events_dropped, 0);
}

// ---- fuzzing ---------------------------------------------------------------

#[derive(Debug, Clone)]
enum OwnedFrame {
    Open(u32, u32, Vec<u8>),
    OpenAck(u32, u32),
    Reject(u32, RejectReason),
    Data(u32, Vec<u8>),
    Credit(u32, u32),
    Rst(u32, u8),
    Close(u32),
    Ping(u64),
    Pong(u64),
}

impl OwnedFrame {
    fn frame(&self) -> Frame<'_> {
        match self {
            OwnedFrame::Open(stream, window, meta) => Frame::Open {
                stream: *stream,
                window: *window,
                meta,
            },
            OwnedFrame::OpenAck(stream, window) => Frame::OpenAck {
                stream: *stream,
                window: *window,
            },
            OwnedFrame::Reject(stream, reason) => Frame::Reject {
                stream: *stream,
                reason: *reason,
            },
            OwnedFrame::Data(stream, payload) => Frame::Data {
                stream: *stream,
                payload,
            },
            OwnedFrame::Credit(stream, increment) => Frame::Credit {
                stream: *stream,
                increment: *increment,
            },
            OwnedFrame::Rst(stream, reason) => Frame::Rst {
                stream: *stream,
                reason: *reason,
            },
            OwnedFrame::Close(stream) => Frame::Close { stream: *stream },
            OwnedFrame::Ping(nonce) => Frame::Ping { nonce: *nonce },
            OwnedFrame::Pong(nonce) => Frame::Pong { nonce: *nonce },
        }
    }
}

#[derive(Debug, Clone)]
struct OwnedMeta {
    name: String,
    priority: u8,
    trace: Option<Vec<u8>>,
}

impl OwnedMeta {
    fn meta(&self) -> OpenMeta<'_> {
        OpenMeta {
            name: &self.name,
            priority: self.priority,
            trace: self.trace.as_deref(),
        }
    }
}

fn arb_meta() -> impl Strategy<Value = OwnedMeta> {
    (
        "\\PC{1,16}".prop_filter("name ≤ 64 bytes", |s| s.len() <= 64),
        any::<u8>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=64)),
    )
        .prop_map(|(name, priority, trace)| OwnedMeta {
            name,
            priority,
            trace,
        })
}

fn arb_reason() -> impl Strategy<Value = RejectReason> {
    proptest::sample::select(RejectReason::ALL.to_vec())
}

/// Frames with stream ids drawn from `ids` (never 0) and payloads up to
/// `max_payload` bytes.
fn arb_frame(
    ids: impl Strategy<Value = u32> + Clone,
    max_payload: usize,
) -> impl Strategy<Value = OwnedFrame> {
    prop_oneof![
        (ids.clone(), any::<u32>(), arb_meta()).prop_map(|(s, w, m)| OwnedFrame::Open(
            s,
            w,
            m.meta().to_vec().unwrap()
        )),
        (
            ids.clone(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..=256)
        )
            .prop_map(|(s, w, m)| OwnedFrame::Open(s, w, m)),
        (ids.clone(), any::<u32>()).prop_map(|(s, w)| OwnedFrame::OpenAck(s, w)),
        (ids.clone(), arb_reason()).prop_map(|(s, r)| OwnedFrame::Reject(s, r)),
        (
            ids.clone(),
            proptest::collection::vec(any::<u8>(), 0..=max_payload)
        )
            .prop_map(|(s, p)| OwnedFrame::Data(s, p)),
        (ids.clone(), any::<u32>()).prop_map(|(s, i)| OwnedFrame::Credit(s, i)),
        (ids.clone(), any::<u8>()).prop_map(|(s, r)| OwnedFrame::Rst(s, r)),
        ids.prop_map(OwnedFrame::Close),
        any::<u64>().prop_map(OwnedFrame::Ping),
        any::<u64>().prop_map(OwnedFrame::Pong),
    ]
}

proptest! {
    #[test]
    fn frames_round_trip(f in arb_frame(1..=u32::MAX, 2048)) {
        let frame = f.frame();
        let bytes = frame.to_vec().unwrap();
        prop_assert!(bytes.len() <= wire::max_frame_len(2048));
        prop_assert_eq!(Frame::parse(&bytes).unwrap(), frame);
    }

    #[test]
    fn metadata_round_trips(m in arb_meta()) {
        let bytes = m.meta().to_vec().unwrap();
        prop_assert!(bytes.len() <= wire::MAX_META_LEN);
        prop_assert_eq!(OpenMeta::parse(&bytes).unwrap(), m.meta());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        // Every accepted frame has exactly one encoding.
        if let Ok(f) = Frame::parse(&bytes) {
            prop_assert_eq!(f.to_vec().unwrap(), bytes.clone());
        }
        if let Ok(m) = OpenMeta::parse(&bytes) {
            let again = m.to_vec().unwrap();
            prop_assert_eq!(OpenMeta::parse(&again).unwrap(), m);
        }
    }

    #[test]
    fn on_frame_with_arbitrary_bytes_never_panics(
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..20),
    ) {
        let mut b = responder_with_stream(64);
        for f in &frames {
            let _ = b.on_frame(f, T0, &mut allow_all);
            let _ = drain_tx(&mut b, T0);
            let _ = drain_events(&mut b);
        }
        prop_assert!(b.stream_count() <= cfg().max_streams);
    }

    #[test]
    fn on_frame_with_plausible_frames_never_panics(
        frames in proptest::collection::vec(arb_frame(1u32..12, 600), 0..40),
        policy in any::<bool>(),
    ) {
        let c = MuxConfig { max_streams: 3, window: 700, max_frame_payload: 512, max_buffered_total: 2000, ..cfg() };
        let mut b = greeted(Role::Responder, c);
        let own = b.open("mine", 0, None).unwrap();
        let mut policy_fn = |name: &str| policy || name.len().is_multiple_of(2);
        let mut buf = [0u8; 100];
        for (i, f) in frames.iter().enumerate() {
            let bytes = f.frame().to_vec().unwrap();
            let r = b.on_frame(&bytes, T0 + i as u64, &mut policy_fn);
            if r.is_err() {
                prop_assert!(b.is_dead());
                prop_assert_eq!(b.stream_count(), 0);
                prop_assert_eq!(b.on_frame(&bytes, T0, &mut policy_fn), Err(MuxError::SessionDead));
                break;
            }
            let _ = b.send(own, &[1; 300]);
            for s in 1..12 {
                let _ = b.recv(s, &mut buf);
            }
            let _ = drain_tx(&mut b, T0);
            let _ = drain_events(&mut b);
            prop_assert!(b.stream_count() <= c.max_streams);
            prop_assert!(b.buffered() <= c.max_buffered_total);
            prop_assert_eq!(b.stats().events_dropped, 0);
        }
    }
}

// ---- honest peers never violate -------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Open(bool),
    Send(bool, usize, usize),
    Recv(bool, usize, usize),
    Close(bool, usize),
    Reset(bool, usize, u8),
    /// Deliver up to n frames from a (true) or b.
    Deliver(bool, usize),
    PollEvents(bool),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<bool>().prop_map(Op::Open),
        (any::<bool>(), 0..8usize, 0..3000usize).prop_map(|(s, i, n)| Op::Send(s, i, n)),
        (any::<bool>(), 0..8usize, 0..3000usize).prop_map(|(s, i, n)| Op::Recv(s, i, n)),
        (any::<bool>(), 0..8usize).prop_map(|(s, i)| Op::Close(s, i)),
        (any::<bool>(), 0..8usize, any::<u8>()).prop_map(|(s, i, r)| Op::Reset(s, i, r)),
        (any::<bool>(), 1..6usize).prop_map(|(s, n)| Op::Deliver(s, n)),
        any::<bool>().prop_map(Op::PollEvents),
    ]
}

/// A pair whose wires hold frames in flight, so frames cross (RST against
/// DATA, CLOSE against CREDIT, ...).
struct Lossless {
    m: [Mux; 2],
    wire: [VecDeque<Vec<u8>>; 2],
    ids: [BTreeSet<u32>; 2],
}

impl Lossless {
    fn side(a: bool) -> usize {
        usize::from(!a)
    }

    fn deliver(&mut self, from: usize, n: usize) {
        let to = 1 - from;
        while let Some(f) = self.m[from].poll_transmit(T0) {
            self.wire[from].push_back(f);
        }
        for _ in 0..n {
            let Some(f) = self.wire[from].pop_front() else {
                break;
            };
            self.m[to].on_frame(&f, T0, &mut allow_all).unwrap();
        }
    }

    fn events(&mut self, side: usize) {
        while let Some(e) = self.m[side].poll_event() {
            if let Event::Opened { stream, .. } = e {
                self.ids[side].insert(stream);
            }
        }
    }

    /// The `i`-th stream `side` still has (modulo their number).
    fn pick(&self, side: usize, i: usize) -> Option<u32> {
        let live: Vec<u32> = self.ids[side]
            .iter()
            .copied()
            .filter(|&id| self.m[side].send_capacity(id).is_ok())
            .collect();
        if live.is_empty() {
            None
        } else {
            live.get(i % live.len()).copied()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn honest_peers_never_violate_and_never_leak(ops in proptest::collection::vec(arb_op(), 0..120)) {
        let c = MuxConfig { max_streams: 4, window: 1000, max_frame_payload: 300, max_buffered_total: 6000, ..cfg() };
        let mut l = Lossless {
            m: [Mux::new(Role::Initiator, c, T0), Mux::new(Role::Responder, c, T0)],
            wire: [VecDeque::new(), VecDeque::new()],
            ids: [BTreeSet::new(), BTreeSet::new()],
        };
        let mut buf = vec![0u8; 3000];
        let data = vec![9u8; 3000];
        for op in ops {
            match op {
                Op::Open(a) => {
                    let s = Lossless::side(a);
                    if let Ok(id) = l.m[s].open("x", 0, None) {
                        l.ids[s].insert(id);
                    }
                }
                Op::Send(a, i, n) => {
                    let s = Lossless::side(a);
                    if let Some(id) = l.pick(s, i) {
                        if let Ok(k) = l.m[s].send(id, &data[..n]) {
                            prop_assert!(k <= n);
                        }
                    }
                }
                Op::Recv(a, i, n) => {
                    let s = Lossless::side(a);
                    if let Some(id) = l.pick(s, i) {
                        let _ = l.m[s].recv(id, &mut buf[..n]);
                    }
                }
                Op::Close(a, i) => {
                    let s = Lossless::side(a);
                    if let Some(id) = l.pick(s, i) {
                        let _ = l.m[s].close(id);
                    }
                }
                Op::Reset(a, i, r) => {
                    let s = Lossless::side(a);
                    if let Some(id) = l.pick(s, i) {
                        let _ = l.m[s].reset(id, r);
                    }
                }
                Op::Deliver(a, n) => l.deliver(Lossless::side(a), n),
                Op::PollEvents(a) => l.events(Lossless::side(a)),
            }
            for m in &l.m {
                prop_assert!(m.buffered() <= c.max_buffered_total);
                prop_assert!(m.stream_count() <= c.max_streams);
            }
        }
        // Wind down: everyone closes everything and reads everything.
        for _ in 0..50 {
            for s in 0..2 {
                l.events(s);
                let ids: Vec<u32> = l.ids[s].iter().copied().collect();
                for id in ids {
                    let _ = l.m[s].close(id);
                    while let Ok(n) = l.m[s].recv(id, &mut buf) {
                        if n == 0 {
                            break;
                        }
                    }
                }
                l.deliver(s, usize::MAX);
            }
        }
        for m in &l.m {
            prop_assert_eq!(m.stream_count(), 0);
            prop_assert_eq!(m.buffered(), 0);
            prop_assert_eq!(m.stats().events_dropped, 0);
            prop_assert!(!m.is_dead());
        }
    }
}

// ---- capabilities ----------------------------------------------------------

#[test]
fn caps_go_first_and_opens_wait_for_the_peers() {
    let mut a = Mux::new(Role::Initiator, cfg(), T0);
    assert_eq!(a.peer_caps(), None);
    let s = a.open("obs.traces", 0, Some(b"ctx")).unwrap();
    let first = drain_tx(&mut a, T0);
    assert_eq!(
        first.iter().map(|f| kind(f)).collect::<Vec<_>>(),
        [(wire::TYPE_CAPS, 0)],
        "only CAPS leaves before the peer's CAPS"
    );
    a.on_frame(&raw(Frame::Caps { caps: LOCAL_CAPS }), T0, &mut allow_all)
        .unwrap();
    let open = drain_tx(&mut a, T0);
    assert_eq!(open.len(), 1);
    let Frame::Open { stream, meta, .. } = Frame::parse(&open[0]).unwrap() else {
        panic!("not an OPEN");
    };
    assert_eq!(stream, s);
    assert_eq!(OpenMeta::parse(meta).unwrap().trace, Some(&b"ctx"[..]));
    assert_eq!(a.stats().trace_stripped, 0);
}

#[test]
fn a_peer_without_the_trace_cap_gets_no_trace_and_sends_none() {
    let mut a = Mux::new(Role::Initiator, cfg(), T0);
    a.on_frame(&raw(Frame::Caps { caps: 0 }), T0, &mut allow_all)
        .unwrap();
    assert_eq!(a.peer_caps(), Some(0));
    assert!(!a.trace_on());
    a.open("s", 0, Some(b"ctx")).unwrap();
    let tx = drain_tx(&mut a, T0);
    let Frame::Open { meta, .. } = Frame::parse(&tx[1]).unwrap() else {
        panic!("not an OPEN");
    };
    assert_eq!(OpenMeta::parse(meta).unwrap().trace, None, "stripped");
    // The peer's OPEN with a trace context: accepted, context dropped.
    let meta = OpenMeta {
        name: "t",
        priority: 0,
        trace: Some(b"theirs"),
    }
    .to_vec()
    .unwrap();
    a.on_frame(
        &raw(Frame::Open {
            stream: 2,
            window: 100,
            meta: &meta,
        }),
        T0,
        &mut allow_all,
    )
    .unwrap();
    assert_eq!(
        drain_events(&mut a),
        [Event::Opened {
            stream: 2,
            name: "t".into(),
            priority: 0,
            trace: None
        }]
    );
    assert_eq!(a.stats().trace_stripped, 2);
}

#[test]
fn caps_out_of_place_are_violations() {
    let mut b = Mux::new(Role::Responder, cfg(), T0);
    assert!(is_violation(b.on_frame(
        &open_frame(1, 100, "s"),
        T0,
        &mut allow_all
    )));
    assert!(b.is_dead());
    let mut b = Mux::new(Role::Responder, cfg(), T0);
    assert!(is_violation(b.on_frame(
        &raw(Frame::Ping { nonce: 1 }),
        T0,
        &mut allow_all
    )));
    let mut b = greeted(Role::Responder, cfg());
    assert!(is_violation(b.on_frame(
        &raw(Frame::Caps { caps: LOCAL_CAPS }),
        T0,
        &mut allow_all
    )));
}

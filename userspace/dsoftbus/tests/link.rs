//! Two devices over an in-memory byte pipe: handshake + ACL, streams,
//! flow control, and faults.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use dsoftbus::identity::{DeviceId, DeviceKey};
use dsoftbus::link::{Link, LinkConfig, LinkError};
use dsoftbus::mux::{Event, MuxConfig};
use dsoftbus::policy::Acl;
use dsoftbus::session::CloseReason;

const MS: u64 = 1_000_000;

fn key(n: u8) -> DeviceKey {
    DeviceKey::from_secret([n; 32])
}

struct Pair {
    a: Link,
    b: Link,
    acl_a: Acl,
    acl_b: Acl,
    now: u64,
}

impl Pair {
    fn new(cfg: LinkConfig) -> Self {
        let (ka, kb) = (key(1), key(2));
        let mut acl_a = Acl::new();
        acl_a.allow(kb.public(), &["obs.logs"]).unwrap();
        let mut acl_b = Acl::new();
        acl_b
            .allow(ka.public(), &["obs.logs", "obs.metrics", "trace"])
            .unwrap();
        Self {
            a: Link::dial(&ka, kb.public(), [7; 32], cfg).unwrap(),
            b: Link::accept(&kb, [8; 32], cfg).unwrap(),
            acl_a,
            acl_b,
            now: 0,
        }
    }

    /// Moves bytes both ways until nothing is left; returns bytes moved.
    fn pump(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let mut any = false;
            while let Some(bytes) = self.a.poll_transmit(self.now) {
                moved += bytes.len();
                any = true;
                let _ = self.b.on_bytes(&bytes, self.now, &self.acl_b);
            }
            while let Some(bytes) = self.b.poll_transmit(self.now) {
                moved += bytes.len();
                any = true;
                let _ = self.a.on_bytes(&bytes, self.now, &self.acl_a);
            }
            if !any {
                return moved;
            }
        }
    }
}

fn events(l: &mut Link) -> Vec<Event> {
    let m = l.mux().unwrap();
    core::iter::from_fn(|| m.poll_event()).collect()
}

#[test]
fn handshake_authenticates_both_sides() {
    let mut p = Pair::new(LinkConfig::default());
    p.pump();
    assert_eq!(p.a.peer(), Some(DeviceId::of(&key(2).public())));
    assert_eq!(p.b.peer(), Some(DeviceId::of(&key(1).public())));
}

#[test]
fn an_unlisted_device_is_refused_before_any_stream_opens() {
    let stranger = key(9);
    let kb = key(2);
    let mut a = Link::dial(&stranger, kb.public(), [1; 32], LinkConfig::default()).unwrap();
    let mut b = Link::accept(&kb, [2; 32], LinkConfig::default()).unwrap();
    let mut acl_b = Acl::new();
    acl_b.allow(key(1).public(), &["obs.logs"]).unwrap();
    let acl_a = Acl::new();
    let mut result = Ok(());
    for _ in 0..4 {
        while let Some(x) = a.poll_transmit(0) {
            result = result.and(b.on_bytes(&x, 0, &acl_b));
        }
        while let Some(x) = b.poll_transmit(0) {
            let _ = a.on_bytes(&x, 0, &acl_a);
        }
    }
    assert_eq!(result, Err(LinkError::Session(CloseReason::UnknownPeer)));
    assert_eq!(b.refused_peer(), Some(DeviceId::of(&stranger.public())));
    assert!(b.mux().is_none(), "no stream layer ever existed");
}

#[test]
fn a_peer_presenting_another_static_key_is_refused() {
    // A dials "B" pinning B's key, but the responder is C.
    let (ka, kb, kc) = (key(1), key(2), key(3));
    let mut a = Link::dial(&ka, kb.public(), [1; 32], LinkConfig::default()).unwrap();
    let mut c = Link::accept(&kc, [2; 32], LinkConfig::default()).unwrap();
    let mut acl = Acl::new();
    acl.allow(ka.public(), &["obs.logs"]).unwrap();
    let mut errs = Vec::new();
    for _ in 0..4 {
        while let Some(x) = a.poll_transmit(0) {
            if let Err(e) = c.on_bytes(&x, 0, &acl) {
                errs.push(e);
            }
        }
        while let Some(x) = c.poll_transmit(0) {
            if let Err(e) = a.on_bytes(&x, 0, &acl) {
                errs.push(e);
            }
        }
    }
    assert!(
        errs.contains(&LinkError::Session(CloseReason::WrongKey)),
        "{errs:?}"
    );
    assert!(a.peer().is_none() && c.peer().is_none());
}

#[test]
fn streams_open_carry_data_and_close_with_acl_per_name() {
    let mut p = Pair::new(LinkConfig::default());
    p.pump();
    let trace = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let s = p.a.mux().unwrap().open("obs.logs", 3, Some(trace)).unwrap();
    let denied = p.a.mux().unwrap().open("admin", 0, None).unwrap();
    p.pump();
    let ev_b = events(&mut p.b);
    assert!(ev_b.contains(&Event::Opened {
        stream: s,
        name: "obs.logs".into(),
        priority: 3,
        trace: Some(trace.to_vec())
    }));
    let ev_a = events(&mut p.a);
    assert!(ev_a.contains(&Event::Accepted { stream: s }));
    assert!(ev_a
        .iter()
        .any(|e| matches!(e, Event::Rejected { stream, .. } if *stream == denied)));
    assert_eq!(
        p.a.mux().unwrap().send(s, b"hello over the bus").unwrap(),
        18
    );
    p.a.mux().unwrap().close(s).unwrap();
    p.pump();
    let mut buf = [0u8; 64];
    let n = p.b.mux().unwrap().recv(s, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello over the bus");
    assert!(events(&mut p.b).contains(&Event::Closed { stream: s }));
    p.b.mux().unwrap().close(s).unwrap();
    p.pump();
    assert_eq!(p.a.mux().unwrap().stream_count(), 0, "both closed: freed");
    assert_eq!(p.b.mux().unwrap().stream_count(), 0);
}

#[test]
fn one_mebibyte_with_flow_control_and_a_checksum() {
    let cfg = LinkConfig {
        mux: MuxConfig {
            window: 16 * 1024,
            ..MuxConfig::default()
        },
        ..LinkConfig::default()
    };
    let mut p = Pair::new(cfg);
    p.pump();
    let s = p.a.mux().unwrap().open("obs.metrics", 0, None).unwrap();
    p.pump();
    let data: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let (mut sent, mut got) = (0, Vec::new());
    let mut buf = vec![0u8; 3000];
    while got.len() < data.len() {
        sent += p.a.mux().unwrap().send(s, &data[sent..]).unwrap();
        p.pump();
        // A slow reader: at most 3000 bytes per round.
        let n = p.b.mux().unwrap().recv(s, &mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
        assert!(
            p.b.mux().unwrap().buffered() <= 16 * 1024 + 64,
            "receive memory stays at the window"
        );
        p.pump();
    }
    assert_eq!(crc32(&got), crc32(&data));
}

fn crc32(b: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for x in b {
        c ^= u32::from(*x);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn a_corrupted_ciphertext_closes_the_session() {
    let mut p = Pair::new(LinkConfig::default());
    p.pump();
    let s = p.a.mux().unwrap().open("obs.logs", 0, None).unwrap();
    p.pump();
    p.a.mux().unwrap().send(s, b"payload").unwrap();
    let mut rec = p.a.poll_transmit(p.now).unwrap();
    let last = rec.len() - 1;
    rec[last] ^= 1;
    assert_eq!(
        p.b.on_bytes(&rec, p.now, &p.acl_b),
        Err(LinkError::Session(CloseReason::AuthFailed))
    );
    assert_eq!(
        p.b.closed(),
        Some(LinkError::Session(CloseReason::AuthFailed))
    );
}

#[test]
fn a_replayed_record_is_rejected() {
    let mut p = Pair::new(LinkConfig::default());
    p.pump();
    let s = p.a.mux().unwrap().open("obs.logs", 0, None).unwrap();
    let rec = p.a.poll_transmit(p.now).unwrap();
    p.b.on_bytes(&rec, p.now, &p.acl_b).unwrap();
    assert_eq!(
        p.b.on_bytes(&rec, p.now, &p.acl_b),
        Err(LinkError::Session(CloseReason::Replay))
    );
    let _ = s;
}

#[test]
fn a_peer_that_disappears_times_out_and_everything_is_freed() {
    let cfg = LinkConfig {
        mux: MuxConfig {
            keepalive_interval_ns: 100 * MS,
            keepalive_timeout_ns: 300 * MS,
            ..MuxConfig::default()
        },
        ..LinkConfig::default()
    };
    let mut p = Pair::new(cfg);
    p.pump();
    let s = p.a.mux().unwrap().open("obs.logs", 0, None).unwrap();
    p.pump();
    p.a.mux().unwrap().send(s, &[1; 1000]).unwrap();
    p.pump();
    assert_eq!(p.b.mux().unwrap().stream_count(), 1);
    // A vanishes: B hears nothing more.
    for t in 1..=5 {
        p.now = t * 100 * MS;
        p.b.tick(p.now);
        while p.b.poll_transmit(p.now).is_some() {}
    }
    assert!(p.b.closed().is_some(), "timed out");
    assert!(p.b.mux().is_none());
}

#[test]
fn mux_frames_always_fit_the_agreed_record_size() {
    // B accepts records of at most 1024 bytes; the mux default is 4096.
    let (ka, kb) = (key(1), key(2));
    let small = LinkConfig {
        session: dsoftbus::session::SessionConfig { max_record: 1024 },
        ..LinkConfig::default()
    };
    let mut p = Pair::new(LinkConfig::default());
    p.b = Link::accept(&kb, [8; 32], small).unwrap();
    p.a = Link::dial(&ka, kb.public(), [7; 32], LinkConfig::default()).unwrap();
    p.pump();
    let s = p.a.mux().unwrap().open("obs.logs", 0, None).unwrap();
    p.pump();
    let data = vec![7u8; 20_000];
    let mut sent = 0;
    let mut got = 0;
    let mut buf = vec![0u8; 4096];
    while got < data.len() {
        sent += p.a.mux().unwrap().send(s, &data[sent..]).unwrap();
        p.pump();
        got += p.b.mux().unwrap().recv(s, &mut buf).unwrap();
        p.pump();
        assert!(p.a.closed().is_none() && p.b.closed().is_none());
    }
}

//! dsoftbus on the in-process transport: two `Link`s whose bytes are moved
//! in memory, so what is measured is the sans-I/O stack itself (Noise,
//! ChaCha20-Poly1305 records, mux framing and credit flow control).
//!
//! `cargo bench -p dsoftbus --bench link -- --warm-up-time 1 --measurement-time 3`
//!
//! * `stream_throughput/1MiB/window_{64,256}KiB`: 1 MiB from A to B over
//!   one mux stream of handshaken, encrypted links, B reading everything
//!   it is given each round (so credit flows back as fast as the mux
//!   allows). Reported in bytes, so criterion prints MiB/s. The 64 KiB
//!   window is `LinkConfig::default()`.
//! * `round_trip/64B_echo`: A sends 64 bytes on a stream, B reads and
//!   echoes them, A reads them back. One iteration is one round trip.
//! * `handshake/noise_xk`: a full Noise XK handshake (both links built,
//!   three messages, X25519 on both sides, the ACL consulted) until both
//!   sides hold a session.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dsoftbus::identity::DeviceKey;
use dsoftbus::link::{Link, LinkConfig};
use dsoftbus::mux::{Event, MuxConfig};
use dsoftbus::policy::Acl;

const STREAM: &str = "obs.logs";
const MIB: usize = 1024 * 1024;

/// The bench runs at a fixed clock: keepalive never fires.
const NOW: u64 = 0;

struct Keys {
    a: DeviceKey,
    b: DeviceKey,
    acl_a: Acl,
    acl_b: Acl,
}

impl Keys {
    fn new() -> Self {
        let a = DeviceKey::from_secret([1; 32]);
        let b = DeviceKey::from_secret([2; 32]);
        let mut acl_a = Acl::new();
        acl_a.allow(b.public(), &[STREAM]).unwrap();
        let mut acl_b = Acl::new();
        acl_b.allow(a.public(), &[STREAM]).unwrap();
        Self { a, b, acl_a, acl_b }
    }

    /// Two fresh links (fixed seeds: benchmarks only).
    fn links(&self, cfg: LinkConfig) -> (Link, Link) {
        (
            Link::dial(&self.a, self.b.public(), [7; 32], cfg).unwrap(),
            Link::accept(&self.b, [8; 32], cfg).unwrap(),
        )
    }
}

/// Moves every pending record both ways until both links are quiet.
fn pump(a: &mut Link, b: &mut Link, keys: &Keys) {
    loop {
        let mut any = false;
        while let Some(bytes) = a.poll_transmit(NOW) {
            any = true;
            b.on_bytes(&bytes, NOW, &keys.acl_b).unwrap();
        }
        while let Some(bytes) = b.poll_transmit(NOW) {
            any = true;
            a.on_bytes(&bytes, NOW, &keys.acl_a).unwrap();
        }
        if !any {
            return;
        }
    }
}

fn drain_events(l: &mut Link) {
    let m = l.mux().unwrap();
    while let Some(ev) = m.poll_event() {
        assert!(
            !matches!(ev, Event::Rejected { .. } | Event::Reset { .. }),
            "{ev:?}"
        );
    }
}

/// Handshaken links with one accepted stream from A to B.
struct Pair {
    keys: Keys,
    a: Link,
    b: Link,
    stream: u32,
}

impl Pair {
    fn new(cfg: LinkConfig) -> Self {
        let keys = Keys::new();
        let (mut a, mut b) = keys.links(cfg);
        pump(&mut a, &mut b, &keys);
        assert!(a.peer().is_some() && b.peer().is_some(), "handshake");
        let stream = a.mux().unwrap().open(STREAM, 0, None).unwrap();
        pump(&mut a, &mut b, &keys);
        let opened = core::iter::from_fn(|| b.mux().unwrap().poll_event())
            .any(|e| matches!(e, Event::Opened { stream: s, .. } if s == stream));
        let accepted = core::iter::from_fn(|| a.mux().unwrap().poll_event())
            .any(|e| e == Event::Accepted { stream });
        assert!(opened && accepted, "stream up");
        Self { keys, a, b, stream }
    }

    fn pump(&mut self) {
        pump(&mut self.a, &mut self.b, &self.keys);
    }

    /// Sends all of `data` from A to B under flow control; B reads
    /// everything available each round and hands it to `sink`.
    fn transfer(&mut self, data: &[u8], buf: &mut [u8], mut sink: impl FnMut(&[u8])) {
        let s = self.stream;
        let (mut sent, mut got) = (0, 0);
        while got < data.len() {
            if sent < data.len() {
                sent += self.a.mux().unwrap().send(s, &data[sent..]).unwrap();
            }
            self.pump();
            let mb = self.b.mux().unwrap();
            loop {
                let n = mb.recv(s, buf).unwrap();
                if n == 0 {
                    break;
                }
                sink(&buf[..n]);
                got += n;
            }
            drain_events(&mut self.a);
            drain_events(&mut self.b);
        }
    }

    /// One 64-byte echo: A -> B -> A.
    fn round_trip(&mut self, msg: &[u8; 64], buf: &mut [u8; 64]) {
        let s = self.stream;
        assert_eq!(self.a.mux().unwrap().send(s, msg).unwrap(), 64);
        self.pump();
        let mb = self.b.mux().unwrap();
        assert_eq!(mb.recv(s, buf).unwrap(), 64);
        assert_eq!(mb.send(s, buf).unwrap(), 64);
        self.pump();
        assert_eq!(self.a.mux().unwrap().recv(s, buf).unwrap(), 64);
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn with_window(window: u32) -> LinkConfig {
    LinkConfig {
        mux: MuxConfig {
            window,
            ..MuxConfig::default()
        },
        ..LinkConfig::default()
    }
}

fn stream_throughput(c: &mut Criterion) {
    let data = payload(MIB);
    let mut buf = vec![0u8; 256 * 1024];
    let mut g = c.benchmark_group("stream_throughput");
    g.throughput(Throughput::Bytes(MIB as u64));
    g.sample_size(20);
    for (name, cfg) in [
        ("1MiB/window_64KiB", LinkConfig::default()),
        ("1MiB/window_256KiB", with_window(256 * 1024)),
    ] {
        let mut p = Pair::new(cfg);
        // Once, checked: every byte arrives, in order.
        let mut got = Vec::with_capacity(MIB);
        p.transfer(&data, &mut buf, |b| got.extend_from_slice(b));
        assert!(got == data, "{name}: the stream corrupted the data");
        g.bench_function(name, |bch| {
            bch.iter(|| {
                p.transfer(&data, &mut buf, |b| {
                    criterion::black_box(b);
                })
            })
        });
    }
    g.finish();
}

fn round_trip(c: &mut Criterion) {
    let mut p = Pair::new(LinkConfig::default());
    let mut g = c.benchmark_group("round_trip");
    let mut msg = [0u8; 64];
    let mut buf = [0u8; 64];
    p.round_trip(&msg, &mut buf);
    assert_eq!(buf, msg);
    g.bench_function("64B_echo", |bch| {
        bch.iter(|| {
            msg[0] = msg[0].wrapping_add(1);
            p.round_trip(&msg, &mut buf);
        })
    });
    assert_eq!(buf, msg, "the last echo came back intact");
    g.finish();
}

fn handshake(c: &mut Criterion) {
    let keys = Keys::new();
    let cfg = LinkConfig::default();
    let mut g = c.benchmark_group("handshake");
    // ~0.6 ms each: 50 samples fit the 3 s measurement time.
    g.sample_size(50);
    g.bench_function("noise_xk", |bch| {
        bch.iter(|| {
            let (mut a, mut b) = keys.links(cfg);
            pump(&mut a, &mut b, &keys);
            assert!(a.peer().is_some() && b.peer().is_some());
            (a, b)
        })
    });
    g.finish();
}

criterion_group!(benches, stream_throughput, round_trip, handshake);
criterion_main!(benches);

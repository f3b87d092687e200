//! busd on the host, loopback TCP: stream throughput between two busd vs a
//! plain TCP copy of the same bytes, and the latency one busd hop adds to
//! a 64-byte echo.
//!
//! `cargo bench -p busd --features std --bench busd -- --warm-up-time 1 --measurement-time 3`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use busd::testkit::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nexus_bus::proto::BusEvent;
use nexus_bus::{BusClient, DeviceId, Handle};
use nexus_ipc::host::HostEndpoint;

const MIB: usize = 1024 * 1024;
const STREAMS: &[&str] = &["b.bulk", "b.echo"];

fn pair() -> (Node, Node, DeviceId) {
    let (ka, kb) = (key(1), key(2));
    let (pa, pb) = (free_port(), free_port());
    let peers = [(ka, pa, STREAMS), (kb, pb, STREAMS)];
    let a = Node::start(ka, config(pa, &peers, 16));
    let b = Node::start(kb, config(pb, &peers, 16));
    (a, b, id_of(kb))
}

fn incoming(c: &mut BusClient<HostEndpoint>) -> Handle {
    loop {
        if let Some(BusEvent::Incoming { handle, .. }) = c.next_event(10_000_000) {
            return handle;
        }
    }
}

fn send_all(c: &mut BusClient<HostEndpoint>, h: Handle, data: &[u8]) {
    let mut off = 0;
    while off < data.len() {
        let n = c.send(h, &data[off..]).unwrap();
        off += n;
        if n == 0 {
            let _ = c.next_event(1_000_000);
        }
    }
}

fn read_n(c: &mut BusClient<HostEndpoint>, h: Handle, mut n: usize) {
    while n > 0 {
        let (_, d) = c.recv(h, 16 * 1024).unwrap();
        if d.is_empty() {
            let _ = c.next_event(1_000_000);
        }
        n -= d.len();
    }
}

fn throughput(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("stream_1mib");
    g.throughput(Throughput::Bytes(MIB as u64));
    g.sample_size(10);
    let data = vec![0x5au8; MIB];

    let (a, b, id_b) = pair();
    let mut srv = b.client("srv");
    srv.listen("b.bulk").unwrap();
    let mut cli = a.client("cli");
    wait_up(&mut cli, id_b);
    let h = cli.open(id_b, "b.bulk", None).unwrap();
    let hb = incoming(&mut srv);
    g.bench_function("busd", |bch| {
        bch.iter(|| {
            std::thread::scope(|s| {
                s.spawn(|| read_n(&mut srv, hb, MIB));
                send_all(&mut cli, h, &data);
            });
        })
    });

    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut tx = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut rx, _) = l.accept().unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    g.bench_function("plain_tcp", |bch| {
        bch.iter(|| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut left = MIB;
                    while left > 0 {
                        left -= rx.read(&mut buf).unwrap();
                    }
                });
                tx.write_all(&data).unwrap();
            });
        })
    });
    g.finish();
}

fn echo(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("echo_64b");
    let (a, b, id_b) = pair();
    let mut srv = b.client("srv");
    srv.listen("b.echo").unwrap();
    let mut cli = a.client("cli");
    wait_up(&mut cli, id_b);
    let h = cli.open(id_b, "b.echo", None).unwrap();
    let hb = incoming(&mut srv);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let msg = [7u8; 64];
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (_, d) = srv.recv(hb, 64).unwrap();
                if d.is_empty() {
                    let _ = srv.next_event(1_000_000);
                    continue;
                }
                send_all(&mut srv, hb, &d);
            }
        });
        g.bench_function("busd", |bch| {
            bch.iter(|| {
                send_all(&mut cli, h, &msg);
                read_n(&mut cli, h, 64);
            })
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });

    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    c.set_nodelay(true).unwrap();
    let (mut sv, _) = l.accept().unwrap();
    sv.set_nodelay(true).unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 64];
        while sv.read_exact(&mut b).is_ok() {
            if sv.write_all(&b).is_err() {
                break;
            }
        }
    });
    let mut back = [0u8; 64];
    g.bench_function("plain_tcp", |bch| {
        bch.iter(|| {
            c.write_all(&msg).unwrap();
            c.read_exact(&mut back).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, throughput, echo);
criterion_main!(benches);

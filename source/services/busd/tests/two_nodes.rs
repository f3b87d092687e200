//! Two busd over loopback TCP with services on each side.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg(feature = "testkit")]

use busd::testkit::*;
use nexus_bus::proto::{self, BusEvent, Handle, RESET_PEER_DOWN};
use nexus_bus::{BusClient, BusError, DeviceId};
use nexus_ipc::host::HostEndpoint;
use nexus_ipc::Endpoint;
use nexus_wire::Status;

const STREAMS: &[&str] = &["t.echo", "t.bulk"];

struct Pair {
    a: Node,
    b: Node,
    id_a: DeviceId,
    id_b: DeviceId,
    b_port: u16,
}

/// A (key 1) dials B (key 2): the lower device id dials; whichever it is,
/// both sides list each other.
fn pair(per_service: u32) -> Pair {
    let (ka, kb) = (key(1), key(2));
    let (pa, pb) = (free_port(), free_port());
    let peers = [(ka, pa, STREAMS), (kb, pb, STREAMS)];
    let a = Node::start(ka, config(pa, &peers, per_service));
    let b = Node::start(kb, config(pb, &peers, per_service));
    Pair {
        a,
        b,
        id_a: id_of(ka),
        id_b: id_of(kb),
        b_port: pb,
    }
}

fn incoming(c: &mut BusClient<HostEndpoint>) -> (Handle, DeviceId, String, Option<Vec<u8>>) {
    for _ in 0..1000 {
        if let Some(BusEvent::Incoming {
            handle,
            peer,
            name,
            trace,
        }) = c.next_event(10_000_000)
        {
            return (handle, peer, name, trace);
        }
    }
    panic!("no incoming stream");
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Sends all of `data`, waiting for credit; returns the SENDs that found none.
fn send_all(c: &mut BusClient<HostEndpoint>, h: Handle, data: &[u8]) -> u32 {
    let mut off = 0;
    let mut stalls = 0;
    while off < data.len() {
        let n = c.send(h, &data[off..]).unwrap();
        off += n;
        if n == 0 {
            stalls += 1;
            // Credit comes back as the reader reads.
            let _ = c.next_event(5_000_000);
        }
    }
    stalls
}

/// Reads until `fin`.
fn read_all(c: &mut BusClient<HostEndpoint>, h: Handle) -> Vec<u8> {
    let mut got = Vec::new();
    for _ in 0..100_000 {
        let (fin, data) = c.recv(h, 16 * 1024).unwrap();
        if fin {
            return got;
        }
        if data.is_empty() {
            let _ = c.next_event(5_000_000);
        }
        got.extend_from_slice(&data);
    }
    panic!("stream never finished ({} bytes)", got.len());
}

#[test]
fn a_stream_carries_a_mebibyte_under_credit_both_ways_with_trace_context() {
    let p = pair(4);
    let mut srv = p.b.client("svc-b");
    srv.listen("t.bulk").unwrap();
    let mut cli = p.a.client("svc-a");
    wait_up(&mut cli, p.id_b);
    let h = cli
        .open(
            p.id_b,
            "t.bulk",
            Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        )
        .unwrap();
    let (hb, from, name, trace) = incoming(&mut srv);
    assert_eq!((from, name.as_str()), (p.id_a, "t.bulk"));
    assert_eq!(
        trace.as_deref(),
        Some(&b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..])
    );
    let data: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let writer = std::thread::scope(|s| {
        let w = s.spawn(|| {
            let stalls = send_all(&mut cli, h, &data);
            cli.close(h).unwrap();
            (stalls, cli)
        });
        let got = read_all(&mut srv, hb);
        assert_eq!(got.len(), data.len());
        assert_eq!(fnv(&got), fnv(&data));
        w.join().unwrap()
    });
    let (stalls, mut cli) = writer;
    assert!(stalls > 0, "a 16 KiB window must hold a 1 MiB writer back");
    // The reply flows back on the same stream.
    let reply = fnv(&data).to_le_bytes();
    assert_eq!(srv.send(hb, &reply).unwrap(), 8);
    srv.close(hb).unwrap();
    assert_eq!(read_all(&mut cli, h), reply);
    let (sa, _) = cli.stats().unwrap();
    assert_eq!(sa.bytes_sent, 1024 * 1024);
    assert_eq!(sa.bytes_received, 8);
    assert!(sa.credit_stalls > 0);
    let (sb, _) = srv.stats().unwrap();
    assert_eq!((sb.streams_accepted, sb.bytes_received), (1, 1024 * 1024));
}

#[test]
fn the_peers_acl_refuses_a_name_before_any_data() {
    let p = pair(4);
    let mut srv = p.b.client("svc-b");
    srv.listen("t.secret").unwrap();
    let mut cli = p.a.client("svc-a");
    wait_up(&mut cli, p.id_b);
    // t.secret is not in A's entry of B's ACL.
    assert_eq!(
        cli.open(p.id_b, "t.secret", None),
        Err(BusError::Rejected(Status::Denied))
    );
    assert_eq!(
        srv.next_event(50_000_000),
        None,
        "the listener never hears of it"
    );
    // A listed name nobody listens to: refused too.
    assert_eq!(
        cli.open(p.id_b, "t.echo", None),
        Err(BusError::Rejected(Status::Denied))
    );
    let (s, r) = cli.stats().unwrap();
    assert_eq!(s.streams_live, 0);
    assert_eq!(r.denied, 2);
}

#[test]
fn unknown_and_unreachable_peers_get_an_immediate_status() {
    let ka = key(1);
    let pa = free_port();
    let dead_port = free_port();
    let a = Node::start(
        ka,
        config(pa, &[(ka, pa, STREAMS), (key(3), dead_port, STREAMS)], 4),
    );
    let mut cli = a.client("svc");
    assert_eq!(
        cli.open(DeviceId([9; 8]), "t.echo", None),
        Err(BusError::Rejected(Status::InvalidArgs))
    );
    assert_eq!(
        cli.open(id_of(key(3)), "t.echo", None),
        Err(BusError::Rejected(Status::Unavailable))
    );
    let (_, r) = cli.stats().unwrap();
    assert_eq!((r.invalid_args, r.unavailable), (1, 1));
}

#[test]
fn a_handle_belongs_to_its_owner() {
    let p = pair(4);
    let mut srv = p.b.client("svc-b");
    srv.listen("t.echo").unwrap();
    let mut owner = p.a.client("owner");
    wait_up(&mut owner, p.id_b);
    let h = owner.open(p.id_b, "t.echo", None).unwrap();
    let mut thief = p.a.client("thief");
    for r in [
        thief.send(h, b"x").map(|_| ()),
        thief.recv(h, 10).map(|_| ()),
        thief.close(h),
        thief.reset(h),
    ] {
        assert_eq!(r, Err(BusError::Rejected(Status::Denied)));
    }
    // Another service cannot take over a name either.
    let mut other = p.b.client("other");
    assert_eq!(
        other.listen("t.echo"),
        Err(BusError::Rejected(Status::Denied))
    );
    let (s, r) = owner.stats().unwrap();
    assert_eq!((s.owner_denies, r.denied), (4, 4));
    assert_eq!(owner.send(h, b"still mine").unwrap(), 10);
}

#[test]
fn caps_refuse_and_count() {
    let p = pair(2);
    let mut srv = p.b.client("svc-b");
    srv.listen("t.echo").unwrap();
    let mut cli = p.a.client("svc-a");
    wait_up(&mut cli, p.id_b);
    let _h1 = cli.open(p.id_b, "t.echo", None).unwrap();
    let _h2 = cli.open(p.id_b, "t.echo", None).unwrap();
    assert_eq!(
        cli.open(p.id_b, "t.echo", None),
        Err(BusError::Rejected(Status::OverLimit))
    );
    for n in ["a.1", "a.2", "a.3"] {
        srv.listen(n).unwrap();
    }
    assert_eq!(
        srv.listen("a.4"),
        Err(BusError::Rejected(Status::OverLimit))
    );
    let (sa, _) = cli.stats().unwrap();
    let (sb, _) = srv.stats().unwrap();
    assert_eq!((sa.cap_refusals, sb.cap_refusals), (1, 1));
}

#[test]
fn malformed_frames_are_refused_and_counted() {
    let p = pair(4);
    let mut raw = p.a.bus.endpoint("raw").unwrap();
    let busd = p.a.busd;
    let mut h = nexus_wire::Header::request(proto::MAGIC, proto::VERSION, 4, 77);
    let mut f = Vec::new();
    h.emit(&mut f);
    f.push(1); // a SEND cut short
    raw.send(busd, &f).unwrap();
    let reply = raw.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(
        proto::decode_reply(&reply.bytes).unwrap().1,
        proto::Reply::Rejected(Status::Malformed)
    );
    h.op = 99;
    let mut f = Vec::new();
    h.emit(&mut f);
    raw.send(busd, &f).unwrap();
    let reply = raw.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(&reply.bytes[12..], &[Status::Unsupported.as_u8()]);
    raw.send(busd, b"junk").unwrap();
    let mut cli = p.a.client("svc");
    let (_, r) = cli.stats().unwrap();
    assert_eq!((r.malformed, r.unsupported), (2, 1));
}

#[test]
fn a_dropped_session_resets_streams_tells_owners_and_comes_back() {
    let mut p = pair(4);
    let mut srv = p.b.client("svc-b");
    srv.listen("t.echo").unwrap();
    let mut cli = p.a.client("svc-a");
    cli.watch().unwrap();
    wait_up(&mut cli, p.id_b);
    let h = cli.open(p.id_b, "t.echo", None).unwrap();
    let (hb, ..) = incoming(&mut srv);
    // B's control service drops the session with A.
    let mut control = p.b.control();
    control.drop_peer(p.id_a).unwrap();
    // A's owner hears the reset and the peer going down, then up again.
    let mut reset = false;
    let mut down = false;
    let mut up_again = false;
    for _ in 0..2000 {
        match cli.next_event(5_000_000) {
            Some(BusEvent::Reset { handle, reason }) if handle == h => {
                assert_eq!(reason, RESET_PEER_DOWN);
                reset = true;
            }
            Some(BusEvent::PeerDown(id)) if id == p.id_b => down = true,
            Some(BusEvent::PeerUp(id)) if id == p.id_b && down => {
                up_again = true;
                break;
            }
            _ => {}
        }
    }
    assert!(
        reset && down && up_again,
        "reset {reset} down {down} up {up_again}"
    );
    assert_eq!(
        srv.send(hb, b"x"),
        Err(BusError::Rejected(Status::InvalidArgs)),
        "B's side of the stream is gone too"
    );
    // A new stream works on the new session.
    let h2 = cli.open(p.id_b, "t.echo", None).unwrap();
    let (hb2, ..) = incoming(&mut srv);
    assert_eq!(cli.send(h2, b"again").unwrap(), 5);
    cli.close(h2).unwrap();
    assert_eq!(read_all(&mut srv, hb2), b"again");
    let (s, _) = cli.stats().unwrap();
    assert_eq!(s.sessions, 2);
    let lines = p.a.lines();
    let ups = lines
        .iter()
        .filter(|l| **l == format!("busd: peer up {}", p.id_b))
        .count();
    assert_eq!(ups, 2, "{lines:?}");
    // Only the control role may drop sessions.
    assert_eq!(
        srv.drop_peer(p.id_a),
        Err(BusError::Rejected(Status::Denied))
    );
}

#[test]
fn a_thousand_open_close_cycles_leave_nothing_behind() {
    let p = pair(4);
    let mut srv = p.b.client("svc-b");
    srv.listen("t.echo").unwrap();
    let mut cli = p.a.client("svc-a");
    wait_up(&mut cli, p.id_b);
    for i in 0..1000u32 {
        let h = cli.open(p.id_b, "t.echo", None).unwrap();
        let (hb, ..) = incoming(&mut srv);
        assert_eq!(cli.send(h, &i.to_le_bytes()).unwrap(), 4);
        cli.close(h).unwrap();
        assert_eq!(read_all(&mut srv, hb), i.to_le_bytes());
        srv.close(hb).unwrap();
        assert!(read_all(&mut cli, h).is_empty());
    }
    // Let the last CLOSE frames cross, then both sides hold nothing.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let (sa, _) = cli.stats().unwrap();
    let (sb, _) = srv.stats().unwrap();
    assert_eq!((sa.streams_live, sb.streams_live), (0, 0));
    assert_eq!((sa.streams_opened, sb.streams_accepted), (1000, 1000));
}

#[test]
fn a_reader_that_stops_holds_the_writer_back_with_bounded_memory() {
    let p = pair(4);
    let mut srv = p.b.client("svc-b");
    srv.listen("t.echo").unwrap();
    let mut cli = p.a.client("svc-a");
    wait_up(&mut cli, p.id_b);
    let h = cli.open(p.id_b, "t.echo", None).unwrap();
    let _ = incoming(&mut srv);
    // B never reads. A keeps writing: the stream takes at most the peer's
    // window (16 KiB) plus the local send queue (one window), then nothing.
    let chunk = [7u8; 4096];
    let mut taken = 0;
    for _ in 0..200 {
        taken += cli.send(h, &chunk).unwrap();
        let _ = cli.next_event(1_000_000);
    }
    assert!(
        taken <= 2 * 16384,
        "took {taken} bytes for a reader that never reads"
    );
    assert!(taken >= 16384, "the window itself is usable: {taken}");
    let (s, _) = cli.stats().unwrap();
    assert!(s.credit_stalls > 0);
}

#[test]
fn the_built_in_recipe_parses_and_lists_both_test_nodes() {
    let cfg = busd::Config::builtin().unwrap();
    let peers = cfg.peers().unwrap();
    assert_eq!(peers.len(), 3);
    assert_eq!(peers[0].id.to_string(), "5863cd012c8f24a0");
    assert_eq!(peers[1].id.to_string(), "b5e855b54602aa2d");
    // The host's nexus-obs: its test key is the cluster file's.
    assert_eq!(peers[2].name, "host");
    assert_eq!(peers[2].id.to_string(), "0ed7a8c4bd3e5fb8");
    for bad in ["listen_port = 1", "[limits]\nmax_listeners = 0"] {
        assert!(busd::Config::parse(bad).is_err());
    }
}

#[test]
fn an_unlisted_device_gets_nothing_beyond_the_refusal() {
    let p = pair(4);
    // A third device that lists B, but that B does not list; it dials B
    // (pick a key whose id is lower than B's, so it is the dialling side).
    let kc = (10u8..).map(key).find(|k| id_of(*k) < p.id_b).unwrap();
    let pc = free_port();
    let mut probe = p.a.client("probe");
    wait_up(&mut probe, p.id_b);
    let b_port = p.b_port;
    let c = Node::start(
        kc,
        config(pc, &[(kc, pc, STREAMS), (key(2), b_port, STREAMS)], 4),
    );
    let mut cli = c.client("svc-c");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let peers = cli.peers().unwrap();
    assert!(peers.iter().all(|p| !p.up), "{peers:?}");
    assert_eq!(
        cli.open(p.id_b, "t.echo", None),
        Err(BusError::Rejected(Status::Unavailable))
    );
    let lines = p.b.lines();
    assert!(
        lines
            .iter()
            .any(|l| *l == format!("dsoftbus: acl deny {}", id_of(kc))),
        "{lines:?}"
    );
    let mut srv = p.b.client("svc-b");
    let (s, _) = srv.stats().unwrap();
    assert!(s.acl_denies >= 1);
    assert_eq!(s.sessions, 1, "only A's session");
}

#[test]
fn a_span_context_crosses_in_the_open_and_both_sides_report_trace_caps() {
    let p = pair(4);
    let mut srv = p.b.client("svc-b");
    srv.listen("t.echo").unwrap();
    let mut cli = p.a.client("svc-a");
    wait_up(&mut cli, p.id_b);
    // A text traceparent is opaque to busd: delivered, but it is not a
    // span context, so nothing is reported as propagated.
    cli.open(p.id_b, "t.echo", Some(b"00-not-a-binary-context"))
        .unwrap();
    let (_, _, _, trace) = incoming(&mut srv);
    assert_eq!(trace.as_deref(), Some(&b"00-not-a-binary-context"[..]));
    let ctx = nexus_trace::SpanContext::new(
        nexus_trace::TraceId::new(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736).unwrap(),
        nexus_trace::SpanId::new(0x00f0_67aa_0ba9_02b7).unwrap(),
        nexus_trace::TraceFlags::SAMPLED,
    );
    let mut bytes = Vec::new();
    nexus_trace::binary::encode(
        &nexus_trace::TraceContext::new(ctx),
        &nexus_trace::Baggage::default(),
        nexus_trace::Scope::CrossNode,
        Some(nexus_trace::binary::MUX_META_MAX),
        &mut bytes,
    )
    .unwrap();
    cli.open(p.id_b, "t.echo", Some(&bytes)).unwrap();
    let (_, from, _, trace) = incoming(&mut srv);
    assert_eq!(from, p.id_a);
    let got = nexus_trace::binary::decode(
        &trace.unwrap(),
        nexus_trace::BaggageLimits::default(),
        nexus_trace::Scope::Local,
    )
    .unwrap();
    assert_eq!(got.parent.unwrap().span, ctx);
    // Console lines are collected by the node's thread: wait for them
    // (bounded), then check exactly.
    let seen = |n: &Node, want: &str| {
        (0..500).any(|_| {
            let hit = n.lines().iter().any(|l| l == want);
            if !hit {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            hit
        })
    };
    for n in [&p.a, &p.b] {
        assert!(seen(n, "dsoftbus: mux trace caps on"), "{:?}", n.lines());
    }
    assert!(seen(&p.b, "dsoftbus: mux trace propagated"));
    let b = p.b.lines();
    assert_eq!(
        b.iter()
            .filter(|l| *l == "dsoftbus: mux trace propagated")
            .count(),
        1,
        "{b:?}"
    );
    assert!(!p.a.lines().iter().any(|l| l.contains("propagated")));
}

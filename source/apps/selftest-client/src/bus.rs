//! The two-node device-bus phase: dsoftbus over TCP between two nodes,
//! written against the platform traits (the QEMU runtime boots it with
//! `nexus.role=a|b`, `nexus.key` and `nexus.peer_key`).
//!
//! Node B listens. Node A first dials with a third, unlisted identity
//! (derived from its own key), which B must refuse during the handshake —
//! B prints `dsoftbus: acl deny <id>` with the id the stranger proved. Then
//! A dials with its real key: both print `dsoftbus: session ok <peer>`. A
//! opens the `selftest.bulk` stream (propagating a trace context in the
//! OPEN metadata), sends 1 MiB under the mux's credit flow control, and
//! half-closes; B checks length and checksum against the deterministic
//! generator, prints `dsoftbus: stream verified …`, and replies on the
//! same stream; A prints `SELFTEST: mux stream ok` only after that reply
//! matches what it sent.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use dsoftbus::identity::{DeviceId, DeviceKey};
use dsoftbus::link::{Link, LinkConfig};
use dsoftbus::mux::Event;
use dsoftbus::policy::Acl;
use nexus_svc::platform::{Network, Platform, TcpSocket, TcpState};

use crate::pair::{close, connect, send_all, Role};
use crate::pairproto::{
    expected_checksum, parse_stream_reply, stream_reply, ByteStream, Fnv1a64, PORT, SEED,
    STREAM_BYTES, STREAM_REPLY_LEN,
};

/// The stream the proof uses, and the ones a peer may open.
const BULK: &str = "selftest.bulk";
const STREAMS: [&str; 4] = [BULK, "obs.logs", "obs.metrics", "trace"];
/// The trace context A propagates in its OPEN (W3C traceparent form).
const TRACEPARENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// Time for everything after connecting.
const EXCHANGE_TIMEOUT_NS: u64 = 60_000_000_000;
/// Time one incoming handshake may take before B drops it and
/// listens again (a silent or stalled dialer cannot hold the port).
const HANDSHAKE_TIMEOUT_NS: u64 = 5_000_000_000;
const CHUNK: usize = 16 * 1024;

/// Runs this node's side with the device key `key`; `peer_key` is the one
/// peer allowed on the bus. Handshake seeds come from `p.entropy`. Node A
/// needs the peer's address.
pub fn run<P: Platform, N: Network>(
    p: &P,
    net: &N,
    role: Role,
    peer_ip: Option<[u8; 4]>,
    key: DeviceKey,
    peer_key: [u8; 32],
) -> Result<(), String> {
    let mut acl = Acl::new();
    acl.allow(peer_key, &STREAMS)
        .map_err(|e| format!("acl: {e:?}"))?;
    p.console(&format!(
        "dsoftbus: device {} (peer {})",
        key.id(),
        DeviceId::of(&peer_key)
    ));
    match role {
        Role::A => {
            let ip = peer_ip.ok_or_else(|| String::from("node a needs nexus.peer"))?;
            node_a(p, net, ip, &key, peer_key, &acl)
        }
        Role::B => node_b(p, net, &key, &acl),
    }
}

/// A fresh handshake seed from the platform's entropy.
fn seed<P: Platform>(p: &P) -> Result<[u8; 32], String> {
    let mut s = [0u8; 32];
    if p.entropy(&mut s) {
        Ok(s)
    } else {
        Err(String::from("no entropy for the handshake (virtio-rng)"))
    }
}

/// Moves bytes between the socket and the link once; runs the platform.
fn pump<P: Platform, S: TcpSocket>(
    p: &P,
    sock: &mut S,
    link: &mut Link,
    acl: &Acl,
    buf: &mut [u8],
    deadline: u64,
) -> Result<(), String> {
    let now = p.now_ns();
    while let Some(bytes) = link.poll_transmit(now) {
        send_all(p, sock, &bytes, deadline)?;
    }
    let n = sock.recv(buf);
    if n > 0 {
        link.on_bytes(buf.get(..n).unwrap_or_default(), now, acl)
            .map_err(|e| format!("link: {e}"))?;
    } else if !sock.may_recv()
        && !matches!(
            sock.state(),
            TcpState::Listen | TcpState::SynReceived | TcpState::SynSent
        )
    {
        return Err(String::from("the peer closed the connection"));
    }
    link.tick(now);
    if let Some(e) = link.closed() {
        return Err(format!("link: {e}"));
    }
    if p.now_ns() >= deadline {
        return Err(String::from("timeout"));
    }
    p.run_once();
    Ok(())
}

fn node_a<P: Platform, N: Network>(
    p: &P,
    net: &N,
    ip: [u8; 4],
    key: &DeviceKey,
    peer_key: [u8; 32],
    acl: &Acl,
) -> Result<(), String> {
    p.console("dsoftbus: ready");
    let deadline = p.now_ns().saturating_add(EXCHANGE_TIMEOUT_NS);
    let mut buf = vec![0u8; CHUNK];

    // 1. A third identity, not on B's list: B must refuse it.
    let mut stranger_secret = [0u8; 32];
    for (i, b) in stranger_secret.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) ^ 0x5a;
    }
    let stranger = DeviceKey::from_secret(stranger_secret);
    p.console(&format!(
        "dsoftbus: dialing as unlisted device {}",
        stranger.id()
    ));
    let mut sock = connect(p, net, ip)?;
    let mut link = Link::dial(&stranger, peer_key, seed(p)?, LinkConfig::default())
        .map_err(|e| format!("dial: {e}"))?;
    // B closes the connection once it has refused us.
    while sock.state().is_open() && sock.may_recv() {
        if pump(p, &mut sock, &mut link, acl, &mut buf, deadline).is_err() {
            break;
        }
    }
    close(p, &mut sock);
    net.release(sock);

    // 2. The real identity.
    let mut sock = connect(p, net, ip)?;
    let mut link = Link::dial(key, peer_key, seed(p)?, LinkConfig::default())
        .map_err(|e| format!("dial: {e}"))?;
    while link.peer().is_none() {
        pump(p, &mut sock, &mut link, acl, &mut buf, deadline)?;
    }
    let peer = link.peer().ok_or_else(|| String::from("no peer"))?;

    // In XK the dialer finishes its half first; B authorizes us only on the
    // third message. B's OPEN_ACK is the first record that proves it did,
    // so the session marker waits for it.
    let mux = link.mux().ok_or_else(|| String::from("no mux"))?;
    let s = mux
        .open(BULK, 1, Some(TRACEPARENT))
        .map_err(|e| format!("open: {e:?}"))?;
    let mut accepted = false;
    while !accepted {
        pump(p, &mut sock, &mut link, acl, &mut buf, deadline)?;
        let mux = link.mux().ok_or_else(|| String::from("no mux"))?;
        while let Some(ev) = mux.poll_event() {
            match ev {
                Event::Accepted { stream } if stream == s => {
                    p.console(&format!("dsoftbus: session ok {peer}"));
                    accepted = true;
                }
                Event::Rejected { reason, .. } => {
                    return Err(format!("stream rejected: {reason:?}"))
                }
                _ => {}
            }
        }
    }
    let t0 = p.now_ns();
    let mut gen = ByteStream::new(SEED);
    let mut sum = Fnv1a64::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut left = STREAM_BYTES;
    while left > 0 || !pending.is_empty() {
        if pending.is_empty() {
            let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
            pending = vec![0u8; n];
            gen.fill(&mut pending);
            sum.update(&pending);
            left -= n as u64;
        }
        let mux = link.mux().ok_or_else(|| String::from("no mux"))?;
        let n = mux.send(s, &pending).map_err(|e| format!("send: {e:?}"))?;
        pending.drain(..n);
        pump(p, &mut sock, &mut link, acl, &mut buf, deadline)?;
    }
    link.mux()
        .ok_or_else(|| String::from("no mux"))?
        .close(s)
        .map_err(|e| format!("close: {e:?}"))?;
    // B's reply on the same stream: length and checksum, 16 bytes.
    let mut reply = Vec::new();
    while reply.len() < STREAM_REPLY_LEN {
        pump(p, &mut sock, &mut link, acl, &mut buf, deadline)?;
        let mux = link.mux().ok_or_else(|| String::from("no mux"))?;
        let mut r = [0u8; STREAM_REPLY_LEN];
        let n = mux.recv(s, &mut r).map_err(|e| format!("recv: {e:?}"))?;
        reply.extend_from_slice(r.get(..n).unwrap_or_default());
    }
    let got = parse_stream_reply(reply.get(..STREAM_REPLY_LEN).unwrap_or_default());
    let (len, theirs) = (got.map(|g| g.0), got.map(|g| g.1));
    let ours = sum.finish();
    if len != Some(STREAM_BYTES) || theirs != Some(ours) {
        return Err(format!(
            "reply mismatch: {len:?} {theirs:?}, sent {STREAM_BYTES} {ours:016x}"
        ));
    }
    let ms = p.now_ns().saturating_sub(t0) / 1_000_000;
    p.console(&format!(
        "runtime: mux stream {STREAM_BYTES} bytes, checksum {ours:016x}, {ms} ms guest time"
    ));
    p.console("SELFTEST: mux stream ok");
    // Let the last frames (credit, close) go out, then hang up.
    for _ in 0..8 {
        let _ = pump(p, &mut sock, &mut link, acl, &mut buf, deadline);
    }
    close(p, &mut sock);
    Ok(())
}

fn node_b<P: Platform, N: Network>(
    p: &P,
    net: &N,
    key: &DeviceKey,
    acl: &Acl,
) -> Result<(), String> {
    let deadline = p.now_ns().saturating_add(EXCHANGE_TIMEOUT_NS);
    let mut buf = vec![0u8; CHUNK];
    p.console("dsoftbus: ready");
    let mut denied = false;
    let (mut sock, mut link) = loop {
        let mut sock = net.listen(PORT).map_err(|e| format!("listen: {e}"))?;
        let mut link = Link::accept(key, seed(p)?, LinkConfig::default())
            .map_err(|e| format!("accept: {e}"))?;
        // Wait for a dialer (bounded by the whole exchange), then give its
        // handshake its own short deadline.
        p.wait_until(EXCHANGE_TIMEOUT_NS, &mut || {
            sock.state() != TcpState::Listen
        });
        let hs_deadline = p
            .now_ns()
            .saturating_add(HANDSHAKE_TIMEOUT_NS)
            .min(deadline);
        let up = loop {
            match pump(p, &mut sock, &mut link, acl, &mut buf, hs_deadline) {
                Ok(()) if link.peer().is_some() => break true,
                Ok(()) => {}
                Err(e) => {
                    if let Some(id) = link.refused_peer() {
                        p.console(&format!("dsoftbus: acl deny {id}"));
                        denied = true;
                    } else {
                        p.console(&format!("dsoftbus: handshake dropped: {e}"));
                    }
                    if p.now_ns() >= deadline {
                        return Err(e);
                    }
                    break false;
                }
            }
        };
        if up {
            break (sock, link);
        }
        close(p, &mut sock);
        net.release(sock);
    };
    if !denied {
        return Err(String::from("the unlisted device was never refused"));
    }
    let peer = link.peer().ok_or_else(|| String::from("no peer"))?;
    p.console(&format!("dsoftbus: session ok {peer}"));

    let mut stream = None;
    let mut sum = Fnv1a64::default();
    let mut got = 0u64;
    let mut peer_closed = false;
    let mut r = vec![0u8; CHUNK];
    while !(peer_closed && got >= STREAM_BYTES) {
        pump(p, &mut sock, &mut link, acl, &mut buf, deadline)?;
        let mux = link.mux().ok_or_else(|| String::from("no mux"))?;
        while let Some(ev) = mux.poll_event() {
            match ev {
                Event::Opened {
                    stream: s,
                    name,
                    trace,
                    ..
                } if name == BULK => {
                    let t = trace.as_deref().map(core::str::from_utf8);
                    p.console(&format!(
                        "dsoftbus: stream {s} '{name}' opened, trace context {t:?}"
                    ));
                    stream = Some(s);
                }
                Event::Closed { stream: c } if Some(c) == stream => peer_closed = true,
                _ => {}
            }
        }
        if let Some(s) = stream {
            loop {
                let n = mux.recv(s, &mut r).map_err(|e| format!("recv: {e:?}"))?;
                if n == 0 {
                    break;
                }
                sum.update(r.get(..n).unwrap_or_default());
                got += n as u64;
            }
        }
    }
    let s = stream.ok_or_else(|| String::from("no stream"))?;
    let sum = sum.finish();
    let want = expected_checksum(SEED, STREAM_BYTES);
    if got != STREAM_BYTES || sum != want {
        return Err(format!(
            "stream mismatch: {got} bytes {sum:016x}, expected {want:016x}"
        ));
    }
    p.console(&format!("dsoftbus: stream verified {got} {sum:016x}"));
    let reply = stream_reply(got, sum);
    // All 16 bytes must be accepted (the credit may need a round trip).
    let mut sent = 0;
    while sent < reply.len() {
        let mux = link.mux().ok_or_else(|| String::from("no mux"))?;
        sent += mux
            .send(s, reply.get(sent..).unwrap_or_default())
            .map_err(|e| format!("reply: {e:?}"))?;
        if sent < reply.len() {
            pump(p, &mut sock, &mut link, acl, &mut buf, deadline)?;
        }
    }
    let mux = link.mux().ok_or_else(|| String::from("no mux"))?;
    mux.close(s).map_err(|e| format!("close: {e:?}"))?;
    // Until A hangs up (or a bounded while).
    while sock.state().is_open() && sock.may_recv() {
        if pump(p, &mut sock, &mut link, acl, &mut buf, deadline).is_err() {
            break;
        }
    }
    close(p, &mut sock);
    Ok(())
}

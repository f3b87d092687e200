//! The two-node device-bus phase, through busd: services on both nodes
//! use the bus only as busd clients (`nexus_bus::BusClient`), written
//! against the platform traits (the QEMU runtime boots it with
//! `nexus.role=a|b` and `nexus.key`).
//!
//! | step | node | marker (only after its evidence) |
//! |------|------|----------------------------------|
//! | 1 | both | busd prints `dsoftbus: session ok <peer>` and `busd: peer up <peer>` when the session is authenticated both ways |
//! | 2 | A | dials B's busd itself with a third, unlisted identity: B's busd prints `dsoftbus: acl deny <id>` with the id the stranger proved |
//! | 3 | A → B | A opens `selftest.bulk` through busd (with a trace context), writes 1 MiB of the deterministic stream under credit and closes; B's listener reads it through busd, checks length and checksum: `dsoftbus: stream verified …`, and replies on the stream |
//! | 4 | A | `SELFTEST: bus stream via busd ok` when B's reply matches what A sent; `SELFTEST: mux stream ok` when A's busd counters show at least the 1 MiB went out (other services share busd) and the writer was held back by credit at least once |
//! | 5 | B | on A's "done" stream, B's selftest (busd's control role) drops the session; A's busd redials: both print `busd: peer up <peer>` again |
//! | 6 | both | a new stream on the new session: A sends a probe, B echoes it and closes, A closes after reading the echo: `SELFTEST: bus reconnect ok` on each side once it saw the other's end |

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use busd::service::SockIo;
use dsoftbus::identity::DeviceKey;
use dsoftbus::link::{Link, LinkConfig};
use dsoftbus::policy::Acl;
use dsoftbus::pump::Pumped;
use nexus_bus::proto::{BusEvent, Handle};
use nexus_bus::{BusClient, DeviceId};
use nexus_ipc::Endpoint;
use nexus_svc::platform::{Network, Platform};

use crate::pair::Role;
use crate::pairproto::{
    expected_checksum, parse_stream_reply, stream_reply, ByteStream, Fnv1a64, SEED, STREAM_BYTES,
    STREAM_REPLY_LEN,
};
use crate::stream::{berr, open_retrying, read_to_end, send_all, timed_out, EVENT_WAIT_NS};

/// The stream the proof uses.
const BULK: &str = "selftest.bulk";
/// The trace context A propagates in its OPEN (W3C traceparent form).
const TRACEPARENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// Guest time for the whole phase.
const PHASE_TIMEOUT_NS: u64 = 60_000_000_000;
/// One wait for an event.
const CHUNK: usize = 16 * 1024;
/// What A writes on the "done" stream and on the probe stream.
const DONE: &[u8] = b"done";
const PROBE: &[u8] = b"probe after reconnect";

/// The other node, as busd's config lists it.
#[derive(Debug, Clone, Copy)]
pub struct BusPeer {
    /// Its id.
    pub id: DeviceId,
    /// Its static public key.
    pub key: [u8; 32],
    /// Where its busd listens.
    pub ip: [u8; 4],
    /// Its busd's port.
    pub port: u16,
}

/// Runs this node's side. `bus` is a busd client with busd's control role.
pub fn run<P: Platform, N: Network, E: Endpoint>(
    p: &P,
    net: &N,
    bus: &mut BusClient<E>,
    role: Role,
    peer: BusPeer,
) -> Result<(), String> {
    let deadline = p.now_ns().saturating_add(PHASE_TIMEOUT_NS);
    bus.watch().map_err(berr("watch"))?;
    if role == Role::B {
        bus.listen(BULK).map_err(berr("listen"))?;
    }
    wait_peer(p, bus, peer.id, true, deadline)?;
    match role {
        Role::A => node_a(p, net, bus, peer, deadline),
        Role::B => node_b(p, bus, peer, deadline),
    }
}

/// Waits until busd reports `peer` up (or down).
fn wait_peer<P: Platform, E: Endpoint>(
    p: &P,
    bus: &mut BusClient<E>,
    peer: DeviceId,
    up: bool,
    deadline: u64,
) -> Result<(), String> {
    loop {
        match bus.next_event(EVENT_WAIT_NS) {
            Some(BusEvent::PeerUp(id)) if id == peer && up => return Ok(()),
            Some(BusEvent::PeerDown(id)) if id == peer && !up => return Ok(()),
            _ => {}
        }
        if up
            && bus
                .peers()
                .map_err(berr("peers"))?
                .iter()
                .any(|i| i.id == peer && i.up)
        {
            return Ok(());
        }
        timed_out(p, deadline, if up { "the peer" } else { "the peer to go" })?;
    }
}

/// The next stream a peer opens to us.
fn wait_incoming<P: Platform, E: Endpoint>(
    p: &P,
    bus: &mut BusClient<E>,
    deadline: u64,
) -> Result<(Handle, Option<Vec<u8>>), String> {
    loop {
        if let Some(BusEvent::Incoming {
            handle,
            name,
            trace,
            ..
        }) = bus.next_event(EVENT_WAIT_NS)
        {
            if name == BULK {
                return Ok((handle, trace));
            }
        }
        timed_out(p, deadline, "an incoming stream")?;
    }
}

/// Dials the peer's busd as a device it does not list: the handshake must
/// end without a session.
fn stranger_dial<P: Platform, N: Network>(
    p: &P,
    net: &N,
    peer: BusPeer,
    deadline: u64,
) -> Result<(), String> {
    // A fixed third identity: its id (a8e05dee35db0fc8) is in B's markers.
    let mut secret = [0u8; 32];
    for (i, b) in secret.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) ^ 0x5a;
    }
    let stranger = DeviceKey::from_secret(secret);
    p.console(&format!(
        "dsoftbus: dialing as unlisted device {}",
        stranger.id()
    ));
    let mut seed = [0u8; 32];
    if !p.entropy(&mut seed) {
        return Err(String::from("no entropy for the handshake (virtio-rng)"));
    }
    let mut sock = net
        .connect(peer.ip, peer.port)
        .map_err(|e| format!("connect: {e}"))?;
    let link = Link::dial(&stranger, peer.key, seed, LinkConfig::default())
        .map_err(|e| format!("dial: {e}"))?;
    let mut pumped = Pumped::new(link);
    let mut buf = vec![0u8; CHUNK];
    let acl = Acl::new();
    loop {
        match pumped.pump(&mut SockIo(&mut sock), p.now_ns(), &acl, &mut buf) {
            // Refused: the peer closed the connection on us.
            Err(_) => break,
            Ok(_)
                if pumped
                    .link
                    .mux()
                    .is_some_and(|m| m.stats().frames_received > 0) =>
            {
                net.release(sock);
                return Err(String::from("the peer accepted an unlisted device"));
            }
            Ok(_) => {}
        }
        if let Some(m) = pumped.link.mux() {
            m.ping_now(p.now_ns());
        }
        timed_out(p, deadline, "the stranger's refusal")?;
        p.run_once();
    }
    net.release(sock);
    Ok(())
}

fn node_a<P: Platform, N: Network, E: Endpoint>(
    p: &P,
    net: &N,
    bus: &mut BusClient<E>,
    peer: BusPeer,
    deadline: u64,
) -> Result<(), String> {
    stranger_dial(p, net, peer, deadline)?;

    // The 1 MiB stream through busd.
    let (before, _) = bus.stats().map_err(berr("stats"))?;
    let h = open_retrying(p, bus, (peer.id, BULK), Some(TRACEPARENT), deadline)?;
    let t0 = p.now_ns();
    let mut gen = ByteStream::new(SEED);
    let mut sum = Fnv1a64::default();
    let mut chunk = vec![0u8; CHUNK];
    let mut left = STREAM_BYTES;
    while left > 0 {
        let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        let part = chunk.get_mut(..n).unwrap_or_default();
        gen.fill(part);
        sum.update(part);
        send_all(p, bus, h, part, deadline)?;
        left -= n as u64;
    }
    bus.close(h).map_err(berr("close"))?;
    let mut reply = Vec::new();
    read_to_end(p, bus, h, (CHUNK as u16, deadline), &mut |d| {
        reply.extend_from_slice(d)
    })?;
    let ours = sum.finish();
    let guest_ns = p.now_ns().saturating_sub(t0).max(1);
    let got = parse_stream_reply(reply.get(..STREAM_REPLY_LEN).unwrap_or_default());
    if got != Some((STREAM_BYTES, ours)) || reply.len() != STREAM_REPLY_LEN {
        return Err(format!(
            "reply mismatch: {got:?}, sent {STREAM_BYTES} {ours:016x}"
        ));
    }
    p.console("SELFTEST: bus stream via busd ok");
    let (after, _) = bus.stats().map_err(berr("stats"))?;
    let sent = after.bytes_sent.saturating_sub(before.bytes_sent);
    let stalls = after.credit_stalls.saturating_sub(before.credit_stalls);
    // Other services share busd (logd's obs.logs stream): at least the
    // stream's bytes went out.
    if sent < STREAM_BYTES || stalls == 0 {
        return Err(format!(
            "busd counters: {sent} bytes sent, {stalls} credit stalls (want at least {STREAM_BYTES}, > 0)"
        ));
    }
    p.console(&format!(
        "runtime: stream via busd {STREAM_BYTES} bytes in {} ms guest time ({} KiB/s), checksum {ours:016x}, {stalls} credit stalls",
        guest_ns / 1_000_000,
        STREAM_BYTES.saturating_mul(1_000_000_000) / guest_ns / 1024
    ));
    p.console("SELFTEST: mux stream ok");

    // Tell B we are done; B drops the session, busd redials.
    let done = open_retrying(p, bus, (peer.id, BULK), None, deadline)?;
    send_all(p, bus, done, DONE, deadline)?;
    bus.close(done).map_err(berr("close"))?;
    wait_peer(p, bus, peer.id, false, deadline)?;
    wait_peer(p, bus, peer.id, true, deadline)?;

    // A new stream on the new session.
    let h = open_retrying(p, bus, (peer.id, BULK), None, deadline)?;
    send_all(p, bus, h, PROBE, deadline)?;
    let mut echo = Vec::new();
    read_to_end(p, bus, h, (CHUNK as u16, deadline), &mut |d| {
        echo.extend_from_slice(d)
    })?;
    if echo != PROBE {
        return Err(format!("echo after reconnect: {echo:?}"));
    }
    // Closing after the echo is B's evidence that we read it.
    bus.close(h).map_err(berr("close"))?;
    p.console("SELFTEST: bus reconnect ok");
    Ok(())
}

fn node_b<P: Platform, E: Endpoint>(
    p: &P,
    bus: &mut BusClient<E>,
    peer: BusPeer,
    deadline: u64,
) -> Result<(), String> {
    // The 1 MiB stream.
    let (h, trace) = wait_incoming(p, bus, deadline)?;
    p.console(&format!(
        "dsoftbus: stream '{BULK}' opened through busd, trace context {:?}",
        trace.as_deref().map(core::str::from_utf8)
    ));
    let mut sum = Fnv1a64::default();
    let got = read_to_end(p, bus, h, (CHUNK as u16, deadline), &mut |d| sum.update(d))?;
    let sum = sum.finish();
    let want = expected_checksum(SEED, STREAM_BYTES);
    if got != STREAM_BYTES || sum != want {
        return Err(format!(
            "stream mismatch: {got} bytes {sum:016x}, expected {want:016x}"
        ));
    }
    p.console(&format!("dsoftbus: stream verified {got} {sum:016x}"));
    send_all(p, bus, h, &stream_reply(got, sum), deadline)?;
    bus.close(h).map_err(berr("close"))?;

    // A's "done": drop the session (busd's control role).
    let (done, _) = wait_incoming(p, bus, deadline)?;
    let mut note = Vec::new();
    read_to_end(p, bus, done, (CHUNK as u16, deadline), &mut |d| {
        note.extend_from_slice(d)
    })?;
    if note != DONE {
        return Err(format!("unexpected note {note:?}"));
    }
    bus.close(done).map_err(berr("close"))?;
    bus.drop_peer(peer.id).map_err(berr("drop"))?;
    wait_peer(p, bus, peer.id, true, deadline)?;

    // The probe on the new session: echo it, then wait for A's close.
    let (h, _) = wait_incoming(p, bus, deadline)?;
    let mut probe = Vec::new();
    let mut fin = false;
    while probe.len() < PROBE.len() && !fin {
        let (f, data) = bus.recv(h, CHUNK as u16).map_err(berr("recv"))?;
        fin = f;
        if data.is_empty() && !f {
            timed_out(p, deadline, "the probe")?;
            let _ = bus.next_event(EVENT_WAIT_NS);
        }
        probe.extend_from_slice(&data);
    }
    if probe != PROBE {
        return Err(format!("probe after reconnect: {probe:?}"));
    }
    send_all(p, bus, h, &probe, deadline)?;
    bus.close(h).map_err(berr("close"))?;
    read_to_end(p, bus, h, (CHUNK as u16, deadline), &mut |_| {})?;
    p.console("SELFTEST: bus reconnect ok");
    Ok(())
}

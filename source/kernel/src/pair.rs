//! The two-node pair test (`nexus.role=a|b`): plain TCP between two QEMU
//! guests over virtio-net. Node B listens on [`PORT`]; node A connects,
//! sends 1 MiB of the deterministic stream, and prints its marker only
//! after B's reply carries the same length and checksum as its own. The
//! byte protocol is `pairproto`; here are the sockets and the markers.

use alloc::format;
use alloc::string::String;
use alloc::vec;

use nexus_bounds::Clock;

use crate::bootargs::{Ipv4Display, Role};
use crate::net::{Net, TcpHandle, TcpState};
use crate::pairproto::{
    expected_checksum, header, parse_reply, reply, ByteStream, Fnv1a64, StreamReceiver, PORT,
    REPLY_LEN, SEED, STREAM_BYTES,
};
use crate::runtime::Runtime;
use crate::{console, kprintln};

/// Guest time one connection attempt may take.
const CONNECT_TIMEOUT_NS: u64 = 5_000_000_000;
/// Guest time node A keeps trying to connect (B may not listen yet: its
/// stack answers a SYN to a closed port with a reset).
const CONNECT_BUDGET_NS: u64 = 20_000_000_000;
/// Pause between attempts.
const RETRY_PAUSE_NS: u64 = 250_000_000;
/// Guest time for the whole exchange once connected (B: from listening).
const EXCHANGE_TIMEOUT_NS: u64 = 40_000_000_000;
/// Guest time for the closing handshake.
const CLOSE_TIMEOUT_NS: u64 = 2_000_000_000;
/// Bytes moved per socket call.
const CHUNK: usize = 16 * 1024;

/// Runs this node's side of the pair test.
pub fn run(rt: &Runtime, net: &Net, role: Role, peer: Option<[u8; 4]>) -> Result<(), String> {
    match role {
        Role::A => {
            let peer = peer.ok_or_else(|| String::from("node a needs nexus.peer"))?;
            node_a(rt, net, peer)
        }
        Role::B => node_b(rt, net),
    }
}

pub(crate) fn is_open(s: TcpState) -> bool {
    matches!(s, TcpState::Established | TcpState::CloseWait)
}

/// Queues all of `data`, polling the network while the send buffer is full.
pub(crate) fn send_all(
    rt: &Runtime,
    sock: &TcpHandle,
    mut data: &[u8],
    deadline: u64,
) -> Result<(), String> {
    while !data.is_empty() {
        let n = sock.send(data);
        data = data.get(n..).unwrap_or_default();
        if n == 0 {
            let st = sock.state();
            if !is_open(st) {
                return Err(format!("connection {st} while sending"));
            }
            if rt.clock().now_ns() >= deadline {
                return Err(String::from("timeout while sending"));
            }
            rt.run_services_once();
        }
    }
    Ok(())
}

/// Fills `buf` from the socket, polling the network while it is empty.
fn recv_exact(rt: &Runtime, sock: &TcpHandle, buf: &mut [u8], deadline: u64) -> Result<(), String> {
    let mut got = 0;
    while got < buf.len() {
        let n = sock.recv(buf.get_mut(got..).unwrap_or_default());
        got += n;
        if n == 0 {
            if !sock.may_recv() {
                return Err(format!(
                    "connection {} after {got} of {} bytes",
                    sock.state(),
                    buf.len()
                ));
            }
            if rt.clock().now_ns() >= deadline {
                return Err(format!("timeout after {got} of {} bytes", buf.len()));
            }
            rt.run_services_once();
        }
    }
    Ok(())
}

/// Closes our side and waits (bounded) for the closing handshake.
pub(crate) fn close(rt: &Runtime, sock: &TcpHandle) {
    sock.close();
    rt.wait_until(CLOSE_TIMEOUT_NS, || {
        matches!(sock.state(), TcpState::Closed | TcpState::TimeWait)
    });
}

/// Connects to the peer, retrying within [`CONNECT_BUDGET_NS`].
pub(crate) fn connect(rt: &Runtime, net: &Net, peer: [u8; 4]) -> Result<TcpHandle, String> {
    let give_up = rt.clock().now_ns().saturating_add(CONNECT_BUDGET_NS);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let sock = net
            .connect(peer, PORT)
            .map_err(|e| format!("connect: {e:?}"))?;
        rt.wait_until(CONNECT_TIMEOUT_NS, || {
            !matches!(sock.state(), TcpState::SynSent | TcpState::SynReceived)
        });
        let st = sock.state();
        if st == TcpState::Established {
            if attempt > 1 {
                kprintln!("runtime: connected on attempt {attempt}");
            }
            return Ok(sock);
        }
        sock.release();
        if attempt == 1 {
            kprintln!("runtime: connect to port {PORT}: {st}, retrying");
        }
        if rt.clock().now_ns() >= give_up {
            return Err(format!(
                "no connection to {}:{PORT} after {attempt} attempts ({st})",
                Ipv4Display(peer)
            ));
        }
        rt.wait_until(RETRY_PAUSE_NS, || false);
    }
}

/// Node A: connect, send header and stream, check B's reply.
fn node_a(rt: &Runtime, net: &Net, peer: [u8; 4]) -> Result<(), String> {
    let sock = connect(rt, net, peer)?;
    console::line(&format!("net: connected {}", Ipv4Display(peer)));
    let t0 = rt.clock().now_ns();
    let deadline = t0.saturating_add(EXCHANGE_TIMEOUT_NS);

    send_all(rt, &sock, &header(STREAM_BYTES), deadline)?;
    let mut stream = ByteStream::new(SEED);
    let mut sum = Fnv1a64::default();
    let mut chunk = vec![0u8; CHUNK];
    let mut left = STREAM_BYTES;
    while left > 0 {
        let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        let c = chunk.get_mut(..n).unwrap_or_default();
        stream.fill(c);
        sum.update(c);
        send_all(rt, &sock, c, deadline)?;
        left -= n as u64;
    }

    let mut r = [0u8; REPLY_LEN];
    recv_exact(rt, &sock, &mut r, deadline)?;
    let (len, theirs) = parse_reply(&r).ok_or_else(|| String::from("reply has a bad magic"))?;
    let ours = sum.finish();
    if len != STREAM_BYTES || theirs != ours {
        return Err(format!(
            "pair reply mismatch: peer got {len} bytes, checksum {theirs:016x}; sent {STREAM_BYTES}, {ours:016x}"
        ));
    }
    let ms = rt.clock().now_ns().saturating_sub(t0) / 1_000_000;
    kprintln!("runtime: pair stream {len} bytes, checksum {ours:016x}, {ms} ms guest time");
    console::line("SELFTEST: pair stream ok");
    close(rt, &sock);
    report(net);
    Ok(())
}

/// Node B: listen, receive and verify the stream, reply with its checksum.
fn node_b(rt: &Runtime, net: &Net) -> Result<(), String> {
    let sock = net.listen(PORT).map_err(|e| format!("listen: {e:?}"))?;
    console::line(&format!("net: listening {PORT}"));
    let deadline = rt.clock().now_ns().saturating_add(EXCHANGE_TIMEOUT_NS);

    let mut rx = StreamReceiver::new(STREAM_BYTES);
    let mut buf = vec![0u8; CHUNK];
    let (len, sum) = loop {
        let n = sock.recv(&mut buf);
        if n > 0 {
            let data = buf.get(..n).unwrap_or_default();
            match rx.feed(data) {
                Ok(Some(done)) => break done,
                Ok(None) => continue,
                Err(e) => return Err(format!("bad stream: {e:?}")),
            }
        }
        let st = sock.state();
        if !matches!(
            st,
            TcpState::Listen | TcpState::SynReceived | TcpState::Established
        ) {
            return Err(format!(
                "connection {st} after {} payload bytes",
                rx.received()
            ));
        }
        if rt.clock().now_ns() >= deadline {
            return Err(format!(
                "timeout in {st} after {} payload bytes",
                rx.received()
            ));
        }
        rt.run_services_once();
    };
    let want = expected_checksum(SEED, STREAM_BYTES);
    if len != STREAM_BYTES || sum != want {
        return Err(format!(
            "pair stream mismatch: {len} bytes, checksum {sum:016x}; expected {STREAM_BYTES}, {want:016x}"
        ));
    }
    console::line(&format!("SELFTEST: pair recv ok {len} {sum:016x}"));

    send_all(rt, &sock, &reply(len, sum), deadline)?;
    let acked = rt.wait_until(EXCHANGE_TIMEOUT_NS, || {
        sock.send_pending() == 0 || !is_open(sock.state())
    });
    if !acked || sock.send_pending() != 0 {
        return Err(format!(
            "reply not acknowledged ({}, {} bytes pending)",
            sock.state(),
            sock.send_pending()
        ));
    }
    // A closes once it has checked the reply; wait for its FIN, then close.
    rt.wait_until(CLOSE_TIMEOUT_NS, || !sock.may_recv());
    close(rt, &sock);
    report(net);
    Ok(())
}

pub(crate) fn report(net: &Net) {
    let s = net.stats();
    kprintln!(
        "runtime: net frames rx {} tx {}, tx errors {}, rx recycle errors {}",
        s.rx_frames,
        s.tx_frames,
        s.tx_errors,
        s.rx_recycle_errors
    );
}

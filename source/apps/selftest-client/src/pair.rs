//! The two-node pair phase: plain TCP between two nodes. Node B listens
//! on [`PORT`]; node A connects, sends 1 MiB of the deterministic stream,
//! and prints its marker only after B's reply carries the same length and
//! checksum as its own. The byte protocol is [`crate::pairproto`]; here
//! are the sockets and the markers, written against the platform traits
//! (the QEMU runtime boots it with `nexus.role=a|b`).
//!
//! | marker | node | evidence |
//! |--------|------|----------|
//! | `net: listening 7000` | B | the listening socket exists |
//! | `net: connected <ip>` | A | the TCP handshake with B completed |
//! | `SELFTEST: pair recv ok <len> <sum>` | B | all announced bytes arrived and their FNV-1a-64 equals the generator's |
//! | `SELFTEST: pair stream ok` | A | B's reply carried the length and checksum A computed over what it sent |

use alloc::format;
use alloc::string::String;
use alloc::vec;
use core::fmt;

use nexus_svc::platform::{Network, Platform, TcpSocket, TcpState};

use crate::pairproto::{
    expected_checksum, header, parse_reply, reply, ByteStream, Fnv1a64, StreamReceiver, PORT,
    REPLY_LEN, SEED, STREAM_BYTES,
};

/// Time one connection attempt may take.
const CONNECT_TIMEOUT_NS: u64 = 5_000_000_000;
/// Time node A keeps trying to connect (B may not listen yet: its stack
/// answers a SYN to a closed port with a reset).
const CONNECT_BUDGET_NS: u64 = 20_000_000_000;
/// Pause between attempts.
const RETRY_PAUSE_NS: u64 = 250_000_000;
/// Time for the whole exchange once connected (B: from listening).
const EXCHANGE_TIMEOUT_NS: u64 = 40_000_000_000;
/// Time for the closing handshake.
const CLOSE_TIMEOUT_NS: u64 = 2_000_000_000;
/// Bytes moved per socket call.
const CHUNK: usize = 16 * 1024;

/// A node's part in the two-node phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Connects to the peer and sends the stream.
    A,
    /// Listens, receives and verifies the stream, replies with its checksum.
    B,
}

impl Role {
    /// The role's name as the boot arguments spell it (`nexus.role`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::A => "a",
            Role::B => "b",
        }
    }
}

/// An IPv4 address in dotted decimal.
pub(crate) struct Ipv4(pub(crate) [u8; 4]);

impl fmt::Display for Ipv4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

/// Runs this node's side of the pair phase. Node A needs the peer's
/// address.
pub fn run<P: Platform, N: Network>(
    p: &P,
    net: &N,
    role: Role,
    peer: Option<[u8; 4]>,
) -> Result<(), String> {
    match role {
        Role::A => {
            let peer = peer.ok_or_else(|| String::from("node a needs nexus.peer"))?;
            node_a(p, net, peer)
        }
        Role::B => node_b(p, net),
    }
}

/// Queues all of `data`, running the platform while the send buffer is
/// full.
pub(crate) fn send_all<P: Platform, S: TcpSocket>(
    p: &P,
    sock: &mut S,
    mut data: &[u8],
    deadline: u64,
) -> Result<(), String> {
    while !data.is_empty() {
        let n = sock.send(data);
        data = data.get(n..).unwrap_or_default();
        if n == 0 {
            let st = sock.state();
            if !st.is_open() {
                return Err(format!("connection {st} while sending"));
            }
            if p.now_ns() >= deadline {
                return Err(String::from("timeout while sending"));
            }
            p.run_once();
        }
    }
    Ok(())
}

/// Fills `buf` from the socket, running the platform while it is empty.
fn recv_exact<P: Platform, S: TcpSocket>(
    p: &P,
    sock: &mut S,
    buf: &mut [u8],
    deadline: u64,
) -> Result<(), String> {
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
            if p.now_ns() >= deadline {
                return Err(format!("timeout after {got} of {} bytes", buf.len()));
            }
            p.run_once();
        }
    }
    Ok(())
}

/// Closes our side and waits (bounded) for the closing handshake.
pub(crate) fn close<P: Platform, S: TcpSocket>(p: &P, sock: &mut S) {
    sock.close();
    p.wait_until(CLOSE_TIMEOUT_NS, &mut || {
        matches!(sock.state(), TcpState::Closed | TcpState::TimeWait)
    });
}

/// Connects to the peer, retrying within [`CONNECT_BUDGET_NS`].
pub(crate) fn connect<P: Platform, N: Network>(
    p: &P,
    net: &N,
    peer: [u8; 4],
) -> Result<N::Socket, String> {
    let give_up = p.now_ns().saturating_add(CONNECT_BUDGET_NS);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let sock = net
            .connect(peer, PORT)
            .map_err(|e| format!("connect: {e}"))?;
        p.wait_until(CONNECT_TIMEOUT_NS, &mut || {
            !matches!(sock.state(), TcpState::SynSent | TcpState::SynReceived)
        });
        let st = sock.state();
        if st == TcpState::Established {
            if attempt > 1 {
                p.console(&format!("runtime: connected on attempt {attempt}"));
            }
            return Ok(sock);
        }
        net.release(sock);
        if attempt == 1 {
            p.console(&format!("runtime: connect to port {PORT}: {st}, retrying"));
        }
        if p.now_ns() >= give_up {
            return Err(format!(
                "no connection to {}:{PORT} after {attempt} attempts ({st})",
                Ipv4(peer)
            ));
        }
        p.wait_until(RETRY_PAUSE_NS, &mut || false);
    }
}

/// Node A: connect, send header and stream, check B's reply.
fn node_a<P: Platform, N: Network>(p: &P, net: &N, peer: [u8; 4]) -> Result<(), String> {
    let mut sock = connect(p, net, peer)?;
    p.console(&format!("net: connected {}", Ipv4(peer)));
    let t0 = p.now_ns();
    let deadline = t0.saturating_add(EXCHANGE_TIMEOUT_NS);

    send_all(p, &mut sock, &header(STREAM_BYTES), deadline)?;
    let mut stream = ByteStream::new(SEED);
    let mut sum = Fnv1a64::default();
    let mut chunk = vec![0u8; CHUNK];
    let mut left = STREAM_BYTES;
    while left > 0 {
        let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        let c = chunk.get_mut(..n).unwrap_or_default();
        stream.fill(c);
        sum.update(c);
        send_all(p, &mut sock, c, deadline)?;
        left -= n as u64;
    }

    let mut r = [0u8; REPLY_LEN];
    recv_exact(p, &mut sock, &mut r, deadline)?;
    let (len, theirs) = parse_reply(&r).ok_or_else(|| String::from("reply has a bad magic"))?;
    let ours = sum.finish();
    if len != STREAM_BYTES || theirs != ours {
        return Err(format!(
            "pair reply mismatch: peer got {len} bytes, checksum {theirs:016x}; sent {STREAM_BYTES}, {ours:016x}"
        ));
    }
    let ms = p.now_ns().saturating_sub(t0) / 1_000_000;
    p.console(&format!(
        "runtime: pair stream {len} bytes, checksum {ours:016x}, {ms} ms guest time"
    ));
    p.console("SELFTEST: pair stream ok");
    close(p, &mut sock);
    Ok(())
}

/// Node B: listen, receive and verify the stream, reply with its checksum.
fn node_b<P: Platform, N: Network>(p: &P, net: &N) -> Result<(), String> {
    let mut sock = net.listen(PORT).map_err(|e| format!("listen: {e}"))?;
    p.console(&format!("net: listening {PORT}"));
    let deadline = p.now_ns().saturating_add(EXCHANGE_TIMEOUT_NS);

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
        if p.now_ns() >= deadline {
            return Err(format!(
                "timeout in {st} after {} payload bytes",
                rx.received()
            ));
        }
        p.run_once();
    };
    let want = expected_checksum(SEED, STREAM_BYTES);
    if len != STREAM_BYTES || sum != want {
        return Err(format!(
            "pair stream mismatch: {len} bytes, checksum {sum:016x}; expected {STREAM_BYTES}, {want:016x}"
        ));
    }
    p.console(&format!("SELFTEST: pair recv ok {len} {sum:016x}"));

    send_all(p, &mut sock, &reply(len, sum), deadline)?;
    let acked = p.wait_until(EXCHANGE_TIMEOUT_NS, &mut || {
        sock.send_pending() == 0 || !sock.state().is_open()
    });
    if !acked || sock.send_pending() != 0 {
        return Err(format!(
            "reply not acknowledged ({}, {} bytes pending)",
            sock.state(),
            sock.send_pending()
        ));
    }
    // A closes once it has checked the reply; wait for its FIN, then close.
    p.wait_until(CLOSE_TIMEOUT_NS, &mut || !sock.may_recv());
    close(p, &mut sock);
    Ok(())
}

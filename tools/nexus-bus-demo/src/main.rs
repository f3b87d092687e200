//! Host demo of the device bus over real TCP sockets on the loopback
//! interface (127.0.0.1 only).
//!
//! Node B listens on an ephemeral port and runs in its own thread; node A
//! runs on the main thread:
//!
//! 1. A dials B: a Noise XK handshake (seeds from the OS RNG), B's ACL
//!    admits A's proven key, both print `session ok` with the peer id.
//! 2. A opens stream `obs.logs` with a W3C trace context in the OPEN
//!    metadata, sends 1 MiB under the mux's credit flow control; B checks
//!    length and checksum against the same deterministic generator and
//!    replies 16 bytes (length, checksum) on the stream. A prints the wall
//!    throughput once the reply matches.
//! 3. A measures the round trip of a 64-byte echo on the same stream.
//! 4. A dials again with a third key that is not on B's list: B refuses it
//!    in the handshake and prints the id the stranger proved
//!    (`Link::refused_peer`).
//!
//! Exits 0 on success, 1 on any failure; everything gives up after 30 s.
//! The three device keys are fixed demo identities (so the printed ids are
//! the same every run); the handshake seeds are fresh from the OS.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use dsoftbus::identity::{DeviceId, DeviceKey};
use dsoftbus::link::{Link, LinkConfig};
use dsoftbus::mux::{Event, Mux};
use dsoftbus::policy::Acl;
use nexus_wire::{Reader, Writer};

const STREAM: &str = "obs.logs";
/// The trace context A propagates in its OPEN (W3C traceparent form).
const TRACEPARENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// Bytes A sends and B verifies.
const TOTAL: usize = 1024 * 1024;
/// B's reply: length and checksum, u64 LE each.
const REPLY_LEN: usize = 16;
const ECHO_LEN: usize = 64;
const ECHO_ROUNDS: usize = 200;
/// Everything (both nodes) gives up after this.
const TIMEOUT: Duration = Duration::from_secs(30);
const READ_CHUNK: usize = 64 * 1024;
/// Sealed records gathered before writing to the socket.
const TX_HIGH_WATER: usize = 256 * 1024;
/// Idle pump rounds that only yield before short sleeps start.
const SPIN_ROUNDS: u32 = 2000;

const SECRET_A: [u8; 32] = [1; 32];
const SECRET_B: [u8; 32] = [2; 32];
const SECRET_STRANGER: [u8; 32] = [9; 32];

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            println!("demo: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Res<()> {
    let deadline = Instant::now() + TIMEOUT;
    let ka = DeviceKey::from_secret(SECRET_A);
    let kb = DeviceKey::from_secret(SECRET_B);
    let stranger = DeviceKey::from_secret(SECRET_STRANGER);
    let (a_public, b_public) = (ka.public(), kb.public());
    println!("demo: device A {} (dials)", ka.id());
    println!("demo: device B {} (listens; allows A)", kb.id());
    println!("demo: device X {} (not on B's list)", stranger.id());

    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("bind: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{addr} is not a loopback address"));
    }
    println!("B: listening on {addr}");
    let node_b = thread::Builder::new()
        .name(String::from("node-b"))
        .spawn(move || node_b(&listener, &kb, a_public, deadline))
        .map_err(|e| format!("spawn node B: {e}"))?;

    if let Err(e) = node_a(addr, &ka, b_public, &stranger, deadline) {
        // B's own error usually says more (A only sees B hang up).
        let wait = Instant::now() + Duration::from_secs(2);
        while !node_b.is_finished() && Instant::now() < wait {
            thread::sleep(Duration::from_millis(10));
        }
        if node_b.is_finished() {
            if let Err(b) = join(node_b) {
                return Err(format!("{e}; {b}"));
            }
        }
        return Err(e);
    }
    let refused = join(node_b)?;
    if refused != stranger.id() {
        return Err(format!(
            "B refused {refused}, but the unlisted dialer was {}",
            stranger.id()
        ));
    }
    println!("demo: ACL deny confirmed: B refused {refused} (device X)");
    Ok(())
}

fn join(node_b: thread::JoinHandle<Res<DeviceId>>) -> Res<DeviceId> {
    node_b.join().map_err(|_| String::from("node B panicked"))?
}

/// A fresh handshake seed from the OS RNG.
fn seed() -> Res<[u8; 32]> {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s).map_err(|e| format!("OS RNG: {e}"))?;
    Ok(s)
}

// ---- node A ----------------------------------------------------------------

fn node_a(
    addr: SocketAddr,
    ka: &DeviceKey,
    b_public: [u8; 32],
    stranger: &DeviceKey,
    deadline: Instant,
) -> Res<()> {
    let mut acl = Acl::new();
    acl.allow(b_public, &[STREAM])
        .map_err(|e| format!("A: acl: {e:?}"))?;
    let cfg = LinkConfig::default();

    // 1. The session.
    let t_hs = Instant::now();
    let link = Link::dial(ka, b_public, seed()?, cfg).map_err(|e| format!("A: dial: {e}"))?;
    let mut a = Conn::new("A", connect(addr, deadline)?, link, &acl, deadline)?;
    let peer = loop {
        if let Some(p) = a.link.peer() {
            break p;
        }
        a.step()?;
    };
    if peer != DeviceId::of(&b_public) {
        return Err(format!("A: session with {peer}, expected B"));
    }
    println!(
        "A: session ok with {peer} (Noise XK over TCP, {} us incl. connect)",
        t_hs.elapsed().as_micros()
    );

    // 2. The stream, 1 MiB, B's verdict.
    let s = a
        .mux()?
        .open(STREAM, 1, Some(TRACEPARENT))
        .map_err(|e| format!("A: open: {e:?}"))?;
    let mut accepted = false;
    while !accepted {
        a.step()?;
        while let Some(ev) = a.mux()?.poll_event() {
            match ev {
                Event::Accepted { stream } if stream == s => accepted = true,
                Event::Rejected { reason, .. } => {
                    return Err(format!("A: stream rejected: {reason:?}"))
                }
                _ => {}
            }
        }
    }
    println!("A: stream {s} '{STREAM}' accepted (trace context sent in the OPEN)");

    let data = pattern(TOTAL);
    let mut sum = Fnv1a64::new();
    sum.update(&data);
    let sum = sum.finish();
    let (wire0_tx, wire0_rx) = (a.wire_tx, a.wire_rx);
    let t0 = Instant::now();
    send_all(&mut a, s, &data)?;
    let reply = read_exact(&mut a, s, REPLY_LEN)?;
    let elapsed = t0.elapsed();
    let mut r = Reader::new(&reply);
    let (len, theirs) = (r.u64().ok(), r.u64().ok());
    if len != Some(TOTAL as u64) || theirs != Some(sum) {
        return Err(format!(
            "A: B's reply {len:?} {theirs:x?} does not match {TOTAL} bytes {sum:016x}"
        ));
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    println!("A: sent {TOTAL} bytes, B's reply confirms length and checksum {sum:016x}");
    println!(
        "A: {:.1} ms wall: {:.1} MB/s ({:.1} MiB/s); wire {} bytes out, {} in",
        secs * 1e3,
        TOTAL as f64 / secs / 1e6,
        TOTAL as f64 / secs / (1024.0 * 1024.0),
        a.wire_tx - wire0_tx,
        a.wire_rx - wire0_rx,
    );

    // 3. Round trips of a 64-byte echo.
    let mut rtts = Vec::with_capacity(ECHO_ROUNDS);
    for i in 0..ECHO_ROUNDS {
        let msg = [(i % 251) as u8; ECHO_LEN];
        let t = Instant::now();
        send_all(&mut a, s, &msg)?;
        let back = read_exact(&mut a, s, ECHO_LEN)?;
        rtts.push(t.elapsed());
        if back != msg {
            return Err(format!("A: echo {i} came back different"));
        }
    }
    rtts.sort();
    let pick = |q: usize| {
        rtts.get((rtts.len().saturating_sub(1)) * q / 100)
            .map_or(0, Duration::as_micros)
    };
    println!(
        "A: RTT of a 64-byte echo ({ECHO_ROUNDS} rounds): min {} us, median {} us, p99 {} us",
        pick(0),
        pick(50),
        pick(99)
    );

    // Close both directions, then hang up.
    a.mux()?.close(s).map_err(|e| format!("A: close: {e:?}"))?;
    while !stream_events(&mut a, s)? {
        a.step()?;
    }
    while !a.tx_empty() {
        a.step()?;
    }
    println!("A: stream closed both ways; hanging up");
    a.hang_up();

    // 4. An unlisted device dials: B must refuse it.
    println!("X: dialing B as unlisted device {}", stranger.id());
    let link = Link::dial(stranger, b_public, seed()?, cfg).map_err(|e| format!("X: dial: {e}"))?;
    let mut x = Conn::new("X", connect(addr, deadline)?, link, &acl, deadline)?;
    let how = loop {
        match x.pump() {
            Ok(()) if x.eof => break String::from("B closed the connection"),
            Ok(()) => {}
            Err(e) if Instant::now() < deadline => break e,
            Err(e) => return Err(e),
        }
    };
    println!("X: refused: {how}");
    Ok(())
}

/// Queues all of `data` on `s`, pumping while the peer's credit runs out.
fn send_all(c: &mut Conn<'_>, s: u32, data: &[u8]) -> Res<()> {
    let mut sent = 0;
    while sent < data.len() {
        let rest = data.get(sent..).unwrap_or_default();
        sent += c
            .mux()?
            .send(s, rest)
            .map_err(|e| format!("{}: send: {e:?}", c.who))?;
        c.step()?;
        if stream_events(c, s)? {
            return Err(format!("{}: the peer closed stream {s}", c.who));
        }
    }
    Ok(())
}

/// Reads exactly `n` bytes from `s`.
fn read_exact(c: &mut Conn<'_>, s: u32, n: usize) -> Res<Vec<u8>> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    loop {
        let room = out.get_mut(got..).unwrap_or_default();
        got += c
            .mux()?
            .recv(s, room)
            .map_err(|e| format!("{}: recv: {e:?}", c.who))?;
        if got >= n {
            return Ok(out);
        }
        if stream_events(c, s)? {
            return Err(format!(
                "{}: stream {s} closed after {got} of {n} bytes",
                c.who
            ));
        }
        c.step()?;
    }
}

/// Drains events; true once the peer closed its direction of `s`.
fn stream_events(c: &mut Conn<'_>, s: u32) -> Res<bool> {
    let who = c.who;
    let mut closed = false;
    while let Some(ev) = c.mux()?.poll_event() {
        match ev {
            Event::Closed { stream } if stream == s => closed = true,
            Event::Reset { stream, reason } if stream == s => {
                return Err(format!("{who}: stream {s} reset by the peer ({reason})"))
            }
            Event::PeerTimeout => return Err(format!("{who}: peer timed out")),
            _ => {}
        }
    }
    Ok(closed)
}

// ---- node B ----------------------------------------------------------------

fn node_b(
    listener: &TcpListener,
    kb: &DeviceKey,
    a_public: [u8; 32],
    deadline: Instant,
) -> Res<DeviceId> {
    let mut acl = Acl::new();
    acl.allow(a_public, &[STREAM])
        .map_err(|e| format!("B: acl: {e:?}"))?;
    let cfg = LinkConfig::default();
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("B: listener: {e}"))?;

    // 1. A's connection.
    let sock = accept(listener, deadline)?;
    let link = Link::accept(kb, seed()?, cfg).map_err(|e| format!("B: accept: {e}"))?;
    let mut b = Conn::new("B", sock, link, &acl, deadline)?;
    let peer = loop {
        if let Some(p) = b.link.peer() {
            break p;
        }
        b.step()?;
    };
    println!("B: session ok with {peer} (ACL: allowed)");

    let s = loop {
        b.step()?;
        let mut opened = None;
        while let Some(ev) = b.mux()?.poll_event() {
            if let Event::Opened {
                stream,
                name,
                priority,
                trace,
            } = ev
            {
                let trace = trace.as_deref().map(String::from_utf8_lossy);
                println!(
                    "B: stream {stream} '{name}' opened by {peer}, priority {priority}, trace context {}",
                    trace.as_deref().unwrap_or("none")
                );
                if name == STREAM {
                    opened = Some(stream);
                }
            }
        }
        if let Some(s) = opened {
            break s;
        }
    };

    let mut sum = Fnv1a64::new();
    let mut got = 0usize;
    let mut buf = vec![0u8; READ_CHUNK];
    while got < TOTAL {
        let want = (TOTAL - got).min(buf.len());
        let room = buf.get_mut(..want).unwrap_or_default();
        let n = b
            .mux()?
            .recv(s, room)
            .map_err(|e| format!("B: recv: {e:?}"))?;
        if n > 0 {
            sum.update(room.get(..n).unwrap_or_default());
            got += n;
            continue;
        }
        if stream_events(&mut b, s)? {
            return Err(format!("B: stream closed after {got} of {TOTAL} bytes"));
        }
        b.step()?;
    }
    let sum = sum.finish();
    let mut want = Fnv1a64::new();
    want.update(&pattern(TOTAL));
    let want = want.finish();
    if sum != want {
        return Err(format!(
            "B: checksum {sum:016x} of {got} bytes, expected {want:016x}"
        ));
    }
    println!("B: received {got} bytes, checksum {sum:016x} verified");
    let reply = Writer::to_array::<REPLY_LEN>(|w| {
        w.u64(got as u64).u64(sum);
    })
    .map_err(|e| format!("B: reply: {e}"))?;
    send_all(&mut b, s, &reply)?;
    println!("B: replied {REPLY_LEN} bytes (length, checksum) on stream {s}");

    // Echo whatever arrives until A closes its direction.
    let mut echoed = 0usize;
    loop {
        let n = b
            .mux()?
            .recv(s, &mut buf)
            .map_err(|e| format!("B: recv: {e:?}"))?;
        if n > 0 {
            send_all(&mut b, s, buf.get(..n).unwrap_or_default())?;
            echoed += n;
            continue;
        }
        if stream_events(&mut b, s)? {
            break;
        }
        b.step()?;
    }
    b.mux()?.close(s).map_err(|e| format!("B: close: {e:?}"))?;
    // Until A hangs up; an abrupt end of the connection counts too.
    let how = loop {
        match b.pump() {
            Ok(()) if b.eof => break String::from("A hung up"),
            Ok(()) => {}
            Err(e) if Instant::now() < deadline => break e,
            Err(e) => return Err(e),
        }
    };
    println!(
        "B: echoed {echoed} bytes; {how} (wire: {} bytes in, {} out)",
        b.wire_rx, b.wire_tx
    );
    b.hang_up();

    // 2. The next dial: the ACL must refuse it.
    let sock = accept(listener, deadline)?;
    let link = Link::accept(kb, seed()?, cfg).map_err(|e| format!("B: accept: {e}"))?;
    let mut x = Conn::new("B", sock, link, &acl, deadline)?;
    loop {
        if let Some(p) = x.link.peer() {
            return Err(format!("B: the unlisted device {p} got a session"));
        }
        if let Err(e) = x.step() {
            let Some(id) = x.link.refused_peer() else {
                return Err(e);
            };
            let why = x.link.closed().map_or_else(|| e.clone(), |r| r.to_string());
            println!("B: ACL deny {id}: handshake refused ({why}), hanging up");
            x.hang_up();
            return Ok(id);
        }
    }
}

fn accept(listener: &TcpListener, deadline: Instant) -> Res<TcpStream> {
    loop {
        match listener.accept() {
            Ok((sock, from)) if from.ip().is_loopback() => {
                println!("B: connection from {from}");
                return Ok(sock);
            }
            Ok((_, from)) => println!("B: ignoring non-loopback connection from {from}"),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(String::from("B: timed out waiting for a connection"));
                }
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("B: accept: {e}")),
        }
    }
}

fn connect(addr: SocketAddr, deadline: Instant) -> Res<TcpStream> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(String::from("timed out before connecting"));
    }
    TcpStream::connect_timeout(&addr, left).map_err(|e| format!("connect {addr}: {e}"))
}

// ---- one TCP connection carrying a link --------------------------------------

/// A link over a non-blocking socket, moved by [`Conn::pump`].
struct Conn<'a> {
    who: &'static str,
    sock: TcpStream,
    link: Link,
    acl: &'a Acl,
    epoch: Instant,
    deadline: Instant,
    tx: Vec<u8>,
    tx_off: usize,
    rx: Vec<u8>,
    eof: bool,
    idle: u32,
    wire_tx: u64,
    wire_rx: u64,
}

impl<'a> Conn<'a> {
    fn new(
        who: &'static str,
        sock: TcpStream,
        link: Link,
        acl: &'a Acl,
        deadline: Instant,
    ) -> Res<Self> {
        sock.set_nodelay(true)
            .and_then(|()| sock.set_nonblocking(true))
            .map_err(|e| format!("{who}: socket: {e}"))?;
        Ok(Self {
            who,
            sock,
            link,
            acl,
            epoch: Instant::now(),
            deadline,
            tx: Vec::new(),
            tx_off: 0,
            rx: vec![0u8; READ_CHUNK],
            eof: false,
            idle: 0,
            wire_tx: 0,
            wire_rx: 0,
        })
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn mux(&mut self) -> Res<&mut Mux> {
        let who = self.who;
        self.link
            .mux()
            .ok_or_else(|| format!("{who}: the link is not up"))
    }

    fn tx_empty(&self) -> bool {
        self.tx_off >= self.tx.len()
    }

    /// One round: sends what the link has, feeds it what arrived, runs its
    /// timers. Sets `eof` when the peer hung up. Yields, then sleeps
    /// briefly, while nothing moves.
    fn pump(&mut self) -> Res<()> {
        let who = self.who;
        let now = self.now_ns();
        self.link.tick(now);
        while self.tx.len().saturating_sub(self.tx_off) < TX_HIGH_WATER {
            match self.link.poll_transmit(now) {
                Some(bytes) => self.tx.extend_from_slice(&bytes),
                None => break,
            }
        }
        let mut progress = false;
        while self.tx_off < self.tx.len() {
            let pending = self.tx.get(self.tx_off..).unwrap_or_default();
            match self.sock.write(pending) {
                Ok(0) => return Err(format!("{who}: the socket stopped taking bytes")),
                Ok(n) => {
                    self.tx_off += n;
                    self.wire_tx += n as u64;
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{who}: write: {e}")),
            }
        }
        if self.tx_off >= self.tx.len() {
            self.tx.clear();
            self.tx_off = 0;
        }
        if !self.eof {
            match self.sock.read(&mut self.rx) {
                Ok(0) => {
                    self.eof = true;
                    progress = true;
                }
                Ok(n) => {
                    self.wire_rx += n as u64;
                    let data = self.rx.get(..n).unwrap_or_default();
                    self.link
                        .on_bytes(data, now, self.acl)
                        .map_err(|e| format!("{who}: link: {e}"))?;
                    progress = true;
                }
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{who}: read: {e}")),
            }
        }
        if let Some(e) = self.link.closed() {
            return Err(format!("{who}: link closed: {e}"));
        }
        if Instant::now() >= self.deadline {
            return Err(format!("{who}: timed out after {} s", TIMEOUT.as_secs()));
        }
        if progress {
            self.idle = 0;
        } else {
            self.idle = self.idle.saturating_add(1);
            if self.idle < SPIN_ROUNDS {
                thread::yield_now();
            } else {
                thread::sleep(Duration::from_micros(50));
            }
        }
        Ok(())
    }

    /// [`pump`](Self::pump), where the peer hanging up is an error.
    fn step(&mut self) -> Res<()> {
        self.pump()?;
        if self.eof {
            return Err(format!("{}: the peer closed the connection", self.who));
        }
        Ok(())
    }

    fn hang_up(self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

// ---- payload -----------------------------------------------------------------

/// The deterministic bytes A sends (B regenerates them to verify).
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// FNV-1a, 64-bit.
struct Fnv1a64(u64);

impl Fnv1a64 {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

//! What a platform gives the code that runs on it, beyond IPC: time, a
//! console, entropy, and TCP. The QEMU runtime implements these over
//! rdtime, the UART, virtio-rng and smoltcp on virtio-net; a host harness
//! can implement them over std. Proof code (the selftest phases) and
//! services that need sockets (the bus) are written against these traits,
//! so no proof logic lives in the runtime.

use core::fmt;

/// TCP connection states a caller needs to tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// No connection (never opened, reset, or fully closed).
    Closed,
    /// Waiting for a peer to connect.
    Listen,
    /// Our SYN is out.
    SynSent,
    /// A peer's SYN arrived, the handshake is not finished.
    SynReceived,
    /// Open both ways.
    Established,
    /// The peer closed its side; we may still send.
    CloseWait,
    /// We closed our side and the closing handshake is not finished
    /// (FIN-WAIT, CLOSING, LAST-ACK).
    Closing,
    /// Both sides closed and our FIN was acknowledged; the socket only
    /// lingers to absorb stray segments. A closer waits for this (or
    /// [`TcpState::Closed`]) to know the peer saw the end.
    TimeWait,
}

impl TcpState {
    /// Open for sending and receiving what is buffered.
    pub const fn is_open(self) -> bool {
        matches!(self, TcpState::Established | TcpState::CloseWait)
    }

    /// Still connecting (or listening): no data yet, but no failure either.
    pub const fn is_connecting(self) -> bool {
        matches!(
            self,
            TcpState::Listen | TcpState::SynSent | TcpState::SynReceived
        )
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TcpState::Closed => "closed",
            TcpState::Listen => "listen",
            TcpState::SynSent => "syn-sent",
            TcpState::SynReceived => "syn-received",
            TcpState::Established => "established",
            TcpState::CloseWait => "close-wait",
            TcpState::Closing => "closing",
            TcpState::TimeWait => "time-wait",
        })
    }
}

/// Why a socket could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// The socket table is full.
    NoSocket,
    /// Listening or connecting was refused by the stack.
    Refused,
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetError::NoSocket => "no free socket",
            NetError::Refused => "refused by the stack",
        })
    }
}

/// One non-blocking TCP socket. Every call returns at once; bytes move
/// when the platform's scheduler polls the network.
pub trait TcpSocket {
    /// Queues as much of `data` as the send buffer takes; returns how many
    /// bytes it took (0 when full or when the connection cannot send).
    fn send(&mut self, data: &[u8]) -> usize;
    /// Moves received bytes into `buf`; returns how many (0 if none).
    fn recv(&mut self, buf: &mut [u8]) -> usize;
    /// The connection state.
    fn state(&self) -> TcpState;
    /// Bytes queued or in flight, not yet acknowledged by the peer.
    fn send_pending(&self) -> usize;
    /// Whether bytes can still arrive (the peer has not closed its side).
    fn may_recv(&self) -> bool;
    /// Closes our side gracefully: queued bytes first, then FIN.
    fn close(&mut self);
}

/// A TCP/IPv4 stack.
pub trait Network {
    /// Its sockets.
    type Socket: TcpSocket;
    /// This node's address.
    fn ip(&self) -> [u8; 4];
    /// A socket listening on `port` (accepts one connection).
    fn listen(&self, port: u16) -> Result<Self::Socket, NetError>;
    /// A socket connecting to `ip:port`.
    fn connect(&self, ip: [u8; 4], port: u16) -> Result<Self::Socket, NetError>;
    /// Frees a socket at once (an open connection is dropped without
    /// telling the peer: close first for a graceful end).
    fn release(&self, socket: Self::Socket);
}

/// Time, console, entropy and the scheduler, as code running on a node
/// sees them.
pub trait Platform {
    /// Guest (or host) monotonic time in nanoseconds.
    fn now_ns(&self) -> u64;
    /// Idles until `ns` nanoseconds have passed (services keep running
    /// only where the platform polls them while idle).
    fn sleep(&self, ns: u64);
    /// Runs every task once (services, the network); whether any worked.
    fn run_once(&self) -> bool;
    /// Prints one whole console line.
    fn console(&self, line: &str);
    /// Fills `out` with fresh entropy; false if the platform has none.
    fn entropy(&self, out: &mut [u8; 32]) -> bool;

    /// Runs tasks until `ready` holds or `timeout_ns` passed; whether
    /// `ready` held. How code waits for a socket, as it waits for IPC.
    fn wait_until(&self, timeout_ns: u64, ready: &mut dyn FnMut() -> bool) -> bool {
        let deadline = self.now_ns().saturating_add(timeout_ns);
        loop {
            if ready() {
                return true;
            }
            self.run_once();
            if self.now_ns() >= deadline {
                return ready();
            }
        }
    }
}

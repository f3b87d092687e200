//! Mux v2: named streams with credit-based flow control over one
//! authenticated session.
//!
//! Sans-I/O, like the session below it: [`Mux::on_frame`] takes one
//! decrypted record, [`Mux::poll_transmit`] hands out the next record to
//! seal and send, [`Mux::poll_event`] reports what happened, and the clock
//! is an argument. Frames are defined in [`wire`].
//!
//! # Streams
//!
//! Either side opens a stream with a name (what the acceptor's policy
//! judges), an advisory priority and an optional trace context. The
//! initiator of the session uses odd stream ids, the responder even ids, so
//! both can open at once without collision; each side's ids strictly
//! increase and are never reused within a session. Each direction of a
//! stream closes on its own ([`Mux::close`] sends CLOSE after the queued
//! data); [`Mux::reset`] aborts both directions at once.
//!
//! The priority reaches the acceptor in [`Event::Opened`]; this mux's own
//! scheduler ignores it. [`Mux::poll_transmit`] sends keepalive and control
//! frames first, then DATA round-robin, one frame per stream with queued
//! bytes per turn, so concurrent streams interleave and none starves.
//!
//! # Capabilities
//!
//! Each side's first frame is CAPS with the capabilities it supports
//! ([`LOCAL_CAPS`]); a capability is on for the session only when both
//! sides announced it. Trace context in OPEN metadata ([`wire::CAP_TRACE`])
//! travels only when it is on: this side's OPENs wait until the peer's
//! CAPS arrived (which is the peer's first frame, so they wait at most a
//! round trip) and then go with or without their trace context; a trace
//! context arriving in an OPEN when the capability is off is dropped.
//! Both are counted in [`MuxStats::trace_stripped`]. Any frame other than
//! CAPS first, or a second CAPS, is a protocol violation.
//!
//! # Flow control
//!
//! The receiver of a direction grants credit in bytes: `window` in the OPEN
//! (for the acceptor's data) or the OPEN_ACK (for the opener's data), then
//! CREDIT frames as the application reads. For each stream the receiver
//! keeps
//!
//! ```text
//! unread bytes + credit held by the peer + read bytes not yet returned == window
//! ```
//!
//! so a peer that sends one byte more than it was granted is caught (a
//! protocol violation), and the receive buffer never holds more than
//! `window`. Read bytes are returned in one CREDIT once at least half a
//! window is pending, or after every read when the window is small (under
//! two frames); the other half keeps the sender busy meanwhile, so a
//! reader that keeps reading never stalls the sender.
//!
//! [`Mux::send`] accepts at most the credit the peer granted and at most
//! `window` bytes queued per stream; the credit is spent when the bytes are
//! accepted, so what is queued plus what is on the wire never exceeds the
//! grant.
//!
//! # Bounds
//!
//! * Live streams ≤ `max_streams`; each holds at most `window` received
//!   and `window` unsent bytes, plus one pending OPEN frame (≤ 267 bytes).
//! * Opening or accepting a stream reserves its receive window from
//!   `max_buffered_total`; unsent bytes are taken from what is left. So
//!   [`Mux::buffered`] never exceeds `max_buffered_total`.
//! * Events: the queue holds at most `10 * max_streams + 1`. A live
//!   stream has at most one event of each kind queued (Readable and
//!   Writable are coalesced until polled), at most five in all counting its
//!   final Reset or Rejected. A new stream is admitted only if the events
//!   left by finished streams plus five per live stream, the new one
//!   included, still fit in `10 * max_streams`, so an application that
//!   stops polling events holds back new streams (REJECT 2,
//!   [`OpenError::EventBacklog`]) instead of growing the queue.
//! * REJECT and RST frames wait in a control queue of `2 * max_streams + 8`
//!   frames; PING and PONG keep only the newest nonce.
//! * Ids of streams this side reset are remembered in a ring of
//!   `2 * max_streams` (at least 1) entries, only so that DATA the peer sent
//!   before it saw the RST is dropped rather than taken for a violation.
//!   When the ring overflows (many resets within one round trip), the
//!   highest id pushed out is kept, and DATA on any gone stream at or
//!   below it is dropped too: in that range a crossing RST cannot be told
//!   from a closed stream, and dropping is the answer that never breaks an
//!   honest session.
//!
//! # What the peer gets wrong, and what it costs
//!
//! A [`MuxError::ProtocolViolation`] means the session must be closed; the
//! mux frees every stream at once and refuses all later calls with
//! `SessionDead`. A REJECT only refuses one OPEN.
//!
//! | peer sends                                              | outcome                        |
//! |---------------------------------------------------------|--------------------------------|
//! | bytes that are not one well-framed frame (see [`wire`]) | ProtocolViolation              |
//! | a first frame that is not CAPS, or a second CAPS        | ProtocolViolation              |
//! | OPEN with this side's parity, or an id not above its    | ProtocolViolation              |
//! | previous OPEN (duplicate or reused id)                  |                                |
//! | OPEN whose metadata block is malformed                  | REJECT 3, no state             |
//! | OPEN the policy refuses                                 | REJECT 1, no state             |
//! | OPEN beyond `max_streams` / buffer budget / event room  | REJECT 2, no state             |
//! | DATA longer than `max_frame_payload`, empty DATA        | ProtocolViolation              |
//! | DATA beyond the credit granted                          | ProtocolViolation              |
//! | DATA after its CLOSE, or on a stream freed by CLOSEs    | ProtocolViolation              |
//! | or by the peer's RST                                    |                                |
//! | DATA on a stream this side reset (in flight)            | dropped, counted stale         |
//! | (see the reset ring under Bounds)                       |                                |
//! | any frame on an id never opened                         | ProtocolViolation              |
//! | DATA / CREDIT / CLOSE before the OPEN_ACK it needs      | ProtocolViolation              |
//! | OPEN_ACK / REJECT for its own or an accepted stream     | ProtocolViolation              |
//! | CLOSE twice on a live stream                            | ProtocolViolation              |
//! | CREDIT pushing the credit past `u32::MAX`               | ProtocolViolation              |
//! | OPENs to refuse while `2 * max_streams + 8` frames      | ProtocolViolation (the peer    |
//! | already wait in the control queue                       | outruns the transmit loop)     |
//! | CREDIT / CLOSE / RST / OPEN_ACK / REJECT on a stream    | dropped, counted stale (races  |
//! | that existed and is gone                                | with this side's RST or close) |
//! | nothing at all for `keepalive_timeout_ns`               | PeerTimeout, everything freed  |
//!
//! # Events
//!
//! Readable and Writable are edge-triggered: after Readable, read until
//! [`Mux::recv`] returns 0; Writable is reported only after a
//! [`Mux::send`] accepted less than it was given, once room came back.
//! A stream is freed when both directions are closed and its received
//! bytes were read, when either side resets it, or when its OPEN is
//! rejected; calls on a freed stream return [`StreamError::UnknownStream`].

pub mod wire;

/// Moves up to `out.len()` bytes from the front of `q` into `out` with two
/// slice copies (the ring's two halves); returns how many.
fn take_front(q: &mut VecDeque<u8>, out: &mut [u8]) -> usize {
    let n = out.len().min(q.len());
    let (a, b) = q.as_slices();
    let from_a = n.min(a.len());
    let (out_a, out_b) = out.split_at_mut(from_a);
    out_a.copy_from_slice(a.get(..from_a).unwrap_or_default());
    let from_b = n - from_a;
    if let (Some(dst), Some(src)) = (out_b.get_mut(..from_b), b.get(..from_b)) {
        dst.copy_from_slice(src);
    }
    q.drain(..n);
    n
}

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Bound;

use nexus_wire::WireError;

pub use wire::RejectReason;

/// The capabilities this mux announces in its CAPS frame.
pub const LOCAL_CAPS: u32 = wire::CAP_TRACE;
use wire::{Frame, OpenMeta};

/// Events a live stream can have queued at once (Opened or Accepted,
/// Readable, Writable, Closed), plus its final Reset or Rejected.
const EVENTS_PER_STREAM: usize = 5;
/// Extra control-queue slots beyond two per stream.
const CONTROL_SLACK: usize = 8;

/// Limits and timers of one mux. Both ends of a session should use the
/// same `max_frame_payload` (a peer's DATA over this side's limit is a
/// violation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MuxConfig {
    /// Live streams at once, both directions of opening together.
    pub max_streams: usize,
    /// Per-stream receive buffer, which is also the initial credit granted
    /// to the peer; also the cap on unsent bytes queued per stream.
    pub window: u32,
    /// Largest DATA payload sent or accepted (0 is treated as 1).
    pub max_frame_payload: u16,
    /// Cap on [`Mux::buffered`] across all streams.
    pub max_buffered_total: usize,
    /// A PING goes out this often (0 disables).
    pub keepalive_interval_ns: u64,
    /// Silence from the peer this long ends the session (0 disables).
    pub keepalive_timeout_ns: u64,
}

impl Default for MuxConfig {
    /// 16 streams of 64 KiB windows, 4 KiB frames, 2 MiB in total,
    /// PING every 5 s, timeout after 15 s.
    fn default() -> Self {
        Self {
            max_streams: 16,
            window: 64 * 1024,
            max_frame_payload: 4096,
            max_buffered_total: 2 * 1024 * 1024,
            keepalive_interval_ns: 5_000_000_000,
            keepalive_timeout_ns: 15_000_000_000,
        }
    }
}

/// Which end of the session this mux is; decides the stream id parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Dialled the session; opens odd stream ids.
    Initiator,
    /// Accepted the session; opens even stream ids.
    Responder,
}

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer opened a stream and the policy accepted it.
    Opened {
        /// The new stream.
        stream: u32,
        /// Its name.
        name: String,
        /// Advisory priority from the opener.
        priority: u8,
        /// Trace context the opener propagated, if any.
        trace: Option<Vec<u8>>,
    },
    /// The peer accepted a stream this side opened; its initial credit
    /// can be used now (no Writable follows a cut-short send before this).
    Accepted {
        /// The stream.
        stream: u32,
    },
    /// The peer refused a stream this side opened; it is freed.
    Rejected {
        /// The stream.
        stream: u32,
        /// Why.
        reason: RejectReason,
    },
    /// Bytes arrived; read them until [`Mux::recv`] returns 0.
    Readable {
        /// The stream.
        stream: u32,
    },
    /// The peer closed its direction: no more bytes will arrive after the
    /// buffered ones.
    Closed {
        /// The stream.
        stream: u32,
    },
    /// The peer reset the stream; it is freed, unread bytes are dropped.
    Reset {
        /// The stream.
        stream: u32,
        /// The peer's reason.
        reason: u8,
    },
    /// A stream whose last send was cut short can take bytes again.
    Writable {
        /// The stream.
        stream: u32,
    },
    /// Nothing arrived for `keepalive_timeout_ns`: every stream is freed
    /// and the mux is dead.
    PeerTimeout,
}

impl Event {
    /// The stream the event is about (`None` for [`Event::PeerTimeout`]).
    pub fn stream(&self) -> Option<u32> {
        match *self {
            Event::Opened { stream, .. }
            | Event::Accepted { stream }
            | Event::Rejected { stream, .. }
            | Event::Readable { stream }
            | Event::Closed { stream }
            | Event::Reset { stream, .. }
            | Event::Writable { stream } => Some(stream),
            Event::PeerTimeout => None,
        }
    }
}

/// Errors from [`Mux::on_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxError {
    /// The peer broke the protocol; the session must be closed. The mux has
    /// already freed everything.
    ProtocolViolation(&'static str),
    /// An earlier violation or timeout ended this mux.
    SessionDead,
}

impl fmt::Display for MuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MuxError::ProtocolViolation(why) => write!(f, "protocol violation: {why}"),
            MuxError::SessionDead => f.write_str("session dead"),
        }
    }
}

/// Errors from [`Mux::open`]. Nothing is queued when one is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// `max_streams` streams are live.
    TooManyStreams,
    /// `max_buffered_total` has no room for another receive window.
    BufferLimit,
    /// Too many unpolled events; poll events first.
    EventBacklog,
    /// The name is empty or longer than 64 bytes.
    BadName,
    /// The trace context is longer than 64 bytes.
    TraceTooLong,
    /// This side used up its half of the stream id space.
    IdsExhausted,
    /// The mux ended (violation or timeout).
    SessionDead,
}

/// Errors from per-stream calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// No live stream has this id (never opened, or already freed).
    UnknownStream,
    /// This side already closed its direction of the stream.
    LocalClosed,
    /// The control queue is full; transmit frames, then retry.
    TxBacklog,
    /// The mux ended (violation or timeout).
    SessionDead,
}

/// Counters, for the session's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MuxStats {
    /// Frames accepted by [`Mux::on_frame`] (well-framed ones).
    pub frames_received: u64,
    /// Frames handed out by [`Mux::poll_transmit`].
    pub frames_sent: u64,
    /// OPENs refused with a REJECT.
    pub opens_rejected: u64,
    /// Frames dropped because their stream is already gone (races).
    pub stale_frames: u64,
    /// Events lost to a full queue; the admission rule keeps this at 0.
    pub events_dropped: u64,
    /// Trace contexts dropped because the trace capability is off for the
    /// session (ours not sent, or the peer's not accepted).
    pub trace_stripped: u64,
}

/// Our OPEN, kept until the peer's CAPS says whether its trace context
/// may go.
#[derive(Debug)]
struct PendingOpen {
    /// The OPEN as the caller asked for it (with its trace context).
    full: Vec<u8>,
    /// The same OPEN without trace context, when it had one.
    untraced: Option<Vec<u8>>,
}

/// How this side's direction of a stream is closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocalClose {
    Open,
    /// `close()` called; CLOSE goes out after the queued bytes.
    Requested,
    /// CLOSE transmitted.
    Sent,
}

#[derive(Debug)]
struct Stream {
    /// Our OPEN, not transmitted yet (streams this side opened).
    open_frame: Option<PendingOpen>,
    /// Our OPEN has no OPEN_ACK yet.
    awaiting_ack: bool,
    /// Our OPEN_ACK is not transmitted yet (streams the peer opened).
    ack_pending: bool,
    /// Receive window reserved for this stream.
    recv_window: u32,
    recv_buf: VecDeque<u8>,
    /// Credit the peer holds.
    recv_outstanding: u32,
    /// Bytes read and not yet returned as credit.
    credit_pending: u32,
    send_buf: VecDeque<u8>,
    /// Credit left from the peer's grants (spent by `send`).
    send_credit: u32,
    /// The last `send` accepted less than it was given.
    send_blocked: bool,
    local: LocalClose,
    peer_closed: bool,
    readable_queued: bool,
    writable_queued: bool,
}

impl Stream {
    fn new(recv_window: u32) -> Self {
        Self {
            open_frame: None,
            awaiting_ack: false,
            ack_pending: false,
            recv_window,
            recv_buf: VecDeque::new(),
            recv_outstanding: recv_window,
            credit_pending: 0,
            send_buf: VecDeque::new(),
            send_credit: 0,
            send_blocked: false,
            local: LocalClose::Open,
            peer_closed: false,
            readable_queued: false,
            writable_queued: false,
        }
    }

    /// OPEN or OPEN_ACK, whichever this side owes, went out.
    fn opening_sent(&self) -> bool {
        self.open_frame.is_none() && !self.ack_pending
    }

    /// DATA or CLOSE is ready to go out.
    fn has_tx_work(&self) -> bool {
        self.opening_sent() && (!self.send_buf.is_empty() || self.local == LocalClose::Requested)
    }

    /// Both directions closed and nothing left to read.
    fn finished(&self) -> bool {
        self.local == LocalClose::Sent && self.peer_closed && self.recv_buf.is_empty()
    }
}

/// Where a stream id stands, for frames that refer to one.
enum Known {
    Live,
    /// Existed (or was refused) and is gone.
    Gone,
    /// Never opened on the wire.
    Never,
}

/// One side of the stream multiplexer. See the module docs.
#[derive(Debug)]
pub struct Mux {
    role: Role,
    cfg: MuxConfig,
    streams: BTreeMap<u32, Stream>,
    events: VecDeque<Event>,
    /// Encoded REJECT and RST frames.
    control: VecDeque<Vec<u8>>,
    /// Streams this side reset, newest last.
    reset_ids: VecDeque<u32>,
    /// Highest id pushed out of `reset_ids` (0: none): DATA on a gone
    /// stream at or below it may be in flight from before our RST.
    reset_evicted_high: u32,
    /// Next id this side opens (u64 so that running out is visible).
    next_local_id: u64,
    /// Highest id the peer opened (0: none yet).
    peer_high: u32,
    /// Last stream served DATA or CLOSE (round-robin position).
    rr_cursor: u32,
    last_rx_ns: u64,
    last_ping_ns: u64,
    next_ping_nonce: u64,
    ping_pending: Option<u64>,
    pong_pending: Option<u64>,
    /// Our CAPS went out.
    caps_sent: bool,
    /// The peer's CAPS (its first frame), once received.
    peer_caps: Option<u32>,
    dead: bool,
    stats: MuxStats,
}

impl Mux {
    /// A mux with no streams, as seen at `now_ns`.
    pub fn new(role: Role, cfg: MuxConfig, now_ns: u64) -> Self {
        let cfg = MuxConfig {
            max_frame_payload: cfg.max_frame_payload.max(1),
            ..cfg
        };
        Self {
            role,
            cfg,
            streams: BTreeMap::new(),
            events: VecDeque::new(),
            control: VecDeque::new(),
            reset_ids: VecDeque::new(),
            reset_evicted_high: 0,
            next_local_id: match role {
                Role::Initiator => 1,
                Role::Responder => 2,
            },
            peer_high: 0,
            rr_cursor: 0,
            last_rx_ns: now_ns,
            last_ping_ns: now_ns,
            next_ping_nonce: 1,
            ping_pending: None,
            pong_pending: None,
            caps_sent: false,
            peer_caps: None,
            dead: false,
            stats: MuxStats::default(),
        }
    }

    /// The capabilities the peer announced (`None` until its CAPS, its
    /// first frame, arrived).
    pub fn peer_caps(&self) -> Option<u32> {
        self.peer_caps
    }

    /// Trace context travels in OPENs of this session: both sides
    /// announced [`wire::CAP_TRACE`].
    pub fn trace_on(&self) -> bool {
        self.peer_caps
            .is_some_and(|c| c & LOCAL_CAPS & wire::CAP_TRACE != 0)
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration in force (`max_frame_payload` at least 1).
    pub fn config(&self) -> &MuxConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> MuxStats {
        self.stats
    }

    /// True once a protocol violation or a peer timeout ended the mux.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Live streams (pending, open or half-closed).
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Bytes held in receive and send buffers, all streams.
    pub fn buffered(&self) -> usize {
        self.streams
            .values()
            .map(|s| s.recv_buf.len().saturating_add(s.send_buf.len()))
            .fold(0usize, usize::saturating_add)
    }

    /// Queues a PING now (unless one is already queued). Its PONG is the
    /// first frame a freshly dialled peer sends: proof that the peer
    /// accepted the session, for the side that finished its handshake
    /// first.
    pub fn ping_now(&mut self, now_ns: u64) {
        if self.ping_pending.is_none() {
            self.ping_pending = Some(self.next_ping_nonce);
            self.next_ping_nonce = self.next_ping_nonce.wrapping_add(1);
            self.last_ping_ns = now_ns;
        }
    }

    /// Opens a stream: queues an OPEN granting the peer `window` bytes and
    /// returns the new id. The stream can carry data once
    /// [`Event::Accepted`] arrives.
    pub fn open(
        &mut self,
        name: &str,
        priority: u8,
        trace: Option<&[u8]>,
    ) -> Result<u32, OpenError> {
        if self.dead {
            return Err(OpenError::SessionDead);
        }
        wire::check_name(name).map_err(|_| OpenError::BadName)?;
        if let Some(t) = trace {
            wire::check_trace(t).map_err(|_| OpenError::TraceTooLong)?;
        }
        self.admit()?;
        let id = u32::try_from(self.next_local_id).map_err(|_| OpenError::IdsExhausted)?;
        let window = self.cfg.window;
        let encode = |trace: Option<&[u8]>| {
            let meta = OpenMeta {
                name,
                priority,
                trace,
            }
            .to_vec()?;
            Frame::Open {
                stream: id,
                window,
                meta: &meta,
            }
            .to_vec()
        };
        let full = encode(trace).map_err(|_| OpenError::BadName)?;
        let untraced = match trace {
            Some(_) => Some(encode(None).map_err(|_| OpenError::BadName)?),
            None => None,
        };
        self.next_local_id = self.next_local_id.saturating_add(2);
        let mut s = Stream::new(self.cfg.window);
        s.open_frame = Some(PendingOpen { full, untraced });
        s.awaiting_ack = true;
        self.streams.insert(id, s);
        Ok(id)
    }

    /// Feeds one decrypted frame from the peer. `accept(name)` is the
    /// accept-side policy for incoming OPENs (the caller closes over the
    /// authenticated peer and its ACL). On `Err` the session must be closed.
    pub fn on_frame(
        &mut self,
        frame: &[u8],
        now_ns: u64,
        accept: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), MuxError> {
        if self.dead {
            return Err(MuxError::SessionDead);
        }
        let parsed = match Frame::parse(frame) {
            Ok(f) => f,
            Err(e) => return Err(self.violation(malformed(e))),
        };
        self.last_rx_ns = self.last_rx_ns.max(now_ns);
        self.stats.frames_received = self.stats.frames_received.saturating_add(1);
        match (parsed, self.peer_caps) {
            (Frame::Caps { caps }, None) => {
                self.peer_caps = Some(caps);
                return Ok(());
            }
            (Frame::Caps { .. }, Some(_)) => return Err(self.violation("a second CAPS")),
            (_, None) => return Err(self.violation("first frame is not CAPS")),
            _ => {}
        }
        let result = match parsed {
            Frame::Open {
                stream,
                window,
                meta,
            } => self.on_open(stream, window, meta, accept),
            Frame::OpenAck { stream, window } => self.on_open_ack(stream, window),
            Frame::Reject { stream, reason } => self.on_reject(stream, reason),
            Frame::Data { stream, payload } => self.on_data(stream, payload),
            Frame::Credit { stream, increment } => self.on_credit(stream, increment),
            Frame::Rst { stream, reason } => self.on_rst(stream, reason),
            Frame::Close { stream } => self.on_close(stream),
            Frame::Ping { nonce } => {
                self.pong_pending = Some(nonce);
                Ok(())
            }
            Frame::Pong { .. } | Frame::Caps { .. } => Ok(()),
        };
        result.map_err(|why| self.violation(why))
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        let ev = self.events.pop_front()?;
        match ev {
            Event::Readable { stream } => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.readable_queued = false;
                }
            }
            Event::Writable { stream } => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.writable_queued = false;
                }
            }
            _ => {}
        }
        Some(ev)
    }

    /// Bytes [`send`](Self::send) would accept on `stream` right now.
    pub fn send_capacity(&self, stream: u32) -> Result<usize, StreamError> {
        if self.dead {
            return Err(StreamError::SessionDead);
        }
        let s = self
            .streams
            .get(&stream)
            .ok_or(StreamError::UnknownStream)?;
        if s.local != LocalClose::Open {
            return Ok(0);
        }
        Ok(capacity(s, &self.cfg, self.global_room()))
    }

    /// Queues bytes on `stream`: accepts at most the credit the peer
    /// granted (and what the buffer bounds allow), never more, and returns
    /// how many. When that is less than `data.len()`, [`Event::Writable`]
    /// follows once room comes back.
    pub fn send(&mut self, stream: u32, data: &[u8]) -> Result<usize, StreamError> {
        if self.dead {
            return Err(StreamError::SessionDead);
        }
        let room = self.global_room();
        let cfg = self.cfg;
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or(StreamError::UnknownStream)?;
        if s.local != LocalClose::Open {
            return Err(StreamError::LocalClosed);
        }
        let n = capacity(s, &cfg, room).min(data.len());
        s.send_buf.extend(data.get(..n).unwrap_or_default());
        s.send_credit = s
            .send_credit
            .saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
        if n < data.len() {
            s.send_blocked = true;
        }
        Ok(n)
    }

    /// Reads received bytes into `buf`; returns how many (0 when none are
    /// buffered: wait for Readable, or the peer closed after Closed).
    /// Reading returns credit to the peer.
    pub fn recv(&mut self, stream: u32, buf: &mut [u8]) -> Result<usize, StreamError> {
        if self.dead {
            return Err(StreamError::SessionDead);
        }
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or(StreamError::UnknownStream)?;
        let n = take_front(&mut s.recv_buf, buf);
        s.credit_pending = s
            .credit_pending
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        self.free_if_finished(stream);
        Ok(n)
    }

    /// Half-closes `stream`: no more sends; a CLOSE follows the queued bytes.
    pub fn close(&mut self, stream: u32) -> Result<(), StreamError> {
        if self.dead {
            return Err(StreamError::SessionDead);
        }
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or(StreamError::UnknownStream)?;
        if s.local != LocalClose::Open {
            return Err(StreamError::LocalClosed);
        }
        s.local = LocalClose::Requested;
        s.send_blocked = false;
        Ok(())
    }

    /// Aborts both directions of `stream` now: its buffers are freed and an
    /// RST with `reason` is queued (none if our OPEN never went out).
    pub fn reset(&mut self, stream: u32, reason: u8) -> Result<(), StreamError> {
        if self.dead {
            return Err(StreamError::SessionDead);
        }
        let peer_knows = self
            .streams
            .get(&stream)
            .ok_or(StreamError::UnknownStream)?
            .open_frame
            .is_none();
        if peer_knows {
            let rst = Frame::Rst { stream, reason }
                .to_vec()
                .map_err(|_| StreamError::UnknownStream)?;
            if !self.push_control(rst) {
                return Err(StreamError::TxBacklog);
            }
            let cap = self.cfg.max_streams.saturating_mul(2).max(1);
            if self.reset_ids.len() >= cap {
                if let Some(old) = self.reset_ids.pop_front() {
                    self.reset_evicted_high = self.reset_evicted_high.max(old);
                }
            }
            self.reset_ids.push_back(stream);
        }
        self.streams.remove(&stream);
        self.wake_writers();
        Ok(())
    }

    /// The next frame to seal and send, or `None`. Runs
    /// [`tick`](Self::tick) first. Order: PONG, PING, REJECT/RST, then
    /// OPEN / OPEN_ACK / CREDIT, then DATA and CLOSE round-robin over the
    /// streams with something queued (one frame per stream per turn).
    pub fn poll_transmit(&mut self, now_ns: u64) -> Option<Vec<u8>> {
        self.tick(now_ns);
        if self.dead {
            return None;
        }
        let frame = self.next_frame()?;
        self.stats.frames_sent = self.stats.frames_sent.saturating_add(1);
        Some(frame)
    }

    /// Keepalive: queues a PING every `keepalive_interval_ns`; after
    /// `keepalive_timeout_ns` with nothing received, frees every stream,
    /// reports [`Event::PeerTimeout`] (dropping other queued events) and
    /// ends the mux.
    pub fn tick(&mut self, now_ns: u64) {
        if self.dead {
            return;
        }
        let timeout = self.cfg.keepalive_timeout_ns;
        if timeout > 0 && now_ns.saturating_sub(self.last_rx_ns) >= timeout {
            self.teardown();
            self.events.push_back(Event::PeerTimeout);
            return;
        }
        let interval = self.cfg.keepalive_interval_ns;
        if interval > 0 && now_ns.saturating_sub(self.last_ping_ns) >= interval {
            self.ping_pending = Some(self.next_ping_nonce);
            self.next_ping_nonce = self.next_ping_nonce.wrapping_add(1);
            self.last_ping_ns = now_ns;
        }
    }

    // ---- incoming frames -------------------------------------------------

    fn on_open(
        &mut self,
        stream: u32,
        window: u32,
        meta: &[u8],
        accept: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), &'static str> {
        if self.is_local_id(stream) {
            return Err("OPEN with this side's stream id parity");
        }
        if stream <= self.peer_high {
            return Err(if self.streams.contains_key(&stream) {
                "OPEN with a duplicate stream id"
            } else {
                "OPEN reusing a stream id"
            });
        }
        self.peer_high = stream;
        let trace_on = self.trace_on();
        let refusal = match OpenMeta::parse(meta) {
            Err(_) => Some(RejectReason::BadMetadata),
            Ok(m) if !accept(m.name) => Some(RejectReason::Policy),
            Ok(m) => match self.admit() {
                Err(_) => Some(RejectReason::TooManyStreams),
                Ok(()) => {
                    let mut s = Stream::new(self.cfg.window);
                    s.ack_pending = true;
                    s.send_credit = window;
                    self.streams.insert(stream, s);
                    let trace = match m.trace {
                        Some(_) if !trace_on => {
                            self.stats.trace_stripped = self.stats.trace_stripped.saturating_add(1);
                            None
                        }
                        t => t.map(<[u8]>::to_vec),
                    };
                    self.push_event(Event::Opened {
                        stream,
                        name: String::from(m.name),
                        priority: m.priority,
                        trace,
                    });
                    None
                }
            },
        };
        if let Some(reason) = refusal {
            let frame = Frame::Reject { stream, reason }
                .to_vec()
                .map_err(|_| "REJECT not encodable")?;
            if !self.push_control(frame) {
                return Err("control queue full: frames are not being transmitted");
            }
            self.stats.opens_rejected = self.stats.opens_rejected.saturating_add(1);
        }
        Ok(())
    }

    fn on_open_ack(&mut self, stream: u32, window: u32) -> Result<(), &'static str> {
        if !self.is_local_id(stream) {
            return Err("OPEN_ACK for a stream the peer opened");
        }
        match self.known(stream) {
            Known::Live => {}
            Known::Gone => {
                self.stale();
                return Ok(());
            }
            Known::Never => return Err("OPEN_ACK for an unknown stream"),
        }
        let s = self.streams.get_mut(&stream).ok_or("stream vanished")?;
        if s.open_frame.is_some() {
            return Err("OPEN_ACK before the OPEN was sent");
        }
        if !s.awaiting_ack {
            return Err("duplicate OPEN_ACK");
        }
        s.awaiting_ack = false;
        s.send_credit = window;
        if window > 0 {
            s.send_blocked = false;
        }
        self.push_event(Event::Accepted { stream });
        Ok(())
    }

    fn on_reject(&mut self, stream: u32, reason: RejectReason) -> Result<(), &'static str> {
        if !self.is_local_id(stream) {
            return Err("REJECT for a stream the peer opened");
        }
        match self.known(stream) {
            Known::Live => {}
            Known::Gone => {
                self.stale();
                return Ok(());
            }
            Known::Never => return Err("REJECT for an unknown stream"),
        }
        let s = self.streams.get(&stream).ok_or("stream vanished")?;
        if s.open_frame.is_some() {
            return Err("REJECT before the OPEN was sent");
        }
        if !s.awaiting_ack {
            return Err("REJECT for an accepted stream");
        }
        self.streams.remove(&stream);
        self.push_event(Event::Rejected { stream, reason });
        self.wake_writers();
        Ok(())
    }

    fn on_data(&mut self, stream: u32, payload: &[u8]) -> Result<(), &'static str> {
        if payload.len() > usize::from(self.cfg.max_frame_payload) {
            return Err("DATA larger than max_frame_payload");
        }
        if payload.is_empty() {
            return Err("empty DATA");
        }
        match self.known(stream) {
            Known::Live => {}
            Known::Gone if self.maybe_reset_here(stream) => {
                self.stale();
                return Ok(());
            }
            Known::Gone => return Err("DATA on a closed stream"),
            Known::Never => return Err("DATA on an unknown stream"),
        }
        let s = self.streams.get_mut(&stream).ok_or("stream vanished")?;
        if s.awaiting_ack || !s.opening_sent() {
            return Err("DATA before the stream was accepted");
        }
        if s.peer_closed {
            return Err("DATA after CLOSE");
        }
        let len = u32::try_from(payload.len()).map_err(|_| "DATA too long")?;
        s.recv_outstanding = s
            .recv_outstanding
            .checked_sub(len)
            .ok_or("DATA beyond the credit granted")?;
        s.recv_buf.extend(payload);
        if !s.readable_queued {
            s.readable_queued = true;
            self.push_event(Event::Readable { stream });
        }
        Ok(())
    }

    fn on_credit(&mut self, stream: u32, increment: u32) -> Result<(), &'static str> {
        match self.known(stream) {
            Known::Live => {}
            Known::Gone => {
                self.stale();
                return Ok(());
            }
            Known::Never => return Err("CREDIT on an unknown stream"),
        }
        let s = self.streams.get_mut(&stream).ok_or("stream vanished")?;
        if s.awaiting_ack || !s.opening_sent() {
            return Err("CREDIT before the stream was accepted");
        }
        s.send_credit = s
            .send_credit
            .checked_add(increment)
            .ok_or("CREDIT past u32::MAX")?;
        self.wake_writers();
        Ok(())
    }

    fn on_close(&mut self, stream: u32) -> Result<(), &'static str> {
        match self.known(stream) {
            Known::Live => {}
            Known::Gone => {
                self.stale();
                return Ok(());
            }
            Known::Never => return Err("CLOSE on an unknown stream"),
        }
        let s = self.streams.get_mut(&stream).ok_or("stream vanished")?;
        // The opener may half-close before our OPEN_ACK left; the acceptor
        // sends its OPEN_ACK before anything else on the stream.
        if s.awaiting_ack {
            return Err("CLOSE before the stream was accepted");
        }
        if s.peer_closed {
            return Err("duplicate CLOSE");
        }
        s.peer_closed = true;
        self.push_event(Event::Closed { stream });
        self.free_if_finished(stream);
        Ok(())
    }

    fn on_rst(&mut self, stream: u32, reason: u8) -> Result<(), &'static str> {
        match self.known(stream) {
            Known::Live => {}
            Known::Gone => {
                self.stale();
                return Ok(());
            }
            Known::Never => return Err("RST on an unknown stream"),
        }
        let s = self.streams.get(&stream).ok_or("stream vanished")?;
        if s.open_frame.is_some() {
            return Err("RST before the OPEN was sent");
        }
        self.streams.remove(&stream);
        self.push_event(Event::Reset { stream, reason });
        self.wake_writers();
        Ok(())
    }

    // ---- outgoing frames -------------------------------------------------

    fn next_frame(&mut self) -> Option<Vec<u8>> {
        if !self.caps_sent {
            self.caps_sent = true;
            return Frame::Caps { caps: LOCAL_CAPS }.to_vec().ok();
        }
        if let Some(nonce) = self.pong_pending.take() {
            return Frame::Pong { nonce }.to_vec().ok();
        }
        if let Some(nonce) = self.ping_pending.take() {
            return Frame::Ping { nonce }.to_vec().ok();
        }
        if let Some(f) = self.control.pop_front() {
            return Some(f);
        }
        if let Some(f) = self.next_stream_control() {
            return Some(f);
        }
        self.next_data()
    }

    /// OPEN, OPEN_ACK or CREDIT of the lowest stream id that owes one.
    fn next_stream_control(&mut self) -> Option<Vec<u8>> {
        let small = self.small_window_limit();
        let (caps_known, trace_on) = (self.peer_caps.is_some(), self.trace_on());
        for (&stream, s) in self.streams.iter_mut() {
            if s.open_frame.is_some() && !caps_known {
                // Our OPENs wait for the peer's CAPS (see Capabilities).
                continue;
            }
            if let Some(open) = s.open_frame.take() {
                return Some(match open.untraced {
                    Some(untraced) if !trace_on => {
                        self.stats.trace_stripped = self.stats.trace_stripped.saturating_add(1);
                        untraced
                    }
                    _ => open.full,
                });
            }
            if s.ack_pending {
                s.ack_pending = false;
                return Frame::OpenAck {
                    stream,
                    window: s.recv_window,
                }
                .to_vec()
                .ok();
            }
            let threshold = if s.recv_window < small {
                1
            } else {
                s.recv_window / 2
            };
            if !s.peer_closed && s.credit_pending > 0 && s.credit_pending >= threshold {
                let increment = s.credit_pending;
                s.credit_pending = 0;
                s.recv_outstanding = s.recv_outstanding.saturating_add(increment);
                return Frame::Credit { stream, increment }.to_vec().ok();
            }
        }
        None
    }

    /// One DATA or CLOSE from the next stream after the round-robin cursor.
    fn next_data(&mut self) -> Option<Vec<u8>> {
        let cursor = self.rr_cursor;
        let stream = self
            .streams
            .range((Bound::Excluded(cursor), Bound::Unbounded))
            .chain(self.streams.range(..=cursor))
            .find(|(_, s)| s.has_tx_work())
            .map(|(&id, _)| id)?;
        self.rr_cursor = stream;
        let max = usize::from(self.cfg.max_frame_payload);
        let s = self.streams.get_mut(&stream)?;
        if s.send_buf.is_empty() {
            s.local = LocalClose::Sent;
            let frame = Frame::Close { stream }.to_vec().ok();
            self.free_if_finished(stream);
            return frame;
        }
        let mut payload = alloc::vec![0u8; s.send_buf.len().min(max)];
        take_front(&mut s.send_buf, &mut payload);
        let frame = Frame::Data {
            stream,
            payload: &payload,
        }
        .to_vec()
        .ok();
        self.wake_writers();
        frame
    }

    // ---- bookkeeping -----------------------------------------------------

    fn is_local_id(&self, stream: u32) -> bool {
        (stream & 1 == 1) == (self.role == Role::Initiator)
    }

    fn known(&self, stream: u32) -> Known {
        if self.streams.contains_key(&stream) {
            Known::Live
        } else if self.is_local_id(stream) {
            if u64::from(stream) < self.next_local_id {
                Known::Gone
            } else {
                Known::Never
            }
        } else if stream <= self.peer_high {
            Known::Gone
        } else {
            Known::Never
        }
    }

    /// This side may have reset `stream` (so the peer's DATA can cross
    /// the RST): it is in the ring, or the ring overflowed past its id.
    fn maybe_reset_here(&self, stream: u32) -> bool {
        stream <= self.reset_evicted_high || self.reset_ids.contains(&stream)
    }

    fn stale(&mut self) {
        self.stats.stale_frames = self.stats.stale_frames.saturating_add(1);
    }

    /// Windows under two frames return credit after every read.
    fn small_window_limit(&self) -> u32 {
        u32::from(self.cfg.max_frame_payload).saturating_mul(2)
    }

    /// Room for every live stream's events plus as many again from
    /// finished streams, plus PeerTimeout.
    fn event_cap(&self) -> usize {
        self.cfg
            .max_streams
            .saturating_mul(2 * EVENTS_PER_STREAM)
            .saturating_add(1)
    }

    /// Queued events whose stream is no longer live.
    fn finished_events(&self) -> usize {
        self.events
            .iter()
            .filter(|e| e.stream().is_some_and(|s| !self.streams.contains_key(&s)))
            .count()
    }

    /// Room for one more stream: the stream cap, the event room and a
    /// receive window reserved from `max_buffered_total`.
    fn admit(&self) -> Result<(), OpenError> {
        let live = self.streams.len();
        if live >= self.cfg.max_streams {
            return Err(OpenError::TooManyStreams);
        }
        // Events of finished streams stay until polled; each live stream
        // (the new one too) may add up to EVENTS_PER_STREAM more.
        let need = live
            .saturating_add(1)
            .saturating_mul(EVENTS_PER_STREAM)
            .saturating_add(self.finished_events());
        if need >= self.event_cap() {
            return Err(OpenError::EventBacklog);
        }
        let window = usize::try_from(self.cfg.window).unwrap_or(usize::MAX);
        if self.committed().saturating_add(window) > self.cfg.max_buffered_total {
            return Err(OpenError::BufferLimit);
        }
        Ok(())
    }

    /// Reserved receive windows plus unsent bytes, all streams.
    fn committed(&self) -> usize {
        self.streams
            .values()
            .map(|s| {
                usize::try_from(s.recv_window)
                    .unwrap_or(usize::MAX)
                    .saturating_add(s.send_buf.len())
            })
            .fold(0usize, usize::saturating_add)
    }

    /// Unsent bytes `max_buffered_total` still has room for.
    fn global_room(&self) -> usize {
        self.cfg.max_buffered_total.saturating_sub(self.committed())
    }

    fn push_event(&mut self, ev: Event) {
        if self.events.len() < self.event_cap() {
            self.events.push_back(ev);
        } else {
            self.stats.events_dropped = self.stats.events_dropped.saturating_add(1);
        }
    }

    fn push_control(&mut self, frame: Vec<u8>) -> bool {
        let cap = self
            .cfg
            .max_streams
            .saturating_mul(2)
            .saturating_add(CONTROL_SLACK);
        if self.control.len() >= cap {
            return false;
        }
        self.control.push_back(frame);
        true
    }

    /// Reports Writable for blocked streams that can take bytes again.
    fn wake_writers(&mut self) {
        if !self.streams.values().any(|s| s.send_blocked) {
            return;
        }
        let room = self.global_room();
        let cap = self.event_cap();
        for (&stream, s) in self.streams.iter_mut() {
            if !s.send_blocked || s.local != LocalClose::Open || s.awaiting_ack {
                continue;
            }
            if capacity(s, &self.cfg, room) == 0 {
                continue;
            }
            s.send_blocked = false;
            if !s.writable_queued {
                s.writable_queued = true;
                if self.events.len() < cap {
                    self.events.push_back(Event::Writable { stream });
                } else {
                    self.stats.events_dropped = self.stats.events_dropped.saturating_add(1);
                }
            }
        }
    }

    fn free_if_finished(&mut self, stream: u32) {
        if self.streams.get(&stream).is_some_and(Stream::finished) {
            self.streams.remove(&stream);
            self.wake_writers();
        }
    }

    /// Frees everything and ends the mux.
    fn teardown(&mut self) {
        self.streams.clear();
        self.events.clear();
        self.control.clear();
        self.reset_ids.clear();
        self.reset_evicted_high = 0;
        self.ping_pending = None;
        self.pong_pending = None;
        self.dead = true;
    }

    fn violation(&mut self, why: &'static str) -> MuxError {
        self.teardown();
        MuxError::ProtocolViolation(why)
    }
}

/// Bytes `send` may accept on `s`: its credit, its queue bound (`window`)
/// and the global room, whichever is least.
fn capacity(s: &Stream, cfg: &MuxConfig, global_room: usize) -> usize {
    let credit = usize::try_from(s.send_credit).unwrap_or(usize::MAX);
    let queue = usize::try_from(cfg.window)
        .unwrap_or(usize::MAX)
        .saturating_sub(s.send_buf.len());
    credit.min(queue).min(global_room)
}

fn malformed(e: WireError) -> &'static str {
    if e == WireError::Truncated {
        "malformed frame: truncated"
    } else if e == WireError::TrailingBytes {
        "malformed frame: trailing bytes"
    } else {
        "malformed frame: bad value"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    impl Mux {
        /// The flow-control equation and every bound of the module docs.
        fn check_invariants(&self) {
            let w = usize::try_from(self.cfg.window).unwrap();
            for s in self.streams.values() {
                let total = u64::from(s.recv_outstanding)
                    + s.recv_buf.len() as u64
                    + u64::from(s.credit_pending);
                assert_eq!(total, u64::from(s.recv_window));
                assert!(s.recv_buf.len() <= w);
                assert!(s.send_buf.len() <= w);
            }
            assert!(self.streams.len() <= self.cfg.max_streams);
            assert!(self.buffered() <= self.committed());
            assert!(self.committed() <= self.cfg.max_buffered_total);
            let live = self.streams.len() * EVENTS_PER_STREAM;
            assert!(self.finished_events() + live < self.event_cap());
            assert!(self.events.len() < self.event_cap());
            assert_eq!(self.stats.events_dropped, 0);
        }
    }

    /// xorshift64: deterministic, no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    #[test]
    fn invariants_hold_under_random_traffic() {
        let cfg = MuxConfig {
            max_streams: 3,
            window: 700,
            max_frame_payload: 200,
            max_buffered_total: 3000,
            keepalive_interval_ns: 0,
            keepalive_timeout_ns: 0,
        };
        for seed in 1..40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut m = [
                Mux::new(Role::Initiator, cfg, 0),
                Mux::new(Role::Responder, cfg, 0),
            ];
            let mut wire: [VecDeque<Vec<u8>>; 2] = [VecDeque::new(), VecDeque::new()];
            let mut buf = vec![0u8; 1000];
            let data = vec![5u8; 1000];
            for _ in 0..2000 {
                let side = usize::try_from(rng.next(2)).unwrap();
                let n = usize::try_from(rng.next(1000)).unwrap();
                let mx = &mut m[side];
                let live: Vec<u32> = mx.streams.keys().copied().collect();
                let pick = usize::try_from(rng.next(live.len() as u64 + 1)).unwrap();
                let id = live.get(pick).copied().unwrap_or(99);
                match rng.next(9) {
                    0 => {
                        let _ = mx.open("s", 0, None);
                    }
                    1 | 2 => {
                        let _ = mx.send(id, &data[..n]);
                    }
                    3 | 4 => {
                        let _ = mx.recv(id, &mut buf[..n]);
                    }
                    5 => {
                        let _ = if rng.next(4) == 0 {
                            mx.reset(id, 0)
                        } else {
                            mx.close(id)
                        };
                    }
                    6 => while mx.poll_event().is_some() {},
                    _ => {
                        while let Some(f) = mx.poll_transmit(0) {
                            wire[side].push_back(f);
                        }
                        for _ in 0..rng.next(5) {
                            let Some(f) = wire[side].pop_front() else {
                                break;
                            };
                            let to = &mut m[1 - side];
                            to.on_frame(&f, 0, &mut |_| true).unwrap();
                        }
                    }
                }
                m[0].check_invariants();
                m[1].check_invariants();
            }
        }
    }
}

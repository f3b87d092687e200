//! The busd wire contract (version 1), shared by busd and its clients.
//!
//! ```text
//! header   magic "BS" | version u8 = 1 | op u8 | nonce u64          (12 bytes)
//! LISTEN   op 1   name str_u8
//! UNLISTEN op 2   name str_u8
//! OPEN     op 3   peer [8] | name str_u8 | trace bytes_u8 (empty: none)
//! SEND     op 4   handle u32 | data bytes_u16
//! RECV     op 5   handle u32 | max u16
//! CLOSE    op 6   handle u32
//! RESET    op 7   handle u32
//! PEERS    op 8   (empty)
//! STATS    op 9   (empty)
//! WATCH    op 10  (empty)
//! DROP     op 11  peer [8]
//! reply    header with op | 0x80 and the request's nonce, status u8, then
//!          (status ok only) OPEN: handle u32; SEND: accepted u32;
//!          RECV: fin u8 | data bytes_u16; PEERS: count u8 | count × (peer [8]
//!          | up u8 | sessions u32); STATS: STATS_COUNTERS × u64
//! event    op 0x40, never answered, nonce = busd's event sequence:
//!          kind u8 | body (see [`BusEvent`])
//! ```
//!
//! Decoders check structure (lengths, UTF-8, flags, trailing bytes) and
//! never panic; names and sizes are busd's policy.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use nexus_wire::{Header, Reader, Status, WireError, Writer};

/// Protocol tag.
pub const MAGIC: [u8; 2] = *b"BS";
/// The version this crate speaks.
pub const VERSION: u8 = 1;
/// The op of events (busd → service, one-way).
pub const EVENT_OP: u8 = 0x40;
/// Largest SEND payload and RECV answer.
pub const MAX_DATA: usize = 16 * 1024;
/// Longest trace context carried in an OPEN.
pub const MAX_TRACE: usize = 64;

nexus_wire::byte_enum! {
    /// Request ops.
    pub enum Op {
        /// Become the handler of a stream name.
        Listen = 1 => "listen",
        /// Stop handling a stream name.
        Unlisten = 2 => "unlisten",
        /// Open a stream to a peer.
        Open = 3 => "open",
        /// Write to a stream (as much as the credit allows).
        Send = 4 => "send",
        /// Read from a stream.
        Recv = 5 => "recv",
        /// Close our direction.
        Close = 6 => "close",
        /// Abort a stream.
        Reset = 7 => "reset",
        /// List the configured peers.
        Peers = 8 => "peers",
        /// Counters.
        Stats = 9 => "stats",
        /// Receive peer up/down events.
        Watch = 10 => "watch",
        /// Drop the session with a peer (control role only).
        Drop = 11 => "drop",
    }
}

/// A device's short id (the first 8 bytes of the hash of its static key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub [u8; 8]);

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A stream handle: busd's name for a stream, owned by one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Handle(pub u32);

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// LISTEN.
    Listen(&'a str),
    /// UNLISTEN.
    Unlisten(&'a str),
    /// OPEN.
    Open {
        /// The peer.
        peer: DeviceId,
        /// Stream name.
        name: &'a str,
        /// Trace context to propagate (W3C `traceparent` text, or binary).
        trace: Option<&'a [u8]>,
    },
    /// SEND.
    Send {
        /// Stream.
        handle: Handle,
        /// Bytes.
        data: &'a [u8],
    },
    /// RECV.
    Recv {
        /// Stream.
        handle: Handle,
        /// Most bytes wanted.
        max: u16,
    },
    /// CLOSE.
    Close(Handle),
    /// RESET.
    Reset(Handle),
    /// PEERS.
    Peers,
    /// STATS.
    Stats,
    /// WATCH.
    Watch,
    /// DROP.
    Drop(DeviceId),
}

/// Why a request frame could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// Not a busd header: nothing to answer.
    NoHeader,
    /// Unknown version or op: answer `unsupported`.
    Unsupported(Header),
    /// The body does not parse: answer `malformed`.
    Malformed(Header),
}

fn header(op: u8, nonce: u64) -> Header {
    Header::request(MAGIC, VERSION, op, nonce)
}

fn peer(r: &mut Reader<'_>) -> Result<DeviceId, WireError> {
    Ok(DeviceId(r.array()?))
}

fn handle(r: &mut Reader<'_>) -> Result<Handle, WireError> {
    Ok(Handle(r.u32()?))
}

/// Decodes a request. Never panics.
pub fn decode_request(frame: &[u8]) -> Result<(Header, Request<'_>), RequestError> {
    let (h, body) = Header::parse(frame, MAGIC).map_err(|_| RequestError::NoHeader)?;
    if h.version != VERSION || h.is_reply() {
        return Err(RequestError::Unsupported(h));
    }
    let Some(op) = Op::from_u8(h.op) else {
        return Err(RequestError::Unsupported(h));
    };
    let mut r = Reader::new(body);
    let req = (|| -> Result<Request<'_>, WireError> {
        Ok(match op {
            Op::Listen => Request::Listen(r.str_u8()?),
            Op::Unlisten => Request::Unlisten(r.str_u8()?),
            Op::Open => {
                let peer = peer(&mut r)?;
                let name = r.str_u8()?;
                let trace = r.bytes_u8()?;
                Request::Open {
                    peer,
                    name,
                    trace: (!trace.is_empty()).then_some(trace),
                }
            }
            Op::Send => Request::Send {
                handle: handle(&mut r)?,
                data: r.bytes_u16()?,
            },
            Op::Recv => Request::Recv {
                handle: handle(&mut r)?,
                max: r.u16()?,
            },
            Op::Close => Request::Close(handle(&mut r)?),
            Op::Reset => Request::Reset(handle(&mut r)?),
            Op::Peers => Request::Peers,
            Op::Stats => Request::Stats,
            Op::Watch => Request::Watch,
            Op::Drop => Request::Drop(peer(&mut r)?),
        })
    })();
    match req {
        Ok(req) if r.finish().is_ok() => Ok((h, req)),
        _ => Err(RequestError::Malformed(h)),
    }
}

/// Encodes a request. Fails only if a field does not fit its prefix.
pub fn encode_request(nonce: u64, req: &Request<'_>) -> Result<Vec<u8>, WireError> {
    let op = match req {
        Request::Listen(_) => Op::Listen,
        Request::Unlisten(_) => Op::Unlisten,
        Request::Open { .. } => Op::Open,
        Request::Send { .. } => Op::Send,
        Request::Recv { .. } => Op::Recv,
        Request::Close(_) => Op::Close,
        Request::Reset(_) => Op::Reset,
        Request::Peers => Op::Peers,
        Request::Stats => Op::Stats,
        Request::Watch => Op::Watch,
        Request::Drop(_) => Op::Drop,
    };
    let mut out = Vec::with_capacity(32);
    let mut w = Writer::new(&mut out);
    w.header(&header(op.as_u8(), nonce));
    match req {
        Request::Listen(name) | Request::Unlisten(name) => {
            w.str_u8(name);
        }
        Request::Open { peer, name, trace } => {
            w.bytes(&peer.0)
                .str_u8(name)
                .bytes_u8(trace.unwrap_or_default());
        }
        Request::Send { handle, data } => {
            w.u32(handle.0).bytes_u16(data);
        }
        Request::Recv { handle, max } => {
            w.u32(handle.0).u16(*max);
        }
        Request::Close(h) | Request::Reset(h) => {
            w.u32(h.0);
        }
        Request::Peers | Request::Stats | Request::Watch => {}
        Request::Drop(peer) => {
            w.bytes(&peer.0);
        }
    }
    w.finish()?;
    Ok(out)
}

/// One configured peer in a PEERS reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its id.
    pub id: DeviceId,
    /// A session is up now.
    pub up: bool,
    /// Sessions that came up since busd started.
    pub sessions: u32,
}

/// busd's counters, in wire order (each a u64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Sessions that came up (both directions).
    pub sessions: u64,
    /// Dials after a session was lost (backoff retries included).
    pub reconnects: u64,
    /// Handshakes that failed (bad key, timeout, closed).
    pub handshake_failures: u64,
    /// Devices the ACL refused during the handshake.
    pub acl_denies: u64,
    /// Streams opened by local services and accepted by the peer.
    pub streams_opened: u64,
    /// Streams peers opened and a local listener took.
    pub streams_accepted: u64,
    /// Streams refused: by the peer's ACL or policy, or with no listener here.
    pub streams_refused: u64,
    /// Streams reset (either side, or a session lost under them).
    pub streams_reset: u64,
    /// Payload bytes local services sent.
    pub bytes_sent: u64,
    /// Payload bytes local services read.
    pub bytes_received: u64,
    /// SENDs that found no credit (the writer was held back).
    pub credit_stalls: u64,
    /// Requests on a handle the sender does not own.
    pub owner_denies: u64,
    /// Requests refused by a cap (listeners, streams per service or peer).
    pub cap_refusals: u64,
    /// Events a service's full queue did not take.
    pub events_dropped: u64,
    /// Peers up now.
    pub peers_up: u64,
    /// Streams live now.
    pub streams_live: u64,
}

/// Number of u64 counters in a STATS reply: [`BusStats`] then the
/// seven reject counters (six in status order, then `unavailable`).
pub const STATS_COUNTERS: usize = 23;

impl BusStats {
    fn to_array(self) -> [u64; 16] {
        [
            self.sessions,
            self.reconnects,
            self.handshake_failures,
            self.acl_denies,
            self.streams_opened,
            self.streams_accepted,
            self.streams_refused,
            self.streams_reset,
            self.bytes_sent,
            self.bytes_received,
            self.credit_stalls,
            self.owner_denies,
            self.cap_refusals,
            self.events_dropped,
            self.peers_up,
            self.streams_live,
        ]
    }

    fn from_array(a: [u64; 16]) -> Self {
        let [sessions, reconnects, handshake_failures, acl_denies, streams_opened, streams_accepted, streams_refused, streams_reset, bytes_sent, bytes_received, credit_stalls, owner_denies, cap_refusals, events_dropped, peers_up, streams_live] =
            a;
        Self {
            sessions,
            reconnects,
            handshake_failures,
            acl_denies,
            streams_opened,
            streams_accepted,
            streams_refused,
            streams_reset,
            bytes_sent,
            bytes_received,
            credit_stalls,
            owner_denies,
            cap_refusals,
            events_dropped,
            peers_up,
            streams_live,
        }
    }
}

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Done, no body (LISTEN, UNLISTEN, CLOSE, RESET, WATCH, DROP).
    Done,
    /// OPEN: the stream, accepted by the peer.
    Opened(Handle),
    /// SEND: bytes taken (0: no credit now, wait for `Writable`).
    Sent(u32),
    /// RECV: bytes, and whether the peer closed its direction after them.
    Data {
        /// The peer closed its direction and everything was read.
        fin: bool,
        /// The bytes.
        data: Vec<u8>,
    },
    /// PEERS.
    Peers(Vec<PeerInfo>),
    /// STATS: counters, then rejects.
    Stats(BusStats, nexus_wire::Rejects),
    /// Refused.
    Rejected(Status),
}

nexus_wire::reply_body!(Reply, encode_reply);

/// Encodes the reply to `req`. Lists longer than their prefix are cut to
/// it (busd's caps keep them far below).
pub fn encode_reply(req: &Header, reply: &Reply) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    let mut w = Writer::new(&mut out);
    w.header(&req.reply());
    match reply {
        Reply::Rejected(s) => {
            w.u8(s.as_u8());
        }
        Reply::Done => {
            w.u8(Status::Ok.as_u8());
        }
        Reply::Opened(h) => {
            w.u8(Status::Ok.as_u8()).u32(h.0);
        }
        Reply::Sent(n) => {
            w.u8(Status::Ok.as_u8()).u32(*n);
        }
        Reply::Data { fin, data } => {
            let n = data.len().min(usize::from(u16::MAX));
            w.u8(Status::Ok.as_u8())
                .bool(*fin)
                .bytes_u16(data.get(..n).unwrap_or_default());
        }
        Reply::Peers(list) => {
            let n = list.len().min(usize::from(u8::MAX));
            w.u8(Status::Ok.as_u8())
                .u8(u8::try_from(n).unwrap_or(u8::MAX));
            for p in list.iter().take(n) {
                w.bytes(&p.id.0).bool(p.up).u32(p.sessions);
            }
        }
        Reply::Stats(s, rejects) => {
            w.u8(Status::Ok.as_u8());
            for c in s.to_array() {
                w.u64(c);
            }
            rejects.emit(&mut w);
            w.u64(rejects.unavailable);
        }
    }
    // Fixed fields and capped lists: cannot fail.
    let _ = w.finish();
    out
}

/// Decodes a reply; `op` is the request's op (the body depends on it).
pub fn decode_reply(frame: &[u8]) -> Result<(Header, Reply), WireError> {
    let (h, body) = Header::parse(frame, MAGIC)?;
    if h.version != VERSION || !h.is_reply() {
        return Err(WireError::BadValue);
    }
    let op = Op::from_u8(h.op & !nexus_wire::REPLY_BIT).ok_or(WireError::BadValue)?;
    let mut r = Reader::new(body);
    let status = r.enum_u8(Status::from_u8)?;
    let reply = if status != Status::Ok {
        Reply::Rejected(status)
    } else {
        match op {
            Op::Listen | Op::Unlisten | Op::Close | Op::Reset | Op::Watch | Op::Drop => Reply::Done,
            Op::Open => Reply::Opened(handle(&mut r)?),
            Op::Send => Reply::Sent(r.u32()?),
            Op::Recv => Reply::Data {
                fin: r.bool()?,
                data: r.bytes_u16()?.to_vec(),
            },
            Op::Peers => {
                let n = r.u8()?;
                let mut list = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    list.push(PeerInfo {
                        id: peer(&mut r)?,
                        up: r.bool()?,
                        sessions: r.u32()?,
                    });
                }
                Reply::Peers(list)
            }
            Op::Stats => {
                let mut a = [0u64; 16];
                for c in &mut a {
                    *c = r.u64()?;
                }
                let mut rejects = nexus_wire::Rejects::parse(&mut r)?;
                rejects.unavailable = r.u64()?;
                Reply::Stats(BusStats::from_array(a), rejects)
            }
        }
    };
    r.finish()?;
    Ok((h, reply))
}

nexus_wire::byte_enum! {
    /// Event kinds.
    pub enum EventKind {
        /// A session with a peer came up.
        PeerUp = 1 => "peer_up",
        /// The session with a peer went down.
        PeerDown = 2 => "peer_down",
        /// A peer opened a stream to a name this service listens on.
        Incoming = 3 => "incoming",
        /// Bytes arrived on a stream.
        Readable = 4 => "readable",
        /// A stream that had no credit can take bytes again.
        Writable = 5 => "writable",
        /// The peer closed its direction of a stream.
        Closed = 6 => "closed",
        /// A stream was reset (by the peer, or its session was lost).
        Reset = 7 => "reset",
    }
}

/// What busd tells a service without being asked.
///
/// ```text
/// PEER_UP   peer [8]           PEER_DOWN peer [8]
/// INCOMING  handle u32 | peer [8] | name str_u8 | trace bytes_u8
/// READABLE  handle u32         WRITABLE  handle u32
/// CLOSED    handle u32         RESET     handle u32 | reason u8
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A session came up.
    PeerUp(DeviceId),
    /// A session went down: its streams were reset.
    PeerDown(DeviceId),
    /// A new stream for a name this service listens on; it owns `handle`.
    Incoming {
        /// The stream.
        handle: Handle,
        /// Who opened it.
        peer: DeviceId,
        /// The name.
        name: String,
        /// Trace context propagated by the opener.
        trace: Option<Vec<u8>>,
    },
    /// Bytes to RECV.
    Readable(Handle),
    /// Credit to SEND.
    Writable(Handle),
    /// The peer closed its direction (RECV returns `fin` once drained).
    Closed(Handle),
    /// The stream is gone.
    Reset {
        /// The stream.
        handle: Handle,
        /// The reason byte ([`RESET_PEER_DOWN`] when the session was lost).
        reason: u8,
    },
}

/// The reset reason busd reports when a stream's session was lost.
pub const RESET_PEER_DOWN: u8 = 0xF0;
/// The reset reason busd sends a peer for a stream nobody here listens to.
pub const RESET_NO_LISTENER: u8 = 0xF1;

/// Encodes an event with sequence number `seq`.
pub fn encode_event(seq: u64, e: &BusEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    let mut w = Writer::new(&mut out);
    w.header(&header(EVENT_OP, seq));
    match e {
        BusEvent::PeerUp(p) => {
            w.u8(EventKind::PeerUp.as_u8()).bytes(&p.0);
        }
        BusEvent::PeerDown(p) => {
            w.u8(EventKind::PeerDown.as_u8()).bytes(&p.0);
        }
        BusEvent::Incoming {
            handle,
            peer,
            name,
            trace,
        } => {
            w.u8(EventKind::Incoming.as_u8())
                .u32(handle.0)
                .bytes(&peer.0)
                .str_u8(name)
                .bytes_u8(trace.as_deref().unwrap_or_default());
        }
        BusEvent::Readable(h) => {
            w.u8(EventKind::Readable.as_u8()).u32(h.0);
        }
        BusEvent::Writable(h) => {
            w.u8(EventKind::Writable.as_u8()).u32(h.0);
        }
        BusEvent::Closed(h) => {
            w.u8(EventKind::Closed.as_u8()).u32(h.0);
        }
        BusEvent::Reset { handle, reason } => {
            w.u8(EventKind::Reset.as_u8()).u32(handle.0).u8(*reason);
        }
    }
    // Names and traces are checked by busd before they reach an event.
    let _ = w.finish();
    out
}

/// Decodes an event frame.
pub fn decode_event(frame: &[u8]) -> Result<(u64, BusEvent), WireError> {
    let (h, body) = Header::parse(frame, MAGIC)?;
    if h.version != VERSION || h.op != EVENT_OP {
        return Err(WireError::BadValue);
    }
    let mut r = Reader::new(body);
    let e = match r.enum_u8(EventKind::from_u8)? {
        EventKind::PeerUp => BusEvent::PeerUp(peer(&mut r)?),
        EventKind::PeerDown => BusEvent::PeerDown(peer(&mut r)?),
        EventKind::Incoming => {
            let handle = handle(&mut r)?;
            let peer = peer(&mut r)?;
            let name = String::from(r.str_u8()?);
            let trace = r.bytes_u8()?;
            BusEvent::Incoming {
                handle,
                peer,
                name,
                trace: (!trace.is_empty()).then(|| trace.to_vec()),
            }
        }
        EventKind::Readable => BusEvent::Readable(handle(&mut r)?),
        EventKind::Writable => BusEvent::Writable(handle(&mut r)?),
        EventKind::Closed => BusEvent::Closed(handle(&mut r)?),
        EventKind::Reset => BusEvent::Reset {
            handle: handle(&mut r)?,
            reason: r.u8()?,
        },
    };
    r.finish()?;
    Ok((h.nonce, e))
}

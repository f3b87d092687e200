//! busd on the service contract: requests from local services are handled
//! in [`Service::handle`]; sockets, handshakes, reconnects and the streams'
//! mux events are driven in [`Service::tick`]. Generic over the platform's
//! [`Network`], so the same code runs over smoltcp on the OS and over
//! loopback TCP on the host.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use dsoftbus::identity::{DeviceId as Dev, DeviceKey};
use dsoftbus::link::{Link, LinkConfig};
use dsoftbus::mux::{Event as MuxEvent, Mux, MuxConfig, OpenError, StreamError};
use dsoftbus::policy::Acl;
use dsoftbus::pump::{ByteIo, PumpError, Pumped};
use nexus_bus::proto::{
    self, BusEvent, BusStats, DeviceId, Handle, PeerInfo, Reply, Request, RequestError, MAX_DATA,
    MAX_TRACE, RESET_NO_LISTENER, RESET_PEER_DOWN,
};
use nexus_ipc::ServiceId;
use nexus_metrics::reporter::Spec;
use nexus_metrics::MetricKind;
use nexus_svc::platform::{Network, TcpSocket, TcpState};
use nexus_svc::{Ctx, Event, Service};
use nexus_trace::{BaggageLimits, Scope};
use nexus_wire::{Header, Rejects, Status};

use crate::config::{Config, PeerEntry};
use crate::seeds::SeedChain;

/// The name busd registers and prints under.
pub const NAME: &str = "busd";

/// The metrics busd reports about itself.
pub const SELF_METRICS: [Spec; 8] = [
    Spec {
        kind: MetricKind::Gauge,
        name: "busd_peers_up",
    },
    Spec {
        kind: MetricKind::Gauge,
        name: "busd_streams",
    },
    Spec {
        kind: MetricKind::Counter,
        name: "busd_sessions_total",
    },
    Spec {
        kind: MetricKind::Counter,
        name: "busd_reconnects_total",
    },
    Spec {
        kind: MetricKind::Counter,
        name: "busd_bytes_sent_total",
    },
    Spec {
        kind: MetricKind::Counter,
        name: "busd_bytes_received_total",
    },
    Spec {
        kind: MetricKind::Counter,
        name: "busd_rejects_total",
    },
    Spec {
        kind: MetricKind::Counter,
        name: "busd_acl_denies_total",
    },
];

/// Bytes moved between a socket and its link per read.
const IO_CHUNK: usize = 16 * 1024;
/// How long a dropped session's socket may take to close gracefully.
const CLOSE_GRACE_NS: u64 = 2_000_000_000;

/// A propagated trace context that decodes as a span context (the
/// nexus-trace binary form, baggage within the default limits).
fn valid_context(bytes: &[u8]) -> bool {
    nexus_trace::binary::decode(bytes, BaggageLimits::default(), Scope::CrossNode)
        .is_ok_and(|e| e.parent.is_some())
}

fn bus_id(d: Dev) -> DeviceId {
    DeviceId(d.to_bytes())
}

/// A platform socket as the link pump's byte transport (also used by
/// code that dials a raw link, e.g. the selftest's stranger).
#[derive(Debug)]
pub struct SockIo<'a, S>(pub &'a mut S);

impl<S: TcpSocket> ByteIo for SockIo<'_, S> {
    fn send(&mut self, data: &[u8]) -> usize {
        self.0.send(data)
    }
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        self.0.recv(buf)
    }
    fn is_gone(&self) -> bool {
        let st = self.0.state();
        st == TcpState::Closed || (!self.0.may_recv() && !st.is_connecting())
    }
}

/// A connection and its link.
struct Conn<S> {
    sock: S,
    link: Pumped,
    since_ns: u64,
}

enum PeerState<S> {
    Down,
    Dialing(Conn<S>),
    Up(Conn<S>),
}

struct Peer<S> {
    entry: PeerEntry,
    /// This side dials (the lower device id dials).
    dials: bool,
    state: PeerState<S>,
    sessions: u32,
    backoff_ns: u64,
    retry_at_ns: u64,
    /// The current session's capabilities were reported on the console.
    caps_reported: bool,
}

struct Stream {
    owner: ServiceId,
    peer: usize,
    mux: u32,
    /// The OPEN waiting for the peer's answer: who asked, and its header.
    opening: Option<Header>,
    peer_closed: bool,
    we_closed: bool,
    /// The owner has read the end of the peer's direction.
    fin_seen: bool,
}

/// busd.
pub struct Busd<N: Network> {
    cfg: Config,
    net: N,
    key: DeviceKey,
    acl: Acl,
    link_cfg: LinkConfig,
    seeds: SeedChain,
    control: Vec<ServiceId>,
    listener: Option<N::Socket>,
    /// Sockets closing gracefully (FIN sent), released once closed or
    /// after [`CLOSE_GRACE_NS`].
    closing: Vec<(N::Socket, u64)>,
    ready: bool,
    incoming: Vec<Conn<N::Socket>>,
    peers: Vec<Peer<N::Socket>>,
    listeners: BTreeMap<String, ServiceId>,
    streams: BTreeMap<u32, Stream>,
    next_handle: u32,
    watchers: Vec<ServiceId>,
    stats: BusStats,
    rejects: Rejects,
    event_seq: u64,
    buf: Vec<u8>,
    /// Incoming OPENs whose trace context decoded as a span context and
    /// went to the listener (the first one is reported on the console).
    traces_propagated: u64,
}

impl<N: Network> core::fmt::Debug for Busd<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Busd")
            .field("device", &self.key.id())
            .field("peers", &self.peers.len())
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl<N: Network> Busd<N> {
    /// busd for device `key` on `net`. `seed` (32 fresh bytes: virtio-rng,
    /// the host's RNG; fixed only in tests) keys the handshake seeds.
    /// `control` are the services allowed to DROP a session.
    pub fn new(
        cfg: Config,
        net: N,
        key: DeviceKey,
        seed: [u8; 32],
        control: Vec<ServiceId>,
    ) -> Result<Self, crate::config::ConfigError> {
        let me = key.id();
        let mut acl = Acl::new();
        let mut peers = Vec::new();
        for entry in cfg.peers()? {
            if entry.id == me {
                continue;
            }
            let names: Vec<&str> = entry.streams.iter().map(String::as_str).collect();
            // A key listed twice keeps its first entry.
            if acl.allow(entry.key, &names).is_err() {
                continue;
            }
            peers.push(Peer {
                dials: me < entry.id,
                entry,
                state: PeerState::Down,
                sessions: 0,
                backoff_ns: 0,
                retry_at_ns: 0,
                caps_reported: false,
            });
        }
        let link_cfg = LinkConfig {
            mux: MuxConfig {
                max_streams: usize::try_from(cfg.limits.max_streams_per_peer).unwrap_or(16),
                window: cfg.limits.window,
                ..MuxConfig::default()
            },
            ..LinkConfig::default()
        };
        Ok(Self {
            cfg,
            net,
            key,
            acl,
            link_cfg,
            seeds: SeedChain::new(seed),
            control,
            listener: None,
            closing: Vec::new(),
            ready: false,
            incoming: Vec::new(),
            peers,
            listeners: BTreeMap::new(),
            streams: BTreeMap::new(),
            next_handle: 1,
            watchers: Vec::new(),
            stats: BusStats::default(),
            rejects: Rejects::default(),
            event_seq: 0,
            buf: vec![0; IO_CHUNK],
            traces_propagated: 0,
        })
    }

    /// Incoming OPENs whose trace context was a valid span context, handed
    /// to their listener.
    pub fn traces_propagated(&self) -> u64 {
        self.traces_propagated
    }

    /// This device's id.
    pub fn device(&self) -> DeviceId {
        bus_id(self.key.id())
    }

    /// Counters.
    pub fn stats(&self) -> BusStats {
        let mut s = self.stats;
        s.peers_up = self
            .peers
            .iter()
            .filter(|p| matches!(p.state, PeerState::Up(_)))
            .count() as u64;
        s.streams_live = self.streams.len() as u64;
        s
    }

    /// Reject counters.
    pub fn rejects(&self) -> Rejects {
        self.rejects
    }

    fn peer_index(&self, id: DeviceId) -> Option<usize> {
        self.peers.iter().position(|p| bus_id(p.entry.id) == id)
    }

    fn mux_of(&mut self, peer: usize) -> Option<&mut Mux> {
        match &mut self.peers.get_mut(peer)?.state {
            PeerState::Up(c) => c.link.link.mux(),
            _ => None,
        }
    }

    fn emit(&mut self, cx: &mut Ctx<'_>, to: ServiceId, e: &BusEvent) {
        self.event_seq = self.event_seq.wrapping_add(1);
        if cx
            .send(to, &proto::encode_event(self.event_seq, e))
            .is_err()
        {
            self.stats.events_dropped += 1;
        }
    }

    fn reply(&mut self, cx: &mut Ctx<'_>, to: ServiceId, h: &Header, r: &Reply) {
        let a = nexus_wire::answer(&mut self.rejects, h, u8::MAX, r);
        if a.status != Status::Ok {
            cx.event(Event::Rejected(a.status));
        }
        if let Some(frame) = a.frame {
            // A refused reply is counted by the shell.
            let _ = cx.send(to, &frame);
        }
    }

    /// The stream `handle` if `sender` owns it; a foreign handle is
    /// `denied` (counted), an unknown one `invalid_args`.
    fn owned(&mut self, sender: ServiceId, handle: Handle) -> Result<(usize, u32), Status> {
        match self.streams.get(&handle.0) {
            Some(s) if s.owner == sender => {
                if s.opening.is_some() {
                    Err(Status::Unavailable)
                } else {
                    Ok((s.peer, s.mux))
                }
            }
            Some(_) => {
                self.stats.owner_denies += 1;
                Err(Status::Denied)
            }
            None => Err(Status::InvalidArgs),
        }
    }

    fn count_streams(&self, f: impl Fn(&Stream) -> bool) -> u32 {
        u32::try_from(self.streams.values().filter(|s| f(s)).count()).unwrap_or(u32::MAX)
    }

    fn new_handle(&mut self) -> u32 {
        loop {
            let h = self.next_handle;
            self.next_handle = self.next_handle.wrapping_add(1).max(1);
            if !self.streams.contains_key(&h) {
                return h;
            }
        }
    }

    fn request(
        &mut self,
        cx: &mut Ctx<'_>,
        sender: ServiceId,
        h: &Header,
        req: Request<'_>,
    ) -> Option<Reply> {
        let r = match req {
            Request::Listen(name) => self.listen(sender, name),
            Request::Unlisten(name) => match self.listeners.get(name) {
                Some(owner) if *owner == sender => {
                    self.listeners.remove(name);
                    Ok(Reply::Done)
                }
                Some(_) => Err(Status::Denied),
                None => Err(Status::InvalidArgs),
            },
            Request::Open { peer, name, trace } => {
                match self.open(sender, h, peer, name, trace) {
                    // The reply waits for the peer's answer.
                    Ok(()) => return None,
                    Err(s) => Err(s),
                }
            }
            Request::Send { handle, data } => self.send(sender, handle, data),
            Request::Recv { handle, max } => self.recv(sender, handle, max),
            Request::Close(handle) => self.close(sender, handle),
            Request::Reset(handle) => self.owned(sender, handle).map(|(peer, mux)| {
                if let Some(m) = self.mux_of(peer) {
                    let _ = m.reset(mux, 0);
                }
                self.streams.remove(&handle.0);
                self.stats.streams_reset += 1;
                Reply::Done
            }),
            Request::Peers => Ok(Reply::Peers(
                self.peers
                    .iter()
                    .map(|p| PeerInfo {
                        id: bus_id(p.entry.id),
                        up: matches!(p.state, PeerState::Up(_)),
                        sessions: p.sessions,
                    })
                    .collect(),
            )),
            Request::Stats => Ok(Reply::Stats(self.stats(), self.rejects)),
            Request::Watch => {
                if self.watchers.contains(&sender) {
                    Ok(Reply::Done)
                } else if self.watchers.len() >= self.cfg.limits.max_watchers as usize {
                    self.stats.cap_refusals += 1;
                    Err(Status::OverLimit)
                } else {
                    self.watchers.push(sender);
                    Ok(Reply::Done)
                }
            }
            Request::Drop(peer) => {
                if !self.control.contains(&sender) {
                    Err(Status::Denied)
                } else if let Some(i) = self.peer_index(peer) {
                    self.peer_down(cx, i, "dropped on request");
                    Ok(Reply::Done)
                } else {
                    Err(Status::InvalidArgs)
                }
            }
        };
        Some(r.unwrap_or_else(Reply::Rejected))
    }

    fn listen(&mut self, sender: ServiceId, name: &str) -> Result<Reply, Status> {
        if dsoftbus::mux::wire::check_name(name).is_err() {
            return Err(Status::InvalidArgs);
        }
        match self.listeners.get(name) {
            Some(owner) if *owner == sender => Ok(Reply::Done),
            Some(_) => Err(Status::Denied),
            None if self.listeners.len() >= self.cfg.limits.max_listeners as usize => {
                self.stats.cap_refusals += 1;
                Err(Status::OverLimit)
            }
            None => {
                self.listeners.insert(String::from(name), sender);
                Ok(Reply::Done)
            }
        }
    }

    fn open(
        &mut self,
        sender: ServiceId,
        h: &Header,
        peer: DeviceId,
        name: &str,
        trace: Option<&[u8]>,
    ) -> Result<(), Status> {
        let Some(p) = self.peer_index(peer) else {
            return Err(Status::InvalidArgs);
        };
        if dsoftbus::mux::wire::check_name(name).is_err() {
            return Err(Status::InvalidArgs);
        }
        if trace.is_some_and(|t| t.len() > MAX_TRACE) {
            return Err(Status::OverLimit);
        }
        let limits = self.cfg.limits;
        if self.count_streams(|s| s.owner == sender) >= limits.max_streams_per_service
            || self.count_streams(|s| s.peer == p) >= limits.max_streams_per_peer
        {
            self.stats.cap_refusals += 1;
            return Err(Status::OverLimit);
        }
        let Some(mux) = self.mux_of(p) else {
            return Err(Status::Unavailable);
        };
        let id = mux.open(name, 0, trace).map_err(|e| match e {
            OpenError::BadName | OpenError::TraceTooLong => Status::InvalidArgs,
            OpenError::SessionDead => Status::Unavailable,
            _ => Status::OverLimit,
        })?;
        let handle = self.new_handle();
        self.streams.insert(
            handle,
            Stream {
                owner: sender,
                peer: p,
                mux: id,
                opening: Some(*h),
                peer_closed: false,
                we_closed: false,
                fin_seen: false,
            },
        );
        Ok(())
    }

    fn send(&mut self, sender: ServiceId, handle: Handle, data: &[u8]) -> Result<Reply, Status> {
        if data.len() > MAX_DATA {
            return Err(Status::OverLimit);
        }
        let (peer, id) = self.owned(sender, handle)?;
        let mux = self.mux_of(peer).ok_or(Status::Unavailable)?;
        match mux.send(id, data) {
            Ok(n) => {
                if n < data.len() {
                    self.stats.credit_stalls += 1;
                }
                self.stats.bytes_sent += n as u64;
                Ok(Reply::Sent(u32::try_from(n).unwrap_or(u32::MAX)))
            }
            Err(StreamError::LocalClosed) => Err(Status::InvalidArgs),
            Err(StreamError::TxBacklog) => {
                self.stats.credit_stalls += 1;
                Ok(Reply::Sent(0))
            }
            Err(_) => Err(Status::Unavailable),
        }
    }

    fn recv(&mut self, sender: ServiceId, handle: Handle, max: u16) -> Result<Reply, Status> {
        let (peer, id) = self.owned(sender, handle)?;
        let want = usize::from(max).min(MAX_DATA).min(self.buf.len());
        let mut buf = core::mem::take(&mut self.buf);
        let got = match self.mux_of(peer) {
            Some(m) => m.recv(id, buf.get_mut(..want).unwrap_or_default()),
            None => Err(StreamError::SessionDead),
        };
        let peer_closed = self.streams.get(&handle.0).is_some_and(|s| s.peer_closed);
        let data = match got {
            Ok(n) => buf.get(..n).unwrap_or_default().to_vec(),
            // The mux frees a stream once both sides closed and all was
            // read: that is the end of it, not an error.
            Err(StreamError::UnknownStream) if peer_closed => Vec::new(),
            Err(_) => {
                self.buf = buf;
                return Err(Status::Unavailable);
            }
        };
        self.buf = buf;
        self.stats.bytes_received += data.len() as u64;
        let fin = data.is_empty() && peer_closed;
        if fin {
            self.finish_read(handle);
        }
        Ok(Reply::Data { fin, data })
    }

    fn close(&mut self, sender: ServiceId, handle: Handle) -> Result<Reply, Status> {
        let (peer, id) = self.owned(sender, handle)?;
        if let Some(m) = self.mux_of(peer) {
            match m.close(id) {
                Ok(()) | Err(StreamError::LocalClosed) => {}
                Err(_) => return Err(Status::Unavailable),
            }
        }
        if let Some(s) = self.streams.get_mut(&handle.0) {
            s.we_closed = true;
            if s.fin_seen {
                // Both directions done and the owner read the end.
                self.streams.remove(&handle.0);
            }
        }
        Ok(Reply::Done)
    }

    /// The owner read the end of the peer's direction; once ours is closed
    /// too, the stream is over and its handle freed.
    fn finish_read(&mut self, handle: Handle) {
        if let Some(s) = self.streams.get_mut(&handle.0) {
            s.fin_seen = true;
            if s.we_closed {
                self.streams.remove(&handle.0);
            }
        }
    }

    /// The session with peer `i` is gone: reset its streams (owners told),
    /// fail its pending OPENs, tell the watchers, schedule a redial.
    fn peer_down(&mut self, cx: &mut Ctx<'_>, i: usize, why: &str) {
        let now = cx.now_ns();
        let Some(p) = self.peers.get_mut(i) else {
            return;
        };
        let was_up = matches!(p.state, PeerState::Up(_));
        let state = core::mem::replace(&mut p.state, PeerState::Down);
        if let PeerState::Up(mut c) | PeerState::Dialing(mut c) = state {
            // FIN, so the peer learns at once (not at its keepalive timeout).
            c.sock.close();
            self.closing
                .push((c.sock, now.saturating_add(CLOSE_GRACE_NS)));
        }
        let initial = self.cfg.backoff.initial_ms.saturating_mul(1_000_000);
        let max = self.cfg.backoff.max_ms.saturating_mul(1_000_000);
        p.backoff_ns = if p.backoff_ns == 0 {
            initial
        } else {
            p.backoff_ns.saturating_mul(2).min(max)
        };
        p.retry_at_ns = now.saturating_add(p.backoff_ns);
        let id = bus_id(p.entry.id);
        let gone: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| s.peer == i)
            .map(|(h, _)| *h)
            .collect();
        for h in gone {
            let Some(s) = self.streams.remove(&h) else {
                continue;
            };
            self.stats.streams_reset += 1;
            match s.opening {
                Some(req) => self.reply(cx, s.owner, &req, &Reply::Rejected(Status::Unavailable)),
                None => self.emit(
                    cx,
                    s.owner,
                    &BusEvent::Reset {
                        handle: Handle(h),
                        reason: RESET_PEER_DOWN,
                    },
                ),
            }
        }
        if was_up {
            cx.event(Event::Console(format!("busd: peer down {id} ({why})")));
            for w in self.watchers.clone() {
                self.emit(cx, w, &BusEvent::PeerDown(id));
            }
        }
    }

    fn peer_up(&mut self, cx: &mut Ctx<'_>, i: usize, conn: Conn<N::Socket>) {
        if matches!(self.peers.get(i).map(|p| &p.state), Some(PeerState::Up(_))) {
            // The peer restarted and dialled again: the old session is dead.
            self.peer_down(cx, i, "replaced by a new session");
        }
        let Some(p) = self.peers.get_mut(i) else {
            self.net.release(conn.sock);
            return;
        };
        p.state = PeerState::Up(conn);
        p.caps_reported = false;
        p.sessions = p.sessions.saturating_add(1);
        p.backoff_ns = 0;
        let id = bus_id(p.entry.id);
        self.stats.sessions += 1;
        cx.event(Event::Console(format!("dsoftbus: session ok {id}")));
        cx.event(Event::Console(format!("busd: peer up {id}")));
        for w in self.watchers.clone() {
            self.emit(cx, w, &BusEvent::PeerUp(id));
        }
    }

    fn pump(&mut self, conn: &mut Conn<N::Socket>, now: u64) -> Result<bool, PumpError> {
        let mut buf = core::mem::take(&mut self.buf);
        // A peer's OPEN is accepted only for a name someone listens on here
        // (on top of its ACL); otherwise it is refused before any data.
        let listeners = &self.listeners;
        let mut accept = |name: &str| listeners.contains_key(name);
        let r = conn.link.pump_with(
            &mut SockIo(&mut conn.sock),
            now,
            &self.acl,
            &mut accept,
            &mut buf,
        );
        self.buf = buf;
        r
    }

    fn tick_closing(&mut self, now: u64) {
        let closing = core::mem::take(&mut self.closing);
        for (sock, until) in closing {
            let st = sock.state();
            if st == TcpState::Closed || now >= until {
                self.net.release(sock);
            } else {
                self.closing.push((sock, until));
            }
        }
    }

    fn tick_listener(&mut self, cx: &mut Ctx<'_>) -> bool {
        let now = cx.now_ns();
        if self.listener.is_none() {
            match self.net.listen(self.cfg.listen_port) {
                Ok(s) => self.listener = Some(s),
                Err(_) => return false,
            }
            if !self.ready {
                self.ready = true;
                cx.event(Event::Console(String::from("dsoftbus: ready")));
            }
        }
        let state = self.listener.as_ref().map(TcpSocket::state);
        match state {
            Some(s) if s.is_open() => {}
            Some(TcpState::Listen | TcpState::SynReceived) => return false,
            _ => {
                if let Some(l) = self.listener.take() {
                    self.net.release(l);
                }
                return false;
            }
        }
        let Some(sock) = self.listener.take() else {
            return false;
        };
        if self.incoming.len() >= self.cfg.limits.max_pending_accepts as usize {
            self.stats.cap_refusals += 1;
            self.net.release(sock);
            return true;
        }
        match Link::accept(&self.key, self.seeds.next_seed(), self.link_cfg) {
            Ok(link) => self.incoming.push(Conn {
                sock,
                link: Pumped::new(link),
                since_ns: now,
            }),
            Err(_) => {
                self.stats.handshake_failures += 1;
                self.net.release(sock);
            }
        }
        true
    }

    fn tick_incoming(&mut self, cx: &mut Ctx<'_>) -> bool {
        let now = cx.now_ns();
        let timeout = self.cfg.handshake_timeout_ms.saturating_mul(1_000_000);
        let mut worked = false;
        let pending = core::mem::take(&mut self.incoming);
        for mut c in pending {
            let r = self.pump(&mut c, now);
            worked |= r.unwrap_or(true);
            if let Some(denied) = c.link.link.refused_peer() {
                self.stats.acl_denies += 1;
                cx.event(Event::Console(format!("dsoftbus: acl deny {denied}")));
                self.net.release(c.sock);
                continue;
            }
            if r.is_err() || now.saturating_sub(c.since_ns) > timeout {
                self.stats.handshake_failures += 1;
                self.net.release(c.sock);
                continue;
            }
            match c.link.link.peer() {
                Some(id) => match self.peers.iter().position(|p| p.entry.id == id) {
                    Some(i) => self.peer_up(cx, i, c),
                    None => self.net.release(c.sock),
                },
                None => self.incoming.push(c),
            }
        }
        worked
    }

    fn tick_peer(&mut self, cx: &mut Ctx<'_>, i: usize) -> bool {
        let now = cx.now_ns();
        let timeout = self.cfg.handshake_timeout_ms.saturating_mul(1_000_000);
        let Some(p) = self.peers.get_mut(i) else {
            return false;
        };
        let state = core::mem::replace(&mut p.state, PeerState::Down);
        match state {
            PeerState::Down => {
                if !p.dials || now < p.retry_at_ns {
                    return false;
                }
                let (ip, port, key) = (p.entry.ip, p.entry.port, p.entry.key);
                if p.sessions > 0 {
                    self.stats.reconnects += 1;
                }
                let dialled = self.net.connect(ip, port).ok().and_then(|sock| {
                    match Link::dial(&self.key, key, self.seeds.next_seed(), self.link_cfg) {
                        Ok(link) => Some(Conn {
                            sock,
                            link: Pumped::new(link),
                            since_ns: now,
                        }),
                        Err(_) => {
                            self.net.release(sock);
                            None
                        }
                    }
                });
                match dialled {
                    Some(c) => {
                        if let Some(p) = self.peers.get_mut(i) {
                            p.state = PeerState::Dialing(c);
                        }
                    }
                    None => {
                        self.stats.handshake_failures += 1;
                        self.peer_down(cx, i, "dial failed");
                    }
                }
                true
            }
            PeerState::Dialing(mut c) => {
                let r = self.pump(&mut c, now);
                let timed_out = now.saturating_sub(c.since_ns) > timeout;
                if r.is_err() || timed_out {
                    self.stats.handshake_failures += 1;
                    self.net.release(c.sock);
                    self.peer_down(cx, i, "handshake failed");
                    return true;
                }
                if c.link.link.peer().is_some() {
                    // In XK the dialer finishes first; the peer authorizes
                    // us on the last message. Its first frame (the PONG to
                    // our PING) proves it did: only then is the peer up.
                    if let Some(m) = c.link.link.mux() {
                        if m.stats().frames_received > 0 {
                            self.peer_up(cx, i, c);
                            return true;
                        }
                        m.ping_now(now);
                    }
                }
                if let Some(p) = self.peers.get_mut(i) {
                    p.state = PeerState::Dialing(c);
                }
                r.unwrap_or(false)
            }
            PeerState::Up(mut c) => {
                let r = self.pump(&mut c, now);
                let caps = c.link.link.mux().map(|m| (m.peer_caps(), m.trace_on()));
                if let Some(p) = self.peers.get_mut(i) {
                    p.state = PeerState::Up(c);
                    if let (false, Some((Some(_), on))) = (p.caps_reported, caps) {
                        // The peer's CAPS (its first frame) arrived: say
                        // once per session whether trace context travels.
                        p.caps_reported = true;
                        let line = if on {
                            String::from("dsoftbus: mux trace caps on")
                        } else {
                            format!("dsoftbus: mux trace caps off {}", bus_id(p.entry.id))
                        };
                        cx.event(Event::Console(line));
                    }
                }
                match r {
                    Err(e) => {
                        self.peer_down(cx, i, &format!("session lost: {e}"));
                        true
                    }
                    Ok(moved) => self.mux_events(cx, i) | moved,
                }
            }
        }
    }

    fn stream_of(&self, peer: usize, mux: u32) -> Option<u32> {
        self.streams
            .iter()
            .find(|(_, s)| s.peer == peer && s.mux == mux)
            .map(|(h, _)| *h)
    }

    fn mux_events(&mut self, cx: &mut Ctx<'_>, i: usize) -> bool {
        let mut worked = false;
        loop {
            let Some(e) = self.mux_of(i).and_then(Mux::poll_event) else {
                return worked;
            };
            worked = true;
            self.mux_event(cx, i, e);
        }
    }

    fn mux_event(&mut self, cx: &mut Ctx<'_>, i: usize, e: MuxEvent) {
        let peer_id = self.peers.get(i).map(|p| bus_id(p.entry.id));
        match e {
            MuxEvent::Opened {
                stream,
                name,
                trace,
                ..
            } => {
                let limits = self.cfg.limits;
                let owner = self.listeners.get(&name).copied().filter(|o| {
                    self.count_streams(|s| s.owner == *o) < limits.max_streams_per_service
                });
                match (owner, peer_id) {
                    (Some(owner), Some(peer)) => {
                        let handle = self.new_handle();
                        self.streams.insert(
                            handle,
                            Stream {
                                owner,
                                peer: i,
                                mux: stream,
                                opening: None,
                                peer_closed: false,
                                we_closed: false,
                                fin_seen: false,
                            },
                        );
                        self.stats.streams_accepted += 1;
                        if trace.as_deref().is_some_and(valid_context) {
                            if self.traces_propagated == 0 {
                                cx.event(Event::Console(String::from(
                                    "dsoftbus: mux trace propagated",
                                )));
                            }
                            self.traces_propagated += 1;
                        }
                        self.emit(
                            cx,
                            owner,
                            &BusEvent::Incoming {
                                handle: Handle(handle),
                                peer,
                                name,
                                trace,
                            },
                        );
                    }
                    _ => {
                        self.stats.streams_refused += 1;
                        if let Some(m) = self.mux_of(i) {
                            let _ = m.reset(stream, RESET_NO_LISTENER);
                        }
                    }
                }
            }
            MuxEvent::Accepted { stream } => {
                let Some(h) = self.stream_of(i, stream) else {
                    return;
                };
                let pending = self.streams.get_mut(&h).and_then(|s| {
                    let req = s.opening.take()?;
                    Some((s.owner, req))
                });
                if let Some((owner, req)) = pending {
                    self.stats.streams_opened += 1;
                    self.reply(cx, owner, &req, &Reply::Opened(Handle(h)));
                }
            }
            MuxEvent::Rejected { stream, .. } => {
                let Some(h) = self.stream_of(i, stream) else {
                    return;
                };
                if let Some(s) = self.streams.remove(&h) {
                    self.stats.streams_refused += 1;
                    if let Some(req) = s.opening {
                        self.reply(cx, s.owner, &req, &Reply::Rejected(Status::Denied));
                    }
                }
            }
            MuxEvent::Readable { stream } => {
                if let Some((h, owner)) = self.owner_of(i, stream) {
                    self.emit(cx, owner, &BusEvent::Readable(Handle(h)));
                }
            }
            MuxEvent::Writable { stream } => {
                if let Some((h, owner)) = self.owner_of(i, stream) {
                    self.emit(cx, owner, &BusEvent::Writable(Handle(h)));
                }
            }
            MuxEvent::Closed { stream } => {
                if let Some((h, owner)) = self.owner_of(i, stream) {
                    if let Some(s) = self.streams.get_mut(&h) {
                        s.peer_closed = true;
                    }
                    self.emit(cx, owner, &BusEvent::Closed(Handle(h)));
                }
            }
            MuxEvent::Reset { stream, reason } => {
                if let Some((h, owner)) = self.owner_of(i, stream) {
                    self.streams.remove(&h);
                    self.stats.streams_reset += 1;
                    self.emit(
                        cx,
                        owner,
                        &BusEvent::Reset {
                            handle: Handle(h),
                            reason,
                        },
                    );
                }
            }
            MuxEvent::PeerTimeout => self.peer_down(cx, i, "keepalive timeout"),
        }
    }

    fn owner_of(&self, peer: usize, mux: u32) -> Option<(u32, ServiceId)> {
        let h = self.stream_of(peer, mux)?;
        Some((h, self.streams.get(&h)?.owner))
    }
}

impl<N: Network> Service for Busd<N> {
    fn name(&self) -> &'static str {
        NAME
    }

    fn handle(&mut self, cx: &mut Ctx<'_>, sender: ServiceId, frame: &[u8]) {
        match proto::decode_request(frame) {
            Ok((h, req)) => {
                if let Some(r) = self.request(cx, sender, &h, req) {
                    self.reply(cx, sender, &h, &r);
                }
            }
            Err(RequestError::NoHeader) => {
                self.rejects.count(Status::Malformed);
                cx.event(Event::Rejected(Status::Malformed));
            }
            Err(RequestError::Unsupported(h)) => {
                self.reply(cx, sender, &h, &Reply::Rejected(Status::Unsupported));
            }
            Err(RequestError::Malformed(h)) => {
                self.reply(cx, sender, &h, &Reply::Rejected(Status::Malformed));
            }
        }
    }

    fn tick(&mut self, cx: &mut Ctx<'_>) {
        self.tick_closing(cx.now_ns());
        // Until nothing moves, within a bound per step (other tasks run too).
        for _ in 0..8 {
            let mut worked = self.tick_listener(cx);
            worked |= self.tick_incoming(cx);
            for i in 0..self.peers.len() {
                worked |= self.tick_peer(cx, i);
            }
            if !worked {
                break;
            }
            cx.progressed();
        }
    }

    fn self_metrics(&self) -> &'static [Spec] {
        &SELF_METRICS
    }

    fn self_metric_values(&self, _now_ns: u64, out: &mut Vec<i64>) {
        let s = self.stats();
        let v = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        out.extend_from_slice(&[
            v(s.peers_up),
            v(s.streams_live),
            v(s.sessions),
            v(s.reconnects),
            v(s.bytes_sent),
            v(s.bytes_received),
            v(self.rejects.total()),
            v(s.acl_denies),
        ]);
    }

    fn discard_unsaved(&mut self) {}
}

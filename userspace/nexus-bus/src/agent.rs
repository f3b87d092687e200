//! [`BusAgent`]: busd for services, which never wait.
//!
//! [`crate::BusClient`] waits for each reply, which apps may do and
//! services must not. A service instead sends its requests through the
//! agent (which remembers what each nonce was for) and hands every frame
//! that comes from busd to [`BusAgent::on_frame`], which turns replies and
//! events into [`AgentEvent`]s. At most [`MAX_PENDING`] requests wait for
//! replies: a reply busd could not deliver (its queue to us was full) would
//! otherwise hold a slot forever, so the oldest waiting request is
//! forgotten (counted in [`BusAgent::forgotten`]) to make room.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use nexus_ipc::ServiceId;
use nexus_wire::Status;

use crate::proto::{self, BusEvent, DeviceId, Handle, Reply, Request};

/// Requests waiting for busd's reply, at most.
pub const MAX_PENDING: usize = 256;

/// What a request was, to interpret its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Listen(String),
    Open(u64),
    Send(Handle),
    Recv(Handle),
    Other,
}

/// What busd said, for the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// LISTEN on the name succeeded.
    Listening(String),
    /// LISTEN on the name was refused.
    ListenFailed(String, Status),
    /// The OPEN tagged `tag` was accepted by the peer.
    Opened {
        /// The caller's tag.
        tag: u64,
        /// The stream.
        handle: Handle,
    },
    /// The OPEN tagged `tag` failed.
    OpenFailed {
        /// The caller's tag.
        tag: u64,
        /// Why.
        status: Status,
    },
    /// A SEND took `n` bytes (0: wait for `Writable`).
    Sent {
        /// The stream.
        handle: Handle,
        /// Bytes taken.
        n: usize,
    },
    /// A RECV answered.
    Data {
        /// The stream.
        handle: Handle,
        /// The peer closed and everything was read.
        fin: bool,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A SEND or RECV on `handle` was refused (the stream is gone).
    StreamFailed {
        /// The stream.
        handle: Handle,
        /// Why.
        status: Status,
    },
    /// Something busd pushed.
    Bus(BusEvent),
}

/// The service side of busd, sans-I/O.
#[derive(Debug)]
pub struct BusAgent {
    busd: ServiceId,
    nonce: u64,
    pending: BTreeMap<u64, Pending>,
    unmatched: u64,
    forgotten: u64,
}

impl BusAgent {
    /// An agent talking to busd at `busd`.
    pub fn new(busd: ServiceId) -> Self {
        Self {
            busd,
            nonce: 0,
            pending: BTreeMap::new(),
            unmatched: 0,
            forgotten: 0,
        }
    }

    /// busd's id.
    pub fn busd(&self) -> ServiceId {
        self.busd
    }

    /// Frames from busd that were neither a known reply nor an event.
    pub fn unmatched(&self) -> u64 {
        self.unmatched
    }

    /// Waiting requests dropped to make room (their replies never came).
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Requests waiting for a reply.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn request(
        &mut self,
        send: &mut dyn FnMut(ServiceId, &[u8]) -> bool,
        req: &Request<'_>,
        what: Pending,
    ) -> bool {
        if self.pending.len() >= MAX_PENDING {
            // Nonces increase: the first key is the oldest request.
            if let Some((&oldest, _)) = self.pending.iter().next() {
                self.pending.remove(&oldest);
                self.forgotten += 1;
            }
        }
        self.nonce = self.nonce.wrapping_add(1);
        let Ok(frame) = proto::encode_request(self.nonce, req) else {
            return false;
        };
        if !send(self.busd, &frame) {
            return false;
        }
        self.pending.insert(self.nonce, what);
        true
    }

    /// Asks to handle stream `name`.
    pub fn listen(&mut self, send: &mut dyn FnMut(ServiceId, &[u8]) -> bool, name: &str) -> bool {
        self.request(
            send,
            &Request::Listen(name),
            Pending::Listen(String::from(name)),
        )
    }

    /// Asks for peer up/down events.
    pub fn watch(&mut self, send: &mut dyn FnMut(ServiceId, &[u8]) -> bool) -> bool {
        self.request(send, &Request::Watch, Pending::Other)
    }

    /// Opens `name` on `peer`; the answer comes back with `tag`.
    pub fn open(
        &mut self,
        send: &mut dyn FnMut(ServiceId, &[u8]) -> bool,
        peer: DeviceId,
        name: &str,
        tag: u64,
    ) -> bool {
        self.request(
            send,
            &Request::Open {
                peer,
                name,
                trace: None,
            },
            Pending::Open(tag),
        )
    }

    /// Writes `data` (at most [`proto::MAX_DATA`]); the answer says how
    /// much was taken.
    pub fn send(
        &mut self,
        send: &mut dyn FnMut(ServiceId, &[u8]) -> bool,
        handle: Handle,
        data: &[u8],
    ) -> bool {
        let data = data
            .get(..data.len().min(proto::MAX_DATA))
            .unwrap_or_default();
        self.request(send, &Request::Send { handle, data }, Pending::Send(handle))
    }

    /// Reads up to `max` bytes.
    pub fn recv(
        &mut self,
        send: &mut dyn FnMut(ServiceId, &[u8]) -> bool,
        handle: Handle,
        max: u16,
    ) -> bool {
        self.request(send, &Request::Recv { handle, max }, Pending::Recv(handle))
    }

    /// Closes our direction.
    pub fn close(
        &mut self,
        send: &mut dyn FnMut(ServiceId, &[u8]) -> bool,
        handle: Handle,
    ) -> bool {
        self.request(send, &Request::Close(handle), Pending::Other)
    }

    /// Aborts a stream.
    pub fn reset(
        &mut self,
        send: &mut dyn FnMut(ServiceId, &[u8]) -> bool,
        handle: Handle,
    ) -> bool {
        self.request(send, &Request::Reset(handle), Pending::Other)
    }

    /// Interprets a frame. `None` if it is not busd's protocol from busd
    /// (the service handles it itself: busd also talks to services in
    /// theirs, e.g. it registers its own metrics with metricsd); otherwise
    /// what it meant (possibly nothing).
    pub fn on_frame(&mut self, sender: ServiceId, frame: &[u8]) -> Option<Option<AgentEvent>> {
        if sender != self.busd || !frame.starts_with(&proto::MAGIC) {
            return None;
        }
        if let Ok((_, e)) = proto::decode_event(frame) {
            return Some(Some(AgentEvent::Bus(e)));
        }
        let Ok((h, reply)) = proto::decode_reply(frame) else {
            self.unmatched += 1;
            return Some(None);
        };
        let Some(what) = self.pending.remove(&h.nonce) else {
            self.unmatched += 1;
            return Some(None);
        };
        let status = match &reply {
            Reply::Rejected(s) => Some(*s),
            _ => None,
        };
        Some(match (what, reply) {
            (Pending::Listen(name), Reply::Done) => Some(AgentEvent::Listening(name)),
            (Pending::Listen(name), _) => Some(AgentEvent::ListenFailed(
                name,
                status.unwrap_or(Status::Malformed),
            )),
            (Pending::Open(tag), Reply::Opened(handle)) => Some(AgentEvent::Opened { tag, handle }),
            (Pending::Open(tag), _) => Some(AgentEvent::OpenFailed {
                tag,
                status: status.unwrap_or(Status::Malformed),
            }),
            (Pending::Send(handle), Reply::Sent(n)) => Some(AgentEvent::Sent {
                handle,
                n: usize::try_from(n).unwrap_or(0),
            }),
            (Pending::Recv(handle), Reply::Data { fin, data }) => {
                Some(AgentEvent::Data { handle, fin, data })
            }
            (Pending::Send(handle) | Pending::Recv(handle), _) => Some(AgentEvent::StreamFailed {
                handle,
                status: status.unwrap_or(Status::Malformed),
            }),
            (Pending::Other, _) => None,
        })
    }
}

/// Bytes a service writes to one stream through a [`BusAgent`], one SEND
/// in flight at a time: the stream's credit decides how fast they go, and
/// a SEND that finds none waits for `Writable`.
#[derive(Debug, Default)]
pub struct Outbox {
    out: Vec<u8>,
    sent: usize,
    in_flight: bool,
    blocked: bool,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Bytes still to write.
    pub fn pending(&self) -> usize {
        self.out.len().saturating_sub(self.sent)
    }

    /// Queues `bytes` (call only when [`Outbox::is_empty`]; otherwise they
    /// are appended).
    pub fn load(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Issues the next SEND if none is in flight and credit is not known
    /// to be missing.
    pub fn pump(
        &mut self,
        agent: &mut BusAgent,
        send: &mut dyn FnMut(ServiceId, &[u8]) -> bool,
        handle: Handle,
    ) {
        if self.is_empty() || self.in_flight || self.blocked {
            return;
        }
        let end = self
            .out
            .len()
            .min(self.sent.saturating_add(proto::MAX_DATA));
        let part = self.out.get(self.sent..end).unwrap_or_default();
        self.in_flight = agent.send(send, handle, part);
    }

    /// busd took `n` bytes of the SEND in flight.
    pub fn on_sent(&mut self, n: usize) {
        self.in_flight = false;
        self.sent = self.sent.saturating_add(n);
        if self.sent >= self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
        self.blocked = n == 0;
    }

    /// The stream has credit again.
    pub fn on_writable(&mut self) {
        self.blocked = false;
    }
}

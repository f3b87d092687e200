//! One connection between two devices: the Noise handshake, then an
//! encrypted session carrying mux v2 frames. Sans-I/O: feed it the bytes
//! the transport received, send what [`Link::poll_transmit`] returns. The
//! ACL is consulted with the authenticated peer id: by the accepting side
//! when the dialer's static key is proven (the dialer itself pins the key
//! of the device it dials), and on both sides for every stream the peer
//! opens.
//!
//! Mux frames always fit a record: once the session is up, the mux's frame
//! payload is capped to what the record size both sides agreed allows.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use crate::identity::{DeviceId, DeviceKey};
use crate::mux::{wire, Mux, MuxConfig, MuxError, Role};
use crate::policy::Acl;
use crate::session::{CloseReason, Handshake, Session, SessionConfig};

/// Both layers' limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkConfig {
    /// Record limits.
    pub session: SessionConfig,
    /// Stream limits and timers.
    pub mux: MuxConfig,
}

/// Why a link closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// The handshake or a record failed (authentication, replay, ACL, …).
    Session(CloseReason),
    /// The peer broke the mux protocol, or stopped answering.
    Mux(MuxError),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Session(r) => write!(f, "session: {r}"),
            LinkError::Mux(e) => write!(f, "mux: {e}"),
        }
    }
}

#[derive(Debug)]
struct Up {
    session: Session,
    mux: Mux,
}

#[derive(Debug)]
enum State {
    Handshake(Box<Handshake>),
    Up(Box<Up>),
    Closed(LinkError),
}

/// One link.
#[derive(Debug)]
pub struct Link {
    state: State,
    role: Role,
    mux_cfg: MuxConfig,
    out: VecDeque<Vec<u8>>,
    refused: Option<DeviceId>,
}

impl Link {
    /// Dials the device whose static key is `remote_static`. `seed` must be
    /// fresh for every handshake (virtio-rng on the OS, the OS RNG on the
    /// host; fixed only in tests).
    pub fn dial(
        local: &DeviceKey,
        remote_static: [u8; 32],
        seed: [u8; 32],
        cfg: LinkConfig,
    ) -> Result<Self, LinkError> {
        let hs = Handshake::initiator_with_config(cfg.session, local, remote_static, seed)
            .map_err(LinkError::Session)?;
        Ok(Self::new(hs, Role::Initiator, cfg.mux))
    }

    /// Accepts a device that dials us (the ACL decides who may).
    pub fn accept(local: &DeviceKey, seed: [u8; 32], cfg: LinkConfig) -> Result<Self, LinkError> {
        let hs = Handshake::responder_with_config(cfg.session, local, seed)
            .map_err(LinkError::Session)?;
        Ok(Self::new(hs, Role::Responder, cfg.mux))
    }

    fn new(hs: Handshake, role: Role, mux_cfg: MuxConfig) -> Self {
        Self {
            state: State::Handshake(Box::new(hs)),
            role,
            mux_cfg,
            out: VecDeque::new(),
            refused: None,
        }
    }

    /// The authenticated peer, once the handshake is done.
    pub fn peer(&self) -> Option<DeviceId> {
        match &self.state {
            State::Up(up) => Some(up.session.peer()),
            _ => None,
        }
    }

    /// The device the ACL refused during the handshake (its id is
    /// authenticated: it proved it holds the key), for the audit log.
    pub fn refused_peer(&self) -> Option<DeviceId> {
        self.refused
    }

    /// Why the link closed, if it did.
    pub fn closed(&self) -> Option<LinkError> {
        match &self.state {
            State::Closed(e) => Some(*e),
            _ => None,
        }
    }

    /// The stream layer, once up.
    pub fn mux(&mut self) -> Option<&mut Mux> {
        match &mut self.state {
            State::Up(up) => Some(&mut up.mux),
            _ => None,
        }
    }

    fn close(&mut self, e: LinkError) -> LinkError {
        self.state = State::Closed(e);
        self.out.clear();
        e
    }

    /// Feeds bytes from the transport at `now_ns`.
    pub fn on_bytes(&mut self, data: &[u8], now_ns: u64, acl: &Acl) -> Result<(), LinkError> {
        self.on_bytes_with(data, now_ns, acl, &mut |_| true)
    }

    /// Like [`Link::on_bytes`], with a local policy for the peer's OPENs on
    /// top of the ACL: a stream is accepted only if the ACL lets the peer
    /// open `name` and `accept(name)` holds (e.g. someone listens on it);
    /// otherwise the peer gets a REJECT before any data flows.
    pub fn on_bytes_with(
        &mut self,
        data: &[u8],
        now_ns: u64,
        acl: &Acl,
        accept: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(), LinkError> {
        let records = match &mut self.state {
            State::Closed(e) => return Err(*e),
            State::Handshake(hs) => {
                let refused = &mut self.refused;
                let done = hs.on_bytes(data, &mut |id, key| {
                    let ok = acl.authorize(id, key);
                    if !ok {
                        *refused = Some(id);
                    }
                    ok
                });
                while let Some(m) = hs.poll_transmit() {
                    self.out.push_back(m);
                }
                match done {
                    Err(r) => return Err(self.close(LinkError::Session(r))),
                    Ok(None) => return Ok(()),
                    Ok(Some(mut session)) => {
                        // Records that came with the last handshake message.
                        let recs = session.on_bytes(&[]);
                        let mut cfg = self.mux_cfg;
                        // Records too small for a full OPEN cannot carry the mux.
                        if session.max_send() < wire::MAX_OPEN_LEN {
                            return Err(self.close(LinkError::Session(CloseReason::TooLarge)));
                        }
                        let room = session.max_send().saturating_sub(wire::DATA_HEADER_LEN);
                        let room = u16::try_from(room).unwrap_or(u16::MAX);
                        cfg.max_frame_payload = cfg.max_frame_payload.min(room);
                        let mux = Mux::new(self.role, cfg, now_ns);
                        self.state = State::Up(Box::new(Up { session, mux }));
                        recs
                    }
                }
            }
            State::Up(up) => up.session.on_bytes(data),
        };
        let records = match records {
            Ok(r) => r,
            Err(r) => return Err(self.close(LinkError::Session(r))),
        };
        let State::Up(up) = &mut self.state else {
            return Ok(());
        };
        let peer = up.session.peer();
        for rec in records {
            if let Err(e) = up.mux.on_frame(&rec, now_ns, &mut |name| {
                acl.may_open(peer, name) && accept(name)
            }) {
                return Err(self.close(LinkError::Mux(e)));
            }
        }
        Ok(())
    }

    /// Runs timers (keepalive) at `now_ns`.
    pub fn tick(&mut self, now_ns: u64) {
        if let State::Up(up) = &mut self.state {
            up.mux.tick(now_ns);
            if up.mux.is_dead() {
                self.close(LinkError::Mux(MuxError::SessionDead));
            }
        }
    }

    /// The next bytes to send: handshake messages, then sealed mux frames.
    pub fn poll_transmit(&mut self, now_ns: u64) -> Option<Vec<u8>> {
        if let Some(b) = self.out.pop_front() {
            return Some(b);
        }
        match &mut self.state {
            State::Handshake(hs) => hs.poll_transmit(),
            State::Up(up) => {
                let frame = up.mux.poll_transmit(now_ns)?;
                match up.session.seal(&frame) {
                    Ok(rec) => Some(rec),
                    Err(r) => {
                        self.close(LinkError::Session(r));
                        None
                    }
                }
            }
            State::Closed(_) => None,
        }
    }
}

//! Byte-frame IPC with identity stamped by the transport.
//!
//! A service talks to another by sending it an opaque byte frame. The frame
//! arrives with [`FrameMeta`], whose `sender` is written by the transport
//! (the [`Router`] on the OS runtime and in the host backend), never taken
//! from the frame: a task has no way to choose the [`ServiceId`] it sends as.
//!
//! * [`Endpoint`] is the small trait service code is written against.
//! * [`router::Router`] is the no_std routing core with bounded queues; the OS
//!   runtime owns one, and [`host`] wraps one for threads on the host.
//! * Frames are written and read with `nexus-wire`, the one codec: its
//!   header (magic, version, op, nonce), statuses, reader and writer.
//! * [`caller`] is the sequential request/reply client every protocol
//!   client is built on.
//! * [`correlate`] matches replies to requests by the echoed nonce; replies
//!   nobody waits for are dropped and counted.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod caller;
pub mod correlate;
#[cfg(feature = "std")]
pub mod host;
pub mod router;

use alloc::vec::Vec;
use core::fmt;

/// The identity of a task, assigned by the transport when the task's
/// endpoint is registered. Never parsed from a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceId(u32);

impl ServiceId {
    /// Wraps a raw id. Only transports (and tests) should mint ids.
    pub const fn new(raw: u32) -> Self {
        Self(raw)
    }

    /// The raw id, for wire encoding and display.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "svc#{}", self.0)
    }
}

/// Payload keys that claim an identity (in log fields, metric labels, span
/// attributes). Identity comes from the transport, so services refuse
/// payloads carrying one of these with `invalid_args` and count a spoof.
pub const IDENTITY_CLAIM_KEYS: [&str; 8] = [
    "sender",
    "sender_id",
    "sender_service_id",
    "service",
    "service_id",
    "service_name",
    "pid",
    "uid",
];

/// True if `key` claims an identity (see [`IDENTITY_CLAIM_KEYS`]).
pub fn is_identity_claim(key: &str) -> bool {
    IDENTITY_CLAIM_KEYS.contains(&key)
}

/// What the transport says about a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// The sending endpoint, as stamped by the transport.
    pub sender: ServiceId,
}

/// A received frame: transport metadata plus the bytes, untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Stamped by the transport.
    pub meta: FrameMeta,
    /// The payload exactly as sent.
    pub bytes: Vec<u8>,
}

/// Why a send did not happen. Sends never block: a full queue is an error
/// returned to the sender, not a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No endpoint with that id.
    NoSuchEndpoint,
    /// The receiver's queue is at its bound.
    QueueFull,
    /// The frame is larger than the transport's frame limit.
    TooLarge,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::NoSuchEndpoint => "no such endpoint",
            SendError::QueueFull => "receiver queue full",
            SendError::TooLarge => "frame too large",
        })
    }
}

/// One side of the IPC transport, as seen by service code.
pub trait Endpoint {
    /// This endpoint's identity (as the transport stamps it on sends).
    fn id(&self) -> ServiceId;
    /// Sends a frame. Never blocks.
    fn send(&mut self, to: ServiceId, frame: &[u8]) -> Result<(), SendError>;
    /// Takes the next received frame, if one is queued.
    fn try_recv(&mut self) -> Option<Frame>;
    /// Waits up to `timeout_ns` for a frame.
    fn recv_timeout(&mut self, timeout_ns: u64) -> Option<Frame>;
}

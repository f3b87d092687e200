//! Authenticated, encrypted sessions between two devices over any reliable,
//! ordered byte transport (a TCP stream, a virtio console, an in-memory
//! pipe). Sans-I/O: the caller moves bytes, this module never blocks, never
//! reads a clock and never asks the OS for randomness.
//!
//! # Handshake: `Noise_XK_25519_ChaChaPoly_BLAKE2s`
//!
//! The initiator dials a device whose static public key it already knows
//! (from configuration or discovery); the responder learns who dialled
//! during the handshake and decides with its `authorize` hook. XK fits that
//! split, and was chosen over IK because:
//!
//! * the initiator's static key travels in message 3, encrypted under keys
//!   that include the ephemeral-ephemeral DH: it is forward secret and only
//!   the holder of the responder's private key can read it. IK sends it in
//!   message 1 under the responder's static key alone, so a later leak of
//!   that key reveals who connected in every recorded handshake;
//! * IK's first message can be replayed at will, making the responder do DH
//!   work and consult `authorize` for a stale attempt; in XK the responder
//!   only ever authorizes a key whose possession was just proven (the `se`
//!   DH and the tag of message 3), bound to this handshake's ephemerals;
//! * the extra half round trip costs little for long-lived bus sessions.
//!
//! ```text
//! handshake frame   len: u16 LE | Noise message (len bytes, fixed per step)
//!   1  -> e, es     48 bytes   payload: empty
//!   2  <- e, ee     50 bytes   payload: responder's max_record, u16 LE
//!   3  -> s, se     66 bytes   payload: initiator's max_record, u16 LE
//! record            len: u16 LE | seq: u64 LE | ciphertext (len bytes)
//! ```
//!
//! The prologue [`PROLOGUE`] binds the protocol version into the handshake
//! hash. A handshake frame whose length is not the one its step requires is
//! `Malformed` as soon as its two length bytes arrive.
//!
//! # Records
//!
//! `ciphertext` is ChaCha20-Poly1305 of the plaintext with the 16-byte tag
//! appended, and `seq` is its nonce, so the sequence number is
//! authenticated: changing it, like changing any ciphertext bit, fails the
//! tag (`AuthFailed`). Each side numbers its records 0, 1, 2, … and the
//! receiver accepts, after the tag verified, exactly the next number: over a
//! reliable ordered transport anything else is a replayed, reordered or
//! dropped record (`Replay`).
//!
//! Each side announces its `max_record` (plaintext bytes per record) in the
//! handshake; a session seals at most the smaller of the two and accepts at
//! most its own. A record header announcing more is `TooLarge` as soon as
//! the header is read, before the body is buffered.
//!
//! # Invariants
//!
//! * No application byte is sealed or opened before the handshake
//!   completed: a [`Session`] exists only then, and on the responder only
//!   after `authorize` accepted the peer's proven static key.
//! * The peer's [`DeviceId`] is derived from the authenticated static key,
//!   never read from a payload.
//! * Receive buffers are bounded: a handshake holds at most one handshake
//!   frame (68 bytes); a session at most one record (10 header bytes +
//!   `max_record` + 16), plus the unread tail of the chunk that completed
//!   the handshake (see [`Handshake::on_bytes`]).
//! * Any failure closes the handshake or session for good: every later
//!   call returns the same [`CloseReason`]; no input panics.
//! * Ephemeral keys come from a ChaCha20 stream keyed by
//!   `BLAKE2s-256("nexus-dsoftbus-session-rng" || static secret || seed)`.
//!   The seed must be fresh for every handshake (the OS draws it from
//!   virtio-rng); mixing in the static secret keeps ephemerals unpredictable
//!   to others even if a seed is weak. Fixed seeds make tests deterministic
//!   and must never be used on a real device.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;

use blake2::{Blake2s256, Digest};
use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use nexus_wire::{Reader, Writer};
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{Builder, HandshakeState, StatelessTransportState};

use crate::identity::{DeviceId, DeviceKey};

/// The Noise protocol name of every session.
pub const NOISE_PATTERN: &str = "Noise_XK_25519_ChaChaPoly_BLAKE2s";
/// Hashed into every handshake; a new wire version changes it.
pub const PROLOGUE: &[u8] = b"nexus-dsoftbus session v1";
/// Bytes of the authentication tag appended to every ciphertext.
pub const TAG_LEN: usize = 16;
/// The largest `max_record` (a Noise message is at most 65535 bytes).
pub const MAX_RECORD: usize = 65535 - TAG_LEN;
/// `max_record` of [`SessionConfig::default`].
pub const DEFAULT_MAX_RECORD: usize = 16 * 1024;
/// Bytes of the length prefix of handshake frames and records.
pub const LEN_PREFIX: usize = 2;
/// Bytes before the ciphertext of a record: length and sequence number.
pub const RECORD_HEADER_LEN: usize = LEN_PREFIX + 8;

/// Bytes of an X25519 public key.
const KEY_LEN: usize = 32;
/// Bytes of the handshake payload announcing a `max_record`.
const HELLO_LEN: usize = 2;

/// The handshake payload: the sender's `max_record`, u16 little endian.
fn encode_hello(max_record: u16) -> [u8; HELLO_LEN] {
    // One u16 into two bytes: cannot fail.
    Writer::to_array(|w| {
        w.u16(max_record);
    })
    .unwrap_or_default()
}

/// Domain separation for the ephemeral-key generator.
const RNG_DOMAIN: &[u8] = b"nexus-dsoftbus-session-rng";

/// Length of handshake message `step` (0-based), without its length prefix.
const fn message_len(step: u8) -> usize {
    match step {
        0 => KEY_LEN + TAG_LEN,
        1 => KEY_LEN + HELLO_LEN + TAG_LEN,
        _ => KEY_LEN + TAG_LEN + HELLO_LEN + TAG_LEN,
    }
}

/// Number of messages in the XK handshake.
const HANDSHAKE_MESSAGES: u8 = 3;

/// Limits of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Plaintext bytes per record this side accepts, and the most it
    /// seals; at most [`MAX_RECORD`]. It also bounds the receive buffer.
    pub max_record: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_record: DEFAULT_MAX_RECORD,
        }
    }
}

impl SessionConfig {
    /// `max_record` as announced in the handshake, if within the limit.
    fn announced(self) -> Result<u16, CloseReason> {
        u16::try_from(self.max_record)
            .ok()
            .filter(|m| usize::from(*m) <= MAX_RECORD)
            .ok_or(CloseReason::TooLarge)
    }
}

/// Why a handshake or session closed (or refused an operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Framing is wrong: a handshake frame of the wrong length, a record
    /// shorter than its tag, a bad handshake payload.
    Malformed,
    /// A record's tag (or the tag of handshake message 3) did not verify:
    /// the bytes were altered or forged.
    AuthFailed,
    /// An authentic record arrived out of sequence: replayed, reordered,
    /// or a record before it was dropped.
    Replay,
    /// The responder's `authorize` hook refused the initiator's key.
    UnknownPeer,
    /// The peer does not hold the static key this side expects: the
    /// responder could not decrypt message 1 (the initiator pinned another
    /// key), or the initiator could not decrypt message 2. A message 1 or 2
    /// altered in transit looks the same.
    WrongKey,
    /// A size limit: a record above the session's `max_record`, or a
    /// `max_record` above [`MAX_RECORD`], or the sequence space is spent.
    TooLarge,
    /// The handshake failed otherwise: misuse of a spent handshake, a
    /// degenerate DH result (low-order key), or the Noise state refused.
    Handshake,
}

impl CloseReason {
    /// The snake_case name used in docs, markers and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseReason::Malformed => "malformed",
            CloseReason::AuthFailed => "auth_failed",
            CloseReason::Replay => "replay",
            CloseReason::UnknownPeer => "unknown_peer",
            CloseReason::WrongKey => "wrong_key",
            CloseReason::TooLarge => "too_large",
            CloseReason::Handshake => "handshake",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for CloseReason {}

/// One side of a handshake in progress.
pub struct Handshake {
    /// `None` once spent (a session was handed out) or failed.
    noise: Option<HandshakeState>,
    initiator: bool,
    /// Handshake messages written or read so far.
    step: u8,
    /// This side's `max_record`, as announced.
    local_max: u16,
    /// Framed handshake bytes waiting for [`Handshake::poll_transmit`].
    outbox: Vec<u8>,
    /// The frame being received (prefix included).
    rx: Vec<u8>,
    closed: Option<CloseReason>,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("initiator", &self.initiator)
            .field("step", &self.step)
            .field("pending_out", &self.outbox.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// The dialling side, pinned to the responder's static public key,
    /// with [`SessionConfig::default`]. Message 1 is ready at once in
    /// [`Handshake::poll_transmit`].
    pub fn initiator(
        local: &DeviceKey,
        remote_static: [u8; 32],
        seed: [u8; 32],
    ) -> Result<Self, CloseReason> {
        Self::initiator_with_config(SessionConfig::default(), local, remote_static, seed)
    }

    /// The listening side, with [`SessionConfig::default`].
    pub fn responder(local: &DeviceKey, seed: [u8; 32]) -> Result<Self, CloseReason> {
        Self::responder_with_config(SessionConfig::default(), local, seed)
    }

    /// [`Handshake::initiator`] with explicit limits. Fails with `TooLarge`
    /// for a `max_record` above [`MAX_RECORD`], and with `Handshake` if the
    /// pinned key is degenerate (a low-order point).
    pub fn initiator_with_config(
        config: SessionConfig,
        local: &DeviceKey,
        remote_static: [u8; 32],
        seed: [u8; 32],
    ) -> Result<Self, CloseReason> {
        let local_max = config.announced()?;
        let noise =
            build(local, Some(&remote_static), &seed).map_err(|_| CloseReason::Handshake)?;
        let mut hs = Handshake::new(noise, true, local_max);
        hs.write_next(&[])?;
        Ok(hs)
    }

    /// [`Handshake::responder`] with explicit limits.
    pub fn responder_with_config(
        config: SessionConfig,
        local: &DeviceKey,
        seed: [u8; 32],
    ) -> Result<Self, CloseReason> {
        let local_max = config.announced()?;
        let noise = build(local, None, &seed).map_err(|_| CloseReason::Handshake)?;
        Ok(Handshake::new(noise, false, local_max))
    }

    fn new(noise: HandshakeState, initiator: bool, local_max: u16) -> Self {
        Handshake {
            noise: Some(noise),
            initiator,
            step: 0,
            local_max,
            outbox: Vec::new(),
            rx: Vec::new(),
            closed: None,
        }
    }

    /// True for the dialling side.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// Next handshake bytes to send (framed: u16 LE length prefix), if any.
    ///
    /// The initiator's last message is queued by the same
    /// [`Handshake::on_bytes`] call that returns its session: drain this
    /// before sending the session's first record.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.outbox.is_empty() {
            None
        } else {
            Some(core::mem::take(&mut self.outbox))
        }
    }

    /// Feeds received bytes, in any chunking. Returns `Ok(Some(session))`
    /// when the handshake completed, `Ok(None)` while it needs more bytes.
    ///
    /// On the responder, `authorize(peer, peer_static)` is called once, as
    /// soon as the initiator's static key is known and proven; `false`
    /// fails with `UnknownPeer` and no session is created.
    ///
    /// Bytes of `data` after the last handshake message (a record the peer
    /// sent right behind it) are kept by the session: call
    /// `session.on_bytes(&[])` to open them. Once a session was returned, or
    /// after any error, the handshake is spent and every call errs.
    pub fn on_bytes(
        &mut self,
        data: &[u8],
        authorize: &mut dyn FnMut(DeviceId, &[u8; 32]) -> bool,
    ) -> Result<Option<Session>, CloseReason> {
        if let Some(reason) = self.closed {
            return Err(reason);
        }
        if self.noise.is_none() {
            // Spent: a session was handed out. Its last message (if any)
            // stays in the outbox.
            self.closed = Some(CloseReason::Handshake);
            return Err(CloseReason::Handshake);
        }
        let mut rest = data;
        while !rest.is_empty() {
            let want = LEN_PREFIX + message_len(self.step);
            fill(&mut self.rx, want, &mut rest);
            if let Ok(prefix) = Reader::new(&self.rx).u16() {
                if usize::from(prefix) != message_len(self.step) {
                    return Err(self.fail(CloseReason::Malformed));
                }
            }
            if self.rx.len() < want {
                continue;
            }
            let frame = core::mem::take(&mut self.rx);
            let message = frame.get(LEN_PREFIX..).unwrap_or_default();
            if let Some(session) = self.read_message(message, rest, authorize)? {
                return Ok(Some(session));
            }
        }
        Ok(None)
    }

    /// Handles one complete incoming handshake message; `rest` is what
    /// followed it in the caller's chunk.
    fn read_message(
        &mut self,
        message: &[u8],
        rest: &[u8],
        authorize: &mut dyn FnMut(DeviceId, &[u8; 32]) -> bool,
    ) -> Result<Option<Session>, CloseReason> {
        let step = self.step;
        let Some(noise) = self.noise.as_mut() else {
            return Err(self.fail(CloseReason::Handshake));
        };
        let mut payload = [0u8; 64];
        let read = noise.read_message(message, &mut payload);
        let n = match read {
            Ok(n) => n,
            Err(snow::Error::Decrypt) => {
                let reason = if step == HANDSHAKE_MESSAGES - 1 {
                    CloseReason::AuthFailed
                } else {
                    CloseReason::WrongKey
                };
                return Err(self.fail(reason));
            }
            Err(_) => return Err(self.fail(CloseReason::Handshake)),
        };
        self.step = step.saturating_add(1);
        let hello = payload.get(..n).unwrap_or_default();
        match step {
            // Responder read message 1: answer with message 2.
            0 => {
                if !hello.is_empty() {
                    return Err(self.fail(CloseReason::Malformed));
                }
                self.write_next(&encode_hello(self.local_max))?;
                Ok(None)
            }
            // Initiator read message 2: answer with message 3, done.
            1 => {
                let peer_max = self.parse_hello(hello)?;
                self.write_next(&encode_hello(self.local_max))?;
                self.finish(peer_max, rest, &mut |_, _| true).map(Some)
            }
            // Responder read message 3: the initiator is known and proven.
            _ => {
                let peer_max = self.parse_hello(hello)?;
                self.finish(peer_max, rest, authorize).map(Some)
            }
        }
    }

    /// The peer's `max_record` from a handshake payload.
    fn parse_hello(&mut self, hello: &[u8]) -> Result<u16, CloseReason> {
        let mut r = Reader::new(hello);
        match (r.u16(), r.finish()) {
            (Ok(max), Ok(())) if usize::from(max) <= MAX_RECORD => Ok(max),
            _ => Err(self.fail(CloseReason::Malformed)),
        }
    }

    /// Writes the next handshake message with `payload` into the outbox.
    fn write_next(&mut self, payload: &[u8]) -> Result<(), CloseReason> {
        let len = message_len(self.step);
        let Some(noise) = self.noise.as_mut() else {
            return Err(self.fail(CloseReason::Handshake));
        };
        let mut message = [0u8; 128];
        match noise.write_message(payload, &mut message) {
            Ok(n) if n == len => {}
            _ => return Err(self.fail(CloseReason::Handshake)),
        }
        let Some(body) = message.get(..len) else {
            return Err(self.fail(CloseReason::Handshake));
        };
        if Writer::append(&mut self.outbox, usize::MAX, |w| {
            w.bytes_u16(body);
        })
        .is_err()
        {
            return Err(self.fail(CloseReason::Handshake));
        }
        self.step = self.step.saturating_add(1);
        Ok(())
    }

    /// Turns the completed handshake into a session, after `authorize`.
    fn finish(
        &mut self,
        peer_max: u16,
        rest: &[u8],
        authorize: &mut dyn FnMut(DeviceId, &[u8; 32]) -> bool,
    ) -> Result<Session, CloseReason> {
        let Some(noise) = self.noise.take() else {
            return Err(self.fail(CloseReason::Handshake));
        };
        let peer_static = noise
            .get_remote_static()
            .and_then(|k| <[u8; 32]>::try_from(k).ok());
        let Some(peer_static) = peer_static.filter(|_| noise.is_handshake_finished()) else {
            return Err(self.fail(CloseReason::Handshake));
        };
        let peer = DeviceId::of(&peer_static);
        if !authorize(peer, &peer_static) {
            return Err(self.fail(CloseReason::UnknownPeer));
        }
        let mut handshake_hash = [0u8; 32];
        for (dst, src) in handshake_hash.iter_mut().zip(noise.get_handshake_hash()) {
            *dst = *src;
        }
        let Ok(transport) = noise.into_stateless_transport_mode() else {
            return Err(self.fail(CloseReason::Handshake));
        };
        self.rx = Vec::new();
        Ok(Session {
            transport,
            initiator: self.initiator,
            peer,
            peer_static,
            handshake_hash,
            send_limit: usize::from(self.local_max.min(peer_max)),
            recv_limit: usize::from(self.local_max),
            tx_seq: 0,
            rx_seq: 0,
            rx: Vec::new(),
            rx_want: RECORD_HEADER_LEN,
            carry: rest.to_vec(),
            closed: None,
            stats: SessionStats::default(),
        })
    }

    /// Closes the handshake for good.
    fn fail(&mut self, reason: CloseReason) -> CloseReason {
        self.closed = Some(reason);
        self.noise = None;
        self.outbox = Vec::new();
        self.rx = Vec::new();
        reason
    }
}

/// Counters of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionStats {
    /// Records sealed.
    pub records_sealed: u64,
    /// Records opened (authentic and in sequence).
    pub records_opened: u64,
    /// Plaintext bytes sealed.
    pub bytes_sealed: u64,
    /// Plaintext bytes opened.
    pub bytes_opened: u64,
    /// `seal` calls refused because the plaintext exceeded the limit.
    pub seal_refused: u64,
    /// Why the session closed, once it did.
    pub closed: Option<CloseReason>,
}

/// An established session: seals records for the peer and opens the
/// peer's records.
pub struct Session {
    transport: StatelessTransportState,
    initiator: bool,
    peer: DeviceId,
    peer_static: [u8; 32],
    handshake_hash: [u8; 32],
    /// Largest plaintext `seal` accepts: min of both sides' `max_record`.
    send_limit: usize,
    /// Largest plaintext a received record may carry.
    recv_limit: usize,
    /// Sequence number of the next record sealed.
    tx_seq: u64,
    /// Sequence number the next record received must carry.
    rx_seq: u64,
    /// The record being received (header included).
    rx: Vec<u8>,
    /// Length `rx` must reach: the header, then header + ciphertext.
    rx_want: usize,
    /// Bytes that followed the handshake in its last chunk.
    carry: Vec<u8>,
    closed: Option<CloseReason>,
    stats: SessionStats,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.peer)
            .field("initiator", &self.initiator)
            .field("tx_seq", &self.tx_seq)
            .field("rx_seq", &self.rx_seq)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The authenticated peer.
    pub fn peer(&self) -> DeviceId {
        self.peer
    }

    /// The peer's authenticated static public key.
    pub fn peer_static(&self) -> [u8; 32] {
        self.peer_static
    }

    /// The Noise handshake hash: equal on both ends of one session and
    /// unique to it (usable for channel binding).
    pub fn handshake_hash(&self) -> [u8; 32] {
        self.handshake_hash
    }

    /// True on the side that dialled.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// Largest plaintext [`Session::seal`] accepts.
    pub fn max_send(&self) -> usize {
        self.send_limit
    }

    /// Largest plaintext a received record may carry.
    pub fn max_recv(&self) -> usize {
        self.recv_limit
    }

    /// Counters and close reason.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Encrypts one record: `len: u16 LE | seq: u64 LE | ciphertext`.
    ///
    /// A plaintext above [`Session::max_send`] is refused with `TooLarge`
    /// and counted; the session stays open (nothing was consumed).
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CloseReason> {
        if let Some(reason) = self.closed {
            return Err(reason);
        }
        if plaintext.len() > self.send_limit {
            self.stats.seal_refused = self.stats.seal_refused.saturating_add(1);
            return Err(CloseReason::TooLarge);
        }
        let seq = self.tx_seq;
        // u64::MAX is reserved by Noise; no session gets anywhere near it.
        let Some(next) = seq.checked_add(1).filter(|n| *n < u64::MAX) else {
            return Err(self.close(CloseReason::TooLarge));
        };
        let ct_len = plaintext.len().saturating_add(TAG_LEN);
        let Ok(len) = u16::try_from(ct_len) else {
            return Err(self.close(CloseReason::TooLarge));
        };
        let record_len = RECORD_HEADER_LEN.saturating_add(ct_len);
        let mut record = Vec::with_capacity(record_len);
        // Two fixed-size fields, unbounded writer: cannot fail.
        let _ = Writer::new(&mut record).u16(len).u64(seq).finish();
        record.resize(record_len, 0);
        let written = match record.get_mut(RECORD_HEADER_LEN..) {
            Some(body) => self.transport.write_message(seq, plaintext, body),
            None => Err(snow::Error::Input),
        };
        if written != Ok(ct_len) {
            return Err(self.close(CloseReason::Handshake));
        }
        self.tx_seq = next;
        self.stats.records_sealed = self.stats.records_sealed.saturating_add(1);
        self.stats.bytes_sealed = self
            .stats
            .bytes_sealed
            .saturating_add(plaintext.len() as u64);
        Ok(record)
    }

    /// Feeds received bytes (any chunking) and returns the plaintext of
    /// every record they completed, in order.
    ///
    /// Any failure closes the session with its reason (`Malformed`,
    /// `TooLarge`, `AuthFailed`, `Replay`); records opened earlier in the
    /// same call are discarded with it, and every later call errs.
    pub fn on_bytes(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, CloseReason> {
        if let Some(reason) = self.closed {
            return Err(reason);
        }
        let mut opened = Vec::new();
        let carry = core::mem::take(&mut self.carry);
        for mut rest in [carry.as_slice(), data] {
            while !rest.is_empty() {
                if let Err(reason) = self.step(&mut rest, &mut opened) {
                    return Err(self.close(reason));
                }
            }
        }
        Ok(opened)
    }

    /// Consumes bytes from `rest` towards the current record, opening it
    /// when complete.
    fn step(&mut self, rest: &mut &[u8], opened: &mut Vec<Vec<u8>>) -> Result<(), CloseReason> {
        fill(&mut self.rx, self.rx_want, rest);
        if self.rx.len() < self.rx_want {
            return Ok(());
        }
        if self.rx_want == RECORD_HEADER_LEN {
            // The header is complete: judge the announced length first.
            let Ok(prefix) = Reader::new(&self.rx).u16() else {
                return Err(CloseReason::Malformed);
            };
            let ct_len = usize::from(prefix);
            if ct_len < TAG_LEN {
                return Err(CloseReason::Malformed);
            }
            if ct_len > self.recv_limit.saturating_add(TAG_LEN) {
                return Err(CloseReason::TooLarge);
            }
            self.rx_want = RECORD_HEADER_LEN.saturating_add(ct_len);
            return Ok(());
        }
        let plaintext = self.open_current()?;
        self.stats.records_opened = self.stats.records_opened.saturating_add(1);
        self.stats.bytes_opened = self
            .stats
            .bytes_opened
            .saturating_add(plaintext.len() as u64);
        opened.push(plaintext);
        self.rx.clear();
        self.rx_want = RECORD_HEADER_LEN;
        Ok(())
    }

    /// Decrypts the complete record in `rx` and checks its sequence.
    fn open_current(&mut self) -> Result<Vec<u8>, CloseReason> {
        let mut r = Reader::new(&self.rx);
        let (Ok(_len), Ok(seq)) = (r.u16(), r.u64()) else {
            return Err(CloseReason::Malformed);
        };
        let ciphertext = r.rest();
        let mut plaintext = vec![0u8; ciphertext.len().saturating_sub(TAG_LEN)];
        // Any refusal (bad tag, the reserved nonce) means not authentic.
        let n = self
            .transport
            .read_message(seq, ciphertext, &mut plaintext)
            .map_err(|_| CloseReason::AuthFailed)?;
        if seq != self.rx_seq {
            return Err(CloseReason::Replay);
        }
        self.rx_seq = self.rx_seq.saturating_add(1);
        plaintext.truncate(n);
        Ok(plaintext)
    }

    /// Closes the session for good.
    fn close(&mut self, reason: CloseReason) -> CloseReason {
        self.closed = Some(reason);
        self.stats.closed = Some(reason);
        self.rx = Vec::new();
        self.carry = Vec::new();
        reason
    }
}

/// Moves bytes from the front of `rest` into `buf` until it holds `want`.
fn fill(buf: &mut Vec<u8>, want: usize, rest: &mut &[u8]) {
    let take = want.saturating_sub(buf.len()).min(rest.len());
    let (now, later) = rest.split_at(take);
    buf.extend_from_slice(now);
    *rest = later;
}

/// A Noise handshake state with this module's pattern, prologue and
/// seeded resolver.
fn build(
    local: &DeviceKey,
    remote_static: Option<&[u8; 32]>,
    seed: &[u8; 32],
) -> Result<HandshakeState, snow::Error> {
    let params: NoiseParams = NOISE_PATTERN.parse()?;
    let resolver = SeededResolver {
        rng_key: Cell::new(Some(rng_key(local, seed))),
    };
    let builder = Builder::with_resolver(params, Box::new(resolver))
        .prologue(PROLOGUE)?
        .local_private_key(local.secret())?;
    match remote_static {
        Some(rs) => builder.remote_public_key(rs)?.build_initiator(),
        None => builder.build_responder(),
    }
}

/// The key of the ephemeral-key stream: hedged with the static secret.
fn rng_key(local: &DeviceKey, seed: &[u8; 32]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    h.update(RNG_DOMAIN);
    h.update(local.secret());
    h.update(seed);
    h.finalize().into()
}

/// Delegates DH, hash and cipher to snow's default resolver, supplies the
/// seeded generator, and rejects degenerate DH results.
struct SeededResolver {
    /// Taken by the first `resolve_rng`: one stream per handshake, never
    /// two copies of it.
    rng_key: Cell<Option<[u8; 32]>>,
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let key = self.rng_key.take()?;
        let stream = ChaCha20::new(&key.into(), &[0u8; 12].into());
        Some(Box::new(SeededRng { stream }))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        let inner = DefaultResolver.resolve_dh(choice)?;
        Some(Box::new(CheckedDh { inner }))
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// The ChaCha20 keystream as a generator.
struct SeededRng {
    stream: ChaCha20,
}

impl Random for SeededRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        dest.fill(0);
        self.stream
            .try_apply_keystream(dest)
            .map_err(|_| snow::Error::Rng)
    }
}

/// X25519 that refuses an all-zero shared secret (a low-order public key),
/// so no peer can claim a static key that anyone could impersonate.
struct CheckedDh {
    inner: Box<dyn Dh>,
}

impl Dh for CheckedDh {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn pub_len(&self) -> usize {
        self.inner.pub_len()
    }

    fn priv_len(&self) -> usize {
        self.inner.priv_len()
    }

    fn set(&mut self, privkey: &[u8]) {
        self.inner.set(privkey);
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        self.inner.generate(rng)
    }

    fn pubkey(&self) -> &[u8] {
        self.inner.pubkey()
    }

    fn privkey(&self) -> &[u8] {
        self.inner.privkey()
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        self.inner.dh(pubkey, out)?;
        let len = self.inner.dh_len();
        let any = out.iter().take(len).fold(0u8, |acc, b| acc | b);
        if any == 0 {
            Err(snow::Error::Dh)
        } else {
            Ok(())
        }
    }

    fn dh_len(&self) -> usize {
        self.inner.dh_len()
    }
}

//! The nexus-obs device bus, sans-I/O and `no_std`.
//!
//! * [`identity`]: a static X25519 key per device; the device id is derived
//!   from the public key.
//! * [`session`]: Noise XK handshakes and encrypted, sequence-checked
//!   records.
//! * [`mux`]: mux v2 — named streams with credit flow control, RST, CLOSE,
//!   keepalive — over one session.
//! * [`policy`]: which devices may connect and which streams they may open,
//!   decided on the authenticated device id.
//! * [`link`]: handshake + session + mux for one connection.
//!
//! Transports (in-process pipes, host TCP, the OS's smoltcp TCP) only move
//! bytes between two [`link::Link`]s.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod identity;
pub mod link;
pub mod mux;
pub mod policy;
pub mod pump;
pub mod session;

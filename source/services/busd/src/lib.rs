//! busd: the device bus as a service.
//!
//! * [`config`]: the static peer list with each peer's stream ACL, caps,
//!   backoff; mirrored by `recipes/observability/busd.toml`.
//! * [`service`]: [`Busd`], a `nexus_svc::Service` generic over the
//!   platform's `Network`: sessions to peers (Noise XK + mux v2 over TCP,
//!   the lower device id dials, redials with exponential backoff), streams
//!   owned by the local service that opened or accepted them, events to
//!   their owners.
//! * [`seeds`]: fresh handshake seeds from one boot seed.
//!
//! The contract with services is `nexus_bus::proto`; the client is
//! `nexus_bus::BusClient`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod config;
pub mod seeds;
pub mod service;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::Config;
pub use service::Busd;

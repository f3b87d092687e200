//! The busd contract: how a service uses the device bus.
//!
//! * [`proto`]: the frames, shared by busd and its clients, documented
//!   byte by byte in `docs/observability/busd.md`.
//! * [`client`]: [`BusClient`], a sequential client that keeps the events
//!   busd pushes (peer up/down, incoming streams, readable, …) while it
//!   waits for replies.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod agent;
pub mod client;
pub mod proto;

pub use agent::{AgentEvent, BusAgent, Outbox};
pub use client::{BusClient, BusError};
pub use proto::{BusEvent, DeviceId, Handle};

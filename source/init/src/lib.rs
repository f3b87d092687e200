//! init: composes a node from a boot profile.
//!
//! The runtime (the QEMU kernel, or a host test) brings up a
//! [`nexus_svc::node::Node`] (router, clock, console) and hands init the
//! node, the disk and the chosen [`Profile`]. init then:
//!
//! 1. registers every service's endpoint, and the selftest phases' app
//!    endpoints, by name;
//! 2. opens the disk's region table ([`nexus_store::RegionTable`]): the
//!    profile's regions are found by name, created on a blank disk, or
//!    appended after the last; a first-wave disk is refused with a console
//!    line and the node runs without persistence;
//! 3. starts each service in profile order on its region, with its links
//!    resolved by name, as a [`nexus_svc::Shell`] task of the node;
//! 4. runs the selftest phases ([`selftest`]).
//!
//! No service logic lives here or in the runtime: each service is its
//! crate's `Service` implementation in the generic shell.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod bootargs;
pub mod identity;
pub mod mux_trace_phase;
pub mod profile;
pub mod selftest;
mod start;
pub mod trace_phase;

pub use profile::{Phase, Profile, ProfileError};
pub use start::{start, Env, InitError, Started, StoreReader};

//! obsscraped: the remote observability collector.
//!
//! * [`rotate`]: segments per data kind, rotated on size and time, dropped
//!   by retention, decided by a pure rotator.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod rotate;

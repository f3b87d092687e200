//! The one codec every nexus-obs frame is written and read with.
//!
//! * [`Reader`]: a cursor over untrusted bytes; every read checks the
//!   length first and returns a [`WireError`], never panics.
//! * [`Writer`]: appends little-endian integers and length-prefixed
//!   strings to a buffer, optionally under a byte bound; a value that does
//!   not fit its prefix or the bound is an error, never a silent cut.
//! * [`byte_enum!`]: the one way to declare a one-byte enum (ops, statuses,
//!   levels, kinds, reasons): `from_u8`, `as_u8`, `as_str`, `parse`, `ALL`.
//! * [`Header`]: the 12-byte header every IPC frame starts with (magic,
//!   version, op with a reply bit, nonce).
//! * [`Status`] and [`Rejects`]: the reply statuses shared by every
//!   protocol, and one typed counter per non-ok status.
//! * [`answer`]: count the outcome, reply only when the request wants one.
//!
//! All integers on the wire are little-endian. Layouts are documented in
//! `docs/observability/ipc.md`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod answer;
mod enums;
mod error;
mod header;
mod reader;
mod status;
mod writer;

pub use answer::{answer, Answer, ReplyBody};
pub use error::WireError;
pub use header::{Header, HEADER_LEN, REPLY_BIT};
pub use reader::Reader;
pub use status::{Rejects, Status};
pub use writer::Writer;

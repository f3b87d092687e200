//! Bounded building blocks shared by every nexus-obs service.
//!
//! * [`Clock`]: time is injected, so host tests are deterministic and the OS
//!   reads its real timer.
//! * [`TokenBucket`]: refills from the injected clock, never from wall time.
//! * [`RateLimiter`]: per-key event and byte buckets in a bounded table.
//! * [`LruMap`]: a map whose capacity is part of its construction; inserting
//!   past the capacity evicts the least recently used entry and hands it back
//!   to the caller, so the overflow is always visible and countable.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod bucket;
mod clock;
mod limiter;
mod lru;

pub use bucket::{BucketConfig, TokenBucket};
pub use clock::{Clock, ManualClock};
pub use limiter::{LimiterConfig, RateLimiter};
pub use lru::LruMap;

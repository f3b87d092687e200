//! The logd sink: best-effort, never blocks, counts everything it drops.
//!
//! It sends one-way APPEND frames, so it never waits for (or has to drain)
//! replies; logd's per-sender counters (STATS) say what logd rejected.

use nexus_ipc::correlate::NonceGen;
use nexus_ipc::{Endpoint, SendError, ServiceId};

use crate::proto::{self, AppendRequest};
use crate::record::Event;
use crate::{Level, Log};

/// What a [`LogdSink`] did with the events it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Frames handed to the transport.
    pub sent: u64,
    /// Dropped because logd's queue was full.
    pub dropped_queue_full: u64,
    /// Dropped for another transport error (no logd, frame too large).
    pub dropped_transport: u64,
    /// Dropped before sending: invalid fields or a string too long to encode.
    pub dropped_invalid: u64,
    /// Below the sink's minimum level.
    pub filtered: u64,
}

/// A [`Log`] that appends to logd over an [`Endpoint`].
#[derive(Debug)]
pub struct LogdSink<E> {
    ep: E,
    logd: ServiceId,
    nonces: NonceGen,
    min_level: Level,
    stats: SinkStats,
}

impl<E: Endpoint> LogdSink<E> {
    /// A sink sending from `ep` to the logd endpoint `logd`.
    pub fn new(ep: E, logd: ServiceId, min_level: Level) -> Self {
        Self {
            ep,
            logd,
            nonces: NonceGen::default(),
            min_level,
            stats: SinkStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> SinkStats {
        self.stats
    }

    /// The endpoint, e.g. to read its id.
    pub fn endpoint(&self) -> &E {
        &self.ep
    }
}

impl<E: Endpoint> Log for LogdSink<E> {
    fn enabled(&self, level: Level) -> bool {
        level >= self.min_level
    }

    fn log(&mut self, event: Event) {
        if event.level < self.min_level {
            self.stats.filtered += 1;
            return;
        }
        let Ok(fields) = &event.fields else {
            self.stats.dropped_invalid += 1;
            return;
        };
        let body = AppendRequest {
            level: event.level.as_u8(),
            target: &event.target,
            message: &event.message,
            fields: fields.as_str(),
        };
        let Ok(frame) = proto::encode_append(self.nonces.next_nonce(), true, &body) else {
            self.stats.dropped_invalid += 1;
            return;
        };
        match self.ep.send(self.logd, &frame) {
            Ok(()) => self.stats.sent += 1,
            Err(SendError::QueueFull) => self.stats.dropped_queue_full += 1,
            Err(_) => self.stats.dropped_transport += 1,
        }
    }
}

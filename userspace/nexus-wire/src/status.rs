use crate::{Reader, WireError, Writer};

crate::byte_enum! {
    /// The outcome of a request: the first byte of every reply body, in
    /// every nexus-obs protocol.
    pub enum Status {
        /// Done.
        Ok = 0 => "ok",
        /// The frame does not parse.
        Malformed = 1 => "malformed",
        /// Unknown version or op.
        Unsupported = 2 => "unsupported",
        /// Parses, but a value breaks a rule (grammar, identity claim, zero count, …).
        InvalidArgs = 3 => "invalid_args",
        /// A size limit is exceeded.
        OverLimit = 4 => "over_limit",
        /// The sender's token bucket is empty.
        RateLimited = 5 => "rate_limited",
        /// Policy does not let this sender do that.
        Denied = 6 => "denied",
        /// What the request needs is not there now (e.g. a peer that is not
        /// connected); retrying later may succeed.
        Unavailable = 7 => "unavailable",
    }
}

/// One counter per non-ok [`Status`]: how often a service refused.
///
/// On the wire (STATS replies of every service) it is six u64, in status
/// order: malformed, unsupported, invalid_args, over_limit, rate_limited,
/// denied (48 bytes). `unavailable` came later and is not part of that
/// layout: services that can produce it (busd) send it after the six.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejects {
    /// `malformed` (and unanswerable header-less frames).
    pub malformed: u64,
    /// `unsupported`.
    pub unsupported: u64,
    /// `invalid_args`.
    pub invalid_args: u64,
    /// `over_limit`.
    pub over_limit: u64,
    /// `rate_limited`.
    pub rate_limited: u64,
    /// `denied`.
    pub denied: u64,
    /// `unavailable` (not in the six-counter wire form, see above).
    pub unavailable: u64,
}

impl Rejects {
    /// Bytes on the wire.
    pub const WIRE_LEN: usize = 48;

    fn slot(&mut self, status: Status) -> Option<&mut u64> {
        Some(match status {
            Status::Ok => return None,
            Status::Malformed => &mut self.malformed,
            Status::Unsupported => &mut self.unsupported,
            Status::InvalidArgs => &mut self.invalid_args,
            Status::OverLimit => &mut self.over_limit,
            Status::RateLimited => &mut self.rate_limited,
            Status::Denied => &mut self.denied,
            Status::Unavailable => &mut self.unavailable,
        })
    }

    /// Adds one to the counter of `status` (`ok` is not counted).
    pub fn count(&mut self, status: Status) {
        if let Some(c) = self.slot(status) {
            *c = c.saturating_add(1);
        }
    }

    /// The counter of `status` (`ok` is always 0).
    pub fn get(&self, status: Status) -> u64 {
        let mut copy = *self;
        copy.slot(status).map_or(0, |c| *c)
    }

    /// All refusals.
    pub fn total(&self) -> u64 {
        self.as_array()
            .iter()
            .fold(self.unavailable, |a, b| a.saturating_add(*b))
    }

    /// The six counters of the wire form, in wire order.
    pub const fn as_array(&self) -> [u64; 6] {
        [
            self.malformed,
            self.unsupported,
            self.invalid_args,
            self.over_limit,
            self.rate_limited,
            self.denied,
        ]
    }

    /// The six counters of the wire form (`unavailable` is 0).
    pub const fn from_array(a: [u64; 6]) -> Self {
        let [malformed, unsupported, invalid_args, over_limit, rate_limited, denied] = a;
        Self {
            malformed,
            unsupported,
            invalid_args,
            over_limit,
            rate_limited,
            denied,
            unavailable: 0,
        }
    }

    /// Appends the six counters.
    pub fn emit(&self, w: &mut Writer<'_>) {
        for c in self.as_array() {
            w.u64(c);
        }
    }

    /// Reads the six counters.
    pub fn parse(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut a = [0u64; 6];
        for c in &mut a {
            *c = r.u64()?;
        }
        Ok(Self::from_array(a))
    }
}

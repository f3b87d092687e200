//! Console markers a service prints the first time it produces a reject
//! status — the evidence is the status itself, observed in the service.

use nexus_wire::Status;

/// The reject statuses that get a marker.
const MARKED: [Status; 3] = [Status::InvalidArgs, Status::OverLimit, Status::RateLimited];

/// Prints `<service>: reject <status>` once per marked status.
pub struct FirstRejects {
    service: &'static str,
    seen: [bool; MARKED.len()],
}

impl FirstRejects {
    /// For the service named `service`.
    pub const fn new(service: &'static str) -> Self {
        Self {
            service,
            seen: [false; MARKED.len()],
        }
    }

    /// Notes an outcome; prints the marker if it is a first.
    pub fn note(&mut self, s: Status) {
        let Some(i) = MARKED.iter().position(|m| *m == s) else {
            return;
        };
        if let Some(seen) = self.seen.get_mut(i) {
            if !*seen {
                *seen = true;
                crate::kprintln!("{}: reject {}", self.service, s.as_str());
            }
        }
    }
}

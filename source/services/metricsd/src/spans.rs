//! The live span table: spans started and not yet ended, bounded by
//! `spans.max_live` across all senders. A start beyond the cap is refused
//! with `over_limit` (the table never evicts a live span silently); an end
//! closes the span and yields the record exported to logd.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use nexus_ipc::ServiceId;
use nexus_log::{Fields, FieldsBuilder, Value};
use nexus_metrics::proto::Status;
use nexus_trace::{SpanId, SpanStatus, TraceId};

use crate::config::ATTR_FIELD_PREFIX;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Live {
    trace: TraceId,
    parent: Option<SpanId>,
    name: String,
    start_ns: u64,
    /// metricsd's clock when the start arrived (for expiry).
    seen_ns: u64,
}

/// A span that ended: everything the logd record carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedSpan {
    /// The sender that started and ended it.
    pub owner: ServiceId,
    /// Span id.
    pub span: SpanId,
    /// Trace id.
    pub trace: TraceId,
    /// Parent span, if any.
    pub parent: Option<SpanId>,
    /// Name.
    pub name: String,
    /// Start, client clock.
    pub start_ns: u64,
    /// End, client clock (`>= start_ns`).
    pub end_ns: u64,
    /// Status.
    pub status: SpanStatus,
    /// Attributes, already validated and redacted.
    pub attrs: Vec<(String, String)>,
}

impl EndedSpan {
    /// Duration in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        self.end_ns - self.start_ns.min(self.end_ns)
    }

    /// The fields of the span-end record: ids in W3C hex (`trace_id`,
    /// `span_id`, `parent_id`), timing (typed integers), status, owner (a
    /// typed integer), and `attr.<key>` (strings). Same as
    /// [`fields_within`](Self::fields_within) without a budget.
    pub fn fields(&self) -> Fields {
        let mut f = self.fixed_fields();
        for (k, v) in &self.attrs {
            f.insert_display(&format!("{ATTR_FIELD_PREFIX}{k}"), v);
        }
        f.build().unwrap_or_default()
    }

    fn fixed_fields(&self) -> FieldsBuilder {
        let mut f = FieldsBuilder::new();
        f.insert_display("trace_id", &self.trace);
        f.insert_display("span_id", &self.span);
        if let Some(p) = self.parent {
            f.insert_display("parent_id", &p);
        }
        f.insert_value("start_ns", Value::U64(self.start_ns));
        f.insert_value("end_ns", Value::U64(self.end_ns));
        f.insert_value("duration_ns", Value::U64(self.duration_ns()));
        f.insert_display("status", &self.status.as_str());
        f.insert_value("owner", Value::U64(u64::from(self.owner.get())));
        f
    }

    /// The fields of the span-end record trimmed to what `fits` accepts
    /// (the record of `target` and this span's name): attributes are kept
    /// in key order until the first one that would make the record not
    /// fit; it and every later attribute are dropped. Returns the fields
    /// and the number of attributes dropped.
    pub fn fields_within(&self, fits: impl Fn(&Fields) -> bool) -> (Fields, usize) {
        let mut f = self.fixed_fields();
        let mut built = f.build().unwrap_or_default();
        for (i, (k, v)) in self.attrs.iter().enumerate() {
            f.insert_display(&format!("{ATTR_FIELD_PREFIX}{k}"), v);
            let next = f.build().unwrap_or_default();
            if !fits(&next) {
                return (built, self.attrs.len() - i);
            }
            built = next;
        }
        (built, 0)
    }
}

/// The table.
#[derive(Debug, Clone)]
pub struct SpanTable {
    max_live: usize,
    max_per_owner: usize,
    live: BTreeMap<(ServiceId, SpanId), Live>,
    per_owner: BTreeMap<ServiceId, usize>,
    expired: u64,
}

impl SpanTable {
    /// An empty table holding at most `max_live` spans, at most
    /// `max_per_owner` of one sender.
    pub fn new(max_live: usize, max_per_owner: usize) -> Self {
        Self {
            max_live,
            max_per_owner,
            live: BTreeMap::new(),
            per_owner: BTreeMap::new(),
            expired: 0,
        }
    }

    /// Spans dropped by [`expire`](Self::expire) since creation.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// Drops spans started (as seen by metricsd) before `now_ns - max_age_ns`.
    pub fn expire(&mut self, now_ns: u64, max_age_ns: u64) {
        let cutoff = now_ns.saturating_sub(max_age_ns);
        let old: Vec<(ServiceId, SpanId)> = self
            .live
            .iter()
            .filter(|(_, l)| l.seen_ns < cutoff)
            .map(|(k, _)| *k)
            .collect();
        for k in old {
            self.remove(k);
            self.expired += 1;
        }
    }

    fn remove(&mut self, key: (ServiceId, SpanId)) -> Option<Live> {
        let live = self.live.remove(&key)?;
        if let Some(n) = self.per_owner.get_mut(&key.0) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_owner.remove(&key.0);
            }
        }
        Some(live)
    }

    /// Spans live now.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True if none is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Starts a span (`seen_ns`: metricsd's clock). Zero ids and a
    /// duplicate live span are `invalid_args`; a full table, or a sender at
    /// its own cap, is `over_limit`. (BATCH decoding reads span entries
    /// raw — `nexus_trace::wire::RawSpanStart` — so a zero id is judged
    /// here and refuses this entry only, not the whole frame.)
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        owner: ServiceId,
        span: u64,
        trace: u128,
        parent: u64,
        start_ns: u64,
        name: &str,
        seen_ns: u64,
    ) -> Result<(), Status> {
        let (Some(span), Some(trace)) = (SpanId::new(span), TraceId::new(trace)) else {
            return Err(Status::InvalidArgs);
        };
        if self.live.contains_key(&(owner, span)) {
            return Err(Status::InvalidArgs);
        }
        let mine = self.per_owner.get(&owner).copied().unwrap_or(0);
        if self.live.len() >= self.max_live || mine >= self.max_per_owner {
            return Err(Status::OverLimit);
        }
        *self.per_owner.entry(owner).or_insert(0) += 1;
        self.live.insert(
            (owner, span),
            Live {
                trace,
                parent: SpanId::new(parent),
                name: String::from(name),
                start_ns,
                seen_ns,
            },
        );
        Ok(())
    }

    /// Ends a span of `owner`. Unknown span, end before start, or a bad
    /// status byte: `invalid_args` (the span stays live in the last two
    /// cases, so a corrected end can still close it).
    pub fn end(
        &mut self,
        owner: ServiceId,
        span: u64,
        end_ns: u64,
        status: u8,
        attrs: Vec<(String, String)>,
    ) -> Result<EndedSpan, Status> {
        let id = SpanId::new(span).ok_or(Status::InvalidArgs)?;
        let status = SpanStatus::from_u8(status).ok_or(Status::InvalidArgs)?;
        let live = self.live.get(&(owner, id)).ok_or(Status::InvalidArgs)?;
        if end_ns < live.start_ns {
            return Err(Status::InvalidArgs);
        }
        let live = self.remove((owner, id)).ok_or(Status::InvalidArgs)?;
        Ok(EndedSpan {
            owner,
            span: id,
            trace: live.trace,
            parent: live.parent,
            name: live.name,
            start_ns: live.start_ns,
            end_ns,
            status,
            attrs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_end_pairing_and_record_fields() {
        let mut t = SpanTable::new(4, 4);
        let me = ServiceId::new(7);
        t.start(me, 0x0000_0007_0000_0001, 0xabc, 0, 1_000, "load", 0)
            .unwrap();
        t.start(
            me,
            0x0000_0007_0000_0002,
            0xabc,
            0x0000_0007_0000_0001,
            1_500,
            "parse",
            0,
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.end(
                ServiceId::new(8),
                0x0000_0007_0000_0002,
                2_000,
                1,
                Vec::new()
            ),
            Err(Status::InvalidArgs),
            "another owner"
        );
        assert_eq!(
            t.end(me, 0x0000_0007_0000_0002, 1_499, 1, Vec::new()),
            Err(Status::InvalidArgs),
            "ends before it starts"
        );
        let child = t
            .end(
                me,
                0x0000_0007_0000_0002,
                2_000,
                1,
                alloc::vec![(String::from("bytes"), String::from("42"))],
            )
            .unwrap();
        assert_eq!(child.duration_ns(), 500);
        assert_eq!(
            child.fields().as_str(),
            "attr.bytes=42\nduration_ns:i=500\nend_ns:i=2000\nowner:i=7\nparent_id=0000000700000001\nspan_id=0000000700000002\n\
             start_ns:i=1500\nstatus=ok\ntrace_id=00000000000000000000000000000abc\n"
        );
        assert_eq!(
            t.end(me, 0x0000_0007_0000_0002, 2_000, 1, Vec::new()),
            Err(Status::InvalidArgs),
            "ended twice"
        );
        let root = t
            .end(me, 0x0000_0007_0000_0001, 3_000, 2, Vec::new())
            .unwrap();
        assert_eq!(
            (root.parent, root.status, root.duration_ns()),
            (None, SpanStatus::Error, 2_000)
        );
        assert!(t.is_empty());
    }

    #[test]
    fn zero_ids_and_duplicates_are_refused() {
        let mut t = SpanTable::new(4, 4);
        let me = ServiceId::new(1);
        assert_eq!(t.start(me, 0, 1, 0, 0, "x", 0), Err(Status::InvalidArgs));
        assert_eq!(t.start(me, 1, 0, 0, 0, "x", 0), Err(Status::InvalidArgs));
        t.start(me, 1, 1, 0, 0, "x", 0).unwrap();
        assert_eq!(t.start(me, 1, 1, 0, 0, "x", 0), Err(Status::InvalidArgs));
        assert_eq!(
            t.end(me, 1, 0, 9, Vec::new()),
            Err(Status::InvalidArgs),
            "bad status"
        );
    }
}

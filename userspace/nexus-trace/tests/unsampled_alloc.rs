//! An unsampled span costs no allocation: a counting global allocator
//! watches span start and end (root, child, attribute, event, status);
//! nor does a sampled bare span whose sink only takes start/end entries.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use nexus_bounds::ManualClock;
use nexus_trace::recent::RecentSpans;
use nexus_trace::sampler::Sampler;
use nexus_trace::tracer::NullSink;
use nexus_trace::{
    IdGenerator, IdSeed, SpanContext, SpanId, SpanStatus, TraceContext, TraceFlags, TraceId,
    Tracer, TracerConfig,
};

struct Counting;

static BYTES: AtomicU64 = AtomicU64::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, counting only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        BYTES.fetch_add(l.size() as u64, Ordering::SeqCst);
        CALLS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        BYTES.fetch_add(n as u64, Ordering::SeqCst);
        CALLS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn measure(f: impl FnOnce()) -> (u64, u64) {
    let (b, c) = (BYTES.load(Ordering::SeqCst), CALLS.load(Ordering::SeqCst));
    f();
    (
        BYTES.load(Ordering::SeqCst) - b,
        CALLS.load(Ordering::SeqCst) - c,
    )
}

// One test only: no other thread of the harness allocates meanwhile.
#[test]
fn unsampled_span_allocates_zero_bytes() {
    let t = Tracer::with_sampler(
        ManualClock::new(1),
        RecentSpans::default(),
        IdGenerator::new(&IdSeed::new(1, 2, 3)),
        TracerConfig::default(),
        Sampler::never(),
    );
    let remote = TraceContext::new(SpanContext::new(
        TraceId::new(7).unwrap(),
        SpanId::new(8).unwrap(),
        TraceFlags::NONE,
    ));
    drop(t.span("warm-up"));
    let got = measure(|| {
        for _ in 0..1000 {
            let mut s = t.span("unsampled");
            s.attr("k", 12345);
            s.event("e");
            s.set_status(SpanStatus::Ok);
            let c = s.child("child");
            c.end();
            s.end();
            drop(t.span_remote("remote", &remote));
        }
    });
    assert_eq!(got, (0, 0), "bytes, calls");
    assert_eq!(t.stats().spans_unsampled, 3001);
    // The counter works: a sampled span does allocate.
    let t2 = Tracer::new(
        ManualClock::new(1),
        RecentSpans::default(),
        IdGenerator::new(&IdSeed::new(1, 2, 4)),
        TracerConfig::default(),
    );
    let (bytes, _) = measure(|| drop(t2.span("sampled")));
    assert!(bytes > 0);
    // A sampled bare span whose sink does not read finished spans (only
    // start and end entries) allocates nothing either: its name is not
    // copied.
    let t3 = Tracer::new(
        ManualClock::new(1),
        NullSink,
        IdGenerator::new(&IdSeed::new(1, 2, 5)),
        TracerConfig::default(),
    );
    drop(t3.span("warm-up"));
    let got = measure(|| {
        for _ in 0..1000 {
            drop(t3.span("sampled"));
        }
    });
    assert_eq!(got, (0, 0), "bytes, calls");
    assert_eq!(t3.stats().spans_started, 1001);
}

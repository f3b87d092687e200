//! nexus-trace against the OpenTelemetry SDK, in one run:
//! span start+end (SDK tracer with no processor), traceparent inject +
//! extract (SDK TraceContextPropagator), an unsampled span.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use nexus_bounds::ManualClock;
use nexus_trace::sampler::Sampler;
use nexus_trace::tracer::NullSink;
use nexus_trace::{
    Baggage, IdGenerator, IdSeed, Propagator, SpanContext, SpanId, TraceContext, TraceFlags,
    TraceId, Tracer, TracerConfig,
};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;

fn spans(c: &mut Criterion) {
    let mut g = c.benchmark_group("span_start_end");
    let t = Tracer::new(
        ManualClock::new(1),
        NullSink,
        IdGenerator::new(&IdSeed::new(1, 2, 3)),
        TracerConfig::default(),
    );
    g.bench_function("nexus_trace", |b| {
        b.iter(|| drop(black_box(t.span(black_box("handle_request")))))
    });
    let provider = SdkTracerProvider::builder().build();
    let otel = provider.tracer("bench");
    g.bench_function("otel_sdk", |b| {
        b.iter(|| {
            let mut s = otel.start(black_box("handle_request"));
            s.end();
        })
    });
    let un = Tracer::with_sampler(
        ManualClock::new(1),
        NullSink,
        IdGenerator::new(&IdSeed::new(1, 2, 3)),
        TracerConfig::default(),
        Sampler::never(),
    );
    g.bench_function("nexus_trace_unsampled", |b| {
        b.iter(|| drop(black_box(un.span(black_box("handle_request")))))
    });
    g.finish();
}

fn propagation(c: &mut Criterion) {
    let mut g = c.benchmark_group("traceparent_inject_extract");
    let p = Propagator::default();
    let ctx = TraceContext::new(SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
    ));
    let bag = Baggage::default();
    // Both sides reuse one HashMap<String, String> carrier across
    // iterations (each side's own carrier adapter writes into it).
    let mut h: HashMap<String, String> = HashMap::new();
    g.bench_function("nexus_trace", |b| {
        b.iter(|| {
            p.inject(black_box(&ctx), &bag, &mut MapCarrier(&mut h));
            black_box(p.extract(&MapCarrier(&mut h)))
        })
    });
    let otel = TraceContextPropagator::new();
    let sc = opentelemetry::trace::SpanContext::new(
        opentelemetry::trace::TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        opentelemetry::trace::SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        opentelemetry::trace::TraceFlags::SAMPLED,
        true,
        Default::default(),
    );
    let cx = opentelemetry::Context::new().with_remote_span_context(sc);
    let mut h: HashMap<String, String> = HashMap::new();
    g.bench_function("otel_sdk", |b| {
        b.iter(|| {
            otel.inject_context(black_box(&cx), &mut h);
            black_box(otel.extract(&h))
        })
    });
    g.finish();
}

/// The same map type as the SDK's carrier, through our `Carrier`.
struct MapCarrier<'a>(&'a mut HashMap<String, String>);

impl nexus_trace::Carrier for MapCarrier<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        match self.0.get(name) {
            Some(v) => Some(v.as_str()),
            None => self
                .0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str()),
        }
    }
    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a str, &'a str)) -> bool {
        for (k, v) in self.0.iter() {
            f(k, v);
        }
        true
    }
    fn set(&mut self, name: &str, value: &str) {
        // Reuse the value buffer when the header is there already.
        if let Some(v) = self.0.get_mut(name) {
            v.clear();
            v.push_str(value);
        } else {
            self.0.insert(name.to_ascii_lowercase(), value.to_string());
        }
    }
}

criterion_group!(benches, spans, propagation);
criterion_main!(benches);

//! metricsd's secret-key rule and the tracer's attribute redaction are the
//! same rule: what metricsd would redact, a span redacts before export.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use metricsd::Config;
use nexus_bounds::ManualClock;
use nexus_trace::recent::RecentSpans;
use nexus_trace::{IdGenerator, IdSeed, Tracer, TracerConfig};

fn tracer_redacts(key: &str) -> bool {
    let ring = Arc::new(RecentSpans::default());
    let t = Tracer::new(
        ManualClock::new(1),
        Arc::clone(&ring),
        IdGenerator::new(&IdSeed::new(1, 1, 1)),
        TracerConfig::default(),
    );
    let mut s = t.span("s");
    s.attr(key, "v");
    drop(s);
    ring.recent(1)[0].attrs[0].1 == nexus_trace::redact::REDACTED
}

#[test]
fn default_words_are_the_same_list() {
    let cfg = Config::default();
    assert_eq!(
        cfg.redact.deny_key_segments,
        metricsd::config::DEFAULT_SECRET_SEGMENTS.to_vec()
    );
    assert_eq!(
        TracerConfig::default().secret_segments,
        &nexus_trace::redact::DEFAULT_SECRET_SEGMENTS[..]
    );
}

#[test]
fn known_keys_agree() {
    let cfg = Config::default();
    for k in [
        "token",
        "x_api_key",
        "apiKey",
        "API_KEY",
        "authToken",
        "db.password",
        "set-cookie",
        "monkey",
        "author",
        "rows",
        "private_key_path",
        "sessionId",
    ] {
        assert_eq!(cfg.is_secret_key(k), tracer_redacts(k), "{k}");
    }
}

proptest::proptest! {
    #[test]
    fn any_key_agrees(k in "[a-zA-Z0-9_.-]{0,24}", w in proptest::sample::select(metricsd::config::DEFAULT_SECRET_SEGMENTS.to_vec()), pre in "[a-zA-Z]{0,5}") {
        let cfg = Config::default();
        proptest::prop_assert_eq!(cfg.is_secret_key(&k), tracer_redacts(&k));
        let mixed = format!("{pre}_{w}");
        proptest::prop_assert_eq!(cfg.is_secret_key(&mixed), tracer_redacts(&mixed));
    }
}

//! The recipe, the compiled-in defaults and the docs agree.
#![cfg(feature = "std")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use metricsd::config::parse_recipe;
use metricsd::Config;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

#[test]
fn recipe_equals_compiled_defaults_and_validates() {
    let text = std::fs::read_to_string(root().join("recipes/observability/metrics.toml")).unwrap();
    let cfg = parse_recipe(&text).unwrap();
    assert_eq!(cfg, Config::default());
    cfg.validate().unwrap();
    assert!(parse_recipe(&text.replace("max_live", "max_lives")).is_err());
}

#[test]
fn every_recipe_key_is_documented() {
    let text = std::fs::read_to_string(root().join("recipes/observability/metrics.toml")).unwrap();
    let doc = std::fs::read_to_string(root().join("docs/observability/metrics.md")).unwrap();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap().trim();
        if let Some(s) = line.strip_prefix('[') {
            section = s.trim_end_matches(']').to_string();
        } else if let Some((k, _)) = line.split_once('=') {
            let key = format!("{section}.{}", k.trim());
            assert!(
                doc.contains(&format!("`{key}`")),
                "{key} is not documented in metrics.md"
            );
        }
    }
}

#[test]
fn impossible_configs_are_refused() {
    let mut c = Config::default();
    c.cardinality.max_series_per_metric = 2000;
    assert!(c.validate().is_err());
    let mut c = Config::default();
    c.rate.events_per_sec = 0;
    assert!(c.validate().is_err());
    let mut c = Config::default();
    c.batch.max_entries = 10_000;
    assert!(c.validate().is_err());
}

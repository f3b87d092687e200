//! The recipe file, the compiled-in defaults and the docs agree.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use traced::config::RECIPE;
use traced::Config;

#[test]
fn recipe_equals_compiled_defaults() {
    assert_eq!(Config::from_toml(RECIPE).unwrap(), Config::default());
}

#[test]
fn every_recipe_key_is_documented() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../docs/observability/tracing.md"),
    )
    .unwrap();
    let mut n = 0;
    for line in RECIPE.lines() {
        let line = line.split('#').next().unwrap().trim();
        if line.starts_with('[') {
            let table = line.trim_matches(|c| c == '[' || c == ']');
            assert!(
                doc.contains(&format!("`[{table}]`")),
                "[{table}] is not documented"
            );
            continue;
        }
        if let Some((k, _)) = line.split_once('=') {
            let key = k.trim();
            assert!(doc.contains(&format!("`{key}`")), "{key} is not documented");
            n += 1;
        }
    }
    assert_eq!(n, 23);
}

#[test]
fn recipe_refuses_unknown_and_missing_keys() {
    assert!(Config::from_toml(&RECIPE.replace("recent_traces", "recent_trace")).is_err());
    assert!(Config::from_toml("max_active_traces = 1").is_err());
    assert!(Config::from_toml(&RECIPE.replace("= 256", "= -1")).is_err());
    assert!(Config::from_toml(&RECIPE.replace("max_attempts", "max_attempt")).is_err());
    // The [otlp] table is required like every other key.
    let without_otlp = RECIPE.split("[otlp]").next().unwrap();
    assert!(Config::from_toml(without_otlp).is_err());
}

#[test]
fn recipe_otlp_table_is_read() {
    let text = RECIPE
        .replace("enabled = false", "enabled = true")
        .replace("http://127.0.0.1:4318/v1/traces", "http://10.0.0.9:4318/x")
        .replace("unix_offset_ns = 0", "unix_offset_ns = 1700000000000000000");
    let c = Config::from_toml(&text).unwrap();
    assert!(c.otlp.enabled);
    assert_eq!(c.otlp.endpoint, "http://10.0.0.9:4318/x");
    assert_eq!(c.otlp.unix_offset_ns, 1_700_000_000_000_000_000);
    assert_eq!(c.otlp.max_batch_spans, 512);
}

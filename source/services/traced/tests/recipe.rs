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
        if let Some((k, _)) = line.split_once('=') {
            let key = k.trim();
            assert!(doc.contains(&format!("`{key}`")), "{key} is not documented");
            n += 1;
        }
    }
    assert_eq!(n, 11);
}

#[test]
fn recipe_refuses_unknown_and_missing_keys() {
    assert!(Config::from_toml(&RECIPE.replace("recent_traces", "recent_trace")).is_err());
    assert!(Config::from_toml("max_active_traces = 1").is_err());
    assert!(Config::from_toml(&RECIPE.replace("= 256", "= -1")).is_err());
}

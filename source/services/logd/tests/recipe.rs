//! The recipe file, the compiled-in defaults and the docs agree.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg(feature = "std")]

use logd::host::{load_recipe, parse_recipe};
use logd::Config;

fn recipe_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../recipes/observability/logd.toml")
}

#[test]
fn recipe_equals_compiled_defaults_and_validates() {
    let cfg = load_recipe(&recipe_path()).unwrap();
    assert_eq!(cfg, Config::default());
    cfg.validate(64 * 1024).unwrap();
}

#[test]
fn every_recipe_key_is_documented() {
    let text = std::fs::read_to_string(recipe_path()).unwrap();
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../docs/observability/logd.md"),
    )
    .unwrap();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap().trim();
        if let Some(s) = line.strip_prefix('[') {
            section = s.trim_end_matches(']').to_string();
        } else if let Some((k, _)) = line.split_once('=') {
            let key = format!("{section}.{}", k.trim());
            assert!(
                doc.contains(&format!("`{key}`")),
                "{key} is not documented in logd.md"
            );
        }
    }
}

#[test]
fn recipe_rejects_unknown_keys_and_bad_bounds() {
    let text = std::fs::read_to_string(recipe_path()).unwrap();
    assert!(parse_recipe(&text.replace("max_scan", "max_scna")).is_err());
    let cfg = parse_recipe(&text.replace("max_records = 4096", "max_records = 0")).unwrap();
    assert!(cfg.validate(64 * 1024).is_err());
    assert!(
        Config::default().validate(1024).is_err(),
        "a page must fit a frame"
    );
    let mut c = Config::default();
    c.rate.events_per_sec = 0;
    assert!(
        c.validate(64 * 1024).is_err(),
        "a zero rate would block a sender forever"
    );
    let mut c = Config::default();
    c.stats.max_senders = 2000;
    assert!(
        c.validate(64 * 1024).is_err(),
        "a STATS reply must fit a frame"
    );
}

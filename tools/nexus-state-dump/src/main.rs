//! `nexus-state-dump IMAGE`: the records logd persisted on a disk image,
//! as JSON lines on stdout, and a summary on stderr. Read only: the image
//! is never written (the boot counter is not touched).
//!
//! The runtime splits its disk into [`REGIONS`] equal regions (see
//! `docs/observability/runtime.md`); logd's journal is region 0.

use std::process::ExitCode;

use nexus_log::json::record_to_json;
use nexus_log::proto::decode_record_bytes;
use nexus_store::{MemDisk, Region, StateStore};

/// Regions the runtime splits its disk into: logd's, then metricsd's.
const REGIONS: u64 = 2;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: nexus-state-dump IMAGE");
        return ExitCode::from(2);
    };
    let image = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(logd_region) = Region::split(MemDisk::from_image(image), REGIONS)
        .into_iter()
        .next()
    else {
        eprintln!("{path}: empty image");
        return ExitCode::FAILURE;
    };
    let (_, report, entries) = match StateStore::open_read_only(logd_region) {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("{path}: not a readable state store: {e:?}");
            return ExitCode::FAILURE;
        }
    };
    let mut bad = 0u64;
    for e in &entries {
        match decode_record_bytes(e) {
            Ok(r) => println!("{}", record_to_json(&r)),
            Err(_) => bad += 1,
        }
    }
    eprintln!(
        "state-dump: {} entries ({} undecodable), boot_count {}, generation {}, torn tail {}, {} of {} bytes used",
        entries.len(),
        bad,
        report.boot_count,
        report.generation,
        report.torn,
        report.bytes_used,
        report.capacity
    );
    ExitCode::SUCCESS
}

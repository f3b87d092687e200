//! `nexus-state-dump IMAGE`: the records logd persisted on a disk image,
//! as JSON lines on stdout, and a summary on stderr. Read only: the image
//! is never written (the boot counter is not touched).
//!
//! The disk's region table (block 0, see `docs/observability/runtime.md`)
//! says where logd's region is; it is found by name, never by position.

use std::process::ExitCode;

use nexus_log::json::record_to_json;
use nexus_log::proto::decode_record_bytes;
use std::cell::RefCell;
use std::rc::Rc;

use nexus_store::{MemDisk, RegionTable, StateStore};

/// The region logd's journal lives in.
const LOGD_REGION: &str = "logd";

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
    let disk = Rc::new(RefCell::new(MemDisk::from_image(image)));
    let table = match RegionTable::read(&mut *disk.borrow_mut()) {
        Ok(Some(t)) => t,
        Ok(None) => {
            eprintln!("{path}: no region table in block 0 (blank, or not a nexus-obs disk)");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("{path}: {e:?}");
            return ExitCode::FAILURE;
        }
    };
    let Some(logd_region) = table.region(&disk, LOGD_REGION) else {
        eprintln!("{path}: the region table has no '{LOGD_REGION}' region");
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

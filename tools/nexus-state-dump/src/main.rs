//! `nexus-state-dump IMAGE [--region logd|metricsd|traced]`: what a service
//! persisted on a disk image, as JSON lines on stdout, and a summary on
//! stderr. Read only: the image is never written (the boot counter is not
//! touched).
//!
//! The disk's region table (block 0, see `docs/observability/runtime.md`)
//! says where each region is; it is found by name, never by position.
//!
//! * `logd` (default): the journal's records, in the JSON-lines format.
//! * `metricsd`: its registrations, WAL samples and closed rollup
//!   segments, one object per entry with a `"entry"` field naming the kind.
//! * `traced`: completed traces, one JSON line each (the schema in
//!   `docs/observability/tracing.md`); an entry that is not a JSON object
//!   is counted undecodable.

use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;

use metricsd::server::Persisted;
use nexus_log::json::record_to_json;
use nexus_log::proto::decode_record_bytes;
use nexus_store::{MemDisk, RegionTable, StateStore};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(path), region) = (args.next(), args.collect::<Vec<_>>()) else {
        eprintln!("usage: nexus-state-dump IMAGE [--region logd|metricsd|traced]");
        return ExitCode::from(2);
    };
    let region = match region.as_slice() {
        [] => "logd",
        [flag, name]
            if flag == "--region" && ["logd", "metricsd", "traced"].contains(&name.as_str()) =>
        {
            name
        }
        _ => {
            eprintln!("usage: nexus-state-dump IMAGE [--region logd|metricsd|traced]");
            return ExitCode::from(2);
        }
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
    let Some(dev) = table.region(&disk, region) else {
        eprintln!("{path}: the region table has no '{region}' region");
        return ExitCode::FAILURE;
    };
    let (_, report, entries) = match StateStore::open_read_only(dev) {
        Ok(ok) => ok,
        Err(e) => {
            eprintln!("{path}: region '{region}' is not a readable state store: {e:?}");
            return ExitCode::FAILURE;
        }
    };
    let mut bad = 0u64;
    for e in &entries {
        let line = match region {
            "logd" => decode_record_bytes(e).ok().map(|r| record_to_json(&r)),
            "traced" => std::str::from_utf8(e)
                .ok()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object())
                })
                .map(String::from),
            _ => metricsd::persist::decode(e).map(|p| metricsd_json(&p)),
        };
        match line {
            Some(l) => println!("{l}"),
            None => bad += 1,
        }
    }
    eprintln!(
        "state-dump: region {region}: {} entries ({} undecodable), boot_count {}, generation {}, torn tail {}, {} of {} bytes used",
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

/// One persisted metricsd entry as a JSON object.
fn metricsd_json(p: &Persisted) -> String {
    let v = match p {
        Persisted::Register(id, reg) => serde_json::json!({
            "entry": "register",
            "series": id,
            "owner": reg.owner.get(),
            "kind": reg.kind.as_str(),
            "name": reg.name.as_str(),
            "labels": reg.labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
            "buckets": reg.buckets.as_ref().map(|b| b.bounds().to_vec()),
        }),
        Persisted::Sample {
            series,
            ts_ns,
            value,
        } => serde_json::json!({
            "entry": "sample", "series": series, "ts_ns": ts_ns, "value": value,
        }),
        Persisted::Segment(s) => serde_json::json!({
            "entry": "segment",
            "series": s.series,
            "tier": s.tier.as_str(),
            "start_ns": s.start_ns,
            "count": s.agg.count,
            "sum": s.agg.sum,
            "min": s.agg.min,
            "max": s.agg.max,
        }),
    };
    v.to_string()
}

//! The JSONL store on a state-store region: lines survive a remount, the
//! oldest go first when the region is full (counted), oversized lines are
//! refused (counted).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use nexus_store::{MemDisk, StateStore, MAX_ENTRY};
use traced::region::JsonlRegion;

fn line(i: usize, pad: usize) -> Vec<u8> {
    format!(
        "{{\"trace_id\":\"{i:032x}\",\"pad\":\"{}\"}}",
        "x".repeat(pad)
    )
    .into_bytes()
}

#[test]
fn lines_survive_a_remount_and_read_back_from_the_disk() {
    let disk = MemDisk::new(64);
    let mut r = JsonlRegion::open(disk).unwrap();
    for i in 0..5 {
        r.push(line(i, 10));
    }
    assert!(nexus_svc::Persist::<traced::TracedService>::flush(&mut r));
    assert_eq!(r.stats().written, 5);
    let image = r.into_device().into_image();
    let (_, _, entries) = StateStore::open_read_only(MemDisk::from_image(image.clone())).unwrap();
    assert_eq!(entries, (0..5).map(|i| line(i, 10)).collect::<Vec<_>>());
    let r = JsonlRegion::open(MemDisk::from_image(image)).unwrap();
    assert_eq!(r.stats().restored, 5);
    assert_eq!(r.lines().count(), 5);
}

#[test]
fn a_full_region_drops_the_oldest_lines_and_keeps_the_newest() {
    let disk = MemDisk::new(64); // two halves of ~15 KiB
    let mut r = JsonlRegion::open(disk).unwrap();
    let n = 200;
    for i in 0..n {
        r.push(line(i, 300));
        assert!(nexus_svc::Persist::<traced::TracedService>::flush(&mut r));
    }
    let s = r.stats();
    assert!(s.compactions > 0 && s.dropped_old > 0, "{s:?}");
    assert_eq!(s.written, n as u64);
    assert_eq!(s.failed, 0);
    let kept: Vec<Vec<u8>> = r.lines().map(<[u8]>::to_vec).collect();
    assert_eq!(kept.len() as u64, n as u64 - s.dropped_old);
    // The newest, in order, ending with the last one written.
    let first = n - kept.len();
    assert_eq!(kept, (first..n).map(|i| line(i, 300)).collect::<Vec<_>>());
    // What the disk holds is exactly what is kept.
    let (_, _, entries) = StateStore::open_read_only(r.into_device()).unwrap();
    assert_eq!(entries, kept);
}

#[test]
fn test_reject_a_line_over_the_entry_limit() {
    let mut r = JsonlRegion::open(MemDisk::new(64)).unwrap();
    r.push(vec![b'x'; MAX_ENTRY + 1]);
    assert_eq!(r.stats().too_large, 1);
    assert_eq!(r.lines().count(), 0);
}

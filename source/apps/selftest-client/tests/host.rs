//! The selftest against the real logd over the host bus, with the journal
//! on an in-memory disk: two "boots" of the same disk, as under QEMU.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use logd::persist::JournalStore;
use logd::{Config, Logd, LogdService};
use nexus_bounds::ManualClock;
use nexus_ipc::host::HostBus;
use nexus_ipc::router::RouterConfig;
use nexus_ipc::Endpoint;
use nexus_log::LogdClient;
use nexus_store::MemDisk;
use nexus_svc::host::serve;
use nexus_svc::{Links, Shell};
use selftest_client::{run, Failure};

const TIMEOUT: u64 = 10_000_000_000;

/// Boots logd on `disk`, runs the selftest, shuts down; returns the disk,
/// the markers printed and the result.
fn boot(disk: MemDisk) -> (MemDisk, u32, Vec<String>, Result<(), Failure>) {
    let bus = HostBus::new(RouterConfig::default());
    let mut logd_ep = bus.endpoint("logd").unwrap();
    let main_ep = bus.endpoint("selftest").unwrap();
    let flood_ep = bus.endpoint("selftest-flood").unwrap();
    let cfg = Config::default();
    let readers: Vec<_> = cfg
        .query
        .readers
        .iter()
        .filter_map(|n| bus.lookup(n))
        .collect();
    let mut logd = Logd::new(cfg, RouterConfig::default().max_frame_bytes, readers).unwrap();
    let (mut store, restored) = JournalStore::open(disk, &mut logd).unwrap();
    let boot = restored.mount.boot_count;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let logd_id = logd_ep.id();
    let server = std::thread::spawn(move || {
        // A clock that does not move: the flood meets an empty bucket
        // deterministically.
        let clock = ManualClock::new(1);
        let mut shell = Shell::new(LogdService::new(logd), store, Links::new());
        serve(
            &mut shell,
            &mut logd_ep,
            &clock,
            &stop2,
            1_000_000,
            &mut |_| {},
        );
        shell.into_parts().1.into_device()
    });
    let mut main = LogdClient::new(main_ep, logd_id, TIMEOUT);
    let mut flood = LogdClient::new(flood_ep, logd_id, TIMEOUT);
    let mut markers = Vec::new();
    let result = run(&mut main, &mut flood, boot, &mut |m| {
        markers.push(m.to_string())
    });
    stop.store(true, Ordering::Relaxed);
    let disk = server.join().unwrap();
    (disk, boot, markers, result)
}

#[test]
fn first_boot_then_reboot_finds_the_records_again() {
    let (disk, b1, m1, r1) = boot(MemDisk::new(16 * 1024));
    assert_eq!(r1, Ok(()));
    assert_eq!(b1, 1);
    assert_eq!(
        m1,
        [
            "SELFTEST: logd hardening rejects ok",
            "SELFTEST: log query ok",
            "SELFTEST: log persist pending"
        ]
    );
    let (_, b2, m2, r2) = boot(disk);
    assert_eq!(r2, Ok(()));
    assert_eq!(b2, 2);
    assert_eq!(
        m2.last().map(String::as_str),
        Some("SELFTEST: log persist ok")
    );
}

#[test]
fn no_persist_marker_without_the_evidence() {
    // Second boot of a disk whose records were lost: the selftest must
    // fail instead of printing "log persist ok".
    let (disk, _, _, r1) = boot(MemDisk::new(16 * 1024));
    assert_eq!(r1, Ok(()));
    let mut wiped = MemDisk::new(16 * 1024);
    // Keep only the superblock (boot counter), drop every record.
    let mut block = [0u8; nexus_store::BLOCK_SIZE];
    let mut d = disk;
    nexus_store::BlockDevice::read_block(&mut d, 0, &mut block).unwrap();
    nexus_store::BlockDevice::write_block(&mut wiped, 0, &block).unwrap();
    let (_, b2, markers, r2) = boot(wiped);
    assert_eq!(b2, 2);
    assert!(r2.is_err(), "{r2:?}");
    assert!(!markers.iter().any(|m| m == "SELFTEST: log persist ok"));
}

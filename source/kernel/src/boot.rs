//! `kmain`: bring the runtime up, start logd, run the selftest, exit.

use alloc::boxed::Box;

use logd::persist::JournalStore;
use logd::{Config, Logd};
use nexus_ipc::router::RouterConfig;
use nexus_log::LogdClient;
use virtio_drivers::transport::DeviceType;

use crate::logd_task::LogdTask;
use crate::runtime::{RdtimeClock, Runtime};
use crate::virtio::Blk;
use crate::{arch, console, dtb, heap, kprintln, virtio};

/// How long a client waits for a reply before giving up.
const REPLY_TIMEOUT_NS: u64 = 2_000_000_000;

fn die(what: &str) -> ! {
    kprintln!("KERNEL PANIC: {what}");
    arch::exit(5)
}

/// Called by `arch`'s entry with the hart id and device tree address.
pub fn kmain(hart: usize, dtb_addr: usize) -> ! {
    kprintln!("nexus-obs runtime: hart {hart}, device tree at {dtb_addr:#x}");
    let Some(fdt) = arch::device_tree(dtb_addr) else {
        die("no device tree")
    };
    let Some(ram_end) = dtb::ram_end(&fdt) else {
        die("no memory node")
    };
    // OpenSBI puts the device tree near the end of RAM: the heap stops
    // below it, so the tree stays intact while the runtime reads it.
    let heap_end = if dtb_addr > 0 {
        ram_end.min(dtb_addr)
    } else {
        ram_end
    };
    let heap_bytes = heap::init(heap_end);
    let info = dtb::boot_info(&fdt);
    kprintln!(
        "runtime: heap {} KiB, timer {} Hz, {} virtio-mmio slots, bootargs '{}'",
        heap_bytes / 1024,
        info.timebase_hz,
        info.virtio_slots.len(),
        info.bootargs
    );

    let devices = virtio::probe(&info.virtio_slots);
    for d in &devices {
        kprintln!("runtime: virtio {:?} at {:#x}", d.kind, d.base);
    }
    let blk = devices
        .into_iter()
        .find(|d| d.kind == DeviceType::Block)
        .and_then(|d| Blk::new(d.transport));

    let rt = Runtime::new(RouterConfig::default(), RdtimeClock::new(info.timebase_hz));
    let cfg = Config::default();
    let (Ok(logd_id), Ok(main_id), Ok(flood_id)) = (
        rt.register("logd"),
        rt.register("selftest"),
        rt.register("selftest-flood"),
    ) else {
        die("endpoint registration failed")
    };
    let readers: alloc::vec::Vec<_> = cfg
        .query
        .readers
        .iter()
        .filter_map(|n| rt.lookup(n))
        .collect();
    let mut logd = match Logd::new(cfg, rt.router_config().max_frame_bytes, readers) {
        Ok(l) => l,
        Err(e) => die(&alloc::format!("logd config: {e:?}")),
    };
    let mut boot = 1;
    let store = match blk {
        Some(dev) => match JournalStore::open(dev, &mut logd) {
            Ok((store, r)) => {
                boot = r.mount.boot_count;
                kprintln!(
                    "runtime: state store boot {} (formatted: {}), {} records restored, {} skipped, torn tail: {}",
                    r.mount.boot_count,
                    r.mount.formatted,
                    r.records,
                    r.skipped,
                    r.mount.torn
                );
                Some(store)
            }
            Err(e) => {
                kprintln!("runtime: state store unusable: {e:?}");
                None
            }
        },
        None => {
            kprintln!("runtime: no virtio-blk device: logd runs without persistence");
            None
        }
    };
    rt.add_service(Box::new(LogdTask::new(logd_id, logd, store)));
    console::line("logd: ready");

    let mut main = LogdClient::new(rt.endpoint(main_id), logd_id, REPLY_TIMEOUT_NS);
    let mut flood = LogdClient::new(rt.endpoint(flood_id), logd_id, REPLY_TIMEOUT_NS);
    let result = selftest_client::run(&mut main, &mut flood, boot, &mut |m| console::line(m));
    // Let logd finish (and flush) whatever is still queued.
    while rt.run_services_once() {}
    match result {
        Ok(()) => {
            console::line("SELFTEST: end");
            arch::exit(0)
        }
        Err(e) => {
            kprintln!("SELFTEST: FAIL {}", e.0);
            arch::exit(1)
        }
    }
}

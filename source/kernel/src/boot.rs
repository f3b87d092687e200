//! `kmain`: bring the runtime up, start logd, run the selftest, exit —
//! or, booted with `nexus.role=a|b`, run selftest-client's two-node phase
//! (`pair`, or `bus` with device keys) on the runtime's platform instead.

use alloc::boxed::Box;

use logd::persist::JournalStore;
use logd::{Config, Logd};
use nexus_bounds::Clock;
use nexus_ipc::router::RouterConfig;
use nexus_log::LogdClient;
use virtio_drivers::transport::DeviceType;

use metricsd::persist::MetricsStore;
use metricsd::Metricsd;
use nexus_metrics::{Metrics, MetricsConfig};
use nexus_store::Region;

use alloc::rc::Rc;
use core::cell::Cell;
use logd::service::LogdService;

use crate::bootargs::{BadArg, Ipv4Display, MacDisplay, NetArgs};
use crate::logd_task::LogdTask;
use crate::metricsd_task::MetricsdTask;
use crate::net::Net;
use crate::platform::KernelPlatform;
use crate::runtime::{RdtimeClock, Runtime};
use crate::virtio::Rng;
use crate::virtio::{Blk, Probed};
use crate::{arch, bootargs, console, dtb, heap, kprintln, platform, virtio};
use dsoftbus::identity::DeviceKey;

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
        bootargs::redacted(&info.bootargs)
    );

    let devices = virtio::probe(&info.virtio_slots);
    for d in &devices {
        kprintln!("runtime: virtio {:?} at {:#x}", d.kind, d.base);
    }
    let net_args = match bootargs::net_args(&info.bootargs) {
        Ok(a) => a,
        Err(BadArg(key)) => {
            kprintln!("SELFTEST: FAIL malformed boot argument {key}");
            arch::exit(1)
        }
    };
    let (nics, devices): (alloc::vec::Vec<_>, alloc::vec::Vec<_>) = devices
        .into_iter()
        .partition(|d| d.kind == DeviceType::Network);
    let (rngs, devices): (alloc::vec::Vec<_>, alloc::vec::Vec<_>) = devices
        .into_iter()
        .partition(|d| d.kind == DeviceType::EntropySource);

    let rt = Runtime::new(RouterConfig::default(), RdtimeClock::new(info.timebase_hz));
    let net = start_net(&rt, &net_args, nics.into_iter().next());
    if let Some(role) = net_args.role {
        let rng = rngs.into_iter().next().and_then(|d| Rng::new(d.transport));
        let p = KernelPlatform::new(&rt, rng);
        let result = match (&net, net_args.key, net_args.peer_key) {
            (Some(net), Some(key), Some(peer_key)) => selftest_client::bus::run(
                &p,
                net,
                role.into(),
                net_args.peer,
                DeviceKey::from_secret(key),
                peer_key,
            ),
            // Half a key pair is a configuration error, never a silent
            // fall back to the unauthenticated test.
            (Some(_), Some(_), None) | (Some(_), None, Some(_)) => Err(
                alloc::string::String::from("nexus.key and nexus.peer_key must be given together"),
            ),
            (Some(net), None, None) => {
                selftest_client::pair::run(&p, net, role.into(), net_args.peer)
            }
            (None, _, _) => Err(alloc::string::String::from(
                "pair test needs a virtio-net device and nexus.ip",
            )),
        };
        if let Some(net) = &net {
            platform::report(net);
        }
        match result {
            Ok(()) => {
                console::line("SELFTEST: end");
                arch::exit(0)
            }
            Err(e) => {
                kprintln!("SELFTEST: FAIL pair {}: {e}", role.as_str());
                arch::exit(1)
            }
        }
    }
    // One disk, two regions: logd's journal, then metricsd's state.
    let mut regions = devices
        .into_iter()
        .find(|d| d.kind == DeviceType::Block)
        .and_then(|d| Blk::new(d.transport))
        .map(|b| Region::split(b, 2).into_iter())
        .into_iter()
        .flatten();
    let (logd_region, metricsd_region) = (regions.next(), regions.next());

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
    let store = match logd_region {
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
    let metricsd_link = Rc::new(Cell::new(None));
    rt.add_service(Box::new(LogdTask::new(
        logd_id,
        LogdService::new(logd, store),
        Rc::clone(&metricsd_link),
    )));
    console::line("logd: ready");

    let mut main = LogdClient::new(rt.endpoint(main_id), logd_id, REPLY_TIMEOUT_NS);
    let mut flood = LogdClient::new(rt.endpoint(flood_id), logd_id, REPLY_TIMEOUT_NS);
    let mut result = selftest_client::run(&mut main, &mut flood, boot, &mut |m| console::line(m));
    rt.settle(1000);

    if result.is_ok() {
        result = start_metricsd(&rt, logd_id, metricsd_region).and_then(|(md_id, metrics_id)| {
            metricsd_link.set(Some(md_id));
            let clock = *rt.clock();
            let cfg = MetricsConfig {
                timeout_ns: REPLY_TIMEOUT_NS,
                ..MetricsConfig::default()
            };
            let mut m = Metrics::new(rt.endpoint(metrics_id), md_id, clock, cfg);
            let mut mflood = Metrics::new(rt.endpoint(flood_id), md_id, clock, cfg);
            let mut settle = |ns: u64| {
                rt.settle(1000);
                if ns > 0 {
                    rt.clock().sleep(ns);
                }
                rt.settle(1000);
            };
            selftest_client::metrics::run(
                &mut main,
                &mut m,
                &mut mflood,
                boot,
                &mut |l| console::line(l),
                &mut settle,
            )
        });
    }
    // Let the services finish (and flush) whatever is still queued.
    rt.settle(10_000);
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

/// Brings the network up when the boot arguments give an address and a
/// virtio-net device is present: the stack becomes a service and
/// `net: ready <ip>` is printed. Otherwise the runtime runs without it.
fn start_net(rt: &Runtime, args: &NetArgs, nic: Option<Probed>) -> Option<Net> {
    let Some(ip) = args.ip else {
        if nic.is_some() {
            kprintln!("runtime: virtio-net present but no nexus.ip: network off");
        }
        return None;
    };
    let Some(nic) = nic else {
        kprintln!("runtime: no virtio-net device: network off");
        return None;
    };
    let Some(dev) = virtio::net_device(nic.transport) else {
        kprintln!(
            "runtime: virtio-net at {:#x} failed to initialise: network off",
            nic.base
        );
        return None;
    };
    let net = Net::new(dev, ip, args.mac, rt.clock().now_ns());
    if net.mac() != net.device_mac() {
        kprintln!(
            "runtime: nexus.mac {} differs from the device's {}",
            MacDisplay(net.mac()),
            MacDisplay(net.device_mac())
        );
    }
    kprintln!(
        "runtime: net {}/{} mac {}",
        Ipv4Display(net.ip()),
        crate::net::PREFIX_LEN,
        MacDisplay(net.mac())
    );
    rt.add_service(Box::new(net.service()));
    console::line(&alloc::format!("net: ready {}", Ipv4Display(net.ip())));
    Some(net)
}

/// Starts metricsd on its disk region (replaying it) and registers the
/// selftest's metrics endpoint. Prints `metricsd: ready` once it serves.
fn start_metricsd<D: nexus_store::BlockDevice + 'static>(
    rt: &Runtime,
    logd_id: nexus_ipc::ServiceId,
    region: Option<D>,
) -> Result<(nexus_ipc::ServiceId, nexus_ipc::ServiceId), selftest_client::Failure> {
    let fail = |w: &str| selftest_client::Failure(alloc::string::String::from(w));
    let (Ok(md_id), Ok(metrics_id)) = (rt.register("metricsd"), rt.register("selftest-metrics"))
    else {
        return Err(fail("metricsd endpoint registration failed"));
    };
    let mut m = Metricsd::new(metricsd::Config::default()).map_err(|_| fail("metricsd config"))?;
    let store = match region {
        Some(dev) => match MetricsStore::open(dev, &mut m) {
            Ok((store, r)) => {
                kprintln!(
                    "runtime: metrics store boot {}, {} series, {} segments, {} samples replayed, {} skipped, torn tail: {}",
                    r.mount.boot_count,
                    r.series,
                    r.segments,
                    r.samples,
                    r.skipped,
                    r.mount.torn
                );
                Some(store)
            }
            Err(e) => {
                kprintln!("runtime: metrics store unusable: {e:?}");
                None
            }
        },
        None => None,
    };
    rt.add_service(Box::new(MetricsdTask::new(md_id, logd_id, m, store)));
    console::line("metricsd: ready");
    Ok((md_id, metrics_id))
}

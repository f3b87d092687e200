//! `kmain`: bring the runtime up (heap, device tree, virtio, the node, the
//! network), then hand the node to init with the boot profile the boot
//! arguments choose. What runs — services, links, disk regions, selftest
//! phases — is the profile's business, not the runtime's.

use alloc::boxed::Box;
use alloc::vec::Vec;

use nexus_bounds::Clock;
use nexus_init::bootargs::{self, BadArg, Ipv4Display, MacDisplay, NetArgs};
use nexus_init::selftest::PeerArgs;
use nexus_init::Profile;
use nexus_ipc::router::RouterConfig;
use nexus_svc::node::Idle;
use nexus_svc::platform::Platform;
use virtio_drivers::transport::DeviceType;

use crate::net::Net;
use crate::platform::KernelPlatform;
use crate::runtime::{RdtimeClock, Runtime};
use crate::virtio::{Blk, Probed, Rng};
use crate::{arch, console, dtb, heap, kprintln, platform, virtio};

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
    let profile = match Profile::builtin(bootargs::profile_name(&info.bootargs, &net_args)) {
        Ok(p) => p,
        Err(e) => {
            kprintln!("SELFTEST: FAIL boot profile: {e}");
            arch::exit(1)
        }
    };
    kprintln!("init: profile {} ({})", profile.name, profile.description);
    let (nics, devices): (Vec<_>, Vec<_>) = devices
        .into_iter()
        .partition(|d| d.kind == DeviceType::Network);
    let (rngs, devices): (Vec<_>, Vec<_>) = devices
        .into_iter()
        .partition(|d| d.kind == DeviceType::EntropySource);

    let rt = Runtime::new(
        RouterConfig::default(),
        RdtimeClock::new(info.timebase_hz),
        Idle::UntilDeadline,
        Box::new(console::line),
    );
    let net = start_net(&rt, &net_args, nics.into_iter().next());
    let rng = rngs.into_iter().next().and_then(|d| Rng::new(d.transport));
    let p = KernelPlatform::new(&rt, rng);
    let disk = devices
        .into_iter()
        .find(|d| d.kind == DeviceType::Block)
        .and_then(|d| Blk::new(d.transport));
    if let Err(e) = nexus_init::bootargs::check_peer_key(&net_args) {
        kprintln!("SELFTEST: FAIL {e}");
        arch::exit(1)
    }
    let mut entropy = [0u8; 32];
    let env = nexus_init::Env {
        net: net.clone(),
        device_secret: net_args.key,
        entropy: p.entropy(&mut entropy).then_some(entropy),
    };
    let started = match nexus_init::start(&rt, &profile, disk, &env) {
        Ok(s) => s,
        Err(e) => {
            kprintln!("SELFTEST: FAIL init: {e}");
            arch::exit(1)
        }
    };
    let peer = match (&net, net_args.role) {
        (Some(net), Some(role)) => Some(PeerArgs {
            net,
            role,
            peer: net_args.peer,
        }),
        _ => None,
    };
    let result = nexus_init::selftest::run(&rt, &p, &profile, &started, peer);
    if let (Some(net), Some(_)) = (&net, net_args.role) {
        platform::report(net);
    }
    // Let the services finish (and flush) whatever is still queued.
    rt.settle(10_000);
    match result {
        Ok(()) if profile.then_serve => {
            console::line("SELFTEST: end");
            // A node to watch: the services keep running until QEMU is
            // stopped (`make run`).
            console::line("init: serving until stopped");
            loop {
                p.wait_until(u64::MAX / 4, &mut || false);
            }
        }
        Ok(()) => {
            console::line("SELFTEST: end");
            arch::exit(0)
        }
        Err(e) => {
            kprintln!("SELFTEST: FAIL {e}");
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
    rt.add_poller(Box::new(net.service()));
    console::line(&alloc::format!("net: ready {}", Ipv4Display(net.ip())));
    Some(net)
}

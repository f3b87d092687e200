//! The nexus-obs runtime for QEMU `virt` (riscv64, OpenSBI, virtio-mmio).
//!
//! Not a general OS: it gives the services exactly what they need, behind
//! the same traits the host backend implements — a console, a monotonic
//! clock, a heap, an IPC router that stamps sender ids, a virtio-blk
//! block device for the state store, and TCP/IP over virtio-net (`net`).
//! Apps that need time, entropy or sockets get them through
//! `nexus_svc::platform` (`platform`); the two-node proofs are
//! selftest-client phases, not runtime code.
//! Unsafe code lives in `arch`, `console`, `heap` and `virtio` only.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
#[allow(unsafe_code)] // entry, traps, CSRs, the QEMU exit device
mod arch;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
#[allow(unsafe_code)] // the NS16550 UART registers
mod console;
#[cfg(target_os = "none")]
mod dtb;
#[cfg(target_os = "none")]
#[allow(unsafe_code)] // the global allocator over the free RAM
mod heap;
#[cfg(target_os = "none")]
mod net;
#[cfg(target_os = "none")]
mod platform;
#[cfg(target_os = "none")]
mod runtime;
#[cfg(target_os = "none")]
#[allow(unsafe_code)] // virtio-mmio registers and the identity-mapped DMA HAL
mod virtio;

extern crate alloc;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("nexus-kernel is a bare-metal image: build it with --target riscv64gc-unknown-none-elf (see scripts/qemu-test.sh)");
}

//! Entry, trap vector, timer and exit: the RISC-V specifics.
//!
//! OpenSBI starts us in S-mode at 0x8020_0000 with a0 = hart id and
//! a1 = device tree address, paging off (satp = 0), interrupts off. We set a
//! stack, clear .bss, install a trap vector and jump to Rust. No interrupt
//! is ever enabled: every trap is an unexpected exception, reported on the
//! console before QEMU exits with a failure code, so a fault is a clear
//! failure and never a hang.

use core::arch::{asm, global_asm};

global_asm!(
    r#"
    .section .text.entry
    .globl _start
_start:
    la sp, __stack_top
    la t0, __bss_start
    la t1, __bss_end
1:  bgeu t0, t1, 2f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
2:  la t0, trap_entry
    csrw stvec, t0
    call kmain
3:  wfi
    j 3b

    .section .text
    .align 4
    .globl trap_entry
trap_entry:
    call trap_rust
    j trap_entry
"#
);

/// Called by `_start` once the stack and .bss are ready.
#[unsafe(no_mangle)]
extern "C" fn kmain(hart: usize, dtb_addr: usize) -> ! {
    crate::boot::kmain(hart, dtb_addr)
}

/// Called from `trap_entry` with the stack still valid. Never returns.
#[unsafe(no_mangle)]
extern "C" fn trap_rust() -> ! {
    let (scause, sepc, stval): (usize, usize, usize);
    // SAFETY: reading S-mode CSRs has no side effects.
    unsafe {
        asm!("csrr {}, scause", out(reg) scause);
        asm!("csrr {}, sepc", out(reg) sepc);
        asm!("csrr {}, stval", out(reg) stval);
    }
    crate::console::print_fmt(format_args!(
        "KERNEL TRAP: scause={scause:#x} sepc={sepc:#x} stval={stval:#x}\n"
    ));
    exit(3)
}

/// The `time` CSR: ticks of the platform timer since reset.
pub fn rdtime() -> u64 {
    let t: u64;
    // SAFETY: `rdtime` is readable from S-mode on QEMU virt and has no
    // side effects.
    unsafe { asm!("rdtime {}", out(reg) t) };
    t
}

/// SiFive test device: ends the QEMU process.
const EXIT_DEVICE: usize = 0x10_0000;

/// Exits QEMU: status 0 on `code == 0`, otherwise `code`.
pub fn exit(code: u16) -> ! {
    let value: u32 = if code == 0 {
        0x5555
    } else {
        (u32::from(code) << 16) | 0x3333
    };
    // SAFETY: QEMU virt maps the SiFive test device at EXIT_DEVICE; a
    // 32-bit write of these values ends the emulation.
    unsafe { core::ptr::write_volatile(EXIT_DEVICE as *mut u32, value) };
    loop {
        // SAFETY: waiting for an interrupt that never comes is harmless.
        unsafe { asm!("wfi") };
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::console::print_fmt(format_args!("KERNEL PANIC: {info}\n"));
    exit(2)
}

/// The device tree OpenSBI passed in a1.
pub fn device_tree(addr: usize) -> Option<fdt::Fdt<'static>> {
    // SAFETY: OpenSBI passes the address of a valid flattened device tree
    // that stays mapped and unmodified for the life of the kernel;
    // `from_ptr` checks the header magic and reads `totalsize` bytes.
    unsafe { fdt::Fdt::from_ptr(addr as *const u8) }.ok()
}

/// SBI TIME extension: program the next timer interrupt.
fn sbi_set_timer(deadline: u64) {
    // SAFETY: an SBI call (EID "TIME", FID 0) that only programs the timer;
    // it clobbers a0/a1 as the SBI calling convention says.
    unsafe {
        asm!("ecall", in("a7") 0x5449_4D45usize, in("a6") 0usize,
             inlateout("a0") deadline as usize => _, lateout("a1") _);
    }
}

/// Idles until the `time` CSR reaches `deadline`. Interrupts stay globally
/// disabled (sstatus.SIE = 0): `wfi` still wakes when the enabled timer
/// interrupt becomes pending, and nothing traps. Under QEMU with
/// `-icount …,sleep=off`, idle time passes without wall-clock time.
pub fn wait_until(deadline: u64) {
    const STIE: usize = 1 << 5;
    sbi_set_timer(deadline);
    // SAFETY: enabling the timer interrupt in `sie` only lets `wfi` wake;
    // with sstatus.SIE clear no trap is taken.
    unsafe { asm!("csrs sie, {}", in(reg) STIE) };
    while rdtime() < deadline {
        // SAFETY: waits for the pending timer interrupt; no side effects.
        unsafe { asm!("wfi") };
    }
    sbi_set_timer(u64::MAX);
    // SAFETY: as above, disabling again.
    unsafe { asm!("csrc sie, {}", in(reg) STIE) };
}

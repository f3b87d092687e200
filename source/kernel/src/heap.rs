//! The global allocator: talc over the RAM between the end of the image
//! and the end of memory (from the device tree).

use spinning_top::RawSpinlock;
use talc::source::Manual;
use talc::TalcLock;

#[global_allocator]
static HEAP: TalcLock<RawSpinlock, Manual> = TalcLock::new(Manual);

unsafe extern "C" {
    static __heap_start: u8;
}

/// Hands `[__heap_start, ram_end)` to the allocator. Returns its size.
pub fn init(ram_end: usize) -> usize {
    // Only the address of the linker symbol is taken.
    let start = core::ptr::addr_of!(__heap_start) as usize;
    let size = ram_end.saturating_sub(start);
    // SAFETY: the region lies after the image and its stack (linker.ld),
    // inside RAM (the device tree's memory node), and nothing else uses
    // it. `init` is called once, before any allocation.
    let claimed = unsafe { HEAP.lock().claim(start as *mut u8, size) };
    if claimed.is_none() {
        crate::kprintln!("KERNEL PANIC: heap claim failed");
        crate::arch::exit(4);
    }
    size
}

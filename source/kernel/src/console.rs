//! The NS16550 UART of QEMU virt, transmit only.

use core::fmt::{self, Write};

const UART: usize = 0x1000_0000;
const THR: usize = 0;
const LSR: usize = 5;
const LSR_THR_EMPTY: u8 = 1 << 5;

struct Uart;

impl Uart {
    fn put(&mut self, b: u8) {
        // SAFETY: QEMU virt maps a 16550 at UART; these are byte registers,
        // accessed with volatile reads/writes only.
        unsafe {
            while core::ptr::read_volatile((UART + LSR) as *const u8) & LSR_THR_EMPTY == 0 {}
            core::ptr::write_volatile((UART + THR) as *mut u8, b);
        }
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            self.put(b);
        }
        Ok(())
    }
}

/// Prints formatted text (one hart, no interrupts: no lock needed).
pub fn print_fmt(args: fmt::Arguments<'_>) {
    let _ = Uart.write_fmt(args);
}

/// Prints one whole line: the unit of the marker protocol.
pub fn line(s: &str) {
    let _ = Uart.write_str(s);
    Uart.put(b'\n');
}

/// `println!` for the kernel.
#[macro_export]
macro_rules! kprintln {
    ($($t:tt)*) => { $crate::console::print_fmt(format_args!("{}\n", format_args!($($t)*))) };
}

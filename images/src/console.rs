//! The console: a 16550 UART at COM1 (0x3F8), which QEMU connects to `-serial stdio` /
//! `-nographic`. Writers are stateless (port I/O only), so `print!` takes no lock and works
//! from the panic and exception handlers. Where no UART answers (a Xen PVH domU has none),
//! output is dropped rather than spun on.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use x86_64::instructions::port::{PortRead, PortWrite};

const COM1: u16 = 0x3F8;
// Register offsets (16550 data sheet).
const THR: u16 = 0; // transmit holding (DLAB = 0)
const DLL: u16 = 0; // divisor latch low (DLAB = 1)
const IER: u16 = 1; // interrupt enable (DLAB = 0)
const DLM: u16 = 1; // divisor latch high (DLAB = 1)
const FCR: u16 = 2; // FIFO control (write)
const IIR: u16 = 2; // interrupt identification (read)
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const SCR: u16 = 7;
const LSR_THR_EMPTY: u8 = 1 << 5;
const LSR_TX_IDLE: u8 = 1 << 6;
/// LSR polls before a byte is given up on: a real 16550 at 115200 baud drains a byte in
/// ~87 µs; QEMU's reports empty at once unless its chardev backs up.
const LSR_SPINS: u32 = 100_000;

/// IIR bits 7-6 read 11 when the FIFOs are enabled (a 16550A).
const IIR_FIFO_ON: u8 = 0xC0;
/// Bytes the transmit FIFO takes once LSR says it is empty.
const FIFO_DEPTH: u8 = 16;

static PRESENT: AtomicBool = AtomicBool::new(false);
/// No UART but Xen: the PV console ring if there is one, else Xen's debug port 0xE9.
static XEN: AtomicBool = AtomicBool::new(false);
/// Bytes written per LSR check: the FIFO depth, or 1 without FIFOs.
static BURST: AtomicU8 = AtomicU8::new(1);

fn outb(reg: u16, v: u8) {
    // SAFETY: COM1 registers; writing them has no effect on memory.
    unsafe { u8::write_to_port(COM1 + reg, v) }
}

fn inb(reg: u16) -> u8 {
    // SAFETY: as above; reads of COM1 registers have no memory side effects.
    unsafe { u8::read_from_port(COM1 + reg) }
}

/// Probes and programs COM1: 115200 8N1, FIFOs on, interrupts off. Returns whether a UART
/// answered (the scratch register keeps what is written to it).
pub fn init() -> bool {
    outb(SCR, 0x5A);
    let present = inb(SCR) == 0x5A;
    if present {
        outb(IER, 0x00);
        outb(LCR, 0x80); // DLAB on
        outb(DLL, 0x01); // divisor 1: 115200 baud
        outb(DLM, 0x00);
        outb(LCR, 0x03); // 8N1, DLAB off
        outb(FCR, 0xC7); // FIFOs on and cleared, 14-byte threshold
        outb(MCR, 0x0B); // DTR, RTS, OUT2
        let burst = if inb(IIR) & IIR_FIFO_ON == IIR_FIFO_ON { FIFO_DEPTH } else { 1 };
        BURST.store(burst, Ordering::Relaxed);
    }
    PRESENT.store(present, Ordering::Relaxed);
    present
}

/// Writes bytes, turning `\n` into `\r\n`. Under QEMU every port access is a trip into the
/// emulator, so the FIFO is filled a burst at a time after one LSR check (~half the cost of
/// checking before every byte: ~90 µs for an 80-column line under TCG).
pub fn write_bytes(bytes: &[u8]) {
    if !PRESENT.load(Ordering::Relaxed) {
        if XEN.load(Ordering::Relaxed) && !crate::xen::console::write(bytes) {
            for &b in bytes {
                // SAFETY: port I/O only; Xen logs what a guest writes to 0xE9 as "(dN) ...".
                unsafe { u8::write_to_port(0xE9, b) }
            }
        }
        return;
    }
    let burst = BURST.load(Ordering::Relaxed);
    let mut room = 0u8;
    let expanded = bytes.iter().flat_map(|b| if *b == b'\n' { &b"\r\n"[..] } else { core::slice::from_ref(b) });
    for &b in expanded {
        if room == 0 {
            if !wait_thr_empty() {
                // A UART that never drains is as good as none: stop paying for it.
                PRESENT.store(false, Ordering::Relaxed);
                return;
            }
            room = burst;
        }
        outb(THR, b);
        room -= 1;
    }
}

/// Waits (bounded) for the transmitter to take more bytes; false if it never does.
fn wait_thr_empty() -> bool {
    for _ in 0..LSR_SPINS {
        if inb(LSR) & LSR_THR_EMPTY != 0 {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

pub fn write_str(s: &str) {
    write_bytes(s.as_bytes());
}

/// Without a UART on Xen: output goes to the PV console ring, or port 0xE9 before it is up.
pub fn use_xen() {
    XEN.store(true, Ordering::Relaxed);
}

/// Waits (bounded) until the UART has sent everything, before the VM is switched off.
pub fn flush() {
    if !PRESENT.load(Ordering::Relaxed) {
        return;
    }
    for _ in 0..LSR_SPINS {
        if inb(LSR) & LSR_TX_IDLE != 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

/// `fmt::Write` onto the console.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_str(s);
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let _ = fmt::Write::write_fmt(&mut Console, args);
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::console::write_str("\n") };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

//! Switching the VM off with a status the launcher can read.
//!
//! QEMU's `-device isa-debug-exit,iobase=0xf4,iosize=0x04` ends QEMU when the guest writes v
//! to port 0xF4, with host exit status `(v << 1) | 1`. So, as seen by the shell:
//!
//! | guest `exit(code)`         | QEMU exit status | meaning                                     |
//! |----------------------------|------------------|---------------------------------------------|
//! | `exit(0)` [`SUCCESS`]      | 1                | test or server run completed                |
//! | `exit(1)` [`FAILURE`]      | 3                | parameter error, client test failed, no NIC |
//! | `exit(2)` [`CRASH`]        | 5                | panic or CPU exception (a bug)              |
//! | —                          | 0                | QEMU ended otherwise (e.g. guest reset with `-no-reboot`, or the monitor's `quit`) |
//!
//! A launcher maps status s (odd) to `(s - 1) / 2`. Without the device (or on Xen) the write
//! does nothing and the CPU halts with interrupts off. On Xen the image prints
//! `uniperf: exit status N` and shuts the domain down (poweroff for 0 and 1, crash for 2).

use x86_64::instructions::port::PortWrite;

pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;
pub const CRASH: u8 = 2;

const ISA_DEBUG_EXIT: u16 = 0xF4;

/// Ends the VM with `code` (see the module table). Never returns.
pub fn exit(code: u8) -> ! {
    crate::console::flush();
    if crate::xen::active() {
        crate::xen::shutdown(code);
    }
    // SAFETY: isa-debug-exit's port; without the device the write goes nowhere.
    unsafe { u32::write_to_port(ISA_DEBUG_EXIT, u32::from(code)) };
    halt()
}

/// Stops this CPU for good (no interrupts are ever enabled, so `hlt` does not return; the
/// loop covers NMIs).
pub fn halt() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

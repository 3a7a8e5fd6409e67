//! SIGINT, SIGTERM and SIGHUP as iperf3 handles them: the first one asks the running role to
//! stop cleanly (report what it measured, tell the peer CLIENT_TERMINATE / SERVER_TERMINATE,
//! reset the connections) instead of killing the process, whose user-space TCP stack would
//! vanish without a FIN or RST and leave the peer busy. A second one kills at once.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signal caught and not yet taken, or 0.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    CAUGHT.store(sig, Ordering::SeqCst);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP. `SA_RESETHAND` restores the default
/// action after the first signal, so a second Ctrl-C ends a wedged shutdown.
pub fn install() -> std::io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value to fill in.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESETHAND;
        // SAFETY: sa_mask is a valid sigset_t inside `sa`.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: installing a handler that only stores to an atomic.
        if unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The signal caught since the last call, named as iperf3 names it (`strsignal(sig)(sig)`).
pub fn take() -> Option<&'static str> {
    match CAUGHT.swap(0, Ordering::SeqCst) {
        0 => None,
        libc::SIGINT => Some("Interrupt(2)"),
        libc::SIGTERM => Some("Terminated(15)"),
        libc::SIGHUP => Some("Hangup(1)"),
        _ => Some("(unknown)"),
    }
}

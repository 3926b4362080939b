//! SIGTERM/SIGINT -> one process-wide flag that the poll loop and running deployments observe.
//!
//! The handler only stores to an atomic (the one thing that is async-signal-safe to do); whoever
//! is waiting checks [`stop_requested`] between short sleeps. Deployments stop the way a timeout
//! stops them (SIGTERM to their process group, SIGKILL after the grace), so state can be saved
//! before sentry exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

/// Longest time between two looks at the flag while sleeping.
const SLICE: Duration = Duration::from_millis(100);

extern "C" fn on_signal(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGTERM and SIGINT request a stop instead of killing the process.
pub fn install() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: `action` is zero-initialised (a valid `sigaction`: empty mask, no flags) before
        // the fields we need are set; the handler only performs an atomic store, which is
        // async-signal-safe; SA_RESTART keeps unrelated blocking calls from failing with EINTR.
        // Children do not inherit the handler: exec resets handled signals to their default.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                log::warn!(signal = signal; "cannot install the stop handler: {}", std::io::Error::last_os_error());
            }
        }
    }
}

/// True once SIGTERM or SIGINT was received.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Sleeps for `d`, waking early on a stop request; returns false if a stop was requested.
pub fn sleep_unless_stopped(d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if stop_requested() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep(SLICE.min(end - now));
    }
}

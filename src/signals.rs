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
        if let Err(e) = crate::sys::set_signal_handler(signal, on_signal) {
            log::warn!(signal = signal; "cannot install the stop handler: {e}");
        }
    }
}

/// True once SIGTERM or SIGINT was received.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Sleeps for `d`, waking early on a stop request; returns false if a stop was requested.
pub fn sleep_unless_stopped(d: Duration) -> bool {
    // A wait too long for the clock is as good as forever.
    let end = Instant::now().checked_add(d);
    loop {
        if stop_requested() {
            return false;
        }
        let left = end.map_or(SLICE, |end| end.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(SLICE.min(left));
    }
}

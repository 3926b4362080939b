//! SIGTERM/SIGINT -> one process-wide flag that the poll loop and running deployments observe;
//! SIGHUP (only where [`install_reload`] asks for it: the `poll` loop) -> a second flag, "re-read
//! the configuration and start a pass now".
//!
//! The handler only stores to an atomic (the one thing that is async-signal-safe to do); whoever
//! is waiting checks [`stop_requested`] between short sleeps. Deployments stop the way a timeout
//! stops them (SIGTERM to their process group, SIGKILL after the grace), so state can be saved
//! before sentry exits.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

/// The signal that requested the stop (0: none yet).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

static RELOAD: AtomicBool = AtomicBool::new(false);

/// Longest time between two looks at the flag while sleeping.
const SLICE: Duration = Duration::from_millis(100);

extern "C" fn on_signal(signal: libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::SeqCst);
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_hangup(_signal: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

/// Makes SIGTERM and SIGINT request a stop instead of killing the process.
pub fn install() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        if let Err(e) = crate::sys::set_signal_handler(signal, on_signal) {
            log::warn!(signal = signal; "cannot install the stop handler: {e}");
        }
    }
}

/// Makes SIGHUP request a reload instead of killing the process (the `poll` loop only: a
/// one-shot run keeps the default, so a hangup still ends it).
pub fn install_reload() {
    if let Err(e) = crate::sys::set_signal_handler(libc::SIGHUP, on_hangup) {
        log::warn!("cannot install the SIGHUP handler: {e}");
    }
}

/// True once SIGTERM or SIGINT was received.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The name of the signal that requested the stop.
pub fn stop_signal_name() -> &'static str {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a stop signal",
    }
}

/// True (once) when SIGHUP asked for a reload since the last call.
pub fn take_reload() -> bool {
    RELOAD.swap(false, Ordering::SeqCst)
}

/// Calls `f` with the signal's name, on a thread of its own, as soon as a stop is requested:
/// a one-shot run says at once that it heard SIGTERM, not only when its jobs have stopped.
pub fn on_stop(f: impl FnOnce(&'static str) + Send + 'static) {
    let spawned = std::thread::Builder::new().name("stop-watch".into()).spawn(move || {
        while !stop_requested() {
            std::thread::sleep(SLICE);
        }
        f(stop_signal_name());
    });
    if let Err(e) = spawned {
        log::debug!("cannot start the stop watcher: {e}");
    }
}

/// Why [`sleep_until_woken`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// The time was up.
    Elapsed,
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP: re-read the configuration and start a pass now.
    Reload,
}

/// Sleeps for `d`, waking early on a stop or a reload request.
pub fn sleep_until_woken(d: Duration) -> Wake {
    let end = Instant::now().checked_add(d);
    loop {
        if stop_requested() {
            return Wake::Stop;
        }
        if take_reload() {
            return Wake::Reload;
        }
        let left = end.map_or(SLICE, |end| end.saturating_duration_since(Instant::now()));
        if left.is_zero() {
            return Wake::Elapsed;
        }
        std::thread::sleep(SLICE.min(left));
    }
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

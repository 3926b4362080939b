//! Every `unsafe` call of sentry, each behind a small safe function: signal handlers, process
//! groups, polling a pipe, the host name, what a child inherits, who may read our memory.
//! Nothing here knows what it is used for.

mod spawn;

pub use spawn::{JobEnv, JobStdio, spawn_job};

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Closes this process to other processes of the same user: no core dump, and
/// `/proc/<pid>/environ`, `mem`, `maps` and `ptrace` need CAP_SYS_PTRACE (Linux; elsewhere a
/// no-op). Children are not affected: exec makes them dumpable again.
pub fn make_undumpable() -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: PR_SET_DUMPABLE takes an integer argument and touches no memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Caps glibc's malloc at `arenas` arenas unless `MALLOC_ARENA_MAX` is set (no-op elsewhere).
///
/// glibc gives each thread that allocates its own arena, up to 8 per core, and an arena keeps
/// what was freed in it: 32 check threads and a parallel group kept tens of MB that were no
/// longer used (issue 21). sentry's threads wait on the network and on children, so sharing a
/// few arenas costs no measurable time.
pub fn limit_malloc_arenas(arenas: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt takes two integers and only changes malloc's own settings; it is called
        // before any thread of ours starts.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}

/// Gives the pages malloc holds free back to the kernel (glibc's `malloc_trim`; no-op elsewhere).
///
/// Parsing a large configuration or state makes hundreds of thousands of short-lived
/// allocations; what they leave free between the ones that stay is otherwise resident until
/// the process ends.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks malloc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// CPU time this process has used (all its threads; not its children) and its peak resident
/// set in KiB, from `getrusage(RUSAGE_SELF)`.
pub fn own_usage() -> Option<(Duration, u64)> {
    // SAFETY: getrusage writes one rusage struct we own; zeroed is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to our struct.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).ok()?)
            .checked_add(Duration::from_micros(u64::try_from(t.tv_usec).ok()?))
    };
    let cpu = tv(ru.ru_utime)?.checked_add(tv(ru.ru_stime)?)?;
    Some((cpu, u64::try_from(ru.ru_maxrss).unwrap_or(0)))
}

/// Makes `signal` call `handler`, which must only do async-signal-safe work (an atomic store).
/// SA_RESTART keeps unrelated blocking calls from failing with EINTR; children do not inherit
/// the handler (exec resets handled signals to their default).
pub fn set_signal_handler(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: `action` is zero-initialised (a valid `sigaction`: empty mask, no flags) before the
    // fields we need are set; the caller's handler is async-signal-safe by contract.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut())
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// A child of ours in process group `pgid` that has exited: its pid and exit code (`None`
/// when a signal ended it). `None` when no member has exited (yet), or none is left.
pub fn reap_group_member(pgid: libc::pid_t) -> Option<(libc::pid_t, Option<i32>)> {
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid with WNOHANG only reads our children's state and writes the status into a
    // local; a negative pid selects that group only, so no other child of sentry is reaped.
    let pid = unsafe { libc::waitpid(-pgid, &mut status, libc::WNOHANG) };
    if pid <= 0 {
        return None; // 0: none exited yet; -1: ECHILD (none left) or EINTR (next tick)
    }
    let code = if libc::WIFEXITED(status) { Some(libc::WEXITSTATUS(status)) } else { None };
    Some((pid, code))
}

/// The exit code of child `pid` if it has exited (`Some(None)`: a signal ended it); `None`
/// while it runs or when it is not (or no longer) ours to wait for.
pub fn reap_child(pid: libc::pid_t) -> Option<Option<i32>> {
    if pid <= 0 {
        return None;
    }
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid with WNOHANG on one positive pid writes the status into a local.
    if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } != pid {
        return None;
    }
    Some(if libc::WIFEXITED(status) { Some(libc::WEXITSTATUS(status)) } else { None })
}

/// True while any process of group `pgid` exists.
pub fn group_alive(pgid: libc::pid_t) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 sends nothing, it only checks existence. A group id stays reserved by the
    // kernel while any member exists, so it cannot name another group before ESRCH.
    let r = unsafe { libc::killpg(pgid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Sends `signal` to every process of group `pgid`. Never to group 0 or 1 (killpg(0) would hit
/// sentry's own group).
pub fn signal_group(pgid: libc::pid_t, signal: libc::c_int) {
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg has no memory effects.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// Waits up to `timeout` for data or EOF on `fd`; true when it is readable.
pub fn wait_readable(fd: &impl AsRawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd on our stack, count 1, for a descriptor the caller owns.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n > 0 && p.revents != 0
}

/// Puts `fd` in non-blocking mode; false if that failed.
pub fn set_nonblocking(fd: &impl AsRawFd) -> bool {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor the caller owns; only the O_NONBLOCK status flag changes.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    }
}

/// Makes `cmd` start without a controlling terminal, so nothing it runs (ssh asking to trust a
/// host key or for a passphrase) can prompt on the terminal sentry was started from: a new
/// session (`setsid`), or, when the child already leads a process group (`process_group(0)`,
/// which std applies first and which makes `setsid` fail), `TIOCNOTTY` on its terminal.
pub fn without_terminal(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (setsid, open, ioctl, close) on no shared state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                let fd = libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
                if fd >= 0 {
                    libc::ioctl(fd, libc::TIOCNOTTY);
                    libc::close(fd);
                }
            }
            Ok(())
        });
    }
}

/// This machine's name (the pod name in Kubernetes), if the OS tells it.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned()).filter(|n| !n.is_empty())
}

/// This machine's name for notes and notifications: [`hostname`], or `unknown`.
pub fn host_label() -> String {
    hostname().unwrap_or_else(|| "unknown".into())
}

/// This process's effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no memory effects and cannot fail.
    unsafe { libc::geteuid() }
}

/// True while a process with id `pid` exists (a process of another user counts).
pub fn process_exists(pid: libc::pid_t) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 sends nothing, it only checks existence.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_usage_reads_this_process() {
        let (cpu, rss_kib) = own_usage().expect("getrusage");
        assert!(rss_kib > 0 && cpu < Duration::from_secs(3600), "{cpu:?} {rss_kib}");
    }
}

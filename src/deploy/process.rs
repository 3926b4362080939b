//! One child process in its own process group: output into a bounded tail, a deadline, and a
//! stop that reaches every process of the group (grandchildren included).
//!
//! A single loop does everything, with no helper thread: it polls the output pipe for a short
//! while, reaps what has exited, and checks the deadline and the signal flag. The job is over
//! when its shell has exited *and* its process group is empty, so a background process left
//! holding the pipe can neither hang the wait nor outlive the job.

use super::output::Tail;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Time between SIGTERM and SIGKILL (SPEC §4).
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(10);

/// How long to keep looking after SIGKILL before giving up on a process the kernel cannot kill
/// yet (uninterruptible sleep): the job must end even then.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// Longest wait on the pipe before the deadline and the reaping are looked at again.
const TICK: Duration = Duration::from_millis(100);

/// Most output read after the group is gone: a writer that escaped the group cannot keep us.
const DRAIN_LIMIT: usize = 4 << 20;

/// Why sentry stopped a process group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The deadline passed.
    Deadline,
    /// sentry received SIGTERM or SIGINT.
    Signal,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It exited on its own: the exit code, or `None` when a signal (not ours) ended it.
    Exited(Option<i32>),
    /// sentry stopped it before it exited.
    Stopped(Stop),
}

/// Runs `cmd` as the leader of a new process group until it and every process of its group are
/// gone, appending stdout and stderr (interleaved) to `out`.
///
/// At `deadline`, or when a stop is requested, the group gets SIGTERM and, after
/// [`KILL_GRACE`], SIGKILL. Processes the leader leaves behind after exiting normally are
/// stopped the same way: nothing of a job outlives it.
pub(crate) fn run(mut cmd: Command, deadline: Instant, out: &mut Tail) -> io::Result<Ended> {
    let (mut reader, writer) = io::pipe()?;
    let writer_err = writer.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(writer).stderr(writer_err).process_group(0);
    let child = cmd.spawn();
    // The command owns our copies of the write end: drop it so the pipe reports EOF once the
    // processes of the job have closed theirs.
    drop(cmd);
    let child = child?;
    let Ok(pgid) = libc::pid_t::try_from(child.id()) else {
        return Err(io::Error::other("child pid out of range"));
    };
    // The child is reaped below with waitpid on its group; `Child` is never waited on.
    drop(child);

    let mut group = Group { pgid, leader: None };
    let mut stop: Option<(Stop, Instant)> = None;
    let mut leftovers_since: Option<Instant> = None;
    let mut killed_at: Option<Instant> = None;
    let mut pipe_open = true;
    let mut buf = vec![0u8; 64 * 1024];
    let mut idle = Duration::from_millis(1);

    loop {
        if pipe_open {
            match wait_readable(&reader, TICK) {
                Readable::Yes => match reader.read(&mut buf) {
                    Ok(0) => pipe_open = false,
                    Ok(n) => out.push(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => pipe_open = false,
                },
                Readable::No => {}
            }
        } else {
            // The pipe is closed, so the shell is exiting or gone: look again soon, then less
            // often (a flat TICK here cost up to 100 ms per job and per clone, BENCHMARKS.md P4).
            std::thread::sleep(idle);
            idle = (idle * 2).min(TICK);
        }

        group.reap();
        let now = Instant::now();
        if group.leader.is_some() && !group.alive() {
            break;
        }

        if let Some(killed) = killed_at {
            if now >= killed + AFTER_KILL {
                log::warn!(pgid = pgid; "processes of a deployment survived SIGKILL; no longer waiting for them");
                break;
            }
            continue;
        }
        // When the TERM was sent: a stop of the running job, or leftovers of a finished one.
        let termed = match (stop, leftovers_since) {
            (Some((_, at)), _) | (None, Some(at)) => Some(at),
            (None, None) => None,
        };
        if let Some(at) = termed {
            if now >= at + KILL_GRACE {
                group.signal(libc::SIGKILL);
                killed_at = Some(now);
            }
            continue;
        }
        if group.leader.is_some() {
            log::debug!(pgid = pgid; "stopping processes the deployment left running");
            group.signal(libc::SIGTERM);
            leftovers_since = Some(now);
        } else if now >= deadline {
            group.signal(libc::SIGTERM);
            stop = Some((Stop::Deadline, now));
        } else if crate::signals::stop_requested() {
            group.signal(libc::SIGTERM);
            stop = Some((Stop::Signal, now));
        }
    }

    if pipe_open {
        drain(&mut reader, &mut buf, out);
    }
    Ok(match stop {
        Some((why, _)) => Ended::Stopped(why),
        None => Ended::Exited(group.leader.flatten()),
    })
}

/// A process group led by a child of ours.
struct Group {
    pgid: libc::pid_t,
    /// Set once the leader is reaped: its exit code, or `None` if a signal ended it.
    leader: Option<Option<i32>>,
}

impl Group {
    /// Reaps every exited child of ours in the group: the leader, and orphaned grandchildren
    /// when sentry is PID 1 (in a container) and so inherits them.
    fn reap(&mut self) {
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: waitpid with WNOHANG only reads our children's state and writes the
            // status into a local; a negative pid selects the job's own group, so no child of
            // another part of sentry is ever reaped here.
            let pid = unsafe { libc::waitpid(-self.pgid, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return; // 0: none exited yet; -1: ECHILD (none left) or EINTR (next tick)
            }
            if pid == self.pgid {
                self.leader = Some(if libc::WIFEXITED(status) { Some(libc::WEXITSTATUS(status)) } else { None });
            }
        }
    }

    /// True while any process of the group exists.
    fn alive(&self) -> bool {
        // SAFETY: signal 0 sends nothing, it only checks existence. Safe to call with our pgid:
        // a group id stays reserved by the kernel while any member exists, so it cannot name
        // another group before ESRCH says this one is empty.
        let r = unsafe { libc::killpg(self.pgid, 0) };
        r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }

    /// Sends `signal` to every process of the group.
    fn signal(&self, signal: libc::c_int) {
        // Never 0 or 1: killpg(0) would hit sentry's own group.
        if self.pgid <= 1 {
            return;
        }
        // SAFETY: killpg has no memory effects; the pgid is the group our child created with
        // process_group(0), still reserved because the caller saw a member alive.
        unsafe {
            libc::killpg(self.pgid, signal);
        }
    }
}

enum Readable {
    Yes,
    No,
}

/// Waits up to `timeout` for data or EOF on the pipe.
fn wait_readable(reader: &io::PipeReader, timeout: Duration) -> Readable {
    let mut fd = libc::pollfd { fd: reader.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd on our stack, count 1, for a descriptor we own for the whole call.
    let n = unsafe { libc::poll(&mut fd, 1, ms) };
    if n > 0 && fd.revents != 0 { Readable::Yes } else { Readable::No }
}

/// Reads what is left in the pipe without blocking (a writer outside the group may hold it).
fn drain(reader: &mut io::PipeReader, buf: &mut [u8], out: &mut Tail) {
    let fd = reader.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; only the O_NONBLOCK status flag is changed.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    if !ok {
        return;
    }
    let mut total = 0;
    while total < DRAIN_LIMIT {
        match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => {
                out.push(&buf[..n]);
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

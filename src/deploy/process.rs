//! One child process in its own process group: output into a bounded tail, a deadline, and a
//! stop that reaches every process of the group (grandchildren included).
//!
//! A single loop does everything, with no helper thread: it polls the output pipe for a short
//! while, reaps what has exited, and checks the deadline and the signal flag. The job is over
//! when its shell has exited *and* its process group is empty, so a background process left
//! holding the pipe can neither hang the wait nor outlive the job.

use super::output::Tail;
use crate::sys::{JobEnv, JobStdio};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::process::Command;
use std::time::{Duration, Instant};

/// How often a running job logs that it is still running.
const HEARTBEAT: Duration = Duration::from_secs(60);

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

/// A process of a job to start: the command (program, arguments, environment changes,
/// directory), whether its environment was cleared, and the descriptor it inherits (the lock).
pub(crate) struct Spawn<'a> {
    /// What to run.
    pub cmd: &'a Command,
    /// Whether `cmd` was built with `env_clear`.
    pub env: JobEnv,
    /// A descriptor the process keeps open (the state lock), if any.
    pub keep: Option<RawFd>,
}

/// Runs a job's process as the leader of a new session and process group until it and every
/// process of its group are gone, appending stdout and stderr (interleaved) to `out`. It
/// dies with sentry and inherits the lock ([`crate::sys::spawn_job`]).
///
/// At `deadline`, or when a stop is requested, the group gets SIGTERM and, after
/// `grace`, SIGKILL. Processes the leader leaves behind after exiting normally are
/// stopped the same way: nothing of a job outlives it.
pub(crate) fn run(job: Spawn<'_>, deadline: Instant, grace: Duration, out: &mut Tail) -> io::Result<Ended> {
    let (mut reader, writer) = io::pipe()?;
    let null = File::open("/dev/null")?;
    let fd = writer.as_raw_fd();
    let stdio = JobStdio { stdin: null.as_raw_fd(), stdout: fd, stderr: fd };
    let pgid = crate::sys::spawn_job(job.cmd, job.env, stdio, job.keep)?;
    // Drop our write end so the pipe reports EOF once the processes of the job have closed theirs.
    drop(writer);
    drop(null);

    let mut group = Group { pgid, leader: None };
    let mut stop: Option<(Stop, Instant)> = None;
    let mut leftovers_since: Option<Instant> = None;
    let mut killed_at: Option<Instant> = None;
    let mut pipe_open = true;
    let mut buf = vec![0u8; 64 * 1024];
    let mut idle = Duration::from_millis(1);

    let started = Instant::now();
    let mut beat = started;
    loop {
        // A long job says it is alive (SPEC §5): elapsed time and its last line.
        if beat.elapsed() >= HEARTBEAT {
            beat = Instant::now();
            let (repo, branch) = out.job();
            log::info!(
                repo = repo, branch = branch, elapsed_s = started.elapsed().as_secs(), last = out.last_line();
                "still running"
            );
        }
        if pipe_open {
            if crate::sys::wait_readable(&reader, TICK) {
                match reader.read(&mut buf) {
                    Ok(0) => pipe_open = false,
                    Ok(n) => out.push(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => pipe_open = false,
                }
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
            if at.checked_add(grace).is_none_or(|end| now >= end) {
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
        while let Some((pid, code)) = crate::sys::reap_group_member(self.pgid) {
            if pid == self.pgid {
                self.leader = Some(code);
            }
        }
        // A leader killed before it made its group (a signal in the instant after it started)
        // is in no group: wait for it by pid, or the job would wait for its deadline.
        if self.leader.is_none()
            && let Some(code) = crate::sys::reap_child(self.pgid)
        {
            self.leader = Some(code);
        }
    }

    /// True while any process of the group exists.
    fn alive(&self) -> bool {
        crate::sys::group_alive(self.pgid)
    }

    /// Sends `signal` to every process of the group.
    fn signal(&self, signal: libc::c_int) {
        crate::sys::signal_group(self.pgid, signal);
    }
}

/// Reads what is left in the pipe without blocking (a writer outside the group may hold it).
fn drain(reader: &mut io::PipeReader, buf: &mut [u8], out: &mut Tail) {
    if !crate::sys::set_nonblocking(reader) {
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

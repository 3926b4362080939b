//! Deploy engine: clone the QA repository, run its commands, group strategies and timeouts.
//!
//! A job (SPEC §4) gets a private directory under `tmp_dir`:
//!
//! ```text
//! <tmp_dir>/<repo>-<branch>-XXXXXXXX/ mode 0700, removed afterwards when `cleanup: true`
//!     repo/        the shallow clone; SENTRY_QA_DIR and where the commands start
//!     tmp/         the commands' TMPDIR (0700)
//!     script.sh    the commands, one `sh` session (see `script`), 0600
//!     progress     index of the command running, created by sentry (0600), written by the script
//! ```
//!
//! `tmp_dir` must be safe from other users, and sentry's own files in a job directory are made
//! and read through directory handles without following links (see `dir`).
//!
//! The clone and the shell each run as their own process group (see `process`); the job's
//! deadline is the sooner of `global.timeout` from its start and its group's `global_timeout`.
//! Both inherit the run's state lock (see [`Context::lock`]) and are killed if sentry dies.
//! A stop requested by SIGTERM/SIGINT ends a running job as `failed` with the error
//! "stopped by signal" (it did not run out of time: the deployment was interrupted), and jobs
//! not yet started as `skipped`.

mod batch;
mod on_failure;
mod output;
mod process;
mod script;

pub use batch::{Batch, run_batches, run_batches_with};
pub use script::InheritedEnv;

use crate::config::Repository;
use crate::model::{DeploymentRecord, FailedCommand, Job, JobStatus, OnFailureOutcome};
use crate::secret::{Redactor, Secret};
use crate::sys::JobEnv;
use crate::workdir::{self as dir, JobDir};
use output::Tail;
use process::{Ended, Stop};
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every job of a run shares.
#[derive(Clone, Debug)]
pub struct Context {
    /// Where job directories are made (created if missing).
    pub tmp_dir: PathBuf,
    /// Remove each job directory afterwards.
    pub cleanup: bool,
    /// Longest a single job (clone + commands) may take.
    pub timeout: Duration,
    /// The run's id, given to the commands as SENTRY_RUN_ID.
    pub run_id: String,
    /// Scrubs every configured token from output and messages.
    pub redactor: Redactor,
    /// Every token of the configuration: never in the commands' environment.
    pub strip_env: Vec<Secret>,
    /// The environment jobs inherit, `strip_env` applied once for the whole run.
    pub inherited: InheritedEnv,
    /// How long a timed-out job's processes get between SIGTERM and SIGKILL (SPEC §4: 10 s).
    pub kill_grace: Duration,
    /// The run's state lock (a file lock), inherited by every process of every job: the lock
    /// is held as long as any of them lives, even after sentry was killed (SPEC §3).
    pub lock: Option<Arc<File>>,
}

impl Context {
    /// The descriptor job processes inherit, if any.
    fn lock_fd(&self) -> Option<RawFd> {
        self.lock.as_ref().map(|f| f.as_raw_fd())
    }
}

/// SPEC §4: SIGTERM, then SIGKILL after this long.
pub const KILL_GRACE: Duration = Duration::from_secs(10);

/// The outcome of one job: the data of a SPEC §5 `deployments` entry.
#[derive(Clone, Debug)]
pub struct JobResult {
    /// The job as planned.
    pub job: Job,
    /// How it ended.
    pub status: JobStatus,
    /// The command it failed or was stopped at, if it got to the commands.
    pub failed_command: Option<FailedCommand>,
    /// Why it did not succeed, e.g. "clone failed: ..." or "timed out after 300s"; redacted.
    pub error: Option<String>,
    /// From start to end (zero when skipped).
    pub duration: Duration,
    /// The last 64 KiB of the clone's and the commands' output, redacted.
    pub output_tail: String,
    /// The job directory, when kept (`cleanup: false`).
    pub kept_dir: Option<PathBuf>,
    /// How `deploy.on_failure` ended, if it ran.
    pub on_failure: Option<OnFailureOutcome>,
}

impl JobResult {
    /// The record of this outcome: what the summary, the notifications and the history show.
    pub fn record(&self) -> DeploymentRecord {
        DeploymentRecord {
            duration_ms: u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            failed_command: self.failed_command.clone(),
            output_tail: self.output_tail.clone(),
            on_failure: self.on_failure,
            ..DeploymentRecord::planned(&self.job, self.status, self.error.clone())
        }
    }

    /// A job that never started, with the reason.
    pub fn skipped(job: Job, why: impl Into<String>) -> JobResult {
        JobResult {
            job,
            status: JobStatus::Skipped,
            failed_command: None,
            error: Some(why.into()),
            duration: Duration::ZERO,
            output_tail: String::new(),
            kept_dir: None,
            on_failure: None,
        }
    }
}

/// Longest wait for the credential-less second look at a refused redirect.
const REDIRECT_PROBE: Duration = Duration::from_secs(30);

/// Longest branch part of a job directory's name.
const DIR_BRANCH_MAX: usize = 40;

/// Runs one job: private directory, shallow clone, commands. `deadline` is the group's, if any.
pub fn run_job(ctx: &Context, repo: &Repository, job: &Job, deadline: Option<Instant>) -> JobResult {
    if let Some(why) = skip_reason(job, deadline) {
        log_skipped(job, &why);
        return JobResult::skipped(job.clone(), why);
    }
    // Debug builds only: lets the test suite prove a panicking job costs that job only.
    #[cfg(debug_assertions)]
    if std::env::var_os("SENTRY_TEST_PANIC_IN_JOB").is_some_and(|v| v == job.repo.as_str()) {
        panic!("injected by SENTRY_TEST_PANIC_IN_JOB");
    }
    let started = Instant::now();
    log::info!(
        repo = job.repo.as_str(), group = job.group.as_deref().unwrap_or(""), branch = job.branch.as_str(),
        commit = job.commit.as_str(), attempt = job.attempt, reason = job.reason.as_str();
        "deployment started"
    );
    let limit = Limit::new(ctx, job, started, deadline);
    let mut tail = Tail::new(ctx.redactor.clone(), (job.repo.clone(), job.branch.clone()));

    let mut on_failure = None;
    let (status, failed_command, error, dir) = match make_dir(ctx, job) {
        Ok(dir) => {
            let (status, failed, error) = clone_and_run(ctx, repo, job, &dir, &limit, &mut tail);
            if matches!(status, JobStatus::Failed | JobStatus::TimedOut) && !repo.deploy.on_failure.is_empty() {
                let failed = failed.as_ref().filter(|_| status == JobStatus::Failed);
                on_failure = Some(on_failure::run(ctx, repo, job, &dir, failed, &mut tail));
            }
            (status, failed, error, Some(dir.path))
        }
        Err(e) => {
            let error = format!("cannot create the job directory under {}: {e}", ctx.tmp_dir.display());
            (JobStatus::FailedToStart, None, Some(error), None)
        }
    };
    let error = error.map(|e| ctx.redactor.redact(&e));
    if let Some(e) = &error {
        tail.note(e);
    }
    let output_tail = tail.finish();

    let kept_dir = dir.and_then(|dir| {
        if ctx.cleanup {
            if let Err(e) = dir::remove(&dir) {
                log::warn!(repo = job.repo.as_str(), path = dir.display().to_string(); "cannot remove the deployment directory: {e}");
            }
            None
        } else {
            log::info!(repo = job.repo.as_str(), branch = job.branch.as_str(), path = dir.display().to_string(); "deployment directory kept");
            Some(dir)
        }
    });

    let duration = started.elapsed();
    let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if status == JobStatus::Succeeded {
        log::info!(
            repo = job.repo.as_str(), branch = job.branch.as_str(), commit = job.commit.as_str(),
            status = status.as_str(), duration_ms = duration_ms;
            "deployment finished"
        );
    } else {
        // Numbers stay numbers in JSON logs: fields that do not apply are left out, not "".
        let error = error.as_deref().unwrap_or("");
        match failed_command.as_ref().map(|f| (f.index, f.exit_code)) {
            Some((index, Some(code))) => log::warn!(
                repo = job.repo.as_str(), branch = job.branch.as_str(), commit = job.commit.as_str(),
                status = status.as_str(), duration_ms = duration_ms, command = index, exit_code = code, error = error;
                "deployment finished"
            ),
            Some((index, None)) => log::warn!(
                repo = job.repo.as_str(), branch = job.branch.as_str(), commit = job.commit.as_str(),
                status = status.as_str(), duration_ms = duration_ms, command = index, error = error;
                "deployment finished"
            ),
            None => log::warn!(
                repo = job.repo.as_str(), branch = job.branch.as_str(), commit = job.commit.as_str(),
                status = status.as_str(), duration_ms = duration_ms, error = error;
                "deployment finished"
            ),
        }
    }
    JobResult { job: job.clone(), status, failed_command, error, duration, output_tail, kept_dir, on_failure }
}

/// Why a job must not start now, if it must not.
pub(crate) fn skip_reason(job: &Job, deadline: Option<Instant>) -> Option<String> {
    if crate::signals::stop_requested() {
        return Some("not started: stop requested by signal".into());
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
        let group = job.group.as_deref().unwrap_or("");
        return Some(format!("not started: global_timeout of group {group} expired"));
    }
    None
}

/// Logs a job that was not started.
pub(crate) fn log_skipped(job: &Job, why: &str) {
    log::info!(repo = job.repo.as_str(), branch = job.branch.as_str(), commit = job.commit.as_str(), why = why; "deployment skipped");
}

/// A job's deadline and which limit it comes from, for the message.
struct Limit {
    at: Instant,
    message: String,
}

impl Limit {
    fn new(ctx: &Context, job: &Job, started: Instant, group_deadline: Option<Instant>) -> Limit {
        // An absurd timeout that overflows the clock means "no practical limit".
        let own = started
            .checked_add(ctx.timeout)
            .or_else(|| started.checked_add(Duration::from_secs(365 * 86_400)))
            .unwrap_or(started);
        match group_deadline {
            Some(g) if g < own => Limit {
                at: g,
                message: format!("global_timeout of group {} expired", job.group.as_deref().unwrap_or("")),
            },
            _ => Limit { at: own, message: format!("timed out after {}", human_secs(ctx.timeout)) },
        }
    }
}

fn human_secs(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{:.1}s", d.as_secs_f64()) }
}

/// The clone and the commands; returns status, failed command and error.
fn clone_and_run(
    ctx: &Context,
    repo: &Repository,
    job: &Job,
    job_dir: &JobDir,
    limit: &Limit,
    tail: &mut Tail,
) -> (JobStatus, Option<FailedCommand>, Option<String>) {
    let dir = job_dir.path.as_path();
    let qa_dir = dir.join("repo");
    let tmp = match job_dir.subdir("tmp") {
        Ok(tmp) => tmp,
        Err(e) => return (JobStatus::FailedToStart, None, Some(format!("cannot create the job's TMPDIR: {e}"))),
    };

    // Clone.
    let d = &repo.deploy;
    let mut clone = crate::gitcmd::command(&d.qa_repo_url, &d.auth, d.kind);
    clone
        .args(["clone", "--quiet", "--depth", "1", "--single-branch", "--no-tags", "--branch", &d.qa_repo_branch, "--"])
        .arg(&d.qa_repo_url)
        .arg(&qa_dir)
        .current_dir(dir)
        .env("TMPDIR", &tmp);
    // Git needs none of sentry's own tokens (its credentials are in GIT_CONFIG_*).
    for k in &ctx.inherited.get(&ctx.strip_env).stripped {
        clone.env_remove(k);
    }
    let cloning = Instant::now();
    let job_clone = process::Spawn { cmd: &clone, env: JobEnv::Inherit, keep: ctx.lock_fd() };
    match process::run(job_clone, limit.at, ctx.kill_grace, tail) {
        Ok(Ended::Exited(Some(0))) => {
            // How much of a deployment is the clone: worth seeing when deployments feel slow.
            log::info!(
                repo = job.repo.as_str(), branch = job.branch.as_str(),
                duration_ms = u64::try_from(cloning.elapsed().as_millis()).unwrap_or(u64::MAX);
                "deploy repository cloned"
            );
        }
        Ok(Ended::Exited(code)) => {
            let code = code.map_or("killed by a signal".to_string(), |c| format!("exit code {c}"));
            let last = tail.last_lines(1).pop().unwrap_or_default();
            if crate::gitcmd::refused_redirect(&last) {
                // Name where it was sent, asked again without credentials (bounded by the job).
                let left = limit.at.saturating_duration_since(Instant::now()).min(REDIRECT_PROBE);
                let target = crate::gitcmd::redirect_target(&d.qa_repo_url, left);
                let why = crate::gitcmd::redirect_error(&d.qa_repo_url, target.as_deref());
                return (JobStatus::FailedToStart, None, Some(format!("clone failed: {why}")));
            }
            // The cause, not git's closing advice ("Please make sure you have the correct
            // access rights"): the telling lines, and what to check for this transport.
            let why = crate::gitcmd::explain(&tail.last_lines(30).join("\n"), &d.qa_repo_url);
            return (
                JobStatus::FailedToStart,
                None,
                Some(format!(
                    "clone failed ({code}): {}{}{}",
                    why.summary,
                    crate::gitcmd::proxy_for(&d.qa_repo_url)
                        .map(|p| format!(" (through proxy {p})"))
                        .unwrap_or_default(),
                    why.hint
                )),
            );
        }
        Ok(Ended::Stopped(why)) => {
            let (status, error) = stopped(why, limit);
            return (status, None, Some(format!("{error} while cloning")));
        }
        Err(e) => return (JobStatus::FailedToStart, None, Some(format!("clone failed: cannot run git: {e}"))),
    }

    // Commands.
    if d.commands.is_empty() {
        return (JobStatus::Succeeded, None, None);
    }
    // Created by sentry, so the file it reads back is its own (the script only truncates it).
    let progress = match job_dir.write_private("progress", b"") {
        Ok(p) => p,
        Err(e) => return (JobStatus::FailedToStart, None, Some(format!("cannot create the progress file: {e}"))),
    };
    let script_path = match job_dir.write_private("script.sh", &script::script(&d.commands, &progress)) {
        Ok(p) => p,
        Err(e) => return (JobStatus::FailedToStart, None, Some(format!("cannot write the job script: {e}"))),
    };
    let env = script::environment(
        &ctx.inherited.get(&ctx.strip_env).kept,
        &script::JobEnv { repo, job, qa_dir: &qa_dir, tmp: &tmp, run_id: &ctx.run_id },
    );
    let mut sh = Command::new("sh");
    sh.arg(&script_path).current_dir(&qa_dir).env_clear().envs(env);
    let ended = process::run(
        process::Spawn { cmd: &sh, env: JobEnv::Cleared, keep: ctx.lock_fd() },
        limit.at,
        ctx.kill_grace,
        tail,
    );
    let index = job_dir.read_small("progress").ok().as_deref().and_then(script::running_index);
    let failed = |exit_code| {
        let (index, command) = index.and_then(|i| d.commands.get(i).map(|c| (i, c)))?;
        Some(FailedCommand { index, command: ctx.redactor.redact(command), exit_code })
    };
    match ended {
        Ok(Ended::Exited(Some(0))) => (JobStatus::Succeeded, None, None),
        Ok(Ended::Exited(code)) => {
            let f = failed(code);
            let error = match (&f, code) {
                (Some(f), Some(c)) => format!("command {} failed with exit code {c}", f.index),
                (Some(f), None) => format!("command {} was killed by a signal", f.index),
                (None, _) => "the shell failed before the first command".to_string(),
            };
            (JobStatus::Failed, f, Some(error))
        }
        Ok(Ended::Stopped(why)) => {
            let (status, error) = stopped(why, limit);
            (status, failed(None), Some(error))
        }
        Err(e) => (JobStatus::Failed, None, Some(format!("cannot run sh: {e}"))),
    }
}

/// Status and message of a job sentry stopped.
fn stopped(why: Stop, limit: &Limit) -> (JobStatus, String) {
    match why {
        Stop::Deadline => (JobStatus::TimedOut, limit.message.clone()),
        Stop::Signal => (JobStatus::Interrupted, "stopped by signal".to_string()),
    }
}

/// Creates the job's private directory (0700), unique even for jobs started together.
fn make_dir(ctx: &Context, job: &Job) -> std::io::Result<JobDir> {
    let prefix = format!("{}-{}-", script::sanitize(&job.repo, 64), script::sanitize(&job.branch, DIR_BRANCH_MAX));
    JobDir::create(&ctx.tmp_dir, &prefix)
}

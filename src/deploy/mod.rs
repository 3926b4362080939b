//! Deploy engine: clone the QA repository, run its commands, group strategies and timeouts.
//!
//! A job (SPEC §4) gets a private directory under `tmp_dir`:
//!
//! ```text
//! <tmp_dir>/<repo>-<branch>-XXXXXX/   mode 0700, removed afterwards when `cleanup: true`
//!     repo/        the shallow clone; SENTRY_QA_DIR and where the commands start
//!     tmp/         the commands' TMPDIR
//!     script.sh    the commands, one `sh` session (see `script`)
//!     progress     index of the command running, written by the script
//! ```
//!
//! The clone and the shell each run as their own process group (see `process`); the job's
//! deadline is the sooner of `global.timeout` from its start and its group's `global_timeout`.
//! A stop requested by SIGTERM/SIGINT ends a running job as `failed` with the error
//! "stopped by signal" (it did not run out of time: the deployment was interrupted), and jobs
//! not yet started as `skipped`.

mod batch;
mod output;
mod process;
mod script;

pub use batch::{Batch, run_batches};

use crate::config::Repository;
use crate::model::{DeploymentRecord, FailedCommand, Job, JobStatus};
use crate::secret::{Redactor, Secret};
use output::Tail;
use process::{Ended, Stop};
use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
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
    /// How long a timed-out job's processes get between SIGTERM and SIGKILL (SPEC §4: 10 s).
    pub kill_grace: Duration,
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
}

impl JobResult {
    /// The record of this outcome: what the summary, the notifications and the history show.
    pub fn record(&self) -> DeploymentRecord {
        DeploymentRecord {
            duration_ms: u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            failed_command: self.failed_command.clone(),
            output_tail: self.output_tail.clone(),
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
        }
    }
}

/// Lines of output repeated in the log when a job fails.
const LOGGED_LINES: usize = 10;

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
        commit = job.commit.short(), attempt = job.attempt, reason = job.reason.as_str();
        "deployment started"
    );
    let limit = Limit::new(ctx, job, started, deadline);
    let mut tail = Tail::new(ctx.redactor.clone(), format!("{}/{}", job.repo, job.branch));

    let (status, failed_command, error, dir) = match make_dir(ctx, job) {
        Ok(dir) => {
            let (status, failed, error) = clone_and_run(ctx, repo, job, &dir, &limit, &mut tail);
            (status, failed, error, Some(dir))
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
    let lines = tail.last_lines(LOGGED_LINES);
    let output_tail = tail.finish();

    let kept_dir = dir.and_then(|dir| {
        if ctx.cleanup {
            if let Err(e) = remove_dir(&dir) {
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
            repo = job.repo.as_str(), branch = job.branch.as_str(), commit = job.commit.short(),
            status = status.as_str(), duration_ms = duration_ms;
            "deployment finished"
        );
    } else {
        for line in &lines {
            log::warn!(repo = job.repo.as_str(), branch = job.branch.as_str(); "| {line}");
        }
        log::warn!(
            repo = job.repo.as_str(), branch = job.branch.as_str(), commit = job.commit.short(),
            status = status.as_str(), duration_ms = duration_ms,
            command = failed_command.as_ref().map(|f| f.index.to_string()).unwrap_or_default(),
            exit_code = failed_command.as_ref().and_then(|f| f.exit_code).map(|c| c.to_string()).unwrap_or_default(),
            error = error.as_deref().unwrap_or("");
            "deployment finished"
        );
    }
    JobResult { job: job.clone(), status, failed_command, error, duration, output_tail, kept_dir }
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
    log::info!(repo = job.repo.as_str(), branch = job.branch.as_str(), commit = job.commit.short(), why = why; "deployment skipped");
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
    dir: &Path,
    limit: &Limit,
    tail: &mut Tail,
) -> (JobStatus, Option<FailedCommand>, Option<String>) {
    let qa_dir = dir.join("repo");
    let tmp = dir.join("tmp");
    if let Err(e) = fs::create_dir(&tmp) {
        return (JobStatus::FailedToStart, None, Some(format!("cannot create the job's TMPDIR: {e}")));
    }

    // Clone.
    let d = &repo.deploy;
    let mut clone = crate::gitcmd::command_for(&d.auth, d.kind, &d.qa_repo_url);
    clone
        .args(["clone", "--depth", "1", "--single-branch", "--no-tags", "--branch", &d.qa_repo_branch, "--"])
        .arg(&d.qa_repo_url)
        .arg(&qa_dir)
        .current_dir(dir)
        .env("TMPDIR", &tmp);
    // Git needs none of sentry's own tokens (its credentials are in GIT_CONFIG_*).
    for (k, v) in std::env::vars_os() {
        if script::holds_token(&v, &ctx.strip_env) {
            clone.env_remove(k);
        }
    }
    let cloning = Instant::now();
    match process::run(clone, limit.at, ctx.kill_grace, tail) {
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
    let progress = dir.join("progress");
    let script_path = dir.join("script.sh");
    if let Err(e) = write_private(&script_path, &script::script(&d.commands, &progress)) {
        return (JobStatus::FailedToStart, None, Some(format!("cannot write the job script: {e}")));
    }
    let env = script::environment(
        std::env::vars_os(),
        &ctx.strip_env,
        &script::JobEnv { repo, job, qa_dir: &qa_dir, tmp: &tmp, run_id: &ctx.run_id },
    );
    let mut sh = Command::new("sh");
    sh.arg(&script_path).current_dir(&qa_dir).env_clear().envs(env);
    let ended = process::run(sh, limit.at, ctx.kill_grace, tail);
    let index = fs::read_to_string(&progress).ok().as_deref().and_then(script::running_index);
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
fn make_dir(ctx: &Context, job: &Job) -> io::Result<PathBuf> {
    fs::create_dir_all(&ctx.tmp_dir)?;
    // Absolute, so paths handed to the shell stay valid after a `cd`.
    let base = fs::canonicalize(&ctx.tmp_dir)?;
    let prefix = format!("{}-{}-", script::sanitize(&job.repo, 64), script::sanitize(&job.branch, DIR_BRANCH_MAX));
    let dir =
        tempfile::Builder::new().prefix(&prefix).permissions(fs::Permissions::from_mode(0o700)).tempdir_in(base)?;
    Ok(dir.keep())
}

/// Writes a file only its owner can read (the script may hold expanded values).
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)
}

/// Removes a job directory, first making read-only directories writable (a clone can hold some).
fn remove_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(first) => {
            make_writable(dir);
            fs::remove_dir_all(dir).map_err(|_| first)
        }
    }
}

fn make_writable(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&entry.path());
            }
        }
    }
}

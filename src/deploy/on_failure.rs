//! `deploy.on_failure` (SPEC §4 v2): commands run after a failed or timed-out deployment, in
//! the same job directory and shell setup as the deployment's own, under a timeout of their
//! own. Their outcome is reported; it never changes the deployment's status.

use super::output::Tail;
use super::process::{self, Ended, Stop};
use super::{Context, script};
use crate::config::Repository;
use crate::model::{FailedCommand, Job, JobStatus, OnFailureOutcome};
use crate::sys::JobEnv;
use crate::workdir::JobDir;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Runs `repo.deploy.on_failure` in `dir` (the job directory, with the clone in `repo/`).
/// `failed` is the command the deployment stopped at; `None` after a timeout.
pub(super) fn run(
    ctx: &Context,
    repo: &Repository,
    job: &Job,
    job_dir: &JobDir,
    failed: Option<&FailedCommand>,
    tail: &mut Tail,
) -> OnFailureOutcome {
    let commands = &repo.deploy.on_failure;
    let dir: &Path = &job_dir.path;
    let (qa_dir, tmp) = (dir.join("repo"), dir.join("tmp"));
    let progress = dir.join("on_failure.progress");
    tail.note("running on_failure");
    log::info!(repo = job.repo.as_str(), branch = job.branch.as_str(); "deployment failed: running on_failure");
    // Made through the job directory's handle, never through a link (SPEC §4 "Files").
    let script_path = match job_dir.write_private("on_failure.sh", &script::script(commands, &progress)) {
        Ok(p) => p,
        Err(e) => return failure(tail, format!("cannot write the on_failure script: {e}")),
    };
    let mut env = script::environment(
        &ctx.inherited.get(&ctx.strip_env).kept,
        &script::JobEnv { repo, job, qa_dir: &qa_dir, tmp: &tmp, run_id: &ctx.run_id },
    );
    let extra: [(&str, String); 2] = [
        ("SENTRY_FAILED_COMMAND", failed.map(|f| f.index.to_string()).unwrap_or_default()),
        ("SENTRY_LAST_GOOD_COMMIT", job.previous.as_ref().map(|s| s.to_string()).unwrap_or_default()),
    ];
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((OsString::from(k), OsString::from(v)));
    }
    let start = Instant::now();
    // A timeout of its own: the deployment may have used all of its time.
    let deadline = start.checked_add(ctx.timeout).unwrap_or(start);
    let mut sh = Command::new("sh");
    sh.arg(&script_path).current_dir(if qa_dir.is_dir() { qa_dir.as_path() } else { dir }).env_clear().envs(env);
    // Like the deployment's own shell: it inherits the state lock and dies with sentry.
    let spawn = process::Spawn { cmd: &sh, env: JobEnv::Cleared, keep: ctx.lock_fd() };
    let outcome = match process::run(spawn, deadline, ctx.kill_grace, tail) {
        Ok(Ended::Exited(Some(0))) => OnFailureOutcome { status: JobStatus::Succeeded, exit_code: Some(0) },
        Ok(Ended::Exited(code)) => OnFailureOutcome { status: JobStatus::Failed, exit_code: code },
        Ok(Ended::Stopped(Stop::Deadline)) => OnFailureOutcome { status: JobStatus::TimedOut, exit_code: None },
        Ok(Ended::Stopped(Stop::Signal)) => OnFailureOutcome { status: JobStatus::Interrupted, exit_code: None },
        Err(e) => return failure(tail, format!("cannot run sh for on_failure: {e}")),
    };
    match outcome.exit_code {
        Some(code) => log::info!(
            repo = job.repo.as_str(), branch = job.branch.as_str(), status = outcome.status.as_str(), exit_code = code;
            "on_failure finished"
        ),
        None => log::info!(
            repo = job.repo.as_str(), branch = job.branch.as_str(), status = outcome.status.as_str();
            "on_failure finished"
        ),
    }
    outcome
}

/// on_failure could not run at all: noted in the output, reported as failed.
fn failure(tail: &mut Tail, why: String) -> OnFailureOutcome {
    tail.note(&why);
    OnFailureOutcome { status: JobStatus::Failed, exit_code: None }
}

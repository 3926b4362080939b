//! How a deployment ended, as one record: the summary, the notifications and (later) the
//! history all read this type, so they cannot disagree.

use super::{FailedCommand, Job, Reason, Sha};
use serde::{Deserialize, Serialize, Serializer};

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Cloned and every command exited 0.
    Succeeded,
    /// A command failed.
    Failed,
    /// The job failed before its first command (the job directory, the clone): counts no
    /// attempt, so a deploy host that is down never parks a good commit (SPEC §4). Shown as
    /// `failed`.
    FailedToStart,
    /// Stopped at `global.timeout` or the group's `global_timeout`.
    TimedOut,
    /// Never started (an earlier failure, the group's deadline, a stop request; a dry run).
    Skipped,
    /// Not deployed: a filter (`paths`, a skip marker) says the change does not matter. The
    /// head is recorded as seen; no attempt, no notification.
    Filtered,
    /// sentry was asked to stop (SIGTERM/SIGINT) while it ran. Says nothing about the commit:
    /// no attempt is counted. Shown as `failed` (SPEC §5 has no other word for it).
    Interrupted,
}

impl JobStatus {
    /// The SPEC §5 spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed | JobStatus::FailedToStart | JobStatus::Interrupted => "failed",
            JobStatus::TimedOut => "timed_out",
            JobStatus::Skipped => "skipped",
            JobStatus::Filtered => "filtered",
        }
    }

    /// True for what makes the run exit 1 and stops a group without `continue_on_error`.
    pub fn is_failure(self) -> bool {
        matches!(self, JobStatus::Failed | JobStatus::FailedToStart | JobStatus::TimedOut | JobStatus::Interrupted)
    }

    /// True when the outcome is recorded and announced (skipped and interrupted jobs are not).
    pub fn is_verdict(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::FailedToStart | JobStatus::TimedOut)
    }
}

impl Serialize for JobStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One deployment, planned or finished: a SPEC §5 `deployments` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    /// Repository name.
    pub repo: String,
    /// Its group.
    pub group: Option<String>,
    /// The branch (empty for a tag, written `null` as history writes it).
    #[serde(serialize_with = "empty_as_null", deserialize_with = "null_as_empty", default)]
    pub branch: String,
    /// The tag, when a tag was deployed (`null` for a branch).
    #[serde(default)]
    pub tag: Option<String>,
    /// The commit deployed.
    pub commit: Sha,
    /// The commit deployed before, if any.
    pub previous_commit: Option<Sha>,
    /// How it ended.
    pub status: JobStatus,
    /// Why it was planned.
    pub reason: Reason,
    /// Which attempt at this commit.
    pub attempt: u32,
    /// How long it took.
    pub duration_ms: u64,
    /// The command that failed, if one did.
    pub failed_command: Option<FailedCommand>,
    /// Why it failed when no command did (clone, timeout, signal); redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The end of the output, redacted.
    pub output_tail: String,
    /// How `deploy.on_failure` ended, if it ran (it never changes `status`).
    #[serde(default)]
    pub on_failure: Option<OnFailureOutcome>,
}

/// An empty string as `null` (a tag deployment's branch).
fn empty_as_null<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    if v.is_empty() { s.serialize_none() } else { s.serialize_str(v) }
}

/// `null` (or an empty string, as older states stored it) as an empty string.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// How `deploy.on_failure` ended (SPEC §5 `on_failure`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnFailureOutcome {
    /// succeeded, failed or timed_out.
    pub status: JobStatus,
    /// The exit code of its last command, if it exited.
    pub exit_code: Option<i32>,
}

impl DeploymentRecord {
    /// The record of `job` before (or without) running it: a dry run's plan, a skipped job.
    pub fn planned(job: &Job, status: JobStatus, error: Option<String>) -> DeploymentRecord {
        DeploymentRecord {
            repo: job.repo.clone(),
            group: job.group.clone(),
            branch: if job.tag { String::new() } else { job.branch.clone() },
            tag: job.tag.then(|| job.branch.clone()),
            commit: job.commit.clone(),
            previous_commit: job.previous.clone(),
            status,
            reason: job.reason,
            attempt: job.attempt,
            duration_ms: 0,
            failed_command: None,
            error,
            output_tail: String::new(),
            on_failure: None,
        }
    }

    /// What went wrong, in one sentence: the failed command, else the error, else the status.
    pub fn failure_text(&self) -> String {
        match (&self.failed_command, &self.error) {
            (Some(f), _) => f.to_string(),
            (None, Some(e)) => e.clone(),
            (None, None) => self.status.as_str().replace('_', " "),
        }
    }

    /// The branch or the tag.
    pub fn ref_name(&self) -> &str {
        self.tag.as_deref().unwrap_or(&self.branch)
    }

    /// `repo/branch/commit/attempt` (`repo/tags/tag/commit/attempt` for a tag): one
    /// notification per deployment attempt.
    pub fn id(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}/tags/{t}/{}/{}", self.repo, self.commit, self.attempt),
            None => format!("{}/{}/{}/{}", self.repo, self.branch, self.commit, self.attempt),
        }
    }
}

/// A finished deployment as announced to webhooks: the record plus where and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Always `deployment`.
    pub event: String,
    /// The run that deployed.
    pub run_id: String,
    /// The machine (pod) it ran on.
    pub host: String,
    /// When it finished (RFC 3339).
    pub finished_at: String,
    /// What happened.
    #[serde(flatten)]
    pub record: DeploymentRecord,
}

//! Leaf values that cross module lines: commit ids, heads, jobs, how a job ended, the one
//! record of a deployment, where the state lives. No behaviour beyond parsing and display.

pub mod location;
mod record;
pub mod shard;
pub mod url;

pub use location::Location;

pub use record::{DeploymentRecord, JobStatus, Notification, OnFailureOutcome};
pub use shard::Shard;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha(String);

impl Sha {
    /// Parses a full commit id; anything else (abbreviated, non-hex) is `None`.
    pub fn parse(s: &str) -> Option<Sha> {
        let s = s.trim();
        let ok = (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| Sha(s.to_ascii_lowercase()))
    }

    /// The full id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 digits, for tables and log lines.
    pub fn short(&self) -> &str {
        &self.0[..8]
    }
}

impl TryFrom<String> for Sha {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Sha::parse(&s).ok_or_else(|| format!("not a full commit id: {s:?}"))
    }
}

impl From<Sha> for String {
    fn from(s: Sha) -> String {
        s.0
    }
}

impl fmt::Display for Sha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha({})", self.short())
    }
}

/// Branch name -> head commit, ordered for stable output.
pub type Heads = BTreeMap<String, Sha>;

/// What the forge layer remembers between runs to ask "changed since?" instead of listing again.
///
/// Kept in the state per repository. `fingerprint` ties it to the request shape (API URL and branch
/// patterns): when that changes, the cache is ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    /// Identifies what was asked: a changed config invalidates the cache.
    pub fingerprint: String,
    /// The ETag of each listing page, in page order.
    pub etags: Vec<String>,
    /// The matching heads that listing produced, reused when every page answers 304.
    pub heads: Heads,
}

/// One deployment to make: a (repository, branch) at a commit, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Job {
    /// Repository name.
    pub repo: String,
    /// Its group, if any.
    pub group: Option<String>,
    /// The monitored branch, or the tag's name when `tag` is set.
    pub branch: String,
    /// The ref is a tag (`refs/tags/<branch>`), not a branch.
    pub tag: bool,
    /// The commit to deploy.
    pub commit: Sha,
    /// The last commit deployed from this branch, if any.
    pub previous: Option<Sha>,
    /// Why this job exists.
    pub reason: Reason,
    /// 1 for a first attempt; n for the n-th attempt at the same commit.
    pub attempt: u32,
}

/// What a forge says about a change, for the filters (SPEC §4 "filters").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Examined {
    /// Every file changed between the base and the head; `None` when that cannot be told (no
    /// common history, a truncated answer, an error): then the change is deployed.
    pub files: Option<Vec<String>>,
    /// The head commit's message, when the answer had it.
    pub message: Option<String>,
    /// Why the files could not be told, for the log.
    pub why_unknown: Option<String>,
}

impl Job {
    /// The full ref name: `refs/heads/<branch>` or `refs/tags/<tag>` (`SENTRY_REF`).
    pub fn full_ref(&self) -> String {
        if self.tag { format!("refs/tags/{}", self.branch) } else { format!("refs/heads/{}", self.branch) }
    }
}

/// Why a job was planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// First sight of a repository with `on_first_seen: deploy`.
    FirstSeen,
    /// A branch that appeared in a repository that already had state.
    NewBranch,
    /// A matching tag that appeared (or, with `semver`, became the highest in range).
    NewTag,
    /// The head differs from the last deployed commit.
    Changed,
    /// A failed commit being tried again.
    Retry,
    /// Another member of a `trigger: all` group changed.
    GroupTrigger,
    /// `sentry deploy`.
    Manual,
    /// `sentry rollback`.
    Rollback,
    /// Filtered: no changed file matches `monitor.paths` (or all match `ignore_paths`).
    Paths,
    /// Filtered: the head commit's message holds one of `global.skip_markers`.
    SkipMarker,
}

impl Reason {
    /// Words for log lines and the plan.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FirstSeen => "first seen",
            Reason::NewBranch => "new branch",
            Reason::NewTag => "new tag",
            Reason::Changed => "changed",
            Reason::Retry => "retry",
            Reason::GroupTrigger => "group trigger",
            Reason::Manual => "manual",
            Reason::Rollback => "rollback",
            Reason::Paths => "paths",
            Reason::SkipMarker => "skip marker",
        }
    }

    /// The JSON spelling (`skip_marker`), for counters keyed by reason.
    pub fn key(self) -> &'static str {
        match self {
            Reason::FirstSeen => "first_seen",
            Reason::NewBranch => "new_branch",
            Reason::NewTag => "new_tag",
            Reason::Changed => "changed",
            Reason::Retry => "retry",
            Reason::GroupTrigger => "group_trigger",
            Reason::Manual => "manual",
            Reason::Rollback => "rollback",
            Reason::Paths => "paths",
            Reason::SkipMarker => "skip_marker",
        }
    }
}

/// The command a deployment stopped at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedCommand {
    /// 0-based: `deploy.commands[index]`.
    pub index: usize,
    /// The command's text (redacted).
    pub command: String,
    /// Its exit status; `None` when a signal ended it (a timeout or a stop).
    pub exit_code: Option<i32>,
}

impl fmt::Display for FailedCommand {
    /// "command 1 `make deploy` exited 2" (or "exited by signal").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command {} `{}` exited ", self.index, self.command)?;
        match self.exit_code {
            Some(c) => write!(f, "{c}"),
            None => f.write_str("by signal"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha_accepts_full_ids_only() {
        let a = "A".repeat(40);
        assert_eq!(Sha::parse(&a).map(|s| s.to_string()), Some("a".repeat(40)));
        assert!(Sha::parse(&"b".repeat(64)).is_some());
        assert!(Sha::parse("abc123").is_none());
        assert!(Sha::parse(&"g".repeat(40)).is_none());
        assert!(serde_json::from_str::<Sha>("\"xyz\"").is_err());
    }

    #[test]
    fn failed_command_reads_as_a_sentence() {
        let f = |exit_code| FailedCommand { index: 1, command: "make deploy".into(), exit_code };
        assert_eq!(f(Some(2)).to_string(), "command 1 `make deploy` exited 2");
        assert_eq!(f(None).to_string(), "command 1 `make deploy` exited by signal");
    }
}

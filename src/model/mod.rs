//! Leaf values that cross module lines: commit ids, heads, jobs, how a job ended, the one
//! record of a deployment, where the state lives. No behaviour beyond parsing and display.

pub mod location;
mod record;
pub mod repo_url;
pub mod shard;
pub mod url;

pub use location::Location;

pub use record::{DeploymentRecord, JobStatus, Notification, OnFailureOutcome};
pub use shard::Shard;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Where a repository is hosted, which decides how its heads are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ForgeKind {
    /// GitHub or GitHub Enterprise REST API.
    Github,
    /// GitLab REST API v4.
    Gitlab,
    /// Gitea / Forgejo REST API v1.
    Gitea,
    /// Any Git host, through `git ls-remote`.
    Git,
}

impl ForgeKind {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::Github => "github",
            ForgeKind::Gitlab => "gitlab",
            ForgeKind::Gitea => "gitea",
            ForgeKind::Git => "git",
        }
    }
}

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

/// Ref name -> head commit, in name order, each name once.
///
/// A sorted list rather than a B-tree: almost every repository lists one or two matching
/// branches, and a B-tree node has room for 11 (~0.5 KiB a repository, 5 MB at 10,000: issue 21).
/// Lookups are binary searches; build large ones with [`Heads::first_wins`] or `collect`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Heads(Vec<(String, Sha)>);

impl Heads {
    /// No heads.
    pub fn new() -> Heads {
        Heads(Vec::new())
    }

    /// From a listing in any order: a name listed twice (offset pages shifting under a walk)
    /// keeps its first commit.
    pub fn first_wins(mut items: Vec<(String, Sha)>) -> Heads {
        items.sort_by(|a, b| a.0.cmp(&b.0)); // stable: the first of equal names stays first
        items.dedup_by(|later, earlier| later.0 == earlier.0);
        items.shrink_to_fit();
        Heads(items)
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }

    /// The commit of `name`.
    pub fn get(&self, name: &str) -> Option<&Sha> {
        self.find(name).ok().and_then(|i| self.0.get(i)).map(|(_, s)| s)
    }

    /// The commit of `name`, to change it.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Sha> {
        let i = self.find(name).ok()?;
        self.0.get_mut(i).map(|(_, s)| s)
    }

    /// True when `name` is listed.
    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Sets `name` to `sha`; the commit it had, if any.
    pub fn insert(&mut self, name: String, sha: Sha) -> Option<Sha> {
        match self.find(&name) {
            Ok(i) => self.0.get_mut(i).map(|(_, s)| std::mem::replace(s, sha)),
            Err(i) => {
                self.0.insert(i, (name, sha));
                None
            }
        }
    }

    /// Removes `name`; the commit it had, if any.
    pub fn remove(&mut self, name: &str) -> Option<Sha> {
        self.find(name).ok().map(|i| self.0.remove(i).1)
    }

    /// How many names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(n, _)| n)
    }

    /// The commits, in name order.
    pub fn values(&self) -> impl Iterator<Item = &Sha> {
        self.0.iter().map(|(_, s)| s)
    }

    /// Name and commit, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Sha)> {
        self.0.iter().map(|(n, s)| (n, s))
    }
}

impl fmt::Debug for Heads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// As a map built by inserting in order: the last commit of a name wins.
impl FromIterator<(String, Sha)> for Heads {
    fn from_iter<I: IntoIterator<Item = (String, Sha)>>(iter: I) -> Heads {
        let mut items: Vec<(String, Sha)> = iter.into_iter().collect();
        items.reverse(); // the last of equal names wins, as with insert
        Heads::first_wins(items)
    }
}

impl IntoIterator for Heads {
    type Item = (String, Sha);
    type IntoIter = std::vec::IntoIter<(String, Sha)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Heads {
    type Item = (&'a String, &'a Sha);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (String, Sha)>, fn(&'a (String, Sha)) -> (&'a String, &'a Sha)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(n, s)| (n, s))
    }
}

impl Serialize for Heads {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Heads {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Heads, D::Error> {
        Ok(BTreeMap::<String, Sha>::deserialize(d)?.into_iter().collect())
    }
}

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

    fn commit(c: char) -> Sha {
        Sha::parse(&c.to_string().repeat(40)).expect("sha")
    }

    fn pairs(h: &Heads) -> Vec<(String, char)> {
        h.iter().map(|(n, s)| (n.clone(), s.as_str().chars().next().unwrap_or('?'))).collect()
    }

    #[test]
    fn heads_keep_name_order_and_one_commit_per_name() {
        let items = |v: &[(&str, char)]| v.iter().map(|(n, c)| (n.to_string(), commit(*c))).collect::<Vec<_>>();
        let listed = items(&[("main", 'a'), ("dev", 'b'), ("main", 'c'), ("a/b", 'd')]);
        // A listing: the first of a name wins (pages shifting under a walk).
        let first = Heads::first_wins(listed.clone());
        assert_eq!(pairs(&first), [("a/b".into(), 'd'), ("dev".into(), 'b'), ("main".into(), 'a')]);
        // collect, like a map built by inserting in order: the last wins.
        let last: Heads = listed.into_iter().collect();
        assert_eq!(pairs(&last), [("a/b".into(), 'd'), ("dev".into(), 'b'), ("main".into(), 'c')]);

        let mut h = Heads::new();
        assert!(h.is_empty() && h.get("main").is_none());
        assert_eq!(h.insert("zeta".into(), commit('1')), None);
        assert_eq!(h.insert("alpha".into(), commit('2')), None);
        assert_eq!(h.insert("mid".into(), commit('3')), None);
        assert_eq!(h.insert("mid".into(), commit('4')), Some(commit('3')));
        assert_eq!(h.keys().map(String::as_str).collect::<Vec<_>>(), ["alpha", "mid", "zeta"]);
        assert_eq!(h.get("mid"), Some(&commit('4')));
        assert!(h.contains_key("zeta") && !h.contains_key("zet"));
        if let Some(s) = h.get_mut("alpha") {
            *s = commit('5');
        }
        assert_eq!(h.remove("alpha"), Some(commit('5')));
        assert_eq!(h.remove("alpha"), None);
        assert_eq!(h.len(), 2);

        // Stored and printed as a map, read back the same.
        let json = serde_json::to_string(&h).expect("serializes");
        assert_eq!(json, format!(r#"{{"mid":"{}","zeta":"{}"}}"#, "4".repeat(40), "1".repeat(40)));
        assert_eq!(serde_json::from_str::<Heads>(&json).expect("parses"), h);
    }
}

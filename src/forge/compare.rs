//! What changed between two commits, for the path filters and skip markers (SPEC §4 "filters").
//!
//! GitHub `GET /repos/{o}/{r}/compare/{base}...{head}`, GitLab
//! `GET /projects/{id}/repository/compare?from=&to=`, Gitea `GET /repos/{o}/{r}/compare/{base}...{head}`;
//! plain Git: a blob-less fetch of the two commits into a private directory and
//! `git diff --name-only`. Every doubt is "cannot tell" (`files: None`), which deploys:
//!
//! - the base must be an ancestor of the head: some listed commit has it as a parent (a
//!   force-push onto other or no common history, or back to an older commit, cannot be told
//!   from a merge-base comparison);
//! - the commit list must be complete (GitHub and Gitea say `total_commits`);
//! - the file list must be complete: GitHub lists at most 300 files, GitLab says `overflow`
//!   (and `compare_timeout`), Gitea lists each commit's files.

use super::{Api, Checker};
use crate::config::{ForgeKind, Repository};
use crate::model::{Examined, Sha};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// GitHub's compare lists at most this many files; a list this long may be cut.
pub const GITHUB_MAX_FILES: usize = 300;

/// Files listed at most by `git diff --name-only` before "cannot tell".
const MAX_GIT_FILES: usize = 100_000;

/// Most bytes of git output read.
const MAX_GIT_OUTPUT: u64 = 16 * 1024 * 1024;

impl Checker {
    /// [`Checker::changes`] of each `(repository, base, head)`, concurrently on the check pool
    /// (a pass with many moved heads waits for the slowest comparison, not for their sum);
    /// results in input order.
    pub fn changes_all(&self, asked: &[(&Repository, Sha, Sha)], tmp_dir: &Path) -> Vec<Examined> {
        use rayon::prelude::*;
        self.pool.install(|| {
            asked.par_iter().with_max_len(1).map(|(repo, base, head)| self.changes(repo, base, head, tmp_dir)).collect()
        })
    }

    /// The files changed from `base` to `head` in `repo`, and the head commit's message. Never
    /// fails: what cannot be told is `files: None` with the reason. `tmp_dir` holds the private
    /// directory of a plain Git fetch.
    pub fn changes(&self, repo: &Repository, base: &Sha, head: &Sha, tmp_dir: &Path) -> Examined {
        let m = &repo.monitor;
        let deadline = Instant::now() + self.budget;
        let result = match m.kind {
            ForgeKind::Git => git_changes(repo, base, head, tmp_dir, self.http_timeout.saturating_mul(4)),
            ForgeKind::Github => self.rest(repo, super::github::api(m), base, head, deadline, parse_github),
            ForgeKind::Gitlab => self.rest(repo, super::gitlab::api(m), base, head, deadline, parse_gitlab),
            ForgeKind::Gitea => self.rest(repo, super::gitea::api(m), base, head, deadline, parse_gitea),
        };
        match result {
            Ok(e) => e,
            Err(why) => Examined { files: None, message: None, why_unknown: Some(why) },
        }
    }

    fn rest(
        &self,
        repo: &Repository,
        api: Result<Api, String>,
        base: &Sha,
        head: &Sha,
        deadline: Instant,
        parse: fn(&Value, &Sha, &Sha) -> Examined,
    ) -> Result<Examined, String> {
        let api = api?;
        let url = compare_url(repo.monitor.kind, &api.first_url, base, head)
            .ok_or_else(|| format!("no compare URL for {}", api.first_url))?;
        let resp = self.send(repo, &api, &api.request(&url, deadline)).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&resp.body).map_err(|e| format!("compare answer is not JSON: {e}"))?;
        Ok(parse(&v, base, head))
    }
}

/// The compare URL beside a listing's first page (`…/branches?per_page=100`).
pub fn compare_url(kind: ForgeKind, first_url: &str, base: &Sha, head: &Sha) -> Option<String> {
    let path = first_url.split_once('?').map_or(first_url, |(p, _)| p);
    let prefix = path.strip_suffix("/branches")?;
    Some(match kind {
        ForgeKind::Gitlab => format!("{prefix}/compare?from={base}&to={head}"),
        _ => format!("{prefix}/compare/{base}...{head}"),
    })
}

fn unknown(why: impl Into<String>, message: Option<String>) -> Examined {
    Examined { files: None, message, why_unknown: Some(why.into()) }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k))?.as_str()
}

/// True when one of `commits` has `base` among its parents (`parents[].sha` or `parent_ids[]`).
fn descends_from(commits: &[Value], base: &Sha) -> bool {
    commits.iter().any(|c| {
        let shas = c
            .get("parents")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("sha").or_else(|| p.get("id")).and_then(Value::as_str).or_else(|| p.as_str()));
        let ids = c.get("parent_ids").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
        shas.chain(ids).any(|p| Sha::parse(p).as_ref() == Some(base))
    })
}

/// The message of `head` among `commits` (`commit.message` or `message`).
fn message_of(commits: &[Value], head: &Sha) -> Option<String> {
    commits
        .iter()
        .find(|c| {
            c.get("sha").or_else(|| c.get("id")).and_then(Value::as_str).and_then(Sha::parse).as_ref() == Some(head)
        })
        .and_then(|c| str_at(c, &["commit", "message"]).or_else(|| str_at(c, &["message"])))
        .map(String::from)
}

/// GitHub: `{status, total_commits, commits: [{sha, parents: [{sha}], commit: {message}}],
/// files: [{filename, previous_filename?}]}`, files cut at 300.
pub fn parse_github(v: &Value, base: &Sha, head: &Sha) -> Examined {
    let commits = v.get("commits").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let message = message_of(commits, head);
    if v.get("status").and_then(Value::as_str) != Some("ahead") {
        let status = v.get("status").and_then(Value::as_str).unwrap_or("missing");
        return unknown(format!("the head is not ahead of the base (status {status})"), message);
    }
    let total = v.get("total_commits").and_then(Value::as_u64);
    if total.is_none_or(|t| t != commits.len() as u64) {
        return unknown("the commit list is incomplete", message);
    }
    if !descends_from(commits, base) {
        return unknown("the base is not an ancestor of the head", message);
    }
    let Some(files) = v.get("files").and_then(Value::as_array) else {
        return unknown("the answer lists no files", message);
    };
    if files.len() >= GITHUB_MAX_FILES {
        return unknown(format!("GitHub lists at most {GITHUB_MAX_FILES} files"), message);
    }
    let mut out = BTreeSet::new();
    for f in files {
        let Some(name) = f.get("filename").and_then(Value::as_str) else {
            return unknown("a file entry without a filename", message);
        };
        out.insert(name.to_string());
        if let Some(prev) = f.get("previous_filename").and_then(Value::as_str) {
            out.insert(prev.to_string());
        }
    }
    Examined { files: Some(out.into_iter().collect()), message, why_unknown: None }
}

/// GitLab: `{commit: {id, message}, commits: [{id, parent_ids, message}], diffs: [{old_path,
/// new_path}], compare_timeout, overflow}`.
pub fn parse_gitlab(v: &Value, base: &Sha, head: &Sha) -> Examined {
    let commits = v.get("commits").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let message = str_at(v, &["commit", "message"])
        .filter(|_| str_at(v, &["commit", "id"]).and_then(Sha::parse).as_ref() == Some(head))
        .map(String::from)
        .or_else(|| message_of(commits, head));
    if v.get("overflow").and_then(Value::as_bool) == Some(true) {
        return unknown("GitLab cut the diff (overflow)", message);
    }
    if v.get("compare_timeout").and_then(Value::as_bool) == Some(true) {
        return unknown("GitLab timed out comparing", message);
    }
    if !descends_from(commits, base) {
        return unknown("the base is not an ancestor of the head", message);
    }
    let Some(diffs) = v.get("diffs").and_then(Value::as_array) else {
        return unknown("the answer lists no diffs", message);
    };
    let mut out = BTreeSet::new();
    for d in diffs {
        let (old, new) = (d.get("old_path").and_then(Value::as_str), d.get("new_path").and_then(Value::as_str));
        if old.is_none() && new.is_none() {
            return unknown("a diff entry without a path", message);
        }
        out.extend(old.into_iter().chain(new).map(String::from));
    }
    Examined { files: Some(out.into_iter().collect()), message, why_unknown: None }
}

/// Gitea: `{total_commits, commits: [{sha, parents: [{sha}], commit: {message}, files:
/// [{filename, status}]}]}` (and, on newer versions, a top-level `files`).
pub fn parse_gitea(v: &Value, base: &Sha, head: &Sha) -> Examined {
    let commits = v.get("commits").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let message = message_of(commits, head);
    let total = v.get("total_commits").and_then(Value::as_u64);
    if total.is_none_or(|t| t != commits.len() as u64) {
        return unknown("the commit list is incomplete", message);
    }
    if !descends_from(commits, base) {
        return unknown("the base is not an ancestor of the head", message);
    }
    let mut out = BTreeSet::new();
    let lists: Vec<&Value> = match v.get("files") {
        Some(top) => vec![top],
        None => commits.iter().filter_map(|c| c.get("files")).collect(),
    };
    if v.get("files").is_none() && lists.len() != commits.len() {
        return unknown("a commit without its files", message);
    }
    for list in lists {
        let Some(files) = list.as_array() else { return unknown("files is not a list", message) };
        for f in files {
            let Some(name) = f.get("filename").and_then(Value::as_str) else {
                return unknown("a file entry without a filename", message);
            };
            out.insert(name.to_string());
        }
    }
    Examined { files: Some(out.into_iter().collect()), message, why_unknown: None }
}

/// Plain Git: fetch both commits without blobs into a private directory, then ask git whether
/// the base is an ancestor of the head, which files differ, and the head's message.
fn git_changes(
    repo: &Repository,
    base: &Sha,
    head: &Sha,
    tmp_dir: &Path,
    timeout: Duration,
) -> Result<Examined, String> {
    // In `tmp_dir` with the checks a deployment's directory gets (created if missing, nobody
    // else may change it), and removed whatever happens.
    let dir = crate::workdir::JobDir::create(tmp_dir, "sentry-compare-")
        .map_err(|e| format!("cannot make a private directory in {}: {e}", tmp_dir.display()))?;
    let examined = fetch_and_diff(repo, base, head, &dir.path.join("repo.git"), timeout);
    if let Err(e) = crate::workdir::remove(&dir.path) {
        log::warn!("cannot remove {}: {e}", dir.path.display());
    }
    examined
}

/// [`git_changes`] in the private directory `git_dir`.
fn fetch_and_diff(
    repo: &Repository,
    base: &Sha,
    head: &Sha,
    git_dir: &Path,
    timeout: Duration,
) -> Result<Examined, String> {
    let m = &repo.monitor;
    let now = Instant::now();
    let deadline = now.checked_add(timeout).unwrap_or(now);
    let git = |args: &[&str]| {
        let mut cmd = crate::gitcmd::command(&m.repo_url, &m.auth, m.kind);
        cmd.arg("--git-dir").arg(git_dir).args(args);
        run(cmd, deadline)
    };
    let init = git(&["init", "--quiet", "--bare"])?;
    if !init.0 {
        return Err(format!("git init failed: {}", init.2));
    }
    let fetch = git(&[
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        "--filter=blob:none",
        "--",
        &m.repo_url,
        base.as_str(),
        head.as_str(),
    ])?;
    if !fetch.0 {
        // The old head may be gone (a force-push): nothing to compare with.
        return Err(format!("cannot fetch both commits: {}", crate::text::first_line(&fetch.2, 300)));
    }
    let message = git(&["log", "-1", "--format=%B", head.as_str()])?;
    let message = message.0.then(|| message.1.trim_end().to_string());
    let ancestor = git(&["merge-base", "--is-ancestor", base.as_str(), head.as_str()])?;
    if !ancestor.0 {
        return Ok(unknown("the base is not an ancestor of the head", message));
    }
    let diff = git(&["diff", "--name-only", "--no-renames", "-z", base.as_str(), head.as_str()])?;
    if !diff.0 {
        return Ok(unknown(format!("git diff failed: {}", crate::text::first_line(&diff.2, 300)), message));
    }
    let files: Vec<String> = diff.1.split('\0').filter(|f| !f.is_empty()).map(String::from).collect();
    if files.len() > MAX_GIT_FILES {
        return Ok(unknown(format!("more than {MAX_GIT_FILES} files changed"), message));
    }
    Ok(Examined { files: Some(files), message, why_unknown: None })
}

/// Runs a git command until `deadline`: (success, stdout, stderr), outputs capped. A success
/// whose output did not end is an error, never an empty answer.
pub(super) fn run(cmd: std::process::Command, deadline: Instant) -> Result<(bool, String, String), String> {
    let ran = crate::gitcmd::run_bounded(cmd, deadline, MAX_GIT_OUTPUT, MAX_GIT_OUTPUT)
        .map_err(|e| format!("cannot run git: {e}"))?;
    let stdout = String::from_utf8_lossy(&ran.stdout).into_owned();
    let stderr = crate::logging::redact(&String::from_utf8_lossy(&ran.stderr));
    match ran.status {
        Some(s) if s.success() && !ran.stdout_complete => Err(crate::gitcmd::INCOMPLETE_OUTPUT.into()),
        Some(s) => Ok((s.success(), stdout, stderr)),
        None => Err("git timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sha(c: char) -> Sha {
        Sha::parse(&c.to_string().repeat(40)).expect("sha")
    }

    fn gh(files: usize, status: &str, parent: char) -> Value {
        let files: Vec<Value> = (0..files).map(|i| json!({"filename": format!("f{i}.txt")})).collect();
        json!({"status": status, "total_commits": 1,
               "commits": [{"sha": sha('b').as_str(), "parents": [{"sha": sha(parent).as_str()}], "commit": {"message": "fix [skip deploy]"}}],
               "files": files})
    }

    #[test]
    fn github_answers_are_trusted_only_when_complete_and_ahead() {
        let (a, b) = (sha('a'), sha('b'));
        let ok = parse_github(&gh(2, "ahead", 'a'), &a, &b);
        assert_eq!(ok.files, Some(vec!["f0.txt".into(), "f1.txt".into()]));
        assert_eq!(ok.message.as_deref(), Some("fix [skip deploy]"));
        assert_eq!(parse_github(&gh(300, "ahead", 'a'), &a, &b).files, None);
        assert_eq!(parse_github(&gh(1, "diverged", 'a'), &a, &b).files, None);
        assert_eq!(parse_github(&gh(1, "ahead", 'c'), &a, &b).files, None);
        let mut cut = gh(1, "ahead", 'a');
        cut["total_commits"] = json!(400);
        assert_eq!(parse_github(&cut, &a, &b).files, None);
    }

    #[test]
    fn gitlab_overflow_and_gitea_commit_files() {
        let (a, b) = (sha('a'), sha('b'));
        let gl = json!({"commit": {"id": b.as_str(), "message": "m"}, "commits": [{"id": b.as_str(), "parent_ids": [a.as_str()]}],
                        "diffs": [{"old_path": "x/old.md", "new_path": "y/new.rs"}], "compare_timeout": false, "overflow": false});
        assert_eq!(parse_gitlab(&gl, &a, &b).files, Some(vec!["x/old.md".into(), "y/new.rs".into()]));
        let mut over = gl.clone();
        over["overflow"] = json!(true);
        assert_eq!(parse_gitlab(&over, &a, &b).files, None);
        assert_eq!(parse_gitlab(&over, &a, &b).message.as_deref(), Some("m"));
        let gt = json!({"total_commits": 1, "commits": [{"sha": b.as_str(), "parents": [{"sha": a.as_str()}],
                        "commit": {"message": "m"}, "files": [{"filename": "svc/a.go", "status": "modified"}]}]});
        assert_eq!(parse_gitea(&gt, &a, &b).files, Some(vec!["svc/a.go".into()]));
        assert_eq!(parse_gitea(&gt, &sha('c'), &b).files, None);
    }

    #[test]
    fn compare_urls_sit_beside_the_listing() {
        let (a, b) = (sha('a'), sha('b'));
        assert_eq!(
            compare_url(ForgeKind::Github, "https://api.github.com/repos/o/r/branches?per_page=100", &a, &b).as_deref(),
            Some(format!("https://api.github.com/repos/o/r/compare/{a}...{b}").as_str())
        );
        assert_eq!(
            compare_url(ForgeKind::Gitlab, "https://gl/api/v4/projects/g%2Fp/repository/branches?per_page=100", &a, &b)
                .as_deref(),
            Some(format!("https://gl/api/v4/projects/g%2Fp/repository/compare?from={a}&to={b}").as_str())
        );
    }
}

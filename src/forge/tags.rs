//! Tag listings (SPEC §4 "tags"): the forge's tag API with the branch listing's pagination
//! (GitHub `GET /repos/{o}/{r}/tags`, GitLab `GET /projects/{id}/repository/tags`, Gitea
//! `GET /repos/{o}/{r}/tags`), or for plain Git protocol v2 `ls-refs` over http(s) (`peel`) and
//! `git ls-remote --tags` elsewhere (the `^{}` lines); annotated tags peeled to their commit.
//! Only tags matching `monitor.tags` are kept. Tags are listed without conditional requests,
//! each page once: a repository that monitors tags costs one more listing a pass.

use super::lsrefs::{LsRefs, RefKind};
use super::{Api, CheckError, CheckErrorKind, Checker, Walk};
use crate::config::{ForgeKind, Repository};
use crate::model::{Heads, Sha};
use rayon::prelude::*;
use std::time::Instant;

/// Tags kept at most per repository.
const MAX_TAGS: usize = 100_000;

impl Checker {
    /// The matching tags of each repository (every one must monitor tags), concurrently on the
    /// check pool; results in input order.
    pub fn tags_all(&self, repos: &[&Repository]) -> Vec<Result<Heads, CheckError>> {
        self.pool.install(|| repos.par_iter().with_max_len(1).map(|r| self.tags(r)).collect())
    }

    /// The tags of `repo` that match `monitor.tags`, each at its commit.
    pub fn tags(&self, repo: &Repository) -> Result<Heads, CheckError> {
        let m = &repo.monitor;
        let deadline = Instant::now() + self.budget;
        match m.kind {
            ForgeKind::Git => self.git_tags(repo, deadline),
            ForgeKind::Github => self.rest_tags(repo, super::github::api(m), deadline),
            ForgeKind::Gitlab => self.rest_tags(repo, super::gitlab::api(m), deadline),
            ForgeKind::Gitea => self.rest_tags(repo, super::gitea::api(m), deadline),
        }
    }

    fn rest_tags(&self, repo: &Repository, api: Result<Api, String>, deadline: Instant) -> Result<Heads, CheckError> {
        let error = |kind, message: String| CheckError { repo: repo.name.clone(), kind, message };
        let mut api = api.map_err(|msg| error(CheckErrorKind::Protocol, format!("repository {}: {msg}", repo.name)))?;
        let Some((path, query)) = api.first_url.split_once('?') else {
            return Err(error(CheckErrorKind::Protocol, format!("repository {}: no tag listing URL", repo.name)));
        };
        let Some(prefix) = path.strip_suffix("/branches") else {
            return Err(error(CheckErrorKind::Protocol, format!("repository {}: no tag listing URL", repo.name)));
        };
        api.first_url = format!("{prefix}/tags?{query}");
        // The walk keeps what the branch patterns match, page by page: give it the tag patterns.
        let mut as_tags = repo.clone();
        as_tags.monitor.branches = repo.monitor.tags.clone();
        as_tags.monitor.patterns = repo.monitor.tag_patterns.clone();
        match self.walk(&as_tags, &api, None, false, deadline)? {
            Walk::Listed { items, .. } => Ok(Heads::first_wins(items)),
            Walk::Unchanged { .. } | Walk::Mixed { .. } => Err(error(
                CheckErrorKind::Protocol,
                format!("repository {}: {} answered 304 to an unconditional tag listing", repo.name, api.forge),
            )),
        }
    }

    fn git_tags(&self, repo: &Repository, deadline: Instant) -> Result<Heads, CheckError> {
        let m = &repo.monitor;
        let error = |message: String| CheckError {
            repo: repo.name.clone(),
            kind: CheckErrorKind::Network,
            message: format!("repository {} (tags): {message}", repo.name),
        };
        // http(s): `ls-refs` in process, as for branches; elsewhere, or without protocol v2,
        // `git ls-remote --tags`.
        if super::over_http(&m.repo_url) {
            match self.ls_refs(repo, RefKind::Tags, deadline)? {
                LsRefs::Listed(items, _) => {
                    let tags: Vec<(String, Sha)> = items
                        .into_iter()
                        .filter(|(t, _)| m.matches_tag(t) && t.len() <= crate::state::MAX_REF_BYTES)
                        .collect();
                    if tags.len() > MAX_TAGS {
                        return Err(error(format!("more than {MAX_TAGS} matching tags: narrow monitor.tags")));
                    }
                    return Ok(Heads::first_wins(tags));
                }
                LsRefs::NotV2(why) => log::debug!(repo = repo.name.as_str(); "{why}: listing tags with git ls-remote"),
            }
        }
        let mut cmd = crate::gitcmd::command(&m.repo_url, &m.auth, m.kind);
        cmd.args(["ls-remote", "--tags", "--", &m.repo_url]);
        let (ok, out, err) = super::compare::run(cmd, Instant::now() + self.http_timeout * 2).map_err(&error)?;
        if !ok {
            return Err(error(format!("git ls-remote --tags failed: {}", crate::text::first_line(&err, 300))));
        }
        let tags = parse_ls_remote_tags(&out, &|t| m.matches_tag(t));
        if tags.len() > MAX_TAGS {
            return Err(error(format!("more than {MAX_TAGS} matching tags: narrow monitor.tags")));
        }
        Ok(tags)
    }
}

/// `git ls-remote --tags` output: `<sha>\trefs/tags/<name>`, and for an annotated tag also
/// `<sha>\trefs/tags/<name>^{}`, its commit, which wins. Names `keep` refuses are left out.
pub fn parse_ls_remote_tags(out: &str, keep: &dyn Fn(&str) -> bool) -> Heads {
    // Collected, then sorted once: the server's order is not trusted (an insert per line into
    // a sorted list would be quadratic in a hostile listing of 16 MB).
    let (mut tags, mut peeled) = (Vec::new(), Vec::new());
    for line in out.lines() {
        let Some((sha, name)) = line.split_once('\t') else { continue };
        let (Some(sha), Some(name)) = (Sha::parse(sha), name.trim().strip_prefix("refs/tags/")) else { continue };
        match name.strip_suffix("^{}") {
            Some(n) if keep(n) => peeled.push((n.to_string(), sha)),
            None if keep(name) && name.len() <= crate::state::MAX_REF_BYTES => tags.push((name.to_string(), sha)),
            _ => {}
        }
    }
    let mut tags: Heads = tags.into_iter().collect();
    for (name, sha) in peeled.into_iter().collect::<Heads>() {
        if let Some(t) = tags.get_mut(&name) {
            *t = sha;
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotated_tags_are_peeled_to_their_commit() {
        let (a, b, c) = ("a".repeat(40), "b".repeat(40), "c".repeat(40));
        let out =
            format!("{a}\trefs/tags/v1.0.0\n{b}\trefs/tags/v1.0.0^{{}}\n{c}\trefs/tags/v2.0.0\n{a}\trefs/tags/other\n");
        let tags = parse_ls_remote_tags(&out, &|t| t.starts_with('v'));
        let got: Vec<(String, String)> = tags.into_iter().map(|(n, s)| (n, s.to_string())).collect();
        assert_eq!(got, [("v1.0.0".to_string(), b.clone()), ("v2.0.0".to_string(), c.clone())]);
        // In any order the server sends them (and a tag peeled before it is listed).
        let reversed: String = out.lines().rev().map(|l| format!("{l}\n")).collect();
        let got: Vec<(String, String)> = parse_ls_remote_tags(&reversed, &|t| t.starts_with('v'))
            .into_iter()
            .map(|(n, s)| (n, s.to_string()))
            .collect();
        assert_eq!(got, [("v1.0.0".to_string(), b), ("v2.0.0".to_string(), c)]);
    }
}

//! GitHub and GitHub Enterprise: `GET {api}/repos/{owner}/{repo}/branches`, `Link` pagination.

use super::Api;
use super::url::{RepoUrl, api_base, api_project, encode, owner_repo};
use crate::config::{ForgeKind, Monitor};
use crate::secret::Secret;

/// Page size: GitHub's maximum.
const PER_PAGE: u32 = 100;

/// The listing request of `m`'s repository.
pub(super) fn api(m: &Monitor) -> Result<Api, String> {
    let url = RepoUrl::parse(&m.repo_url)?;
    let base = api_base(ForgeKind::Github, &url, m.api_url.as_deref());
    let path = api_project(ForgeKind::Github, &url, m.api_url.as_deref())?;
    let (owner, repo) = owner_repo(&path)?;
    let first_url = format!("{base}/repos/{}/{}/branches?per_page={PER_PAGE}", encode(owner), encode(repo));
    Ok(Api {
        forge: "GitHub",
        project: path.clone(),
        api_base: base,
        first_url,
        headers: vec![("Accept", "application/vnd.github+json"), ("X-GitHub-Api-Version", "2022-11-28")],
        secret: m.auth.token.as_ref().map(|t| ("Authorization", Secret::new(format!("Bearer {}", t.expose())))),
        sha_field: "sha",
    })
}

//! Gitea and Forgejo: `GET {api}/repos/{owner}/{repo}/branches`, `Link` / `X-Total-Count`
//! pagination, `Authorization: token` authentication.

use super::Api;
use super::url::{RepoUrl, api_base, api_project, encode, owner_repo};
use crate::config::{ForgeKind, Monitor};
use crate::secret::Secret;

/// Page size: Gitea's default maximum (`MAX_RESPONSE_ITEMS`).
const LIMIT: u32 = 50;

/// The listing request of `m`'s repository.
pub(super) fn api(m: &Monitor) -> Result<Api, String> {
    let url = RepoUrl::parse(&m.repo_url)?;
    let base = api_base(ForgeKind::Gitea, &url, m.api_url.as_deref());
    let path = api_project(ForgeKind::Gitea, &url, m.api_url.as_deref())?;
    let (owner, repo) = owner_repo(&path)?;
    let first_url = format!("{base}/repos/{}/{}/branches?limit={LIMIT}", encode(owner), encode(repo));
    Ok(Api {
        forge: "Gitea",
        project: path.clone(),
        api_base: base,
        first_url,
        headers: vec![("Accept", "application/json")],
        secret: m.auth.token.as_ref().map(|t| ("Authorization", Secret::new(format!("token {}", t.expose())))),
        sha_field: "id",
    })
}

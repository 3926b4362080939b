//! GitLab: `GET {api}/projects/{url-encoded path}/repository/branches`, `X-Next-Page` / `Link`
//! pagination, `Authorization: Bearer` authentication (personal, project, group and OAuth
//! tokens alike; `PRIVATE-TOKEN` refuses OAuth tokens).

use super::Api;
use super::url::{RepoUrl, api_base, api_project, encode};
use crate::config::{ForgeKind, Monitor};
use crate::secret::Secret;

/// Page size: GitLab's maximum.
const PER_PAGE: u32 = 100;

/// The listing request of `m`'s project (any depth of subgroups).
pub(super) fn api(m: &Monitor) -> Result<Api, String> {
    let url = RepoUrl::parse(&m.repo_url)?;
    let base = api_base(ForgeKind::Gitlab, &url, m.api_url.as_deref());
    let path = api_project(ForgeKind::Gitlab, &url, m.api_url.as_deref())?;
    // The project id is the full path with every '/' encoded: group%2Fsub%2Fproject.
    let first_url = format!("{base}/projects/{}/repository/branches?per_page={PER_PAGE}", encode(&path));
    Ok(Api {
        forge: "GitLab",
        project: path,
        api_base: base,
        first_url,
        headers: vec![("Accept", "application/json")],
        secret: m.auth.token.as_ref().map(|t| ("Authorization", Secret::new(format!("Bearer {}", t.expose())))),
        sha_field: "id",
    })
}

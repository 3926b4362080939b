//! Repository URLs in every form users write them, the API base each forge derives from them,
//! and the project path its API names (checked by `config`, used by `forge`).
//!
//! Accepted: `https://host/owner/repo`, with or without `.git` and trailing slashes,
//! `http://host:port/...`, nested groups of any depth (`https://gitlab.example/a/b/c/repo`),
//! browser URLs with a GitLab `/-/tree/main` suffix, `ssh://git@host:22/owner/repo.git` and
//! scp-like `git@host:owner/repo.git`.

use super::ForgeKind;

/// A parsed repository URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoUrl {
    /// Lowercase scheme; `ssh` for the scp-like form.
    pub scheme: String,
    /// Host as written (IPv6 keeps its brackets), lowercase.
    pub host: String,
    /// Explicit port, if any.
    pub port: Option<u16>,
    /// Repository path: segments joined by `/`, no leading or trailing slash, no `.git`.
    pub path: String,
}

impl RepoUrl {
    /// Parses any URL form listed in the module documentation.
    pub fn parse(url: &str) -> Result<RepoUrl, String> {
        let url = url.trim();
        let p = crate::model::url::split(url)?;
        let scheme = p.scheme.unwrap_or("ssh").to_ascii_lowercase();
        if p.host.is_empty() && scheme != "file" {
            return Err(format!("{url:?} has no host"));
        }
        let path = p.rest.split(['?', '#']).next().unwrap_or("");
        // A GitLab browser URL: everything from `/-/` on names a page, not the project.
        let path = match path.find("/-/") {
            Some(i) => &path[..i],
            None => path,
        };
        let path = path.trim_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path).trim_end_matches('/');
        let path = path.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("/");
        Ok(RepoUrl { scheme, host: p.host_for_url(), port: p.port, path })
    }

    /// The path's segments.
    pub fn segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }

    /// `scheme://host[:port]` of the web side (ssh and git URLs map to https on the default port).
    pub fn web_base(&self) -> String {
        match self.scheme.as_str() {
            "http" | "https" => match self.port {
                Some(p) => format!("{}://{}:{p}", self.scheme, self.host),
                None => format!("{}://{}", self.scheme, self.host),
            },
            _ => format!("https://{}", self.host),
        }
    }
}

/// The API path suffix of each REST forge.
fn api_suffix(kind: ForgeKind) -> &'static str {
    match kind {
        ForgeKind::Github => "/api/v3",
        ForgeKind::Gitlab => "/api/v4",
        ForgeKind::Gitea => "/api/v1",
        ForgeKind::Git => "",
    }
}

/// The API base (SPEC §2): `api_url` if set; github.com -> `https://api.github.com`;
/// `SUB.ghe.com` -> `https://api.SUB.ghe.com`; any other
/// host keeps the URL's scheme, host and port and adds `/api/v3`, `/api/v4` or `/api/v1`.
pub fn api_base(kind: ForgeKind, url: &RepoUrl, api_url: Option<&str>) -> String {
    if let Some(api) = api_url {
        return api.trim().trim_end_matches('/').to_string();
    }
    if kind == ForgeKind::Github && matches!(url.host.as_str(), "github.com" | "www.github.com") {
        return "https://api.github.com".to_string();
    }
    // GitHub Enterprise Cloud with data residency: `SUBDOMAIN.ghe.com` has its REST API at
    // `api.SUBDOMAIN.ghe.com`, not under `/api/v3`.
    if kind == ForgeKind::Github
        && let Some(sub) = url.host.strip_suffix(".ghe.com")
        && !sub.is_empty()
        && !sub.contains('.')
    {
        return format!("https://api.{}", url.host);
    }
    format!("{}{}", url.web_base(), api_suffix(kind))
}

/// The project path the API knows: the URL path, less the relative URL root that an explicit
/// `api_url` reveals (`https://host/gitlab/api/v4` -> root `gitlab`, so `gitlab/g/r` is `g/r`).
pub fn project_path(kind: ForgeKind, url: &RepoUrl, api_url: Option<&str>) -> String {
    let Some(api) = api_url else { return url.path.clone() };
    let after_scheme = api.split_once("://").map(|(_, r)| r).unwrap_or(api);
    let api_path = after_scheme.find('/').map(|i| &after_scheme[i..]).unwrap_or("");
    let api_path = api_path.trim_end_matches('/');
    let root = api_path.strip_suffix(api_suffix(kind)).unwrap_or("").trim_matches('/');
    if root.is_empty() {
        return url.path.clone();
    }
    match url.path.strip_prefix(root).and_then(|r| r.strip_prefix('/')) {
        Some(rest) if !rest.is_empty() => rest.to_string(),
        _ => url.path.clone(),
    }
}

/// The project path `kind`'s API knows for `url` (with `api_url` when given), or why there is
/// none: GitHub and Gitea name `OWNER/REPO`, GitLab `GROUP[/SUBGROUP...]/PROJECT`. What
/// `validate` checks and what a listing asks for come from this one rule (SPEC §2 v2).
pub fn api_project(kind: ForgeKind, url: &RepoUrl, api_url: Option<&str>) -> Result<String, String> {
    let path = project_path(kind, url, api_url);
    match kind {
        ForgeKind::Github | ForgeKind::Gitea => {
            owner_repo(&path)?;
        }
        ForgeKind::Gitlab if !path.contains('/') => {
            return Err(format!(
                "expected the repository URL to end in /GROUP[/SUBGROUP...]/PROJECT, found path {path:?}"
            ));
        }
        ForgeKind::Gitlab | ForgeKind::Git => {}
    }
    Ok(path)
}

/// Splits `path` into `owner/repo` for GitHub and Gitea, which have no nested groups.
pub fn owner_repo(path: &str) -> Result<(&str, &str), String> {
    match path.split('/').collect::<Vec<_>>().as_slice() {
        [owner, repo] => Ok((owner, repo)),
        _ => Err(format!("expected the repository URL to end in /OWNER/REPO, found path {path:?}")),
    }
}

/// Everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const NOT_UNRESERVED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes everything but RFC 3986 unreserved characters (so `/` becomes `%2F`).
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(u: &str) -> RepoUrl {
        RepoUrl::parse(u).unwrap_or_else(|e| panic!("{u}: {e}"))
    }

    #[test]
    fn every_form_gives_the_same_path() {
        for u in [
            "https://github.com/acme/rag",
            "https://github.com/acme/rag.git",
            "https://github.com/acme/rag/",
            "https://github.com/acme/rag.git/",
            "https://user@github.com/acme/rag",
            "git@github.com:acme/rag.git",
            "ssh://git@github.com/acme/rag.git",
            "ssh://git@github.com:22/acme/rag",
            "HTTPS://GitHub.com/acme/rag?tab=readme#top",
        ] {
            let r = p(u);
            assert_eq!(r.host, "github.com", "{u}");
            assert_eq!(r.path, "acme/rag", "{u}");
        }
    }

    #[test]
    fn ports_schemes_and_nested_groups() {
        let r = p("http://127.0.0.1:8080/group/sub/subsub/repo.git");
        assert_eq!((r.scheme.as_str(), r.port, r.path.as_str()), ("http", Some(8080), "group/sub/subsub/repo"));
        assert_eq!(r.web_base(), "http://127.0.0.1:8080");
        assert_eq!(p("https://gitlab.com/a/b/c/-/tree/main").path, "a/b/c");
        assert_eq!(p("ssh://git@host:2222/a/b").web_base(), "https://host");
        assert_eq!(p("http://[::1]:3000/o/r").web_base(), "http://[::1]:3000");
        assert!(RepoUrl::parse("https://host:notaport/a/b").is_err());
        assert!(RepoUrl::parse("just-words").is_err());
        assert!(RepoUrl::parse("https:///a/b").is_err());
    }

    #[test]
    fn api_bases_per_spec() {
        let gh = p("https://github.com/acme/rag");
        assert_eq!(api_base(ForgeKind::Github, &gh, None), "https://api.github.com");
        let ghe = p("https://ghe.example.com:8443/acme/rag");
        assert_eq!(api_base(ForgeKind::Github, &ghe, None), "https://ghe.example.com:8443/api/v3");
        let ghe_com = p("https://octocorp.ghe.com/acme/rag");
        assert_eq!(api_base(ForgeKind::Github, &ghe_com, None), "https://api.octocorp.ghe.com");
        assert_eq!(
            api_base(ForgeKind::Github, &p("git@octocorp.ghe.com:acme/rag.git"), None),
            "https://api.octocorp.ghe.com"
        );
        let gl = p("http://gitlab.local/a/b/c");
        assert_eq!(api_base(ForgeKind::Gitlab, &gl, None), "http://gitlab.local/api/v4");
        let gt = p("git@gitea.local:o/r.git");
        assert_eq!(api_base(ForgeKind::Gitea, &gt, None), "https://gitea.local/api/v1");
        assert_eq!(api_base(ForgeKind::Gitea, &gt, Some("https://x/api/v1/")), "https://x/api/v1");
    }

    #[test]
    fn relative_url_root_is_stripped_from_the_project_path() {
        let u = p("https://host/gitlab/group/sub/app");
        assert_eq!(project_path(ForgeKind::Gitlab, &u, Some("https://host/gitlab/api/v4")), "group/sub/app");
        assert_eq!(project_path(ForgeKind::Gitlab, &u, Some("https://host/api/v4")), "gitlab/group/sub/app");
        assert_eq!(project_path(ForgeKind::Gitlab, &u, None), "gitlab/group/sub/app");
        let g = p("https://host/git/o/r");
        assert_eq!(project_path(ForgeKind::Gitea, &g, Some("https://host/git/api/v1")), "o/r");
    }

    #[test]
    fn owner_repo_and_encoding() {
        assert_eq!(owner_repo("acme/rag"), Ok(("acme", "rag")));
        assert!(owner_repo("a/b/c").is_err());
        assert!(owner_repo("solo").is_err());
        assert_eq!(encode("group/sub/my.repo"), "group%2Fsub%2Fmy.repo");
        assert_eq!(encode("a b+c"), "a%20b%2Bc");
        assert_eq!(encode("Az09-._~%é/?#"), "Az09-._~%25%C3%A9%2F%3F%23");
    }
}

//! GitHub's GraphQL API: up to [`BATCH`] repositories listed by one POST (SPEC §4 "Listing").
//!
//! Each repository is an aliased field `rN: repository(owner:, name:)` selecting its
//! `refs(refPrefix: "refs/heads/", first: 100, after:)`. GitHub answers `data` and `errors` side
//! by side: an error whose `path` starts with `rN` belongs to that repository only (`NOT_FOUND`,
//! `FORBIDDEN`), the others are listed all the same. A repository with more than 100 branches is
//! asked again, alone with the others that have more, from its `endCursor`. A repository GraphQL
//! cannot answer for any other reason (an error of another type, an unreadable answer, the
//! endpoint missing on an old Enterprise server) is listed through REST instead, with its
//! conditional requests. GraphQL listings carry no validators: GitHub sends no ETag for them.

use super::url::{RepoUrl, api_base, owner_repo, project_path};
use super::{Api, CheckError, CheckErrorKind, Checker, Listing, MAX_PAGES, MAX_REFS, http_error, listing};
use crate::config::{ForgeKind, GithubApi, Repository};
use crate::http::{HttpErrorKind, Method, Origin, Request};
use crate::model::{Sha, Validators};
use crate::secret::Secret;
use rayon::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

/// Repositories per request: GitHub's `first` limit is 100 nodes per connection, and a query of
/// 100 repositories x 100 refs stays far below the 500,000 node limit.
pub(super) const BATCH: usize = 100;

/// Refs per page: GitHub's maximum for `first`.
const REFS_PER_PAGE: u32 = 100;

/// Where one repository is asked: the GraphQL endpoint, the token, owner and name.
#[derive(Debug)]
pub(super) struct Target {
    /// `https://api.github.com/graphql`, or `https://HOST/api/graphql` on GitHub Enterprise Server.
    pub endpoint: String,
    /// The token, as given.
    pub token: Secret,
    /// Owner (user or organisation).
    pub owner: String,
    /// Repository name.
    pub name: String,
}

/// The GraphQL target of `repo`, when it is listed through GraphQL: a GitHub repository with a
/// token, `github_api: graphql`, and an API base whose GraphQL endpoint is known.
pub(super) fn target(repo: &Repository, mode: GithubApi) -> Option<Target> {
    let m = &repo.monitor;
    if m.kind != ForgeKind::Github || mode != GithubApi::Graphql {
        return None;
    }
    let token = m.auth.token.clone().filter(|t| !t.is_empty())?;
    let url = RepoUrl::parse(&m.repo_url).ok()?;
    let base = api_base(ForgeKind::Github, &url, m.api_url.as_deref());
    let endpoint = endpoint(&base)?;
    let path = project_path(ForgeKind::Github, &url, m.api_url.as_deref());
    let (owner, name) = owner_repo(&path).ok()?;
    Some(Target { endpoint, token, owner: owner.to_string(), name: name.to_string() })
}

/// The GraphQL endpoint beside a REST API base: `https://api.github.com` (and GHE.com's
/// `https://api.SUB.ghe.com`) -> `.../graphql`; an Enterprise Server's `https://HOST/api/v3` ->
/// `https://HOST/api/graphql`. Any other base has no known endpoint (REST is used).
pub(super) fn endpoint(api_base: &str) -> Option<String> {
    let base = api_base.trim_end_matches('/');
    if let Some(root) = base.strip_suffix("/api/v3") {
        return Some(format!("{root}/api/graphql"));
    }
    let host = crate::model::url::split(base).ok()?.host.to_ascii_lowercase();
    let bare = base.split_once("://").is_some_and(|(_, rest)| !rest.contains('/'));
    (bare && (host == "api.github.com" || (host.starts_with("api.") && host.ends_with(".ghe.com"))))
        .then(|| format!("{base}/graphql"))
}

/// What GraphQL said about one repository.
#[derive(Debug)]
enum Outcome {
    /// Still listing: more refs after `cursor`.
    More { cursor: String },
    /// Listed: every matching branch.
    Done,
    /// An error for this repository only.
    Failed(CheckError),
    /// GraphQL could not answer for this repository: list it through REST.
    Rest(String),
}

/// One repository of a batch while it is listed.
struct Item<'a> {
    repo: &'a Repository,
    cache: Option<&'a Validators>,
    target: Target,
    items: Vec<(String, Sha)>,
    pages: usize,
    requests: u32,
    outcome: Outcome,
}

impl Checker {
    /// Lists `batch` (at most [`BATCH`] repositories sharing one endpoint and token) with as
    /// few GraphQL requests as their refs allow; results in input order.
    pub(super) fn check_graphql(
        &self,
        batch: Vec<(&Repository, Option<&Validators>, Target)>,
    ) -> Vec<Result<Listing, CheckError>> {
        let started = Instant::now();
        let deadline = started + self.budget;
        let Some(first) = batch.first() else { return Vec::new() };
        let endpoint = first.2.endpoint.clone();
        let token = first.2.token.clone();
        if let (Ok(origin), Ok(mut hosts)) = (Origin::parse(&endpoint), self.hosts.lock()) {
            hosts.entry(origin.host).or_insert(ForgeKind::Github.as_str());
        }
        let mut items: Vec<Item<'_>> = batch
            .into_iter()
            .map(|(repo, cache, target)| Item {
                repo,
                cache,
                target,
                items: Vec::new(),
                pages: 0,
                requests: 0,
                outcome: Outcome::More { cursor: String::new() },
            })
            .collect();
        let mut round = 0usize;
        loop {
            let pending: Vec<usize> = items
                .iter()
                .enumerate()
                .filter(|(_, i)| matches!(i.outcome, Outcome::More { .. }))
                .map(|(n, _)| n)
                .collect();
            if pending.is_empty() {
                break;
            }
            round += 1;
            if crate::signals::stop_requested() || Instant::now() >= deadline {
                for n in pending {
                    let it = &mut items[n];
                    it.outcome = Outcome::Failed(CheckError {
                        repo: it.repo.name.clone(),
                        kind: CheckErrorKind::Network,
                        message: format!(
                            "repository {}: GitHub GraphQL listing of {}/{} ran out of time after {} pages",
                            it.repo.name, it.target.owner, it.target.name, it.pages
                        ),
                    });
                }
                break;
            }
            self.round(&endpoint, &token, &mut items, &pending, deadline, round);
        }
        // What GraphQL could not answer goes through REST, in parallel within the pool.
        let rest: Vec<usize> =
            items.iter().enumerate().filter(|(_, i)| matches!(i.outcome, Outcome::Rest(_))).map(|(n, _)| n).collect();
        let fallbacks: HashMap<usize, Result<Listing, CheckError>> = rest
            .par_iter()
            .with_max_len(1)
            .map(|&n| {
                let it = &items[n];
                if let Outcome::Rest(why) = &it.outcome {
                    log::debug!(repo = it.repo.name.as_str(); "GraphQL could not list it ({why}): listing through REST");
                }
                (n, self.check(it.repo, it.cache))
            })
            .collect();
        let ms = started.elapsed().as_millis() as u64;
        let mut fallbacks = fallbacks;
        items
            .into_iter()
            .enumerate()
            .map(|(n, it)| {
                let result = match it.outcome {
                    Outcome::Rest(_) => fallbacks.remove(&n).unwrap_or_else(|| {
                        Err(CheckError {
                            repo: it.repo.name.clone(),
                            kind: CheckErrorKind::Protocol,
                            message: format!(
                                "repository {}: internal error: no REST fallback result (a bug)",
                                it.repo.name
                            ),
                        })
                    }),
                    Outcome::Failed(e) => Err(e),
                    // `More` cannot remain after the loop; treated like `Done` with what was read.
                    Outcome::Done | Outcome::More { .. } => {
                        let fp = super::fingerprint(ForgeKind::Github, &it.target.endpoint, &it.repo.monitor.patterns);
                        Ok(listing(&it.repo.monitor, fp, it.items, None, it.requests))
                    }
                };
                match &result {
                    Ok(l) => log::debug!(
                        repo = it.repo.name.as_str(), forge = "github", api = "graphql", branches = l.heads.len(),
                        requests = l.requests, duration_ms = ms; "checked"
                    ),
                    Err(e) => log::debug!(
                        repo = it.repo.name.as_str(), forge = "github", api = "graphql", kind = e.kind.as_str(),
                        duration_ms = ms; "check failed"
                    ),
                }
                result
            })
            .collect()
    }

    /// One request for the `pending` items (their index in `items` is their alias).
    fn round(
        &self,
        endpoint: &str,
        token: &Secret,
        items: &mut [Item<'_>],
        pending: &[usize],
        deadline: Instant,
        round: usize,
    ) {
        let query = query(pending.iter().map(|&n| {
            let it = &items[n];
            let cursor = match &it.outcome {
                Outcome::More { cursor } if !cursor.is_empty() => Some(cursor.as_str()),
                _ => None,
            };
            (n, it.target.owner.as_str(), it.target.name.as_str(), cursor)
        }));
        let body = serde_json::json!({ "query": query }).to_string().into_bytes();
        let req = Request::new(Method::Post, endpoint)
            .deadline(deadline)
            .public_path()
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .secret_header("Authorization", Secret::new(format!("Bearer {}", token.expose())))
            .body("application/json", body);
        let origin = Origin::parse(endpoint).ok();
        if let Some(why) = origin.as_ref().and_then(|o| self.given_up(o, "GitHub")) {
            for &n in pending {
                let it = &mut items[n];
                it.outcome = Outcome::Failed(CheckError {
                    repo: it.repo.name.clone(),
                    kind: CheckErrorKind::RateLimited,
                    message: format!("repository {}: {why}", it.repo.name),
                });
            }
            return;
        }
        let resp = match self.http.send(&req) {
            Ok(r) => r,
            Err(e) => {
                if let (HttpErrorKind::RateLimited { until }, Some(o)) = (&e.kind, origin.clone()) {
                    self.give_up(o, *until);
                }
                // No answer, refused credentials, a rate limit, a server failing after its
                // retries or an answer too large hold for REST too (one origin, one token): the
                // repositories fail as REST would have. Only a request GraphQL refuses (no GraphQL
                // endpoint on an old Enterprise server: 404; 400, 422) is worth REST.
                let rest = matches!(e.kind, HttpErrorKind::Status)
                    && e.status.is_some_and(|s| (400..500).contains(&s) && !matches!(s, 401 | 403 | 407 | 429));
                for &n in pending {
                    let it = &mut items[n];
                    it.requests = it.requests.saturating_add(e.requests);
                    it.outcome = if rest {
                        Outcome::Rest(format!("the GraphQL request failed: {}", e.detail))
                    } else {
                        Outcome::Failed(http_error(it.repo, &api(it), e.clone()))
                    };
                }
                return;
            }
        };
        for &n in pending {
            items[n].requests = items[n].requests.saturating_add(resp.requests);
        }
        let doc: Value = match serde_json::from_slice(&resp.body) {
            Ok(v) => v,
            Err(e) => {
                for &n in pending {
                    items[n].outcome = Outcome::Rest(format!("the GraphQL answer is not JSON: {e}"));
                }
                return;
            }
        };
        if let Some(rl) = doc.pointer("/data/rateLimit") {
            log::debug!(
                round = round, repositories = pending.len(),
                cost = rl.get("cost").and_then(Value::as_i64).unwrap_or(-1),
                remaining = rl.get("remaining").and_then(Value::as_i64).unwrap_or(-1),
                reset_at = rl.get("resetAt").and_then(Value::as_str).unwrap_or("");
                "GitHub GraphQL"
            );
        }
        // Errors by alias; an error without a path (or of another field) concerns the query.
        let mut by_alias: BTreeMap<String, (String, String)> = BTreeMap::new();
        let mut general: Option<(String, String)> = None;
        for e in doc.get("errors").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
            let kind = e.get("type").and_then(Value::as_str).unwrap_or("").to_string();
            let message = crate::text::truncate(
                &crate::text::one_line(e.get("message").and_then(Value::as_str).unwrap_or("")),
                300,
            );
            let path = e.get("path").and_then(Value::as_array);
            match path.and_then(|p| p.first()).and_then(Value::as_str) {
                // The first error of an alias says it (a nested one is kept as "other").
                Some(alias) if alias.starts_with('r') => {
                    let nested = path.is_some_and(|p| p.len() > 1);
                    let kind = if nested { format!("nested {kind}") } else { kind };
                    by_alias.entry(alias.to_string()).or_insert((kind, message));
                }
                _ => {
                    general.get_or_insert((kind, message));
                }
            }
        }
        if let Some((kind, message)) = &general
            && kind == "RATE_LIMITED"
        {
            let until = resp
                .header("x-ratelimit-reset")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .and_then(|s| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(s)));
            if let Some(o) = origin {
                self.give_up(o, until);
            }
            let when = until.map(|t| format!(" until {}", crate::time::rfc3339(t))).unwrap_or_default();
            for &n in pending {
                let it = &mut items[n];
                it.outcome = Outcome::Failed(CheckError {
                    repo: it.repo.name.clone(),
                    kind: CheckErrorKind::RateLimited,
                    message: format!("repository {}: rate limited by GitHub GraphQL{when}: {message}", it.repo.name),
                });
            }
            return;
        }
        let data = doc.get("data").filter(|d| d.is_object());
        for &n in pending {
            let alias = format!("r{n}");
            let it = &mut items[n];
            let node = data.and_then(|d| d.get(&alias)).filter(|v| !v.is_null());
            let error = by_alias.get(&alias);
            it.outcome = match (node, error) {
                (None, Some((kind, message))) if kind == "NOT_FOUND" => Outcome::Failed(CheckError {
                    repo: it.repo.name.clone(),
                    kind: CheckErrorKind::NotFound,
                    message: format!(
                        "repository {}: repository {}/{} not found at {} or the token lacks access to it (GraphQL NOT_FOUND: {message})",
                        it.repo.name, it.target.owner, it.target.name, it.target.endpoint
                    ),
                }),
                (None, Some((kind, message))) if kind == "FORBIDDEN" => Outcome::Failed(CheckError {
                    repo: it.repo.name.clone(),
                    kind: CheckErrorKind::Unauthorized,
                    message: format!(
                        "repository {}: token lacks access to {}/{} (GraphQL FORBIDDEN: {message}): check the token's scopes, SSO authorisation and the repository's permissions",
                        it.repo.name, it.target.owner, it.target.name
                    ),
                }),
                (_, Some((kind, message))) => Outcome::Rest(format!("GraphQL error {kind}: {message}")),
                (None, None) => Outcome::Rest(match &general {
                    Some((kind, message)) => format!("GraphQL error {kind}: {message}"),
                    None => "GraphQL answered no data for it".to_string(),
                }),
                (Some(node), None) => read_refs(it, node),
            };
        }
    }
}

/// Reads one repository's `refs` page into `it`, and says what comes next.
fn read_refs(it: &mut Item<'_>, node: &Value) -> Outcome {
    let fail = |it: &Item<'_>, msg: String| {
        Outcome::Failed(CheckError {
            repo: it.repo.name.clone(),
            kind: CheckErrorKind::Protocol,
            message: format!(
                "repository {}: GitHub GraphQL listing of {}/{}: {msg}",
                it.repo.name, it.target.owner, it.target.name
            ),
        })
    };
    let Some(refs) = node.get("refs").filter(|r| r.is_object()) else {
        return Outcome::Rest("GraphQL answered no refs for it".into());
    };
    let Some(nodes) = refs.get("nodes").and_then(Value::as_array) else {
        return Outcome::Rest("GraphQL answered refs without nodes".into());
    };
    it.pages = it.pages.saturating_add(1);
    let (mut skipped, mut first_skipped) = (0usize, None);
    for n in nodes {
        let name = n.get("name").and_then(Value::as_str);
        let target = n.get("target");
        // An annotated tag under refs/heads/: the commit it points to.
        let oid = target
            .and_then(|t| t.get("target"))
            .and_then(|t| t.get("oid"))
            .or_else(|| target.and_then(|t| t.get("oid")))
            .and_then(Value::as_str);
        match (name, oid.and_then(Sha::parse)) {
            (Some(name), Some(sha)) => {
                if it.repo.monitor.matches(name) {
                    it.items.push((name.to_string(), sha));
                }
            }
            _ => {
                skipped += 1;
                first_skipped.get_or_insert_with(|| crate::text::truncate(&n.to_string(), 200));
            }
        }
    }
    if skipped > 0 {
        log::warn!(
            repo = it.repo.name.as_str(), skipped = skipped;
            "skipping unreadable branch entries: {}", first_skipped.as_deref().unwrap_or("")
        );
    }
    if it.items.len() > MAX_REFS {
        return fail(it, format!("more than {MAX_REFS} matching branches: narrow monitor.branches"));
    }
    let info = refs.get("pageInfo");
    let more = info.and_then(|p| p.get("hasNextPage")).and_then(Value::as_bool).unwrap_or(false);
    if !more {
        return Outcome::Done;
    }
    let Some(cursor) = info.and_then(|p| p.get("endCursor")).and_then(Value::as_str).filter(|c| !c.is_empty()) else {
        return fail(it, "hasNextPage without an endCursor".into());
    };
    if matches!(&it.outcome, Outcome::More { cursor: before } if before == cursor) {
        return fail(it, "the same cursor twice: listing stopped".into());
    }
    if it.pages >= MAX_PAGES {
        return fail(it, format!("more than {MAX_PAGES} pages: listing stopped"));
    }
    Outcome::More { cursor: cursor.to_string() }
}

/// The REST description of `it`, for error messages in the REST terms users know.
fn api(it: &Item<'_>) -> Api {
    Api {
        forge: "GitHub",
        project: format!("{}/{}", it.target.owner, it.target.name),
        api_base: it.target.endpoint.clone(),
        first_url: it.target.endpoint.clone(),
        headers: Vec::new(),
        secret: Some(("Authorization", it.target.token.clone())),
        sha_field: "sha",
    }
}

/// The query for `(alias index, owner, name, cursor)`: one aliased `repository` per entry.
fn query<'a>(entries: impl Iterator<Item = (usize, &'a str, &'a str, Option<&'a str>)>) -> String {
    let mut q = String::from("query {\n");
    for (n, owner, name, cursor) in entries {
        // JSON string syntax is GraphQL string syntax (quotes, backslashes, \uXXXX escapes).
        let lit = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let after = cursor.map_or_else(|| "null".to_string(), lit);
        let _ = writeln!(
            q,
            "  r{n}: repository(owner: {}, name: {}) {{ refs(refPrefix: \"refs/heads/\", first: {REFS_PER_PAGE}, after: {after}) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ name target {{ oid ... on Tag {{ target {{ oid }} }} }} }} }} }}",
            lit(owner),
            lit(name)
        );
    }
    q.push_str("  rateLimit { cost remaining resetAt }\n}\n");
    q
}

/// Splits `repos` into GraphQL batches (same endpoint and token, at most [`BATCH`] each) and the
/// indexes left to the per-repository path.
#[allow(clippy::type_complexity)]
pub(super) fn plan<'a>(
    repos: &[(&'a Repository, Option<&'a Validators>)],
    mode: GithubApi,
) -> (Vec<Vec<(usize, &'a Repository, Option<&'a Validators>, Target)>>, Vec<usize>) {
    let mut singles = Vec::new();
    let mut groups: BTreeMap<(String, String), Vec<(usize, &'a Repository, Option<&'a Validators>, Target)>> =
        BTreeMap::new();
    for (i, (repo, cache)) in repos.iter().enumerate() {
        match target(repo, mode) {
            Some(t) => {
                groups.entry((t.endpoint.clone(), t.token.expose().to_string())).or_default().push((i, repo, *cache, t))
            }
            None => singles.push(i),
        }
    }
    let mut batches = Vec::new();
    for (_, group) in groups {
        // Each batch its own allocation of at most BATCH entries (a `split_off` loop left every
        // batch holding the whole group's capacity: 59 MB at 10,000 repositories).
        let mut rest = group.into_iter().peekable();
        while rest.peek().is_some() {
            batches.push(rest.by_ref().take(BATCH).collect::<Vec<_>>());
        }
    }
    (batches, singles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_api_base() {
        assert_eq!(endpoint("https://api.github.com").as_deref(), Some("https://api.github.com/graphql"));
        assert_eq!(endpoint("https://ghe.example.com/api/v3").as_deref(), Some("https://ghe.example.com/api/graphql"));
        assert_eq!(endpoint("http://127.0.0.1:8080/api/v3/").as_deref(), Some("http://127.0.0.1:8080/api/graphql"));
        assert_eq!(endpoint("https://api.octo.ghe.com").as_deref(), Some("https://api.octo.ghe.com/graphql"));
        assert_eq!(endpoint("https://proxy.example.com/github"), None);
        assert_eq!(endpoint("https://api.github.com/x"), None);
    }

    #[test]
    fn query_aliases_every_repository_and_escapes_names() {
        let q = query([(0, "acme", "app", None), (7, "o\"x", "n\\y", Some("Y3Vyc29y"))].into_iter());
        assert!(q.contains("r0: repository(owner: \"acme\", name: \"app\")"), "{q}");
        assert!(q.contains("after: null"), "{q}");
        assert!(q.contains("r7: repository(owner: \"o\\\"x\", name: \"n\\\\y\")"), "{q}");
        assert!(q.contains("after: \"Y3Vyc29y\""), "{q}");
        assert!(q.contains("first: 100"), "{q}");
        assert!(q.contains("rateLimit { cost remaining resetAt }"), "{q}");
    }
}

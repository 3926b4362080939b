//! A fake GitHub / GitLab / Gitea REST API on 127.0.0.1, serving branch lists of REAL bare
//! repositories (refs read from the ref files on every request, so a test that moves a branch
//! sees the change at once).
//!
//! One server answers all three APIs, told apart by path, exactly where sentry derives them
//! from a repository URL `http://127.0.0.1:PORT/<path>`:
//!
//! | forge  | endpoint                                               | auth header accepted                    | pages                                  |
//! |--------|--------------------------------------------------------|-----------------------------------------|----------------------------------------|
//! | GitHub | `/api/v3/repos/{owner}/{repo}/branches` (or `/repos/…`) | `Authorization: Bearer T` / `token T`   | `per_page` (30, max 100), `page`; `Link` |
//! | GitLab | `/api/v4/projects/{url-encoded path}/repository/branches` | `PRIVATE-TOKEN: T` / `Authorization: Bearer T` | `per_page` (20, max 100), `page`; `X-Next-Page`, `X-Total(-Pages)`, `Link` |
//! | Gitea  | `/api/v1/repos/{owner}/{repo}/branches`                | `Authorization: token T` / `Bearer T`   | `limit` (30, max 50), `page`; `Link`, `X-Total-Count` |
//!
//! Commit statuses, as each API documents them (a JSON body; 201 with the created status):
//! GitHub `POST …/repos/{o}/{r}/statuses/{sha}` (`state` pending|success|failure|error,
//! `description` at most 140 characters, else 422), GitLab `POST /api/v4/projects/{id}/statuses/{sha}`
//! (`state` pending|running|success|failed|canceled|skipped, `name` or `context`, `ref`; a
//! `running` status cannot run again: 400), Gitea `POST /api/v1/repos/{o}/{r}/statuses/{sha}`
//! (`state` pending|success|error|failure|warning). An unknown commit is 422 (GitHub, Gitea) or
//! 404 (GitLab). Posting needs a token once [`FakeForge::require_token`] was called;
//! [`FakeForge::forbid_statuses`] answers them 403 as a token without write access gets.
//! [`FakeForge::statuses`] lists the statuses created, in order.
//!
//! `<path>` maps to `root/<path>.git` or else `root/<path>`. Behaviour, as each service documents
//! it (quirks included), by default or by a switch:
//! - without [`FakeForge::require_token`] everything is public. With it, a request without a
//!   token gets a 404 (the three forges hide private repositories from anonymous callers); a
//!   token that is sent but not accepted is a 401 with that forge's JSON error body. GitLab takes
//!   an OAuth token ([`FakeForge::require_oauth_token`]) only as `Authorization: Bearer`.
//! - GitHub and GitLab: every 200 carries a weak `ETag`; `If-None-Match` with it gets a 304.
//!   GitHub's 304 carries no pagination headers, GitLab's repeats them
//!   ([`FakeForge::pagination_on_304`] changes either). On GitHub a 304 does not use up the rate
//!   limit. GitHub's next links go to `/repositories/{id}/branches`; a renamed repository
//!   ([`FakeForge::rename`]) answers 301 to it.
//! - GitLab: `Link` with `first`, `last`, `prev`, `next` (its URLs carry `id=`), and
//!   `X-Next-Page`, `X-Total(-Pages)`; [`FakeForge::gitlab_old_pager`]: an old GitLab that
//!   ignored `page` and said `X-Next-Page: 2` forever.
//! - Gitea: no ETag and no 304 on branch listings, branches newest commit first, `limit` capped
//!   at `MAX_RESPONSE_ITEMS` ([`FakeForge::max_response_items`], 50 by default), `Link` joined
//!   with `,` (no space) and `X-Total-Count`; [`FakeForge::gitea_link`] drops the `Link`.
//! - [`FakeForge::external_url`]: links built from a configured external URL (GitLab's
//!   `external_url`, Gitea's `ROOT_URL`, the GHES hostname) that differs from the one used.
//! - [`FakeForge::after_page`]: the repository changes between two page requests.
//! - rate-limit headers: GitHub `x-ratelimit-*`, GitLab `RateLimit-*`.
//! - injected faults, consumed one per request in order, before anything else:
//!   [`FakeForge::fail_next`] (a status, e.g. 502), [`FakeForge::rate_limit_next`] (GitHub:
//!   403 + `x-ratelimit-remaining: 0` + reset; GitLab: 429 `text/plain` + `Retry-After`; Gitea:
//!   429 + `Retry-After`), [`FakeForge::throttle_next`] (429 + `Retry-After` on every forge),
//!   [`FakeForge::secondary_limit_next`] (GitHub's secondary limit: 403 or 429, no `Retry-After`).
//! - [`FakeForge::set_latency`] delays every answer; [`FakeForge::pagination_loop`] makes every
//!   `next` link point at the page itself.
//! - [`FakeForge::requests`] is the log: method, path+query, headers (lowercase), status;
//!   [`FakeForge::max_in_flight`] the most requests answered at once.
//!
//! - plain Git: `…/info/refs` and `…/git-upload-pack` of any repository path are Git smart HTTP
//!   as `git http-backend` answers it (protocol v2 `ls-refs`, see [`super::fake_git`]), behind the
//!   same faults and latency; with [`FakeForge::require_token`] they need Basic credentials whose
//!   password is a token (any user name), else 401 with `WWW-Authenticate: Basic`.
//!
//! A thread per connection (keep-alive, see [`super::http1`]), so concurrent clients never queue.

use super::fake_git::{self, Endpoint, GitAnswer};
use super::git_server::LoggedRequest;
use super::http1::{Request, Response, Server};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which API a request spoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Github,
    Gitlab,
    Gitea,
}

impl Flavor {
    /// The API path prefix sentry derives for a non-github.com host.
    pub fn prefix(self) -> &'static str {
        match self {
            Flavor::Github => "/api/v3",
            Flavor::Gitlab => "/api/v4",
            Flavor::Gitea => "/api/v1",
        }
    }

    /// The `repo_type` spelling.
    pub fn repo_type(self) -> &'static str {
        match self {
            Flavor::Github => "github",
            Flavor::Gitlab => "gitlab",
            Flavor::Gitea => "gitea",
        }
    }
}

/// An injected answer for the next request.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Status(u16),
    RateLimit(u64),
    Throttle(u64),
    Secondary(u16),
}

/// Something to do once, after page `page` of a listing was answered 200.
type Hook = (usize, Box<dyn FnOnce() + Send>);

struct Shared {
    root: PathBuf,
    base: String,
    tokens: Mutex<Vec<String>>,
    log: Mutex<Vec<LoggedRequest>>,
    faults: Mutex<VecDeque<Fault>>,
    latency_ms: AtomicU64,
    github_remaining: AtomicU64,
    pagination_on_304: Mutex<Option<bool>>,
    pagination_loop: AtomicBool,
    external: Mutex<Option<String>>,
    oauth_tokens: Mutex<Vec<String>>,
    max_response_items: AtomicUsize,
    gitea_link: AtomicBool,
    gitlab_old_pager: AtomicBool,
    renamed: Mutex<BTreeMap<String, String>>,
    ids: Mutex<BTreeMap<u64, String>>,
    hooks: Mutex<Vec<Hook>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    graphql_remaining: AtomicU64,
    graphql_batches: Mutex<Vec<usize>>,
    graphql_forbidden: Mutex<Vec<String>>,
    graphql_broken: Mutex<Vec<String>>,
    graphql_missing: AtomicBool,
    statuses: Mutex<Vec<PostedStatus>>,
    forbid_statuses: AtomicBool,
}

/// A commit status the fake forge created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostedStatus {
    pub flavor: Flavor,
    /// The repository path (`acme/app`, `group/sub/app`).
    pub repo: String,
    pub sha: String,
    /// As sent: GitHub and Gitea `pending`/`success`/`failure`/`error`, GitLab `running`/`success`/`failed`/`canceled`.
    pub state: String,
    /// `context` (GitHub, Gitea) or `name` (GitLab).
    pub context: String,
    pub description: String,
    /// GitLab's `ref`, if sent.
    pub git_ref: Option<String>,
}

/// A running fake forge; stops when dropped.
pub struct FakeForge {
    shared: Arc<Shared>,
    server: Server,
}

impl FakeForge {
    /// Serves the repositories under `root`.
    pub fn start(root: &Path) -> FakeForge {
        let mut made = None;
        let server = Server::start_with(|port| {
            let shared = Arc::new(Shared {
                root: root.to_path_buf(),
                base: format!("http://127.0.0.1:{port}"),
                tokens: Mutex::new(Vec::new()),
                log: Mutex::new(Vec::new()),
                faults: Mutex::new(VecDeque::new()),
                latency_ms: AtomicU64::new(0),
                github_remaining: AtomicU64::new(5000),
                pagination_on_304: Mutex::new(None),
                pagination_loop: AtomicBool::new(false),
                external: Mutex::new(None),
                oauth_tokens: Mutex::new(Vec::new()),
                max_response_items: AtomicUsize::new(50),
                gitea_link: AtomicBool::new(true),
                gitlab_old_pager: AtomicBool::new(false),
                renamed: Mutex::new(BTreeMap::new()),
                ids: Mutex::new(BTreeMap::new()),
                hooks: Mutex::new(Vec::new()),
                in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(0),
                statuses: Mutex::new(Vec::new()),
                forbid_statuses: AtomicBool::new(false),
                graphql_remaining: AtomicU64::new(5000),
                graphql_batches: Mutex::new(Vec::new()),
                graphql_forbidden: Mutex::new(Vec::new()),
                graphql_broken: Mutex::new(Vec::new()),
                graphql_missing: AtomicBool::new(false),
            });
            made = Some(shared.clone());
            move |request| handle(&shared, request)
        });
        let shared = made.expect("start_with calls make");
        FakeForge { shared, server }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        self.shared.base.clone()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The web URL of `rel` (e.g. `acme/app`, `group/sub/deep/app`): what goes in `repo_url`.
    pub fn repo_url(&self, rel: &str) -> String {
        format!("{}/{}", self.shared.base, rel.trim_matches('/'))
    }

    /// The API base sentry derives for `flavor` on this host.
    pub fn api_url(&self, flavor: Flavor) -> String {
        format!("{}{}", self.shared.base, flavor.prefix())
    }

    /// From now on a valid token is needed, and `token` is one (call again to accept several).
    pub fn require_token(&self, token: &str) {
        self.shared.tokens.lock().expect("lock").push(token.to_string());
    }

    /// The next `n` requests are answered `status` (e.g. 502) with a plain body.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.push(n, Fault::Status(status));
    }

    /// The next `n` requests hit the rate limit, lifting in `secs` seconds: GitHub answers 403
    /// with `x-ratelimit-remaining: 0` and `x-ratelimit-reset`; GitLab and Gitea answer 429 with
    /// `Retry-After` (GitLab also `RateLimit-*`).
    pub fn rate_limit_next(&self, n: usize, secs: u64) {
        self.push(n, Fault::RateLimit(secs));
    }

    /// The next `n` requests are answered 429 with `Retry-After: secs`, whatever the forge.
    pub fn throttle_next(&self, n: usize, secs: u64) {
        self.push(n, Fault::Throttle(secs));
    }

    fn push(&self, n: usize, f: Fault) {
        let mut q = self.shared.faults.lock().expect("lock");
        q.extend(std::iter::repeat_n(f, n));
    }

    /// Every answer is delayed by `d`.
    pub fn set_latency(&self, d: Duration) {
        self.shared.latency_ms.store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Whether 304 answers repeat the pagination headers (default: GitHub no, GitLab yes).
    pub fn pagination_on_304(&self, on: bool) {
        *self.shared.pagination_on_304.lock().expect("lock") = Some(on);
    }

    /// GitLab also takes `token`, an OAuth token: only as `Authorization: Bearer`.
    pub fn require_oauth_token(&self, token: &str) {
        self.shared.oauth_tokens.lock().expect("lock").push(token.to_string());
    }

    /// Next-page links are built from `url` (`http://host[:port][/root]`) instead of the
    /// address the client used, as a forge behind another name builds them.
    pub fn external_url(&self, url: &str) {
        *self.shared.external.lock().expect("lock") = Some(url.trim_end_matches('/').to_string());
    }

    /// Gitea's `MAX_RESPONSE_ITEMS`: the most branches one page holds, whatever `limit` asks.
    pub fn max_response_items(&self, n: usize) {
        self.shared.max_response_items.store(n.max(1), Ordering::SeqCst);
    }

    /// Whether Gitea sends `Link` (default: yes); without it only `X-Total-Count` tells.
    pub fn gitea_link(&self, on: bool) {
        self.shared.gitea_link.store(on, Ordering::SeqCst);
    }

    /// An old GitLab: `page` ignored (every page is the whole list), `X-Next-Page: 2` forever.
    pub fn gitlab_old_pager(&self, on: bool) {
        self.shared.gitlab_old_pager.store(on, Ordering::SeqCst);
    }

    /// GitHub: `old` (owner/repo) was renamed to `new`: its API answers 301 to the repository's
    /// `/repositories/{id}` address.
    pub fn rename(&self, old: &str, new: &str) {
        self.shared.renamed.lock().expect("lock").insert(old.to_string(), new.to_string());
    }

    /// The next `n` requests hit GitHub's secondary rate limit: `status` 403 or 429, the
    /// documented message, no `Retry-After`, primary quota left.
    pub fn secondary_limit_next(&self, n: usize, status: u16) {
        self.push(n, Fault::Secondary(status));
    }

    /// Runs `f` once, right after page `page` (1-based) of a listing was answered 200: the
    /// repository changes while a client walks it.
    pub fn after_page(&self, page: usize, f: impl FnOnce() + Send + 'static) {
        self.shared.hooks.lock().expect("lock").push((page, Box::new(f)));
    }

    /// When on, every `next` link points at the page that carries it (a broken server).
    pub fn pagination_loop(&self, on: bool) {
        self.shared.pagination_loop.store(on, Ordering::SeqCst);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.log.lock().expect("log lock").clone()
    }

    /// The most requests this server was answering at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// The commit statuses created so far, in order.
    pub fn statuses(&self) -> Vec<PostedStatus> {
        self.shared.statuses.lock().expect("statuses lock").clone()
    }

    /// From now on, posting a commit status is refused with 403, as for a read-only token.
    pub fn forbid_statuses(&self) {
        self.shared.forbid_statuses.store(true, Ordering::SeqCst);
    }

    /// GraphQL: the number of `repository` fields of every query answered, in order.
    pub fn graphql_batches(&self) -> Vec<usize> {
        self.shared.graphql_batches.lock().expect("lock").clone()
    }

    /// GraphQL: `rel` (owner/repo) is refused as GitHub refuses a repository behind an
    /// organisation's SAML enforcement: `null` with an error of type `FORBIDDEN`.
    pub fn graphql_forbidden(&self, rel: &str) {
        self.shared.graphql_forbidden.lock().expect("lock").push(rel.to_string());
    }

    /// GraphQL: `rel`'s `refs` field fails (`null` with an error of no type, path `[alias, "refs"]`),
    /// as GitHub answers a field that timed out: sentry must list it through REST.
    pub fn graphql_broken(&self, rel: &str) {
        self.shared.graphql_broken.lock().expect("lock").push(rel.to_string());
    }

    /// An Enterprise Server without the GraphQL API: `/api/graphql` answers 404.
    pub fn graphql_missing(&self, on: bool) {
        self.shared.graphql_missing.store(on, Ordering::SeqCst);
    }

    /// Forgets the requests logged so far.
    pub fn clear_log(&self) {
        self.shared.log.lock().expect("log lock").clear();
    }
}

/// An answer before it is sent.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn json(status: u16, body: serde_json::Value) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type".into(), "application/json; charset=utf-8".into())],
            body: body.to_string(),
        }
    }

    fn header(mut self, k: &str, v: impl Into<String>) -> Answer {
        self.headers.push((k.to_string(), v.into()));
        self
    }
}

fn handle(sh: &Shared, request: Request) -> Response {
    let now = sh.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    sh.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let response = respond(sh, request);
    sh.in_flight.fetch_sub(1, Ordering::SeqCst);
    response
}

fn respond(sh: &Shared, request: Request) -> Response {
    let Request { method, url, headers, body } = request;
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let (status, out_headers, out_body) = match fake_git::route(path) {
        Some((rel, endpoint)) => {
            let a = git_http(sh, &method, query, rel, endpoint, &headers, &body);
            (a.status, a.headers, a.body)
        }
        None => {
            let a = answer(sh, &method, &url, &headers, &body);
            (a.status, a.headers, a.body.into_bytes())
        }
    };
    let latency = sh.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        std::thread::sleep(Duration::from_millis(latency));
    }
    sh.log.lock().expect("log lock").push(LoggedRequest { method, url, headers, status });
    Response { status, headers: out_headers, body: out_body }
}

/// Git smart HTTP for a plain-git repository: an injected fault first, then Basic credentials
/// when a token is required (the password is the token, as git sends it), then
/// [`fake_git::serve`].
fn git_http(
    sh: &Shared,
    method: &str,
    query: &str,
    rel: &str,
    endpoint: Endpoint,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> GitAnswer {
    let text = |status: u16, body: String| GitAnswer {
        status,
        headers: vec![("Content-Type".into(), "text/plain".into())],
        body: body.into_bytes(),
    };
    let fault = sh.faults.lock().expect("lock").pop_front();
    match fault {
        Some(Fault::Status(s)) => return text(s, format!("{s} injected\n")),
        // A Git host has no API rate-limit headers: a throttled request is a 429 with a wait.
        Some(Fault::Throttle(secs) | Fault::RateLimit(secs)) => {
            let mut a = text(429, "Too Many Requests\n".into());
            a.headers.push(("Retry-After".into(), secs.to_string()));
            return a;
        }
        Some(Fault::Secondary(s)) => return text(s, format!("{SECONDARY_LIMIT_MESSAGE}\n")),
        None => {}
    }
    let tokens = sh.tokens.lock().expect("lock").clone();
    if !tokens.is_empty() {
        use base64::Engine as _;
        let password = headers
            .get("authorization")
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|up| up.split_once(':').map(|(_, p)| p.to_string()));
        if !password.is_some_and(|p| tokens.contains(&p)) {
            let mut a = text(401, "Unauthorized\n".into());
            a.headers.push(("WWW-Authenticate".into(), "Basic realm=\"fake-forge\"".into()));
            return a;
        }
    }
    fake_git::serve(find_repo(&sh.root, rel).as_deref(), method, endpoint, query, headers, body)
}

/// What a request names: a repository by path, or (GitHub) by id.
enum Target {
    Path(String),
    Id(u64),
}

/// What a request asks about a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
enum What {
    Branches,
    Tags,
    /// `base...head` (GitHub, Gitea) or `?from=&to=` (GitLab).
    Compare(String, String),
}

/// Where a request goes: the API, the repository it names and what it asks.
fn route(path: &str, query: &str) -> Option<(Flavor, Target, What)> {
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let list = |w: &str| match w {
        "branches" => Some(What::Branches),
        "tags" => Some(What::Tags),
        _ => None,
    };
    let basehead = |spec: &str| {
        let spec = percent_decode(spec)?;
        let (b, h) = spec.split_once("...")?;
        Some(What::Compare(b.to_string(), h.to_string()))
    };
    let params: BTreeMap<&str, &str> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    match seg.as_slice() {
        ["api", "v3", "repos", o, r, w] | ["repos", o, r, w] => {
            Some((Flavor::Github, Target::Path(format!("{o}/{r}")), list(w)?))
        }
        ["api", "v3", "repos", o, r, "compare", spec] | ["repos", o, r, "compare", spec] => {
            Some((Flavor::Github, Target::Path(format!("{o}/{r}")), basehead(spec)?))
        }
        ["api", "v3", "repositories", id, w] | ["repositories", id, w] => {
            Some((Flavor::Github, Target::Id(id.parse().ok()?), list(w)?))
        }
        ["api", "v4", "projects", id, "repository", "compare"] => Some((
            Flavor::Gitlab,
            Target::Path(percent_decode(id)?),
            What::Compare(params.get("from")?.to_string(), params.get("to")?.to_string()),
        )),
        ["api", "v4", "projects", id, "repository", w] => {
            Some((Flavor::Gitlab, Target::Path(percent_decode(id)?), list(w)?))
        }
        ["api", "v1", "repos", o, r, "compare", spec] => {
            Some((Flavor::Gitea, Target::Path(format!("{o}/{r}")), basehead(spec)?))
        }
        ["api", "v1", "repos", o, r, w] => Some((Flavor::Gitea, Target::Path(format!("{o}/{r}")), list(w)?)),
        _ => None,
    }
}

/// GitHub's numeric id of a repository (stable for a path).
fn repo_id(rel: &str) -> u64 {
    fnv(rel.as_bytes()) % 1_000_000_000 + 1
}

/// The documented message of GitHub's secondary rate limit.
pub const SECONDARY_LIMIT_MESSAGE: &str = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:1111:2222:3333:4444.";

fn answer(sh: &Shared, method: &str, url: &str, headers: &BTreeMap<String, String>, body: &[u8]) -> Answer {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let status_target = status_route(path);
    // GitHub's GraphQL endpoint: `/graphql` on api.github.com, `/api/graphql` on GHES.
    let is_graphql = matches!(path, "/api/graphql" | "/graphql");
    // A status POST or a GraphQL query reaches no listing: what it lists does not matter there.
    let routed = if is_graphql {
        Some((Flavor::Github, Target::Id(0), What::Branches))
    } else {
        route(path, query).or_else(|| status_target.clone().map(|(f, rel, _)| (f, Target::Path(rel), What::Branches)))
    };
    let Some((flavor, target, what)) = routed else {
        return Answer::json(404, serde_json::json!({"message": "Not Found"}));
    };
    let fault = sh.faults.lock().expect("lock").pop_front();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    match fault {
        Some(Fault::Status(s)) => {
            return Answer {
                status: s,
                headers: vec![("Content-Type".into(), "text/html".into())],
                body: format!("<html><body><h1>{s} injected</h1></body></html>"),
            };
        }
        Some(Fault::Throttle(secs)) => {
            return Answer::json(429, serde_json::json!({"message": "Too Many Requests"}))
                .header("Retry-After", secs.to_string());
        }
        Some(Fault::Secondary(status)) => {
            return Answer::json(
                status,
                serde_json::json!({"message": SECONDARY_LIMIT_MESSAGE, "documentation_url": "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"}),
            )
            .header("x-ratelimit-limit", "5000")
            .header("x-ratelimit-remaining", "4990")
            .header("x-ratelimit-reset", (now + 3600).to_string())
            .header("x-ratelimit-resource", "core");
        }
        Some(Fault::RateLimit(secs)) => {
            return match flavor {
                Flavor::Github => Answer::json(
                    403,
                    serde_json::json!({"message": "API rate limit exceeded for user ID 1.", "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api", "status": "403"}),
                )
                .header("x-ratelimit-limit", "5000")
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-used", "5000")
                .header("x-ratelimit-reset", (now + secs).to_string())
                .header("x-ratelimit-resource", "core"),
                Flavor::Gitlab => Answer { status: 429, headers: vec![("Content-Type".into(), "text/plain".into())], body: "Retry later\n".into() }
                    .header("Retry-After", secs.to_string())
                    .header("RateLimit-Limit", "2000")
                    .header("RateLimit-Observed", "2001")
                    .header("RateLimit-Remaining", "0")
                    .header("RateLimit-Reset", (now + secs).to_string()),
                Flavor::Gitea => Answer::json(429, serde_json::json!({"message": "rate limit exceeded"})).header("Retry-After", secs.to_string()),
            };
        }
        None => {}
    }
    if is_graphql {
        return graphql(sh, method, headers, body);
    }
    if let Some((_, rel, sha)) = &status_target {
        return post_status(sh, flavor, rel, sha, method, headers, body);
    }
    if method != "GET" {
        return Answer::json(405, serde_json::json!({"message": "Method Not Allowed"}));
    }
    let rel = match target {
        Target::Path(rel) => rel,
        Target::Id(id) => match sh.ids.lock().expect("lock").get(&id) {
            Some(rel) => rel.clone(),
            None => return not_found(flavor, &sh.base),
        },
    };
    let ext = sh.external.lock().expect("lock").clone().unwrap_or_else(|| sh.base.clone());
    if flavor == Flavor::Github
        && let Some(new) = sh.renamed.lock().expect("lock").get(&rel).cloned()
    {
        let id = repo_id(&new);
        sh.ids.lock().expect("lock").insert(id, new);
        let prefix = if path.starts_with("/api/v3/") { "/api/v3" } else { "" };
        let location = format!("{ext}{prefix}/repositories/{id}/branches?{query}");
        return Answer::json(
            301,
            serde_json::json!({"message": "Moved Permanently", "url": location, "documentation_url": "https://docs.github.com/v3/#http-redirects"}),
        )
        .header("Location", location);
    }
    match check_auth(sh, flavor, headers) {
        Auth::Ok => {}
        Auth::Refused(a) => return a,
        Auth::Anonymous => return not_found(flavor, &sh.base),
    }
    let Some(repo) = find_repo(&sh.root, &rel) else {
        return not_found(flavor, &sh.base);
    };
    if let What::Compare(base, head) = &what {
        return compare(sh, flavor, &repo, &rel, base, head);
    }
    let refs = match what {
        What::Tags => read_tags(&repo).map(Refs::Listed),
        _ if flavor == Flavor::Gitea => read_heads_by_commit_time(&repo).map(Refs::Listed),
        _ => read_refs(&repo),
    };
    let Some(refs) = refs else {
        return Answer::json(500, serde_json::json!({"message": "cannot read repository"}));
    };
    // Borrowed: only the page answered is copied, not every branch of a large repository.
    let branches = refs.view();
    let params: BTreeMap<&str, &str> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    let max_items = sh.max_response_items.load(Ordering::SeqCst);
    let (size_key, default_size, max_size) = match flavor {
        Flavor::Github => ("per_page", 30, 100),
        Flavor::Gitlab => ("per_page", 20, 100),
        Flavor::Gitea => ("limit", 30.min(max_items), max_items),
    };
    let old_pager = flavor == Flavor::Gitlab && sh.gitlab_old_pager.load(Ordering::SeqCst);
    let total = branches.len();
    let mut size: usize = params.get(size_key).and_then(|v| v.parse().ok()).unwrap_or(default_size).clamp(1, max_size);
    let mut page: usize = params.get("page").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    if old_pager {
        (size, page) = (total.max(1), 1);
    }
    let pages = total.div_ceil(size).max(1);
    let items: Vec<serde_json::Value> = branches
        .iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .map(|(name, sha)| {
            if what == What::Tags {
                tag_json(flavor, &sh.base, &rel, name, sha)
            } else {
                branch_json(flavor, &sh.base, &rel, name, sha)
            }
        })
        .collect();
    let body = serde_json::Value::Array(items).to_string();
    let etag = format!("W/\"{:016x}\"", fnv(body.as_bytes()));
    let id = repo_id(&rel);
    if flavor == Flavor::Github {
        sh.ids.lock().expect("lock").insert(id, rel.clone());
    }
    let page_url = |p: usize| {
        let mut q: Vec<String> = query
            .split('&')
            .filter(|kv| !kv.is_empty() && !kv.starts_with("page=") && !kv.starts_with("id="))
            .map(String::from)
            .collect();
        q.push(format!("page={p}"));
        match flavor {
            Flavor::Github => {
                let prefix = if path.starts_with("/api/v3/") { "/api/v3" } else { "" };
                let w = if what == What::Tags { "tags" } else { "branches" };
                format!("{ext}{prefix}/repositories/{id}/{w}?{}", q.join("&"))
            }
            Flavor::Gitlab => {
                // GitLab repeats the project id among the parameters, sorted.
                let enc = path.split('/').nth(4).unwrap_or("");
                q.push(format!("id={enc}"));
                q.sort();
                format!("{ext}{path}?{}", q.join("&"))
            }
            Flavor::Gitea => format!("{ext}{path}?{}", q.join("&")),
        }
    };
    let looping = sh.pagination_loop.load(Ordering::SeqCst);
    let next = if looping { Some(page) } else { (page < pages).then_some(page + 1) };
    let mut links = Vec::new();
    if let Some(n) = next {
        links.push(format!("<{}>; rel=\"next\"", page_url(n)));
    }
    match flavor {
        Flavor::Gitlab => {
            if page > 1 {
                links.push(format!("<{}>; rel=\"prev\"", page_url(page - 1)));
            }
            links.push(format!("<{}>; rel=\"first\"", page_url(1)));
            links.push(format!("<{}>; rel=\"last\"", page_url(pages)));
        }
        _ => {
            if page < pages {
                links.push(format!("<{}>; rel=\"last\"", page_url(pages)));
            }
            if page > 1 {
                links.push(format!("<{}>; rel=\"first\"", page_url(1)));
                links.push(format!("<{}>; rel=\"prev\"", page_url(page - 1)));
            }
        }
    }
    let mut pagination: Vec<(String, String)> = Vec::new();
    let with_link = !old_pager && (flavor != Flavor::Gitea || sh.gitea_link.load(Ordering::SeqCst));
    if with_link && !links.is_empty() {
        let sep = if flavor == Flavor::Gitea { "," } else { ", " };
        pagination.push(("Link".into(), links.join(sep)));
    }
    match flavor {
        Flavor::Github => {}
        Flavor::Gitlab if old_pager => pagination.push(("X-Next-Page".into(), "2".into())),
        Flavor::Gitlab => {
            pagination.push(("X-Page".into(), page.to_string()));
            pagination.push(("X-Per-Page".into(), size.to_string()));
            pagination.push(("X-Next-Page".into(), next.map(|n| n.to_string()).unwrap_or_default()));
            pagination.push(("X-Prev-Page".into(), if page > 1 { (page - 1).to_string() } else { String::new() }));
            pagination.push(("X-Total".into(), total.to_string()));
            pagination.push(("X-Total-Pages".into(), pages.to_string()));
        }
        Flavor::Gitea => pagination.push(("X-Total-Count".into(), total.to_string())),
    }
    // Gitea sends no ETag on branch listings, so it never answers 304.
    let etags = flavor != Flavor::Gitea;
    let not_modified = etags
        && headers.get("if-none-match").is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut rate = Vec::new();
    match flavor {
        Flavor::Github => {
            // A 304 does not count against GitHub's rate limit.
            let remaining = if not_modified {
                sh.github_remaining.load(Ordering::SeqCst)
            } else {
                // Saturating: a long benchmark must not wrap the counter.
                let dec = |n: u64| Some(n.saturating_sub(1));
                sh.github_remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, dec).unwrap_or(0).saturating_sub(1)
            };
            rate.push(("x-ratelimit-limit".to_string(), "5000".to_string()));
            rate.push(("x-ratelimit-remaining".to_string(), remaining.to_string()));
            rate.push(("x-ratelimit-used".to_string(), (5000 - remaining.min(5000)).to_string()));
            rate.push(("x-ratelimit-reset".to_string(), (now + 3600).to_string()));
            rate.push(("x-ratelimit-resource".to_string(), "core".to_string()));
        }
        Flavor::Gitlab => {
            rate.push(("RateLimit-Limit".to_string(), "2000".to_string()));
            rate.push(("RateLimit-Remaining".to_string(), "1999".to_string()));
            rate.push(("RateLimit-Reset".to_string(), (now + 60).to_string()));
        }
        Flavor::Gitea => {}
    }
    if not_modified {
        let mut headers = vec![("ETag".to_string(), etag)];
        let repeat = sh.pagination_on_304.lock().expect("lock").unwrap_or(flavor != Flavor::Github);
        if repeat {
            headers.extend(pagination);
        }
        headers.extend(rate);
        return Answer { status: 304, headers, body: String::new() };
    }
    let mut a =
        Answer { status: 200, headers: vec![("Content-Type".into(), "application/json; charset=utf-8".into())], body };
    if etags {
        a.headers.push(("ETag".into(), etag));
    }
    a.headers.extend(pagination);
    a.headers.extend(rate);
    let due: Vec<Hook> = {
        let mut hooks = sh.hooks.lock().expect("lock");
        let (due, keep) = hooks.drain(..).partition(|(p, _)| *p == page);
        *hooks = keep;
        due
    };
    for (_, f) in due {
        f();
    }
    a
}

/// What the credentials of a request allow.
enum Auth {
    Ok,
    /// No credentials for a private repository: the forges answer 404.
    Anonymous,
    /// Credentials sent but refused: that forge's 401.
    Refused(Answer),
}

fn check_auth(sh: &Shared, flavor: Flavor, headers: &BTreeMap<String, String>) -> Auth {
    let tokens = sh.tokens.lock().expect("lock").clone();
    let oauth = sh.oauth_tokens.lock().expect("lock").clone();
    let auth = headers.get("authorization").map(String::as_str);
    let bearer = auth.and_then(|a| a.strip_prefix("Bearer "));
    let presented: Option<&str> = match flavor {
        Flavor::Github => bearer.or_else(|| auth.and_then(|a| a.strip_prefix("token "))),
        Flavor::Gitlab => headers.get("private-token").map(String::as_str).or(bearer),
        Flavor::Gitea => auth.and_then(|a| a.strip_prefix("token ")).or(bearer),
    };
    let ok = match presented {
        Some(t) => tokens.iter().any(|x| x == t) || (bearer == Some(t) && oauth.iter().any(|x| x == t)),
        None => tokens.is_empty() && oauth.is_empty(),
    };
    if ok {
        return Auth::Ok;
    }
    if presented.is_none() {
        return Auth::Anonymous;
    }
    Auth::Refused(match flavor {
        Flavor::Github => Answer::json(
            401,
            serde_json::json!({
                "message": "Bad credentials",
                "documentation_url": "https://docs.github.com/rest",
                "status": "401"
            }),
        ),
        Flavor::Gitlab => Answer::json(401, serde_json::json!({"message": "401 Unauthorized"})),
        Flavor::Gitea => Answer::json(
            401,
            serde_json::json!({
                "message": "user does not exist [uid: 0, name: ]",
                "url": format!("{}/api/swagger", sh.base)
            }),
        ),
    })
}

fn not_found(flavor: Flavor, base: &str) -> Answer {
    match flavor {
        Flavor::Github => Answer::json(
            404,
            serde_json::json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest/branches/branches#list-branches", "status": "404"}),
        ),
        Flavor::Gitlab => Answer::json(404, serde_json::json!({"message": "404 Project Not Found"})),
        Flavor::Gitea => Answer::json(
            404,
            serde_json::json!({"errors": null, "message": "The target couldn't be found.", "url": format!("{base}/api/swagger")}),
        ),
    }
}

fn branch_json(flavor: Flavor, base: &str, rel: &str, name: &str, sha: &str) -> serde_json::Value {
    match flavor {
        Flavor::Github => serde_json::json!({
            "name": name,
            "commit": {"sha": sha, "url": format!("{base}/api/v3/repos/{rel}/commits/{sha}")},
            "protected": false
        }),
        Flavor::Gitlab => serde_json::json!({
            "name": name, "merged": false, "protected": false, "default": name == "main",
            "developers_can_push": false, "developers_can_merge": false, "can_push": true,
            "web_url": format!("{base}/{rel}/-/tree/{name}"),
            "commit": {"id": sha, "short_id": &sha[..8], "title": "commit", "message": "commit"}
        }),
        Flavor::Gitea => serde_json::json!({
            "name": name,
            "commit": {"id": sha, "message": "commit", "url": format!("{base}/{rel}/commit/{sha}")},
            "protected": false, "user_can_push": true, "user_can_merge": true
        }),
    }
}

/// A tag of a listing, each forge's shape, peeled to its commit.
fn tag_json(flavor: Flavor, base: &str, rel: &str, name: &str, sha: &str) -> serde_json::Value {
    match flavor {
        Flavor::Github => serde_json::json!({
            "name": name,
            "commit": {"sha": sha, "url": format!("{base}/api/v3/repos/{rel}/commits/{sha}")},
            "zipball_url": format!("{base}/api/v3/repos/{rel}/zipball/refs/tags/{name}"),
            "tarball_url": format!("{base}/api/v3/repos/{rel}/tarball/refs/tags/{name}"),
            "node_id": "REF_x"
        }),
        Flavor::Gitlab => serde_json::json!({
            "name": name, "message": "", "target": sha, "release": null, "protected": false,
            "commit": {"id": sha, "short_id": &sha[..8], "title": "commit", "message": "commit"}
        }),
        Flavor::Gitea => serde_json::json!({
            "name": name, "message": "", "id": sha,
            "commit": {"sha": sha, "url": format!("{base}/api/v1/repos/{rel}/git/commits/{sha}")},
            "zipball_url": format!("{base}/{rel}/archive/{name}.zip"), "tarball_url": format!("{base}/{rel}/archive/{name}.tar.gz")
        }),
    }
}

/// GitHub's cap on the files of one comparison.
pub const GITHUB_COMPARE_MAX_FILES: usize = 300;

/// Where GitLab's comparison sets `overflow` (its `diff_max_files`).
pub const GITLAB_COMPARE_MAX_FILES: usize = 1000;

/// One commit of a comparison: id, parents, message.
struct Commit {
    sha: String,
    parents: Vec<String>,
    message: String,
}

fn git_out(repo: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").current_dir(repo).args(args).env("GIT_CONFIG_NOSYSTEM", "1").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn changed_files(repo: &Path, from: &str, to: &str) -> Vec<String> {
    git_out(repo, &["diff", "--name-only", "--no-renames", "-z", from, to])
        .unwrap_or_default()
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(String::from)
        .collect()
}

/// The comparison answers of the three forges, from the real repository: commits
/// `base..head` oldest first, files from the merge base to the head (three dots), each
/// forge's limits. No common history: GitHub answers 404, GitLab and Gitea list the head's
/// commits against the empty tree.
fn compare(sh: &Shared, flavor: Flavor, repo: &Path, rel: &str, base: &str, head: &str) -> Answer {
    let resolve = |r: &str| git_out(repo, &["rev-parse", "--verify", "--quiet", &format!("{r}^{{commit}}")]);
    let (Some(base_id), Some(head_id)) = (resolve(base), resolve(head)) else {
        return match flavor {
            Flavor::Github => Answer::json(
                404,
                serde_json::json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest/commits/commits#compare-two-commits", "status": "404"}),
            ),
            Flavor::Gitlab => Answer::json(404, serde_json::json!({"message": "404 Ref Not Found"})),
            Flavor::Gitea => Answer::json(
                404,
                serde_json::json!({"message": "GetCommit", "url": format!("{}/api/swagger", sh.base)}),
            ),
        };
    };
    let (base_id, head_id) = (base_id.trim().to_string(), head_id.trim().to_string());
    let merge_base = git_out(repo, &["merge-base", &base_id, &head_id]).map(|m| m.trim().to_string());
    if merge_base.is_none() && flavor == Flavor::Github {
        return Answer::json(
            404,
            serde_json::json!({"message": format!("No common ancestor between {base} and {head}."), "documentation_url": "https://docs.github.com/rest/commits/commits#compare-two-commits", "status": "404"}),
        );
    }
    const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
    let from = merge_base.clone().unwrap_or_else(|| EMPTY_TREE.to_string());
    let log = git_out(repo, &["log", "--reverse", "--format=%H%x1f%P%x1f%B%x1e", &format!("{base_id}..{head_id}")])
        .unwrap_or_default();
    let commits: Vec<Commit> = log
        .split('\x1e')
        .filter_map(|c| {
            let mut parts = c.trim_start_matches('\n').splitn(3, '\x1f');
            let sha = parts.next()?.trim().to_string();
            if sha.is_empty() {
                return None;
            }
            let parents = parts.next()?.split_whitespace().map(String::from).collect();
            Some(Commit { sha, parents, message: parts.next().unwrap_or("").to_string() })
        })
        .collect();
    let files = changed_files(repo, &from, &head_id);
    let count = |range: String| {
        git_out(repo, &["rev-list", "--count", &range]).and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0)
    };
    match flavor {
        Flavor::Github => {
            let ahead = count(format!("{base_id}..{head_id}"));
            let behind = count(format!("{head_id}..{base_id}"));
            let status = match (ahead, behind) {
                (0, 0) => "identical",
                (_, 0) => "ahead",
                (0, _) => "behind",
                _ => "diverged",
            };
            let commits: Vec<serde_json::Value> = commits
                .iter()
                .map(|c| serde_json::json!({
                    "sha": c.sha, "node_id": "C_x", "url": format!("{}/api/v3/repos/{rel}/commits/{}", sh.base, c.sha),
                    "commit": {"message": c.message, "tree": {"sha": EMPTY_TREE}},
                    "parents": c.parents.iter().map(|p| serde_json::json!({"sha": p, "url": format!("{}/api/v3/repos/{rel}/commits/{p}", sh.base)})).collect::<Vec<_>>()
                }))
                .collect();
            // GitHub lists at most 300 files, and says nothing about the others.
            let files: Vec<serde_json::Value> = files
                .iter()
                .take(GITHUB_COMPARE_MAX_FILES)
                .map(|f| serde_json::json!({"sha": EMPTY_TREE, "filename": f, "status": "modified", "additions": 1, "deletions": 0, "changes": 1}))
                .collect();
            Answer::json(
                200,
                serde_json::json!({
                    "url": format!("{}/api/v3/repos/{rel}/compare/{base}...{head}", sh.base),
                    "html_url": format!("{}/{rel}/compare/{base}...{head}", sh.base),
                    "base_commit": {"sha": base_id}, "merge_base_commit": {"sha": merge_base},
                    "status": status, "ahead_by": ahead, "behind_by": behind, "total_commits": commits.len(),
                    "commits": commits, "files": files
                }),
            )
        }
        Flavor::Gitlab => {
            let json_commit = |c: &Commit| {
                serde_json::json!({
                    "id": c.sha, "short_id": &c.sha[..8], "title": c.message.lines().next().unwrap_or(""),
                    "message": c.message, "parent_ids": c.parents
                })
            };
            let overflow = files.len() > GITLAB_COMPARE_MAX_FILES;
            let diffs: Vec<serde_json::Value> = files
                .iter()
                .take(GITLAB_COMPARE_MAX_FILES)
                .map(|f| serde_json::json!({"old_path": f, "new_path": f, "a_mode": "100644", "b_mode": "100644", "new_file": false, "renamed_file": false, "deleted_file": false, "diff": ""}))
                .collect();
            Answer::json(
                200,
                serde_json::json!({
                    "commit": commits.last().map(json_commit),
                    "commits": commits.iter().map(json_commit).collect::<Vec<_>>(),
                    "diffs": diffs, "compare_timeout": false, "compare_same_ref": base_id == head_id,
                    "overflow": overflow, "web_url": format!("{}/{rel}/-/compare/{base}...{head}", sh.base)
                }),
            )
        }
        Flavor::Gitea => {
            let commits: Vec<serde_json::Value> = commits
                .iter()
                .map(|c| {
                    let own = match c.parents.first() {
                        Some(p) => changed_files(repo, p, &c.sha),
                        None => changed_files(repo, EMPTY_TREE, &c.sha),
                    };
                    serde_json::json!({
                        "sha": c.sha, "url": format!("{}/api/v1/repos/{rel}/git/commits/{}", sh.base, c.sha),
                        "commit": {"message": c.message},
                        "parents": c.parents.iter().map(|p| serde_json::json!({"sha": p})).collect::<Vec<_>>(),
                        "files": own.iter().map(|f| serde_json::json!({"filename": f, "status": "modified"})).collect::<Vec<_>>()
                    })
                })
                .collect();
            Answer::json(200, serde_json::json!({"total_commits": commits.len(), "commits": commits}))
        }
    }
}

/// (tag, commit) sorted by name; annotated tags peeled to their commit.
fn read_tags(repo: &Path) -> Option<Vec<(String, String)>> {
    let out =
        git_out(repo, &["for-each-ref", "--format=%(refname:strip=2)%09%(*objectname)%09%(objectname)", "refs/tags"])?;
    Some(
        out.lines()
            .filter_map(|l| {
                let mut p = l.split('\t');
                let (name, peeled, id) = (p.next()?, p.next()?, p.next()?);
                Some((name.to_string(), if peeled.is_empty() { id } else { peeled }.to_string()))
            })
            .collect(),
    )
}

fn find_repo(root: &Path, rel: &str) -> Option<PathBuf> {
    if rel.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return None;
    }
    [root.join(format!("{rel}.git")), root.join(rel)].into_iter().find(|p| p.join("HEAD").is_file())
}

/// (branch, sha) sorted by name, as `git for-each-ref refs/heads` lists them.
fn read_heads(repo: &Path) -> Option<Vec<(String, String)>> {
    let refs = read_refs(repo)?;
    Some(refs.view().into_iter().map(|(n, s)| (n.to_string(), s.to_string())).collect())
}

/// A repository's refs as read, to be looked at through [`Refs::view`].
enum Refs {
    /// (name, sha) in the order to list them.
    Listed(Vec<(String, String)>),
    /// Branches from the ref files: `packed-refs` as read, and the loose refs (which win).
    Files { packed: String, loose: BTreeMap<String, String> },
}

impl Refs {
    /// (name, sha) in listing order, borrowed: a repository of 5,000 branches costs one vector
    /// per request, not 10,000 strings (a benchmark measures sentry, not this server).
    fn view(&self) -> Vec<(&str, &str)> {
        match self {
            Refs::Listed(v) => v.iter().map(|(n, s)| (n.as_str(), s.as_str())).collect(),
            Refs::Files { packed, loose } => {
                let mut heads: Vec<(&str, &str)> = packed
                    .lines()
                    .filter(|l| !l.starts_with('#') && !l.starts_with('^'))
                    .filter_map(|l| {
                        let (sha, name) = l.split_once(' ')?;
                        Some((name.strip_prefix("refs/heads/")?, sha))
                    })
                    .filter(|(name, _)| !loose.contains_key(*name))
                    .collect();
                heads.extend(loose.iter().map(|(n, s)| (n.as_str(), s.as_str())));
                // Stable and run-aware: a sorted packed-refs costs one pass. Of a name packed
                // twice the last line wins, as it did when they were inserted into a map.
                heads.sort_by(|a, b| a.0.cmp(b.0));
                heads.reverse();
                heads.dedup_by(|later, earlier| later.0 == earlier.0);
                heads.reverse();
                heads
            }
        }
    }
}

/// A repository's branches, read from the ref files themselves (loose refs over
/// `packed-refs`): no process per request, so a benchmark with a thousand repositories
/// measures sentry, not `git`. A repository in the reftable format falls back to asking git.
fn read_refs(repo: &Path) -> Option<Refs> {
    if repo.join("reftable").exists() {
        return read_heads_with_git(repo).map(Refs::Listed);
    }
    let packed = std::fs::read_to_string(repo.join("packed-refs")).unwrap_or_default();
    let mut heads = BTreeMap::new();
    fn walk(dir: &Path, prefix: &str, heads: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path(), &format!("{name}/"), heads),
                Ok(t) if t.is_file() && !name.ends_with(".lock") => {
                    if let Ok(sha) = std::fs::read_to_string(e.path()) {
                        let sha = sha.trim();
                        if !sha.starts_with("ref:") && !sha.is_empty() {
                            heads.insert(name, sha.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
    }
    walk(&repo.join("refs/heads"), "", &mut heads);
    Some(Refs::Files { packed, loose: heads })
}

/// Gitea's order: newest commit first (ties: by name).
fn read_heads_by_commit_time(repo: &Path) -> Option<Vec<(String, String)>> {
    for_each_ref(repo, &["--sort=refname", "--sort=-committerdate"])
}

fn read_heads_with_git(repo: &Path) -> Option<Vec<(String, String)>> {
    for_each_ref(repo, &[])
}

fn for_each_ref(repo: &Path, sort: &[&str]) -> Option<Vec<(String, String)>> {
    let out = Command::new("git")
        .current_dir(repo)
        .arg("for-each-ref")
        .args(sort)
        .args(["--format=%(refname:strip=2)%09%(objectname)", "refs/heads"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('\t').map(|(n, s)| (n.to_string(), s.to_string())))
            .collect(),
    )
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Where a commit status POST goes: the API, the repository path and the commit.
fn status_route(path: &str) -> Option<(Flavor, String, String)> {
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match seg.as_slice() {
        ["api", "v3", "repos", o, r, "statuses", sha] | ["repos", o, r, "statuses", sha] => {
            Some((Flavor::Github, format!("{o}/{r}"), sha.to_string()))
        }
        ["api", "v4", "projects", id, "statuses", sha] => Some((Flavor::Gitlab, percent_decode(id)?, sha.to_string())),
        ["api", "v1", "repos", o, r, "statuses", sha] => Some((Flavor::Gitea, format!("{o}/{r}"), sha.to_string())),
        _ => None,
    }
}

/// Creates a commit status the way each API does, or refuses it with that API's answer.
fn post_status(
    sh: &Shared,
    flavor: Flavor,
    rel: &str,
    sha: &str,
    method: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> Answer {
    if method != "POST" {
        return Answer::json(405, serde_json::json!({"message": "Method Not Allowed"}));
    }
    // Writing always needs a token; on a server without require_token any token is accepted.
    let tokenless = match flavor {
        Flavor::Gitlab => !headers.contains_key("private-token") && !headers.contains_key("authorization"),
        _ => !headers.contains_key("authorization"),
    };
    if tokenless {
        return match flavor {
            Flavor::Github => {
                Answer::json(401, serde_json::json!({"message": "Requires authentication", "status": "401"}))
            }
            Flavor::Gitlab => Answer::json(401, serde_json::json!({"message": "401 Unauthorized"})),
            Flavor::Gitea => Answer::json(401, serde_json::json!({"message": "token is required"})),
        };
    }
    match check_auth(sh, flavor, headers) {
        Auth::Ok => {}
        Auth::Anonymous => return not_found(flavor, &sh.base),
        Auth::Refused(a) => return a,
    }
    let Some(repo) = find_repo(&sh.root, rel) else {
        return not_found(flavor, &sh.base);
    };
    if sh.forbid_statuses.load(Ordering::SeqCst) {
        return match flavor {
            Flavor::Github => Answer::json(
                403,
                serde_json::json!({"message": "Resource not accessible by personal access token", "documentation_url": "https://docs.github.com/rest/commits/statuses#create-a-commit-status", "status": "403"}),
            ),
            Flavor::Gitlab => Answer::json(403, serde_json::json!({"message": "403 Forbidden"})),
            Flavor::Gitea => Answer::json(
                403,
                serde_json::json!({"message": "user should have a permission to write to a repo", "url": format!("{}/api/swagger", sh.base)}),
            ),
        };
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Answer::json(400, serde_json::json!({"message": "Problems parsing JSON"}));
    };
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
    let state = field("state").unwrap_or_default();
    let description = field("description").unwrap_or_default();
    let (states, context): (&[&str], String) = match flavor {
        Flavor::Github => (&["error", "failure", "pending", "success"], field("context").unwrap_or("default".into())),
        Flavor::Gitlab => (
            &["pending", "running", "success", "failed", "canceled", "skipped"],
            field("name").or_else(|| field("context")).unwrap_or("default".into()),
        ),
        Flavor::Gitea => (&["pending", "success", "error", "failure", "warning"], field("context").unwrap_or_default()),
    };
    if !states.contains(&state.as_str()) {
        return match flavor {
            Flavor::Gitlab => Answer::json(400, serde_json::json!({"error": "state does not have a valid value"})),
            _ => Answer::json(
                422,
                serde_json::json!({"message": "Validation Failed", "errors": [{"resource": "Status", "field": "state", "code": "invalid"}]}),
            ),
        };
    }
    if flavor == Flavor::Github && description.chars().count() > 140 {
        return Answer::json(
            422,
            serde_json::json!({"message": "Validation Failed", "errors": [{"resource": "Status", "code": "custom", "field": "description", "message": "description is too long (maximum is 140 characters)"}]}),
        );
    }
    let known = Command::new("git")
        .current_dir(&repo)
        .args(["cat-file", "-e", &format!("{sha}^{{commit}}")])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .is_ok_and(|s| s.success());
    if !known {
        return match flavor {
            Flavor::Gitlab => Answer::json(404, serde_json::json!({"message": "404 Commit Not Found"})),
            _ => Answer::json(422, serde_json::json!({"message": format!("No commit found for SHA: {sha}")})),
        };
    }
    let mut log = sh.statuses.lock().expect("statuses lock");
    // GitLab keeps one job per (sha, name): a running one cannot run again.
    if flavor == Flavor::Gitlab
        && state == "running"
        && log
            .iter()
            .rev()
            .find(|p| p.flavor == flavor && p.repo == rel && p.sha == sha && p.context == context)
            .is_some_and(|p| p.state == "running")
    {
        return Answer::json(
            400,
            serde_json::json!({"message": "Cannot transition status via :run from :running (Reason(s): Status cannot transition via \"run\")"}),
        );
    }
    let posted = PostedStatus {
        flavor,
        repo: rel.to_string(),
        sha: sha.to_string(),
        state: state.clone(),
        context: context.clone(),
        description: description.clone(),
        git_ref: field("ref"),
    };
    log.push(posted);
    let id = log.len();
    let created = match flavor {
        Flavor::Gitlab => {
            serde_json::json!({"id": id, "sha": sha, "ref": field("ref"), "status": state, "name": context, "description": description, "allow_failure": false})
        }
        Flavor::Github => {
            serde_json::json!({"id": id, "state": state, "description": description, "context": context, "target_url": null})
        }
        Flavor::Gitea => {
            serde_json::json!({"id": id, "status": state, "description": description, "context": context, "target_url": ""})
        }
    };
    Answer::json(201, created)
}

/// GitHub's GraphQL API, as far as sentry uses it: aliased `repository(owner:, name:)` fields
/// selecting `refs(refPrefix:, first:, after:)` with `pageInfo` and `nodes { name target { oid } }`,
/// and `rateLimit`. As GitHub documents it: authentication is required; `data` and `errors`
/// come side by side, each error with the `path` of the field it is about (a repository GitHub
/// does not know is `null` with type `NOT_FOUND`); `first` is required and at most 100 (more is
/// an error for the whole query, without `data`); cursors are opaque.
fn graphql(sh: &Shared, method: &str, headers: &BTreeMap<String, String>, body: &[u8]) -> Answer {
    if method != "POST" || sh.graphql_missing.load(Ordering::SeqCst) {
        return Answer::json(
            404,
            serde_json::json!({"message": "Not Found", "documentation_url": "https://docs.github.com/graphql"}),
        );
    }
    let presented = headers
        .get("authorization")
        .map(String::as_str)
        .and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("token ")));
    let tokens = sh.tokens.lock().expect("lock").clone();
    match presented {
        None => {
            return Answer::json(
                401,
                serde_json::json!({"message": "This endpoint requires you to be authenticated.", "documentation_url": "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql"}),
            );
        }
        Some(t) if !tokens.is_empty() && !tokens.iter().any(|x| x == t) => {
            return Answer::json(
                401,
                serde_json::json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/graphql"}),
            );
        }
        Some(_) => {}
    }
    let Some(query) = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("query").and_then(|q| q.as_str()).map(String::from))
    else {
        return Answer::json(
            200,
            serde_json::json!({"errors": [{"message": "A query attribute must be specified and must be a string."}]}),
        );
    };
    let fields = match parse_query(&query) {
        Ok(f) => f,
        Err(message) => return Answer::json(200, serde_json::json!({"errors": [{"message": message}]})),
    };
    sh.graphql_batches.lock().expect("lock").push(fields.len());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut data = serde_json::Map::new();
    let mut errors = Vec::new();
    let forbidden = sh.graphql_forbidden.lock().expect("lock").clone();
    let broken = sh.graphql_broken.lock().expect("lock").clone();
    for f in &fields {
        if f.first > 100 {
            // A node limit breaks the whole query: no data at all.
            return Answer::json(
                200,
                serde_json::json!({"errors": [{"message": format!("Requesting {} records on the `refs` connection exceeds the `first` limit of 100 records.", f.first), "locations": [{"line": f.line, "column": 3}]}]}),
            );
        }
        if f.first == 0 {
            return Answer::json(
                200,
                serde_json::json!({"errors": [{"message": "You must provide a `first` or `last` value to properly paginate the `refs` connection.", "locations": [{"line": f.line, "column": 3}]}]}),
            );
        }
    }
    for f in &fields {
        let rel = format!("{}/{}", f.owner, f.name);
        if forbidden.contains(&rel) {
            data.insert(f.alias.clone(), serde_json::Value::Null);
            errors.push(serde_json::json!({"type": "FORBIDDEN", "path": [f.alias], "extensions": {"saml_failure": true}, "locations": [{"line": f.line, "column": 3}], "message": "Resource protected by organization SAML enforcement. You must grant your Personal Access token access to this organization."}));
            continue;
        }
        let Some(repo) = find_repo(&sh.root, &rel) else {
            data.insert(f.alias.clone(), serde_json::Value::Null);
            errors.push(serde_json::json!({"type": "NOT_FOUND", "path": [f.alias], "locations": [{"line": f.line, "column": 3}], "message": format!("Could not resolve to a Repository with the name '{rel}'.")}));
            continue;
        };
        if broken.contains(&rel) {
            data.insert(f.alias.clone(), serde_json::json!({"refs": null}));
            errors.push(serde_json::json!({"path": [f.alias, "refs"], "locations": [{"line": f.line, "column": 3}], "message": "Something went wrong while executing your query. This may be the result of a timeout, or it could be a GitHub bug."}));
            continue;
        }
        let refs: Vec<(String, String)> = match f.prefix.as_str() {
            "refs/heads/" => read_heads(&repo).unwrap_or_default(),
            _ => Vec::new(),
        };
        let start = match &f.after {
            None => 0,
            Some(c) => match c.strip_prefix("Y3Vyc29y:").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => n,
                None => {
                    errors.push(serde_json::json!({"path": [f.alias, "refs"], "message": format!("`{c}` does not appear to be a valid cursor."), "locations": [{"line": f.line, "column": 3}]}));
                    data.insert(f.alias.clone(), serde_json::json!({"refs": null}));
                    continue;
                }
            },
        };
        let page: Vec<serde_json::Value> = refs
            .iter()
            .skip(start)
            .take(f.first)
            .map(|(name, sha)| serde_json::json!({"name": name, "target": {"oid": sha}}))
            .collect();
        let end = start + page.len();
        let more = end < refs.len();
        let cursor =
            if page.is_empty() { serde_json::Value::Null } else { serde_json::json!(format!("Y3Vyc29y:{end}")) };
        data.insert(
            f.alias.clone(),
            serde_json::json!({"refs": {"pageInfo": {"hasNextPage": more, "endCursor": cursor}, "nodes": page}}),
        );
    }
    let remaining = sh
        .graphql_remaining
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_sub(1)))
        .unwrap_or(0)
        .saturating_sub(1);
    if query.contains("rateLimit") {
        let reset = now + 3600;
        data.insert(
            "rateLimit".into(),
            serde_json::json!({"cost": 1, "remaining": remaining, "resetAt": format!("@{reset}")}),
        );
    }
    let mut doc = serde_json::Map::new();
    doc.insert("data".into(), serde_json::Value::Object(data));
    if !errors.is_empty() {
        doc.insert("errors".into(), serde_json::Value::Array(errors));
    }
    Answer::json(200, serde_json::Value::Object(doc))
        .header("x-ratelimit-limit", "5000")
        .header("x-ratelimit-remaining", remaining.to_string())
        .header("x-ratelimit-used", (5000 - remaining.min(5000)).to_string())
        .header("x-ratelimit-reset", (now + 3600).to_string())
        .header("x-ratelimit-resource", "graphql")
}

/// One aliased `repository` field of a query.
struct GqlField {
    alias: String,
    owner: String,
    name: String,
    prefix: String,
    first: usize,
    after: Option<String>,
    line: usize,
}

/// Reads the `ALIAS: repository(owner: "o", name: "n") { refs(refPrefix: "p", first: N, after: X) ...`
/// fields of a query (string literals in JSON syntax, which GraphQL shares).
fn parse_query(q: &str) -> Result<Vec<GqlField>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(rel) = q[pos..].find("repository(") {
        let at = pos + rel;
        let before = q[..at].trim_end().strip_suffix(':').ok_or("a repository field without an alias")?;
        let alias: String = before
            .chars()
            .rev()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let line = q[..at].matches('\n').count() + 1;
        let start = at + "repository(".len();
        let end = q[start..].find("repository(").map_or(q.len(), |e| start + e);
        let field = &q[start..end];
        let (args, body) = field.split_once(')').ok_or("unclosed arguments")?;
        let owner = string_arg(args, "owner")?.ok_or("repository needs owner")?;
        let name = string_arg(args, "name")?.ok_or("repository needs name")?;
        let refs_at = body.find("refs(").ok_or("no refs field")?;
        let (refs_args, _) = body[refs_at + 5..].split_once(')').ok_or("unclosed refs arguments")?;
        let prefix = string_arg(refs_args, "refPrefix")?.ok_or("refs needs refPrefix")?;
        let first = raw_arg(refs_args, "first")
            .map(|v| v.parse::<usize>().map_err(|_| format!("bad first {v:?}")))
            .transpose()?
            .unwrap_or(0);
        let after = string_arg(refs_args, "after")?;
        out.push(GqlField { alias, owner, name, prefix, first, after, line });
        pos = end;
    }
    Ok(out)
}

/// The raw text of argument `key` (up to `,` or the end).
fn raw_arg<'a>(args: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("{key}:");
    let i = args.find(&pat)?;
    let v = args[i + pat.len()..].trim_start();
    if v.starts_with('"') {
        let mut escaped = false;
        for (j, c) in v.char_indices().skip(1) {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => return Some(&v[..=j]),
                _ => escaped = false,
            }
        }
        return None;
    }
    Some(v.split(',').next().unwrap_or("").trim())
}

/// A string argument: `Some` for a literal, `None` for `null` or absent.
fn string_arg(args: &str, key: &str) -> Result<Option<String>, String> {
    match raw_arg(args, key) {
        None | Some("null") => Ok(None),
        Some(v) => serde_json::from_str::<String>(v).map(Some).map_err(|e| format!("argument {key}: {e}")),
    }
}

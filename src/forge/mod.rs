//! Forge clients: list a repository's branch heads (GitHub, GitLab, Gitea, plain Git).
//!
//! One listing per repository (every page), matched locally against `monitor.branches`. REST
//! forges use conditional requests: each page's ETag is kept in [`Validators`] and sent back as
//! `If-None-Match`; when every page answers 304 the cached heads are reused. A repository's
//! cached pages are asked at once, and page after page only when they do not all answer 304.
//! Checks, and those pages, run on a dedicated rayon pool of `global.concurrency` threads
//! sharing one [`Http`] client.

mod compare;
pub mod connectivity;
mod git;
mod gitea;
mod github;
mod gitlab;
mod graphql;
mod lsrefs;
pub mod page;
pub mod status;
mod tags;
pub use crate::model::repo_url as url;
pub use compare::compare_url;

use crate::config::{ForgeKind, GithubApi, Global, Repository};
use crate::http::{Http, HttpError, HttpErrorKind, HttpSettings, Origin, Request, Response};
use crate::model::{Heads, Sha, Validators};
use crate::secret::Secret;
use page::Pager;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Pages followed at most per listing (100 per page: 100 000 branches).
const MAX_PAGES: usize = 1000;

/// Matching branches kept at most per repository.
const MAX_REFS: usize = 100_000;

/// Response bytes read at most per listing (each page is capped on its own too).
const MAX_LISTING_BYTES: u64 = 256 * 1024 * 1024;

/// Attempts for `git ls-remote` on network and server errors.
const GIT_ATTEMPTS: u32 = 3;

/// Shortest time one repository check may spend waiting for retries and rate limits.
const MIN_BUDGET: Duration = Duration::from_secs(60);

/// Result of listing one repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// Heads of the branches matching `monitor.branches` (only those).
    pub heads: Heads,
    /// What to send next time to ask "changed since?"; `None` for `git` or without ETags.
    pub validators: Option<Validators>,
    /// Every page answered 304: `heads` come from the cache.
    pub cache_hit: bool,
    /// Requests made (HTTP requests including retries and redirects, or `ls-remote` runs).
    pub requests: u32,
}

/// Why a repository could not be checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckError {
    /// Repository name.
    pub repo: String,
    /// Class of failure.
    pub kind: CheckErrorKind,
    /// What went wrong and what to check; names the repository, already redacted.
    pub message: String,
}

/// Classes of check failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckErrorKind {
    /// 401/403: the credentials are missing, wrong, or lack access.
    Unauthorized,
    /// 404: no such repository (or invisible to these credentials), or no such branch.
    NotFound,
    /// Rate limited beyond what the run could wait for.
    RateLimited,
    /// The host was not reached, or did not answer in time.
    Network,
    /// ssh does not know or trust the server's host key (never retried).
    HostKey,
    /// The host answered 5xx on every attempt.
    Server,
    /// An answer we cannot use (bad JSON, pagination loop, body too large, bad URL).
    Protocol,
}

impl CheckErrorKind {
    /// A short lowercase name for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckErrorKind::Unauthorized => "unauthorized",
            CheckErrorKind::NotFound => "not_found",
            CheckErrorKind::RateLimited => "rate_limited",
            CheckErrorKind::Network => "network",
            CheckErrorKind::HostKey => "host_key",
            CheckErrorKind::Server => "server",
            CheckErrorKind::Protocol => "protocol",
        }
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CheckError {}

/// Checks repositories: owns the HTTP client and a dedicated thread pool.
pub struct Checker {
    http: Http,
    pool: rayon::ThreadPool,
    http_timeout: Duration,
    budget: Duration,
    /// API host -> forge name, learnt while checking, to label the HTTP statistics.
    hosts: Mutex<BTreeMap<String, &'static str>>,
    /// API origins that rate-limited this run beyond what it could wait for, and until when:
    /// not asked again this run (SPEC §4: GitHub's secondary limit grows when hammered).
    limited: Mutex<HashMap<Origin, Option<SystemTime>>>,
    /// How GitHub repositories with a token are listed (`global.github_api`).
    github_api: GithubApi,
}

/// Forge traffic of this checker, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForgeStats {
    /// HTTP answers per (forge, status), retries included; no answer counts as status 0.
    pub requests: BTreeMap<(String, u16), u64>,
    /// The last rate-limit headroom each (forge, API host) reported.
    pub rate_limits: BTreeMap<(String, String), i64>,
}

impl fmt::Debug for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checker").field("threads", &self.pool.current_num_threads()).finish_non_exhaustive()
    }
}

/// One REST listing endpoint: where page one is, how to authenticate, how to read a page.
#[derive(Debug)]
pub(crate) struct Api {
    /// Forge name for messages.
    forge: &'static str,
    /// The repository as the forge names it (owner/repo, group/sub/project).
    project: String,
    /// The API base, for messages.
    api_base: String,
    /// Page one, with the page size.
    first_url: String,
    /// Plain headers of every request.
    headers: Vec<(&'static str, &'static str)>,
    /// The credential header, if a token is configured.
    secret: Option<(&'static str, Secret)>,
    /// Field of `commit` holding the id (`sha` on GitHub, `id` on GitLab and Gitea).
    sha_field: &'static str,
}

impl Api {
    fn request(&self, url: &str, deadline: Instant) -> Request {
        let mut r = Request::get(url).deadline(deadline);
        for (k, v) in &self.headers {
            r = r.header(k, *v);
        }
        if let Some((k, v)) = &self.secret {
            r = r.secret_header(k, v.clone());
        }
        r
    }
}

/// What one walk over the pages found.
enum Walk {
    /// Every page answered 304, as many pages as cached.
    Unchanged { requests: u32 },
    /// A full listing: (branch, head) of every page and each page's ETag (`None` if one lacked
    /// it). `consistent` is false when the listing visibly changed while it was walked.
    Listed { items: Vec<(String, Sha)>, etags: Option<Vec<String>>, requests: u32, consistent: bool },
    /// Some pages answered 304 and others changed: the 304 pages have no body, list again.
    Mixed { requests: u32 },
}

/// What asking every cached page at once found.
enum Cached {
    /// Every page answered 304 with its cached ETag, and none told of another page count.
    Unchanged { requests: u32 },
    /// A page changed (a 200, a 304 naming another ETag) or was not asked: list again whole.
    Changed { requests: u32 },
    /// Every page answered 304 but one's pagination headers disagree with the cached page
    /// count: the sequential walk, which follows them, decides.
    Unsure { requests: u32 },
}

/// The answer to one cached page asked on its own.
enum CachedPage {
    /// 304, the cached ETag, pagination consistent with the cached page count.
    Same,
    /// A 200, or a 304 naming another ETag.
    Changed,
    /// A 304 whose pagination headers point elsewhere than the cached page count does.
    Unsure,
    /// Not asked: another page had already decided the outcome.
    Skipped,
    /// The request failed (rate limit, network, status), or the check was interrupted.
    Failed(CheckError),
}

/// The HTTP client settings of the configuration's `global` section (`http_timeout`, `ca_file`,
/// one idle connection per check thread). The redactor is the caller's to add.
pub fn http_settings(global: &Global) -> HttpSettings {
    HttpSettings {
        timeout: global.http_timeout,
        ca_file: global.ca_file.clone(),
        max_idle: global.concurrency,
        ..HttpSettings::default()
    }
}

/// True when a plain-Git URL is http(s): listed in process with `ls-refs`, not by `git`.
fn over_http(url: &str) -> bool {
    let scheme = crate::model::url::split(url.trim()).ok().and_then(|p| p.scheme);
    scheme.is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
}

impl Checker {
    /// A checker with `global.concurrency` threads and one HTTP client for the run.
    pub fn new(global: &Global) -> anyhow::Result<Checker> {
        let http = Http::new(&http_settings(global))?;
        Checker::with_http(http, global)
    }

    /// A checker that shares an existing client (the one the run also gives the state store).
    pub fn with_http(http: Http, global: &Global) -> anyhow::Result<Checker> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(global.concurrency.max(1))
            .thread_name(|i| format!("sentry-check-{i}"))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot start {} check threads: {e}", global.concurrency))?;
        // Capped, so that no deadline below (`Instant::now() + ...`) can overflow the clock.
        let http_timeout = global.http_timeout.min(crate::http::MAX_TIMEOUT);
        let budget = (http_timeout * 2).max(MIN_BUDGET);
        Ok(Checker {
            http,
            pool,
            http_timeout,
            budget,
            hosts: Mutex::default(),
            limited: Mutex::default(),
            github_api: global.github_api,
        })
    }

    /// Limits the time one repository check may spend (retries and rate-limit waits included):
    /// a longer wait becomes a "rate limited until T" error instead.
    pub fn with_budget(mut self, budget: Duration) -> Checker {
        self.budget = budget.min(crate::http::MAX_TIMEOUT * 2);
        self
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &Http {
        &self.http
    }

    /// Requests per forge and status, and rate-limit headroom per forge host, seen so far.
    pub fn stats(&self) -> ForgeStats {
        let hosts = self.hosts.lock().map(|h| h.clone()).unwrap_or_default();
        let http = self.http.stats();
        let mut out = ForgeStats::default();
        for ((host, status), n) in http.responses {
            if let Some(forge) = hosts.get(&host) {
                *out.requests.entry((forge.to_string(), status)).or_default() += n;
            }
        }
        for (host, n) in http.rate_limit_remaining {
            if let Some(forge) = hosts.get(&host) {
                out.rate_limits.insert((forge.to_string(), host), n);
            }
        }
        out
    }

    /// One repository: one listing (all pages), regex filter locally, conditional requests from `cache`.
    pub fn check(&self, repo: &Repository, cache: Option<&Validators>) -> Result<Listing, CheckError> {
        let started = Instant::now();
        let deadline = started + self.budget;
        let m = &repo.monitor;
        let result = match m.kind {
            ForgeKind::Git => self.check_git(repo, deadline),
            ForgeKind::Github => self.check_api(repo, github::api(m), cache, deadline),
            ForgeKind::Gitlab => self.check_api(repo, gitlab::api(m), cache, deadline),
            ForgeKind::Gitea => self.check_api(repo, gitea::api(m), cache, deadline),
        };
        let ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(l) => log::debug!(
                repo = repo.name.as_str(), forge = m.kind.as_str(), branches = l.heads.len(),
                requests = l.requests, cache_hit = l.cache_hit, duration_ms = ms; "checked"
            ),
            Err(e) => log::debug!(
                repo = repo.name.as_str(), forge = m.kind.as_str(), kind = e.kind.as_str(),
                duration_ms = ms; "check failed"
            ),
        }
        result
    }

    /// Many repositories concurrently on the pool (at most `concurrency` in flight); results in input order.
    ///
    /// GitHub repositories with a token go through GraphQL (`global.github_api: graphql`), up to
    /// 100 per request; the others through [`Checker::check`].
    pub fn check_all(&self, repos: &[(&Repository, Option<&Validators>)]) -> Vec<Result<Listing, CheckError>> {
        let (batches, singles) = graphql::plan(repos, self.github_api);
        enum Unit<'a> {
            One(usize),
            Batch(Vec<(usize, &'a Repository, Option<&'a Validators>, graphql::Target)>),
        }
        // Batches first: each holds up to 100 repositories, so they start before the singles.
        let units: Vec<Unit<'_>> =
            batches.into_iter().map(Unit::Batch).chain(singles.into_iter().map(Unit::One)).collect();
        let done: Vec<Vec<(usize, Result<Listing, CheckError>)>> = self.pool.install(|| {
            units
                .into_par_iter()
                .with_max_len(1)
                .map(|u| match u {
                    Unit::One(i) => vec![(i, self.check(repos[i].0, repos[i].1))],
                    Unit::Batch(b) => {
                        let idx: Vec<usize> = b.iter().map(|(i, ..)| *i).collect();
                        let results = self.check_graphql(b.into_iter().map(|(_, r, c, t)| (r, c, t)).collect());
                        idx.into_iter().zip(results).collect()
                    }
                })
                .collect()
        });
        let mut slots: Vec<Option<Result<Listing, CheckError>>> = repos.iter().map(|_| None).collect();
        for (i, r) in done.into_iter().flatten() {
            if let Some(slot) = slots.get_mut(i) {
                *slot = Some(r);
            }
        }
        slots
            .into_iter()
            .zip(repos)
            .map(|(r, (repo, _))| {
                r.unwrap_or_else(|| {
                    Err(CheckError {
                        repo: repo.name.clone(),
                        kind: CheckErrorKind::Protocol,
                        message: format!("repository {}: internal error: not checked (a bug)", repo.name),
                    })
                })
            })
            .collect()
    }

    /// Reaches a deploy repository: `git ls-remote` of `deploy.qa_repo_branch` with `deploy.auth`.
    pub fn probe_deploy(&self, repo: &Repository) -> Result<(), CheckError> {
        let d = &repo.deploy;
        let deadline = Instant::now() + self.budget;
        let pattern = vec![format!("refs/heads/{}", d.qa_repo_branch)];
        let (heads, _) =
            self.ls_remote_retrying(repo, &d.qa_repo_url, &d.auth, d.kind, &pattern, deadline, "deploy")?;
        if heads.iter().any(|(b, _)| *b == d.qa_repo_branch) {
            Ok(())
        } else {
            Err(CheckError {
                repo: repo.name.clone(),
                kind: CheckErrorKind::NotFound,
                message: format!(
                    "repository {}: deploy branch {:?} not found in {}",
                    repo.name, d.qa_repo_branch, d.qa_repo_url
                ),
            })
        }
    }

    fn check_git(&self, repo: &Repository, deadline: Instant) -> Result<Listing, CheckError> {
        let m = &repo.monitor;
        // http(s): protocol v2 `ls-refs` in process; ssh, git://, file:// and servers without
        // protocol v2 through `git ls-remote`.
        if over_http(&m.repo_url) {
            match self.ls_refs(repo, lsrefs::RefKind::Branches, deadline)? {
                lsrefs::LsRefs::Listed(items, requests) => {
                    let heads = items.into_iter().filter(|(b, _)| m.matches(b)).collect();
                    return Ok(Listing { heads, validators: None, cache_hit: false, requests });
                }
                lsrefs::LsRefs::NotV2(why) => {
                    log::debug!(repo = repo.name.as_str(); "{why}: listing with git ls-remote");
                }
            }
        }
        let (items, requests) =
            self.ls_remote_retrying(repo, &m.repo_url, &m.auth, m.kind, &[], deadline, "monitor")?;
        let heads = items.into_iter().filter(|(b, _)| m.matches(b)).collect();
        Ok(Listing { heads, validators: None, cache_hit: false, requests })
    }

    #[allow(clippy::too_many_arguments)]
    fn ls_remote_retrying(
        &self,
        repo: &Repository,
        url: &str,
        auth: &crate::config::Auth,
        kind: ForgeKind,
        patterns: &[String],
        deadline: Instant,
        side: &str,
    ) -> Result<(Vec<(String, Sha)>, u32), CheckError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A whole ls-remote may take a few round trips: give it a few request timeouts.
            match git::ls_remote(url, auth, kind, patterns, self.http_timeout * 2) {
                Ok(items) => return Ok((items, attempt)),
                Err(f) => {
                    let retryable = matches!(f.kind, CheckErrorKind::Network | CheckErrorKind::Server);
                    let wait = crate::http::backoff(attempt);
                    if !retryable || attempt >= GIT_ATTEMPTS || Instant::now() + wait > deadline {
                        let tries = if attempt > 1 { format!(" (after {attempt} attempts)") } else { String::new() };
                        return Err(CheckError {
                            repo: repo.name.clone(),
                            kind: f.kind,
                            message: format!("repository {} ({side}): {}{tries}", repo.name, f.message),
                        });
                    }
                    log::debug!(repo = repo.name.as_str(), attempt = attempt; "retrying git ls-remote: {}", f.message);
                    std::thread::sleep(wait);
                }
            }
        }
    }

    fn check_api(
        &self,
        repo: &Repository,
        api: Result<Api, String>,
        cache: Option<&Validators>,
        deadline: Instant,
    ) -> Result<Listing, CheckError> {
        let m = &repo.monitor;
        let api = api.map_err(|msg| CheckError {
            repo: repo.name.clone(),
            kind: CheckErrorKind::Protocol,
            message: format!("repository {}: {msg} (monitor.repo_url {})", repo.name, m.repo_url),
        })?;
        if let (Ok(origin), Ok(mut hosts)) = (crate::http::Origin::parse(&api.first_url), self.hosts.lock()) {
            hosts.entry(origin.host).or_insert(m.kind.as_str());
        }
        let fingerprint = fingerprint(m.kind, &api.first_url, &m.patterns);
        let cache = cache.filter(|c| c.fingerprint == fingerprint && !c.etags.is_empty());
        let mut requests: u32 = 0;
        if let Some(c) = cache {
            // Several cached pages are asked at once first; the sequential walk below stays the
            // one that decides whenever that does not end in "all unchanged".
            let mut conditional = true;
            if (2..=MAX_PAGES).contains(&c.etags.len()) {
                match self.ask_cached(repo, &api, &c.etags, deadline)? {
                    Cached::Unchanged { requests: r } => return Ok(cache_hit(c, r)),
                    // The walk below with ETags would stop at the changed page and list again
                    // without them: that second listing is all that is left to do.
                    Cached::Changed { requests: r } => (requests, conditional) = (r, false),
                    Cached::Unsure { requests: r } => requests = r,
                }
            }
            if conditional {
                match self.walk(repo, &api, Some(&c.etags), true, deadline)? {
                    Walk::Unchanged { requests: r } => return Ok(cache_hit(c, requests.saturating_add(r))),
                    Walk::Listed { items, etags, requests: r, consistent: true } => {
                        return Ok(listing(m, fingerprint, items, etags, requests.saturating_add(r)));
                    }
                    Walk::Listed { requests: r, .. } | Walk::Mixed { requests: r } => {
                        requests = requests.saturating_add(r);
                    }
                }
            }
        }
        // Offset pagination is no snapshot: a listing seen changing while it was walked is
        // walked again, once. If it changed again, the second one is used but not cached, so
        // the next run lists it whole.
        for attempt in 1..=2 {
            match self.walk(repo, &api, None, true, deadline)? {
                Walk::Listed { items, etags, requests: r, consistent } => {
                    requests = requests.saturating_add(r);
                    if consistent || attempt == 2 {
                        let etags = etags.filter(|_| consistent);
                        return Ok(listing(m, fingerprint, items, etags, requests));
                    }
                    log::debug!(repo = repo.name.as_str(); "the listing changed while it was walked: walking it again");
                }
                // Unreachable without etags sent; treated as a broken server rather than trusted.
                Walk::Unchanged { .. } | Walk::Mixed { .. } => break,
            }
        }
        Err(CheckError {
            repo: repo.name.clone(),
            kind: CheckErrorKind::Protocol,
            message: format!("repository {}: {} answered 304 to an unconditional request", repo.name, api.forge),
        })
    }

    /// Walks every page; with `etags`, page i is asked `If-None-Match: etags[i]` until a page changes.
    ///
    /// A last page that is full is followed by a request for the next one: a branch added
    /// since lands there while the full page may well answer 304 (GitHub's 304 carries no
    /// `Link`). A listing of several pages is checked for changes made while it was walked: a
    /// branch listed twice, a total that moved, or, when its ETags are to be `kept` (a cache that
    /// would otherwise hide what the walk missed), an earlier page whose ETag no longer holds.
    /// A listing that is not kept (tags: listed again every pass) is not asked twice.
    fn walk(
        &self,
        repo: &Repository,
        api: &Api,
        etags: Option<&[String]>,
        kept: bool,
        deadline: Instant,
    ) -> Result<Walk, CheckError> {
        let protocol = |msg: String| CheckError {
            repo: repo.name.clone(),
            kind: CheckErrorKind::Protocol,
            message: format!("repository {}: {} listing of {}: {msg}", repo.name, api.forge, api.project),
        };
        let cached = etags.map_or(0, <[String]>::len);
        let asked: usize = page::query_param(&api.first_url, "per_page")
            .or_else(|| page::query_param(&api.first_url, "limit"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX);
        let mut pager = Pager::new(&api.first_url, &api.api_base, MAX_PAGES).map_err(&protocol)?;
        let mut url = api.first_url.clone();
        let mut items: Vec<(String, Sha)> = Vec::new();
        let mut names: HashSet<String> = HashSet::new();
        let mut previous: Option<Vec<(String, Sha)>> = None;
        // (url, etag) of every page walked; an empty etag when the page had none.
        let mut pages: Vec<(String, String)> = Vec::new();
        let mut all_etags = true;
        let mut consistent = true;
        let mut total: Option<String> = None;
        let (mut not_modified, mut changed) = (0usize, false);
        let mut requests: u32 = 0;
        let mut bytes: u64 = 0;
        loop {
            let page = pages.len();
            // Checked before every page: a slow forge that keeps saying "next" costs this
            // repository its budget, never the run, and a stop request is heard at once.
            if let Some(e) = interrupted(repo, api, page, deadline) {
                return Err(e);
            }
            let mut req = api.request(&url, deadline);
            let sent = match etags.and_then(|t| t.get(page)) {
                Some(tag) if !changed => {
                    req = req.if_none_match(tag);
                    Some(tag.as_str())
                }
                _ => None,
            };
            let resp = self.send(repo, api, &req)?;
            requests = requests.saturating_add(resp.requests);
            let etag = resp.header("etag").map(str::trim).filter(|t| !t.is_empty()).map(String::from);
            let count = if resp.not_modified() {
                let Some(sent) = sent else {
                    return Err(protocol(format!("{} answered 304 without If-None-Match", resp.url)));
                };
                // A 304 names the entity it validated: another ETag means the page moved on.
                if etag.as_deref().is_some_and(|t| t != sent) {
                    return Ok(Walk::Mixed { requests });
                }
                not_modified += 1;
                // A cached page before the last was full; the pager only needs a size.
                pager.page_size()
            } else {
                if not_modified > 0 {
                    return Ok(Walk::Mixed { requests });
                }
                changed = true;
                let parsed =
                    parse_branches(&resp.body, api.sha_field).map_err(|m| protocol(format!("{}: {m}", resp.url)))?;
                if parsed.skipped > 0 {
                    log::warn!(
                        repo = repo.name.as_str(), skipped = parsed.skipped;
                        "skipping unreadable branch entries: {}", parsed.first_skipped.as_deref().unwrap_or("")
                    );
                }
                let found = parsed.branches;
                // An old GitLab ignored `page` and `per_page` and answered the whole list on
                // every page (with `X-Next-Page: 2` forever): the same page twice, and not of the
                // size asked, is the end, and nothing to cache. (A full page repeated is a loop.)
                if !found.is_empty() && found.len() != asked && previous.as_ref() == Some(&found) {
                    all_etags = false;
                    break;
                }
                for (name, _) in &found {
                    if !names.insert(name.clone()) {
                        consistent = false;
                    }
                }
                if let Some(t) = resp.header("x-total-count").or_else(|| resp.header("x-total")) {
                    match &total {
                        Some(before) if before != t.trim() => consistent = false,
                        Some(_) => {}
                        None => total = Some(t.trim().to_string()),
                    }
                }
                let n = found.len();
                // Patterns apply page by page: a huge listing keeps only what is watched.
                items.extend(found.iter().filter(|(b, _)| repo.monitor.matches(b)).cloned());
                if items.len() > MAX_REFS {
                    return Err(protocol(format!("more than {MAX_REFS} matching branches: narrow monitor.branches")));
                }
                previous = Some(found);
                n
            };
            bytes = bytes.saturating_add(resp.body.len() as u64);
            if bytes > MAX_LISTING_BYTES {
                return Err(protocol(format!("the listing is larger than {} MiB", MAX_LISTING_BYTES >> 20)));
            }
            if etag.is_none() {
                all_etags = false;
            }
            pages.push((url.clone(), etag.unwrap_or_default()));
            let next = match pager.next(&resp.url, &resp.headers, count).map_err(&protocol)? {
                Some(next) => Some(next),
                // A 304 need not repeat the pagination headers: the cached page count says.
                None if resp.not_modified() => (page + 1 < cached).then(|| page_url(&api.first_url, page + 2)),
                // A full last page: the next one is asked too (it is empty, or holds what was added).
                None if count > 0 && (count >= asked || (page > 0 && count >= pager.page_size())) => {
                    Some(page_url(&api.first_url, page + 2))
                }
                None => None,
            };
            match next {
                Some(n) if pages.len() <= MAX_PAGES => url = n,
                Some(_) => return Err(protocol(format!("more than {MAX_PAGES} pages: listing stopped"))),
                None => break,
            }
        }
        if not_modified > 0 {
            return Ok(if not_modified == cached { Walk::Unchanged { requests } } else { Walk::Mixed { requests } });
        }
        // The pages before the last were read before the last was: ask whether they still hold.
        if kept && consistent && all_etags && pages.len() > 1 {
            for (url, tag) in &pages[..pages.len() - 1] {
                let resp = self.send(repo, api, &api.request(url, deadline).if_none_match(tag))?;
                requests = requests.saturating_add(resp.requests);
                if !resp.not_modified() {
                    consistent = false;
                    break;
                }
            }
        }
        let etags = all_etags.then(|| pages.into_iter().map(|(_, t)| t).collect());
        Ok(Walk::Listed { items, etags, requests, consistent })
    }

    /// Asks all of a repository's cached pages at once, each with its ETag, on the check pool
    /// (so never more requests in flight than `global.concurrency`, this check's included).
    ///
    /// Only "every page unchanged" is decided here. Anything else is decided as the sequential
    /// walk would have at the first page (in page order) that answered otherwise: a failure is
    /// this check's failure, a change means listing again, odd pagination means walking as
    /// before. A rate limit is reported whichever page met it: the host is given up for the run
    /// anyway. Once one page has decided, the pages not yet asked are not.
    fn ask_cached(
        &self,
        repo: &Repository,
        api: &Api,
        etags: &[String],
        deadline: Instant,
    ) -> Result<Cached, CheckError> {
        let decided = AtomicBool::new(false);
        let answers: Vec<(CachedPage, u32)> = self.pool.install(|| {
            etags
                .par_iter()
                .enumerate()
                .with_max_len(1)
                .map(|(i, tag)| self.ask_cached_page(repo, api, (i, etags.len()), tag, deadline, &decided))
                .collect()
        });
        let requests = answers.iter().fold(0u32, |n, (_, r)| n.saturating_add(*r));
        if answers.iter().all(|(a, _)| matches!(a, CachedPage::Same)) {
            return Ok(Cached::Unchanged { requests });
        }
        let limited = answers
            .iter()
            .position(|(a, _)| matches!(a, CachedPage::Failed(e) if e.kind == CheckErrorKind::RateLimited));
        // A page left unasked says nothing: the first page that answered something else decides.
        let first =
            limited.or_else(|| answers.iter().position(|(a, _)| !matches!(a, CachedPage::Same | CachedPage::Skipped)));
        match first.and_then(|i| answers.into_iter().nth(i)).map(|(a, _)| a) {
            Some(CachedPage::Failed(e)) => Err(e),
            Some(CachedPage::Unsure) => {
                log::debug!(repo = repo.name.as_str(); "a page's pagination disagrees with the cache: walking page by page");
                Ok(Cached::Unsure { requests })
            }
            _ => Ok(Cached::Changed { requests }),
        }
    }

    /// Cached page `index` of `count`, asked `If-None-Match: tag` unless `decided` says another
    /// page has already settled the outcome; with the requests it took.
    fn ask_cached_page(
        &self,
        repo: &Repository,
        api: &Api,
        (index, count): (usize, usize),
        tag: &str,
        deadline: Instant,
        decided: &AtomicBool,
    ) -> (CachedPage, u32) {
        if decided.load(Ordering::Relaxed) {
            return (CachedPage::Skipped, 0);
        }
        let answer = match interrupted(repo, api, index, deadline) {
            Some(e) => (CachedPage::Failed(e), 0),
            None => {
                let url = cached_page_url(&api.first_url, index);
                match self.send(repo, api, &api.request(&url, deadline).if_none_match(tag)) {
                    Ok(resp) => (cached_answer(&resp, tag, index, count), resp.requests),
                    // As in the walk, a failed request's attempts are not counted.
                    Err(e) => (CachedPage::Failed(e), 0),
                }
            }
        };
        if !matches!(answer.0, CachedPage::Same) {
            decided.store(true, Ordering::Relaxed);
        }
        answer
    }

    /// One request of a listing, its failure said in the forge's terms. An origin that rate
    /// limited this run beyond its budget is not asked again.
    fn send(&self, repo: &Repository, api: &Api, req: &Request) -> Result<Response, CheckError> {
        let origin = Origin::parse(req.url()).ok();
        if let Some(why) = origin.as_ref().and_then(|o| self.given_up(o, api.forge)) {
            let message = format!("repository {}: {why}", repo.name);
            return Err(CheckError { repo: repo.name.clone(), kind: CheckErrorKind::RateLimited, message });
        }
        self.http.send(req).map_err(|e| {
            if let (HttpErrorKind::RateLimited { until }, Some(o)) = (&e.kind, origin) {
                self.give_up(o, *until);
            }
            http_error(repo, api, e)
        })
    }

    /// Why `origin` is not asked again this run, when it rate limited the run beyond its budget.
    fn given_up(&self, origin: &Origin, forge: &str) -> Option<String> {
        let until = self.limited.lock().ok()?.get(origin).copied()?;
        let when = until.map(|t| format!(" until {}", crate::time::rfc3339(t))).unwrap_or_default();
        Some(format!("{forge} at {} rate limited this run{when}: not asked again before the next run", origin.host))
    }

    /// Gives `origin` up for the rest of the run (its limit lasts `until`, when it said).
    fn give_up(&self, origin: Origin, until: Option<SystemTime>) {
        if let Ok(mut l) = self.limited.lock() {
            l.insert(origin, until);
        }
    }
}

/// Page `n` of the listing that starts at `first`.
fn page_url(first: &str, n: usize) -> String {
    page::set_query(first, "page", &n.to_string())
}

/// Where cached page `index` (0-based) is asked: where the sequential walk asks it after 304s,
/// which carry no pagination on GitHub (page one as configured, then `page=N` set on it).
fn cached_page_url(first: &str, index: usize) -> String {
    match index {
        0 => first.to_string(),
        i => page_url(first, i.saturating_add(1)),
    }
}

/// Reads the answer to cached page `index` of `count`, asked `If-None-Match: sent`.
fn cached_answer(resp: &Response, sent: &str, index: usize, count: usize) -> CachedPage {
    if !resp.not_modified() {
        return CachedPage::Changed;
    }
    // A 304 names the entity it validated: another ETag means the page moved on.
    if resp.header("etag").map(str::trim).is_some_and(|t| !t.is_empty() && t != sent) {
        return CachedPage::Changed;
    }
    // GitHub's 304 has no pagination headers; GitLab's repeat them. A next page after the
    // last cached one, or one that is not the next cached page, is for the sequential walk,
    // which follows them. (No next page before the last is what the walk ignores on a 304 too:
    // the cached count says, and the pages after it are asked anyway.)
    let Some(next) = page::next_page(&resp.url, &resp.headers, None) else { return CachedPage::Same };
    let expected = index.checked_add(2).filter(|n| *n <= count);
    match (expected, page::query_param(&next, "page").and_then(|p| p.parse::<usize>().ok())) {
        (Some(want), Some(got)) if want == got => CachedPage::Same,
        _ => CachedPage::Unsure,
    }
}

/// Why a listing must not ask for another page after `pages` pages: a stop was requested, or
/// the check's `deadline` has passed.
fn interrupted(repo: &Repository, api: &Api, pages: usize, deadline: Instant) -> Option<CheckError> {
    if crate::signals::stop_requested() {
        return Some(CheckError {
            repo: repo.name.clone(),
            kind: CheckErrorKind::Protocol,
            message: format!(
                "repository {}: {} listing of {}: stopped after {pages} pages: stop requested",
                repo.name, api.forge, api.project
            ),
        });
    }
    (Instant::now() >= deadline).then(|| CheckError {
        repo: repo.name.clone(),
        kind: CheckErrorKind::Network,
        message: format!(
            "repository {}: {} listing of {} ran out of time after {pages} pages",
            repo.name, api.forge, api.project
        ),
    })
}

/// The cached listing, as a listing: every page answered 304.
fn cache_hit(c: &Validators, requests: u32) -> Listing {
    Listing { heads: c.heads.clone(), validators: Some(c.clone()), cache_hit: true, requests }
}

/// Builds the listing: matching heads only, and validators when every page had an ETag.
fn listing(
    m: &crate::config::Monitor,
    fingerprint: String,
    items: Vec<(String, Sha)>,
    etags: Option<Vec<String>>,
    requests: u32,
) -> Listing {
    // A name listed twice (offset pages shifting under a walk): the first wins, every time.
    let heads = Heads::first_wins(items.into_iter().filter(|(b, _)| m.matches(b)).collect());
    let validators = etags.map(|etags| Validators { fingerprint, etags, heads: heads.clone() });
    Listing { heads, validators, cache_hit: false, requests }
}

/// Identifies the request shape (forge, first page URL, patterns): a change invalidates the cache.
pub fn fingerprint(kind: ForgeKind, first_url: &str, patterns: &[String]) -> String {
    // FNV-1a: stable across Rust versions, unlike DefaultHasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes.iter().chain([0u8].iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(b"v2");
    feed(kind.as_str().as_bytes());
    feed(first_url.as_bytes());
    for p in patterns {
        feed(p.as_bytes());
    }
    format!("v2-{h:016x}")
}

/// Reads one page of branches: a JSON array of `{"name": ..., "commit": {"sha"|"id": ...}}`.
pub fn parse_branches(body: &[u8], sha_field: &str) -> Result<Page, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("response is not JSON: {e}"))?;
    let arr = v.as_array().ok_or("expected a JSON array of branches")?;
    let mut page = Page { branches: Vec::with_capacity(arr.len()), skipped: 0, first_skipped: None };
    for item in arr {
        // One odd entry (GitLab allows `"commit": null`) costs that entry, not the repository.
        let entry = (|| {
            let name = item.get("name").and_then(|n| n.as_str()).ok_or("a branch without a name")?;
            let sha = item
                .get("commit")
                .and_then(|c| c.get(sha_field).or_else(|| c.get("sha")).or_else(|| c.get("id")))
                .and_then(|s| s.as_str())
                .ok_or_else(|| format!("branch {name:?} has no commit id"))?;
            let sha = Sha::parse(sha).ok_or_else(|| format!("branch {name:?}: {sha:?} is not a commit id"))?;
            Ok::<_, String>((name.to_string(), sha))
        })();
        match entry {
            Ok(b) => page.branches.push(b),
            Err(why) => {
                page.skipped += 1;
                page.first_skipped.get_or_insert(crate::text::truncate(&why, 200));
            }
        }
    }
    Ok(page)
}

/// The branches of one listing page, and the entries that could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// (name, head) of every readable entry, in the forge's order.
    pub branches: Vec<(String, Sha)>,
    /// Entries without a name or a full commit id, skipped.
    pub skipped: usize,
    /// Why the first one was skipped.
    pub first_skipped: Option<String>,
}

/// Turns an HTTP failure into a check error that says what to check.
fn http_error(repo: &Repository, api: &Api, e: HttpError) -> CheckError {
    let name = &repo.name;
    let project = &api.project;
    let forge = api.forge;
    let has_token = api.secret.is_some();
    let (kind, what) = match (&e.kind, e.status) {
        (HttpErrorKind::Status, Some(401)) => (
            CheckErrorKind::Unauthorized,
            if has_token {
                format!("{forge} rejected the token (401): check monitor.auth.token is valid and not expired")
            } else {
                format!("{forge} requires authentication (401): set monitor.auth.token")
            },
        ),
        (HttpErrorKind::Status, Some(403)) => (
            CheckErrorKind::Unauthorized,
            format!("token lacks access to {project} (403): check the token's scopes and the repository's permissions"),
        ),
        (HttpErrorKind::Status, Some(404)) => (
            CheckErrorKind::NotFound,
            if has_token {
                format!("repository {project} not found at {} or the token lacks access to it (404)", api.api_base)
            } else {
                format!(
                    "repository {project} not found at {} (404): check monitor.repo_url, or set a token if it is private",
                    api.api_base
                )
            },
        ),
        (HttpErrorKind::Status, Some(s)) if s >= 500 => (CheckErrorKind::Server, format!("{forge} server error")),
        (HttpErrorKind::Status, _) => (CheckErrorKind::Protocol, format!("unexpected answer from {forge}")),
        (HttpErrorKind::RateLimited { until }, status) => {
            let which = if crate::http::is_secondary_rate_limit(status.unwrap_or(0), e.body.as_bytes()) {
                " (secondary rate limit: at least a minute, more than this run can wait)"
            } else {
                ""
            };
            (
                CheckErrorKind::RateLimited,
                match until {
                    Some(t) => format!("rate limited by {forge}{which} until {}", crate::time::rfc3339(*t)),
                    None => format!("rate limited by {forge}{which}"),
                },
            )
        }
        (HttpErrorKind::Network | HttpErrorKind::Timeout, _) => {
            (CheckErrorKind::Network, format!("cannot reach {forge} at {}", api.api_base))
        }
        (HttpErrorKind::Protocol, _) => (CheckErrorKind::Protocol, format!("unusable answer from {forge}")),
    };
    CheckError { repo: name.clone(), kind, message: format!("repository {name}: {what}: {e}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_parse_on_every_forge_shape() {
        let sha = "c".repeat(40);
        let gh = format!(r#"[{{"name":"main","commit":{{"sha":"{sha}","url":"x"}},"protected":false}}]"#);
        assert_eq!(parse_branches(gh.as_bytes(), "sha").expect("parses").branches[0].0, "main");
        let gl = format!(r#"[{{"name":"dev","commit":{{"id":"{sha}","short_id":"ccc"}}}}]"#);
        assert_eq!(parse_branches(gl.as_bytes(), "id").expect("parses").branches[0].1.as_str(), sha);
        assert!(parse_branches(b"{}", "id").is_err());
        assert!(parse_branches(b"not json", "id").is_err());
    }

    #[test]
    fn one_unreadable_entry_is_skipped_not_the_listing() {
        // GitLab's entity allows `"commit": null`; a non-hex id or a missing name is as bad.
        let sha = "c".repeat(40);
        let body = format!(
            r#"[{{"name":"x","commit":{{"id":"nope"}}}},{{"name":"gone","commit":null}},{{"commit":{{"id":"{sha}"}}}},{{"name":"main","commit":{{"id":"{sha}"}}}}]"#
        );
        let page = parse_branches(body.as_bytes(), "id").expect("the listing survives");
        assert_eq!(page.branches.iter().map(|(b, _)| b.as_str()).collect::<Vec<_>>(), ["main"]);
        assert_eq!(page.skipped, 3);
        assert!(page.first_skipped.as_deref().is_some_and(|w| w.contains("\"x\"")), "{:?}", page.first_skipped);
    }

    #[test]
    fn a_cached_page_is_unchanged_only_on_a_304_whose_pagination_agrees_with_the_cache() {
        let first = "http://h/api/v4/projects/g%2Fp/repository/branches?per_page=100";
        let answer = |status: u16, index: usize, headers: &[(&str, &str)]| {
            let resp = Response {
                status,
                headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                body: Vec::new(),
                url: cached_page_url(first, index),
                requests: 1,
            };
            match cached_answer(&resp, "W/\"a\"", index, 3) {
                CachedPage::Same => "same",
                CachedPage::Changed => "changed",
                CachedPage::Unsure => "unsure",
                CachedPage::Skipped | CachedPage::Failed(_) => "other",
            }
        };
        let link =
            |n: u32| format!("<http://gl.example/api/v4/projects/7/repository/branches?id=7&page={n}>; rel=\"next\"");
        // GitHub: no pagination on a 304; the ETag repeated or left out.
        assert_eq!(answer(304, 0, &[]), "same");
        assert_eq!(answer(304, 2, &[("etag", "W/\"a\"")]), "same");
        assert_eq!(answer(200, 1, &[("etag", "W/\"a\"")]), "changed");
        assert_eq!(answer(304, 1, &[("etag", "W/\"b\"")]), "changed");
        // GitLab: the next page, wherever its link points, is the next cached one...
        assert_eq!(answer(304, 0, &[("link", &link(2)), ("x-next-page", "2")]), "same");
        assert_eq!(answer(304, 1, &[("x-next-page", "3")]), "same");
        // ...or the cache no longer says how many pages there are.
        assert_eq!(answer(304, 0, &[("link", &link(3))]), "unsure");
        assert_eq!(answer(304, 2, &[("x-next-page", "4")]), "unsure");
        assert_eq!(answer(304, 1, &[("link", "<http://h/x?cursor=z>; rel=\"next\"")]), "unsure");
        // No next page before the last cached one: the pages after it are asked anyway.
        assert_eq!(answer(304, 0, &[("x-next-page", "")]), "same");
        assert_eq!(cached_page_url(first, 0), first);
        assert_eq!(cached_page_url(first, 2), format!("{first}&page=3"));
    }

    #[test]
    fn fingerprint_follows_url_and_patterns() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = fingerprint(ForgeKind::Github, "https://api/x", &p(&["main"]));
        assert_eq!(a, fingerprint(ForgeKind::Github, "https://api/x", &p(&["main"])));
        assert_ne!(a, fingerprint(ForgeKind::Github, "https://api/y", &p(&["main"])));
        assert_ne!(a, fingerprint(ForgeKind::Github, "https://api/x", &p(&["main", "dev"])));
        assert_ne!(a, fingerprint(ForgeKind::Gitea, "https://api/x", &p(&["main"])));
        // Separators matter: ["ab"] is not ["a", "b"].
        assert_ne!(fingerprint(ForgeKind::Git, "u", &p(&["ab"])), fingerprint(ForgeKind::Git, "u", &p(&["a", "b"])));
    }
}

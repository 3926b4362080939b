//! Forge clients against the fake forge and a real `git http-backend`, all on loopback:
//! pagination, filtering, conditional requests, retries, rate limits, auth errors, secrecy,
//! concurrency, and `validate --connectivity` through the real binary.

use crate::support::Sandbox;
use crate::support::config::{Conf, Repo};
use crate::support::fake_forge::{FakeForge, Flavor};
use crate::support::git_server::{GitServer, LoggedRequest};
use crate::support::repos::BareRepo;
use sentry::config::{Config, Repository};
use sentry::forge::{CheckErrorKind, Checker};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const TOKEN: &str = "tok-good-0123456789";
const BAD: &str = "tok-bad-9876543210";

/// `name` listed through forge `kind` at `url`, authenticated when `token` is given; its QA side
/// is a placeholder with credentials, so deploy probes have something to send.
fn repo(name: &str, kind: &str, url: String, branches: &[&str], token: Option<&str>) -> Repo {
    let mut r = Repo::new(name)
        .monitor_url(url)
        .branches(branches)
        .kind(kind)
        .qa("https://qa.invalid/qa.git")
        .qa_kind("git")
        .commands(["true"])
        .deploy_auth(Some("deployer"), "qa-pass-123");
    if let Some(t) = token {
        r = r.monitor_auth(None, t);
    }
    r
}

/// A configuration of `repos` checked `concurrency` at a time.
fn conf(repos: &[Repo], concurrency: usize) -> Conf {
    Conf::new().global("concurrency", concurrency).global("http_timeout", 10).repos(repos.iter().cloned())
}

/// [`conf`], parsed through the library: what a checker is built from.
fn config(repos: &[Repo], concurrency: usize) -> Config {
    conf(repos, concurrency).parse(Path::new("."), &[])
}

fn checker(c: &Config) -> Checker {
    Checker::new(&c.global).expect("checker")
}

/// 250 branches at one commit plus a few that the filter must tell apart.
fn big_repo(root: &Path, rel: &str) -> BareRepo {
    let r = BareRepo::create(root, rel);
    let base = r.commit("main", &[("README", "hello")], "first");
    let mut names: Vec<String> = (0..240).map(|i| format!("feature/f-{i:03}")).collect();
    names.extend(["release/1", "release/2.0", "release/x/y", "old-release/1", "releasee", "dev"].map(String::from));
    names.extend((0..3).map(|i| format!("zz-{i}")));
    r.create_branches(&names, &base);
    r.commit("release/2.0", &[("CHANGELOG", "2.0")], "release 2.0");
    assert_eq!(r.heads().len(), 250);
    r
}

fn as_strings(h: &sentry::model::Heads) -> BTreeMap<String, String> {
    h.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
}

/// The token may appear in the one auth header of each request, nowhere else.
fn assert_token_only_in_auth_header(log: &[LoggedRequest], token: &str, auth_headers: &[&str]) {
    assert!(!log.is_empty());
    for r in log {
        assert!(!r.url.contains(token), "token in URL {}", r.url);
        for (k, v) in &r.headers {
            if !auth_headers.contains(&k.as_str()) {
                assert!(!v.contains(token), "token in header {k}");
            }
        }
    }
}

fn auth_header(flavor: Flavor) -> (&'static str, String) {
    match flavor {
        Flavor::Github => ("authorization", format!("Bearer {TOKEN}")),
        Flavor::Gitlab => ("authorization", format!("Bearer {TOKEN}")),
        Flavor::Gitea => ("authorization", format!("token {TOKEN}")),
    }
}

/// The page a listing request asks for (1 when it names none).
fn page_of(r: &LoggedRequest) -> usize {
    let query = r.url.split_once('?').map_or("", |(_, q)| q);
    query.split('&').find_map(|kv| kv.strip_prefix("page=")).map_or(1, |p| p.parse().expect("page number"))
}

fn rel_of(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Github => "acme/app",
        // Three levels of groups above the project.
        Flavor::Gitlab => "group/sub/deep/app",
        Flavor::Gitea => "org/app",
    }
}

/// Every head, then a filtered listing, with all pages followed and the right headers sent.
/// `requests`: the pages, the page after a full last page, and the revalidation of the pages
/// before the last (the listing did not change while it was walked).
fn lists_every_page(flavor: Flavor, pages: usize, requests: usize) {
    let sb = Sandbox::new();
    let rel = rel_of(flavor);
    let bare = big_repo(sb.path(), &format!("{rel}.git"));
    let forge = FakeForge::start(sb.path());
    forge.require_token(TOKEN);
    let all = [".*"];
    let some = ["release/.*", "main"];
    let c = config(
        &[
            repo("all", flavor.repo_type(), forge.repo_url(rel), &all, Some(TOKEN)),
            // With .git and a trailing slash: the same project.
            repo("some", flavor.repo_type(), format!("{}.git/", forge.repo_url(rel)), &some, Some(TOKEN)),
        ],
        4,
    );
    let ck = checker(&c);
    let listing = ck.check(&c.repositories[0], None).expect("listing");
    assert_eq!(as_strings(&listing.heads), bare.heads());
    assert_eq!(listing.requests as usize, requests);
    assert!(!listing.cache_hit);
    if flavor == Flavor::Gitea {
        // Gitea sends no ETag on branch listings: nothing to validate next time.
        assert_eq!(listing.validators, None);
    } else {
        let v = listing.validators.expect("validators");
        assert_eq!(v.etags.len(), pages);
        assert_eq!(v.heads, listing.heads);
    }

    let log = forge.requests();
    assert_eq!(log.len(), requests);
    assert_eq!(log.iter().filter(|r| r.status == 200).count(), pages);
    let (hname, hvalue) = auth_header(flavor);
    for r in &log {
        assert!(r.status == 200 || r.status == 304 && r.headers.contains_key("if-none-match"), "{}", r.url);
        assert!(r.url.starts_with(flavor.prefix()), "{}", r.url);
        assert_eq!(r.headers.get(hname), Some(&hvalue));
        assert_eq!(
            r.headers.get("user-agent").map(String::as_str),
            Some(concat!("sentry/", env!("CARGO_PKG_VERSION")))
        );
    }
    if flavor == Flavor::Github {
        assert_eq!(log[0].headers["accept"], "application/vnd.github+json");
        assert_eq!(log[0].headers["x-github-api-version"], "2022-11-28");
        assert_eq!(log[0].url, "/api/v3/repos/acme/app/branches?per_page=100");
    }
    if flavor == Flavor::Gitlab {
        assert_eq!(log[0].url, "/api/v4/projects/group%2Fsub%2Fdeep%2Fapp/repository/branches?per_page=100");
    }
    if flavor == Flavor::Gitea {
        assert_eq!(log[0].url, "/api/v1/repos/org/app/branches?limit=50");
    }
    assert_token_only_in_auth_header(&log, TOKEN, &[hname]);

    let filtered = ck.check(&c.repositories[1], None).expect("filtered listing");
    let want: BTreeMap<String, String> =
        bare.heads().into_iter().filter(|(b, _)| b == "main" || b.starts_with("release/")).collect();
    assert_eq!(as_strings(&filtered.heads), want);
    assert_eq!(filtered.heads.len(), 4);
    assert!(!filtered.heads.contains_key("old-release/1"));
    assert!(!filtered.heads.contains_key("releasee"));
}

#[test]
fn github_lists_every_page_and_filters() {
    // 250 branches: pages of 100, 100 and 50; pages 1 and 2 revalidated.
    lists_every_page(Flavor::Github, 3, 5);
}

#[test]
fn gitlab_lists_every_page_of_a_deeply_nested_project() {
    lists_every_page(Flavor::Gitlab, 3, 5);
}

#[test]
fn gitea_lists_every_page_and_filters() {
    // Five full pages of 50, then the empty sixth; no ETag, so no revalidation.
    lists_every_page(Flavor::Gitea, 6, 6);
}

/// Second listing of an unchanged repository: all 304, cached heads; then a change is seen.
fn second_listing_is_not_modified(flavor: Flavor, pagination_on_304: bool) {
    let sb = Sandbox::new();
    let rel = rel_of(flavor);
    let bare = big_repo(sb.path(), &format!("{rel}.git"));
    let forge = FakeForge::start(sb.path());
    forge.pagination_on_304(pagination_on_304);
    let pats = ["main", "release/.*"];
    let c = config(&[repo("app", flavor.repo_type(), forge.repo_url(rel), &pats, None)], 2);
    let ck = checker(&c);
    let first = ck.check(&c.repositories[0], None).expect("first");
    let v = first.validators.clone().expect("validators");
    forge.clear_log();

    let second = ck.check(&c.repositories[0], Some(&v)).expect("second");
    assert!(second.cache_hit);
    assert_eq!(second.heads, first.heads);
    assert_eq!(second.validators.as_ref(), Some(&v));
    let mut log = forge.requests();
    assert_eq!(log.len(), v.etags.len());
    // Asked at once, so logged in any order: page by page.
    log.sort_by_key(page_of);
    for (r, tag) in log.iter().zip(&v.etags) {
        assert_eq!(r.headers.get("if-none-match"), Some(tag), "{}", r.url);
        assert_eq!(r.status, 304);
    }

    // A moved branch on the last page: the listing is redone and the new head is seen.
    let new = bare.commit("release/x/y", &[("f", "new")], "move");
    forge.clear_log();
    let third = ck.check(&c.repositories[0], Some(&v)).expect("third");
    assert!(!third.cache_hit);
    assert_eq!(third.heads.get("release/x/y").expect("listed").as_str(), new);
    assert_ne!(third.validators.as_ref().expect("validators").etags, v.etags);
    let log = forge.requests();
    let whole = log.iter().position(|r| !r.headers.contains_key("if-none-match")).expect("listed again");
    assert!(log[..whole].iter().any(|r| r.status == 200), "the change answered a conditional request: {log:?}");
    // The other pages answered 304 and have no body: the listing is walked again whole.
    let pages = v.etags.len();
    assert!(
        log[whole..whole + pages].iter().all(|r| !r.headers.contains_key("if-none-match") && r.status == 200),
        "after a change no 304 is useful"
    );
}

#[test]
fn github_second_listing_is_all_304() {
    second_listing_is_not_modified(Flavor::Github, true);
}

#[test]
fn gitea_sends_no_etag_so_every_listing_is_whole() {
    let sb = Sandbox::new();
    let bare = big_repo(sb.path(), "org/app.git");
    let forge = FakeForge::start(sb.path());
    let pats = ["main", "release/.*"];
    let c = config(&[repo("app", "gitea", forge.repo_url("org/app"), &pats, None)], 2);
    let ck = checker(&c);
    let first = ck.check(&c.repositories[0], None).expect("first");
    assert_eq!(first.validators, None);
    let new = bare.commit("release/x/y", &[("f", "new")], "move");
    forge.clear_log();
    let second = ck.check(&c.repositories[0], None).expect("second");
    assert!(!second.cache_hit);
    assert_eq!(second.heads.get("release/x/y").expect("listed").as_str(), new);
    let log = forge.requests();
    assert!(log.iter().all(|r| r.status == 200 && !r.headers.contains_key("if-none-match")), "{log:?}");
}

#[test]
fn gitlab_second_listing_is_all_304() {
    second_listing_is_not_modified(Flavor::Gitlab, true);
}

#[test]
fn not_modified_without_pagination_headers_follows_the_cached_page_count() {
    second_listing_is_not_modified(Flavor::Github, false);
}

#[test]
fn github_304_costs_no_rate_limit_and_changed_patterns_ignore_the_cache() {
    let sb = Sandbox::new();
    BareRepo::create(sb.path(), "acme/app.git").commit("main", &[("a", "b")], "c");
    let forge = FakeForge::start(sb.path());
    let main = ["main"];
    let other = ["main", "dev"];
    let c = config(
        &[
            repo("app", "github", forge.repo_url("acme/app"), &main, None),
            repo("app2", "github", forge.repo_url("acme/app"), &other, None),
        ],
        2,
    );
    let ck = checker(&c);
    let v = ck.check(&c.repositories[0], None).expect("first").validators.expect("validators");
    assert!(ck.check(&c.repositories[0], Some(&v)).expect("second").cache_hit);
    let log = forge.requests();
    let remaining = |r: &LoggedRequest| r.status;
    assert_eq!(log.iter().map(remaining).collect::<Vec<_>>(), [200, 304]);
    // Another pattern list: the fingerprint differs, so no conditional request is made.
    forge.clear_log();
    let l = ck.check(&c.repositories[1], Some(&v)).expect("other patterns");
    assert!(!l.cache_hit);
    assert!(forge.requests().iter().all(|r| !r.headers.contains_key("if-none-match")));
}

#[test]
fn two_502s_then_success() {
    let sb = Sandbox::new();
    let bare = BareRepo::create(sb.path(), "acme/app.git");
    bare.commit("main", &[("a", "b")], "c");
    let forge = FakeForge::start(sb.path());
    forge.fail_next(2, 502);
    let main = ["main"];
    let c = config(&[repo("app", "github", forge.repo_url("acme/app"), &main, None)], 1);
    let ck = checker(&c);
    let l = ck.check(&c.repositories[0], None).expect("retried to success");
    assert_eq!(as_strings(&l.heads), bare.heads());
    assert_eq!(l.requests, 3);
    let statuses: Vec<u16> = forge.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [502, 502, 200]);
    // The statistics for metrics see every answer, retries included, and the rate-limit headroom.
    let stats = ck.stats();
    let gh = |s: u16| stats.requests.get(&("github".to_string(), s)).copied();
    assert_eq!((gh(502), gh(200)), (Some(2), Some(1)));
    assert_eq!(stats.rate_limits.get(&("github".to_string(), "127.0.0.1".to_string())), Some(&4999));
}

#[test]
fn three_503s_fail_as_a_server_error() {
    let sb = Sandbox::new();
    BareRepo::create(sb.path(), "org/app.git").commit("main", &[("a", "b")], "c");
    let forge = FakeForge::start(sb.path());
    forge.fail_next(5, 503);
    let main = ["main"];
    let c = config(&[repo("app", "gitea", forge.repo_url("org/app"), &main, None)], 1);
    let e = checker(&c).check(&c.repositories[0], None).expect_err("gives up");
    assert_eq!(e.kind, CheckErrorKind::Server);
    assert!(e.message.contains("repository app") && e.message.contains("503"), "{e}");
    assert_eq!(forge.requests().len(), 3);
}

#[test]
fn retry_after_is_honoured() {
    let sb = Sandbox::new();
    BareRepo::create(sb.path(), "group/sub/deep/app.git").commit("main", &[("a", "b")], "c");
    let forge = FakeForge::start(sb.path());
    forge.throttle_next(1, 1);
    let main = ["main"];
    let c = config(&[repo("app", "gitlab", forge.repo_url("group/sub/deep/app"), &main, None)], 1);
    let started = Instant::now();
    let l = checker(&c).check(&c.repositories[0], None).expect("after the wait");
    assert!(started.elapsed() >= Duration::from_millis(900), "waited {:?}", started.elapsed());
    assert_eq!(l.heads.len(), 1);
    let statuses: Vec<u16> = forge.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200]);
}

#[test]
fn github_rate_limit_403_waits_for_the_reset() {
    let sb = Sandbox::new();
    BareRepo::create(sb.path(), "acme/app.git").commit("main", &[("a", "b")], "c");
    let forge = FakeForge::start(sb.path());
    forge.rate_limit_next(1, 1);
    let main = ["main"];
    let c = config(&[repo("app", "github", forge.repo_url("acme/app"), &main, None)], 1);
    let l = checker(&c).check(&c.repositories[0], None).expect("after the reset");
    assert_eq!(l.heads.len(), 1);
    let statuses: Vec<u16> = forge.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [403, 200]);
}

#[test]
fn a_rate_limit_beyond_the_budget_fails_at_once() {
    let sb = Sandbox::new();
    BareRepo::create(sb.path(), "acme/app.git").commit("main", &[("a", "b")], "c");
    let forge = FakeForge::start(sb.path());
    forge.rate_limit_next(1, 3600);
    let main = ["main"];
    let c = config(&[repo("app", "github", forge.repo_url("acme/app"), &main, None)], 1);
    let started = Instant::now();
    let e = checker(&c).with_budget(Duration::from_secs(5)).check(&c.repositories[0], None).expect_err("limited");
    assert!(started.elapsed() < Duration::from_secs(5), "it slept");
    assert_eq!(e.kind, CheckErrorKind::RateLimited);
    assert!(
        e.message.contains("rate limited") && e.message.contains("until") && e.message.contains("repository app"),
        "{e}"
    );
    assert_eq!(forge.requests().len(), 1);
}

fn unauthorized(flavor: Flavor) {
    let sb = Sandbox::new();
    let rel = rel_of(flavor);
    BareRepo::create(sb.path(), &format!("{rel}.git")).commit("main", &[("a", "b")], "c");
    let forge = FakeForge::start(sb.path());
    forge.require_token(TOKEN);
    let main = ["main"];
    let c = config(
        &[
            repo("wrong-token", flavor.repo_type(), forge.repo_url(rel), &main, Some(BAD)),
            repo("no-token", flavor.repo_type(), forge.repo_url(rel), &main, None),
        ],
        2,
    );
    let ck = checker(&c);
    let e = ck.check(&c.repositories[0], None).expect_err("401");
    assert_eq!(e.kind, CheckErrorKind::Unauthorized);
    assert_eq!(e.repo, "wrong-token");
    assert!(e.message.contains("repository wrong-token") && e.message.contains("401"), "{e}");
    assert!(e.message.contains("token"), "says what to check: {e}");
    assert!(!e.message.contains(BAD), "{e}");
    assert_eq!(forge.requests().len(), 1, "401 is not retried");
    // Without a token a private repository is invisible: 404 on all three forges.
    let e = ck.check(&c.repositories[1], None).expect_err("404");
    assert_eq!(e.kind, CheckErrorKind::NotFound);
    assert!(e.message.contains("repository no-token") && e.message.contains("set a token if it is private"), "{e}");
    assert_eq!(forge.requests().len(), 2);
    assert_token_only_in_auth_header(&forge.requests(), BAD, &[auth_header(flavor).0]);
}

#[test]
fn github_401_is_not_retried_and_names_the_repository() {
    unauthorized(Flavor::Github);
}

#[test]
fn gitlab_401_is_not_retried_and_names_the_repository() {
    unauthorized(Flavor::Gitlab);
}

#[test]
fn gitea_401_is_not_retried_and_names_the_repository() {
    unauthorized(Flavor::Gitea);
}

#[test]
fn missing_repository_is_not_found() {
    let sb = Sandbox::new();
    let forge = FakeForge::start(sb.path());
    forge.require_token(TOKEN);
    let main = ["main"];
    let c = config(&[repo("ghost", "github", forge.repo_url("acme/ghost"), &main, Some(TOKEN))], 1);
    let e = checker(&c).check(&c.repositories[0], None).expect_err("404");
    assert_eq!(e.kind, CheckErrorKind::NotFound);
    assert!(e.message.contains("repository ghost") && e.message.contains("acme/ghost"), "{e}");
    assert!(e.message.contains("not found") && e.message.contains("lacks access"), "{e}");
    assert_eq!(forge.requests().len(), 1);
}

#[test]
fn a_looping_next_link_is_an_error_not_a_hang() {
    let sb = Sandbox::new();
    big_repo(sb.path(), "org/app.git");
    let forge = FakeForge::start(sb.path());
    forge.pagination_loop(true);
    let main = ["main"];
    let c = config(&[repo("app", "gitea", forge.repo_url("org/app"), &main, None)], 1);
    let e = checker(&c).check(&c.repositories[0], None).expect_err("loop");
    assert_eq!(e.kind, CheckErrorKind::Protocol);
    assert!(e.message.contains("loops"), "{e}");
    // `?limit=50` then `?limit=50&page=1` (the same page, spelled out), then the loop is seen.
    assert_eq!(forge.requests().len(), 2);
}

#[test]
fn check_all_keeps_order_and_the_concurrency_bound() {
    let sb = Sandbox::new();
    let forge = FakeForge::start(sb.path());
    forge.set_latency(Duration::from_millis(150));
    let mut shas = Vec::new();
    let names: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    for n in &names {
        shas.push(BareRepo::create(sb.path(), &format!("acme/{n}.git")).commit("main", &[("n", n)], n));
    }
    let main = ["main"];
    let repos: Vec<Repo> =
        names.iter().map(|n| repo(n, "github", forge.repo_url(&format!("acme/{n}")), &main, None)).collect();
    let c = config(&repos, 3);
    let ck = checker(&c);
    let input: Vec<(&Repository, Option<&sentry::model::Validators>)> =
        c.repositories.iter().map(|r| (r, None)).collect();
    let results = ck.check_all(&input);
    assert_eq!(results.len(), 10);
    for (r, sha) in results.iter().zip(&shas) {
        assert_eq!(r.as_ref().expect("listing").heads.get("main").expect("listed").as_str(), sha);
    }
    let peak = forge.max_in_flight();
    assert!((2..=3).contains(&peak), "peak in flight {peak}");
}

#[test]
fn git_forge_lists_through_ls_remote_with_basic_auth() {
    let sb = Sandbox::new();
    let bare = big_repo(sb.path(), "group/app.git");
    let server = GitServer::start(sb.path(), Some(("bob", TOKEN)));
    let all = [".*"];
    let some = ["release/.*", "main"];
    let mk = |name: &str, pats: &[&str], token: &str| {
        repo(name, "git", server.url("group/app.git"), pats, None).monitor_auth(Some("bob"), token)
    };
    let c = config(&[mk("all", &all, TOKEN), mk("some", &some, TOKEN), mk("bad", &some, BAD)], 2);
    let ck = checker(&c);
    let l = ck.check(&c.repositories[0], None).expect("ls-remote");
    assert_eq!(as_strings(&l.heads), bare.heads());
    assert_eq!(l.validators, None);
    let l = ck.check(&c.repositories[1], None).expect("ls-remote");
    assert_eq!(l.heads.keys().collect::<Vec<_>>(), ["main", "release/1", "release/2.0", "release/x/y"]);
    let e = ck.check(&c.repositories[2], None).expect_err("bad password");
    assert_eq!(e.kind, CheckErrorKind::Unauthorized);
    assert!(e.message.contains("repository bad") && !e.message.contains(BAD), "{e}");
    for r in server.requests() {
        assert!(!r.url.contains(TOKEN) && !r.url.contains(BAD), "{}", r.url);
    }
}

#[test]
fn git_forge_retries_server_errors() {
    let sb = Sandbox::new();
    BareRepo::create(sb.path(), "app.git").commit("main", &[("a", "b")], "c");
    let server = GitServer::start(sb.path(), None);
    server.fail_next(2);
    let main = ["main"];
    let c = config(&[repo("app", "git", server.url("app.git"), &main, None)], 1);
    let l = checker(&c).check(&c.repositories[0], None).expect("third time lucky");
    // In process (protocol v2): the advertisement took 3 attempts, then one ls-refs POST.
    assert_eq!(l.requests, 4);
    assert_eq!(l.heads.len(), 1);
}

#[test]
fn probe_deploy_checks_branch_and_credentials() {
    let sb = Sandbox::new();
    BareRepo::create(sb.path(), "qa/pipelines.git").commit("main", &[("x", "y")], "qa");
    BareRepo::create(sb.path(), "qa/empty.git").commit("other", &[("x", "y")], "qa");
    let server = GitServer::start(sb.path(), Some(("deployer", "qa-pass-123")));
    let main = ["main"];
    let mk = |name: &str, rel: &str, pass: &str| {
        repo(name, "git", "https://unused.invalid/x.git".into(), &main, None)
            .qa(server.url(rel))
            .deploy_auth(Some("deployer"), pass)
    };
    let c = config(
        &[
            mk("ok", "qa/pipelines.git", "qa-pass-123"),
            mk("nobranch", "qa/empty.git", "qa-pass-123"),
            mk("badpass", "qa/pipelines.git", "qa-wrong-456"),
        ],
        2,
    );
    let ck = checker(&c);
    ck.probe_deploy(&c.repositories[0]).expect("reachable");
    let e = ck.probe_deploy(&c.repositories[1]).expect_err("no main");
    assert_eq!(e.kind, CheckErrorKind::NotFound);
    assert!(e.message.contains("nobranch") && e.message.contains("\"main\""), "{e}");
    let e = ck.probe_deploy(&c.repositories[2]).expect_err("bad password");
    assert_eq!(e.kind, CheckErrorKind::Unauthorized);
    assert!(e.message.contains("badpass") && !e.message.contains("qa-wrong-456"), "{e}");
}

#[test]
fn validate_connectivity_exit_codes() {
    let sb = Sandbox::new();
    let root = sb.path().join("repos");
    BareRepo::create(&root, "acme/app.git").commit("main", &[("a", "b")], "c");
    BareRepo::create(&root, "group/sub/deep/app.git").commit("main", &[("a", "b")], "c");
    BareRepo::create(&root, "org/app.git").commit("main", &[("a", "b")], "c");
    BareRepo::create(&root, "qa/pipelines.git").commit("main", &[("a", "b")], "c");
    let forge = FakeForge::start(&root);
    forge.require_token(TOKEN);
    let git = GitServer::start(&root, Some(("deployer", "qa-pass-123")));
    let main = ["main"];
    let write = |gh: &str, gl: &str| {
        let repos = [
            repo("gh", "github", forge.repo_url("acme/app"), &main, Some(gh)),
            repo("gl", "gitlab", forge.repo_url("group/sub/deep/app"), &main, Some(gl)),
            repo("gt", "gitea", forge.repo_url("org/app"), &main, Some(TOKEN)),
        ];
        conf(&repos.map(|r| r.qa(git.url("qa/pipelines.git"))), 4).write(&sb);
    };

    write(TOKEN, TOKEN);
    let r = sb.run(&["validate", "--connectivity"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.stdout.lines().filter(|l| l.starts_with("ok ")).count(), 6, "{}", r.stdout);
    // The three share one QA repository and its credentials: it is reached once, reported thrice.
    let ls_remotes = git.requests().iter().filter(|q| q.url.contains("/info/refs")).count();
    assert_eq!(ls_remotes, 1, "{:?}", git.requests());
    let r = sb.run(&["--output", "json", "validate", "--connectivity"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json(), serde_json::json!({"valid": true, "errors": [], "warnings": []}));
    // At debug, one line per HTTP request: method, URL (origin and path, never the query),
    // status, duration, cache hit; no token.
    let r = sb.run(&["--log-level", "debug", "validate", "--connectivity"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let lines: Vec<&str> = r.stderr.lines().filter(|l| l.contains("http request")).collect();
    assert_eq!(lines.len(), 3, "{}", r.stderr);
    for l in &lines {
        for key in ["method=GET", "url=http://127.0.0.1:", "status=200", "duration_ms=", "cache_hit=false"] {
            assert!(l.contains(key), "{key} missing in {l}");
        }
        assert!(!l.contains("per_page"), "no query in {l}");
    }
    assert!(!r.all().contains(TOKEN) && !r.all().contains("qa-pass-123"), "{}", r.all());

    write(BAD, BAD);
    let r = sb.run(&["validate", "--connectivity"]);
    assert_eq!(r.code, 3, "{}", r.all());
    let failed: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(failed.len(), 2, "{}", r.stdout);
    assert!(failed[0].contains("gh") && failed[0].contains("401"), "{}", failed[0]);
    assert!(failed[1].contains("gl") && failed[1].contains("401"), "{}", failed[1]);
    assert!(!r.all().contains(BAD), "token leaked: {}", r.all());
    let r = sb.run(&["--output", "json", "validate", "--connectivity"]);
    assert_eq!(r.code, 3);
    let j = r.json();
    assert_eq!(j["valid"], false);
    let paths: Vec<&str> =
        j["errors"].as_array().expect("errors").iter().map(|e| e["path"].as_str().expect("path")).collect();
    assert_eq!(paths, ["repositories[0].monitor", "repositories[1].monitor"]);
    assert!(j["errors"][0]["message"].as_str().expect("message").contains("repository gh"));
    // On the line of each repo_url (the helper writes `- name:`, `monitor:`, then `repo_url:`).
    let lines: Vec<u64> = j["errors"].as_array().expect("errors").iter().filter_map(|e| e["line"].as_u64()).collect();
    let yaml = std::fs::read_to_string(sb.path().join("sentry.yaml")).expect("config");
    let want: Vec<u64> = yaml
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("repo_url:"))
        .map(|(i, _)| i as u64 + 1)
        .take(2)
        .collect();
    assert_eq!(lines, want, "{j}");
    assert_token_only_in_auth_header(&forge.requests(), BAD, &["authorization", "private-token"]);
    assert_token_only_in_auth_header(&forge.requests(), TOKEN, &["authorization", "private-token"]);
}

mod graphql;
mod lsrefs;
mod pages;
mod proxy;
mod quirks;
mod ssh;

//! Issue 21: on an unchanged pass, a repository's cached pages are asked at once (within the
//! concurrency limit), and whatever is not "every page unchanged" is still found: a change on
//! a middle page, a page added after a full last one, a 304 that names a page past the cache.

use super::{as_strings, checker, config, page_of, repo};
use crate::support::Sandbox;
use crate::support::fake_forge::{FakeForge, Flavor};
use crate::support::git_server::LoggedRequest;
use crate::support::repos::BareRepo;
use crate::support::world::{TOKEN, World, line};
use sentry::config::Repository;
use sentry::model::Validators;
use std::time::Duration;

/// Where the repository of these tests lives on each forge of the fake.
fn rel_of(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Github => "acme/big",
        Flavor::Gitlab => "group/sub/big",
        Flavor::Gitea => "org/big",
    }
}

/// A repository of `main` and `n - 1` branches `b-000`, `b-001`...: pages of 100 by name, so
/// `b-250` is on page 3.
fn branches(root: &std::path::Path, rel: &str, n: usize) -> BareRepo {
    let r = BareRepo::create(root, &format!("{rel}.git"));
    let base = r.commit("main", &[("a", "b")], "first");
    r.create_branches(&(0..n - 1).map(|i| format!("b-{i:03}")).collect::<Vec<_>>(), &base);
    assert_eq!(r.heads().len(), n);
    r
}

/// Each logged request as (page, If-None-Match, status).
fn asked(log: &[LoggedRequest]) -> Vec<(usize, Option<String>, u16)> {
    log.iter().map(|r| (page_of(r), r.headers.get("if-none-match").cloned(), r.status)).collect()
}

/// One listing of every branch of `rel` with nothing cached, and its validators.
fn first_listing(flavor: Flavor, forge: &FakeForge, concurrency: usize) -> (sentry::config::Config, Validators) {
    let all = [".*"];
    let c = config(&[repo("big", flavor.repo_type(), forge.repo_url(rel_of(flavor)), &all, None)], concurrency);
    let v = checker(&c).check(&c.repositories[0], None).expect("first listing").validators.expect("validators");
    (c, v)
}

/// (1) Five unchanged pages: all five asked with their ETags, at the same time, answered 304,
/// and the cached heads are the listing. GitLab's 304s repeat the pagination headers (their next
/// page is the next cached one); GitHub's carry none.
fn unchanged_pages_are_asked_at_once(flavor: Flavor) {
    let sb = Sandbox::new();
    let bare = branches(sb.path(), rel_of(flavor), 450);
    let forge = FakeForge::start(sb.path());
    let (c, v) = first_listing(flavor, &forge, 4);
    assert_eq!(v.etags.len(), 5, "{flavor:?}: 100, 100, 100, 100 and 50 branches");
    forge.clear_log();
    // Long enough that pages asked one after another could never overlap.
    forge.set_latency(Duration::from_millis(150));

    let l = checker(&c).check(&c.repositories[0], Some(&v)).expect("second listing");
    assert!(l.cache_hit, "{flavor:?}");
    assert_eq!(as_strings(&l.heads), bare.heads(), "{flavor:?}");
    assert_eq!(l.validators.as_ref(), Some(&v), "{flavor:?}");
    assert_eq!(l.requests, 5, "{flavor:?}");
    let mut log = asked(&forge.requests());
    log.sort();
    let want: Vec<_> = v.etags.iter().enumerate().map(|(i, tag)| (i + 1, Some(tag.clone()), 304)).collect();
    assert_eq!(log, want, "{flavor:?}: each page once, with its own ETag");
    let peak = forge.max_in_flight();
    assert!((2..=4).contains(&peak), "{flavor:?}: {peak} pages in flight at most, 4 threads");
}

#[test]
fn github_unchanged_pages_are_asked_at_once() {
    unchanged_pages_are_asked_at_once(Flavor::Github);
}

#[test]
fn gitlab_unchanged_pages_are_asked_at_once() {
    unchanged_pages_are_asked_at_once(Flavor::Gitlab);
}

/// (1) Two repositories of five cached pages each, three threads: never more than three
/// requests in flight in all, and both are cache hits.
#[test]
fn cached_pages_of_several_repositories_stay_within_the_concurrency() {
    let sb = Sandbox::new();
    branches(sb.path(), "acme/one", 450);
    branches(sb.path(), "acme/two", 450);
    let forge = FakeForge::start(sb.path());
    let all = [".*"];
    let c = config(
        &[
            repo("one", "github", forge.repo_url("acme/one"), &all, None),
            repo("two", "github", forge.repo_url("acme/two"), &all, None),
        ],
        3,
    );
    let ck = checker(&c);
    let cold: Vec<(&Repository, Option<&Validators>)> = c.repositories.iter().map(|r| (r, None)).collect();
    let first: Vec<Validators> =
        ck.check_all(&cold).into_iter().map(|l| l.expect("listing").validators.expect("validators")).collect();
    forge.clear_log();
    forge.set_latency(Duration::from_millis(100));
    let warm: Vec<(&Repository, Option<&Validators>)> =
        c.repositories.iter().zip(&first).map(|(r, v)| (r, Some(v))).collect();
    for l in ck.check_all(&warm) {
        assert!(l.expect("listing").cache_hit);
    }
    let log = forge.requests();
    assert_eq!(log.len(), 10);
    assert!(log.iter().all(|r| r.status == 304 && r.headers.contains_key("if-none-match")), "{log:?}");
    let peak = forge.max_in_flight();
    assert!((2..=3).contains(&peak), "{peak} requests in flight, 3 threads");
}

/// (2) A branch moved on page 3 of 5 while the other pages answer 304: page 3 answers its
/// conditional request 200, the listing is done again whole, and the new head is found; only
/// page 3's ETag changes.
fn a_change_on_a_middle_page_is_found(flavor: Flavor) {
    let sb = Sandbox::new();
    let bare = branches(sb.path(), rel_of(flavor), 450);
    let forge = FakeForge::start(sb.path());
    let (c, v) = first_listing(flavor, &forge, 8);
    let moved = bare.commit("b-250", &[("moved", "yes")], "move b-250");
    forge.clear_log();

    let l = checker(&c).check(&c.repositories[0], Some(&v)).expect("listing");
    assert!(!l.cache_hit, "{flavor:?}");
    assert_eq!(l.heads.get("b-250").expect("listed").as_str(), moved, "{flavor:?}");
    assert_eq!(as_strings(&l.heads), bare.heads(), "{flavor:?}");
    let etags = l.validators.expect("validators").etags;
    let changed: Vec<usize> = (0..5).filter(|&i| etags[i] != v.etags[i]).collect();
    assert_eq!(changed, [2], "{flavor:?}: only page 3 changed");

    let log = asked(&forge.requests());
    let old = |page: usize| Some(v.etags[page - 1].clone());
    assert!(log.contains(&(3, old(3), 200)), "{flavor:?}: page 3 asked with its old ETag: {log:?}");
    assert!(
        log.iter().all(|(page, tag, status)| *status == 304 || tag.is_none() || (*page == 3 && *tag == old(3))),
        "{flavor:?}: no other conditional request answered 200: {log:?}"
    );
    let whole: Vec<usize> = log.iter().filter(|(_, tag, _)| tag.is_none()).map(|(p, ..)| *p).collect();
    assert_eq!(whole, [1, 2, 3, 4, 5], "{flavor:?}: listed again whole: {log:?}");
}

#[test]
fn github_a_change_on_page_three_of_five_is_found() {
    a_change_on_a_middle_page_is_found(Flavor::Github);
}

#[test]
fn gitlab_a_change_on_page_three_of_five_is_found() {
    a_change_on_a_middle_page_is_found(Flavor::Gitlab);
}

/// (2) End to end through the binary: an unchanged pass of a five-page GitLab project is five
/// 304s and deploys nothing; a push to a branch on page 3 is deployed and recorded.
#[test]
fn a_push_on_page_three_of_five_is_deployed() {
    let w = World::new();
    let big = branches(&w.root, "apps/big", 450);
    let forge = FakeForge::start(&w.root);
    forge.require_token(TOKEN);
    let watched = w.repo("big").monitor_url(forge.repo_url("apps/big")).kind("gitlab").branches(["b-250", "main"]);
    w.conf().global("concurrency", 8).repo(watched).write(&w.sb);
    let r = w.poll();
    assert_eq!(r.code, 0, "baseline: {}", r.all());

    forge.clear_log();
    let r = w.poll();
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(w.deployed().is_empty());
    let log = asked(&forge.requests());
    assert_eq!(log.len(), 5, "{log:?}");
    assert!(log.iter().all(|(_, tag, status)| tag.is_some() && *status == 304), "{log:?}");

    let before = big.head("b-250").expect("b-250");
    let moved = big.commit("b-250", &[("v", "2")], "v2");
    let r = w.poll();
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(w.deployed(), [line("big", "b-250", &moved, Some(&before), None)]);
    assert_eq!(w.state()["repos"]["big"]["branches"]["b-250"]["deployed"], moved.as_str());
}

/// (3) Exactly 500 branches fill five pages, so the first listing also asked page 6 (empty) and
/// cached it. A branch added since lands on page 6, which answers 200 while pages 1-5 answer 304.
fn a_page_added_after_a_full_last_page_is_found(flavor: Flavor) {
    let sb = Sandbox::new();
    let bare = branches(sb.path(), rel_of(flavor), 500);
    let forge = FakeForge::start(sb.path());
    let (c, v) = first_listing(flavor, &forge, 8);
    assert_eq!(v.etags.len(), 6, "{flavor:?}: five full pages and the empty sixth");
    let head = bare.head("main").expect("main");
    bare.create_branches(&["zz-new".to_string()], &head);
    forge.clear_log();

    let l = checker(&c).check(&c.repositories[0], Some(&v)).expect("listing");
    assert!(!l.cache_hit, "{flavor:?}");
    assert_eq!(l.heads.get("zz-new").expect("listed").as_str(), head, "{flavor:?}");
    assert_eq!(as_strings(&l.heads), bare.heads(), "{flavor:?}");
    let log = asked(&forge.requests());
    assert!(log.contains(&(6, Some(v.etags[5].clone()), 200)), "{flavor:?}: page 6 changed: {log:?}");

    // Unchanged since: six pages, all 304, the cached sixth included.
    let v = l.validators.expect("validators");
    forge.clear_log();
    let l = checker(&c).check(&c.repositories[0], Some(&v)).expect("listing");
    assert!(l.cache_hit, "{flavor:?}");
    assert_eq!(forge.requests().len(), 6, "{flavor:?}");
}

#[test]
fn github_a_page_added_after_a_full_last_page_is_found() {
    a_page_added_after_a_full_last_page_is_found(Flavor::Github);
}

#[test]
fn gitlab_a_page_added_after_a_full_last_page_is_found() {
    a_page_added_after_a_full_last_page_is_found(Flavor::Gitlab);
}

/// (3) GitLab's 304 repeats its pagination: when the last cached page says a next page exists,
/// the page count changed though every cached page answered 304. The cache (five pages of a
/// listing that has seven now) is not trusted: the pages are walked one after another, which
/// asks page 6, and the whole listing is found.
#[test]
fn gitlab_a_304_naming_a_page_past_the_cache_is_not_trusted() {
    let sb = Sandbox::new();
    let bare = branches(sb.path(), rel_of(Flavor::Gitlab), 600);
    let forge = FakeForge::start(sb.path());
    let (c, full) = first_listing(Flavor::Gitlab, &forge, 8);
    assert_eq!(full.etags.len(), 7);
    let v = Validators { etags: full.etags[..5].to_vec(), ..full.clone() };
    forge.clear_log();
    // All five cached pages are in flight before the first answer: none is left unasked.
    forge.set_latency(Duration::from_millis(50));

    let l = checker(&c).check(&c.repositories[0], Some(&v)).expect("listing");
    assert!(!l.cache_hit);
    assert_eq!(as_strings(&l.heads), bare.heads());
    assert_eq!(l.validators.expect("validators").etags, full.etags);
    let log = asked(&forge.requests());
    // The five cached pages at once, then again one after another up to page 6.
    let cached = |(page, tag, status): &(usize, Option<String>, u16)| {
        *page <= 5 && *tag == Some(full.etags[page - 1].clone()) && *status == 304
    };
    assert_eq!(log.iter().take(10).filter(|a| cached(a)).count(), 10, "{log:?}");
    assert_eq!(log[10], (6, None, 200), "{log:?}");
}

/// GitHub's secondary rate limit met while the cached pages are asked at once: the check fails
/// at once as a rate limit, the pages not yet asked are not, and the host is given up for the
/// run, as when pages were asked one after another.
#[test]
fn a_secondary_rate_limit_among_cached_pages_gives_the_host_up() {
    use sentry::forge::CheckErrorKind;
    let sb = Sandbox::new();
    branches(sb.path(), "acme/big", 450);
    BareRepo::create(sb.path(), "acme/other.git").commit("main", &[("a", "b")], "c");
    let forge = FakeForge::start(sb.path());
    let (c, v) = first_listing(Flavor::Github, &forge, 2);
    let main = ["main"];
    let other = config(&[repo("other", "github", forge.repo_url("acme/other"), &main, None)], 2);
    forge.clear_log();
    forge.secondary_limit_next(5, 403);

    let ck = checker(&c).with_budget(Duration::from_secs(10));
    let e = ck.check(&c.repositories[0], Some(&v)).expect_err("limited");
    assert_eq!(e.kind, CheckErrorKind::RateLimited, "{e}");
    assert!(e.message.contains("secondary rate limit") && e.message.contains("repository big"), "{e}");
    let asked = forge.requests().len();
    assert!((1..=2).contains(&asked), "at most the two in flight were sent, not all five: {asked}");
    let e = ck.check(&other.repositories[0], None).expect_err("host given up");
    assert_eq!(e.kind, CheckErrorKind::RateLimited);
    assert!(e.message.contains("not asked again"), "{e}");
    assert_eq!(forge.requests().len(), asked, "the host is not asked again this run");
}

/// (5) Tags are listed afresh every pass and their ETags are never kept: each page is asked
/// once, unconditionally, and no earlier page is asked again to check the walk (that check
/// only protects a cache, and cost a tag listing of n pages n - 1 requests more).
fn tag_pages_are_asked_once(flavor: Flavor) {
    let sb = Sandbox::new();
    let r = BareRepo::create(sb.path(), &format!("{}.git", rel_of(flavor)));
    let base = r.commit("main", &[("a", "b")], "first");
    let names: Vec<String> = (0..250).map(|i| format!("v1.{i:03}.0")).collect();
    r.create_tags(&names, &base);
    let forge = FakeForge::start(sb.path());
    let watched = repo("big", flavor.repo_type(), forge.repo_url(rel_of(flavor)), &["main"], None).tags(["v.*"]);
    let c = config(&[watched], 4);
    let tags = checker(&c).tags(&c.repositories[0]).expect("tag listing");
    assert_eq!(tags.len(), 250, "{flavor:?}");
    // Gitea caps pages at 50 (MAX_RESPONSE_ITEMS): five full ones, and the page after a full last one.
    let pages = if flavor == Flavor::Gitea { 6 } else { 3 };
    let want: Vec<_> = (1..=pages).map(|p| (p, None, 200)).collect();
    assert_eq!(asked(&forge.requests()), want, "{flavor:?}: each page once");
}

#[test]
fn tag_pages_are_asked_once_on_github() {
    tag_pages_are_asked_once(Flavor::Github);
}

#[test]
fn tag_pages_are_asked_once_on_gitlab() {
    tag_pages_are_asked_once(Flavor::Gitlab);
}

#[test]
fn tag_pages_are_asked_once_on_gitea() {
    tag_pages_are_asked_once(Flavor::Gitea);
}

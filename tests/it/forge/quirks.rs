//! The forges as they really behave (issue 17): next-page links built from another address,
//! GitHub's 304 without pagination, servers that cap the page size, listings that change while
//! they are walked, old pagers, renamed repositories, OAuth tokens. Each test failed before the
//! fix it names.

use super::{TOKEN, as_strings, big_repo, checker, config, rel_of, repo};
use crate::support::Sandbox;
use crate::support::fake_forge::{FakeForge, Flavor};
use crate::support::repos::BareRepo;

/// Item 1: GitLab's `external_url`, Gitea's `ROOT_URL` and the GHES hostname make next-page
/// links on an origin sentry was not configured with (here one that does not even resolve).
/// They are followed on the configured origin, and the token goes nowhere else.
#[test]
fn next_links_on_another_origin_are_followed_on_the_configured_one() {
    for (flavor, external) in [
        (Flavor::Github, "http://ghe.example.invalid"),
        (Flavor::Gitlab, "https://gitlab.example.invalid:8443"),
        (Flavor::Gitea, "http://gitea.example.invalid:3000"),
        // A relative URL root the configured address lacks: only the page number is kept.
        (Flavor::Gitlab, "http://gitlab.example.invalid/gitlab"),
    ] {
        let sb = Sandbox::new();
        let rel = rel_of(flavor);
        let bare = big_repo(sb.path(), &format!("{rel}.git"));
        let forge = FakeForge::start(sb.path());
        forge.require_token(TOKEN);
        forge.external_url(external);
        let all = [".*"];
        let c = config(&[repo("app", flavor.repo_type(), forge.repo_url(rel), &all, Some(TOKEN))], 1);
        let listing = checker(&c).check(&c.repositories[0], None).unwrap_or_else(|e| panic!("{external}: {e}"));
        assert_eq!(as_strings(&listing.heads), bare.heads(), "{external}");
        let log = forge.requests();
        assert!(log.iter().filter(|r| r.status == 200).count() >= 3, "{external}: {log:?}");
        assert!(log.iter().all(|r| r.status == 200 || r.status == 304), "{external}: {log:?}");
    }
}

/// Item 2: exactly 100 branches fill GitHub's one page; GitHub's 304 carries no `Link`. A
/// branch added later lands on page 2 while page 1 still answers 304.
#[test]
fn github_new_branch_after_a_full_last_page_is_seen_though_page_one_answers_304() {
    let sb = Sandbox::new();
    let r = BareRepo::create(sb.path(), "acme/app.git");
    let base = r.commit("main", &[("a", "b")], "first");
    let names: Vec<String> = (0..99).map(|i| format!("b-{i:03}")).collect();
    r.create_branches(&names, &base);
    assert_eq!(r.heads().len(), 100);
    let forge = FakeForge::start(sb.path());
    let all = [".*"];
    let c = config(&[repo("app", "github", forge.repo_url("acme/app"), &all, None)], 1);
    let ck = checker(&c);
    let first = ck.check(&c.repositories[0], None).expect("first");
    assert_eq!(first.heads.len(), 100);
    let v = first.validators.clone().expect("validators");

    r.create_branches(&["zz-new".to_string()], &base);
    let second = ck.check(&c.repositories[0], Some(&v)).expect("second");
    assert!(!second.cache_hit);
    assert_eq!(as_strings(&second.heads), r.heads());
    assert!(second.heads.contains_key("zz-new"));

    // Unchanged since: every page, the empty one after the full one included, answers 304.
    let third = ck.check(&c.repositories[0], second.validators.as_ref()).expect("third");
    assert!(third.cache_hit);
    assert_eq!(third.heads, second.heads);
}

/// Item 3: Gitea caps `limit` at `MAX_RESPONSE_ITEMS`; without `Link`, `X-Total-Count` must be
/// read with the page size the server used, not the one asked for.
#[test]
fn gitea_total_count_is_read_with_the_servers_page_size() {
    let sb = Sandbox::new();
    let bare = big_repo(sb.path(), "org/app.git");
    let forge = FakeForge::start(sb.path());
    forge.max_response_items(30);
    forge.gitea_link(false);
    let all = [".*"];
    let c = config(&[repo("app", "gitea", forge.repo_url("org/app"), &all, None)], 1);
    let listing = checker(&c).check(&c.repositories[0], None).expect("listing");
    assert_eq!(as_strings(&listing.heads), bare.heads());
    // 250 branches in pages of 30: 9 pages.
    assert_eq!(forge.requests().len(), 9);
}

/// Item 5: offset pagination is no snapshot. A branch deleted from page 1 after it was read
/// shifts page 2 by one: a branch would be skipped (and the deleted one kept) unless the change
/// is noticed and the listing walked again.
#[test]
fn a_listing_that_changes_while_it_is_walked_is_walked_again() {
    // GitHub, by name: a deletion on page 1 after page 1 was read.
    let sb = Sandbox::new();
    let bare = big_repo(sb.path(), "acme/app.git");
    let forge = FakeForge::start(sb.path());
    let victim = bare.clone();
    forge.after_page(1, move || victim.delete_branch("dev"));
    let all = [".*"];
    let c = config(&[repo("app", "github", forge.repo_url("acme/app"), &all, None)], 1);
    let listing = checker(&c).check(&c.repositories[0], None).expect("listing");
    assert!(!listing.heads.contains_key("dev"));
    assert_eq!(as_strings(&listing.heads), bare.heads());
    assert!(listing.validators.is_some(), "the second walk was consistent: cached");

    // Gitea, newest commit first: a commit on a branch of page 3 moves it to page 1 while page 2
    // is read, so page 3 repeats a branch of page 2.
    let sb = Sandbox::new();
    let bare = big_repo(sb.path(), "org/app.git");
    let forge = FakeForge::start(sb.path());
    let mover = bare.clone();
    let moved = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let m = moved.clone();
    forge.after_page(2, move || {
        *m.lock().expect("lock") = mover.commit("zz-2", &[("moved", "yes")], "move to the top");
    });
    let c = config(&[repo("app", "gitea", forge.repo_url("org/app"), &all, None)], 1);
    let listing = checker(&c).check(&c.repositories[0], None).expect("listing");
    assert_eq!(listing.heads.get("zz-2").expect("listed").as_str(), moved.lock().expect("lock").as_str());
    assert_eq!(as_strings(&listing.heads), bare.heads());
}

/// An old GitLab ignored `page` and said `X-Next-Page: 2` forever: the whole list, once.
#[test]
fn gitlab_old_pager_that_ignores_page_lists_once() {
    let sb = Sandbox::new();
    let r = BareRepo::create(sb.path(), "group/app.git");
    let base = r.commit("main", &[("a", "b")], "first");
    r.create_branches(&(0..29).map(|i| format!("f-{i}")).collect::<Vec<_>>(), &base);
    let forge = FakeForge::start(sb.path());
    forge.gitlab_old_pager(true);
    let all = [".*"];
    let c = config(&[repo("app", "gitlab", forge.repo_url("group/app"), &all, None)], 1);
    let listing = checker(&c).check(&c.repositories[0], None).expect("listing");
    assert_eq!(as_strings(&listing.heads), r.heads());
    assert_eq!(forge.requests().len(), 2);
}

/// GitHub answers 301 for a renamed repository, to its `/repositories/{id}` address on the
/// same origin: followed, with the token.
#[test]
fn github_renamed_repository_is_followed() {
    let sb = Sandbox::new();
    let bare = big_repo(sb.path(), "acme/app.git");
    let forge = FakeForge::start(sb.path());
    forge.require_token(TOKEN);
    forge.rename("acme/old-name", "acme/app");
    let all = [".*"];
    let c = config(&[repo("app", "github", forge.repo_url("acme/old-name"), &all, Some(TOKEN))], 1);
    let listing = checker(&c).check(&c.repositories[0], None).expect("listing");
    assert_eq!(as_strings(&listing.heads), bare.heads());
    assert_eq!(forge.requests()[0].status, 301);
}

/// Item 8: GitLab takes OAuth tokens only as `Authorization: Bearer`; `Bearer` also carries
/// personal, project and group access tokens.
#[test]
fn gitlab_tokens_go_as_bearer_so_oauth_tokens_work() {
    let sb = Sandbox::new();
    BareRepo::create(sb.path(), "group/app.git").commit("main", &[("a", "b")], "c");
    let forge = FakeForge::start(sb.path());
    forge.require_oauth_token(TOKEN);
    let main = ["main"];
    let c = config(&[repo("app", "gitlab", forge.repo_url("group/app"), &main, Some(TOKEN))], 1);
    let listing = checker(&c).check(&c.repositories[0], None).expect("listing");
    assert_eq!(listing.heads.len(), 1);
    let log = forge.requests();
    assert_eq!(log[0].headers.get("authorization").map(String::as_str), Some(format!("Bearer {TOKEN}").as_str()));
    assert!(!log[0].headers.contains_key("private-token"));
}

/// Item 4: GitHub's secondary rate limit (403 or 429, no `Retry-After`, the documented message)
/// is a rate limit, never "token lacks access", and never retried within a second: sentry waits
/// at least a minute or gives the host up for the run. Here the budget is shorter than a minute,
/// so the repository fails at once, clearly, and the next one on that host is not even asked.
#[test]
fn github_secondary_rate_limit_gives_the_host_up_for_the_run() {
    use sentry::forge::CheckErrorKind;
    use std::time::{Duration, Instant};
    for status in [403, 429] {
        let sb = Sandbox::new();
        BareRepo::create(sb.path(), "acme/app.git").commit("main", &[("a", "b")], "c");
        BareRepo::create(sb.path(), "acme/other.git").commit("main", &[("a", "b")], "c");
        let forge = FakeForge::start(sb.path());
        forge.require_token(TOKEN);
        forge.secondary_limit_next(5, status);
        let main = ["main"];
        let c = config(
            &[
                repo("app", "github", forge.repo_url("acme/app"), &main, Some(TOKEN)),
                repo("other", "github", forge.repo_url("acme/other"), &main, Some(TOKEN)),
            ],
            1,
        );
        let ck = checker(&c).with_budget(Duration::from_secs(10));
        let started = Instant::now();
        let e = ck.check(&c.repositories[0], None).expect_err("limited");
        assert!(started.elapsed() < Duration::from_secs(5), "{status}: it waited {:?}", started.elapsed());
        assert_eq!(e.kind, CheckErrorKind::RateLimited, "{status}: {e}");
        assert!(e.message.contains("secondary rate limit") && e.message.contains("repository app"), "{e}");
        assert!(!e.message.contains("lacks access"), "{e}");
        assert_eq!(forge.requests().len(), 1, "{status}: not retried at once");
        let e = ck.check(&c.repositories[1], None).expect_err("host given up");
        assert_eq!(e.kind, CheckErrorKind::RateLimited);
        assert!(e.message.contains("repository other") && e.message.contains("not asked again"), "{e}");
        assert_eq!(forge.requests().len(), 1, "{status}: the host is not asked again this run");
    }
}

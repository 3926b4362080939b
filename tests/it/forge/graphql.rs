//! GitHub GraphQL listings (issue 21): up to 100 repositories per POST, cursor pagination for
//! the ones with more refs, per-repository errors beside the others' data, REST for what GraphQL
//! cannot answer, and `github_api: rest` / no token keeping REST.

use super::{TOKEN, as_strings, big_repo, checker, conf, repo};
use crate::support::Sandbox;
use crate::support::fake_forge::FakeForge;
use crate::support::repos::BareRepo;
use sentry::config::Repository;
use sentry::forge::CheckErrorKind;
use std::path::Path;

fn all(c: &sentry::config::Config) -> Vec<(&Repository, Option<&sentry::model::Validators>)> {
    c.repositories.iter().map(|r| (r, None)).collect()
}

#[test]
fn two_hundred_fifty_repositories_take_three_requests() {
    let sb = Sandbox::new();
    let mut repos = Vec::new();
    let mut heads = Vec::new();
    for i in 0..250 {
        let b = BareRepo::create(sb.path(), &format!("acme/svc-{i:03}.git"));
        heads.push(b.commit("main", &[("f", &i.to_string())], "c"));
    }
    let forge = FakeForge::start(sb.path());
    forge.require_token(TOKEN);
    for i in 0..250 {
        repos.push(repo(
            &format!("svc-{i:03}"),
            "github",
            forge.repo_url(&format!("acme/svc-{i:03}")),
            &["main"],
            Some(TOKEN),
        ));
    }
    let c = conf(&repos, 4).parse(Path::new("."), &[]);
    let ck = checker(&c);
    let results = ck.check_all(&all(&c));
    for (i, r) in results.iter().enumerate() {
        let l = r.as_ref().expect("listed");
        assert_eq!(l.heads.get("main").expect("listed").as_str(), heads[i], "repository {i} in input order");
        assert_eq!(l.validators, None, "GraphQL listings carry no validators");
    }
    let log = forge.requests();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log.iter().all(|r| r.method == "POST" && r.url == "/api/graphql"), "{log:?}");
    let mut batches = forge.graphql_batches();
    batches.sort();
    assert_eq!(batches, [50, 100, 100]);
    // The token went in the Authorization header only.
    assert!(log.iter().all(|r| r.headers.get("authorization").is_some_and(|v| v == &format!("Bearer {TOKEN}"))));
}

#[test]
fn more_than_100_refs_follow_the_cursor_for_that_repository_only() {
    let sb = Sandbox::new();
    let bare = big_repo(sb.path(), "acme/big.git");
    BareRepo::create(sb.path(), "acme/small.git").commit("main", &[("a", "b")], "c");
    let forge = FakeForge::start(sb.path());
    forge.require_token(TOKEN);
    let c = conf(
        &[
            repo("big", "github", forge.repo_url("acme/big"), &[".*"], Some(TOKEN)),
            repo("small", "github", forge.repo_url("acme/small"), &["main"], Some(TOKEN)),
            repo("filtered", "github", forge.repo_url("acme/big"), &["release/.*"], Some(TOKEN)),
        ],
        2,
    )
    .parse(Path::new("."), &[]);
    let results = checker(&c).check_all(&all(&c));
    let big = results[0].as_ref().expect("big");
    assert_eq!(as_strings(&big.heads), bare.heads());
    assert_eq!(results[1].as_ref().expect("small").heads.len(), 1);
    let filtered = results[2].as_ref().expect("filtered");
    // Whole-name patterns: `release/.*` is not `old-release/1` nor `releasee`.
    assert_eq!(filtered.heads.keys().cloned().collect::<Vec<_>>(), ["release/1", "release/2.0", "release/x/y"]);
    // 250 refs: 3 pages for each big one; the small one rode along in the first request only.
    assert_eq!(forge.graphql_batches(), [3, 2, 2]);
}

#[test]
fn per_repository_errors_leave_the_others_listed_and_broken_ones_go_rest() {
    let sb = Sandbox::new();
    for r in ["acme/ok", "acme/sso", "acme/flaky"] {
        BareRepo::create(sb.path(), &format!("{r}.git")).commit("main", &[("a", r)], "c");
    }
    let forge = FakeForge::start(sb.path());
    forge.require_token(TOKEN);
    forge.graphql_forbidden("acme/sso");
    forge.graphql_broken("acme/flaky");
    let c = conf(
        &[
            repo("ok", "github", forge.repo_url("acme/ok"), &["main"], Some(TOKEN)),
            repo("gone", "github", forge.repo_url("acme/gone"), &["main"], Some(TOKEN)),
            repo("sso", "github", forge.repo_url("acme/sso"), &["main"], Some(TOKEN)),
            repo("flaky", "github", forge.repo_url("acme/flaky"), &["main"], Some(TOKEN)),
        ],
        2,
    )
    .parse(Path::new("."), &[]);
    let results = checker(&c).check_all(&all(&c));
    assert_eq!(results[0].as_ref().expect("ok").heads.len(), 1);
    let gone = results[1].as_ref().expect_err("gone");
    assert_eq!((gone.kind, gone.repo.as_str()), (CheckErrorKind::NotFound, "gone"));
    assert!(gone.message.contains("acme/gone"), "{}", gone.message);
    let sso = results[2].as_ref().expect_err("sso");
    assert_eq!(sso.kind, CheckErrorKind::Unauthorized, "{}", sso.message);
    assert!(sso.message.contains("SAML"), "{}", sso.message);
    // The field error is not the repository's: it is listed through REST, with its ETag.
    let flaky = results[3].as_ref().expect("flaky through REST");
    assert_eq!(flaky.heads.len(), 1);
    assert!(flaky.validators.is_some());
    let log = forge.requests();
    assert_eq!(log.iter().filter(|r| r.url == "/api/graphql").count(), 1, "{log:?}");
    let rest: Vec<_> = log.iter().filter(|r| r.url != "/api/graphql").map(|r| r.url.as_str()).collect();
    assert_eq!(rest, ["/api/v3/repos/acme/flaky/branches?per_page=100"]);
}

#[test]
fn rest_is_kept_without_a_token_or_when_asked() {
    let sb = Sandbox::new();
    BareRepo::create(sb.path(), "acme/app.git").commit("main", &[("a", "b")], "c");
    let forge = FakeForge::start(sb.path());
    forge.require_token(TOKEN);
    let url = forge.repo_url("acme/app");
    // No token: GraphQL needs one, so REST (here a 404, as GitHub hides a private repository).
    let c = conf(&[repo("anon", "github", url.clone(), &["main"], None)], 2).parse(Path::new("."), &[]);
    let r = checker(&c).check_all(&all(&c));
    assert_eq!(r[0].as_ref().map_err(|e| e.kind).err(), Some(CheckErrorKind::NotFound), "{r:?}");
    // `github_api: rest` opts out.
    let c = conf(&[repo("rest", "github", url, &["main"], Some(TOKEN))], 2)
        .global("github_api", "rest")
        .parse(Path::new("."), &[]);
    let r = checker(&c).check_all(&all(&c));
    assert!(r[0].is_ok(), "{r:?}");
    assert!(
        forge.requests().iter().all(|r| r.method == "GET" && r.url.contains("/branches")),
        "{:?}",
        forge.requests()
    );
}

#[test]
fn a_rejected_token_fails_every_repository_of_the_batch_without_rest() {
    let sb = Sandbox::new();
    BareRepo::create(sb.path(), "acme/a.git").commit("main", &[("a", "b")], "c");
    BareRepo::create(sb.path(), "acme/b.git").commit("main", &[("a", "b")], "c");
    let forge = FakeForge::start(sb.path());
    forge.require_token(TOKEN);
    let c = conf(
        &[
            repo("a", "github", forge.repo_url("acme/a"), &["main"], Some("tok-bad-000000000")),
            repo("b", "github", forge.repo_url("acme/b"), &["main"], Some("tok-bad-000000000")),
        ],
        2,
    )
    .parse(Path::new("."), &[]);
    let results = checker(&c).check_all(&all(&c));
    for r in &results {
        let e = r.as_ref().expect_err("refused");
        assert_eq!(e.kind, CheckErrorKind::Unauthorized, "{}", e.message);
        assert!(!e.message.contains("tok-bad-000000000"), "{}", e.message);
    }
    assert_eq!(forge.requests().len(), 1, "{:?}", forge.requests());
}

#[test]
fn an_enterprise_server_without_graphql_is_listed_through_rest() {
    let sb = Sandbox::new();
    BareRepo::create(sb.path(), "acme/a.git").commit("main", &[("a", "b")], "c");
    BareRepo::create(sb.path(), "acme/b.git").commit("main", &[("a", "b")], "c");
    let forge = FakeForge::start(sb.path());
    forge.require_token(TOKEN);
    forge.graphql_missing(true);
    let c = conf(
        &[
            repo("a", "github", forge.repo_url("acme/a"), &["main"], Some(TOKEN)),
            repo("b", "github", forge.repo_url("acme/b"), &["main"], Some(TOKEN)),
        ],
        2,
    )
    .parse(Path::new("."), &[]);
    let results = checker(&c).check_all(&all(&c));
    for r in &results {
        let l = r.as_ref().expect("listed through REST");
        assert_eq!(l.heads.len(), 1);
        assert!(l.validators.is_some(), "REST keeps its ETags");
    }
    let log = forge.requests();
    // One POST for the batch (404: no retry), then one conditional-ready GET per repository.
    assert_eq!(log.iter().filter(|r| r.url == "/api/graphql").count(), 1, "{log:?}");
    assert_eq!(log.iter().filter(|r| r.method == "GET").count(), 2, "{log:?}");
}

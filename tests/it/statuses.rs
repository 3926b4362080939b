//! Commit statuses (`deploy.report_status`, SPEC §4): each deployment posts `pending` when it
//! starts and its verdict when it ends, on the watched commit of a GitHub, GitLab or Gitea
//! repository (the fake forge, over the world's real repositories), with the monitor's token.

use crate::support::fake_forge::{FakeForge, Flavor, PostedStatus};
use crate::support::repos::BareRepo;
use crate::support::world::{TOKEN, World};

/// A world whose `app` is watched through `flavor`'s API on the fake forge (the deploy side stays
/// on the git server), with `report_status: true`, already baselined.
fn status_world(flavor: Flavor) -> (World, FakeForge, BareRepo) {
    let w = World::new();
    let app = w.create("app");
    app.commit("main", &[("v", "1")], "v1");
    let forge = FakeForge::start(&w.root);
    forge.require_token(TOKEN);
    let repo = w.repo("app").monitor_url(forge.repo_url("apps/app")).kind(flavor.repo_type()).report_status(true);
    w.conf().repo(repo).write(&w.sb);
    let r = w.poll();
    assert_eq!(r.code, 0, "baseline: {}", r.all());
    assert!(forge.statuses().is_empty(), "a baseline deploys nothing, so posts nothing");
    (w, forge, app)
}

fn states(posted: &[PostedStatus]) -> Vec<&str> {
    posted.iter().map(|p| p.state.as_str()).collect()
}

#[test]
fn pending_then_success_on_every_forge() {
    for flavor in [Flavor::Github, Flavor::Gitlab, Flavor::Gitea] {
        let (w, forge, app) = status_world(flavor);
        let v2 = app.commit("main", &[("v", "2")], "v2");
        let r = w.poll();
        assert_eq!(r.code, 0, "{flavor:?}: {}", r.all());
        let posted = forge.statuses();
        let started = if flavor == Flavor::Gitlab { "running" } else { "pending" };
        assert_eq!(states(&posted), [started, "success"], "{flavor:?}: {posted:?}");
        for p in &posted {
            assert_eq!((p.repo.as_str(), p.sha.as_str()), ("apps/app", v2.as_str()), "{flavor:?}");
            assert_eq!(p.context, "sentry/app", "{flavor:?}");
        }
        assert_eq!(posted[0].description, "deploying");
        assert!(
            posted[1].description.starts_with("deployed in ") && posted[1].description.ends_with(" s"),
            "{flavor:?}: {}",
            posted[1].description
        );
        if flavor == Flavor::Gitlab {
            assert_eq!(posted[1].git_ref.as_deref(), Some("main"), "GitLab gets the ref");
        }
        // The monitor's token went in the forge's credential header only, never in a URL.
        // (GitHub's listing is a GraphQL POST too: only the status POSTs count here.)
        let posts: Vec<_> =
            forge.requests().into_iter().filter(|q| q.method == "POST" && !q.url.ends_with("graphql")).collect();
        assert_eq!(posts.len(), 2, "{flavor:?}: {posts:?}");
        for q in &posts {
            assert!(q.url.contains("/statuses/") && !q.url.contains(TOKEN), "{}", q.url);
            let auth = q.headers.get("authorization").or_else(|| q.headers.get("private-token"));
            assert!(auth.is_some_and(|a| a.contains(TOKEN)), "{flavor:?}: {:?}", q.headers);
        }
        assert!(!r.all().contains(TOKEN), "token in the output");
    }
}

#[test]
fn pending_then_failure_names_the_command() {
    for flavor in [Flavor::Github, Flavor::Gitlab] {
        let (w, forge, app) = status_world(flavor);
        std::fs::write(w.ctrl().join("fail-app"), "").expect("ctrl");
        let v2 = app.commit("main", &[("v", "2")], "v2");
        let r = w.poll();
        assert_eq!(r.code, 1, "{flavor:?}: {}", r.all());
        let posted = forge.statuses();
        let expected = if flavor == Flavor::Gitlab { ["running", "failed"] } else { ["pending", "failure"] };
        assert_eq!(states(&posted), expected, "{flavor:?}: {posted:?}");
        assert_eq!(posted[1].sha, v2);
        // deploy.sh exits 3 as command 0.
        assert_eq!(posted[1].description, "command 0 failed (exit 3)", "{flavor:?}");
        // The retry of the next run posts again: a new pending (GitLab: running again), a new verdict.
        let r = w.poll();
        assert_eq!(r.code, 1, "{}", r.all());
        assert_eq!(states(&forge.statuses())[2..], expected, "{flavor:?}: {:?}", forge.statuses());
        assert_eq!(forge.statuses()[2].description, "deploying (attempt 2)");
    }
}

#[test]
fn a_refused_status_is_an_error_in_the_summary_not_a_failed_deployment() {
    let (w, forge, app) = status_world(Flavor::Github);
    forge.forbid_statuses();
    app.commit("main", &[("v", "2")], "v2");
    let r = w.sentry(&["poll", "--once", "--output", "json"]);
    assert_eq!(r.code, 0, "a status never changes the exit code: {}", r.all());
    let doc = r.json();
    assert_eq!(doc["deployments"][0]["status"], "succeeded", "{doc}");
    let errors: Vec<&str> = doc["errors"].as_array().expect("errors").iter().filter_map(|e| e.as_str()).collect();
    assert_eq!(errors.len(), 1, "the pending was refused; the verdict is not tried again: {errors:?}");
    assert!(errors[0].contains("commit status pending of app main") && errors[0].contains("403"), "{}", errors[0]);
    assert!(errors[0].contains("not accessible"), "the forge's reason is shown: {}", errors[0]);
    assert!(r.stderr.contains("WARN") && r.stderr.contains("commit status"), "logged as a warning: {}", r.stderr);
    assert!(forge.statuses().is_empty());
    let posts = forge.requests().iter().filter(|q| q.method == "POST" && !q.url.ends_with("graphql")).count();
    assert_eq!(posts, 1, "a 403 is not retried");
    // The deployment was recorded as usual.
    assert!(w.state()["repos"]["app"]["branches"]["main"]["deployed"].is_string());
    assert!(!r.all().contains(TOKEN));
}

#[test]
fn report_status_on_a_git_monitor_is_refused_by_validate() {
    let w = World::new();
    w.conf().repo(w.repo("app").report_status(true)).write(&w.sb);
    let r = w.sentry(&["--output", "json", "validate"]);
    assert_eq!(r.code, 2, "{}", r.all());
    let doc = r.json();
    assert_eq!(doc["valid"], false);
    let e = &doc["errors"][0];
    assert_eq!(e["path"], "repositories[0].deploy.report_status", "{doc}");
    assert!(e["line"].as_u64().is_some(), "{doc}");
    assert!(e["message"].as_str().is_some_and(|m| m.contains("repo_type is git")), "{doc}");
    // And `poll` refuses the same file before touching anything.
    let r = w.poll();
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(!w.sb.path().join("sentry-state.json").exists());
}

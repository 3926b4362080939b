//! Issue 22: tags and semver ranges, end to end on every forge of the fake and on real git.

use crate::support::fake_forge::{FakeForge, Flavor};
use crate::support::repos::{BareRepo, git};
use crate::support::world::{TOKEN, World};

/// An annotated tag (the kind `git tag -a` makes): listings must peel it to its commit.
fn tag(repo: &BareRepo, name: &str, sha: &str) {
    git(&repo.path, &["tag", "-f", "-a", "-m", &format!("release {name}"), name, sha]);
}

struct Tagged {
    w: World,
    app: BareRepo,
    _forge: Option<FakeForge>,
}

/// `app` watching `main` and tags `v*` (with `semver` when given), v1.0.0 already there and
/// recorded as the baseline by a first poll.
fn tagged(flavor: Option<Flavor>, semver: Option<&str>) -> Tagged {
    let w = World::new();
    let app = w.create("app");
    let first = app.commit("main", &[("v", "1")], "v1");
    tag(&app, "v1.0.0", &first);
    let forge = flavor.map(|_| {
        let f = FakeForge::start(&w.root);
        f.require_token(TOKEN);
        f
    });
    let mut r = w.repo("app").tags(["v.*"]);
    if let Some(range) = semver {
        r = r.semver(range);
    }
    let r = match (&forge, flavor) {
        (Some(f), Some(fl)) => r.monitor_url(f.repo_url("apps/app")).kind(fl.repo_type()),
        _ => r,
    };
    w.conf().repo(r).write(&w.sb);
    let run = w.poll();
    assert_eq!(run.code, 0, "baseline: {}", run.all());
    Tagged { w, app, _forge: forge }
}

impl Tagged {
    /// One `poll --once --output json`: (tag, branch, reason, status) of each deployment.
    fn poll(&self) -> (Vec<(String, String, String, String)>, serde_json::Value) {
        let r = self.w.sentry(&["poll", "--once", "--output", "json"]);
        assert_eq!(r.code, 0, "{}", r.all());
        let v = r.json();
        let rows = v["deployments"]
            .as_array()
            .expect("deployments")
            .iter()
            .map(|d| {
                let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
                (s("tag"), s("branch"), s("reason"), s("status"))
            })
            .collect();
        (rows, v)
    }

    /// The SENTRY_* lines the deploy script saw for its last tag deployment.
    fn tag_env(&self) -> String {
        std::fs::read_to_string(self.w.ctrl().join("env-app-")).unwrap_or_default()
    }
}

fn row(tag: &str, reason: &str) -> (String, String, String, String) {
    (tag.into(), String::new(), reason.into(), "succeeded".into())
}

fn story(flavor: Option<Flavor>) {
    let t = tagged(flavor, None);
    let what = format!("{flavor:?}");
    // A release built on a branch sentry does not watch: only its tag deploys.
    let rc = t.app.commit("release", &[("v", "2")], "v2");
    tag(&t.app, "v1.1.0", &rc);
    let (rows, json) = t.poll();
    assert_eq!(rows, [row("v1.1.0", "new_tag")], "{what}: {json}");
    assert_eq!(json["checked"][0]["tags"]["v1.1.0"], rc.as_str(), "{what}: {json}");
    assert_eq!(json["deployments"][0]["commit"], rc.as_str(), "{what}");
    let env = t.tag_env();
    for line in ["SENTRY_TAG=v1.1.0", "SENTRY_REF=refs/tags/v1.1.0", &format!("SENTRY_COMMIT={rc}")] {
        assert!(env.lines().any(|l| l == line), "{what}: {line} in\n{env}");
    }
    assert!(env.lines().any(|l| l == "SENTRY_BRANCH="), "{what}: {env}");
    // Nothing moved: nothing deploys.
    assert_eq!(t.poll().0, [], "{what}");
    // A moved tag redeploys.
    let fix = t.app.commit("release", &[("v", "2.1")], "fix");
    tag(&t.app, "v1.1.0", &fix);
    assert_eq!(t.poll().0, [row("v1.1.0", "changed")], "{what}");
    assert!(t.tag_env().lines().any(|l| l == format!("SENTRY_COMMIT={fix}")), "{what}");
    let state = t.w.state();
    assert_eq!(state["repos"]["app"]["tags"]["v1.1.0"]["deployed"], fix.as_str(), "{what}: {state}");
    let status = t.w.status_json();
    assert_eq!(status["repositories"]["app"]["tags"]["v1.1.0"]["deployed"], fix.as_str(), "{what}: {status}");
    let table = t.w.sentry(&["status"]);
    assert!(table.stdout.contains("tag v1.1.0"), "{what}: {}", table.stdout);
    // Branch deployments say tag null, and SENTRY_TAG is empty for them.
    t.app.commit("main", &[("v", "3")], "main moves");
    let (_, json) = t.poll();
    assert_eq!(json["deployments"][0]["branch"], "main", "{what}: {json}");
    assert!(json["deployments"][0]["tag"].is_null(), "{what}: {json}");
    let branch_env = std::fs::read_to_string(t.w.ctrl().join("env-app-main")).unwrap_or_default();
    assert!(branch_env.lines().any(|l| l == "SENTRY_TAG="), "{what}: {branch_env}");
    assert!(branch_env.lines().any(|l| l == "SENTRY_REF=refs/heads/main"), "{what}: {branch_env}");

    // `deploy --tag`: a monitored tag by hand, at its commit.
    let r = t.w.sentry(&["deploy", "--repo", "app", "--tag", "v1.0.0", "--output", "json"]);
    assert_eq!(r.code, 0, "{what}: {}", r.all());
    let d = &r.json()["deployments"][0];
    assert_eq!(
        (d["tag"].as_str(), d["reason"].as_str(), d["branch"].as_str()),
        (Some("v1.0.0"), Some("manual"), None),
        "a tag deployment has branch null, as in history"
    );
    assert!(t.tag_env().lines().any(|l| l == "SENTRY_TAG=v1.0.0"), "{what}");
    let r = t.w.sentry(&["deploy", "--repo", "app", "--tag", "v9.9.9"]);
    assert_eq!(r.code, 2, "{what}: {}", r.all());
    assert!(r.stderr.contains("does not exist"), "{what}: {}", r.all());
    let r = t.w.sentry(&["deploy", "--repo", "app", "--tag", "release-1"]);
    assert_eq!(r.code, 2, "{what}: {}", r.all());
    assert!(r.stderr.contains("not monitored"), "{what}: {}", r.all());
}

#[test]
fn tag_pushes_deploy_with_sentry_tag_on_github() {
    story(Some(Flavor::Github));
}

#[test]
fn tag_pushes_deploy_with_sentry_tag_on_gitlab() {
    story(Some(Flavor::Gitlab));
}

#[test]
fn tag_pushes_deploy_with_sentry_tag_on_gitea() {
    story(Some(Flavor::Gitea));
}

#[test]
fn tag_pushes_deploy_with_sentry_tag_on_plain_git() {
    story(None);
}

fn semver_story(flavor: Option<Flavor>) {
    let t = tagged(flavor, Some(">=1.0.0, <2.0.0"));
    let what = format!("{flavor:?}");
    let mut shas = Vec::new();
    for (i, name) in ["v1.2.0", "v1.10.0", "v2.0.0", "v1.11.0-rc.1", "v1.9.9"].iter().enumerate() {
        let sha = t.app.commit("release", &[("v", &i.to_string())], name);
        tag(&t.app, name, &sha);
        shas.push(sha);
    }
    let (rows, json) = t.poll();
    assert_eq!(rows, [row("v1.10.0", "new_tag")], "{what}: {json}");
    assert_eq!(json["deployments"][0]["commit"], shas[1].as_str(), "{what}");
    // Deployed once.
    assert_eq!(t.poll().0, [], "{what}");
    // A lower tag in range, or one out of range, changes nothing; a higher one deploys.
    let low = t.app.commit("release", &[("v", "low")], "backport");
    tag(&t.app, "v1.3.1", &low);
    tag(&t.app, "v3.0.0", &low);
    assert_eq!(t.poll().0, [], "{what}");
    let high = t.app.commit("release", &[("v", "high")], "next");
    tag(&t.app, "v1.12.0", &high);
    assert_eq!(t.poll().0, [row("v1.12.0", "new_tag")], "{what}");
}

#[test]
fn semver_picks_the_highest_tag_in_range_on_github() {
    semver_story(Some(Flavor::Github));
}

#[test]
fn semver_picks_the_highest_tag_in_range_on_gitlab() {
    semver_story(Some(Flavor::Gitlab));
}

#[test]
fn semver_picks_the_highest_tag_in_range_on_gitea() {
    semver_story(Some(Flavor::Gitea));
}

#[test]
fn semver_picks_the_highest_tag_in_range_on_plain_git() {
    semver_story(None);
}

/// SPEC §1: a `tags` pattern that matches no tag of a reachable repository fails
/// `validate --connectivity` (exit 3), naming the pattern and its path.
#[test]
fn a_tag_pattern_that_matches_nothing_fails_connectivity() {
    let t = tagged(None, None);
    t.w.conf().repo(t.w.repo("app").tags(["v.*", "release-.*"])).write(&t.w.sb);
    let r = t.w.sentry(&["validate", "--connectivity"]);
    assert_eq!(r.code, 3, "{}", r.all());
    let fail: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fail.len(), 1, "{}", r.stdout);
    assert!(fail[0].contains("\"release-.*\"") && fail[0].contains("matches no tag"), "{}", fail[0]);
    let r = t.w.sentry(&["validate", "--connectivity", "--output", "json"]);
    assert_eq!(r.json()["errors"][0]["path"], "repositories[0].monitor.tags[1]", "{}", r.stdout);
    t.w.conf().repo(t.w.repo("app").tags(["v.*"])).write(&t.w.sb);
    let r = t.w.sentry(&["validate", "--connectivity"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("1 tag match"), "{}", r.stdout);
}

//! Issue 22: path filters for monorepos and skip markers, end to end on every forge of the
//! fake (GitHub, GitLab, Gitea compare APIs over real repositories) and on real git (a
//! blob-less fetch through `git http-backend`).

use crate::support::config::Scalar;
use crate::support::fake_forge::{FakeForge, Flavor};
use crate::support::repos::BareRepo;
use crate::support::world::{TOKEN, World};

/// A world watching one monorepo as two services, `svc-a` and `svc-b`, each deploying only when
/// its own directory changes, Markdown never counting. The baseline is recorded.
struct Mono {
    w: World,
    mono: BareRepo,
    _forge: Option<FakeForge>,
}

fn mono(flavor: Option<Flavor>) -> Mono {
    let w = World::new();
    let mono = w.create("mono");
    mono.commit("main", &[("svc-a/main.go", "1"), ("svc-b/main.go", "1"), ("README.md", "hi")], "init");
    let forge = flavor.map(|_| {
        let f = FakeForge::start(&w.root);
        f.require_token(TOKEN);
        f
    });
    let service = |name: &str, dir: &str| {
        let r = w.repo(name).paths([format!("{dir}/**")]).ignore_paths(["**/*.md"]);
        match (&forge, flavor) {
            (Some(f), Some(fl)) => r.monitor_url(f.repo_url("apps/mono")).kind(fl.repo_type()),
            _ => r.monitor_url(w.server.url("apps/mono.git")),
        }
    };
    w.conf().repo(service("svc-a", "svc-a")).repo(service("svc-b", "svc-b")).write(&w.sb);
    let r = w.poll();
    assert_eq!(r.code, 0, "baseline: {}", r.all());
    Mono { w, mono, _forge: forge }
}

impl Mono {
    /// One `poll --once --output json`: (repo, status, reason) of each deployment entry, sorted.
    fn poll(&self) -> Vec<(String, String, String)> {
        let r = self.w.sentry(&["poll", "--once", "--output", "json"]);
        assert_eq!(r.code, 0, "{}", r.all());
        let mut out: Vec<(String, String, String)> = r.json()["deployments"]
            .as_array()
            .expect("deployments")
            .iter()
            .map(|d| {
                let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
                (s("repo"), s("status"), s("reason"))
            })
            .collect();
        out.sort();
        out
    }
}

fn entry(repo: &str, status: &str, reason: &str) -> (String, String, String) {
    (repo.into(), status.into(), reason.into())
}

fn story(flavor: Option<Flavor>) {
    let m = mono(flavor);
    let what = format!("{flavor:?}");

    // Only the service whose files changed deploys; the other's change is filtered.
    m.mono.commit("main", &[("svc-a/main.go", "2")], "a: faster");
    assert_eq!(m.poll(), [entry("svc-a", "succeeded", "changed"), entry("svc-b", "filtered", "paths")], "{what}");
    assert_eq!(m.w.deployed().len(), 1, "{what}");
    assert!(m.w.deployed()[0].starts_with("svc-a main "), "{what}: {:?}", m.w.deployed());

    // Markdown only, even inside a service: nothing deploys.
    m.mono.commit("main", &[("svc-b/README.md", "docs"), ("docs/guide.md", "more")], "docs");
    assert_eq!(m.poll(), [entry("svc-a", "filtered", "paths"), entry("svc-b", "filtered", "paths")], "{what}");
    // Filtered heads are not changes on the next pass.
    assert_eq!(m.poll(), [], "{what}");

    // A skip marker in the head commit's message filters, whatever changed (and says so first).
    m.mono.commit("main", &[("svc-b/main.go", "2")], "b: tweak\n\n[skip deploy]");
    assert_eq!(
        m.poll(),
        [entry("svc-a", "filtered", "skip_marker"), entry("svc-b", "filtered", "skip_marker")],
        "{what}"
    );

    // The next change compares from the filtered head: svc-b deploys; its previous commit is
    // still the last one deployed (the baseline).
    let b3 = m.mono.commit("main", &[("svc-b/lib/x.go", "3")], "b: x");
    assert_eq!(m.poll(), [entry("svc-a", "filtered", "paths"), entry("svc-b", "succeeded", "changed")], "{what}");
    assert_eq!(m.w.deployed().len(), 2, "{what}");
    assert!(m.w.deployed()[1].starts_with(&format!("svc-b main {b3} ")), "{what}: {:?}", m.w.deployed());

    // A force-push onto no common history cannot be examined: both deploy, though only
    // Markdown differs from the empty tree.
    let orphan = m.mono.commit("orphan", &[("NOTES.md", "new start")], "rewrite");
    m.mono.set_branch("main", &orphan);
    assert_eq!(m.poll(), [entry("svc-a", "succeeded", "changed"), entry("svc-b", "succeeded", "changed")], "{what}");

    // What the state, status and the metrics keep.
    let state = m.w.state();
    assert_eq!(state["repos"]["svc-a"]["filtered"]["paths"], 2, "{what}: {state}");
    assert_eq!(state["repos"]["svc-a"]["filtered"]["skip_marker"], 1, "{what}: {state}");
    assert_eq!(state["repos"]["svc-b"]["filtered"]["skip_marker"], 1, "{what}: {state}");
    assert_eq!(state["repos"]["svc-b"]["filtered"]["paths"], 2, "{what}: {state}");
    let status = m.w.status_json();
    assert_eq!(status["repositories"]["svc-b"]["filtered"]["skip_marker"], 1, "{what}: {status}");
}

#[test]
fn monorepo_services_deploy_only_their_own_changes_on_github() {
    story(Some(Flavor::Github));
}

#[test]
fn monorepo_services_deploy_only_their_own_changes_on_gitlab() {
    story(Some(Flavor::Gitlab));
}

#[test]
fn monorepo_services_deploy_only_their_own_changes_on_gitea() {
    story(Some(Flavor::Gitea));
}

#[test]
fn monorepo_services_deploy_only_their_own_changes_on_plain_git() {
    story(None);
}

/// Plain Git compares in a private directory under `tmp_dir` (as a deployment does), removed
/// afterwards.
#[test]
fn a_plain_git_comparison_leaves_nothing_in_tmp_dir() {
    let m = mono(None);
    let tmp = m.w.sb.path().join("tmp");
    m.mono.commit("main", &[("svc-a/main.go", "2")], "a: faster");
    assert_eq!(m.poll(), [entry("svc-a", "succeeded", "changed"), entry("svc-b", "filtered", "paths")]);
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .expect("tmp_dir exists")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("sentry-compare-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// GitHub lists at most 300 files of a comparison and says nothing of the rest: a change of
/// 301 files, none watched, cannot be told, so it deploys.
#[test]
fn a_github_comparison_of_more_than_300_files_deploys() {
    let m = mono(Some(Flavor::Github));
    let names: Vec<String> = (0..301).map(|i| format!("other/f{i:03}.txt")).collect();
    let files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x")).collect();
    m.mono.commit("main", &files, "many files");
    assert_eq!(m.poll(), [entry("svc-a", "succeeded", "changed"), entry("svc-b", "succeeded", "changed")]);
    // 300 files (GitHub's whole answer), none watched: filtered.
    let names: Vec<String> = (0..300).map(|i| format!("other/g{i:03}.txt")).collect();
    let files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x")).collect();
    m.mono.commit("main", &files, "exactly 300");
    // Exactly 300 may be a cut list too: deployed.
    assert_eq!(m.poll(), [entry("svc-a", "succeeded", "changed"), entry("svc-b", "succeeded", "changed")]);
    m.mono.commit("main", &[("other/one.txt", "x")], "one");
    assert_eq!(m.poll(), [entry("svc-a", "filtered", "paths"), entry("svc-b", "filtered", "paths")]);
}

/// The human table says filtered and why; `--quiet` stays silent about filtered changes.
#[test]
fn filtered_changes_show_in_the_table_not_in_quiet_mode_and_in_metrics() {
    let m = mono(None);
    m.mono.commit("main", &[("docs/x.md", "1")], "docs");
    let r = m.w.sentry(&["--quiet", "poll", "--once"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.stdout, "", "{}", r.all());
    m.mono.commit("main", &[("svc-a/y.md", "1")], "more docs");
    let r = m.w.sentry(&["poll", "--once"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("filtered") && r.stdout.contains("paths"), "{}", r.stdout);
    assert!(m.w.deployed().is_empty());
}

/// SPEC §2: a head commit whose message holds a skip marker is recorded, not deployed, on a
/// repository without path filters too (on GitHub and on plain git over http); `skip_markers:
/// []` turns that off.
fn markers_without_path_filters(flavor: Option<Flavor>) {
    let w = World::new();
    let app = w.create("app");
    app.commit("main", &[("v", "1")], "init");
    let forge = flavor.map(|_| {
        let f = FakeForge::start(&w.root);
        f.require_token(TOKEN);
        f
    });
    let repo = match (&forge, flavor) {
        (Some(f), Some(fl)) => w.repo("app").monitor_url(f.repo_url("apps/app")).kind(fl.repo_type()),
        _ => w.repo("app").monitor_url(w.server.url("apps/app.git")),
    };
    w.conf().repo(repo.clone()).write(&w.sb);
    assert_eq!(w.poll().code, 0, "baseline");
    let what = format!("{flavor:?}");
    let poll = || {
        let r = w.sentry(&["poll", "--once", "--output", "json"]);
        assert_eq!(r.code, 0, "{what}: {}", r.all());
        let d = r.json()["deployments"][0].clone();
        (d["status"].as_str().unwrap_or_default().to_string(), d["reason"].as_str().unwrap_or_default().to_string())
    };
    app.commit("main", &[("v", "2")], "docs only\n\n[skip deploy]");
    assert_eq!(poll(), ("filtered".to_string(), "skip_marker".to_string()), "{what}");
    assert!(w.deployed().is_empty(), "{what}: {:?}", w.deployed());
    app.commit("main", &[("v", "3")], "a real change");
    assert_eq!(poll(), ("succeeded".to_string(), "changed".to_string()), "{what}");
    // Markers off: the same kind of commit deploys.
    w.conf().global("skip_markers", Scalar::yaml("[]")).repo(repo).write(&w.sb);
    app.commit("main", &[("v", "4")], "again\n\n[skip deploy]");
    assert_eq!(poll(), ("succeeded".to_string(), "changed".to_string()), "{what}: markers off");
}

#[test]
fn skip_markers_apply_without_path_filters_on_github() {
    markers_without_path_filters(Some(Flavor::Github));
}

#[test]
fn skip_markers_apply_without_path_filters_on_plain_git() {
    markers_without_path_filters(None);
}

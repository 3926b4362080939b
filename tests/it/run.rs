//! End to end: the real binary polling real repositories served by `git http-backend` on loopback.

use crate::support::config::Group;
use crate::support::repos::BareRepo;
use crate::support::world::{TOKEN, USER, World, line};
use std::process::Command;

#[test]
fn baseline_then_push_deploys_exactly_that_then_nothing() {
    let w = World::new();
    let app = w.create("app");
    let v1 = app.commit("main", &[("v", "1")], "v1");
    w.conf().repo(w.repo("app")).write(&w.sb);

    let r = w.poll();
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(w.deployed().is_empty(), "first sight records a baseline only");
    assert_eq!(w.state()["repos"]["app"]["branches"]["main"]["deployed"], v1.as_str());

    let v2 = app.commit("main", &[("v", "2")], "v2");
    let r = w.sentry(&["poll", "--once", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(w.deployed(), [line("app", "main", &v2, Some(&v1), None)]);
    let doc = r.json();
    assert_eq!(doc["deployments"][0]["status"], "succeeded");
    assert_eq!(doc["deployments"][0]["commit"], v2.as_str());
    assert_eq!(doc["deployments"][0]["previous_commit"], v1.as_str());
    assert_eq!(doc["checked"][0]["branches"]["main"], v2.as_str());
    assert_eq!(doc["checked"][0]["tags"], serde_json::json!({}), "the key is always there (SPEC §5)");
    assert!(r.stderr.contains("change detected"), "{}", r.stderr);

    // The full SENTRY_* context of the job.
    let env = std::fs::read_to_string(w.ctrl().join("env-app-main")).expect("env file");
    for expected in [
        "SENTRY_REPO=app".to_string(),
        "SENTRY_BRANCH=main".into(),
        format!("SENTRY_COMMIT={v2}"),
        format!("SENTRY_PREVIOUS_COMMIT={v1}"),
        "SENTRY_GROUP=".into(),
        "SENTRY_PROJECT=app".into(),
        format!("SENTRY_REPO_URL={}", w.server.url("apps/app.git")),
    ] {
        assert!(env.lines().any(|l| l == expected), "missing {expected} in\n{env}");
    }
    for var in ["SENTRY_QA_DIR=", "SENTRY_RUN_ID=", "TMPDIR="] {
        assert!(env.lines().any(|l| l.starts_with(var) && l.len() > var.len()), "missing {var} in\n{env}");
    }
    assert!(!env.contains(TOKEN));

    let r = w.poll();
    assert_eq!(r.code, 0);
    assert_eq!(w.deployed().len(), 1, "an unchanged repository deploys nothing");
}

#[test]
fn branches_appear_change_vanish_and_force_push() {
    let w = World::new();
    let app = w.create("app");
    let m1 = app.commit("main", &[("v", "1")], "m1");
    let d1 = app.commit("dev", &[("d", "1")], "d1");
    app.commit("old-release/1", &[("x", "1")], "x");
    w.conf().repo(w.repo("app").branches(["main", "dev", "release/.*"])).write(&w.sb);
    assert_eq!(w.poll().code, 0);

    // Two branches changed in one run: two jobs.
    let m2 = app.commit("main", &[("v", "2")], "m2");
    let d2 = app.commit("dev", &[("d", "2")], "d2");
    assert_eq!(w.poll().code, 0);
    let mut got = w.deployed();
    got.sort();
    assert_eq!(got, [line("app", "dev", &d2, Some(&d1), None), line("app", "main", &m2, Some(&m1), None)]);

    // A new release branch matches release/.*; old-release/1 never does.
    let r2 = app.commit("release/2.0", &[("r", "2")], "r2");
    assert_eq!(w.poll().code, 0);
    assert_eq!(w.deployed().last(), Some(&line("app", "release/2.0", &r2, None, None)));
    assert_eq!(w.deployed().len(), 3);

    // A deleted branch is marked gone (kept 30 days, SPEC §3) and the run still succeeds.
    app.delete_branch("dev");
    let r = w.poll();
    assert_eq!(r.code, 0, "{}", r.all());
    let status = w.status_json();
    assert!(status["repositories"]["app"]["branches"]["dev"]["gone_since"].is_string(), "{status}");
    assert!(status["repositories"]["app"]["branches"]["main"]["gone_since"].is_null(), "{status}");
    // It comes back at the head that was deployed: not a change.
    app.set_branch("dev", &d2);
    let before = w.deployed().len();
    assert_eq!(w.poll().code, 0);
    assert_eq!(w.deployed().len(), before, "no redeploy of the unchanged head");

    // A force-push back to an older commit is deployed like any change.
    app.set_branch("main", &m1);
    assert_eq!(w.poll().code, 0);
    assert_eq!(w.deployed().last(), Some(&line("app", "main", &m1, Some(&m2), None)));
}

#[test]
fn failures_are_retried_then_parked_and_cleared_by_hand() {
    let (w, app) = World::with_app();

    std::fs::write(w.ctrl().join("fail-app"), "").expect("ctrl");
    let v2 = app.commit("main", &[("v", "2")], "v2");
    let r = w.sentry(&["poll", "--once", "--output", "json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let d = &r.json()["deployments"][0];
    assert_eq!(d["status"], "failed");
    assert_eq!(d["failed_command"]["index"], 0);
    assert_eq!(d["failed_command"]["command"], "./deploy.sh");
    assert_eq!(d["failed_command"]["exit_code"], 3);
    assert!(d["output_tail"].as_str().is_some_and(|t| t.contains("failing on purpose")), "{d}");
    let failure = &w.state()["repos"]["app"]["branches"]["main"]["failure"];
    assert_eq!(failure["commit"], v2.as_str());
    assert_eq!(failure["attempts"], 1);

    // Retried on the next run (attempt 2 = max_attempts), then parked.
    let r = w.sentry(&["poll", "--once", "--output", "json"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.json()["deployments"][0]["attempt"], 2);
    // The run that parks it lists it already (SPEC §5), once.
    let parking = r.json()["parked"].as_array().cloned().unwrap_or_default();
    assert_eq!(parking.len(), 1, "{}", r.stdout);
    assert_eq!((parking[0]["branch"].as_str(), parking[0]["attempts"].as_u64()), (Some("main"), Some(2)));
    assert!(parking[0]["tag"].is_null() && parking[0]["error"].as_str().is_some_and(|e| e.contains("exited 3")));
    let r = w.sentry(&["poll", "--once", "--output", "json"]);
    assert_eq!(r.code, 0, "parked: nothing attempted, {}", r.all());
    assert_eq!(r.json()["deployments"].as_array().map(Vec::len), Some(0));
    assert!(r.stderr.contains("parked"), "{}", r.stderr);
    // Parked deployments stay in the open: in the JSON summary and the human one, every run.
    let parked = &r.json()["parked"][0];
    assert_eq!((parked["repo"].as_str(), parked["branch"].as_str()), (Some("app"), Some("main")), "{}", r.stdout);
    assert_eq!((parked["commit"].as_str(), parked["attempts"].as_u64()), (Some(v2.as_str()), Some(2)));
    assert!(parked["error"].as_str().is_some_and(|e| e.contains("exited 3")), "{parked}");
    let human = w.sentry(&["poll", "--once"]);
    assert!(human.stdout.contains("parked: app/main"), "{}", human.stdout);
    let quiet = w.sentry(&["poll", "--once", "--quiet"]);
    assert!(quiet.stdout.contains("parked"), "--quiet still reports a parked deployment: {}", quiet.stdout);
    let status = w.sentry(&["status"]);
    assert!(status.stdout.to_lowercase().contains("parked"), "{}", status.stdout);

    // `deploy --repo` by hand clears it once the cause is fixed.
    std::fs::remove_file(w.ctrl().join("fail-app")).expect("ctrl");
    let r = w.sentry(&["deploy", "--repo", "app"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let bs = &w.state()["repos"]["app"]["branches"]["main"];
    assert_eq!(bs["deployed"], v2.as_str());
    assert!(bs.get("failure").is_none_or(|f| f.is_null()), "{bs}");

    // A new push deploys normally again.
    let v3 = app.commit("main", &[("v", "3")], "v3");
    assert_eq!(w.poll().code, 0);
    assert_eq!(w.deployed().last(), Some(&line("app", "main", &v3, Some(&v2), None)));
}

#[test]
fn new_push_after_parking_deploys_again() {
    let (w, app) = World::with_app();
    std::fs::write(w.ctrl().join("fail-app"), "").expect("ctrl");
    app.commit("main", &[("v", "2")], "v2");
    assert_eq!(w.poll().code, 1);
    assert_eq!(w.poll().code, 1);
    assert_eq!(w.poll().code, 0, "parked");
    std::fs::remove_file(w.ctrl().join("fail-app")).expect("ctrl");
    let v3 = app.commit("main", &[("v", "3")], "v3");
    assert_eq!(w.poll().code, 0);
    assert_eq!(w.deployed().len(), 1);
    assert!(w.deployed()[0].contains(&v3));
}

#[test]
fn unreachable_repositories_exit_3_and_others_deploy() {
    let w = World::new();
    let good = w.create("good");
    let bad_auth = w.create("locked");
    let g1 = good.commit("main", &[("v", "1")], "v1");
    bad_auth.commit("main", &[("v", "1")], "v1");
    // locked gets a wrong token.
    let locked = w.repo("locked").monitor_auth(Some(USER), "wrong-token-123");
    // "missing" is never created: the server answers 404.
    w.conf().repo(w.repo("good")).repo(w.repo("missing")).repo(locked).write(&w.sb);

    let r = w.sentry(&["poll", "--once", "--output", "json"]);
    assert_eq!(r.code, 3, "{}", r.all());
    let doc = r.json();
    let errors: Vec<_> = doc["checked"]
        .as_array()
        .expect("checked")
        .iter()
        .filter(|c| !c["error"].is_null())
        .map(|c| c["repo"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(errors, ["missing", "locked"]);
    assert!(!r.all().contains("wrong-token-123"));

    let v2 = good.commit("main", &[("v", "2")], "v2");
    let r = w.poll();
    assert_eq!(r.code, 3);
    assert_eq!(w.deployed(), [line("good", "main", &v2, Some(&g1), None)]);
}

#[test]
fn dry_run_writes_nothing_and_prints_the_plan() {
    let (w, app) = World::with_app();
    let v2 = app.commit("main", &[("v", "2")], "v2");
    let before = std::fs::read(w.sb.path().join("sentry-state.json")).expect("state");
    let tmp_entries = || std::fs::read_dir(w.sb.path().join("tmp")).map(|d| d.count()).unwrap_or(0);
    let tmp_before = tmp_entries();

    let r = w.sentry(&["poll", "--once", "--dry-run", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let doc = r.json();
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["deployments"][0]["commit"], v2.as_str());
    assert_eq!(doc["deployments"][0]["reason"], "changed");
    assert_eq!(doc["deployments"][0]["status"], "skipped");
    // One word in both outputs (issue 20): the table says what the JSON says.
    let r = w.sentry(&["poll", "--dry-run"]);
    assert!(r.stdout.contains("[dry run]") && r.stdout.contains("skipped"), "{}", r.stdout);
    let r = w.sentry(&["deploy", "--repo", "app", "--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.all());

    assert_eq!(std::fs::read(w.sb.path().join("sentry-state.json")).expect("state"), before);
    assert_eq!(tmp_entries(), tmp_before, "no job directory was created");
    assert!(w.deployed().is_empty());
}

#[test]
fn json_summary_matches_the_schema() {
    let w = World::new();
    let app = w.create("app");
    app.commit("main", &[("v", "1")], "v1");
    w.conf().global("on_first_seen", "deploy").repo(w.repo("app")).write(&w.sb);
    let r = w.sentry(&["poll", "--once", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let doc = r.json();
    assert!(doc["run_id"].is_string());
    assert!(doc["started_at"].as_str().is_some_and(|s| s.ends_with('Z') && s.len() == 20));
    assert!(doc["duration_ms"].is_u64());
    assert_eq!(doc["dry_run"], false);
    assert!(doc["errors"].as_array().is_some_and(Vec::is_empty));
    let d = &doc["deployments"][0];
    assert_eq!(d["repo"], "app");
    assert!(d["group"].is_null());
    assert_eq!(d["branch"], "main");
    assert!(d["previous_commit"].is_null());
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["attempt"], 1);
    assert_eq!(d["reason"], "first_seen");
    assert!(d["duration_ms"].is_u64());
    assert!(d["failed_command"].is_null());
    assert!(d["output_tail"].as_str().is_some_and(|t| t.contains("deployed app main")));
    // stdout holds only the JSON document; the logs went to stderr.
    assert!(r.stdout.trim_start().starts_with('{') && r.stdout.trim_end().ends_with('}'));
    assert!(r.stderr.contains("INFO"));
}

#[test]
fn unknown_names_exit_2_listing_known_ones() {
    let w = World::new();
    w.create("app").commit("main", &[("v", "1")], "v1");
    w.conf().group("g", Group::sequential()).repo(w.repo("app")).write(&w.sb);
    let r = w.sentry(&["deploy", "--repo", "nope"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nope") && r.stderr.contains("app"), "{}", r.stderr);
    let r = w.sentry(&["deploy", "--group", "nope"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("g"), "{}", r.stderr);
    assert_eq!(w.sentry(&["poll", "--once", "--repo", "nope"]).code, 2);
    assert_eq!(w.sentry(&["deploy", "--repo", "app", "--commit", "abc"]).code, 2);
    assert_eq!(w.sentry(&["deploy", "--repo", "app", "--branch", "feature"]).code, 2);
}

#[test]
fn repo_selection_leaves_other_state_untouched() {
    let w = World::new();
    let a = w.create("a");
    let b = w.create("b");
    a.commit("main", &[("v", "1")], "v1");
    b.commit("main", &[("v", "1")], "v1");
    w.conf().repo(w.repo("a")).repo(w.repo("b")).write(&w.sb);
    assert_eq!(w.poll().code, 0);
    let b_before = w.state()["repos"]["b"].clone();
    let a2 = a.commit("main", &[("v", "2")], "v2");
    b.commit("main", &[("v", "2")], "v2");
    let r = w.sentry(&["poll", "--once", "--repo", "a"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(w.deployed().len(), 1);
    assert!(w.deployed()[0].starts_with(&format!("a main {a2}")));
    assert_eq!(w.state()["repos"]["b"], b_before);
}

#[test]
fn deploy_by_hand_with_branch_and_commit() {
    let w = World::new();
    let app = w.create("app");
    let m1 = app.commit("main", &[("v", "1")], "v1");
    app.commit("release/1", &[("r", "1")], "r1");
    w.conf().repo(w.repo("app").branches(["release/.*", "main"])).write(&w.sb);
    // Default branch: the first configured pattern with an existing branch.
    let r = w.sentry(&["deploy", "--repo", "app", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.json()["deployments"][0]["branch"], "release/1");
    let r = w.sentry(&["deploy", "--repo", "app", "--branch", "main", "--commit", &m1]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(w.state()["repos"]["app"]["branches"]["main"]["deployed"], m1.as_str());
    assert_eq!(w.deployed().len(), 2);
}

fn group_world(group: &str, spec: Group, members: &[&str]) -> (World, Vec<BareRepo>) {
    let w = World::new();
    let repos: Vec<BareRepo> = members
        .iter()
        .map(|name| {
            let r = w.create(name);
            r.commit("main", &[("v", "1")], "v1");
            r
        })
        .collect();
    w.conf().group(group, spec).repos(members.iter().map(|name| w.repo(name).group(group))).write(&w.sb);
    assert_eq!(w.poll().code, 0);
    (w, repos)
}

#[test]
fn sequential_group_stops_after_failure_without_continue_on_error() {
    let (w, repos) = group_world("seq", Group::sequential().continue_on_error(false), &["s1", "s2", "s3"]);
    for r in &repos {
        r.commit("main", &[("v", "2")], "v2");
    }
    std::fs::write(w.ctrl().join("fail-s2"), "").expect("ctrl");
    let r = w.sentry(&["poll", "--once", "--output", "json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let statuses: Vec<(String, String)> = r.json()["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .map(|d| (d["repo"].as_str().unwrap_or("").into(), d["status"].as_str().unwrap_or("").into()))
        .collect();
    assert_eq!(
        statuses,
        [("s1".into(), "succeeded".into()), ("s2".into(), "failed".into()), ("s3".into(), "skipped".into())]
    );
    // The skipped member is not lost: it deploys on the next run.
    std::fs::remove_file(w.ctrl().join("fail-s2")).expect("ctrl");
    assert_eq!(w.poll().code, 0);
    let names: Vec<_> = w.deployed().iter().map(|l| l.split(' ').next().unwrap_or("").to_string()).collect();
    assert_eq!(names, ["s1", "s2", "s3"]);
}

#[test]
fn trigger_all_deploys_every_member_once() {
    let (w, repos) = group_world("all", Group::parallel().max_parallel(2).trigger("all"), &["t1", "t2", "t3"]);
    repos[1].commit("main", &[("v", "2")], "v2");
    let r = w.sentry(&["poll", "--once", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let mut names: Vec<_> = w.deployed().iter().map(|l| l.split(' ').next().unwrap_or("").to_string()).collect();
    names.sort();
    assert_eq!(names, ["t1", "t2", "t3"]);
    assert!(w.deployed().iter().all(|l| l.ends_with(" all")), "SENTRY_GROUP is set: {:?}", w.deployed());
}

#[test]
fn second_poll_exits_0_while_the_first_holds_the_lock() {
    let (w, app) = World::with_app();
    app.commit("main", &[("v", "2")], "v2");
    std::fs::write(w.ctrl().join("sleep"), "3").expect("ctrl");
    let mut first = w.sb.sentry();
    first.args(["poll", "--once"]).env("E2E_TOKEN", TOKEN);
    let child = first.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().expect("spawn");
    // Wait until the first run's commands run (not merely its job directory, nor the private
    // directory of the comparison before it), then poll again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !w.ctrl().join("running-app").exists() {
        assert!(std::time::Instant::now() < deadline, "first run never started deploying");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let state_before = std::fs::read(w.sb.path().join("sentry-state.json")).expect("state");
    let second = w.poll();
    assert_eq!(second.code, 0, "{}", second.all());
    assert!(second.stderr.contains("another run"), "{}", second.stderr);
    assert_eq!(second.stdout, "", "nothing for cron to mail");
    // A JSON consumer still gets its one summary object, saying why nothing happened.
    let json = w.sentry(&["poll", "--once", "--output", "json"]);
    assert_eq!(json.code, 0, "{}", json.all());
    let doc = json.json();
    assert!(doc["skipped"].as_str().is_some_and(|s| s.contains("another run holds the lock")), "{doc}");
    assert_eq!(
        (doc["checked"].as_array().map(Vec::len), doc["deployments"].as_array().map(Vec::len)),
        (Some(0), Some(0))
    );
    assert_eq!(std::fs::read(w.sb.path().join("sentry-state.json")).expect("state"), state_before);
    let out = child.wait_with_output().expect("first");
    assert!(out.status.success());
    assert_eq!(w.deployed().len(), 1, "deployed exactly once");
}

#[test]
fn poll_loop_stops_cleanly_on_sigterm() {
    let w = World::new();
    let app = w.create("app");
    app.commit("main", &[("v", "1")], "v1");
    w.conf().repo(w.repo("app")).write(&w.sb);
    let mut cmd = w.sb.sentry();
    cmd.args(["poll"]).env("E2E_TOKEN", TOKEN).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn");
    let state = w.sb.path().join("sentry-state.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !state.exists() {
        assert!(std::time::Instant::now() < deadline, "first pass never saved state");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop requested"));
    assert!(w.state()["repos"]["app"]["branches"]["main"]["deployed"].is_string());
}

/// A strict reader of the Prometheus text format: every sample's family has HELP and TYPE first,
/// names and label names are valid, label values are properly escaped. Returns series -> value.
fn parse_prometheus(text: &str) -> std::collections::BTreeMap<String, f64> {
    let name_ok = |n: &str| {
        let mut c = n.chars();
        c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
    };
    let mut helped = std::collections::BTreeSet::new();
    let mut typed = std::collections::BTreeMap::new();
    let mut series = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            assert!(name_ok(name), "bad HELP name in {line:?}");
            assert!(helped.insert(name.to_string()), "HELP twice for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "bad TYPE {line:?}");
            assert!(typed.insert(name.to_string(), kind.to_string()).is_none(), "TYPE twice for {name}");
            continue;
        }
        assert!(!line.starts_with('#') && !line.trim().is_empty(), "unexpected line {line:?}");
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = key.split('{').next().unwrap_or("");
        assert!(name_ok(name), "bad metric name in {line:?}");
        assert!(helped.contains(name) && typed.contains_key(name), "{name} sampled before HELP/TYPE");
        if typed[name] == "counter" {
            assert!(name.ends_with("_total"), "counter {name} must end in _total");
        }
        if let Some(labels) = key.strip_prefix(name).and_then(|l| l.strip_prefix('{')).and_then(|l| l.strip_suffix('}'))
        {
            // label="value" pairs, values with only \\ \" \n escapes.
            let mut rest = labels;
            while !rest.is_empty() {
                let (lname, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad labels in {line:?}"));
                assert!(name_ok(lname), "bad label name {lname:?}");
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => {
                            let esc = chars.next().map(|(_, c)| c);
                            assert!(matches!(esc, Some('\\' | '"' | 'n')), "bad escape in {line:?}");
                        }
                        Some((i, '"')) => break i,
                        Some(_) => {}
                        None => panic!("unterminated label value in {line:?}"),
                    }
                };
                rest = after[end + 1..].strip_prefix(',').unwrap_or(&after[end + 1..]);
            }
        }
        assert!(series.insert(key.to_string(), value).is_none(), "series twice: {key}");
    }
    series
}

#[test]
fn metrics_file_parses_and_counters_grow_across_runs() {
    let w = World::new();
    let app = w.create("app");
    app.commit("main", &[("v", "1")], "v1");
    let metrics = w.sb.path().join("metrics").join("sentry.prom");
    std::fs::create_dir_all(metrics.parent().expect("dir")).expect("mkdir");
    w.conf().global("metrics_file", &metrics).repo(w.repo("app")).repo(w.repo("gone")).write(&w.sb);
    assert_eq!(w.poll().code, 3, "gone does not exist");
    let first = parse_prometheus(&std::fs::read_to_string(&metrics).expect("metrics file"));
    assert_eq!(first["sentry_repositories_checked"], 2.0);
    assert_eq!(first["sentry_repository_check_errors"], 1.0);
    assert!(first["sentry_last_run_timestamp_seconds"] > 1.7e9);

    app.commit("main", &[("v", "2")], "v2");
    assert_eq!(w.poll().code, 3);
    app.commit("main", &[("v", "3")], "v3");
    assert_eq!(w.poll().code, 3);
    let text = std::fs::read_to_string(&metrics).expect("metrics file");
    let last = parse_prometheus(&text);
    assert_eq!(last["sentry_deployments_total{repo=\"app\",group=\"\",status=\"succeeded\"}"], 2.0, "{text}");
    assert!(last.contains_key("sentry_deployment_duration_seconds{repo=\"app\"}"), "{text}");
    let sum = |m: &std::collections::BTreeMap<String, f64>, family: &str| {
        m.iter().filter(|(k, _)| k.starts_with(family)).map(|(_, v)| v).sum::<f64>()
    };
    // Plain Git repositories are listed by git processes: counted as commands, not HTTP requests.
    let git = "sentry_git_commands_total";
    assert!(sum(&last, git) > sum(&first, git), "git command counters grow across runs:\n{text}");
    assert!(last.contains_key("sentry_git_commands_total{outcome=\"ok\"}"), "{text}");
    assert!(!last.keys().any(|k| k.starts_with("sentry_http_requests_total{forge=\"git\"")), "{text}");
    // Written atomically: no temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(metrics.parent().expect("dir"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["sentry.prom"]);
}

#[test]
fn json_log_lines_are_objects() {
    let w = World::new();
    w.create("app").commit("main", &[("v", "1")], "v1");
    w.conf().repo(w.repo("app")).write(&w.sb);
    let r = w.sentry(&["--log-format", "json", "poll", "--once"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let mut seen_kv = false;
    for line in r.stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string() && v["message"].is_string(), "{line}");
        seen_kv |= v.get("repo").is_some();
    }
    assert!(seen_kv, "key=value fields become JSON fields: {}", r.stderr);
}

/// A world with one repository already baselined, whose webhook (in `format`, and the global
/// one) point at receivers; returns the repository and its first commit.
fn notifying_world(hook: &str, format: Option<&str>, global_hook: Option<&str>) -> (World, BareRepo, String) {
    let w = World::new();
    let app = w.create("app");
    let v1 = app.commit("main", &[("v", "1")], "v1");
    let mut repo = w.repo("app").webhook(hook);
    if let Some(f) = format {
        repo = repo.webhook_format(f);
    }
    let mut conf = w.conf();
    if let Some(url) = global_hook {
        conf = conf.global("webhook_url", url);
    }
    conf.repo(repo).write(&w.sb);
    assert_eq!(w.poll().code, 0);
    (w, app, v1)
}

#[test]
fn notifications_carry_every_field_for_success_and_failure() {
    let rx = crate::support::webhook::Receiver::start();
    let (w, app, v1) = notifying_world(&rx.url("/hook"), None, None);
    let v2 = app.commit("main", &[("v", "2")], "v2");
    assert_eq!(w.poll().code, 0);
    std::fs::write(w.ctrl().join("fail-app"), "").expect("ctrl");
    let v3 = app.commit("main", &[("v", "3")], "v3");
    assert_eq!(w.poll().code, 1);

    let got = rx.delivered();
    assert_eq!(got.len(), 2, "{got:?}");
    let ok = &got[0];
    assert_eq!(ok["repo"], "app");
    assert!(ok["group"].is_null());
    assert_eq!(ok["branch"], "main");
    assert_eq!(ok["commit"], v2.as_str());
    assert_eq!(ok["previous_commit"], v1.as_str());
    assert_eq!(ok["status"], "succeeded");
    assert_eq!(ok["attempt"], 1);
    assert!(ok["duration_ms"].is_u64());
    assert!(ok["failed_command"].is_null());
    assert!(ok["run_id"].is_string() && ok["host"].is_string());
    let failed = &got[1];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["commit"], v3.as_str());
    assert_eq!(failed["failed_command"]["index"], 0);
    assert_eq!(failed["failed_command"]["exit_code"], 3);
    assert!(failed["output_tail"].as_str().is_some_and(|t| t.contains("failing on purpose")));
    for r in rx.received() {
        assert!(!r.body.contains(TOKEN), "token in a payload");
        assert_eq!(r.path, "/hook");
        assert!(r.content_type.starts_with("application/json"));
    }
    assert!(w.state().get("outbox").is_none(), "the outbox is empty once delivered");
}

#[test]
fn slack_and_global_webhooks() {
    let repo_rx = crate::support::webhook::Receiver::start();
    let global_rx = crate::support::webhook::Receiver::start();
    let (w, app, _) = notifying_world(&repo_rx.url("/services/T0/B0/x"), Some("slack"), Some(&global_rx.url("/all")));
    app.commit("main", &[("v", "2")], "v2");
    assert_eq!(w.poll().code, 0);
    let slack = repo_rx.delivered();
    assert_eq!(slack.len(), 1);
    let text = slack[0]["text"].as_str().expect("text");
    assert!(text.contains("app") && text.contains("succeeded"), "{text}");
    assert!(slack[0]["blocks"].as_array().is_some_and(|b| !b.is_empty()));
    let plain = global_rx.delivered();
    assert_eq!(plain.len(), 1);
    assert_eq!(plain[0]["status"], "succeeded");
}

#[test]
fn webhook_retried_on_500_then_delivered_once() {
    let rx = crate::support::webhook::Receiver::start();
    rx.respond(&[500, 500]);
    let (w, app, _) = notifying_world(&rx.url("/h"), None, None);
    app.commit("main", &[("v", "2")], "v2");
    let r = w.poll();
    assert_eq!(r.code, 0, "{}", r.all());
    let statuses: Vec<u16> = rx.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 200]);
    assert_eq!(rx.delivered().len(), 1);
}

#[test]
fn webhook_down_does_not_change_the_exit_code() {
    // A port where connections are refused, held for the whole test.
    let closed = crate::support::ClosedPort::new();
    let port = closed.port;
    let (w, app, _) = notifying_world(&format!("http://127.0.0.1:{port}/h"), None, None);
    app.commit("main", &[("v", "2")], "v2");
    let r = w.sentry(&["poll", "--once", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let doc = r.json();
    assert_eq!(doc["deployments"][0]["status"], "succeeded");
    assert!(
        doc["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|m| m.as_str().is_some_and(|m| m.contains("notification")))),
        "{doc}"
    );
}

#[test]
fn interrupted_run_notifies_once_when_resumed() {
    let rx = crate::support::webhook::Receiver::start();
    let (w, app, _) = notifying_world(&rx.url("/h"), None, None);
    app.commit("main", &[("v", "2")], "v2");
    assert_eq!(w.poll().code, 0);
    assert_eq!(rx.delivered().len(), 1);
    // A run killed after recording a deployment but before delivering leaves it in the outbox.
    let path = w.sb.path().join("sentry-state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("state")).expect("json");
    // The left-over entry: the delivered notification again, as attempt 7 so it can be told apart.
    let mut payload = rx.delivered()[0].clone();
    payload["attempt"] = serde_json::json!(7);
    state["outbox"] = serde_json::json!([{"id": "app/main/abc/7", "repo": "app", "payload": payload}]);
    std::fs::write(&path, serde_json::to_string(&state).expect("json")).expect("write");
    assert_eq!(w.poll().code, 0);
    assert_eq!(w.poll().code, 0);
    let got = rx.delivered();
    assert_eq!(got.len(), 2, "the earlier deployment is not notified again; the left-over one once: {got:?}");
    assert_eq!(got[1]["attempt"], 7);
}

#[test]
fn metrics_are_pushed_to_the_pushgateway() {
    let gw = crate::support::webhook::Receiver::start();
    let w = World::new();
    w.create("app").commit("main", &[("v", "1")], "v1");
    w.conf().global("pushgateway_url", gw.url("/")).repo(w.repo("app")).write(&w.sb);
    assert_eq!(w.poll().code, 0);
    let got = gw.received();
    assert_eq!(got.len(), 1, "{got:?}");
    // A grouping key that stays the same across runs (pods of a CronJob get new names): the
    // state location, percent-encoded.
    assert!(got[0].path.starts_with("/metrics/job/sentry/instance/"), "{}", got[0].path);
    assert!(got[0].path.ends_with("sentry-state.json"), "{}", got[0].path);
    assert!(got[0].content_type.starts_with("text/plain"));
    let series = parse_prometheus(&got[0].body);
    assert_eq!(series["sentry_repositories_checked"], 1.0);
}

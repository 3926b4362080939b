//! History, rollback and on_failure (SPEC §1 `history`/`rollback`, §3 history, §4 on_failure),
//! end to end through the binary against the real git server.

use crate::support::world::{World, line};
use serde_json::Value;

fn json(w: &World, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let r = w.sentry(&all);
    let v = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all()));
    (r.code, v)
}

#[test]
fn history_lists_deployments_and_rollback_goes_back_then_pins() {
    let (w, app) = World::with_app();
    let v1 = w.state()["repos"]["app"]["branches"]["main"]["deployed"].as_str().expect("baseline").to_string();
    let v2 = app.commit("main", &[("v", "2")], "v2");
    assert_eq!(w.poll().code, 0);
    let v3 = app.commit("main", &[("v", "3")], "v3");
    assert_eq!(w.poll().code, 0);

    let (code, h) = json(&w, &["history"]);
    assert_eq!(code, 0);
    let commits: Vec<&str> = h.as_array().expect("array").iter().map(|e| e["commit"].as_str().unwrap_or("")).collect();
    assert_eq!(commits, [v3.as_str(), v2.as_str()], "newest first; the baseline is no deployment: {h}");
    for key in ["repo", "branch", "tag", "commit", "status", "reason", "attempt", "started_at", "duration_ms", "run_id"]
    {
        assert!(h[0].get(key).is_some(), "history entry lacks {key}: {h}");
    }
    assert_eq!(h[0]["status"], "succeeded");
    let human = w.sentry(&["history", "-n", "1"]);
    assert!(human.stdout.contains(&v3[..8]) && !human.stdout.contains(&v2[..8]), "{}", human.stdout);

    // Back to the newest earlier good commit: v2.
    let (code, s) = json(&w, &["rollback", "--repo", "app"]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(s["deployments"][0]["reason"], "rollback", "{s}");
    assert_eq!(w.deployed().last(), Some(&line("app", "main", &v2, Some(&v3), None)));
    assert!(w.status_json()["repositories"]["app"]["branches"]["main"]["pinned_at"].is_string());

    // Pinned: the head (v3) has not moved, so poll leaves the rollback alone.
    let before = w.deployed().len();
    assert_eq!(w.poll().code, 0);
    assert_eq!(w.deployed().len(), before, "pinned: nothing redeployed");
    let status = w.sentry(&["status"]);
    assert!(status.stdout.contains("pinned (rollback)"), "{}", status.stdout);

    // The head moves: deployed as usual, the pin is gone.
    let v4 = app.commit("main", &[("v", "4")], "v4");
    assert_eq!(w.poll().code, 0);
    assert_eq!(w.deployed().last(), Some(&line("app", "main", &v4, Some(&v2), None)));
    assert!(w.status_json()["repositories"]["app"]["branches"]["main"]["pinned_at"].is_null());

    // --to: any earlier successful commit of the history, by an unambiguous prefix.
    let (code, s) = json(&w, &["rollback", "--repo", "app", "--to", &v3[..10]]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(w.deployed().last(), Some(&line("app", "main", &v3, Some(&v4), None)));
    // The baseline was never deployed: not in the history, so not a target.
    let r = w.sentry(&["rollback", "--repo", "app", "--to", &v1]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("nothing to roll back to"), "{}", r.stderr);
}

#[test]
fn rollback_without_an_earlier_good_deployment_exits_2() {
    let (w, _app) = World::with_app();
    let r = w.sentry(&["rollback", "--repo", "app"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("nothing to roll back to"), "{}", r.stderr);
    let r = w.sentry(&["rollback", "--repo", "nope"]);
    assert_eq!(r.code, 2, "{}", r.all());
}

#[test]
fn on_failure_runs_after_a_failure_and_a_timeout_never_after_a_success() {
    let (w, app) = World::with_app();
    let marks = w.ctrl().join("on_failure.log");
    w.conf()
        .global("timeout", 3)
        .repo(w.repo("app").on_failure([format!(
            "echo \"failed=${{SENTRY_FAILED_COMMAND}} last_good=${{SENTRY_LAST_GOOD_COMMIT}} commit=$SENTRY_COMMIT\" >> {}",
            marks.display()
        )]))
        .write(&w.sb);
    let good = w.state()["repos"]["app"]["branches"]["main"]["deployed"].as_str().expect("baseline").to_string();
    let read = || std::fs::read_to_string(&marks).unwrap_or_default();

    // A failing command: on_failure runs once, with the failed command's index.
    std::fs::write(w.ctrl().join("fail-app"), "").expect("ctrl");
    let bad = app.commit("main", &[("v", "2")], "v2");
    let (code, s) = json(&w, &["poll", "--once"]);
    assert_eq!(code, 1, "{s}");
    assert_eq!(s["deployments"][0]["status"], "failed", "on_failure never changes the status: {s}");
    assert_eq!(s["deployments"][0]["on_failure"], serde_json::json!({"status": "succeeded", "exit_code": 0}), "{s}");
    assert_eq!(read().lines().collect::<Vec<_>>(), [format!("failed=0 last_good={good} commit={bad}")]);

    // A timeout: on_failure runs with an empty SENTRY_FAILED_COMMAND.
    std::fs::remove_file(w.ctrl().join("fail-app")).expect("ctrl");
    std::fs::write(w.ctrl().join("sleep"), "30").expect("ctrl");
    let slow = app.commit("main", &[("v", "3")], "v3");
    let (code, s) = json(&w, &["poll", "--once"]);
    assert_eq!(code, 1, "{s}");
    assert_eq!(s["deployments"][0]["status"], "timed_out", "{s}");
    assert_eq!(read().lines().last(), Some(format!("failed= last_good={good} commit={slow}").as_str()));

    // A success: on_failure does not run.
    std::fs::remove_file(w.ctrl().join("sleep")).expect("ctrl");
    app.commit("main", &[("v", "4")], "v4");
    let (code, s) = json(&w, &["poll", "--once"]);
    assert_eq!(code, 0, "{s}");
    assert!(s["deployments"][0]["on_failure"].is_null(), "{s}");
    assert_eq!(read().lines().count(), 2);
}

/// Issue 18's first story, through the binary: a typo in a branch pattern lists nothing; its
/// records are kept (a warning says why), and fixing the typo redeploys nothing.
#[test]
fn a_pattern_typo_then_its_fix_redeploys_nothing() {
    let (w, app) = World::with_app();
    let deployed = w.state()["repos"]["app"]["branches"]["main"]["deployed"].clone();
    w.conf().repo(w.repo("app").branches(["mian"])).write(&w.sb);
    let r = w.poll();
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("no branch listed or matching"), "{}", r.stderr);
    assert_eq!(w.state()["repos"]["app"]["branches"]["main"]["deployed"], deployed, "the record is kept");
    w.conf().repo(w.repo("app")).write(&w.sb);
    let r = w.poll();
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(w.deployed().is_empty(), "nothing redeployed: {:?}", w.deployed());
    assert!(w.state()["repos"]["app"]["branches"]["main"].get("gone_since").is_none());
    // And a real change after that deploys as usual.
    let v2 = app.commit("main", &[("v", "2")], "v2");
    assert_eq!(w.poll().code, 0);
    assert_eq!(w.deployed().len(), 1);
    assert!(w.deployed()[0].contains(&v2));
}

//! The metrics of SPEC §5 (v2) from real runs, and what ships in `monitoring/`: the alert rules
//! (unit-tested with `promtool test rules`) and the dashboard, both over series sentry writes.

use crate::support::world::World;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `name{labels} value` -> value of every sample in a Prometheus text file.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {k} {v}"))))
        .collect()
}

/// A world watching `app` (baselined) that writes its metrics file; returns the file's path.
fn metrics_world() -> (World, crate::support::repos::BareRepo, PathBuf) {
    let w = World::new();
    let app = w.create("app");
    app.commit("main", &[("v", "1")], "v1");
    let metrics = w.sb.path().join("sentry.prom");
    w.conf().global("metrics_file", &metrics).repo(w.repo("app")).write(&w.sb);
    (w, app, metrics)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn last_success_exit_code_and_parked_deployments_follow_the_runs() {
    let (w, app, metrics) = metrics_world();
    assert_eq!(w.poll().code, 0);
    let first = samples(&read(&metrics));
    assert_eq!(first["sentry_last_run_exit_code"], 0.0);
    let success = first["sentry_last_success_timestamp_seconds"];
    assert!(success > 1.7e9, "{first:?}");
    assert!(first["sentry_repository_last_check_success_timestamp_seconds{repo=\"app\"}"] > 1.7e9);
    assert_eq!(first["sentry_parked_deployments"], 0.0);
    // Carried in the state: a later failing run still reports the earlier success.
    assert_eq!(w.state()["last_success"].as_u64().map(|s| s as f64), Some(success.floor()));

    std::fs::write(w.ctrl().join("fail-app"), "").expect("ctrl");
    app.commit("main", &[("v", "2")], "v2");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(w.poll().code, 1);
    let failed = samples(&read(&metrics));
    assert_eq!(failed["sentry_last_run_exit_code"], 1.0);
    assert_eq!(failed["sentry_last_success_timestamp_seconds"], success, "a failed run is no success");
    assert_eq!(failed["sentry_parked_deployments"], 0.0, "one attempt of two");
    assert_eq!(w.poll().code, 1);
    let parked = samples(&read(&metrics));
    assert_eq!(parked["sentry_parked_deployments"], 1.0, "max_attempts is 2 in this world");

    // Parked: nothing to deploy, so the next run succeeds again; a push clears the parking.
    assert_eq!(w.poll().code, 0);
    let clean = samples(&read(&metrics));
    assert!(clean["sentry_last_success_timestamp_seconds"] > success, "{clean:?}");
    assert_eq!(clean["sentry_parked_deployments"], 1.0, "still parked until the branch moves");
    std::fs::remove_file(w.ctrl().join("fail-app")).expect("ctrl");
    app.commit("main", &[("v", "3")], "v3");
    assert_eq!(w.poll().code, 0);
    let fixed = samples(&read(&metrics));
    assert_eq!(fixed["sentry_parked_deployments"], 0.0);
    assert_eq!(fixed["sentry_last_run_exit_code"], 0.0);
}

#[test]
fn a_repository_that_cannot_be_checked_keeps_its_last_good_check_time() {
    let (w, _app, metrics) = metrics_world();
    assert_eq!(w.poll().code, 0);
    let before = samples(&read(&metrics))["sentry_repository_last_check_success_timestamp_seconds{repo=\"app\"}"];
    std::fs::rename(w.root.join("apps/app.git"), w.root.join("apps/moved.git")).expect("hide the repository");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(w.poll().code, 3);
    let after = samples(&read(&metrics));
    assert_eq!(after["sentry_repository_last_check_success_timestamp_seconds{repo=\"app\"}"], before);
    assert_eq!(after["sentry_last_run_exit_code"], 3.0);
    assert_eq!(after["sentry_repository_check_errors"], 1.0);
}

//! The metrics of SPEC §5 (v2) from real runs, and what ships in `monitoring/`: the alert rules
//! (unit-tested with `promtool test rules`) and the dashboard, both over series sentry writes.

use crate::support::fake_forge::FakeForge;
use crate::support::world::{TOKEN, World};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `name{labels} value` -> value of every sample in a Prometheus text file.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {k} {v}"))))
        .collect()
}

/// The metric families (`# TYPE` lines) of a Prometheus text file.
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(String::from)
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

/// The repository's `monitoring/` directory.
fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring")
}

/// `promtool`, when installed. Without it the caller skips, saying why, unless
/// `SENTRY_REQUIRE_REAL=1` (CI installs it: .ci/run) makes that a failure.
fn promtool() -> Option<Command> {
    let found = Command::new("promtool").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if found.is_ok_and(|s| s.success()) {
        return Some(Command::new("promtool"));
    }
    let why = "promtool is not installed (Debian/Ubuntu: apt-get install prometheus)";
    assert!(!crate::support::real::required(), "SENTRY_REQUIRE_REAL=1 but {why}");
    eprintln!("skipped: {why}");
    None
}

/// Metrics of real runs with a bit of everything: a plain Git repository deployed (and one of
/// its deployments failed), a GitHub repository listed through the fake forge (HTTP requests, a
/// rate limit), and a repository that cannot be checked.
fn real_metrics() -> String {
    let (w, app, metrics) = metrics_world();
    let forge = FakeForge::start(&w.root);
    forge.require_token(TOKEN);
    w.create("gh").commit("main", &[("v", "1")], "v1");
    let gh = w.repo("gh").monitor_url(forge.repo_url("apps/gh")).kind("github");
    w.conf().global("metrics_file", &metrics).repo(w.repo("app")).repo(gh).repo(w.repo("gone")).write(&w.sb);
    let r = w.poll();
    assert_eq!(r.code, 3, "gone does not exist: {}", r.all());
    assert!(r.stderr.matches("could not be checked").count() == 1, "only gone: {}", r.stderr);
    app.commit("main", &[("v", "2")], "v2");
    assert_eq!(w.poll().code, 3);
    std::fs::write(w.ctrl().join("fail-app"), "").expect("ctrl");
    app.commit("main", &[("v", "3")], "v3");
    let r = w.poll();
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(!r.all().contains(TOKEN));
    read(&metrics)
}

#[test]
fn alert_rules_pass_their_promtool_unit_tests() {
    let Some(mut check) = promtool() else { return };
    let out = check.current_dir(monitoring()).args(["check", "rules", "alerts.yml"]).output().expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("SUCCESS: 5 rules found"), "promtool check rules:\n{text}");
    let Some(mut test) = promtool() else { return };
    let out = test.current_dir(monitoring()).args(["test", "rules", "tests.yml"]).output().expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("SUCCESS"), "promtool test rules:\n{text}");
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_case_and_a_runbook() {
    let rules = read(&monitoring().join("alerts.yml"));
    let tests = read(&monitoring().join("tests.yml"));
    let alerts: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert_eq!(alerts.len(), 5, "{alerts:?}");
    assert_eq!(rules.matches("runbook: ").count(), alerts.len(), "one runbook line per alert");
    for alert in alerts {
        let cases: Vec<&str> = tests.split("alertname: ").skip(1).filter(|c| c.starts_with(alert)).collect();
        let quiet = cases.iter().any(|c| c.lines().nth(1).is_some_and(|l| l.trim() == "exp_alerts: []"));
        let firing = cases.iter().any(|c| c.lines().nth(1).is_some_and(|l| l.trim() == "exp_alerts:"));
        assert!(quiet && firing, "{alert}: a case where it fires and one where it does not");
    }
}

#[test]
fn metrics_of_a_real_run_pass_promtool_check_metrics() {
    let Some(mut promtool) = promtool() else { return };
    let text = real_metrics();
    let mut child = promtool
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes()).expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
    // The file had something to check.
    let s = samples(&text);
    assert!(s.contains_key("sentry_deployments_total{repo=\"app\",group=\"\",status=\"failed\"}"), "{text}");
    assert!(s.keys().any(|k| k.starts_with("sentry_http_requests_total{forge=\"github\"")), "{text}");
    assert!(s.keys().any(|k| k.starts_with("sentry_rate_limit_remaining{forge=\"github\"")), "{text}");
    assert_eq!(s["sentry_last_run_exit_code"], 1.0);
}

#[test]
fn dashboard_and_alerts_use_only_series_sentry_writes() {
    let written = families(&real_metrics());
    for family in [
        "sentry_last_success_timestamp_seconds",
        "sentry_last_run_exit_code",
        "sentry_parked_deployments",
        "sentry_filtered_changes_total",
        "sentry_repository_last_check_success_timestamp_seconds",
        "sentry_git_commands_total",
    ] {
        assert!(written.contains(family), "SPEC §5 v2 family {family} missing: {written:?}");
    }
    let names = |text: &str| -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut rest = text;
        while let Some(i) = rest.find("sentry_") {
            let name: String =
                rest[i..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
            rest = &rest[i + name.len()..];
            out.insert(name);
        }
        out
    };
    let rules = read(&monitoring().join("alerts.yml"));
    let dashboard_text = read(&monitoring().join("grafana-dashboard.json"));
    for (what, text) in [("alerts.yml", &rules), ("grafana-dashboard.json", &dashboard_text)] {
        let used = names(text);
        assert!(used.len() >= 5, "{what}: {used:?}");
        let unknown: Vec<_> = used.difference(&written).collect();
        assert!(unknown.is_empty(), "{what} uses series sentry does not write: {unknown:?}");
    }
    // The dashboard is a Grafana dashboard: panels with unique ids, each query on the datasource variable.
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard_text).expect("dashboard JSON");
    assert_eq!(dashboard["uid"], "sentry-overview");
    let panels = dashboard["panels"].as_array().expect("panels");
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "unique panel ids");
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert!(p["gridPos"]["w"].as_u64().is_some() && p["title"].is_string(), "{p}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{p}");
        for t in targets {
            assert!(t["expr"].as_str().is_some_and(|e| e.contains("sentry_")), "{t}");
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{t}");
        }
    }
}

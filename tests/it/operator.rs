//! What an operator sees (issue 20, SPEC §5): live output while a job runs, logs a machine can
//! read, parked deployments in the open.

use crate::support::world::{TOKEN, World};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A job prints a line, sleeps, prints another: the first line is on stderr before it ends.
#[test]
fn a_deployments_output_is_logged_while_it_runs() {
    let (w, app) = World::with_app();
    w.conf().repo(w.repo("app").commands(["echo first-line-now", "sleep 3", "echo second-line"])).write(&w.sb);
    app.commit("main", &[("v", "2")], "v2");
    let mut child =
        w.sb.sentry()
            .args(["poll", "--once"])
            .env("E2E_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
    let started = Instant::now();
    let stderr = child.stderr.take().expect("stderr");
    let mut first_at = None;
    let mut second_at = None;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.contains("| first-line-now") {
            assert!(line.contains("INFO") && line.contains("repo=app") && line.contains("branch=main"), "{line}");
            first_at = Some(started.elapsed());
        }
        if line.contains("| second-line") {
            second_at = Some(started.elapsed());
        }
    }
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    let (first, second) = (first_at.expect("first line logged"), second_at.expect("second line logged"));
    // The sleep separates them: the first line was read before the job ended.
    assert!(second >= first + Duration::from_secs(2), "first at {first:?}, second at {second:?}");
}

/// Every line of a full run's JSON log parses, carries run_id, and numbers are numbers.
#[test]
fn json_logs_are_typed_and_carry_the_run_id() {
    let (w, app) = World::with_app();
    std::fs::write(w.ctrl().join("fail-app"), "").expect("ctrl");
    let sha = app.commit("main", &[("v", "2")], "v2");
    let r = w.sentry(&["--log-format", "json", "poll", "--once"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let lines: Vec<serde_json::Value> =
        r.stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(lines.len() > 3, "{}", r.stderr);
    let run_ids: std::collections::BTreeSet<&str> = lines.iter().filter_map(|l| l["run_id"].as_str()).collect();
    assert_eq!(run_ids.len(), 1, "one run id on every line of the pass: {run_ids:?}");
    let finished = lines
        .iter()
        .find(|l| l["message"] == "deployment finished")
        .unwrap_or_else(|| panic!("no finished line: {}", r.stderr));
    assert_eq!(finished["exit_code"], 3, "a number: {finished}");
    assert_eq!(finished["command"], 0, "{finished}");
    assert!(finished["duration_ms"].is_u64(), "{finished}");
    assert_eq!(finished["commit"], sha.as_str(), "full commit id: {finished}");
    assert!(
        lines
            .iter()
            .any(|l| l["output"] == true && l["message"].as_str().is_some_and(|m| m.contains("failing on purpose"))),
        "job output as output lines: {}",
        r.stderr
    );
}

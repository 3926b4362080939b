//! Prometheus metrics of a run, as a text file (node-exporter's textfile collector) and/or a
//! Pushgateway push. Counters survive runs because they are kept in the state.

use crate::config::Config;
use crate::state::State;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What one run measured that the state does not carry.
#[derive(Clone, Debug, Default)]
pub struct RunMetrics {
    /// When the run finished.
    pub finished: Option<SystemTime>,
    /// How long it took.
    pub duration: Duration,
    /// Repositories checked.
    pub checked: usize,
    /// Repositories that could not be checked.
    pub check_errors: usize,
    /// Remaining API rate limit per (forge, host), as last reported by the forge.
    pub rate_limits: BTreeMap<(String, String), i64>,
    /// The run's exit code (SPEC §5), as the command will return it.
    pub exit_code: u8,
}

/// Renders the Prometheus text exposition format (version 0.0.4).
pub fn render(config: &Config, state: &State, run: &RunMetrics) -> String {
    let mut out = String::new();
    let finished = run.finished.unwrap_or_else(SystemTime::now);
    let ts = finished.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    family(&mut out, "sentry_last_run_timestamp_seconds", "gauge", "Unix time the last run finished.");
    sample(&mut out, "sentry_last_run_timestamp_seconds", &[], ts);
    family(&mut out, "sentry_last_run_duration_seconds", "gauge", "How long the last run took.");
    sample(&mut out, "sentry_last_run_duration_seconds", &[], run.duration.as_secs_f64());
    family(&mut out, "sentry_repositories_checked", "gauge", "Repositories checked by the last run.");
    sample(&mut out, "sentry_repositories_checked", &[], run.checked as f64);
    family(&mut out, "sentry_repository_check_errors", "gauge", "Repositories the last run could not check.");
    sample(&mut out, "sentry_repository_check_errors", &[], run.check_errors as f64);

    let group_of = |repo: &str| config.repository(repo).and_then(|r| r.group.clone()).unwrap_or_default();
    family(&mut out, "sentry_deployments_total", "counter", "Deployments finished, by repository, group and status.");
    for (repo, rs) in &state.repos {
        let group = group_of(repo);
        for (status, n) in &rs.deployments {
            sample(
                &mut out,
                "sentry_deployments_total",
                &[("repo", repo), ("group", &group), ("status", status)],
                *n as f64,
            );
        }
    }
    family(
        &mut out,
        "sentry_filtered_changes_total",
        "counter",
        "Changes recorded but not deployed, by repository and reason (paths, skip_marker).",
    );
    for (repo, rs) in &state.repos {
        for (reason, n) in &rs.filtered {
            sample(&mut out, "sentry_filtered_changes_total", &[("repo", repo), ("reason", reason)], *n as f64);
        }
    }
    family(
        &mut out,
        "sentry_deployment_duration_seconds",
        "gauge",
        "Duration of the last deployment of each repository.",
    );
    for (repo, rs) in &state.repos {
        if let Some(ms) = rs.last_deployment_ms {
            sample(&mut out, "sentry_deployment_duration_seconds", &[("repo", repo)], ms as f64 / 1000.0);
        }
    }
    // The state keeps `git ls-remote` runs beside the HTTP requests, as `git/<outcome>`: they are
    // processes, not HTTP requests (SPEC §5), so they get a family of their own.
    let (git, http): (Vec<_>, Vec<_>) = state.http.requests.iter().partition(|(k, _)| k.starts_with("git/"));
    family(&mut out, "sentry_http_requests_total", "counter", "HTTP requests to forge APIs, by forge and status.");
    for (key, n) in http {
        let (forge, status) = key.split_once('/').unwrap_or((key, ""));
        sample(&mut out, "sentry_http_requests_total", &[("forge", forge), ("status", status)], *n as f64);
    }
    family(
        &mut out,
        "sentry_git_commands_total",
        "counter",
        "git ls-remote runs listing plain Git repositories, by outcome.",
    );
    for (key, n) in git {
        let outcome = key.strip_prefix("git/").unwrap_or(key);
        sample(&mut out, "sentry_git_commands_total", &[("outcome", outcome)], *n as f64);
    }
    family(
        &mut out,
        "sentry_http_cache_hits_total",
        "counter",
        "Repository listings answered entirely by 304 Not Modified.",
    );
    sample(&mut out, "sentry_http_cache_hits_total", &[], state.http.cache_hits as f64);
    family(
        &mut out,
        "sentry_rate_limit_remaining",
        "gauge",
        "API rate limit remaining, as last reported by each forge host.",
    );
    for ((forge, host), n) in &run.rate_limits {
        sample(&mut out, "sentry_rate_limit_remaining", &[("forge", forge), ("host", host)], *n as f64);
    }
    v2(&mut out, config, state, run);
    out
}

/// The families SPEC §5 (v2) adds: how the last run ended, when one last succeeded, what waits
/// for a human, and when each repository was last checked.
fn v2(out: &mut String, config: &Config, state: &State, run: &RunMetrics) {
    let unix = |t: &str| {
        crate::time::parse_rfc3339(t).and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs_f64())
    };
    family(
        out,
        "sentry_last_run_exit_code",
        "gauge",
        "Exit code of the last run (0 success, 1 deployment failed, 3 check failed, 4 state).",
    );
    sample(out, "sentry_last_run_exit_code", &[], f64::from(run.exit_code));
    family(out, "sentry_last_success_timestamp_seconds", "gauge", "Unix time the last run that exited 0 finished.");
    // No sample until a run succeeded: an alert on its absence tells "never" from "long ago".
    if let Some(t) = state.last_success.as_deref().and_then(unix) {
        sample(out, "sentry_last_success_timestamp_seconds", &[], t);
    }
    // Refs of configured repositories, still listed, whose failing commit used up max_attempts.
    let parked = state
        .repos
        .iter()
        .filter(|(name, _)| config.repository(name).is_some())
        .flat_map(|(_, rs)| rs.branches.values().chain(rs.tags.values()))
        .filter(|r| r.gone_since.is_none())
        .filter(|r| r.failure.as_ref().is_some_and(|f| f.attempts >= config.global.max_attempts))
        .count();
    family(
        out,
        "sentry_parked_deployments",
        "gauge",
        "Branches and tags whose failing commit is parked after max_attempts.",
    );
    sample(out, "sentry_parked_deployments", &[], parked as f64);
    family(
        out,
        "sentry_repository_last_check_success_timestamp_seconds",
        "gauge",
        "Unix time each configured repository was last checked successfully.",
    );
    for repo in &config.repositories {
        if let Some(t) = state.repos.get(&repo.name).and_then(|rs| rs.last_checked.as_deref()).and_then(unix) {
            sample(out, "sentry_repository_last_check_success_timestamp_seconds", &[("repo", &repo.name)], t);
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_value(value));
}

/// Label values escape backslash, double quote and newline (exposition format).
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

/// Writes the metrics file atomically (the collector never reads half a file).
pub fn write_file(path: &Path, text: &str) -> Result<(), String> {
    crate::fsutil::write_atomic_shared(path, text.as_bytes())
        .map_err(|e| format!("metrics file {}: cannot {}: {}", path.display(), e.action, e.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_formats() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(1.25), "1.25");
        let mut out = String::new();
        sample(&mut out, "m", &[("repo", "x\"y"), ("status", "ok")], 2.0);
        assert_eq!(out, "m{repo=\"x\\\"y\",status=\"ok\"} 2\n");
    }

    #[test]
    fn v2_families_say_how_runs_end_and_what_waits() {
        use crate::model::Sha;
        use crate::state::{Failure, RefState};
        let yaml = "global:\n  max_attempts: 2\nrepositories:\n  - name: a\n    monitor: {repo_url: https://github.com/o/a, branches: [\".*\"]}\n    deploy: {qa_repo_url: https://gitlab.com/o/qa, commands: [\"true\"]}\n  - name: never\n    monitor: {repo_url: https://github.com/o/n, branches: [main]}\n    deploy: {qa_repo_url: https://gitlab.com/o/qa, commands: [\"true\"]}\n";
        let config = crate::config::parse(Path::new("t.yaml"), yaml, &|_| None).expect("valid");
        let failure = |attempts| Failure {
            at: "2026-11-22T12:00:00Z".into(),
            attempts,
            commit: Sha::parse(&"f".repeat(40)).expect("sha"),
            error: "boom".into(),
        };
        let failing = |attempts, gone: bool| RefState {
            failure: Some(failure(attempts)),
            gone_since: gone.then(|| "2026-11-21T00:00:00Z".into()),
            ..Default::default()
        };
        let mut state = State { last_success: Some("2026-11-22T12:00:00Z".into()), ..Default::default() };
        state.http.requests.insert("github/200".into(), 3);
        state.http.requests.insert("git/ok".into(), 2);
        let a = state.repos.entry("a".into()).or_default();
        a.last_checked = Some("2026-11-22T11:00:00Z".into());
        a.branches.insert("main".into(), Box::new(failing(2, false))); // parked
        a.branches.insert("dev".into(), Box::new(failing(1, false))); // retried next run
        a.branches.insert("old".into(), Box::new(failing(5, true))); // gone: nobody is waiting on it
        a.tags.insert("v1".into(), Box::new(failing(3, false))); // parked
        let removed = state.repos.entry("removed".into()).or_default();
        removed.last_checked = Some("2026-11-22T11:00:00Z".into());
        removed.branches.insert("main".into(), Box::new(failing(9, false)));

        let text = render(&config, &state, &RunMetrics { exit_code: 3, ..Default::default() });
        for line in [
            "sentry_last_run_exit_code 3",
            "sentry_last_success_timestamp_seconds 1795348800",
            "sentry_parked_deployments 2",
            "sentry_repository_last_check_success_timestamp_seconds{repo=\"a\"} 1795345200",
            "# TYPE sentry_filtered_changes_total counter",
            "sentry_http_requests_total{forge=\"github\",status=\"200\"} 3",
            "sentry_git_commands_total{outcome=\"ok\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        // Every family once (promtool refuses a second HELP).
        assert_eq!(text.matches("# TYPE sentry_filtered_changes_total ").count(), 1, "{text}");
        for absent in ["repo=\"never\"", "repo=\"removed\"", "forge=\"git\"", "sentry_filtered_changes_total{"] {
            assert!(!text.contains(absent), "{absent} present:\n{text}");
        }
        // Never succeeded: the family is there, without a sample.
        let text = render(&config, &State::default(), &RunMetrics::default());
        assert!(text.contains("# TYPE sentry_last_success_timestamp_seconds gauge"), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("sentry_last_success_timestamp_seconds ")), "{text}");
        assert!(text.lines().any(|l| l == "sentry_parked_deployments 0"), "{text}");
    }
}

#[cfg(test)]
mod filtered_tests {
    use super::*;

    #[test]
    fn filtered_changes_are_counted_by_repo_and_reason() {
        let y = "repositories:\n  - name: svc\n    monitor:\n      repo_url: https://github.com/o/svc\n      branches: [main]\n    deploy:\n      qa_repo_url: https://github.com/o/qa\n      commands: [\"true\"]\n";
        let config = crate::config::parse(Path::new("t.yaml"), y, &|_| None).expect("config");
        let mut state = State::default();
        let rs = state.repos.entry("svc".into()).or_default();
        rs.filtered.insert("paths".into(), 3);
        rs.filtered.insert("skip_marker".into(), 1);
        let text = render(&config, &state, &RunMetrics::default());
        assert!(text.contains("# TYPE sentry_filtered_changes_total counter\n"), "{text}");
        assert!(text.contains("sentry_filtered_changes_total{repo=\"svc\",reason=\"paths\"} 3\n"), "{text}");
        assert!(text.contains("sentry_filtered_changes_total{repo=\"svc\",reason=\"skip_marker\"} 1\n"), "{text}");
    }
}

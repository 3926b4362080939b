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
        "Changes recorded but not deployed, by repository and reason.",
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
    out
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

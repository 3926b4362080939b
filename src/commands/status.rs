//! `sentry status`: the state per repository and branch, for people or as JSON.
//!
//! Reads without taking the lock, so it works while a run is in progress, and needs only the
//! state (SPEC §1 v2): without a configuration the state is printed as stored, in its own order,
//! with the default `max_attempts`.

use super::{emit, json_text};
use crate::cli::OutputFormat;
use crate::config::Config;
use crate::error::{Error, Exit};
use crate::report::table_coloured;
use crate::state::{HistoryEntry, LastRun, State};
use crate::text::first_line;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `global.max_attempts` when no configuration could be read.
const DEFAULT_MAX_ATTEMPTS: u32 = crate::config::DEFAULT_MAX_ATTEMPTS;

/// `global.http_timeout` when no configuration could be read.
const DEFAULT_HTTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(crate::config::DEFAULT_HTTP_TIMEOUT_S);

/// Runs `sentry status`: loads the state read-only and prints it. Exit 1 when something needs a
/// human (a parked failure, a repository whose last check failed), else 0; unreadable state is
/// exit 4. Quiet: prints only when something needs a human.
pub fn status(config: Option<&Config>, scope: &super::Scope, output: OutputFormat, quiet: bool) -> Result<Exit, Error> {
    let http_timeout = config.map_or(DEFAULT_HTTP_TIMEOUT, |c| c.global.http_timeout);
    let (state, names) = super::read_states(scope, config, http_timeout)?;
    let where_ = match scope.shard {
        Some(shard) if names.len() > 1 => format!("{} ({} shards)", names.join(", "), shard.count),
        _ => names.join(", "),
    };
    let report = report(config, &state, &where_);
    let exit = if report.needs_human { Exit::DeployFailed } else { Exit::Success };
    if quiet && !report.needs_human {
        return Ok(exit);
    }
    let text = match output {
        OutputFormat::Human => human(&report),
        OutputFormat::Json => json_text(&report) + "\n",
    };
    Ok(emit(&text, exit))
}

/// What `status --output json` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Where the state was read.
    pub location: String,
    /// The run that last saved it.
    pub last_run: Option<LastRun>,
    /// A configuration was read (false: the state as stored, configured repositories unknown).
    pub config_loaded: bool,
    /// Something needs a human: a parked failure, or a configured repository whose last check
    /// failed (the exit code is 1 then).
    pub needs_human: bool,
    /// Configured repositories and those the state still remembers, by name.
    pub repositories: BTreeMap<String, RepoStatus>,
    /// Configuration order, then repositories only in the state (not serialized: the table's order).
    #[serde(skip)]
    pub order: Vec<String>,
}

/// One repository in the report.
#[derive(Debug, Serialize)]
pub struct RepoStatus {
    /// In the configuration (null when no configuration was read).
    pub configured: Option<bool>,
    /// The state has an entry for it (false: never checked yet).
    pub in_state: bool,
    /// When it was last checked successfully.
    pub last_checked: Option<String>,
    /// Why the last check failed.
    pub last_error: Option<String>,
    /// Per branch.
    pub branches: BTreeMap<String, BranchStatus>,
    /// Per monitored tag (SPEC §4 "tags").
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, BranchStatus>,
    /// Changes filtered (recorded, not deployed), per reason (`paths`, `skip_marker`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub filtered: BTreeMap<String, u64>,
}

/// One branch in the report.
#[derive(Debug, Serialize)]
pub struct BranchStatus {
    /// Last head seen.
    pub seen: Option<String>,
    /// Last commit deployed.
    pub deployed: Option<String>,
    /// When it was deployed.
    pub deployed_at: Option<String>,
    /// A pending retry or parked failure.
    pub failure: Option<FailureStatus>,
    /// The failure used up `max_attempts` and waits for the branch to move or a manual deploy.
    pub parked: bool,
    /// When the branch stopped being listed; its record is kept 30 days (SPEC §3).
    pub gone_since: Option<String>,
    /// Set after `rollback`: the head it is pinned at.
    pub pinned_at: Option<String>,
    /// The last head a filter kept from deploying (`paths`, a skip marker).
    pub filtered: Option<String>,
    /// `deployed` is the baseline recorded at first sight, not a deployment.
    pub baseline: bool,
    /// The newest finished deployment of the history (`sentry history` has them all).
    pub last_deployment: Option<HistoryEntry>,
}

/// A failure in the report.
#[derive(Debug, Serialize)]
pub struct FailureStatus {
    /// The failing commit.
    pub commit: String,
    /// Attempts made.
    pub attempts: u32,
    /// `global.max_attempts`.
    pub max_attempts: u32,
    /// The last error.
    pub error: String,
    /// When the last attempt ended.
    pub at: String,
}

/// Builds the report: configured repositories in configuration order, then any the state still
/// holds; without a configuration, the state's repositories in its order.
pub fn report(config: Option<&Config>, state: &State, location: &str) -> Report {
    let max_attempts = config.map_or(DEFAULT_MAX_ATTEMPTS, |c| c.global.max_attempts);
    let configured = |name: &str| config.map(|c| c.repository(name).is_some());
    let mut order: Vec<String> =
        config.map(|c| c.repositories.iter().map(|r| r.name.clone()).collect()).unwrap_or_default();
    order.extend(state.repos.keys().filter(|n| configured(n) != Some(true)).cloned());
    let repositories = order
        .iter()
        .map(|name| {
            let repo = state.repos.get(name);
            let ref_status = |b: &crate::state::RefState| {
                let failure = b.failure.as_ref().map(|f| FailureStatus {
                    commit: f.commit.to_string(),
                    attempts: f.attempts,
                    max_attempts,
                    error: f.error.clone(),
                    at: f.at.clone(),
                });
                let parked = failure.as_ref().is_some_and(|f| f.attempts >= max_attempts);
                BranchStatus {
                    seen: b.seen.as_ref().map(ToString::to_string),
                    deployed: b.deployed.as_ref().map(ToString::to_string),
                    deployed_at: b.deployed_at.clone(),
                    failure,
                    parked,
                    gone_since: b.gone_since.clone(),
                    pinned_at: b.pinned_at.as_ref().map(ToString::to_string),
                    filtered: b.filtered.as_ref().map(ToString::to_string),
                    baseline: b.baseline,
                    last_deployment: b.history.first().cloned(),
                }
            };
            let branches =
                repo.map(|r| r.branches.iter().map(|(n, b)| (n.clone(), ref_status(b))).collect()).unwrap_or_default();
            let tags =
                repo.map(|r| r.tags.iter().map(|(n, b)| (n.clone(), ref_status(b))).collect()).unwrap_or_default();
            let status = RepoStatus {
                configured: configured(name),
                in_state: repo.is_some(),
                last_checked: repo.and_then(|r| r.last_checked.clone()),
                last_error: repo.and_then(|r| r.last_error.clone()),
                branches,
                tags,
                filtered: repo.map(|r| r.filtered.clone()).unwrap_or_default(),
            };
            (name.clone(), status)
        })
        .collect::<BTreeMap<String, RepoStatus>>();
    // A repository that is no longer configured needs nobody: its old error is history.
    let needs_human = repositories
        .values()
        .filter(|r| r.configured != Some(false))
        .any(|r| r.last_error.is_some() || r.branches.values().chain(r.tags.values()).any(|b| b.parked));
    Report {
        location: location.to_string(),
        last_run: state.last_run.clone(),
        config_loaded: config.is_some(),
        needs_human,
        repositories,
        order,
    }
}

/// The table for people: one row per repository and branch, then the errors in full.
pub fn human(report: &Report) -> String {
    let mut out = String::new();
    let _ = match &report.last_run {
        Some(run) => writeln!(out, "State: {} (saved by run {} at {})\n", report.location, run.run_id, run.at),
        None => writeln!(out, "State: {} (never saved)\n", report.location),
    };
    let short = |sha: &Option<String>| sha.as_deref().map_or("-".to_string(), |s| s.chars().take(8).collect());
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let header =
        ["REPOSITORY", "BRANCH", "SEEN", "DEPLOYED", "DEPLOYED AT", "LAST CHECKED", "STATUS"].map(String::from);
    let mut rows = Vec::new();
    let mut details = Vec::new();
    for name in &report.order {
        let Some(repo) = report.repositories.get(name) else { continue };
        let mut label = name.clone();
        if repo.configured == Some(false) {
            label.push_str(" (not configured)");
        }
        let checked = dash(&repo.last_checked);
        if let Some(e) = &repo.last_error {
            details.push(format!("{name}: last check failed: {}", first_line(e, 200)));
        }
        if repo.branches.is_empty() && repo.tags.is_empty() {
            let what = if !repo.in_state {
                "no state yet"
            } else if repo.last_error.is_some() {
                "check failed"
            } else {
                "no matching branch"
            };
            rows.push([label, "-".into(), "-".into(), "-".into(), "-".into(), checked, what.into()]);
            continue;
        }
        let tag_rows = repo.tags.iter().map(|(t, b)| (format!("tag {t}"), b));
        let refs: Vec<(String, &BranchStatus)> =
            repo.branches.iter().map(|(n, b)| (n.clone(), b)).chain(tag_rows).collect();
        for (i, (branch, b)) in refs.iter().enumerate() {
            let branch = branch.as_str();
            let status = match &b.failure {
                // Said first: a failing check makes every other word about this repository stale.
                _ if repo.last_error.is_some() => {
                    format!("check failed: {}", first_line(repo.last_error.as_deref().unwrap_or(""), 60))
                }
                Some(f) if b.parked => {
                    details.push(format!(
                        "{name}/{branch}: parked for {} after {} attempts, at {}: {} (push a new commit or run `sentry deploy`)",
                        short(&Some(f.commit.clone())),
                        f.attempts,
                        f.at,
                        first_line(&f.error, 200)
                    ));
                    format!("PARKED after {} attempts ({})", f.attempts, short(&Some(f.commit.clone())))
                }
                Some(f) => {
                    let (word, what) = ("retry", "retry pending");
                    details.push(format!(
                        "{name}/{branch}: {what} for {}, attempt {} of {}, at {}: {}",
                        short(&Some(f.commit.clone())),
                        f.attempts,
                        f.max_attempts,
                        f.at,
                        first_line(&f.error, 200)
                    ));
                    format!("{word} {} ({}/{})", short(&Some(f.commit.clone())), f.attempts, f.max_attempts)
                }
                None if b.gone_since.is_some() => format!("gone since {}", b.gone_since.as_deref().unwrap_or("?")),
                None if b.pinned_at.is_some() => "pinned (rollback)".into(),
                None if b.filtered.is_some() && b.filtered == b.seen => {
                    format!("filtered {} (not deployed: no watched file changed, or a skip marker)", short(&b.filtered))
                }
                None if b.seen.is_some() && b.seen != b.deployed => "not deployed yet".into(),
                None if b.baseline => "baseline (recorded at first sight, not deployed)".into(),
                None => "up to date".into(),
            };
            let (repo_cell, checked_cell) =
                if i == 0 { (label.clone(), checked.clone()) } else { (String::new(), String::new()) };
            // A baseline was recorded, not deployed: no deployment time to show.
            let deployed_at = if b.baseline { "-".to_string() } else { dash(&b.deployed_at) };
            rows.push([
                crate::text::printable(&repo_cell),
                crate::text::printable(branch),
                short(&b.seen),
                short(&b.deployed),
                deployed_at,
                checked_cell,
                status,
            ]);
        }
    }
    out.push_str(&table_coloured(&header, &rows, Some(6)));
    if report.order.is_empty() {
        out.push_str("(no repositories configured or in the state)\n");
    }
    if !details.is_empty() {
        out.push('\n');
        for d in details {
            // Branch names and errors come from forges and the state file.
            out.push_str(&crate::text::terminal_safe(&d));
            out.push('\n');
        }
    }
    if !report.config_loaded {
        out.push_str("\n(no configuration read: the state as stored, parked at the default max_attempts of 3)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Sha;
    use crate::state::{Failure, RefState, RepoState};

    fn config(names: &[&str]) -> Config {
        let mut yaml = String::from("global:\n  max_attempts: 3\nrepositories:\n");
        for n in names {
            yaml.push_str(&format!(
                "  - name: {n}\n    monitor:\n      repo_url: https://github.com/acme/{n}\n      branches: [main]\n      \
                 repo_type: github\n    deploy:\n      qa_repo_url: https://gitlab.com/acme/qa\n      qa_repo_branch: main\n      \
                 repo_type: gitlab\n      project_name: {n}\n      commands: [\"true\"]\n"
            ));
        }
        crate::config::parse(std::path::Path::new("t.yaml"), &yaml, &|_| None).expect("valid config")
    }

    fn sha(c: char) -> Sha {
        Sha::parse(&c.to_string().repeat(40)).expect("sha")
    }

    fn state() -> State {
        let mut s = State::default();
        let mut r = RepoState { last_checked: Some("2026-11-22T12:00:00Z".into()), ..Default::default() };
        r.branches.insert(
            "main".into(),
            Box::new(RefState {
                seen: Some(sha('a')),
                deployed: Some(sha('a')),
                deployed_at: Some("t1".into()),
                failure: None,
                ..Default::default()
            }),
        );
        r.branches.insert(
            "dev".into(),
            Box::new(RefState {
                seen: Some(sha('c')),
                deployed: Some(sha('b')),
                deployed_at: None,
                failure: Some(Failure { commit: sha('c'), attempts: 1, error: "exit 1\nmore".into(), at: "t2".into() }),
                ..Default::default()
            }),
        );
        r.branches.insert(
            "rel".into(),
            Box::new(RefState {
                seen: Some(sha('d')),
                deployed: None,
                deployed_at: None,
                failure: Some(Failure { commit: sha('d'), attempts: 3, error: "no space".into(), at: "t3".into() }),
                ..Default::default()
            }),
        );
        s.repos.insert("one".into(), r);
        s.repos.insert("gone".into(), RepoState { last_error: Some("404".into()), ..Default::default() });
        s
    }

    #[test]
    fn report_marks_parked_and_unseen_repositories() {
        let r = report(Some(&config(&["one", "two"])), &state(), "s.json");
        assert_eq!(r.order, ["one", "two", "gone"]);
        let one = &r.repositories["one"];
        assert!(one.configured == Some(true) && one.in_state);
        assert!(!one.branches["dev"].parked);
        assert!(one.branches["rel"].parked);
        assert_eq!(one.branches["rel"].failure.as_ref().map(|f| f.max_attempts), Some(3));
        let two = &r.repositories["two"];
        assert!(two.configured == Some(true) && !two.in_state && two.branches.is_empty());
        assert_eq!(r.repositories["gone"].configured, Some(false));
        assert!(r.needs_human, "one/rel is parked");
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["repositories"]["one"]["branches"]["main"]["failure"], serde_json::Value::Null);
        assert_eq!(json["repositories"]["one"]["branches"]["main"]["seen"], "a".repeat(40));
        assert!(json.get("order").is_none());
    }

    #[test]
    fn a_repository_with_tag_records_only_shows_its_parked_tag() {
        let mut s = State::default();
        let mut r = RepoState { last_checked: Some("2026-11-22T12:00:00Z".into()), ..Default::default() };
        let failure = Failure { commit: sha('f'), attempts: 3, error: "exit 2".into(), at: "t".into() };
        r.tags.insert(
            "v1.2.0".into(),
            Box::new(RefState { seen: Some(sha('f')), failure: Some(failure), ..Default::default() }),
        );
        s.repos.insert("one".into(), r);
        let report = report(Some(&config(&["one"])), &s, "s.json");
        assert!(report.needs_human, "a parked tag needs a human");
        let text = anstream::adapter::strip_str(&human(&report)).to_string();
        assert!(text.contains("tag v1.2.0"), "{text}");
        assert!(!text.contains("no matching branch"), "{text}");
    }

    #[test]
    fn control_characters_in_branch_names_never_reach_the_terminal() {
        let mut s = state();
        let mut r = RepoState::default();
        let failure = Failure { commit: sha('e'), attempts: 1, error: "boom\x1b[2J".into(), at: "t".into() };
        r.branches.insert(
            "x\x1b]0;pwned\x07".into(),
            Box::new(RefState { seen: Some(sha('e')), failure: Some(failure), ..Default::default() }),
        );
        s.repos.insert("one".into(), r);
        // Our own colour codes aside, nothing that reaches the terminal is a control character.
        let text = anstream::adapter::strip_str(&human(&report(Some(&config(&["one"])), &s, "s.json"))).to_string();
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        assert!(text.contains("x\\x1b]0;pwned\\x07"), "{text}");
        assert!(text.contains("boom\\x1b[2J"), "{text}");
    }

    #[test]
    fn human_table_has_short_shas_and_full_errors_below() {
        let text = anstream::adapter::strip_str(&human(&report(Some(&config(&["one", "two"])), &state(), "s.json")))
            .to_string();
        assert!(text.contains("State: s.json (never saved)"), "{text}");
        assert!(text.contains("aaaaaaaa  aaaaaaaa"), "{text}");
        assert!(!text.contains(&"a".repeat(9)), "short SHAs only: {text}");
        assert!(text.contains("retry cccccccc (1/3)"), "{text}");
        assert!(text.contains("PARKED after 3 attempts (dddddddd)"), "{text}");
        assert!(text.contains("one/rel: parked for dddddddd after 3 attempts, at t3: no space"), "{text}");
        assert!(text.contains("one/dev: retry pending for cccccccc, attempt 1 of 3, at t2: exit 1 …"), "{text}");
        assert!(text.contains("no state yet"), "{text}");
        assert!(text.contains("gone (not configured)"), "{text}");
        assert!(text.contains("gone: last check failed: 404"), "{text}");
        let header = text.lines().find(|l| l.starts_with("REPOSITORY")).expect("header");
        let row = text.lines().find(|l| l.starts_with("one ")).expect("row");
        assert_eq!(header.find("SEEN"), row.find("cccccccc"), "columns line up:\n{text}");
    }
}

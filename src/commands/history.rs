//! `sentry history`: the recorded deployments, newest first (SPEC §1, §5).

use super::{emit, json_text};
use crate::cli::{HistoryArgs, OutputFormat};
use crate::config::Config;
use crate::error::{Error, Exit};
use crate::model::{JobStatus, Reason};
use crate::report::table;
use crate::state::State;
use serde::Serialize;

/// One line of `history --output json` (SPEC §5).
#[derive(Debug, Serialize)]
struct Row<'a> {
    repo: &'a str,
    branch: Option<&'a str>,
    tag: Option<&'a str>,
    commit: &'a str,
    status: JobStatus,
    reason: Reason,
    attempt: u32,
    started_at: &'a str,
    duration_ms: u64,
    run_id: &'a str,
}

/// Runs `history`.
pub fn history(config: &Config, scope: &super::Scope, output: OutputFormat, args: &HistoryArgs) -> Result<Exit, Error> {
    let (state, _) = super::read_states(scope, Some(config), config.global.http_timeout)?;
    let rows = rows(&state, args);
    let text = match output {
        OutputFormat::Json => json_text(&rows) + "\n",
        OutputFormat::Human if rows.is_empty() => "no deployment recorded\n".to_string(),
        OutputFormat::Human => {
            let header = ["STARTED", "REPOSITORY", "BRANCH", "COMMIT", "STATUS", "REASON", "ATTEMPT", "TIME", "RUN"]
                .map(String::from);
            let body: Vec<[String; 9]> = rows
                .iter()
                .map(|r| {
                    [
                        r.started_at.to_string(),
                        crate::text::printable(r.repo),
                        crate::text::printable(r.branch.or(r.tag).unwrap_or("")),
                        r.commit.chars().take(8).collect(),
                        r.status.as_str().to_string(),
                        r.reason.as_str().to_string(),
                        r.attempt.to_string(),
                        format!("{:.1}s", r.duration_ms as f64 / 1000.0),
                        r.run_id.to_string(),
                    ]
                })
                .collect();
            table(&header, &body)
        }
    };
    Ok(emit(&text, Exit::Success))
}

/// The entries that match `args`, newest first, at most `args.limit`.
fn rows<'s>(state: &'s State, args: &HistoryArgs) -> Vec<Row<'s>> {
    let mut rows: Vec<Row<'s>> = state
        .repos
        .iter()
        .filter(|(name, _)| args.repo.as_ref().is_none_or(|r| r == *name))
        .flat_map(|(name, repo)| {
            let branches = repo.branches.iter().map(|(b, r)| (Some(b.as_str()), None, r));
            let tags = repo.tags.iter().map(|(t, r)| (None, Some(t.as_str()), r));
            branches.chain(tags).flat_map(move |(branch, tag, r)| {
                r.history.iter().map(move |e| Row {
                    repo: name,
                    branch,
                    tag,
                    commit: e.commit.as_str(),
                    status: e.status,
                    reason: e.reason,
                    attempt: e.attempt,
                    started_at: &e.started_at,
                    duration_ms: e.duration_ms,
                    run_id: &e.run_id,
                })
            })
        })
        .filter(|row| args.branch.as_deref().is_none_or(|b| row.branch == Some(b)))
        .collect();
    // RFC 3339 in UTC sorts as text.
    rows.sort_by(|a, b| b.started_at.cmp(a.started_at));
    rows.truncate(args.limit);
    rows
}

//! What a run reports (the SPEC §5 summary, as a value and as the human table) and the exit
//! code it implies; the one table renderer. Printing is the commands' business.

use crate::error::Exit;
use crate::model::DeploymentRecord;
use crate::text::terminal_safe;
use serde::Serialize;

/// The summary of a `poll` pass or a `deploy` (SPEC §5).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Identifies the run in logs, state and notifications.
    pub run_id: String,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// How long it took.
    pub duration_ms: u64,
    /// True when nothing was deployed or written on purpose.
    pub dry_run: bool,
    /// One entry per repository checked.
    pub checked: Vec<Checked>,
    /// One entry per deployment (planned ones in a dry run, with status `skipped`).
    pub deployments: Vec<DeploymentRecord>,
    /// Deployments parked after `max_attempts` failures: listed on every run until a human acts.
    pub parked: Vec<Parked>,
    /// Problems that did not stop the run (unreachable repositories, failed state saves).
    pub errors: Vec<String>,
    /// Why the pass did nothing at all (another run holds the lock); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// A state save failed after a deployment (exit 4: the next run may deploy it again).
    #[serde(skip)]
    pub state_error: bool,
}

/// A parked deployment (SPEC §5 `parked`).
#[derive(Clone, Debug, Serialize)]
pub struct Parked {
    /// Repository name.
    pub repo: String,
    /// The branch (`null` for a tag).
    pub branch: Option<String>,
    /// The tag (`null` for a branch).
    pub tag: Option<String>,
    /// The commit that keeps failing.
    pub commit: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: String,
}

/// Writes name-value pairs as one JSON object.
fn as_object<S: serde::Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

/// Writes name-value pairs, when there are any, as one JSON object.
fn as_optional_object<S: serde::Serializer>(pairs: &Option<Vec<(String, String)>>, s: S) -> Result<S::Ok, S::Error> {
    as_object(pairs.as_deref().unwrap_or_default(), s)
}

/// One repository's check.
#[derive(Clone, Debug, Serialize)]
pub struct Checked {
    /// Repository name.
    pub repo: String,
    /// Matching branch -> head, in name order (a JSON object). A list, not a map: one B-tree
    /// node per repository has room for 11 entries, ~0.5 KiB for the usual single branch.
    #[serde(serialize_with = "as_object")]
    pub branches: Vec<(String, String)>,
    /// Matching tag -> commit (`{}` for a repository that monitors no tags, as SPEC §5 shows
    /// the key on every entry).
    #[serde(serialize_with = "as_optional_object")]
    pub tags: Option<Vec<(String, String)>>,
    /// Why it could not be checked.
    pub error: Option<String>,
}

impl Summary {
    /// The exit code SPEC §5 assigns: 4 if the state could not be saved, else 1 if a deployment
    /// failed or timed out, else 3 if a repository could not be checked, else 0.
    pub fn exit(&self) -> Exit {
        if self.state_error {
            Exit::State
        } else if self.deployments.iter().any(|d| d.status.is_failure()) {
            Exit::DeployFailed
        } else if self.checked.iter().any(|c| c.error.is_some()) {
            Exit::CheckFailed
        } else {
            Exit::Success
        }
    }

    /// The human table.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let failed_checks = self.checked.iter().filter(|c| c.error.is_some()).count();
        out.push_str(&format!(
            "{}checked {} repositor{}{}\n",
            if self.dry_run { "[dry run] " } else { "" },
            self.checked.len(),
            if self.checked.len() == 1 { "y" } else { "ies" },
            if failed_checks > 0 { format!(", {failed_checks} could not be checked") } else { String::new() }
        ));
        for c in self.checked.iter().filter(|c| c.error.is_some()) {
            let line = format!("{}: {}", c.repo, c.error.as_deref().unwrap_or(""));
            out.push_str(&format!("  {}\n", terminal_safe(&line)));
        }
        if self.deployments.is_empty() {
            out.push_str("nothing to deploy\n");
        } else {
            let rows: Vec<[String; 6]> = self
                .deployments
                .iter()
                .map(|d| {
                    let detail = match (&d.failed_command, &d.error) {
                        // A timeout says so, not "exited by signal" of the command it stopped.
                        (_, Some(e)) if d.status == crate::model::JobStatus::TimedOut => e.clone(),
                        (Some(f), _) => f.to_string(),
                        (None, Some(e)) => e.clone(),
                        (None, None) if d.status == crate::model::JobStatus::Filtered => {
                            format!("filtered: {}", d.reason.as_str())
                        }
                        (None, None) if self.dry_run => d.reason.as_str().to_string(),
                        (None, None) => String::new(),
                    };
                    // The JSON's word too: planned deployments of a dry run are `skipped`.
                    let status = d.status.as_str();
                    [
                        crate::text::printable(&d.repo),
                        crate::text::printable(d.ref_name()),
                        d.commit.short().to_string(),
                        status.to_string(),
                        format!("{:.1}s", d.duration_ms as f64 / 1000.0),
                        detail,
                    ]
                })
                .collect();
            let header = ["REPOSITORY", "BRANCH", "COMMIT", "STATUS", "TIME", "DETAIL"].map(String::from);
            out.push_str(&table_coloured(&header, &rows, Some(3)));
        }
        for p in &self.parked {
            let line = format!(
                "parked: {}/{} {} after {} attempts: {} (push a new commit or run `sentry deploy`)",
                p.repo,
                p.branch.as_deref().or(p.tag.as_deref()).unwrap_or_default(),
                p.commit.chars().take(8).collect::<String>(),
                p.attempts,
                crate::text::first_line(&p.error, 200)
            );
            out.push_str(&format!("{}\n", terminal_safe(&line)));
        }
        // A check error was listed with its repository above: once is enough.
        let said = |e: &str| self.checked.iter().any(|c| c.error.is_some() && e.starts_with(&format!("{}: ", c.repo)));
        for e in self.errors.iter().filter(|e| !said(e)) {
            out.push_str(&format!("error: {}\n", terminal_safe(e)));
        }
        out
    }
}

/// Left-aligned columns, two spaces apart, trailing blanks trimmed. Cells are shown
/// terminal-safe (names come from forges and state files: no escape sequence reaches the
/// terminal, no newline breaks a row).
pub fn table<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    table_coloured(header, rows, None)
}

/// [`table`], with the cells of column `status` coloured by what they say (green for done,
/// red for what needs a human, yellow for what waits). The codes are always written; the
/// command layer's stdout drops them unless it is a terminal without `NO_COLOR`.
pub fn table_coloured<const N: usize>(header: &[String; N], rows: &[[String; N]], status: Option<usize>) -> String {
    let rows: Vec<[String; N]> = rows.iter().map(|r| r.each_ref().map(|c| terminal_safe(c).into_owned())).collect();
    let rows = rows.as_slice();
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (r, row) in std::iter::once(header).chain(rows).enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                let pad = " ".repeat(w.saturating_sub(cell.chars().count()));
                match status.filter(|s| *s == c && r > 0).and_then(|_| colour_of(cell)) {
                    Some(style) => format!("{style}{cell}{style:#}{pad}"),
                    None => format!("{cell}{pad}"),
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The colour of a status cell, by its first word.
fn colour_of(cell: &str) -> Option<anstyle::Style> {
    use anstyle::AnsiColor::{Green, Red, Yellow};
    let word = cell.split_whitespace().next().unwrap_or("");
    let colour = match word {
        "succeeded" | "up" => Green,
        "failed" | "timed_out" | "PARKED" | "check" => Red,
        "retry" | "skipped" | "not" | "pinned" | "gone" | "baseline" => Yellow,
        _ => return None,
    };
    Some(anstyle::Style::new().fg_color(Some(colour.into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FailedCommand, JobStatus, Reason, Sha};

    fn deployment(status: JobStatus) -> DeploymentRecord {
        DeploymentRecord {
            repo: "a".into(),
            group: None,
            branch: "main".into(),
            tag: None,
            commit: Sha::parse(&"a".repeat(40)).expect("sha"),
            previous_commit: None,
            status,
            reason: Reason::Changed,
            attempt: 1,
            duration_ms: 1200,
            failed_command: None,
            error: None,
            output_tail: String::new(),
            on_failure: None,
        }
    }

    fn summary(deployments: Vec<DeploymentRecord>, check_error: bool) -> Summary {
        Summary {
            run_id: "r".into(),
            started_at: "t".into(),
            duration_ms: 0,
            dry_run: false,
            checked: vec![Checked {
                repo: "a".into(),
                branches: Vec::new(),
                tags: None,
                error: check_error.then(|| "unreachable".into()),
            }],
            deployments,
            parked: vec![],
            errors: vec![],
            skipped: None,
            state_error: false,
        }
    }

    #[test]
    fn exit_codes_follow_spec() {
        assert_eq!(summary(vec![], false).exit(), Exit::Success);
        assert_eq!(
            summary(vec![deployment(JobStatus::Succeeded), deployment(JobStatus::Skipped)], false).exit(),
            Exit::Success
        );
        assert_eq!(summary(vec![], true).exit(), Exit::CheckFailed);
        assert_eq!(summary(vec![deployment(JobStatus::Failed)], true).exit(), Exit::DeployFailed);
        assert_eq!(summary(vec![deployment(JobStatus::TimedOut)], false).exit(), Exit::DeployFailed);
        assert_eq!(summary(vec![deployment(JobStatus::Interrupted)], false).exit(), Exit::DeployFailed);
    }

    #[test]
    fn json_has_the_spec_keys() {
        let v = serde_json::to_value(summary(vec![deployment(JobStatus::Succeeded)], false)).expect("json");
        for k in ["run_id", "started_at", "duration_ms", "dry_run", "checked", "deployments", "errors"] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        let d = &v["deployments"][0];
        for k in [
            "repo",
            "group",
            "branch",
            "commit",
            "previous_commit",
            "status",
            "attempt",
            "duration_ms",
            "failed_command",
            "output_tail",
        ] {
            assert!(d.get(k).is_some(), "deployment missing {k}");
        }
    }

    #[test]
    fn status_cells_are_coloured_and_still_align() {
        let header = ["A", "STATUS"].map(String::from);
        let rows = [["x".to_string(), "failed".to_string()], ["yy".to_string(), "succeeded".to_string()]];
        let text = table_coloured(&header, &rows, Some(1));
        assert!(text.contains("\u{1b}[31mfailed\u{1b}[0m"), "{text:?}");
        assert!(text.contains("\u{1b}[32msucceeded\u{1b}[0m"), "{text:?}");
        let plain = anstream::adapter::strip_str(&text).to_string();
        assert_eq!(plain, table(&header, &rows), "same layout without the codes");
    }

    #[test]
    fn control_characters_from_names_never_reach_the_terminal() {
        let mut d = deployment(JobStatus::Failed);
        d.branch = "evil\x1b]0;pwned\x07\u{9b}2J".into();
        d.error = Some("line one\nline two".into());
        let mut s = summary(vec![d], true);
        s.errors.push("bad \x1b[31m".into());
        // Our own colour codes aside, nothing that reaches the terminal is a control character.
        let text = anstream::adapter::strip_str(&s.human()).to_string();
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        assert!(text.contains("evil\\x1b]0;pwned\\x07\\x9b2J"), "{text}");
        assert!(text.contains("line one\\x0aline two"), "{text}");
        assert!(text.contains("error: bad \\x1b[31m"), "{text}");
    }

    #[test]
    fn human_table_aligns() {
        let mut d = deployment(JobStatus::Failed);
        d.failed_command = Some(FailedCommand { index: 1, command: "make deploy".into(), exit_code: Some(2) });
        // As a pipe or NO_COLOR sees it: the colour codes stripped.
        let text = anstream::adapter::strip_str(&summary(vec![d], false).human()).to_string();
        assert!(text.contains("REPOSITORY  BRANCH  COMMIT    STATUS  TIME  DETAIL"), "{text}");
        assert!(
            text.contains("a           main    aaaaaaaa  failed  1.2s  command 1 `make deploy` exited 2"),
            "{text}"
        );
    }
}

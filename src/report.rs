//! What a run prints on stdout (human table or SPEC §5 JSON) and the exit code it implies.

use crate::cli::OutputFormat;
use crate::config::{Config, ConfigError};
use crate::error::Exit;
pub use crate::model::FailedCommand;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

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
    pub deployments: Vec<Deployment>,
    /// Problems that did not stop the run (unreachable repositories, failed state saves).
    pub errors: Vec<String>,
    /// Why the pass did nothing at all (another run holds the lock); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// A state save failed after a deployment (exit 4: the next run may deploy it again).
    #[serde(skip)]
    pub state_error: bool,
}

/// One repository's check.
#[derive(Clone, Debug, Serialize)]
pub struct Checked {
    /// Repository name.
    pub repo: String,
    /// Matching branch -> head.
    pub branches: BTreeMap<String, String>,
    /// Why it could not be checked.
    pub error: Option<String>,
}

/// One deployment's result.
#[derive(Clone, Debug, Serialize)]
pub struct Deployment {
    /// Repository name.
    pub repo: String,
    /// Its group.
    pub group: Option<String>,
    /// The branch.
    pub branch: String,
    /// The commit deployed.
    pub commit: String,
    /// The commit deployed before, if any.
    pub previous_commit: Option<String>,
    /// `succeeded`, `failed`, `timed_out` or `skipped`.
    pub status: String,
    /// Why it was planned: first_seen, new_branch, changed, retry, group_trigger, manual.
    pub reason: crate::model::Reason,
    /// Which attempt at this commit.
    pub attempt: u32,
    /// How long it took.
    pub duration_ms: u64,
    /// The command that failed, if one did.
    pub failed_command: Option<FailedCommand>,
    /// Why it failed when no command did (clone, timeout, signal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The end of the output, redacted.
    pub output_tail: String,
}

impl Summary {
    /// The exit code SPEC §5 assigns: 4 if the state could not be saved, else 1 if a deployment
    /// failed or timed out, else 3 if a repository could not be checked, else 0.
    pub fn exit(&self) -> Exit {
        if self.state_error {
            Exit::State
        } else if self.deployments.iter().any(|d| d.status == "failed" || d.status == "timed_out") {
            Exit::DeployFailed
        } else if self.checked.iter().any(|c| c.error.is_some()) {
            Exit::CheckFailed
        } else {
            Exit::Success
        }
    }

    /// Prints the summary in the requested format.
    pub fn print(&self, output: OutputFormat) {
        match output {
            OutputFormat::Json => match serde_json::to_string(self) {
                Ok(s) => println!("{s}"),
                Err(e) => log::error!("cannot serialize the summary: {e}"),
            },
            OutputFormat::Human => print!("{}", self.human()),
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
            out.push_str(&format!("  {}: {}\n", c.repo, c.error.as_deref().unwrap_or("")));
        }
        if self.deployments.is_empty() {
            out.push_str("nothing to deploy\n");
        } else {
            let rows: Vec<[String; 6]> = self
                .deployments
                .iter()
                .map(|d| {
                    let detail = match (&d.failed_command, &d.error) {
                        (Some(f), _) => f.to_string(),
                        (None, Some(e)) => e.clone(),
                        (None, None) if self.dry_run => d.reason.as_str().to_string(),
                        (None, None) => String::new(),
                    };
                    let status = if self.dry_run { "planned".to_string() } else { d.status.clone() };
                    [
                        d.repo.clone(),
                        d.branch.clone(),
                        d.commit.chars().take(8).collect(),
                        status,
                        format!("{:.1}s", d.duration_ms as f64 / 1000.0),
                        detail,
                    ]
                })
                .collect();
            let header = ["REPOSITORY", "BRANCH", "COMMIT", "STATUS", "TIME", "DETAIL"].map(String::from);
            out.push_str(&table(&header, &rows));
        }
        for e in &self.errors {
            out.push_str(&format!("error: {e}\n"));
        }
        out
    }
}

/// Left-aligned columns, two spaces apart, trailing blanks trimmed.
pub fn table<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let line: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Prints a valid configuration's summary; exit 0.
pub fn validate_ok(output: OutputFormat, config: &Config) -> Exit {
    match output {
        OutputFormat::Json => println!("{}", json!({"valid": true, "errors": []})),
        OutputFormat::Human => println!(
            "{}: valid ({} repositories, {} groups)",
            config.path.display(),
            config.repositories.len(),
            config.groups.len()
        ),
    }
    Exit::Success
}

/// Prints every problem of an invalid configuration; exit 2.
pub fn validate_failed(output: OutputFormat, err: &ConfigError) -> Exit {
    match output {
        OutputFormat::Json => {
            let errors: Vec<_> = err
                .problems
                .iter()
                .map(|p| json!({"path": p.path, "line": p.line, "message": crate::logging::redact(&p.message)}))
                .collect();
            println!("{}", json!({"valid": false, "errors": errors}));
        }
        OutputFormat::Human => eprintln!("error: {}", crate::logging::redact(&err.to_string())),
    }
    Exit::Usage
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Reason;

    fn deployment(status: &str) -> Deployment {
        Deployment {
            repo: "a".into(),
            group: None,
            branch: "main".into(),
            commit: "a".repeat(40),
            previous_commit: None,
            status: status.into(),
            reason: Reason::Changed,
            attempt: 1,
            duration_ms: 1200,
            failed_command: None,
            error: None,
            output_tail: String::new(),
        }
    }

    fn summary(deployments: Vec<Deployment>, check_error: bool) -> Summary {
        Summary {
            run_id: "r".into(),
            started_at: "t".into(),
            duration_ms: 0,
            dry_run: false,
            checked: vec![Checked {
                repo: "a".into(),
                branches: BTreeMap::new(),
                error: check_error.then(|| "unreachable".into()),
            }],
            deployments,
            errors: vec![],
            skipped: None,
            state_error: false,
        }
    }

    #[test]
    fn exit_codes_follow_spec() {
        assert_eq!(summary(vec![], false).exit(), Exit::Success);
        assert_eq!(summary(vec![deployment("succeeded"), deployment("skipped")], false).exit(), Exit::Success);
        assert_eq!(summary(vec![], true).exit(), Exit::CheckFailed);
        assert_eq!(summary(vec![deployment("failed")], true).exit(), Exit::DeployFailed);
        assert_eq!(summary(vec![deployment("timed_out")], false).exit(), Exit::DeployFailed);
    }

    #[test]
    fn json_has_the_spec_keys() {
        let v = serde_json::to_value(summary(vec![deployment("succeeded")], false)).expect("json");
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
    fn human_table_aligns() {
        let mut d = deployment("failed");
        d.failed_command = Some(FailedCommand { index: 1, command: "make deploy".into(), exit_code: Some(2) });
        let text = summary(vec![d], false).human();
        assert!(text.contains("REPOSITORY  BRANCH  COMMIT    STATUS  TIME  DETAIL"), "{text}");
        assert!(
            text.contains("a           main    aaaaaaaa  failed  1.2s  command 1 `make deploy` exited 2"),
            "{text}"
        );
    }
}

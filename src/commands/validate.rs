//! `sentry validate` (and `--connectivity`): the configuration's verdict on stdout.

use super::{emit, json_text};
use crate::cli::OutputFormat;
use crate::config::{Config, ConfigError, Problem, known_line};
use crate::error::{Error, Exit};
use crate::forge::connectivity::{self, Probe};
use crate::model::Shard;
use serde_json::json;

/// A problem as `validate --output json` lists it.
fn problem_json(p: &Problem) -> serde_json::Value {
    json!({"path": p.path, "line": p.line, "message": crate::logging::redact(&p.message)})
}

/// The warnings of a configuration, one `warning:` line each, on stderr like the errors.
fn print_warnings(config: &Config) {
    for w in &config.warnings {
        eprintln!("warning: {}: {}", config.path.display(), crate::logging::redact(&w.to_string()));
    }
}

/// Prints a valid configuration's summary and its warnings; exit 0. Quiet: nothing on stdout.
pub fn valid(config: &Config, output: OutputFormat, quiet: bool, shard: Option<Shard>) -> Exit {
    let warnings: Vec<_> = config.warnings.iter().map(problem_json).collect();
    // With --shard N: how the repositories spread over the N shards (groups kept whole).
    let spread: Vec<usize> = shard.map_or_else(Vec::new, |s| {
        let mut n = vec![0usize; s.count as usize];
        for r in &config.repositories {
            if let Some(slot) = n.get_mut(Shard::of(r.group.as_deref().unwrap_or(&r.name), s.count) as usize) {
                *slot += 1;
            }
        }
        n
    });
    let text = match output {
        OutputFormat::Json if shard.is_some() => {
            let shards: Vec<_> =
                spread.iter().enumerate().map(|(i, n)| json!({"shard": i, "repositories": n})).collect();
            json!({"valid": true, "errors": [], "warnings": warnings, "shards": shards}).to_string()
        }
        OutputFormat::Json => json!({"valid": true, "errors": [], "warnings": warnings}).to_string(),
        OutputFormat::Human => {
            print_warnings(config);
            let n = config.warnings.len();
            let warned = match n {
                0 => String::new(),
                1 => ", 1 warning".to_string(),
                n => format!(", {n} warnings"),
            };
            let mut text = format!(
                "{}: valid ({} repositories, {} groups{warned})",
                config.path.display(),
                config.repositories.len(),
                config.groups.len()
            );
            for (i, n) in spread.iter().enumerate() {
                text.push_str(&format!("\nshard {i}/{}: {n} repositories", spread.len()));
            }
            text
        }
    };
    if quiet {
        return Exit::Success;
    }
    emit(&(text + "\n"), Exit::Success)
}

/// Prints every problem of an invalid configuration; exit 2.
pub fn invalid(err: &ConfigError, output: OutputFormat) -> Exit {
    match output {
        OutputFormat::Json => {
            let errors: Vec<_> = err.problems.iter().map(problem_json).collect();
            let doc = json!({"valid": false, "errors": errors, "warnings": []});
            emit(&(doc.to_string() + "\n"), Exit::Usage)
        }
        OutputFormat::Human => {
            // Problems are diagnostics, like clap's: on stderr.
            eprintln!("error: {}", crate::logging::redact(&err.to_string()));
            Exit::Usage
        }
    }
}

/// `validate --connectivity`: one line per probe; exit 3 if any failed or a `branches` pattern
/// matches nothing on a reachable repository. Quiet: printed only then.
pub fn connectivity(config: &Config, output: OutputFormat, quiet: bool) -> Result<Exit, Error> {
    let reached = connectivity::probe_all(config).map_err(|e| Error::Setup(format!("{e:#}")))?;
    let mut errors = Vec::new();
    let mut lines = Vec::new();
    for r in &reached {
        let Some(repo) = config.repositories.get(r.index) else { continue };
        let side = r.probe.as_str();
        let url = match r.probe {
            Probe::Monitor => repo.monitor.repo_url.as_str(),
            Probe::Deploy => repo.deploy.qa_repo_url.as_str(),
        };
        match &r.result {
            Ok(what) if r.unmatched.is_empty() && r.unmatched_tags.is_empty() => {
                lines.push(format!("ok    {} {side:<7} {url}: {what}", repo.name))
            }
            Ok(what) => {
                for pattern in &r.unmatched {
                    let message = format!(
                        "branch pattern {pattern:?} matches no branch of {url} (patterns match the whole \
                         branch name; {what} in all)"
                    );
                    lines.push(format!("FAIL  {} {side:<7} {message}", repo.name));
                    let i = repo.monitor.patterns.iter().position(|p| p == pattern).unwrap_or(0);
                    errors.push(json!({
                        "path": format!("repositories[{}].monitor.branches[{i}]", r.index),
                        "line": known_line(repo.monitor.lines.branches),
                        "message": message,
                    }));
                }
                for pattern in &r.unmatched_tags {
                    let message = format!(
                        "tag pattern {pattern:?} matches no tag of {url} (patterns match the whole tag name; {what})"
                    );
                    lines.push(format!("FAIL  {} {side:<7} {message}", repo.name));
                    let i = repo.monitor.tag_patterns.iter().position(|p| p == pattern).unwrap_or(0);
                    errors.push(json!({
                        "path": format!("repositories[{}].monitor.tags[{i}]", r.index),
                        "line": known_line(repo.monitor.lines.tags),
                        "message": message,
                    }));
                }
            }
            Err(message) => {
                lines.push(format!("FAIL  {} {side:<7} {message}", repo.name));
                // The section that could not be reached, on the line of its URL.
                let at = match r.probe {
                    Probe::Monitor => repo.monitor.lines.repo_url,
                    Probe::Deploy => repo.deploy.qa_repo_url_line,
                };
                errors.push(json!({
                    "path": format!("repositories[{}].{side}", r.index),
                    "line": known_line(at),
                    "message": message,
                }));
            }
        }
    }
    let exit = if errors.is_empty() { Exit::Success } else { Exit::CheckFailed };
    if quiet && errors.is_empty() {
        return Ok(exit);
    }
    let warnings: Vec<_> = config.warnings.iter().map(problem_json).collect();
    let text = match output {
        OutputFormat::Json => {
            json_text(&json!({"valid": errors.is_empty(), "errors": errors, "warnings": warnings})) + "\n"
        }
        OutputFormat::Human => {
            print_warnings(config);
            let mut text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            text.push_str(&format!("{}: {} checks, {} failed\n", config.path.display(), lines.len(), errors.len()));
            text
        }
    };
    Ok(emit(&text, exit))
}

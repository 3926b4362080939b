//! `sentry validate` (and `--connectivity`): the configuration's verdict on stdout.

use super::{emit, json_text};
use crate::cli::OutputFormat;
use crate::config::{Config, ConfigError};
use crate::error::{Error, Exit};
use crate::forge::connectivity::{self, Probe};
use serde_json::json;

/// Prints a valid configuration's summary; exit 0.
pub fn valid(config: &Config, output: OutputFormat) -> Exit {
    let text = match output {
        OutputFormat::Json => json!({"valid": true, "errors": []}).to_string(),
        OutputFormat::Human => format!(
            "{}: valid ({} repositories, {} groups)",
            config.path.display(),
            config.repositories.len(),
            config.groups.len()
        ),
    };
    emit(&(text + "\n"), Exit::Success)
}

/// Prints every problem of an invalid configuration; exit 2.
pub fn invalid(err: &ConfigError, output: OutputFormat) -> Exit {
    match output {
        OutputFormat::Json => {
            let errors: Vec<_> = err
                .problems
                .iter()
                .map(|p| json!({"path": p.path, "line": p.line, "message": crate::logging::redact(&p.message)}))
                .collect();
            emit(&(json!({"valid": false, "errors": errors}).to_string() + "\n"), Exit::Usage)
        }
        OutputFormat::Human => {
            // Problems are diagnostics, like clap's: on stderr.
            eprintln!("error: {}", crate::logging::redact(&err.to_string()));
            Exit::Usage
        }
    }
}

/// `validate --connectivity`: one line per probe; exit 3 if any failed.
pub fn connectivity(config: &Config, output: OutputFormat) -> Result<Exit, Error> {
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
            Ok(what) => lines.push(format!("ok    {} {side:<7} {url}: {what}", repo.name)),
            Err(message) => {
                lines.push(format!("FAIL  {} {side:<7} {message}", repo.name));
                errors.push(
                    json!({"path": format!("repositories[{}].{side}", r.index), "line": null, "message": message}),
                );
            }
        }
    }
    let exit = if errors.is_empty() { Exit::Success } else { Exit::CheckFailed };
    let text = match output {
        OutputFormat::Json => json_text(&json!({"valid": errors.is_empty(), "errors": errors}), false) + "\n",
        OutputFormat::Human => {
            let mut text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            text.push_str(&format!("{}: {} checks, {} failed\n", config.path.display(), lines.len(), errors.len()));
            text
        }
    };
    Ok(emit(&text, exit))
}

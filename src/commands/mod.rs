//! The commands: the only code that writes to stdout or picks an exit code. Each takes the
//! loaded configuration and its arguments, asks the pipeline or a store for values, renders
//! them (human or JSON) and returns the SPEC §5 exit code.

mod deploy;
mod history;
mod poll;
mod rollback;
mod status;
mod validate;

pub use deploy::deploy;
pub use history::history;
pub use poll::poll;
pub use rollback::rollback;
pub use status::status;
pub use validate::{connectivity, invalid, valid};

use crate::cli::OutputFormat;
use crate::config::{Config, Repository};
use crate::error::{Error, Exit};
use crate::model::Location;
use crate::model::location::DEFAULT_LOCATION;
use crate::report::Summary;
use std::io::Write;

/// Writes `text` to stdout and flushes it.
fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Prints `text` and returns `exit`. A closed pipe (`| head`) ends quietly with the run's own
/// code; another write error (a full disk) is logged, and a run that had succeeded exits 2.
fn emit(text: &str, exit: Exit) -> Exit {
    match write_stdout(text) {
        Ok(()) => exit,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit,
        Err(e) => {
            log::error!("{}", Error::Output(e));
            exit.max(Exit::Usage)
        }
    }
}

/// JSON text of a value that always serializes (plain data, string keys).
fn json_text(value: &impl serde::Serialize, pretty: bool) -> String {
    let text = if pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) };
    // Our report types have string keys and no custom serializers that fail.
    text.unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize the output: {e}\"}}"))
}

/// Prints a run's summary and returns its exit code, logging the one-line run record.
fn finish(summary: &Summary, output: OutputFormat) -> Exit {
    let exit = summary.exit();
    log::info!(
        run_id = summary.run_id.as_str(), checked = summary.checked.len(),
        check_errors = summary.checked.iter().filter(|c| c.error.is_some()).count(),
        deployments = summary.deployments.len(),
        failed = summary.deployments.iter().filter(|d| d.status.is_failure()).count(),
        duration_ms = summary.duration_ms, exit = exit.code();
        "run finished"
    );
    match output {
        OutputFormat::Json => emit(&(json_text(summary, false) + "\n"), exit),
        OutputFormat::Human => emit(&summary.human(), exit),
    }
}

/// Reports an error that ended a command before it had anything else to print: on stderr as a
/// log line, and with `--output json` also as `{"error", "exit_code"}` on stdout (SPEC §5).
pub fn failed(err: &Error, output: OutputFormat) -> Exit {
    let exit = err.exit();
    let message = crate::logging::redact(&err.to_string());
    log::error!("{message}");
    match output {
        OutputFormat::Json => {
            let doc = serde_json::json!({"error": message, "exit_code": exit.code()});
            emit(&(doc.to_string() + "\n"), exit)
        }
        OutputFormat::Human => exit,
    }
}

/// The state location of this run: `--state` / `SENTRY_STATE`, else `global.state`, else
/// `./sentry-state.json`.
fn location(cli: Option<&Location>, config: &Config) -> Result<Location, Error> {
    match cli.or(config.global.state.as_ref()) {
        Some(l) => Ok(l.clone()),
        None => Location::parse(DEFAULT_LOCATION).map_err(Error::Usage),
    }
}

/// The repositories a command covers: all, or those named and those in the named groups.
fn select<'c>(config: &'c Config, repos: &[String], groups: &[String]) -> Result<Vec<&'c Repository>, Error> {
    for name in repos {
        if config.repository(name).is_none() {
            return Err(unknown("repository", name, config.repositories.iter().map(|r| r.name.as_str())));
        }
    }
    for name in groups {
        if !config.groups.contains_key(name) {
            return Err(unknown("group", name, config.groups.keys().map(String::as_str)));
        }
    }
    Ok(config
        .repositories
        .iter()
        .filter(|r| {
            (repos.is_empty() && groups.is_empty())
                || repos.contains(&r.name)
                || r.group.as_ref().is_some_and(|g| groups.contains(g))
        })
        .collect())
}

fn unknown<'a>(what: &str, name: &str, known: impl Iterator<Item = &'a str>) -> Error {
    let known: Vec<_> = known.collect();
    let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
    Error::Usage(format!("unknown {what} {name:?} (known: {known})"))
}

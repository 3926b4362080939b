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
fn json_text(value: &impl serde::Serialize) -> String {
    let text = serde_json::to_string(value);
    // Our report types have string keys and no custom serializers that fail.
    text.unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize the output: {e}\"}}"))
}

/// True when a run's summary is worth printing under `--quiet` (SPEC §1 v2): something was
/// deployed (or would be, in a dry run), failed, or could not be checked.
fn noteworthy(summary: &Summary) -> bool {
    !summary.deployments.is_empty()
        || !summary.parked.is_empty()
        || summary.checked.iter().any(|c| c.error.is_some())
        || !summary.errors.is_empty()
}

/// Prints a run's summary and returns its exit code, logging the one-line run record. Quiet:
/// stdout stays empty unless the run did something worth a mail.
fn finish(summary: &Summary, output: OutputFormat, quiet: bool) -> Exit {
    let exit = summary.exit();
    let failed = summary.deployments.iter().filter(|d| d.status.is_failure()).count();
    let check_errors = summary.checked.iter().filter(|c| c.error.is_some()).count();
    if summary.dry_run {
        log::info!(
            checked = summary.checked.len(), check_errors = check_errors, planned = summary.deployments.len(),
            duration_ms = summary.duration_ms, exit = exit.code();
            "dry run finished: nothing deployed, nothing recorded"
        );
    } else {
        log::info!(
            checked = summary.checked.len(), check_errors = check_errors, deployments = summary.deployments.len(),
            failed = failed, parked = summary.parked.len(), duration_ms = summary.duration_ms, exit = exit.code();
            "run finished"
        );
    }
    if quiet && !noteworthy(summary) {
        return exit;
    }
    match output {
        OutputFormat::Json => emit(&(json_text(summary) + "\n"), exit),
        OutputFormat::Human => emit(&summary.human(), exit),
    }
}

/// `sentry completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> Exit {
    let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "sentry", &mut script);
    emit(&String::from_utf8_lossy(&script), Exit::Success)
}

/// `sentry man`: the man page (roff) on stdout.
pub fn man() -> Result<Exit, Error> {
    let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page).map_err(Error::Output)?;
    Ok(emit(&String::from_utf8_lossy(&page), Exit::Success))
}

/// Reports an error that ended a command before it had anything else to print: on stderr as a
/// log line, and with `--output json` also as `{"error", "exit_code"}` on stdout (SPEC §5). A
/// usage error found after parsing (an unknown repository, a bad `--commit`) reads like clap's
/// own: `error: ...`, its tips, and where to look.
pub fn failed(err: &Error, output: OutputFormat, command: &str) -> Exit {
    let exit = err.exit();
    let message = crate::logging::redact(&err.to_string());
    if let Error::Usage(_) = err {
        let mut lines = message.lines();
        let mut text = format!("error: {}\n", lines.next().unwrap_or_default());
        for tip in lines {
            text.push_str(&format!("\n  tip: {}\n", tip.trim()));
        }
        eprint!("{text}\nFor more information, try 'sentry {command} --help'.\n");
    } else {
        log::error!("{message}");
    }
    let message = message.lines().map(str::trim).collect::<Vec<_>>().join("; ");
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

/// An unknown `--repo`/`--group` name; the tip lists the known ones (the closest first).
fn unknown<'a>(what: &str, name: &str, known: impl Iterator<Item = &'a str>) -> Error {
    let mut known: Vec<_> = known.collect();
    let close = known.iter().position(|k| k.eq_ignore_ascii_case(name) || k.contains(name) || name.contains(*k));
    if let Some(i) = close {
        let k = known.remove(i);
        known.insert(0, k);
    }
    let shown: Vec<_> = known.iter().take(20).copied().collect();
    let more =
        if known.len() > shown.len() { format!(" and {} more", known.len() - shown.len()) } else { String::new() };
    let tip = match (close, shown.is_empty()) {
        (_, true) => format!("the configuration defines no {what}"),
        (Some(_), false) => format!("did you mean {:?}? known: {}{more}", shown[0], shown.join(", ")),
        (None, false) => format!("known: {}{more}", shown.join(", ")),
    };
    Error::Usage(format!("unknown {what} {name:?}\n{tip}"))
}

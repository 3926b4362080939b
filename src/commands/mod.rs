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
use crate::model::location::DEFAULT_LOCATION;
use crate::model::{Location, Shard};
use crate::report::Summary;
use std::io::Write;

/// Writes `text` to stdout and flushes it.
fn write_stdout(text: &str) -> std::io::Result<()> {
    // Colour codes reach a terminal only: anstream drops them for pipes, files and NO_COLOR.
    let mut out = anstream::AutoStream::auto(std::io::stdout().lock());
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
    // A filtered change is recorded, not deployed: nothing to mail about.
    summary.deployments.iter().any(|d| d.status != crate::model::JobStatus::Filtered)
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
        OutputFormat::Json => error_document(&message, exit),
        OutputFormat::Human => exit,
    }
}

/// SPEC §5: `{"error": message, "exit_code": n}` on stdout, for a run that fails before its
/// summary under `--output json` (a command line clap refused included); returns `exit`.
pub fn error_document(message: &str, exit: Exit) -> Exit {
    let doc = serde_json::json!({"error": message, "exit_code": exit.code()});
    emit(&(doc.to_string() + "\n"), exit)
}

/// Where the state is and which shard this process handles, from the command line.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// `--state` / `SENTRY_STATE`.
    pub state: Option<Location>,
    /// `--shard` / `SENTRY_SHARD`.
    pub shard: Option<Shard>,
}

/// The state locations a command reads: `--state`, else `global.state`, else
/// `./sentry-state.json`; with `--shard`, `{shard}` replaced by the shard's number (every
/// shard's for `all/N`). A sharded run without `{shard}` in its location is refused: two shards
/// must never share a state (SPEC §1).
fn locations(scope: &Scope, from_config: Option<&Location>) -> Result<Vec<Location>, Error> {
    let base = match scope.state.as_ref().or(from_config) {
        Some(l) => l.clone(),
        None => Location::parse(DEFAULT_LOCATION).map_err(Error::Usage)?,
    };
    let Some(shard) = scope.shard else { return Ok(vec![base]) };
    if !base.is_sharded() {
        return Err(Error::Usage(format!(
            "--shard {shard} needs {{shard}} in the state location (e.g. configmap:sentry-state-{{shard}}), so that shards never share a state; it is {base}"
        )));
    }
    Ok(match shard.index {
        Some(i) => vec![base.for_shard(i)],
        None => (0..shard.count).map(|i| base.for_shard(i)).collect(),
    })
}

/// `validate --shard`: the refusal a sharded run would meet for its state location (SPEC §2:
/// `--shard` without `{shard}`), as a problem of the configuration.
pub fn shard_problem(scope: &Scope, config: &Config) -> Option<crate::config::Problem> {
    scope.shard?;
    let message = match locations(scope, config.global.state.as_ref()) {
        Ok(_) => return None,
        Err(e) => e.to_string(),
    };
    let path = if scope.state.is_some() { "--state" } else { "global.state" };
    Some(crate::config::Problem { path: path.into(), line: None, message })
}

/// The one state location of a command that runs a pass (`all/N` is for status and history).
fn location(scope: &Scope, config: &Config) -> Result<Location, Error> {
    if scope.shard.is_some_and(|s| s.index.is_none()) {
        return Err(Error::Usage(
            "--shard all/N is for status and history; a pass runs one shard: I/N or auto/N".into(),
        ));
    }
    let mut all = locations(scope, config.global.state.as_ref())?;
    all.pop().ok_or_else(|| Error::Internal("no state location".into()))
}

/// The state of every location the scope names, read without a lock, and where each was read
/// (the namespace resolved); several shards' states are shown together (their repositories
/// never overlap; the newest `last_run` stands).
fn read_states(
    scope: &Scope,
    config: Option<&Config>,
    http_timeout: std::time::Duration,
) -> Result<(crate::state::State, Vec<String>), Error> {
    let mut merged: Option<crate::state::State> = None;
    let mut names = Vec::new();
    for location in locations(scope, config.and_then(|c| c.global.state.as_ref()))? {
        let (state, name) = crate::pipeline::read_state(&location, http_timeout)?;
        names.push(name);
        merged = Some(match merged {
            None => state,
            Some(mut m) => {
                if state.last_run.as_ref().map(|r| &r.at) > m.last_run.as_ref().map(|r| &r.at) {
                    m.last_run = state.last_run;
                }
                m.repos.extend(state.repos);
                m
            }
        });
    }
    let merged = merged.ok_or_else(|| Error::Internal("no state location".into()))?;
    Ok((merged, names))
}

/// True when `repo` belongs to this process's shard (every repository without `--shard`).
fn in_shard(repo: &Repository, shard: Option<Shard>) -> bool {
    match shard {
        Some(Shard { index: Some(i), count }) => Shard::of(repo.group.as_deref().unwrap_or(&repo.name), count) == i,
        _ => true,
    }
}

/// The repositories a command covers: all, or those named and those in the named groups; with
/// `--shard`, only those of this shard (the intersection).
fn select<'c>(
    config: &'c Config,
    repos: &[String],
    groups: &[String],
    shard: Option<Shard>,
) -> Result<Vec<&'c Repository>, Error> {
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
        .filter(|r| in_shard(r, shard))
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

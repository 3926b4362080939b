//! `sentry poll`: one pass with `--once` (or `--dry-run`), else a pass every polling_interval.

use super::{finish, location, select};
use crate::cli::{OutputFormat, PollArgs};
use crate::config::Config;
use crate::error::{Error, Exit};
use std::time::Instant;

/// Runs `poll`.
pub fn poll(
    config: &Config,
    state: Option<&crate::model::Location>,
    output: OutputFormat,
    args: &PollArgs,
) -> Result<Exit, Error> {
    let selected = select(config, &args.repos, &args.groups)?;
    let location = location(state, config)?;
    crate::signals::install();
    if args.once || args.dry_run {
        let summary = crate::pipeline::poll(config, &location, &selected, args.dry_run)?;
        // Another run holds the lock: a JSON consumer still gets its one object; the human
        // output stays empty, so cron does not mail every minute while a long deployment runs.
        if summary.skipped.is_some() && output == OutputFormat::Human {
            return Ok(Exit::Success);
        }
        return Ok(finish(&summary, output));
    }
    log::info!(interval_s = config.polling_interval.as_secs(); "polling until SIGTERM or SIGINT");
    loop {
        let started = Instant::now();
        match crate::pipeline::poll(config, &location, &selected, false) {
            Ok(summary) if summary.skipped.is_some() && output == OutputFormat::Human => {}
            Ok(summary) => {
                finish(&summary, output);
            }
            // A loop that serves a Deployment keeps going; the next pass may well succeed.
            Err(e) => log::error!("{}", crate::logging::redact(&format!("pass failed: {e}"))),
        }
        if crate::signals::stop_requested() {
            break;
        }
        let wait = config.polling_interval.saturating_sub(started.elapsed());
        if !crate::signals::sleep_unless_stopped(wait) {
            break;
        }
    }
    log::info!("stop requested: exiting");
    Ok(Exit::Success)
}

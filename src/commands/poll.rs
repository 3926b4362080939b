//! `sentry poll`: one pass with `--once` (or `--dry-run`), else a pass every polling_interval.
//!
//! The loop re-reads its configuration at the start of every pass (an invalid one is logged and
//! the last good one kept), and SIGHUP starts a pass at once with the file as it is now.

use super::{finish, location, select};
use crate::cli::{OutputFormat, PollArgs};
use crate::config::{Config, ConfigError};
use crate::error::{Error, Exit};
use crate::signals::Wake;
use std::time::Instant;

/// Runs `poll`. `reload` reads the configuration again (the loop calls it before each pass).
pub fn poll(
    config: Config,
    reload: &dyn Fn() -> Result<Config, ConfigError>,
    scope: &super::Scope,
    output: OutputFormat,
    quiet: bool,
    args: &PollArgs,
) -> Result<Exit, Error> {
    let selected = select(&config, &args.repos, &args.groups, scope.shard)?;
    let location = location(scope, &config)?;
    crate::signals::install();
    if args.once || args.dry_run {
        // Said at once: the jobs may need up to their kill grace to stop, the state is saved after.
        crate::signals::on_stop(|signal| {
            log::warn!("{signal} received: stopping running deployments, then saving the state and exiting")
        });
        let at = crate::pipeline::At { location: &location, shard: scope.shard.and_then(|s| s.index) };
        let summary = crate::pipeline::poll(&config, &at, &selected, args.dry_run)?;
        // Another run holds the lock: a JSON consumer still gets its one object; the human
        // output stays empty, so cron does not mail every minute while a long deployment runs.
        if summary.skipped.is_some() && (output == OutputFormat::Human || quiet) {
            return Ok(Exit::Success);
        }
        return Ok(finish(&summary, output, quiet));
    }
    crate::signals::install_reload();
    log::info!(interval_s = config.polling_interval.as_secs(); "polling until SIGTERM or SIGINT (SIGHUP: re-read the configuration and pass now)");
    let mut current = config;
    let mut first = true;
    loop {
        if !first {
            current = refresh(current, reload);
        }
        first = false;
        let started = Instant::now();
        // The selection follows the configuration; names that vanished from it end no loop.
        match select(&current, &args.repos, &args.groups, scope.shard) {
            Ok(selected) => {
                let location = super::location(scope, &current).unwrap_or_else(|_| location.clone());
                let at = crate::pipeline::At { location: &location, shard: scope.shard.and_then(|s| s.index) };
                match crate::pipeline::poll(&current, &at, &selected, false) {
                    Ok(summary) if summary.skipped.is_some() && (output == OutputFormat::Human || quiet) => {}
                    Ok(summary) => {
                        // Passes follow one another on one stdout: each says when it started.
                        if output == OutputFormat::Human && (!quiet || super::noteworthy(&summary)) {
                            super::emit(
                                &format!("== pass {} at {}\n", summary.run_id, summary.started_at),
                                Exit::Success,
                            );
                        }
                        finish(&summary, output, quiet);
                    }
                    // A loop that serves a Deployment keeps going; the next pass may well succeed.
                    Err(e) => log::error!("{}", crate::logging::redact(&format!("pass failed: {e}"))),
                }
            }
            Err(e) => log::error!("{}", crate::logging::redact(&format!("pass skipped: {e}"))),
        }
        if crate::signals::stop_requested() {
            break;
        }
        let wait = current.polling_interval.saturating_sub(started.elapsed());
        match crate::signals::sleep_until_woken(wait) {
            Wake::Stop => break,
            Wake::Reload => log::info!("SIGHUP received: re-reading the configuration and starting a pass"),
            Wake::Elapsed => {}
        }
    }
    log::info!("stop requested: exiting");
    Ok(Exit::Success)
}

/// The configuration for the next pass: the file as it is now, or, when it no longer loads,
/// the last good one (with an error saying why).
fn refresh(current: Config, reload: &dyn Fn() -> Result<Config, ConfigError>) -> Config {
    match reload() {
        Ok(next) => {
            if next.warnings != current.warnings {
                for w in &next.warnings {
                    log::warn!("{}: {w}", next.path.display());
                }
            }
            next
        }
        Err(e) => {
            let message = crate::logging::redact(&e.to_string()).replace('\n', "; ");
            log::error!("configuration not reloaded, keeping the last good one: {message}");
            current
        }
    }
}

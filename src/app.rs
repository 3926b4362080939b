//! From the command line to an exit code: logging setup, configuration, dispatch to a command.

use crate::cli::{Cli, Command, OutputFormat};
use crate::commands;
use crate::config::{self, Config, ConfigError};
use crate::error::{Error, Exit};
use clap::Parser;
use std::process::ExitCode;

/// Runs the command line of this process and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(run(cli).code())
}

/// Runs a parsed command line.
pub(crate) fn run(cli: Cli) -> Exit {
    let explicit = cli.log_level.or_else(debug_level);
    crate::logging::init(explicit.unwrap_or(log::LevelFilter::Info), cli.log_format == crate::cli::LogFormat::Json);
    // Before any child starts: the deployment commands run as the same user, and must not read
    // the tokens from /proc/<sentry>/environ or memory; a core dump must not carry them either.
    if let Err(e) = crate::sys::make_undumpable() {
        log::warn!("cannot close this process to other processes of its user (PR_SET_DUMPABLE): {e}");
    }
    // A panic is a bug, never a crash with exit 101: report it as one and exit 2 (SPEC §5).
    let output = cli.output;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(&cli, explicit)))
        .unwrap_or_else(|panic| Err(Error::Internal(crate::text::panic_message(&*panic))));
    match result {
        Ok(exit) => exit,
        Err(e) => commands::failed(&e, output),
    }
}

/// `SENTRY_DEBUG=1` means debug, when no level is given.
fn debug_level() -> Option<log::LevelFilter> {
    let debug = std::env::var("SENTRY_DEBUG").is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
    debug.then_some(log::LevelFilter::Debug)
}

/// Loads the configuration and teaches the logger its secrets and level.
fn load_config(cli: &Cli, explicit: Option<log::LevelFilter>) -> Result<Config, ConfigError> {
    let config = config::load(&cli.config)?;
    crate::logging::set_redactor(config.redactor());
    if explicit.is_none()
        && let Some(level) = config.global.log_level
    {
        crate::logging::set_level(level);
    }
    Ok(config)
}

fn dispatch(cli: &Cli, explicit: Option<log::LevelFilter>) -> Result<Exit, Error> {
    let output: OutputFormat = cli.output;
    let state = cli.state.as_ref();
    match &cli.command {
        Command::Validate(args) => {
            let config = match load_config(cli, explicit) {
                Ok(c) => c,
                Err(e) => return Ok(commands::invalid(&e, output)),
            };
            if args.connectivity {
                return commands::connectivity(&config, output);
            }
            Ok(commands::valid(&config, output))
        }
        Command::Status => commands::status(&load_config(cli, explicit)?, state, output),
        Command::Poll(args) => commands::poll(&load_config(cli, explicit)?, state, output, args),
        Command::Deploy(args) => commands::deploy(&load_config(cli, explicit)?, state, output, args),
    }
}

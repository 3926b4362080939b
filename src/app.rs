//! From the command line to an exit code: logging setup, configuration, dispatch.

use crate::cli::{Cli, Command, OutputFormat};
use crate::config::{self, Config, ConfigError};
use crate::error::{Exit, Fatal, exit_of};
use clap::Parser;
use std::process::ExitCode;

/// Runs the command line of this process and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(execute(cli).code())
}

/// Runs a parsed command line.
pub fn execute(cli: Cli) -> Exit {
    let explicit = match explicit_level(&cli) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    crate::logging::init(explicit.unwrap_or(log::LevelFilter::Info), cli.log_format == crate::cli::LogFormat::Json);
    match dispatch(&cli, explicit) {
        Ok(exit) => exit,
        Err(e) => {
            let exit = exit_of(&e);
            log::error!("{}", crate::logging::redact(&format!("{e:#}")));
            exit
        }
    }
}

/// The level from `--log-level` / `SENTRY_LOG_LEVEL` / `SENTRY_DEBUG`, if any of them says one.
fn explicit_level(cli: &Cli) -> Result<Option<log::LevelFilter>, String> {
    if let Some(l) = cli.log_level.as_deref().filter(|l| !l.is_empty()) {
        return config::parse_level(l)
            .map(Some)
            .ok_or_else(|| format!("invalid log level {l:?}: expected error, warn, info, debug or trace"));
    }
    let debug = std::env::var("SENTRY_DEBUG").is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
    Ok(debug.then_some(log::LevelFilter::Debug))
}

/// Loads the configuration and teaches the logger its secrets and level.
pub fn load_config(cli: &Cli, explicit: Option<log::LevelFilter>) -> Result<Config, ConfigError> {
    let config = config::load(&cli.config)?;
    crate::logging::set_redactor(config.redactor());
    if explicit.is_none()
        && let Some(level) = config.global.log_level
    {
        crate::logging::set_level(level);
    }
    Ok(config)
}

fn dispatch(cli: &Cli, explicit: Option<log::LevelFilter>) -> anyhow::Result<Exit> {
    match &cli.command {
        Command::Validate(args) => {
            let config = match load_config(cli, explicit) {
                Ok(c) => c,
                Err(e) => return Ok(crate::report::validate_failed(cli.output, &e)),
            };
            if args.connectivity {
                return crate::run::connectivity(&config, cli.output);
            }
            Ok(crate::report::validate_ok(cli.output, &config))
        }
        Command::Status => {
            let config = load_config(cli, explicit).map_err(Fatal::from)?;
            crate::run::status(&config, cli.state.as_deref(), cli.output)
        }
        Command::Poll(args) => {
            let config = load_config(cli, explicit).map_err(Fatal::from)?;
            crate::run::poll(&config, cli.state.as_deref(), cli.output, args)
        }
        Command::Deploy(args) => {
            let config = load_config(cli, explicit).map_err(Fatal::from)?;
            crate::run::deploy(&config, cli.state.as_deref(), cli.output, args)
        }
    }
}

/// True when stdout should carry JSON.
pub fn is_json(f: OutputFormat) -> bool {
    f == OutputFormat::Json
}

//! From the command line to an exit code: logging setup, configuration, dispatch to a command.

use crate::cli::{Cli, Command, OutputFormat};
use crate::commands;
use crate::config::{self, Config, ConfigError};
use crate::error::{Error, Exit};
use clap::{CommandFactory, Parser};
use std::process::ExitCode;

/// Runs the command line of this process and returns its exit code.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = seed_syntax(&args) {
        return ExitCode::from(code.code());
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(clap_error(e, &args)),
    };
    ExitCode::from(run(cli).code())
}

/// The Go sentry's command line (`sentry -action=validate`): say what to type instead, exit 2.
fn seed_syntax(args: &[std::ffi::OsString]) -> Option<Exit> {
    let words: Vec<String> = args.iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let at = words.iter().position(|w| {
        let bare = w.trim_start_matches('-');
        w.starts_with('-') && (bare == "action" || bare.starts_with("action="))
    })?;
    let word = &words[at];
    let action = match word.split_once('=') {
        Some((_, a)) => a.to_string(),
        None => words.get(at + 1).cloned().unwrap_or_default(),
    };
    let instead = match action.as_str() {
        "validate" => "sentry validate",
        "watch" => "sentry poll          (or `sentry poll --once` from cron or a Kubernetes CronJob)",
        "trigger" => "sentry deploy --repo NAME   (deploy now; `sentry poll --once` deploys what changed)",
        _ => "sentry --help",
    };
    let mut also = Vec::new();
    for w in &words {
        let bare = w.trim_start_matches('-');
        if let Some(path) = bare.strip_prefix("config=") {
            also.push(format!("-c {path}"));
        } else if bare == "verbose" {
            also.push("--log-level debug".to_string());
        }
    }
    let also =
        if also.is_empty() { String::new() } else { format!(" (and {} instead of the old flags)", also.join(", ")) };
    eprintln!(
        "error: `{word}` is the Go sentry's command line; this sentry takes a command\n\n  tip: {instead}{also}\n\n\
         For more information, try 'sentry --help' (README \"Migrating from the Go Sentry\" maps every old flag)."
    );
    Some(Exit::Usage)
}

/// Prints a clap error and returns its exit code. An invalid value that came from an
/// environment variable (`SENTRY_LOG_LEVEL=verbose`) names the variable: nothing on the command
/// line shows where it came from.
fn clap_error(e: clap::Error, args: &[std::ffi::OsString]) -> u8 {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let code = if e.use_stderr() { Exit::Usage.code() } else { Exit::Success.code() };
    let from_env = matches!(e.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation)
        .then(|| match e.get(ContextKind::InvalidArg) {
            Some(ContextValue::String(arg)) => Some(arg.clone()),
            _ => None,
        })
        .flatten()
        .and_then(|arg| {
            let long = arg.split_whitespace().next()?.trim_start_matches('-').to_string();
            let given = args.iter().skip(1).any(|a| {
                let a = a.to_string_lossy();
                a == format!("--{long}") || a.starts_with(&format!("--{long}="))
            });
            let cmd = Cli::command();
            let env = cmd.get_arguments().find(|a| a.get_long() == Some(long.as_str()))?.get_env()?.to_owned();
            let value = std::env::var_os(&env)?;
            (!given).then(|| (env.to_string_lossy().into_owned(), value.to_string_lossy().into_owned(), arg))
        });
    // SPEC §5 v2: with `--output json`, a run that fails before its summary (usage included)
    // says so on stdout too: clap's message up to its first blank line, on one line.
    if e.use_stderr() && wants_json(args) {
        let rendered = e.render().to_string();
        let text: Vec<&str> = rendered.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
        let text = text.join(" ");
        commands::error_document(text.strip_prefix("error: ").unwrap_or(&text), Exit::Usage);
    }
    match from_env {
        Some((var, value, arg)) => {
            let rendered = e.to_string();
            let reason = rendered
                .lines()
                .next()
                .and_then(|l| l.split_once(&format!("'{arg}': ")).map(|(_, r)| r.to_string()))
                .unwrap_or_else(|| "not a valid value".into());
            eprintln!(
                "error: the environment variable {var}={value:?} is not valid for {arg}: {reason}\n\n  tip: unset \
                 {var} or set it to a valid value; --help lists them\n\nFor more information, try '--help'."
            );
        }
        None => {
            let _ = e.print();
        }
    }
    code
}

/// Whether the command line asks for `--output json` (read by hand: clap refused the line).
fn wants_json(args: &[std::ffi::OsString]) -> bool {
    let words: Vec<std::borrow::Cow<'_, str>> = args.iter().skip(1).map(|a| a.to_string_lossy()).collect();
    words
        .iter()
        .enumerate()
        .any(|(i, w)| w == "--output=json" || (w == "--output" && words.get(i + 1).is_some_and(|v| v == "json")))
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
    crate::sys::limit_malloc_arenas(2);
    // A panic is a bug, never a crash with exit 101: report it as one and exit 2 (SPEC §5).
    let output = cli.output;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(&cli, explicit)))
        .unwrap_or_else(|panic| Err(Error::Internal(crate::text::panic_message(&*panic))));
    // sentry's own cost, children excluded: what the benchmarks read (BENCHMARKS.md, P5).
    if let Some((cpu, max_rss_kib)) = crate::sys::own_usage() {
        log::debug!(cpu_ms = u64::try_from(cpu.as_millis()).unwrap_or(u64::MAX), max_rss_kib = max_rss_kib; "resources used by sentry itself");
    }
    match result {
        Ok(exit) => exit,
        Err(e) => commands::failed(&e, output, command_name(&cli.command)),
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Poll(_) => "poll",
        Command::Deploy(_) => "deploy",
        Command::Validate(_) => "validate",
        Command::Status => "status",
        Command::Rollback(_) => "rollback",
        Command::History(_) => "history",
        Command::Completions(_) => "completions",
        Command::Man => "man",
    }
}

/// `SENTRY_DEBUG=1` means debug, when no level is given.
fn debug_level() -> Option<log::LevelFilter> {
    let debug = std::env::var("SENTRY_DEBUG").is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
    debug.then_some(log::LevelFilter::Debug)
}

/// Teaches the logger a loaded configuration's secrets and level.
fn adopt(config: &Config, explicit: Option<log::LevelFilter>) {
    crate::logging::set_redactor(config.redactor());
    if explicit.is_none()
        && let Some(level) = config.global.log_level
    {
        crate::logging::set_level(level);
    }
}

/// Loads the configuration and teaches the logger its secrets and level.
fn load_config(cli: &Cli, explicit: Option<log::LevelFilter>) -> Result<Config, ConfigError> {
    let config = config::load(&cli.config)?;
    crate::sys::release_free_memory();
    adopt(&config, explicit);
    Ok(config)
}

/// Logs what a configuration allows but probably does not mean (`validate` prints it instead).
fn log_warnings(config: &Config) {
    for w in &config.warnings {
        log::warn!("{}: {w}", config.path.display());
    }
}

/// `status` needs only the state (SPEC §1 v2): no variable has to be set (an unset one reads as
/// empty), and a configuration that still does not load is a warning: the state is printed
/// as stored.
fn load_lenient(cli: &Cli, explicit: Option<log::LevelFilter>) -> Option<Config> {
    let env = |name: &str| Some(std::env::var(name).unwrap_or_default());
    match config::load_with_env(&cli.config, &env) {
        Ok(config) => {
            adopt(&config, explicit);
            Some(config)
        }
        Err(e) => {
            let first = e.problems.first().map(ToString::to_string).unwrap_or_default();
            let more = match e.problems.len() {
                0 | 1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            log::warn!("configuration {} not used: {first}{more}; printing the state as stored", cli.config.display());
            None
        }
    }
}

fn dispatch(cli: &Cli, explicit: Option<log::LevelFilter>) -> Result<Exit, Error> {
    let output: OutputFormat = cli.output;
    let quiet = cli.quiet;
    let scope = commands::Scope { state: cli.state.clone(), shard: cli.shard };
    let state = &scope;
    match &cli.command {
        Command::Validate(args) => {
            let config = match load_config(cli, explicit) {
                Ok(c) => c,
                Err(e) => return Ok(commands::invalid(&e, output)),
            };
            if let Some(problem) = commands::shard_problem(state, &config) {
                let err = config::ConfigError { file: config.path.clone(), problems: vec![problem] };
                return Ok(commands::invalid(&err, output));
            }
            if args.connectivity {
                return commands::connectivity(&config, output, quiet);
            }
            Ok(commands::valid(&config, output, quiet, cli.shard))
        }
        Command::Status => commands::status(load_lenient(cli, explicit).as_ref(), state, output, quiet),
        Command::Poll(args) => {
            let config = load_config(cli, explicit)?;
            log_warnings(&config);
            let reload = || {
                let config = config::load(&cli.config)?;
                adopt(&config, explicit);
                Ok(config)
            };
            commands::poll(config, &reload, state, output, quiet, args)
        }
        Command::Deploy(args) => {
            let config = load_config(cli, explicit)?;
            log_warnings(&config);
            commands::deploy(&config, state, output, quiet, args)
        }
        Command::Rollback(args) => {
            let config = load_config(cli, explicit)?;
            log_warnings(&config);
            commands::rollback(&config, state, output, args)
        }
        Command::History(args) => commands::history(&load_config(cli, explicit)?, state, output, args),
        Command::Completions(args) => Ok(commands::completions(args.shell)),
        Command::Man => commands::man(),
    }
}

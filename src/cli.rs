//! Command-line interface (SPEC §1): clap types only.

use crate::model::Location;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Watches Git repositories and deploys when they change.
#[derive(Debug, Parser)]
#[command(name = "sentry", version, about, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Configuration file.
    #[arg(short, long, global = true, env = "SENTRY_CONFIG_PATH", default_value = "sentry.yaml", value_name = "PATH")]
    pub config: PathBuf,

    /// Where state lives: a file path, configmap:NAME or configmap:NAMESPACE/NAME
    /// [default: global.state, else ./sentry-state.json]
    #[arg(long, global = true, env = "SENTRY_STATE", value_name = "LOCATION", value_parser = Location::parse)]
    pub state: Option<Location>,

    /// Log level: error|warn|info|debug|trace (SENTRY_DEBUG=1 means debug)
    /// [default: global.log_level, else info]
    #[arg(long, global = true, env = "SENTRY_LOG_LEVEL", value_name = "LEVEL", value_parser = crate::logging::parse_level)]
    pub log_level: Option<log::LevelFilter>,

    /// Log line format on stderr.
    #[arg(long, global = true, env = "SENTRY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,

    /// Output format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Human, value_name = "FORMAT")]
    pub output: OutputFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Format of what goes to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A compact table for people.
    Human,
    /// One JSON document.
    Json,
}

/// Format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `[timestamp] LEVEL: message key=value`.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every repository and deploy what changed.
    Poll(PollArgs),
    /// Deploy now, whether or not anything changed (manual or CI step).
    Deploy(DeployArgs),
    /// Load and check the configuration; exit 0 if valid.
    Validate(ValidateArgs),
    /// Print the state: last seen / deployed commit per branch, pending retries, last error.
    Status,
    /// Redeploy the newest earlier commit that deployed successfully, then pin the branch.
    Rollback(RollbackArgs),
    /// The recorded deployments, newest first.
    History(HistoryArgs),
}

/// `sentry rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The repository to roll back.
    #[arg(long, value_name = "NAME")]
    pub repo: String,
    /// Which monitored branch [default: the first configured branch in the state].
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// Roll back to this commit of the history [default: the newest earlier successful one].
    #[arg(long, value_name = "SHA")]
    pub to: Option<String>,
    /// Print what would be deployed; deploy nothing, write no state.
    #[arg(long)]
    pub dry_run: bool,
}

/// `sentry history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this repository.
    #[arg(long, value_name = "NAME")]
    pub repo: Option<String>,
    /// Only this branch.
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// At most this many entries.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
}

/// `sentry poll`.
#[derive(Debug, Args)]
pub struct PollArgs {
    /// One pass, then exit (cron / CronJob). Without it: a pass every polling_interval seconds until SIGTERM/SIGINT.
    #[arg(long)]
    pub once: bool,
    /// Check and print the plan; deploy nothing, write no state.
    #[arg(long)]
    pub dry_run: bool,
    /// Only these repositories.
    #[arg(long = "repo", value_name = "NAME", num_args = 1..)]
    pub repos: Vec<String>,
    /// Only these groups.
    #[arg(long = "group", value_name = "NAME", num_args = 1..)]
    pub groups: Vec<String>,
}

/// `sentry deploy`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["repo", "group"])))]
pub struct DeployArgs {
    /// The repository to deploy.
    #[arg(long, value_name = "NAME")]
    pub repo: Option<String>,
    /// The group to deploy (every member).
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Which monitored branch [default: the first configured branch that exists].
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// Record this commit as deployed [default: the branch's current head, looked up].
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,
    /// Check and print the plan; deploy nothing, write no state.
    #[arg(long)]
    pub dry_run: bool,
}

/// `sentry validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Also reach every monitor API and deploy repository with its credentials.
    #[arg(long)]
    pub connectivity: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn deploy_needs_a_target() {
        assert!(Cli::try_parse_from(["sentry", "deploy"]).is_err());
        assert!(Cli::try_parse_from(["sentry", "deploy", "--repo", "a", "--group", "g"]).is_err());
        assert!(Cli::try_parse_from(["sentry", "deploy", "--repo", "a"]).is_ok());
    }

    #[test]
    fn poll_takes_several_repos() {
        let cli = Cli::try_parse_from(["sentry", "poll", "--once", "--repo", "a", "b", "--repo", "c"]).expect("parses");
        let Command::Poll(p) = cli.command else { panic!("not poll") };
        assert_eq!(p.repos, ["a", "b", "c"]);
    }
}

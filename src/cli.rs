//! Command-line interface (SPEC §1): clap types only.

use crate::model::{Location, Shard};

/// `--shard`, with `auto/N` read from `JOB_COMPLETION_INDEX`.
fn parse_shard(s: &str) -> Result<Shard, String> {
    Shard::parse(s, std::env::var("JOB_COMPLETION_INDEX").ok().as_deref())
}
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const MAIN_AFTER_HELP: &str = "\
Examples:
  sentry validate -c /etc/sentry/sentry.yaml          check a configuration offline
  sentry validate --connectivity                      also reach every repository
  sentry poll --once                                  one pass (cron, Kubernetes CronJob)
  sentry deploy --repo rag --branch main --commit \"$CI_COMMIT_SHA\"
  sentry status                                       what was seen, deployed, parked

Exit codes:
  0  success: nothing to do, everything deployed, or another run holds the lock (poll)
  1  at least one deployment failed or timed out (status: something needs a human)
  2  usage or configuration error (nothing was checked or deployed)
  3  some repositories could not be checked (and no deployment failed)
  4  state could not be read, locked or saved";

/// Watches Git repositories and deploys when they change.
#[derive(Debug, Parser)]
#[command(
    name = "sentry",
    version,
    about,
    propagate_version = true,
    max_term_width = 100,
    after_help = MAIN_AFTER_HELP,
    // The global options come last in each command's help, under their own heading.
    next_help_heading = "Global options"
)]
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

    /// Print nothing on stdout unless something was deployed, failed, was parked or could not be
    /// checked (cron mails only what matters).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Handle only shard I (0-based) of N: I/N, auto/N (I from JOB_COMPLETION_INDEX, the pods of a
    /// Kubernetes Indexed Job), or all/N (status, history). The state location must hold {shard}.
    #[arg(long, global = true, env = "SENTRY_SHARD", value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,

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
    #[command(after_help = POLL_AFTER_HELP)]
    Poll(PollArgs),
    /// Deploy now, whether or not anything changed (manual or CI step).
    #[command(after_help = DEPLOY_AFTER_HELP)]
    Deploy(DeployArgs),
    /// Load and check the configuration; exit 0 if valid.
    #[command(after_help = VALIDATE_AFTER_HELP)]
    Validate(ValidateArgs),
    /// Print the state: last seen / deployed commit per branch, pending retries, parked failures.
    ///
    /// Needs only the state: no token or environment variable has to be set, and a missing or
    /// invalid configuration is a warning (the state is then printed as stored).
    #[command(after_help = STATUS_AFTER_HELP)]
    Status,
    /// Redeploy the newest earlier commit that deployed successfully, then pin the branch.
    Rollback(RollbackArgs),
    /// The recorded deployments, newest first.
    History(HistoryArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(after_help = COMPLETIONS_AFTER_HELP)]
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout.
    #[command(after_help = "Example:\n  sentry man > /usr/local/share/man/man1/sentry.1")]
    Man,
}

/// `sentry rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The repository to roll back.
    #[arg(long, value_name = "NAME")]
    pub repo: String,
    /// Which monitored branch [default: the first monitored branch with a history].
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

const POLL_AFTER_HELP: &str = "\
Examples:
  sentry poll --once                       one pass, then exit (cron, CronJob)
  sentry poll --once --quiet               print only when something happened
  sentry poll --dry-run --repo rag         what would be deployed, without deploying
  sentry poll                              a pass every polling_interval until SIGTERM;
                                           SIGHUP: re-read the configuration and pass now

Exit codes: 0 nothing failed, 1 a deployment failed, 2 usage or configuration,
3 a repository could not be checked, 4 state.";

const DEPLOY_AFTER_HELP: &str = "\
Examples:
  sentry deploy --repo rag                                    the first monitored branch's head
  sentry deploy --repo rag --branch main --commit <40-hex>    no forge is contacted
  sentry deploy --group ai-blueprints --dry-run

Exit codes: 0 deployed, 1 a deployment failed, 2 usage or configuration, 3 could not be checked,
4 state.";

const VALIDATE_AFTER_HELP: &str = "\
Examples:
  sentry validate -c /etc/sentry/sentry.yaml
  sentry validate --connectivity --output json

Exit codes: 0 valid, 2 invalid (every problem is listed), 3 --connectivity: a repository could not
be reached or a branch pattern matches nothing.";

const STATUS_AFTER_HELP: &str = "\
Examples:
  sentry status --state configmap:sentry-state
  sentry status --output json | jq '.repositories'

Exit codes: 0 nothing needs a human, 1 a parked failure or a repository whose last check failed,
4 the state could not be read.";

const COMPLETIONS_AFTER_HELP: &str = "\
Examples:
  sentry completions bash > /etc/bash_completion.d/sentry
  sentry completions zsh > \"${fpath[1]}/_sentry\"
  sentry completions fish > ~/.config/fish/completions/sentry.fish";

/// `sentry completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
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
    /// A monitored tag (monitor.tags) instead of a branch.
    #[arg(long, value_name = "TAG", conflicts_with = "branch")]
    pub tag: Option<String>,
    /// Deploy and record this commit (the full id) [default: the branch's current head, looked
    /// up]. With --branch (or --tag) too, no forge is contacted.
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

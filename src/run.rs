//! The run: the one place that knows the order config -> state -> check -> plan -> deploy -> report.

use crate::cli::{DeployArgs, OutputFormat, PollArgs};
use crate::config::Config;
use crate::error::{Exit, Fatal};

/// `sentry validate --connectivity`.
pub fn connectivity(config: &Config, output: OutputFormat) -> anyhow::Result<Exit> {
    crate::forge::connectivity::run(config, output)
}

/// `sentry status`.
pub fn status(config: &Config, state: Option<&str>, output: OutputFormat) -> anyhow::Result<Exit> {
    crate::state::status::run(config, state, output)
}

/// `sentry poll`.
pub fn poll(_config: &Config, _state: Option<&str>, _output: OutputFormat, _args: &PollArgs) -> anyhow::Result<Exit> {
    Err(Fatal::usage("poll is not built yet").into())
}

/// `sentry deploy`.
pub fn deploy(
    _config: &Config,
    _state: Option<&str>,
    _output: OutputFormat,
    _args: &DeployArgs,
) -> anyhow::Result<Exit> {
    Err(Fatal::usage("deploy is not built yet").into())
}

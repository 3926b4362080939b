//! `sentry rollback`: redeploy an earlier good commit, then pin the branch (SPEC §1).

use super::{finish, location, unknown};
use crate::cli::{OutputFormat, RollbackArgs};
use crate::config::Config;
use crate::error::{Error, Exit};

/// Runs `rollback`.
pub fn rollback(
    config: &Config,
    scope: &super::Scope,
    output: OutputFormat,
    args: &RollbackArgs,
) -> Result<Exit, Error> {
    let repo = config
        .repository(&args.repo)
        .ok_or_else(|| unknown("repository", &args.repo, config.repositories.iter().map(|r| r.name.as_str())))?;
    let location = location(scope, config)?;
    let at = crate::pipeline::At { location: &location, shard: scope.shard.and_then(|s| s.index) };
    crate::signals::install();
    let summary =
        crate::pipeline::rollback(config, &at, repo, args.branch.as_deref(), args.to.as_deref(), args.dry_run)?;
    Ok(finish(&summary, output, false))
}

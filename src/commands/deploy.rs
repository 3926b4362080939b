//! `sentry deploy`: deploy now, whatever changed; waits for the lock.

use super::{finish, location, unknown};
use crate::cli::{DeployArgs, OutputFormat};
use crate::config::{Config, Repository};
use crate::error::{Error, Exit};
use crate::model::{Location, Sha};
use crate::pipeline::Manual;

/// Runs `deploy`.
pub fn deploy(
    config: &Config,
    state: Option<&Location>,
    output: OutputFormat,
    args: &DeployArgs,
) -> Result<Exit, Error> {
    let targets: Vec<&Repository> = match (&args.repo, &args.group) {
        (Some(name), _) => vec![
            config
                .repository(name)
                .ok_or_else(|| unknown("repository", name, config.repositories.iter().map(|r| r.name.as_str())))?,
        ],
        (None, Some(group)) => {
            if !config.groups.contains_key(group) {
                return Err(unknown("group", group, config.groups.keys().map(String::as_str)));
            }
            let members: Vec<_> = config.repositories.iter().filter(|r| r.group.as_ref() == Some(group)).collect();
            if members.is_empty() {
                return Err(Error::Usage(format!("group {group:?} has no repositories")));
            }
            members
        }
        (None, None) => return Err(Error::Usage("deploy needs --repo NAME or --group NAME".into())),
    };
    let commit = match &args.commit {
        Some(c) => Some(
            Sha::parse(c)
                .ok_or_else(|| Error::Usage(format!("--commit {c:?} is not a full commit id (40 or 64 hex digits)")))?,
        ),
        None => None,
    };
    let location = location(state, config)?;
    crate::signals::install();
    let manual = Manual { targets, branch: args.branch.as_deref(), commit: commit.as_ref() };
    let summary = crate::pipeline::deploy(config, &location, &manual, args.dry_run)?;
    Ok(finish(&summary, output))
}

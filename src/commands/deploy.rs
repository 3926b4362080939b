//! `sentry deploy`: deploy now, whatever changed; waits for the lock.

use super::{finish, location, unknown};
use crate::cli::{DeployArgs, OutputFormat};
use crate::config::{Config, Repository};
use crate::error::{Error, Exit};
use crate::model::Sha;
use crate::pipeline::Manual;

/// Runs `deploy`.
pub fn deploy(
    config: &Config,
    scope: &super::Scope,
    output: OutputFormat,
    quiet: bool,
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
        Some(c) => Some(Sha::parse(c).ok_or_else(|| bad_commit(c))?),
        None => None,
    };
    // With --shard: only this shard's repositories (SPEC §1: the intersection).
    let targets: Vec<&Repository> = targets.into_iter().filter(|r| super::in_shard(r, scope.shard)).collect();
    if targets.is_empty() {
        let shard = scope.shard.map(|s| s.to_string()).unwrap_or_default();
        return Err(Error::Usage(format!(
            "nothing to deploy in shard {shard}: the repositories named belong to other shards"
        )));
    }
    let location = location(scope, config)?;
    crate::signals::install();
    let manual = Manual { targets, branch: args.branch.as_deref(), tag: args.tag.as_deref(), commit: commit.as_ref() };
    let at = crate::pipeline::At { location: &location, shard: scope.shard.and_then(|s| s.index) };
    let summary = crate::pipeline::deploy(config, &at, &manual, args.dry_run)?;
    Ok(finish(&summary, output, quiet))
}

/// Why `--commit` was refused: a short id says so (it is ambiguous, and with `--branch` no
/// forge is asked to resolve it), anything else is not a commit id at all.
fn bad_commit(c: &str) -> Error {
    let hex = !c.is_empty() && c.bytes().all(|b| b.is_ascii_hexdigit());
    if hex && c.len() < 40 {
        Error::Usage(format!(
            "--commit {c} is a short commit id: give the full one (40 hex digits, or 64 for SHA-256)\n\
             git rev-parse {c} prints it; in CI use the full variable, e.g. $CI_COMMIT_SHA or $GITHUB_SHA"
        ))
    } else {
        Error::Usage(format!(
            "--commit {c:?} is not a commit id\nexpected the full id: 40 hex digits (or 64 for SHA-256)"
        ))
    }
}

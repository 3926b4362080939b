//! Forge clients: list a repository's branch heads (GitHub, GitLab, Gitea, plain Git).
//!
//! One call per repository answers "what are the heads of the branches that match?": one
//! listing of all branches, filtered locally by the configured patterns.

pub mod connectivity;
mod git;

use crate::config::{ForgeKind, Global, Repository};
use crate::model::{Heads, Validators};
use std::fmt;
use std::time::Duration;

/// The result of listing one repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// Only the branches matching `monitor.branches`.
    pub heads: Heads,
    /// Cache validators to keep for the next listing (None for plain Git).
    pub validators: Option<Validators>,
    /// True when every page answered 304 Not Modified.
    pub cache_hit: bool,
    /// Requests (or git invocations) made.
    pub requests: u32,
}

/// Why a repository could not be checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckErrorKind {
    /// Credentials missing, wrong or without access.
    Unauthorized,
    /// No such repository (or hidden from these credentials).
    NotFound,
    /// Rate limited beyond what the run can wait for.
    RateLimited,
    /// Could not connect, or timed out.
    Network,
    /// The server failed (5xx).
    Server,
    /// The answer made no sense.
    Protocol,
}

/// A repository that could not be checked; the message is redacted, names the repository and
/// says what to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckError {
    /// The repository's name.
    pub repo: String,
    /// What kind of failure.
    pub kind: CheckErrorKind,
    /// What happened and what to check.
    pub message: String,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CheckError {}

/// Checks repositories concurrently on a dedicated pool.
pub struct Checker {
    pool: rayon::ThreadPool,
    timeout: Duration,
}

impl Checker {
    /// A checker with `global.concurrency` threads (never rayon's global pool: in a small pod
    /// that is one thread).
    pub fn new(global: &Global) -> anyhow::Result<Checker> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(global.concurrency.max(1))
            .thread_name(|i| format!("sentry-check-{i}"))
            .build()?;
        Ok(Checker { pool, timeout: global.http_timeout })
    }

    /// Lists one repository's matching heads.
    pub fn check(&self, repo: &Repository, _cache: Option<&Validators>) -> Result<Listing, CheckError> {
        match repo.monitor.kind {
            ForgeKind::Git => git::list(repo, self.timeout),
            kind => Err(CheckError {
                repo: repo.name.clone(),
                kind: CheckErrorKind::Protocol,
                message: format!(
                    "{}: the {} API client is not built yet; use repo_type: git",
                    repo.name,
                    kind.as_str()
                ),
            }),
        }
    }

    /// Lists many repositories concurrently; results in input order.
    pub fn check_all(&self, repos: &[(&Repository, Option<&Validators>)]) -> Vec<Result<Listing, CheckError>> {
        use rayon::prelude::*;
        self.pool.install(|| repos.par_iter().map(|(r, c)| self.check(r, *c)).collect())
    }

    /// Reaches a deploy repository: `git ls-remote` of its branch with its credentials.
    pub fn probe_deploy(&self, repo: &Repository) -> Result<(), CheckError> {
        git::probe(repo, self.timeout)
    }
}

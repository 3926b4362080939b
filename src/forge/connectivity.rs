//! `sentry validate --connectivity`: reach every monitor repository (one listing) and every
//! deploy repository (`git ls-remote` of its branch) with their credentials, in parallel.

use super::{CheckError, Checker};
use crate::config::{Config, Deploy};
use rayon::prelude::*;
use std::collections::HashMap;

/// What makes two deploy probes the same: URL, branch, and the credentials sent. Borrowed from
/// the config, so no copy of a token is made; the key is never printed.
type DeployKey<'c> = (&'c str, &'c str, Option<&'c str>, Option<&'c str>);

fn deploy_key(d: &Deploy) -> DeployKey<'_> {
    (&d.qa_repo_url, &d.qa_repo_branch, d.auth.username.as_deref(), d.auth.token.as_ref().map(|t| t.expose()))
}

/// One side of a repository to reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Probe {
    /// The watched repository (its listing).
    Monitor,
    /// The deploy (QA) repository (its branch).
    Deploy,
}

impl Probe {
    /// `monitor` or `deploy`, as in the field path.
    pub fn as_str(self) -> &'static str {
        match self {
            Probe::Monitor => "monitor",
            Probe::Deploy => "deploy",
        }
    }
}

/// What one probe found.
#[derive(Debug)]
pub struct Reached {
    /// Index of the repository in the configuration.
    pub index: usize,
    /// Which side.
    pub probe: Probe,
    /// What was found ("3 branches match"), or why it could not be reached (redacted).
    pub result: Result<String, String>,
    /// Monitor probes of a reachable repository: the `branches` patterns that match no branch
    /// (SPEC §1 v2: a failure of `validate --connectivity`).
    pub unmatched: Vec<String>,
    /// Monitor probes of a reachable repository: the `tags` patterns that match no tag.
    pub unmatched_tags: Vec<String>,
}

/// Reaches every repository's both sides; results in configuration order, monitor first.
pub fn probe_all(config: &Config) -> anyhow::Result<Vec<Reached>> {
    let checker = Checker::new(&config.global)?;
    // Repositories often share one QA repository: reach each (URL, branch, credentials) once and
    // report the answer on every repository that uses it.
    let mut first_user: HashMap<DeployKey<'_>, usize> = HashMap::new();
    let reached_by: Vec<usize> = (0..config.repositories.len())
        .map(|i| *first_user.entry(deploy_key(&config.repositories[i].deploy)).or_insert(i))
        .collect();
    let probes: Vec<(usize, Probe)> = (0..config.repositories.len())
        .flat_map(|i| std::iter::once((i, Probe::Monitor)).chain((reached_by[i] == i).then_some((i, Probe::Deploy))))
        .collect();
    type Found = (String, Vec<String>, Vec<String>);
    let results: Vec<Result<Found, CheckError>> = checker.pool.install(|| {
        probes
            .par_iter()
            .with_max_len(1)
            .map(|(i, probe)| {
                let repo = &config.repositories[*i];
                match probe {
                    Probe::Monitor => checker.check(repo, None).and_then(|l| {
                        let n = l.heads.len();
                        let m = &repo.monitor;
                        let (tags, unmatched_tags) = if m.tags.is_empty() {
                            (String::new(), Vec::new())
                        } else {
                            let t = checker.tags(repo)?;
                            let unmatched = m
                                .tag_patterns
                                .iter()
                                .zip(&m.tags)
                                .filter(|(_, p)| !t.keys().any(|name| p.is_match(name)))
                                .map(|(text, _)| text.clone())
                                .collect();
                            (format!(", {} tag{} match", t.len(), if t.len() == 1 { "" } else { "s" }), unmatched)
                        };
                        // The listing holds the branches matching any pattern: a pattern none of
                        // them matches matches nothing in the repository.
                        let unmatched = m
                            .patterns
                            .iter()
                            .zip(&m.branches)
                            .filter(|(_, p)| !l.heads.keys().any(|b| p.is_match(b)))
                            .map(|(text, _)| text.clone())
                            .collect();
                        Ok((
                            format!("{} branch{} match{tags}", n, if n == 1 { "" } else { "es" }),
                            unmatched,
                            unmatched_tags,
                        ))
                    }),
                    Probe::Deploy => checker
                        .probe_deploy(repo)
                        .map(|()| (format!("branch {} reachable", repo.deploy.qa_repo_branch), Vec::new(), Vec::new())),
                }
            })
            .collect()
    });
    let mut answers: HashMap<(usize, Probe), Result<Found, CheckError>> = probes.into_iter().zip(results).collect();
    let mut out = Vec::new();
    for (i, first) in reached_by.iter().enumerate() {
        for probe in [Probe::Monitor, Probe::Deploy] {
            let result = match probe {
                Probe::Monitor => answers.remove(&(i, probe)),
                Probe::Deploy => answers.get(&(*first, probe)).cloned(),
            };
            let Some(result) = result else { continue };
            let (result, unmatched, unmatched_tags) = match result {
                Ok((what, unmatched, tags)) => (Ok(what), unmatched, tags),
                Err(e) => (Err(crate::logging::redact(&e.message)), Vec::new(), Vec::new()),
            };
            out.push(Reached { index: i, probe, result, unmatched, unmatched_tags });
        }
    }
    Ok(out)
}

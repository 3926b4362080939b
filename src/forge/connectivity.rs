//! `sentry validate --connectivity`: reach every monitor repository (one listing) and every
//! deploy repository (`git ls-remote` of its branch) with their credentials, in parallel.

use super::{CheckError, Checker};
use crate::cli::OutputFormat;
use crate::config::Config;
use crate::config::{Deploy, Repository};
use crate::error::Exit;
use rayon::prelude::*;
use serde_json::json;
use std::collections::HashMap;

/// What makes two deploy probes the same: URL, branch, and the credentials sent. Borrowed from
/// the config, so no copy of a token is made; the key is never printed.
type DeployKey<'c> = (&'c str, &'c str, Option<&'c str>, Option<&'c str>);

fn deploy_key(d: &Deploy) -> DeployKey<'_> {
    (&d.qa_repo_url, &d.qa_repo_branch, d.auth.username.as_deref(), d.auth.token.as_ref().map(|t| t.expose()))
}

/// One thing to reach.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Probe {
    Monitor,
    Deploy,
}

/// Runs every check, prints one result per check, and returns exit 3 if any failed.
pub fn run(config: &Config, output: OutputFormat) -> anyhow::Result<Exit> {
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
    let results: Vec<Result<String, CheckError>> = checker.pool.install(|| {
        probes
            .par_iter()
            .with_max_len(1)
            .map(|(i, probe)| {
                let repo = &config.repositories[*i];
                match probe {
                    Probe::Monitor => checker.check(repo, None).map(|l| {
                        let n = l.heads.len();
                        format!("{} branch{} match", n, if n == 1 { "" } else { "es" })
                    }),
                    Probe::Deploy => {
                        checker.probe_deploy(repo).map(|()| format!("branch {} reachable", repo.deploy.qa_repo_branch))
                    }
                }
            })
            .collect()
    });
    let mut answers: HashMap<(usize, Probe), Result<String, CheckError>> = probes.into_iter().zip(results).collect();
    let mut errors = Vec::new();
    let mut lines = Vec::new();
    for (i, repo) in config.repositories.iter().enumerate() {
        for probe in [Probe::Monitor, Probe::Deploy] {
            let result = match probe {
                Probe::Monitor => answers.remove(&(i, probe)),
                Probe::Deploy => answers.get(&(reached_by[i], probe)).cloned(),
            };
            let Some(result) = result else { continue };
            report(i, repo, probe, result, &mut lines, &mut errors);
        }
    }
    match output {
        OutputFormat::Json => println!("{}", json!({"valid": errors.is_empty(), "errors": errors})),
        OutputFormat::Human => {
            for l in &lines {
                println!("{l}");
            }
            println!("{}: {} checks, {} failed", config.path.display(), lines.len(), errors.len());
        }
    }
    Ok(if errors.is_empty() { Exit::Success } else { Exit::CheckFailed })
}

/// One line of the human report, and an error entry when the probe failed.
fn report(
    i: usize,
    repo: &Repository,
    probe: Probe,
    result: Result<String, CheckError>,
    lines: &mut Vec<String>,
    errors: &mut Vec<serde_json::Value>,
) {
    let (side, url) = match probe {
        Probe::Monitor => ("monitor", repo.monitor.repo_url.as_str()),
        Probe::Deploy => ("deploy", repo.deploy.qa_repo_url.as_str()),
    };
    match result {
        Ok(what) => lines.push(format!("ok    {} {side:<7} {url}: {what}", repo.name)),
        Err(e) => {
            let message = crate::logging::redact(&e.message);
            lines.push(format!("FAIL  {} {side:<7} {message}", repo.name));
            errors.push(json!({"path": format!("repositories[{i}].{side}"), "line": null, "message": message}));
        }
    }
}

//! `sentry validate --connectivity`: reach every monitor repository (one listing) and every
//! deploy repository (`git ls-remote` of its branch) with their credentials, in parallel.

use super::{CheckError, Checker};
use crate::cli::OutputFormat;
use crate::config::Config;
use crate::error::Exit;
use rayon::prelude::*;
use serde_json::json;

/// One thing to reach.
enum Probe {
    Monitor,
    Deploy,
}

/// Runs every check, prints one result per check, and returns exit 3 if any failed.
pub fn run(config: &Config, output: OutputFormat) -> anyhow::Result<Exit> {
    let checker = Checker::new(&config.global)?;
    let probes: Vec<(usize, Probe)> =
        (0..config.repositories.len()).flat_map(|i| [(i, Probe::Monitor), (i, Probe::Deploy)]).collect();
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
    let mut errors = Vec::new();
    let mut lines = Vec::new();
    for ((i, probe), result) in probes.iter().zip(results) {
        let repo = &config.repositories[*i];
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

//! `sentry validate --connectivity`: reach every monitored and deploy repository with its credentials.

use super::Checker;
use crate::cli::OutputFormat;
use crate::config::Config;
use crate::error::Exit;
use rayon::prelude::*;
use serde_json::json;

/// Checks every repository (one listing) and every deploy repository (`ls-remote`), in parallel;
/// exit 3 if any fails.
pub fn run(config: &Config, output: OutputFormat) -> anyhow::Result<Exit> {
    let checker = Checker::new(&config.global)?;
    let results: Vec<(String, Option<String>)> = checker.pool.install(|| {
        config
            .repositories
            .par_iter()
            .enumerate()
            .flat_map_iter(|(i, repo)| {
                let monitor = checker.check(repo, None).err().map(|e| e.message);
                let deploy = checker.probe_deploy(repo).err().map(|e| e.message);
                [(format!("repositories[{i}].monitor"), monitor), (format!("repositories[{i}].deploy"), deploy)]
            })
            .collect()
    });
    let failures: Vec<_> = results.iter().filter(|(_, e)| e.is_some()).collect();
    match output {
        OutputFormat::Json => {
            let errors: Vec<_> = failures
                .iter()
                .map(|(path, e)| json!({"path": path, "line": null, "message": crate::logging::redact(e.as_deref().unwrap_or(""))}))
                .collect();
            println!("{}", json!({"valid": failures.is_empty(), "errors": errors}));
        }
        OutputFormat::Human => {
            for (path, e) in &results {
                match e {
                    None => println!("ok      {path}"),
                    Some(e) => println!("FAILED  {path}: {}", crate::logging::redact(e)),
                }
            }
            println!("{} of {} checks failed", failures.len(), results.len());
        }
    }
    Ok(if failures.is_empty() { Exit::Success } else { Exit::CheckFailed })
}

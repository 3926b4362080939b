//! What a run prints on stdout (human table or SPEC §5 JSON) and the exit code it implies.

use crate::cli::OutputFormat;
use crate::config::{Config, ConfigError};
use crate::error::Exit;
use serde_json::json;

/// Prints a valid configuration's summary; exit 0.
pub fn validate_ok(output: OutputFormat, config: &Config) -> Exit {
    match output {
        OutputFormat::Json => println!("{}", json!({"valid": true, "errors": []})),
        OutputFormat::Human => println!(
            "{}: valid ({} repositories, {} groups)",
            config.path.display(),
            config.repositories.len(),
            config.groups.len()
        ),
    }
    Exit::Success
}

/// Prints every problem of an invalid configuration; exit 2.
pub fn validate_failed(output: OutputFormat, err: &ConfigError) -> Exit {
    match output {
        OutputFormat::Json => {
            let errors: Vec<_> = err
                .problems
                .iter()
                .map(|p| json!({"path": p.path, "line": p.line, "message": crate::logging::redact(&p.message)}))
                .collect();
            println!("{}", json!({"valid": false, "errors": errors}));
        }
        OutputFormat::Human => eprintln!("error: {}", crate::logging::redact(&err.to_string())),
    }
    Exit::Usage
}

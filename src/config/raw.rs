//! The YAML schema exactly as written by users: every leaf spanned so errors can name a line.

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

/// A value with the line it was read from.
///
/// serde-saphyr's `Spanned` keeps two full locations (~96 bytes) per leaf; only the line is ever
/// used, and at 10,000 repositories the spans were most of the parse's heap (issue 21).
pub struct S<T> {
    /// The value as written.
    pub value: T,
    /// 1-based line it was read from (0: unknown).
    pub line: u32,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for S<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<T>::deserialize(d)?;
        Ok(S { value: s.value, line: u32::try_from(s.referenced.line()).unwrap_or(u32::MAX) })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub polling_interval: Option<S<u64>>,
    #[serde(default)]
    pub global: Global,
    #[serde(default)]
    pub groups: BTreeMap<String, Group>,
    // Boxed: the list grows by doubling (YAML gives no length first), and at ~800 bytes an
    // entry the old and new buffers of 10,000 doubled the parse's peak.
    #[allow(clippy::vec_box)]
    pub repositories: Vec<Box<Repository>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Global {
    pub tmp_dir: Option<S<String>>,
    pub cleanup: Option<bool>,
    pub log_level: Option<S<String>>,
    pub timeout: Option<S<u64>>,
    pub state: Option<S<String>>,
    pub concurrency: Option<S<u64>>,
    pub http_timeout: Option<S<u64>>,
    pub on_first_seen: Option<S<String>>,
    pub max_attempts: Option<S<u64>>,
    pub ca_file: Option<S<String>>,
    pub webhook_url: Option<S<String>>,
    pub webhook_format: Option<S<String>>,
    pub metrics_file: Option<S<String>>,
    pub pushgateway_url: Option<S<String>>,
    pub notify_timeout: Option<S<u64>>,
    pub history: Option<S<u64>>,
    pub known_hosts: Option<S<String>>,
    pub skip_markers: Option<S<Vec<S<String>>>>,
    pub github_api: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub execution_strategy: Option<S<String>>,
    pub max_parallel: Option<S<u64>>,
    pub continue_on_error: Option<bool>,
    pub global_timeout: Option<S<u64>>,
    pub trigger: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repository {
    pub name: S<String>,
    pub group: Option<S<String>>,
    pub monitor: Monitor,
    pub deploy: Deploy,
    pub webhook_url: Option<S<String>>,
    pub webhook_format: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitor {
    pub repo_url: S<String>,
    pub branches: S<Vec<S<String>>>,
    pub repo_type: Option<S<String>>,
    pub api_url: Option<S<String>>,
    pub auth: Option<Auth>,
    pub paths: Option<S<Vec<S<String>>>>,
    pub ignore_paths: Option<S<Vec<S<String>>>>,
    pub tags: Option<S<Vec<S<String>>>>,
    pub semver: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub username: Option<S<String>>,
    pub token: Option<S<String>>,
    pub ssh_key_file: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    pub qa_repo_url: S<String>,
    pub qa_repo_branch: Option<S<String>>,
    pub repo_type: Option<S<String>>,
    pub project_name: Option<S<String>>,
    pub commands: S<Vec<S<String>>>,
    pub on_failure: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub env: BTreeMap<String, S<String>>,
    pub auth: Option<Auth>,
    pub report_status: Option<S<bool>>,
}

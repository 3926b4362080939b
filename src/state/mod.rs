//! The state: what sentry remembers between runs (SPEC §3), and where it is kept.
//!
//! `State` is plain data. A [`StateStore`] loads and saves it atomically and holds the run's
//! exclusive lock (file lock or ConfigMap lease) from `open` until it is dropped.

use crate::model::{Sha, Validators};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The state format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Everything remembered between runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Format version; a newer one is refused rather than misread.
    pub version: u32,
    /// Per repository name.
    #[serde(default)]
    pub repos: BTreeMap<String, RepoState>,
    /// The last run that saved this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunInfo>,
}

impl Default for State {
    fn default() -> Self {
        State { version: FORMAT_VERSION, repos: BTreeMap::new(), last_run: None }
    }
}

/// What one repository's state holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoState {
    /// Per monitored branch that exists.
    #[serde(default)]
    pub branches: BTreeMap<String, BranchState>,
    /// HTTP cache validators of the last listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validators: Option<Validators>,
    /// When the repository was last checked successfully (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<String>,
    /// Why the last check failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What one branch's state holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchState {
    /// The head seen by the last check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<Sha>,
    /// The last commit deployed successfully (or recorded as baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<Sha>,
    /// When `deployed` was set (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_at: Option<String>,
    /// A commit whose deployment failed and has not succeeded since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// A failed deployment waiting for a retry, or parked after `max_attempts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// The commit that failed.
    pub commit: Sha,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last error, redacted.
    pub error: String,
    /// When the last attempt ended (RFC 3339).
    pub at: String,
}

/// Metadata of the run that last saved the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunInfo {
    /// Its run id.
    pub run_id: String,
    /// When it saved (RFC 3339).
    pub at: String,
}

/// Where the state lives (`--state`, SPEC §1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A JSON file.
    File(std::path::PathBuf),
    /// A ConfigMap; `namespace` None means the pod's own.
    ConfigMap {
        /// Namespace, if given.
        namespace: Option<String>,
        /// ConfigMap name.
        name: String,
    },
}

impl Location {
    /// Parses `PATH`, `configmap:NAME` or `configmap:NAMESPACE/NAME`.
    pub fn parse(s: &str) -> Result<Location, String> {
        let Some(rest) = s.strip_prefix("configmap:") else {
            if s.is_empty() {
                return Err("state location is empty".into());
            }
            return Ok(Location::File(s.into()));
        };
        let (namespace, name) = match rest.split_once('/') {
            Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
            None => (None, rest.to_string()),
        };
        let dns = |kind: &str, v: &str, max: usize| {
            let ok = !v.is_empty()
                && v.len() <= max
                && v.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (b == b'.' && kind == "name")
                })
                && !v.starts_with(['-', '.'])
                && !v.ends_with(['-', '.']);
            if ok { Ok(()) } else { Err(format!("invalid ConfigMap {kind} {v:?} in state location {s:?}")) }
        };
        if let Some(ns) = &namespace {
            dns("namespace", ns, 63)?;
        }
        dns("name", &name, 253)?;
        Ok(Location::ConfigMap { namespace, name })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::ConfigMap { namespace: Some(ns), name } => write!(f, "configmap:{ns}/{name}"),
            Location::ConfigMap { namespace: None, name } => write!(f, "configmap:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(Location::parse("./s.json"), Ok(Location::File("./s.json".into())));
        assert_eq!(
            Location::parse("configmap:sentry-state"),
            Ok(Location::ConfigMap { namespace: None, name: "sentry-state".into() })
        );
        assert_eq!(
            Location::parse("configmap:ops/sentry-state"),
            Ok(Location::ConfigMap { namespace: Some("ops".into()), name: "sentry-state".into() })
        );
        assert!(Location::parse("configmap:").is_err());
        assert!(Location::parse("configmap:Bad_Name").is_err());
        assert!(Location::parse("").is_err());
    }

    #[test]
    fn state_round_trips() {
        let mut s = State::default();
        let sha = Sha::parse(&"a".repeat(40)).expect("valid");
        s.repos
            .entry("r".into())
            .or_default()
            .branches
            .insert("main".into(), BranchState { seen: Some(sha.clone()), deployed: Some(sha), ..Default::default() });
        let json = serde_json::to_string(&s).expect("serializes");
        assert_eq!(serde_json::from_str::<State>(&json).expect("parses"), s);
    }
}

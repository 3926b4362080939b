//! The state: what sentry remembers between runs (SPEC §3), and where it is kept.
//!
//! `State` is plain data. A [`StateStore`] loads and saves it atomically and holds the run's
//! exclusive lock (file lock or ConfigMap lease) from [`open`] until it is dropped.

pub mod configmap;
pub mod file;

use crate::model::{Location, Notification, Sha, Validators};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

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
    pub last_run: Option<LastRun>,
    /// HTTP counters carried across runs, for the metrics file.
    #[serde(default, skip_serializing_if = "HttpCounters::is_empty")]
    pub http: HttpCounters,
    /// Deployment notifications recorded but not yet delivered (sent by the next run if this
    /// one is interrupted). Webhook URLs are not stored: they may be secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<Pending>,
}

/// A notification waiting to be delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// `repo/branch/commit/attempt`: one notification per deployment attempt.
    pub id: String,
    /// The repository (its webhook and the global one are looked up at send time).
    pub repo: String,
    /// What to announce (rendered per webhook format at delivery).
    pub payload: Notification,
    /// Runs that tried and failed to deliver it; at [`MAX_DELIVERY_RUNS`] it is dropped.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub runs: u32,
}

/// Runs that try to deliver one notification before it is dropped (SPEC §4).
pub const MAX_DELIVERY_RUNS: u32 = 5;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Default for State {
    fn default() -> Self {
        State {
            version: FORMAT_VERSION,
            repos: BTreeMap::new(),
            last_run: None,
            http: HttpCounters::default(),
            outbox: Vec::new(),
        }
    }
}

/// Monotonic HTTP counters (Prometheus counters must survive the process).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCounters {
    /// Requests per `forge/status` (e.g. `github/304`).
    #[serde(default)]
    pub requests: BTreeMap<String, u64>,
    /// Listings answered entirely from the cache (every page 304).
    #[serde(default)]
    pub cache_hits: u64,
}

impl HttpCounters {
    /// True when nothing was ever counted.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.cache_hits == 0
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
    /// Deployments ever finished, per status (`succeeded`, `failed`, `timed_out`): a counter.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployments: BTreeMap<String, u64>,
    /// Milliseconds the last finished deployment took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_deployment_ms: Option<u64>,
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
pub struct LastRun {
    /// Its run id.
    pub run_id: String,
    /// When it saved (RFC 3339).
    pub at: String,
}

/// The JSON text of a state: pretty-printed, keys sorted at every level, newline-terminated, so
/// `git diff` and `kubectl get cm -o yaml` stay readable and two saves of one state are identical.
pub fn to_json(state: &State) -> String {
    // Going through `Value` sorts struct fields too: serde_json's map is a BTreeMap (no
    // `preserve_order`), which `keys_are_sorted` below checks.
    let value = serde_json::to_value(state).unwrap_or_else(|e| unreachable!("state always serializes: {e}"));
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_else(|e| unreachable!("value serializes: {e}"));
    text.push('\n');
    text
}

/// Reads a state document stored at `location` (named in errors).
///
/// The version is checked before the shape, so a newer format says "upgrade sentry" rather than
/// "corrupt".
pub fn from_json(location: &str, bytes: &[u8]) -> Result<State, StateError> {
    let corrupt = |reason: String| StateError::Corrupt { location: location.to_string(), reason };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(corrupt("it is empty".into()));
    }
    // The version first, so a newer format is reported as such whatever its shape. Only the
    // `version` member is kept; the rest is skipped without building anything.
    #[derive(Deserialize)]
    struct Head {
        version: Option<serde_json::Value>,
    }
    let head: Head = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => corrupt("not a JSON object".into()),
        _ => corrupt(format!("not JSON: {e}")),
    })?;
    let version = match head.version {
        None => return Err(corrupt("it has no format version".into())),
        Some(v) => v.as_u64().ok_or_else(|| corrupt(format!("format version {v} is not a number")))?,
    };
    if version > u64::from(FORMAT_VERSION) {
        return Err(StateError::TooNew { location: location.to_string(), version });
    }
    if version != u64::from(FORMAT_VERSION) {
        return Err(corrupt(format!("unknown format version {version}")));
    }
    // Straight into the typed state; the path of a problem is worked out only when there is one.
    if let Ok(state) = serde_json::from_slice(bytes) {
        return Ok(state);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let state = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        corrupt(format!("at {path}: {}", e.into_inner()))
    })?;
    de.end().map_err(|e| corrupt(format!("not JSON: {e}")))?;
    Ok(state)
}

/// Combines the state a run is saving with one another writer saved meanwhile (a ConfigMap
/// conflict): the repositories in `ours` win whole; repositories only in `theirs` are kept.
pub fn merge(ours: &State, theirs: &State) -> State {
    let mut merged = ours.clone();
    for (name, repo) in &theirs.repos {
        merged.repos.entry(name.clone()).or_insert_with(|| repo.clone());
    }
    merged
}

/// How [`open`] treats the run's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// No lock, read only (`status`, `--dry-run`): `save` is refused.
    None,
    /// Take the lock or fail at once with [`StateError::Busy`] (`poll`).
    Try,
    /// Wait up to this long for the lock, then [`StateError::Busy`] (`deploy`).
    Wait(Duration),
}

/// What a store needs to know about the run.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// This run's id, recorded as the lock or lease holder.
    pub run_id: String,
    /// How long one run may hold the lock before others may take it over (ConfigMap lease): `global.timeout`.
    pub lock_timeout: Duration,
    /// Limit for one HTTP request (ConfigMap).
    pub http_timeout: Duration,
}

/// Why the state could not be opened, read or saved. Messages name the location, never a token.
#[derive(Debug)]
pub enum StateError {
    /// Another run holds the lock or lease.
    Busy {
        /// Where the state lives.
        location: String,
        /// Who holds it, as far as known.
        holder: String,
    },
    /// A stop (SIGTERM/SIGINT) was requested while waiting for the lock: nothing was touched.
    Stopped {
        /// Where the state lives.
        location: String,
    },
    /// Another run took the lease over while this one was still running.
    LeaseLost {
        /// Where the state lives.
        location: String,
        /// Who holds it now.
        holder: String,
    },
    /// The stored state does not parse.
    Corrupt {
        /// Where the state lives.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The stored state has a newer format version than this build understands.
    TooNew {
        /// Where the state lives.
        location: String,
        /// The version found.
        version: u64,
    },
    /// The state is larger than its store accepts.
    TooLarge {
        /// Where the state lives.
        location: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The store was opened with [`LockMode::None`] and cannot save.
    ReadOnly {
        /// Where the state lives.
        location: String,
    },
    /// A file-system operation failed.
    Io {
        /// Where the state lives.
        location: String,
        /// What was being done, e.g. "write /x/.s.json.tmp".
        action: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The Kubernetes API refused or could not be reached.
    Kube {
        /// Where the state lives.
        location: String,
        /// What went wrong.
        message: String,
    },
}

impl StateError {
    /// Where the state lives.
    pub fn location(&self) -> &str {
        match self {
            StateError::Busy { location, .. }
            | StateError::Stopped { location }
            | StateError::LeaseLost { location, .. }
            | StateError::Corrupt { location, .. }
            | StateError::TooNew { location, .. }
            | StateError::TooLarge { location, .. }
            | StateError::ReadOnly { location }
            | StateError::Io { location, .. }
            | StateError::Kube { location, .. } => location,
        }
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Busy { location, holder } => {
                write!(f, "state {location} is locked by another run ({holder})")
            }
            StateError::Stopped { location } => {
                write!(f, "state {location}: stop requested while waiting for the lock; nothing was done")
            }
            StateError::LeaseLost { location, holder } => {
                write!(f, "state {location}: the lease was taken over by {holder} while this run was going on")
            }
            StateError::Corrupt { location, reason } => write!(
                f,
                "state {location} cannot be read: {reason}; it was left untouched (repair or remove it to start afresh)"
            ),
            StateError::TooNew { location, version } => write!(
                f,
                "state {location} has format version {version}, newer than this sentry understands \
                 ({FORMAT_VERSION}); upgrade sentry. The state was left untouched"
            ),
            StateError::TooLarge { location, size, limit } => {
                write!(f, "state {location} is {size} bytes, over the limit of {limit} bytes")
            }
            StateError::ReadOnly { location } => write!(f, "state {location} was opened read-only; not saving"),
            StateError::Io { location, action, source } => write!(f, "state {location}: cannot {action}: {source}"),
            StateError::Kube { location, message } => write!(f, "state {location}: {message}"),
        }
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StateError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A place the state is kept, holding the run's lock (if any) until dropped.
pub trait StateStore: Send {
    /// Reads the state; a missing file or ConfigMap is an empty [`State::default`].
    fn load(&mut self) -> Result<State, StateError>;
    /// Replaces the stored state atomically. Never overwrites a stored state that does not parse.
    fn save(&mut self, state: &State) -> Result<(), StateError>;
    /// Where the state lives, for messages.
    fn location(&self) -> String;
    /// The open lock file, for job processes to inherit (so the lock outlives a killed run as
    /// long as they live); `None` for stores without a file lock.
    fn lock_handle(&self) -> Option<std::sync::Arc<std::fs::File>> {
        None
    }
}

/// Opens the store at `location`, taking the lock (file) or lease (ConfigMap) as `mode` says.
pub fn open(location: &Location, mode: LockMode, opts: &StoreOptions) -> Result<Box<dyn StateStore>, StateError> {
    Ok(match location {
        Location::File(path) => Box::new(file::FileStore::open(path, mode, opts)?),
        Location::ConfigMap { namespace, name } => {
            Box::new(configmap::ConfigMapStore::open(namespace.as_deref(), name, mode, opts)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(from_json("x", to_json(&s).as_bytes()).expect("parses"), s);
    }

    fn sample() -> State {
        let sha = |c: char| Sha::parse(&c.to_string().repeat(40)).expect("valid");
        let mut s = State::default();
        let repo = s.repos.entry("zeta".into()).or_default();
        repo.last_checked = Some("2026-11-22T12:00:00Z".into());
        repo.validators =
            Some(Validators { fingerprint: "fp".into(), etags: vec!["\"e\"".into()], ..Default::default() });
        repo.branches.insert(
            "main".into(),
            BranchState {
                seen: Some(sha('b')),
                deployed: Some(sha('a')),
                deployed_at: Some("2026-11-22T11:00:00Z".into()),
                failure: Some(Failure { commit: sha('b'), attempts: 2, error: "boom".into(), at: "t".into() }),
            },
        );
        s.repos.entry("alpha".into()).or_default();
        s.last_run = Some(LastRun { run_id: "r1".into(), at: "2026-11-22T12:00:00Z".into() });
        s
    }

    #[test]
    fn json_is_stable_pretty_and_sorted() {
        let s = sample();
        let text = to_json(&s);
        assert_eq!(text, to_json(&from_json("x", text.as_bytes()).expect("parses")));
        assert!(text.ends_with("}\n") && text.contains("\n  \""), "pretty: {text}");
        // Sibling keys appear in sorted order in the text itself.
        let pos = |k: &str| text.find(&format!("\"{k}\"")).expect(k);
        assert!(pos("last_run") < pos("repos") && pos("repos") < pos("version"));
        assert!(pos("alpha") < pos("zeta"));
        assert!(pos("deployed") < pos("deployed_at") && pos("failure") < pos("seen"));
    }

    #[test]
    fn unreadable_documents_are_refused_with_the_location() {
        let err = |text: &str| from_json("/s.json", text.as_bytes()).expect_err(text);
        for bad in [
            "",
            "  \n",
            "{",
            "[]",
            "{}",
            r#"{"version":"1"}"#,
            r#"{"version":0,"repos":{}}"#,
            r#"{"version":1,"repos":{"a":{"branches":{"main":{"seen":"xyz"}}}}}"#,
            r#"{"version":1,"surprise":true}"#,
        ] {
            let e = err(bad);
            assert!(matches!(e, StateError::Corrupt { .. }), "{bad}: {e:?}");
            assert!(e.to_string().contains("/s.json"), "{e}");
        }
        let e = err(r#"{"version":1,"repos":{"a":{"branches":{"main":{"seen":"xyz"}}}}}"#);
        assert!(e.to_string().contains("repos.a.branches.main.seen"), "{e}");
        let e = err(r#"{"version":2,"repos":{},"whatever":[]}"#);
        assert!(matches!(e, StateError::TooNew { version: 2, .. }), "{e:?}");
        assert!(e.to_string().contains("upgrade"), "{e}");
    }

    #[test]
    fn merge_keeps_ours_and_their_extra_repositories() {
        let ours = sample();
        let mut theirs = State::default();
        theirs.repos.entry("zeta".into()).or_default().last_error = Some("theirs".into());
        theirs.repos.entry("only-theirs".into()).or_default().last_checked = Some("t".into());
        let m = merge(&ours, &theirs);
        assert_eq!(m.repos["zeta"], ours.repos["zeta"]);
        assert_eq!(m.repos["alpha"], ours.repos["alpha"]);
        assert_eq!(m.repos["only-theirs"], theirs.repos["only-theirs"]);
        assert_eq!(m.last_run, ours.last_run);
    }
}

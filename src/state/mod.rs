//! The state: what sentry remembers between runs (SPEC §3), and where it is kept.
//!
//! `State` is plain data. A [`StateStore`] loads and saves it atomically and holds the run's
//! exclusive lock (file lock or ConfigMap lease) from [`open`] until it is dropped.

pub mod configmap;
pub mod file;

use crate::model::{
    DeploymentRecord, FailedCommand, Heads, JobStatus, Location, Notification, Reason, Sha, Validators,
};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The state format this build writes. Version 1 (sentry 1.x) is read and upgraded on save.
pub const FORMAT_VERSION: u32 = 2;

/// Longest ETag kept: a longer one is not stored, so its page is fetched without a validator
/// next time (SPEC §3 "Bounded").
pub const MAX_ETAG_BYTES: usize = 256;

/// Longest branch or tag name kept (git itself allows more, no forge does).
pub const MAX_REF_BYTES: usize = 255;

/// How long the record of a branch or tag that vanished is kept (SPEC §3).
pub const GONE_KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

/// Everything remembered between runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// HTTP counters carried across runs, for the metrics file.
    #[serde(default, skip_serializing_if = "HttpCounters::is_empty")]
    pub http: HttpCounters,
    /// The last run that saved this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    /// When the last run that exited 0 finished (RFC 3339): `sentry_last_success_timestamp_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "unix_time::option")]
    pub last_success: Option<String>,
    /// Deployment notifications recorded but not yet delivered (sent by the next run if this
    /// one is interrupted). Webhook URLs are not stored: they may be secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<Pending>,
    /// Per repository name.
    #[serde(default)]
    pub repos: BTreeMap<String, RepoState>,
    /// Format version; a newer one is refused rather than misread.
    pub version: u32,
}

/// A notification waiting to be delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// `repo/branch/commit/attempt`: one notification per deployment attempt.
    pub id: String,
    /// What to announce (rendered per webhook format at delivery).
    pub payload: Notification,
    /// The repository (its webhook and the global one are looked up at send time).
    pub repo: String,
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
            last_success: None,
            http: HttpCounters::default(),
            outbox: Vec::new(),
        }
    }
}

/// Monotonic HTTP counters (Prometheus counters must survive the process).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCounters {
    /// Listings answered entirely from the cache (every page 304).
    #[serde(default)]
    pub cache_hits: u64,
    /// Requests per `forge/status` (e.g. `github/304`).
    #[serde(default)]
    pub requests: BTreeMap<String, u64>,
}

impl HttpCounters {
    /// True when nothing was ever counted.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.cache_hits == 0
    }
}

/// A repository's branches or tags by name. Boxed: a B-tree node has room for 11 entries, so
/// a single-branch repository held 11 unboxed records (~3 KiB; 31 MB at 10,000 repositories).
pub type Refs = BTreeMap<String, Box<RefState>>;

/// What one repository's state holds. Fields are declared in name order: the JSON is written
/// straight from these types, and sorted keys keep two saves of one state identical.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoState {
    /// Per monitored branch: those listed now and those gone for less than 30 days.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub branches: Refs,
    /// Deployments ever finished, per status (`succeeded`, `failed`, `timed_out`): a counter.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployments: BTreeMap<String, u64>,
    /// Changes filtered, per reason (`paths`, `skip_marker`): a counter
    /// (`sentry_filtered_changes_total`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filtered: BTreeMap<String, u64>,
    /// When the repository was last checked successfully (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "unix_time::option")]
    pub last_checked: Option<String>,
    /// Milliseconds the last finished deployment took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_deployment_ms: Option<u64>,
    /// Why the last check failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Per monitored tag, as for branches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: Refs,
    /// Tags were listed before: a tag seen from now on is new (the first listing is a baseline).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tags_checked: bool,
    /// HTTP cache validators of the last listing. The heads they stand for are not stored
    /// again: they are the `seen` heads of the refs that are not gone ([`RepoState::validators`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validators: Option<StoredValidators>,
}

impl RepoState {
    /// Its tags (`tag`) or its branches: the one place that choice is made (a tag was once
    /// compared and recorded on a branch of its name).
    pub fn refs(&self, tag: bool) -> &Refs {
        if tag { &self.tags } else { &self.branches }
    }

    /// [`RepoState::refs`], to change.
    pub fn refs_mut(&mut self, tag: bool) -> &mut Refs {
        if tag { &mut self.tags } else { &mut self.branches }
    }

    /// The cache validators with the heads they stand for, for the next listing.
    pub fn validators(&self) -> Option<Validators> {
        let v = self.validators.as_ref()?;
        // Branches only: tags are listed apart, without validators (forge/tags.rs).
        let heads: Heads = self
            .branches
            .iter()
            .filter(|(_, r)| r.gone_since.is_none())
            .filter_map(|(name, r)| r.seen.clone().map(|s| (name.clone(), s)))
            .collect();
        Some(Validators { fingerprint: v.fingerprint.clone(), etags: v.etags.clone(), heads })
    }

    /// Keeps `v` for the next listing; an ETag over [`MAX_ETAG_BYTES`] is not kept.
    pub fn set_validators(&mut self, v: Option<&Validators>) {
        self.validators = v.map(|v| StoredValidators {
            etags: v.etags.iter().map(|e| if e.len() > MAX_ETAG_BYTES { String::new() } else { e.clone() }).collect(),
            fingerprint: v.fingerprint.clone(),
        });
    }
}

/// Cache validators as stored. Unknown fields are accepted here only: version 1 also stored
/// the heads (`heads`), which are now derived from the refs; they are read and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredValidators {
    /// The ETag of each listing page, in page order ("" for a page without one).
    #[serde(default)]
    pub etags: Vec<String>,
    /// Identifies what was asked: a changed config invalidates the cache.
    pub fingerprint: String,
}

/// What one branch's (or tag's) state holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "RefWire")]
pub struct RefState {
    /// The head seen by the last check (written only when it differs from `deployed`).
    pub seen: Option<Sha>,
    /// The last commit deployed successfully (or recorded as baseline).
    pub deployed: Option<Sha>,
    /// When `deployed` was set (RFC 3339).
    pub deployed_at: Option<String>,
    /// `deployed` is the baseline recorded at first sight, not a deployment.
    pub baseline: bool,
    /// A commit whose deployment failed and has not succeeded since.
    pub failure: Option<Failure>,
    /// The last head that was filtered (no changed file counted, or a skip marker): seen, not
    /// deployed, and where the next comparison starts. Cleared by a deployment.
    pub filtered: Option<Sha>,
    /// When the ref stopped being listed (or matching); dropped 30 days later (SPEC §3).
    pub gone_since: Option<String>,
    /// After `rollback`: the head it was pinned at. `poll` leaves the ref alone until the head
    /// moves away from it or `deploy` is run (SPEC §1).
    pub pinned_at: Option<Sha>,
    /// Finished deployments, newest first, at most `global.history`.
    pub history: Vec<HistoryEntry>,
}

/// The stored shape of a [`RefState`]: `seen` absent means "the same as `deployed`", so a
/// branch that is up to date stores its commit once.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefWire {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    baseline: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deployed: Option<Sha>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "unix_time::option")]
    deployed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure: Option<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    filtered: Option<Sha>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "unix_time::option")]
    gone_since: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    history: Vec<HistoryEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pinned_at: Option<Sha>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seen: Option<Sha>,
}

impl From<RefWire> for RefState {
    fn from(w: RefWire) -> RefState {
        RefState {
            seen: w.seen.or_else(|| w.deployed.clone()),
            deployed: w.deployed,
            deployed_at: w.deployed_at,
            baseline: w.baseline,
            failure: w.failure,
            filtered: w.filtered,
            gone_since: w.gone_since,
            pinned_at: w.pinned_at,
            history: w.history,
        }
    }
}

impl Serialize for RefState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let seen = if self.seen == self.deployed { None } else { self.seen.clone() };
        RefWire {
            baseline: self.baseline,
            deployed: self.deployed.clone(),
            deployed_at: self.deployed_at.clone(),
            failure: self.failure.clone(),
            filtered: self.filtered.clone(),
            gone_since: self.gone_since.clone(),
            history: self.history.clone(),
            pinned_at: self.pinned_at.clone(),
            seen,
        }
        .serialize(s)
    }
}

/// One finished deployment in a ref's history (SPEC §3): the [`DeploymentRecord`] less what
/// the map keys already say (repository, branch) and what is too large to keep (output).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    /// How many attempts at this commit this was.
    pub attempt: u32,
    /// The commit.
    pub commit: Sha,
    /// How long it took.
    pub duration_ms: u64,
    /// The exit code of the failed command, if one failed with a code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// 0-based index of the failed command, if one failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_command: Option<usize>,
    /// Why it was deployed.
    pub reason: Reason,
    /// The run that deployed it.
    pub run_id: String,
    /// When it started (RFC 3339).
    #[serde(with = "unix_time")]
    pub started_at: String,
    /// How it ended: succeeded, failed or timed_out.
    pub status: JobStatus,
}

impl HistoryEntry {
    /// The history entry of a finished deployment.
    pub fn of(done: &DeploymentRecord, run_id: &str, started_at: &str) -> HistoryEntry {
        let failed: Option<&FailedCommand> = done.failed_command.as_ref();
        HistoryEntry {
            attempt: done.attempt,
            commit: done.commit.clone(),
            duration_ms: done.duration_ms,
            exit_code: failed.and_then(|f| f.exit_code),
            failed_command: failed.map(|f| f.index),
            reason: done.reason,
            run_id: run_id.to_string(),
            started_at: started_at.to_string(),
            status: done.status,
        }
    }
}

/// A failed deployment waiting for a retry, or parked after `max_attempts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// When the last attempt ended (RFC 3339).
    #[serde(with = "unix_time")]
    pub at: String,
    /// Attempts made so far (a failure before the first command counts none).
    pub attempts: u32,
    /// The commit that failed.
    pub commit: Sha,
    /// The last error, redacted.
    pub error: String,
}

/// Metadata of the run that last saved the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastRun {
    /// When it saved (RFC 3339).
    pub at: String,
    /// Its run id.
    pub run_id: String,
}

/// The JSON text of a state file: pretty-printed, keys sorted (the types declare their fields
/// in name order), newline-terminated, so `git diff` stays readable and two saves of one state
/// are identical. Written straight from the typed state: no intermediate tree.
pub fn to_json(state: &State) -> String {
    let mut text = serde_json::to_string_pretty(state).unwrap_or_else(|e| unreachable!("state always serializes: {e}"));
    text.push('\n');
    text
}

/// [`to_json`] for a store that saves after every finished job: the records of repositories
/// that did not change since the previous call are reused as text, not encoded again. At 3,000
/// repositories each save re-encoded ~1 MB of unchanged records (BENCHMARKS.md, P5).
#[derive(Debug, Default)]
pub struct PrettyCache {
    /// Each repository's record as it appears in the file (indented, without separator).
    fragments: std::collections::HashMap<String, String>,
    /// The last text, its buffer reused: a fresh 1 MB buffer per save was fresh pages to fault
    /// in each time.
    out: String,
}

impl PrettyCache {
    /// Exactly `to_json(state)`, encoding again only the repositories in `changed` and those it
    /// has not seen. Everything but the repositories is small and encoded whole every time.
    pub fn encode(&mut self, state: &State, changed: &std::collections::BTreeSet<String>) -> &str {
        let head = State {
            http: state.http.clone(),
            last_run: state.last_run.clone(),
            last_success: state.last_success.clone(),
            outbox: state.outbox.clone(),
            repos: BTreeMap::new(),
            version: state.version,
        };
        let head = to_json(&head);
        // The empty map, at depth 1 (deeper lines start with more spaces): where the records go.
        const EMPTY: &str = "\n  \"repos\": {}";
        let Some(at) = head.find(EMPTY) else {
            self.out = to_json(state);
            return &self.out;
        };
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.push_str(&head[..at]);
        out.push_str("\n  \"repos\": {");
        for (i, (name, repo)) in state.repos.iter().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            match self.fragments.get(name) {
                Some(f) if !changed.contains(name) => out.push_str(f),
                _ => {
                    let f = fragment(name, repo);
                    out.push_str(&f);
                    self.fragments.insert(name.clone(), f);
                }
            }
        }
        out.push_str(if state.repos.is_empty() { "}" } else { "\n  }" });
        out.push_str(&head[at + EMPTY.len()..]);
        // Every repository has its record now: more records than repositories are gone ones.
        if self.fragments.len() > state.repos.len() {
            self.fragments.retain(|name, _| state.repos.contains_key(name));
        }
        debug_assert_eq!(out, to_json(state), "the reused records must be the ones to_json writes");
        self.out = out;
        &self.out
    }
}

/// One repository's record as the pretty file holds it, at depth 2: `    "name": {` and its
/// lines indented by four more spaces (a JSON string holds no raw newline, so lines are safe).
fn fragment(name: &str, repo: &RepoState) -> String {
    let key = serde_json::to_string(name).unwrap_or_else(|e| unreachable!("a string always serializes: {e}"));
    let body = serde_json::to_string_pretty(repo).unwrap_or_else(|e| unreachable!("state always serializes: {e}"));
    let mut f = String::with_capacity(key.len() + body.len() + 4 * body.lines().count() + 8);
    f.push_str("    ");
    f.push_str(&key);
    f.push_str(": ");
    for (i, line) in body.split('\n').enumerate() {
        if i > 0 {
            f.push_str("\n    ");
        }
        f.push_str(line);
    }
    f
}

/// The compact JSON bytes of a state (the ConfigMap copy, gzip-compressed on top).
pub fn to_compact_json(state: &State) -> Vec<u8> {
    serde_json::to_vec(state).unwrap_or_else(|e| unreachable!("state always serializes: {e}"))
}

/// Times are kept as RFC 3339 text in memory and stored as Unix seconds (format 2: 10 bytes
/// instead of 22, a third of a single-branch repository's record). Reading accepts both, so
/// version 1 files (text) read as they are; text that is not our RFC 3339 is kept as text.
mod unix_time {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Seconds(u64),
        Text(String),
    }

    fn to_text(v: Stored) -> String {
        match v {
            Stored::Seconds(n) => crate::time::rfc3339(
                std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(n)).unwrap_or(std::time::UNIX_EPOCH),
            ),
            Stored::Text(t) => t,
        }
    }

    fn write<S: Serializer>(t: &str, s: S) -> Result<S::Ok, S::Error> {
        match crate::time::parse_rfc3339(t).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()) {
            Some(d) => s.serialize_u64(d.as_secs()),
            None => s.serialize_str(t),
        }
    }

    pub fn serialize<S: Serializer>(t: &str, s: S) -> Result<S::Ok, S::Error> {
        write(t, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Stored::deserialize(d).map(to_text)
    }

    /// The same for optional times.
    pub mod option {
        use super::{Stored, to_text, write};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(t: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => write(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
            Option::<Stored>::deserialize(d).map(|v| v.map(to_text))
        }
    }
}

/// Encodes `state`; when that is over `limit` bytes, drops the cache validators (they only save
/// requests; SPEC §3 "Bounded") and tries again. `Err` holds the smallest size reached.
pub(crate) fn encode_within(state: &State, limit: u64, encode: impl Fn(&State) -> Vec<u8>) -> Result<Vec<u8>, u64> {
    let bytes = encode(state);
    if bytes.len() as u64 <= limit {
        return Ok(bytes);
    }
    let mut lean = state.clone();
    for repo in lean.repos.values_mut() {
        repo.validators = None;
    }
    let bytes = encode(&lean);
    if bytes.len() as u64 <= limit {
        log::warn!("the state is over its size limit: cache validators dropped (the next run lists in full)");
        Ok(bytes)
    } else {
        Err(bytes.len() as u64)
    }
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
    // Version 1 has the same shape less the new (optional) fields: it reads as is and is
    // written back as version 2 by the next save.
    if version != 1 && version != u64::from(FORMAT_VERSION) {
        return Err(corrupt(format!("unknown format version {version}")));
    }
    // Straight into the typed state; the path of a problem is worked out only when there is one.
    if let Ok(state) = serde_json::from_slice::<State>(bytes) {
        return Ok(State { version: FORMAT_VERSION, ..state });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let state = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        corrupt(format!("at {path}: {}", e.into_inner()))
    })?;
    de.end().map_err(|e| corrupt(format!("not JSON: {e}")))?;
    Ok(State { version: FORMAT_VERSION, ..state })
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
    /// [`StateStore::save`], told that since this store's previous `save_changed` only the
    /// repositories in `changed` (and the fields outside `repos`) may differ; a store may use
    /// it to encode less.
    fn save_changed(&mut self, state: &State, changed: &std::collections::BTreeSet<String>) -> Result<(), StateError> {
        let _ = changed;
        self.save(state)
    }
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
        s.repos.entry("r".into()).or_default().branches.insert(
            "main".into(),
            Box::new(RefState { seen: Some(sha.clone()), deployed: Some(sha), ..Default::default() }),
        );
        let json = serde_json::to_string(&s).expect("serializes");
        assert_eq!(serde_json::from_str::<State>(&json).expect("parses"), s);
        assert_eq!(from_json("x", to_json(&s).as_bytes()).expect("parses"), s);
    }

    #[test]
    fn pretty_cache_writes_exactly_to_json_reencoding_only_what_changed() {
        let sha = |c: char| Sha::parse(&c.to_string().repeat(40)).expect("valid");
        let mut s = sample();
        let mut cache = PrettyCache::default();
        let none = std::collections::BTreeSet::new();
        // Empty, then the first call: every record is new to the cache.
        assert_eq!(PrettyCache::default().encode(&State::default(), &none), to_json(&State::default()).as_str());
        assert_eq!(cache.encode(&s, &none), to_json(&s).as_str());
        for name in ["a\"quoted\"", "mid", "\u{e9}t\u{e9}"] {
            s.repos.entry(name.into()).or_default().last_error = Some("line\nbreak".into());
        }
        s.outbox.clear();
        // Records it has not seen are encoded, records gone are left out.
        s.repos.remove("zeta");
        assert_eq!(cache.encode(&s, &none), to_json(&s).as_str());
        // A changed record, named, is encoded again; the others are the cache's text.
        s.repos.entry("mid".into()).or_default().branches.insert(
            "main".into(),
            Box::new(RefState { seen: Some(sha('b')), deployed: Some(sha('b')), ..Default::default() }),
        );
        s.last_success = Some("2026-11-22T12:00:05Z".into());
        let changed: std::collections::BTreeSet<String> = ["mid".to_string()].into();
        assert_eq!(cache.encode(&s, &changed), to_json(&s).as_str());
        assert!(cache.fragments.get("mid").is_some_and(|f| f.contains(&"b".repeat(40))));
        assert_eq!(cache.fragments.len(), s.repos.len());
    }

    fn sample() -> State {
        let sha = |c: char| Sha::parse(&c.to_string().repeat(40)).expect("valid");
        let mut s = State::default();
        let repo = s.repos.entry("zeta".into()).or_default();
        repo.last_checked = Some("2026-11-22T12:00:00Z".into());
        repo.set_validators(Some(&Validators {
            fingerprint: "fp".into(),
            etags: vec!["\"e\"".into(), "x".repeat(MAX_ETAG_BYTES + 1)],
            ..Default::default()
        }));
        repo.branches.insert(
            "main".into(),
            Box::new(RefState {
                seen: Some(sha('b')),
                deployed: Some(sha('a')),
                deployed_at: Some("2026-11-22T11:00:00Z".into()),
                failure: Some(Failure { commit: sha('b'), attempts: 2, error: "boom".into(), at: "t".into() }),
                ..Default::default()
            }),
        );
        s.repos.entry("alpha".into()).or_default();
        s.last_run = Some(LastRun { run_id: "r1".into(), at: "2026-11-22T12:00:00Z".into() });
        s.last_success = Some("2026-11-22T11:59:00Z".into());
        s
    }

    #[test]
    fn json_is_stable_pretty_and_sorted() {
        let s = sample();
        let text = to_json(&s);
        assert_eq!(text, to_json(&from_json("x", text.as_bytes()).expect("parses")));
        // The ETag over 256 bytes was not stored: that page is fetched without a validator.
        let etags = &s.repos["zeta"].validators.as_ref().expect("validators").etags;
        assert_eq!(etags, &["\"e\"".to_string(), String::new()]);
        assert!(text.ends_with("}\n") && text.contains("\n  \""), "pretty: {text}");
        // Sibling keys appear in sorted order in the text itself.
        let pos = |k: &str| text.find(&format!("\"{k}\"")).expect(k);
        assert!(pos("last_run") < pos("last_success") && pos("last_success") < pos("repos"));
        assert!(pos("repos") < pos("version"));
        assert!(text.contains("\"last_success\": 1795348740"), "stored as Unix seconds: {text}");
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
        let e = err(r#"{"version":3,"repos":{},"whatever":[]}"#);
        assert!(matches!(e, StateError::TooNew { version: 3, .. }), "{e:?}");
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

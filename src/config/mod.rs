//! Configuration: YAML schema, `${VAR}` expansion, validation into typed values (SPEC §2).
//!
//! Parsing happens in two steps: serde reads the document into [`raw`] types whose leaves carry
//! their line; [`Validator`] then expands variables and validates every field, collecting all
//! problems instead of stopping at the first.

mod expand;
mod raw;
pub mod shell;
mod tree;

pub use expand::expand;

pub use crate::model::ForgeKind;
use crate::model::Location;
use crate::model::location::is_dns_label;
use crate::secret::{Redactor, Secret};
use raw::S;
use regex::Regex;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest configuration file accepted (SPEC §2): a bigger one is a mistake, not a config.
const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;

/// Most repositories one file may list (SPEC §2).
const MAX_REPOSITORIES: usize = 100_000;

/// Longest duration any setting may ask for (SPEC §2 "Bounds"): 7 days. Every deadline is
/// computed from these, so no addition to a clock can overflow.
const MAX_DURATION_S: u64 = 7 * 24 * 3600;

/// Longest single HTTP request: 1 hour.
const MAX_HTTP_TIMEOUT_S: u64 = 3600;

/// Most checks or jobs in flight at once.
const MAX_CONCURRENCY: u64 = 256;

/// `global.skip_markers` when not set (SPEC §2 v2).
pub const DEFAULT_SKIP_MARKERS: [&str; 2] = ["[skip deploy]", "[deploy skip]"];

/// Most history entries per ref: each costs ~100 bytes of state.
const MAX_HISTORY: u64 = 1000;

/// `global.max_attempts` when not set.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// `global.http_timeout` when not set, in seconds.
pub const DEFAULT_HTTP_TIMEOUT_S: u64 = 30;

/// Most attempts at one commit.
const MAX_ATTEMPTS: u64 = 1000;

/// The validated configuration of one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from, for messages.
    pub path: PathBuf,
    /// Time between passes of `poll` without `--once`.
    pub polling_interval: Duration,
    /// Settings that apply to every repository.
    pub global: Global,
    /// Deployment groups by name.
    pub groups: BTreeMap<String, Group>,
    /// Watched repositories, in configuration order.
    pub repositories: Vec<Repository>,
    /// Index of each repository by name: lookups per repository stay O(1) at 10,000.
    by_name: std::collections::HashMap<String, usize>,
    /// What is allowed but probably not meant (a command using a variable the job will not
    /// have); `validate` prints them, the other commands log them.
    pub warnings: Vec<Problem>,
}

/// The `global:` section with defaults applied.
#[derive(Debug, Clone)]
pub struct Global {
    /// Where deployments clone (SENTRY_TMP_DIR overrides).
    pub tmp_dir: PathBuf,
    /// Remove each deployment's directory afterwards.
    pub cleanup: bool,
    /// Log level from the file, used when neither flag nor environment sets one.
    pub log_level: Option<log::LevelFilter>,
    /// Longest a single deployment (clone + commands) may take.
    pub timeout: Duration,
    /// Default state location.
    pub state: Option<Location>,
    /// Repository checks in flight at once.
    pub concurrency: usize,
    /// Limit for one HTTP request.
    pub http_timeout: Duration,
    /// What to do with heads of a repository that has no state yet.
    pub on_first_seen: OnFirstSeen,
    /// Attempts per failing commit before it is parked.
    pub max_attempts: u32,
    /// Extra trusted roots for HTTPS.
    pub ca_file: Option<PathBuf>,
    /// Where every repository's deployment results are also POSTed.
    pub webhook: Option<Webhook>,
    /// Prometheus text file written after each run (node-exporter textfile collector).
    pub metrics_file: Option<PathBuf>,
    /// Prometheus Pushgateway base URL the same metrics are pushed to.
    pub pushgateway_url: Option<String>,
    /// How long the deliveries of one run may take after its deployments (SPEC §4).
    pub notify_timeout: Duration,
    /// Finished deployments kept per branch or tag (SPEC §3).
    pub history: usize,
    /// The ssh known_hosts file for git over ssh (host keys are always checked).
    pub known_hosts: Option<PathBuf>,
    /// A head commit whose message contains one of these is filtered, not deployed.
    pub skip_markers: Vec<String>,
    /// How GitHub repositories with a token are listed (SPEC §4 "Listing").
    pub github_api: GithubApi,
}

/// The API GitHub repositories that have a token are listed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GithubApi {
    /// GraphQL: up to 100 repositories per request (REST for those it cannot answer).
    Graphql,
    /// REST only: one conditional request per repository and page.
    Rest,
}

/// A notification endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Where to POST.
    pub url: String,
    /// Body shape.
    pub format: WebhookFormat,
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// sentry's own JSON document.
    Json,
    /// A Slack incoming-webhook message (`text` plus blocks).
    Slack,
    /// A Microsoft Teams workflow webhook message: one Adaptive Card.
    Teams,
}

/// Handling of branch heads seen for the first time in a repository without state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFirstSeen {
    /// Record them as the deployed baseline; deploy nothing.
    Record,
    /// Deploy them.
    Deploy,
}

/// A deployment group.
#[derive(Debug, Clone)]
pub struct Group {
    /// Its name (the key under `groups:`).
    pub name: String,
    /// Parallel or sequential.
    pub strategy: Strategy,
    /// Jobs running at once under `parallel`.
    pub max_parallel: usize,
    /// Whether a failure lets the remaining jobs run.
    pub continue_on_error: bool,
    /// Limit for the whole batch.
    pub global_timeout: Option<Duration>,
    /// Which members a change deploys.
    pub trigger: Trigger,
}

/// How a group runs its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Up to `max_parallel` at once.
    Parallel,
    /// One after another, in configuration order.
    Sequential,
}

/// Which members of a group a change deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Only the members that changed.
    Changed,
    /// Every member, once, when any member changed.
    All,
}

/// One watched repository.
#[derive(Debug, Clone)]
pub struct Repository {
    /// Unique name, `[A-Za-z0-9._-]+`.
    pub name: String,
    /// Group it deploys with, if any.
    pub group: Option<String>,
    /// What to watch.
    pub monitor: Monitor,
    /// What to do on a change.
    pub deploy: Deploy,
    /// Where to POST each deployment's result.
    pub webhook: Option<Webhook>,
}

/// The watched side of a repository.
#[derive(Debug, Clone)]
pub struct Monitor {
    /// Repository URL as written.
    pub repo_url: String,
    /// Branch patterns as written.
    pub patterns: Vec<String>,
    /// The same patterns, ready to match whole branch names.
    pub branches: Vec<BranchPattern>,
    /// Forge API flavour.
    pub kind: ForgeKind,
    /// Explicit API base, when set.
    pub api_url: Option<String>,
    /// Credentials for listing.
    pub auth: Auth,
    /// `paths` / `ignore_paths`: which changed files count (SPEC §4 "filters").
    pub filter: PathFilter,
    /// Tag patterns as written (`tags`); empty: tags are not listed.
    pub tag_patterns: Vec<String>,
    /// The same, ready to match whole tag names.
    pub tags: Vec<BranchPattern>,
    /// `semver`: only the highest tag in this range is deployed.
    pub semver: Option<semver::VersionReq>,
    /// Where the section's keys stand in the file, for problems found after loading.
    pub lines: MonitorLines,
}

/// Lines (1-based; 0 when unknown) of a monitor section's keys: `validate --connectivity`
/// names them like the problems found while loading.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonitorLines {
    /// `repo_url`.
    pub repo_url: u32,
    /// `branches`.
    pub branches: u32,
    /// `tags`.
    pub tags: u32,
}

/// A line as problems give it: `None` when unknown (0).
pub fn known_line(line: u32) -> Option<u64> {
    (line > 0).then_some(u64::from(line))
}

impl Monitor {
    /// True when `branch` matches one of the patterns (whole name).
    pub fn matches(&self, branch: &str) -> bool {
        self.branches.iter().any(|p| p.is_match(branch))
    }

    /// True when `tag` matches one of the tag patterns (whole name).
    pub fn matches_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|p| p.is_match(tag))
    }
}

/// `monitor.paths` and `monitor.ignore_paths`: globs over the full path from the repository
/// root (`*` within a segment, `**` across segments, `?`, `[classes]`).
#[derive(Clone, Debug, Default)]
pub struct PathFilter {
    /// A changed file counts only if it matches one of these (`None`: every file may count).
    pub paths: Option<globset::GlobSet>,
    /// A changed file that matches one of these never counts.
    pub ignore: Option<globset::GlobSet>,
}

impl PathFilter {
    /// True when the repository has path filters, so its changes need the changed files.
    pub fn is_active(&self) -> bool {
        self.paths.is_some() || self.ignore.is_some()
    }

    /// True when a change of `file` counts for a deployment.
    pub fn counts(&self, file: &str) -> bool {
        let file = file.trim_start_matches('/');
        self.paths.as_ref().is_none_or(|p| p.is_match(file)) && !self.ignore.as_ref().is_some_and(|i| i.is_match(file))
    }
}

/// One glob of `paths`/`ignore_paths`: `*` and `?` never cross a `/`.
pub fn compile_glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    globset::GlobBuilder::new(pattern.trim_start_matches('/')).literal_separator(true).backslash_escape(true).build()
}

/// One entry of `branches`: a regex matched against the whole branch name.
///
/// Most entries are plain names (`main`, `feature/login`), and a pattern made only of letters,
/// digits, `/`, `_` and `-` means the same as a regex or as a string, so it is compared as a
/// string: a compiled regex costs a few KiB, which at a thousand repositories was a third of
/// `validate`'s heap.
#[derive(Clone, Debug)]
pub enum BranchPattern {
    /// No regex metacharacters: matches exactly this name.
    Exact(String),
    /// Anchored (`^(?:p)$`) and compiled once.
    Regex(Regex),
}

impl BranchPattern {
    /// Compiles `p` (a regex over the whole name); the error is the regex crate's.
    pub fn new(p: &str) -> Result<BranchPattern, regex::Error> {
        if p.chars().all(|c| c.is_alphanumeric() || matches!(c, '/' | '_' | '-')) {
            return Ok(BranchPattern::Exact(p.to_string()));
        }
        regex::RegexBuilder::new(&format!("^(?:{p})$")).size_limit(1 << 20).build().map(BranchPattern::Regex)
    }

    /// True when the whole of `branch` matches.
    pub fn is_match(&self, branch: &str) -> bool {
        match self {
            BranchPattern::Exact(name) => name == branch,
            BranchPattern::Regex(re) => re.is_match(branch),
        }
    }
}

/// Username and token; both optional (public repositories). For git over ssh: the private key,
/// and the known_hosts of `global` (copied here so that every git command of this side has it).
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Username for Basic auth.
    pub username: Option<String>,
    /// Token; never printed.
    pub token: Option<Secret>,
    /// Private key for ssh (`ssh -i`, `IdentitiesOnly=yes`); never read, copied or logged.
    pub ssh_key_file: Option<PathBuf>,
    /// `global.known_hosts`: the host keys ssh checks against.
    pub known_hosts: Option<PathBuf>,
}

/// The deploy side of a repository.
#[derive(Debug, Clone)]
pub struct Deploy {
    /// Repository holding the deployment commands' files.
    pub qa_repo_url: String,
    /// Its branch to clone.
    pub qa_repo_branch: String,
    /// Host flavour of the QA repository (default user name for Basic auth).
    pub kind: ForgeKind,
    /// Project name (SENTRY_PROJECT); defaults to the repository name.
    pub project_name: String,
    /// Shell commands, run in one `sh` session.
    pub commands: Vec<String>,
    /// Shell commands run after a failed or timed-out deployment, in the same job directory.
    pub on_failure: Vec<String>,
    /// Extra environment for the commands.
    pub env: BTreeMap<String, String>,
    /// Credentials for the clone.
    pub auth: Auth,
    /// Post each deployment as a commit status on the monitored commit (SPEC §4).
    pub report_status: bool,
    /// The line of `qa_repo_url` (0 when unknown).
    pub qa_repo_url_line: u32,
}

impl Config {
    /// The repository called `name`.
    pub fn repository(&self, name: &str) -> Option<&Repository> {
        self.by_name.get(name).and_then(|i| self.repositories.get(*i))
    }

    /// A redactor that knows every token of this configuration.
    pub fn redactor(&self) -> Redactor {
        Redactor::new(self.repositories.iter().flat_map(|r| {
            [&r.monitor.auth, &r.deploy.auth]
                .into_iter()
                .filter_map(|a| a.token.as_ref().map(|t| (a.username.as_deref(), t)))
        }))
    }

    /// Every distinct token of this configuration (to strip from deployment environments).
    pub fn tokens(&self) -> Vec<&Secret> {
        // Usually one token serves many repositories: each distinct value once.
        let mut seen = std::collections::HashSet::new();
        self.repositories
            .iter()
            .flat_map(|r| [&r.monitor.auth.token, &r.deploy.auth.token])
            .flatten()
            .filter(|t| seen.insert(t.expose()))
            .collect()
    }
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Field path, e.g. `repositories[2].deploy.commands`.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A message of several lines (a regex error's caret) keeps them, indented below.
        let message = self.message.replace('\n', "\n      ");
        match (self.path.is_empty(), self.line) {
            (true, Some(line)) => write!(f, "line {line}: {message}"),
            (true, None) => f.write_str(&message),
            (false, Some(line)) => write!(f, "{} (line {line}): {message}", self.path),
            (false, None) => write!(f, "{}: {message}", self.path),
        }
    }
}

/// Every problem found in one configuration file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong, in document order where known.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{}: {n} problem{}", self.file.display(), if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            write!(f, "\n  {}: {p}", self.file.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads, expands and validates the configuration at `path` with the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, &|name| std::env::var(name).ok())
}

/// Like [`load`], with an explicit environment (for tests).
pub fn load_with_env(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let fail = |path_: &str, message: String| ConfigError {
        file: path.to_path_buf(),
        problems: vec![Problem { path: path_.into(), line: None, message }],
    };
    // Read at most one byte past the limit: metadata lies for /dev/zero, pipes and /proc files.
    // The size it claims only sizes the buffer (growing by doubling would hold 1.5 copies).
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            let hint = f.metadata().map_or(0, |m| m.len()).min(MAX_CONFIG_BYTES);
            bytes.reserve_exact(usize::try_from(hint).unwrap_or(0).saturating_add(1));
            std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_CONFIG_BYTES + 1), &mut bytes)
        })
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => fail(
                "",
                "no such file: give the configuration file with -c PATH (or SENTRY_CONFIG_PATH); \
                 examples/sentry.yaml is a commented start"
                    .to_string(),
            ),
            _ => fail("", format!("cannot read: {e}")),
        })?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(fail("", format!("file is larger than {MAX_CONFIG_BYTES} bytes (64 MiB)")));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| fail("", format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to())))?;
    parse(path, &text, env)
}

/// Parses and validates configuration text (the file name is for messages only).
pub fn parse(file: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let error = |mut problems: Vec<Problem>| {
        problems.sort_by_key(|p| p.line.unwrap_or(u64::MAX));
        ConfigError { file: file.to_path_buf(), problems }
    };
    if text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
        let message = "the file is empty (examples/sentry.yaml is a commented start)".to_string();
        return Err(error(vec![Problem { path: String::new(), line: None, message }]));
    }
    let raw = match read_yaml(text) {
        Ok(raw) => raw,
        Err(first) => {
            // serde stops at the first structural problem: look again for all of them.
            let found = tree::read(text, yaml_options(text)).map(|docs| tree::problems(&docs, env));
            let (mut problems, stray) = found.map(|f| (f.problems, f.stray)).unwrap_or_default();
            if problems.is_empty() {
                problems.push(first);
            } else if stray.len() == problems.len()
                && let Some(rest) = tree::without_keys(text, &stray)
                && let Ok(raw) = read_yaml(&rest)
            {
                // Only keys in the way: the rest of the file is checked too (SPEC §2 v2, every
                // problem in one run), on the same lines.
                let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
                let mut checker = Validator { env, dir, problems: Vec::new(), warnings: Vec::new() };
                let _ = checker.config(file, raw);
                problems.extend(checker.problems);
                problems.sort_by_key(|p| p.line.unwrap_or(u64::MAX));
            }
            return Err(error(problems));
        }
    };
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut checker = Validator { env, dir, problems: Vec::new(), warnings: Vec::new() };
    let config = checker.config(file, raw);
    if checker.problems.is_empty()
        && let Some(mut config) = config
    {
        config.warnings = checker.warnings;
        return Ok(config);
    }
    Err(error(checker.problems))
}

/// The parser's budget: its default event and node limits (1,000,000 and 250,000) refuse
/// configurations of more than ~6,700 repositories, while SPEC §2 asks for 50,000 and more.
/// Every event and node needs a byte of input, and the input is capped at 64 MiB, so the limits
/// follow the text's size.
fn yaml_options(text: &str) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    let by_size = text.len().saturating_add(1024);
    budget.max_events = budget.max_events.max(by_size);
    budget.max_nodes = budget.max_nodes.max(by_size);
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

fn read_yaml(text: &str) -> Result<raw::Config, Problem> {
    // Tracking the field path costs as much as the parse itself, and only an error needs it:
    // parse plainly, and again with tracking only to explain a failure (same input, same error).
    if let Ok(raw) = serde_saphyr::from_str_with_options(text, yaml_options(text)) {
        return Ok(raw);
    }
    let mut field_path = String::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, yaml_options(text), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            field_path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| {
        // Spanned wrappers add a `.value` segment users never wrote.
        let path = field_path.replace(".value", "");
        let path = if path == "." { String::new() } else { path };
        let message = e.without_snippet().to_string();
        // "missing field `x`" happens on the parent; the field itself is what the user must add.
        let missing = message.split("missing field `").nth(1).and_then(|r| r.split('`').next());
        let path = match (missing, path.is_empty()) {
            (Some(field), true) => field.to_string(),
            (Some(field), false) => format!("{path}.{field}"),
            (None, true) => "(document)".to_string(),
            (None, false) => path,
        };
        // saphyr prefixes "error: line L column C: " or appends " at line L, column C"; the
        // line is reported once, on its own.
        let message = match message.split_once(": ").and_then(|(_, rest)| rest.split_once(": ")) {
            Some((pos, rest)) if pos.starts_with("line ") => rest.to_string(),
            _ => message,
        };
        let message = match message.rfind(" at line ") {
            Some(i) if message[i..].contains(", column ") => message[..i].to_string(),
            _ => message,
        };
        Problem { path, line: e.location().map(|l| l.line()), message }
    })
}

/// Validates raw values into typed ones, collecting every problem.
struct Validator<'e> {
    env: &'e dyn Fn(&str) -> Option<String>,
    /// The configuration file's directory: relative paths in the file are relative to it.
    dir: PathBuf,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

fn line<T>(s: &S<T>) -> Option<u64> {
    known_line(s.line)
}

/// What a field that takes a credential or a URL does with `$NAME` left in it.
fn unbraced_message(field: &str, names: &[String]) -> String {
    let first = names.first().map(String::as_str).unwrap_or("VAR");
    format!(
        "${first} is not expanded: sentry expands only the braced form; write {field}: \"${{{first}}}\" \
         (and $$ for a literal $)"
    )
}

impl Validator<'_> {
    fn problem(&mut self, path: impl Into<String>, line: Option<u64>, message: impl Into<String>) {
        self.problems.push(Problem { path: path.into(), line, message: message.into() });
    }

    /// Like [`Validator::string`] for a token, username or URL: `$NAME` without braces is an
    /// error that shows the braced form (SPEC §2 v2).
    fn credential(&mut self, path: &str, s: &S<String>) -> Option<String> {
        let names = expand::unbraced(&s.value);
        if !names.is_empty() {
            let field = path.rsplit('.').next().unwrap_or(path);
            self.problem(path, line(s), unbraced_message(field, &names));
            return None;
        }
        self.string(path, s)
    }

    /// [`Validator::credential`] of an optional field; empty means not set.
    fn opt_credential(&mut self, path: &str, s: &Option<S<String>>) -> Option<String> {
        s.as_ref().and_then(|s| self.credential(path, s)).filter(|v| !v.is_empty())
    }

    /// A path from the file: relative to the file's directory (SPEC §2 v2).
    fn file_path(&self, p: String) -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_relative() { self.dir.join(p) } else { p }
    }

    /// The entries of `branches` or `tags` at `path`: each expanded, non-empty and a valid regex
    /// over the whole name (`what`: "branch" or "tag"); the patterns as written and compiled.
    fn patterns(&mut self, path: &str, list: &[S<String>], what: &str) -> (Vec<String>, Vec<BranchPattern>) {
        let (mut written, mut compiled) = (Vec::new(), Vec::new());
        for (i, entry) in list.iter().enumerate() {
            let epath = format!("{path}[{i}]");
            let Some(p) = self.string(&epath, entry) else { continue };
            if p.is_empty() {
                self.problem(&epath, line(entry), format!("{what} pattern is empty"));
                continue;
            }
            match BranchPattern::new(&p) {
                Ok(pattern) => {
                    compiled.push(pattern);
                    written.push(p);
                }
                Err(e) => {
                    // The pattern as written, not as anchored, so the caret points into the
                    // user's own text; the regex crate's lines are kept.
                    let e = regex::RegexBuilder::new(&p).size_limit(1 << 20).build().err().unwrap_or(e);
                    self.problem(&epath, line(entry), format!("invalid regex {p:?}:\n{}", e.to_string().trim_end()));
                }
            }
        }
        (written, compiled)
    }

    /// Shell commands (`commands`, `on_failure`): passed to `sh` as written, the shell expands
    /// their variables, not sentry (SPEC §2 v2); none empty or holding a NUL byte.
    fn shell(&mut self, path: &str, list: &[S<String>]) -> Vec<String> {
        for (i, c) in list.iter().enumerate() {
            let cpath = format!("{path}[{i}]");
            if c.value.trim().is_empty() {
                self.problem(&cpath, line(c), "command is empty");
            } else if c.value.contains('\0') {
                self.problem(&cpath, line(c), "command contains a NUL byte");
            }
        }
        list.iter().map(|c| c.value.clone()).collect()
    }

    /// A list of globs (`paths`, `ignore_paths`); absent or empty: `None`.
    fn globs(&mut self, path: &str, list: &Option<S<Vec<S<String>>>>) -> Option<globset::GlobSet> {
        let list = list.as_ref()?;
        let mut builder = globset::GlobSetBuilder::new();
        let mut any = false;
        for (i, g) in list.value.iter().enumerate() {
            let gpath = format!("{path}[{i}]");
            let Some(p) = self.string(&gpath, g) else { continue };
            if p.trim().is_empty() {
                self.problem(&gpath, line(g), "a path glob must not be empty");
                continue;
            }
            match compile_glob(&p) {
                Ok(glob) => {
                    builder.add(glob);
                    any = true;
                }
                Err(e) => self.problem(&gpath, line(g), format!("invalid glob {p:?}: {}", e.kind())),
            }
        }
        if !any {
            return None;
        }
        match builder.build() {
            Ok(set) => Some(set),
            Err(e) => {
                self.problem(path, line(list), format!("cannot compile these globs: {e}"));
                None
            }
        }
    }

    /// Expands `${VAR}` in a string value.
    fn string(&mut self, path: &str, s: &S<String>) -> Option<String> {
        match expand(&s.value, self.env) {
            Ok(v) => Some(v),
            Err(m) => {
                self.problem(path, line(s), m);
                None
            }
        }
    }

    /// An optional string; empty, as written or after expansion, means not set (SPEC §2 v2).
    /// One that cannot be expanded is a problem and reads as not set, so the rest of its section
    /// is still checked: every unset variable is reported in one run (the file fails anyway).
    fn opt_string(&mut self, path: &str, s: &Option<S<String>>) -> Option<String> {
        s.as_ref().and_then(|s| self.string(path, s)).filter(|v| !v.is_empty())
    }

    /// A number within `min..=max` (SPEC §2 "Bounds"), else a problem and the default.
    fn bounded(&mut self, path: &str, s: &Option<S<u64>>, default: u64, min: u64, max: u64) -> u64 {
        match s {
            Some(v) if v.value < min => {
                let what = if min == 1 { "greater than 0".to_string() } else { format!("at least {min}") };
                self.problem(path, line(v), format!("must be {what} (got {})", v.value));
                default
            }
            Some(v) if v.value > max => {
                self.problem(path, line(v), format!("must be at most {max} (got {})", v.value));
                default
            }
            Some(v) => v.value,
            None => default,
        }
    }

    /// Seconds within `min..=max`.
    fn seconds(&mut self, path: &str, s: &Option<S<u64>>, default: u64, min: u64, max: u64) -> Duration {
        Duration::from_secs(self.bounded(path, s, default, min, max))
    }

    fn choice<T: Copy>(&mut self, path: &str, s: &Option<S<String>>, options: &[(&str, T)], default: T) -> T {
        let Some(s) = s else { return default };
        let Some(value) = self.string(path, s) else { return default };
        if value.is_empty() {
            return default;
        }
        match options.iter().find(|(name, _)| *name == value) {
            Some((_, t)) => *t,
            None => {
                let names: Vec<_> = options.iter().map(|(n, _)| *n).collect();
                self.problem(path, line(s), format!("unknown value {value:?}: expected one of {}", names.join(", ")));
                default
            }
        }
    }

    fn config(&mut self, file: &Path, raw: raw::Config) -> Option<Config> {
        let polling = self.bounded("polling_interval", &raw.polling_interval, 60, 60, MAX_DURATION_S);
        let global = self.global(&raw.global);
        let mut groups = BTreeMap::new();
        for (name, g) in &raw.groups {
            let group = self.group(name, g);
            groups.insert(name.clone(), group);
        }
        if raw.repositories.is_empty() {
            self.problem("repositories", None, "at least one repository is required");
        }
        if raw.repositories.len() > MAX_REPOSITORIES {
            let n = raw.repositories.len();
            self.problem(
                "repositories",
                None,
                format!("{n} repositories: at most {MAX_REPOSITORIES} per file (shard them)"),
            );
        }
        // Sized once: growing by doubling would hold two copies of 10,000 repositories at once.
        let mut repositories = Vec::with_capacity(raw.repositories.len().min(MAX_REPOSITORIES));
        let mut indices = Vec::with_capacity(raw.repositories.len().min(MAX_REPOSITORIES));
        let mut seen = BTreeSet::new();
        for (i, r) in raw.repositories.iter().enumerate() {
            let path = format!("repositories[{i}]");
            if let Some(repo) = self.repository(&path, r, &groups) {
                indices.push(i);
                if !seen.insert(repo.name.clone()) {
                    self.problem(
                        format!("{path}.name"),
                        line(&r.name),
                        format!("duplicate repository name {:?}", repo.name),
                    );
                }
                repositories.push(repo);
            }
        }
        // SPEC §2: relative key and known_hosts paths are relative to the config file's directory.
        let dir = file.parent().unwrap_or(Path::new(""));
        let known_hosts = global.as_ref().and_then(|g| g.known_hosts.as_ref()).map(|p| dir.join(p));
        for r in &mut repositories {
            for auth in [&mut r.monitor.auth, &mut r.deploy.auth] {
                auth.ssh_key_file = auth.ssh_key_file.take().map(|p| dir.join(p));
                auth.known_hosts = known_hosts.clone();
            }
        }
        let global = global.map(|g| Global { known_hosts, ..g });
        self.command_warnings(&raw, &indices, &repositories);
        let by_name = repositories.iter().enumerate().map(|(i, r)| (r.name.clone(), i)).collect();
        Some(Config {
            path: file.to_path_buf(),
            polling_interval: Duration::from_secs(polling),
            global: global?,
            groups,
            repositories,
            by_name,
            warnings: Vec::new(),
        })
    }

    /// Warns about variables the commands use that the job's environment will not have, or that
    /// hold a token (SPEC §2 v2). Warnings only: the shell, not sentry, expands commands.
    fn command_warnings(&mut self, raw: &raw::Config, indices: &[usize], repositories: &[Repository]) {
        // Variables that hold a token: named `${NAME}` in a token field, or whose value now is one.
        let mut token_vars: BTreeSet<String> = BTreeSet::new();
        for r in &raw.repositories {
            for auth in [&r.monitor.auth, &r.deploy.auth].into_iter().flatten() {
                if let Some(t) = &auth.token {
                    token_vars.extend(braced_names(&t.value));
                }
            }
        }
        let tokens: BTreeSet<&str> = repositories
            .iter()
            .flat_map(|r| [&r.monitor.auth.token, &r.deploy.auth.token])
            .flatten()
            .map(Secret::expose)
            .collect();
        let mut known: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
        for (&i, repo) in indices.iter().zip(repositories) {
            let Some(r) = raw.repositories.get(i) else { continue };
            let assigned: BTreeSet<String> =
                r.deploy.commands.value.iter().flat_map(|c| shell::assigned(&c.value)).collect();
            let mut warned = BTreeSet::new();
            for (j, c) in r.deploy.commands.value.iter().enumerate() {
                for reference in shell::references(&c.value) {
                    let name = reference.name;
                    if repo.deploy.env.contains_key(&name) || assigned.contains(&name) || !warned.insert(name.clone()) {
                        continue;
                    }
                    let value = known
                        .entry(name.clone())
                        .or_insert_with(|| (self.env)(&name).is_some_and(|v| tokens.contains(v.as_str())));
                    let path = format!("repositories[{i}].deploy.commands[{j}]");
                    if *value || token_vars.contains(&name) {
                        let message = format!(
                            "refers to ${name}, which holds a token: sentry removes tokens from the job's \
                             environment; pass it on purpose through deploy.env ({name}: \"${{{name}}}\")"
                        );
                        self.warnings.push(Problem { path, line: line(c), message });
                        continue;
                    }
                    let set = shell::SENTRY_SET.contains(&name.as_str())
                        || shell::SHELL_SET.contains(&name.as_str())
                        || (!name.starts_with("SENTRY_") && (self.env)(&name).is_some());
                    if !set && !reference.guarded {
                        let why = if name.starts_with("SENTRY_") {
                            "sentry sets no such variable (see README \"A job\")"
                        } else {
                            "it is not set now, not in deploy.env and not set by sentry"
                        };
                        let message = format!(
                            "refers to ${name}, which the job's environment will not have: {why}; \
                             the shell expands commands, sentry passes them as written"
                        );
                        self.warnings.push(Problem { path, line: line(c), message });
                    }
                }
            }
        }
    }

    fn global(&mut self, g: &raw::Global) -> Option<Global> {
        // From the environment: relative to the working directory; from the file: to the file.
        let tmp_dir = match (self.env)("SENTRY_TMP_DIR").filter(|v| !v.is_empty()) {
            Some(v) => PathBuf::from(v),
            None => match self.opt_string("global.tmp_dir", &g.tmp_dir) {
                Some(p) => self.file_path(p),
                None => PathBuf::from("/tmp/sentry"),
            },
        };
        let log_level = match &g.log_level {
            Some(s) => {
                let v = self.string("global.log_level", s).unwrap_or_default();
                match crate::logging::parse_level(&v) {
                    _ if v.is_empty() => None,
                    Ok(l) => Some(l),
                    Err(_) => {
                        self.problem(
                            "global.log_level",
                            line(s),
                            format!("unknown level {v:?}: expected error, warn, info, debug or trace"),
                        );
                        None
                    }
                }
            }
            None => None,
        };
        let ca_file = self.opt_string("global.ca_file", &g.ca_file).map(|p| self.file_path(p));
        if let (Some(path), Some(s)) = (&ca_file, &g.ca_file)
            && let Err(e) = std::fs::File::open(path)
        {
            self.problem("global.ca_file", line(s), format!("cannot read {}: {e}", path.display()));
        }
        let webhook = self.webhook("global", &g.webhook_url, &g.webhook_format);
        let metrics_file = self.opt_string("global.metrics_file", &g.metrics_file).map(|p| self.file_path(p));
        let pushgateway_url = self.opt_credential("global.pushgateway_url", &g.pushgateway_url);
        if let (Some(u), Some(s)) = (&pushgateway_url, &g.pushgateway_url)
            && let Err(m) = check_url(u, &["http", "https"], false)
        {
            self.problem("global.pushgateway_url", line(s), m);
        }
        let state = match (self.opt_string("global.state", &g.state).filter(|s| !s.is_empty()), &g.state) {
            (Some(loc), Some(s)) => match Location::parse(&loc) {
                Ok(Location::File(p)) => Some(Location::File(self.file_path(p.display().to_string()))),
                Ok(l) => Some(l),
                Err(m) => {
                    self.problem("global.state", line(s), m);
                    None
                }
            },
            _ => None,
        };
        Some(Global {
            tmp_dir,
            cleanup: g.cleanup.unwrap_or(true),
            log_level,
            timeout: self.seconds("global.timeout", &g.timeout, 300, 1, MAX_DURATION_S),
            state,
            concurrency: self.bounded("global.concurrency", &g.concurrency, 16, 1, MAX_CONCURRENCY) as usize,
            http_timeout: self.seconds(
                "global.http_timeout",
                &g.http_timeout,
                DEFAULT_HTTP_TIMEOUT_S,
                1,
                MAX_HTTP_TIMEOUT_S,
            ),
            notify_timeout: self.seconds("global.notify_timeout", &g.notify_timeout, 30, 1, MAX_DURATION_S),
            history: self.bounded("global.history", &g.history, 20, 0, MAX_HISTORY) as usize,
            on_first_seen: self.choice(
                "global.on_first_seen",
                &g.on_first_seen,
                &[("record", OnFirstSeen::Record), ("deploy", OnFirstSeen::Deploy)],
                OnFirstSeen::Record,
            ),
            max_attempts: self.bounded(
                "global.max_attempts",
                &g.max_attempts,
                u64::from(DEFAULT_MAX_ATTEMPTS),
                1,
                MAX_ATTEMPTS,
            ) as u32,
            ca_file,
            webhook,
            metrics_file,
            pushgateway_url,
            known_hosts: self
                .opt_string("global.known_hosts", &g.known_hosts)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            skip_markers: match &g.skip_markers {
                None => DEFAULT_SKIP_MARKERS.iter().map(|m| m.to_string()).collect(),
                Some(list) => {
                    let mut out = Vec::new();
                    for (i, m) in list.value.iter().enumerate() {
                        let path = format!("global.skip_markers[{i}]");
                        match self.string(&path, m) {
                            Some(v) if v.trim().is_empty() => self.problem(
                                &path,
                                line(m),
                                "a skip marker must not be empty (it would skip everything)",
                            ),
                            Some(v) => out.push(v),
                            None => {}
                        }
                    }
                    out
                }
            },
            github_api: self.choice(
                "global.github_api",
                &g.github_api,
                &[("graphql", GithubApi::Graphql), ("rest", GithubApi::Rest)],
                GithubApi::Graphql,
            ),
        })
    }

    fn group(&mut self, name: &str, g: &raw::Group) -> Group {
        let path = format!("groups.{name}");
        if !valid_name(name) {
            self.problem(&path, None, "group names must match [A-Za-z0-9._-]+");
        }
        Group {
            name: name.to_string(),
            strategy: self.choice(
                &format!("{path}.execution_strategy"),
                &g.execution_strategy,
                &[("parallel", Strategy::Parallel), ("sequential", Strategy::Sequential)],
                Strategy::Parallel,
            ),
            max_parallel: self.bounded(&format!("{path}.max_parallel"), &g.max_parallel, 4, 1, MAX_CONCURRENCY)
                as usize,
            continue_on_error: g.continue_on_error.unwrap_or(true),
            global_timeout: g
                .global_timeout
                .as_ref()
                .map(|_| self.seconds(&format!("{path}.global_timeout"), &g.global_timeout, 1, 1, MAX_DURATION_S)),
            trigger: self.choice(
                &format!("{path}.trigger"),
                &g.trigger,
                &[("changed", Trigger::Changed), ("all", Trigger::All)],
                Trigger::Changed,
            ),
        }
    }

    fn repository(&mut self, path: &str, r: &raw::Repository, groups: &BTreeMap<String, Group>) -> Option<Repository> {
        let name = self.string(&format!("{path}.name"), &r.name)?;
        if !valid_name(&name) {
            self.problem(
                format!("{path}.name"),
                line(&r.name),
                format!("{name:?} must match [A-Za-z0-9._-]+ (and not be . or ..)"),
            );
        }
        let group = self.opt_string(&format!("{path}.group"), &r.group);
        if let (Some(g), Some(s)) = (&group, &r.group)
            && !groups.contains_key(g)
        {
            let known: Vec<_> = groups.keys().map(String::as_str).collect();
            let known =
                if known.is_empty() { "none are defined".to_string() } else { format!("known: {}", known.join(", ")) };
            self.problem(
                format!("{path}.group"),
                line(s),
                format!("group {g:?} is not defined under groups ({known})"),
            );
        }
        let monitor = self.monitor(&format!("{path}.monitor"), &r.monitor);
        let deploy = self.deploy(&format!("{path}.deploy"), &r.deploy, &name, line(&r.name));
        let webhook = self.webhook(path, &r.webhook_url, &r.webhook_format);
        let (monitor, deploy) = (monitor?, deploy?);
        // SPEC §2: a plain Git host has no API to post a commit status to.
        if let Some(s) = r.deploy.report_status.as_ref().filter(|s| s.value)
            && monitor.kind == ForgeKind::Git
        {
            self.problem(
                format!("{path}.deploy.report_status"),
                line(s),
                "commit statuses need a forge API: monitor.repo_type is git (use github, gitlab or gitea, or remove report_status)",
            );
        }
        Some(Repository { name, group, monitor, deploy, webhook })
    }

    /// `webhook_url` + `webhook_format` at `prefix` (`global` or `repositories[i]`).
    fn webhook(&mut self, prefix: &str, url: &Option<S<String>>, format: &Option<S<String>>) -> Option<Webhook> {
        let fpath = format!("{prefix}.webhook_format");
        let format = self.choice(
            &fpath,
            format,
            &[("json", WebhookFormat::Json), ("slack", WebhookFormat::Slack), ("teams", WebhookFormat::Teams)],
            WebhookFormat::Json,
        );
        let upath = format!("{prefix}.webhook_url");
        let url_s = url.as_ref()?;
        // Not expanded (a problem already) or empty (`webhook_url: ""`, as in the seed's own
        // example): not set, and the rest of the section is still checked.
        let url = self.credential(&upath, url_s).filter(|u| !u.is_empty())?;
        if let Err(m) = check_url(&url, &["http", "https"], false) {
            self.problem(&upath, line(url_s), m);
        }
        Some(Webhook { url, format })
    }

    fn monitor(&mut self, path: &str, m: &raw::Monitor) -> Option<Monitor> {
        // Not expanded: a problem already; the rest of the section is still checked.
        let expanded = self.credential(&format!("{path}.repo_url"), &m.repo_url);
        let repo_url = expanded.clone().unwrap_or_default();
        let kind_path = format!("{path}.repo_type");
        let kind = match &m.repo_type {
            Some(_) => self.kind(&kind_path, &m.repo_type),
            None => infer_kind(&repo_url),
        };
        let schemes: &[&str] = match kind {
            ForgeKind::Git => &["http", "https", "ssh", "git", "file"],
            _ => &["http", "https"],
        };
        if expanded.is_some()
            && let Err(msg) = check_url(&repo_url, schemes, kind == ForgeKind::Git)
        {
            self.problem(format!("{path}.repo_url"), line(&m.repo_url), msg);
        }
        if m.branches.value.is_empty() {
            self.problem(
                format!("{path}.branches"),
                line(&m.branches),
                "at least one branch (name or regex) is required",
            );
        }
        let (patterns, branches) = self.patterns(&format!("{path}.branches"), &m.branches.value, "branch");
        let api_url = self.opt_credential(&format!("{path}.api_url"), &m.api_url);
        if let (Some(u), Some(s)) = (&api_url, &m.api_url)
            && let Err(msg) = check_url(u, &["http", "https"], false)
        {
            self.problem(format!("{path}.api_url"), line(s), msg);
        }
        // What validate accepts, poll can run (SPEC §2 v2): the URL must name a project the
        // forge's API knows (`https://github.com/acme` names none).
        if expanded.is_some()
            && kind != ForgeKind::Git
            && check_url(&repo_url, schemes, false).is_ok()
            && let Err(msg) = crate::model::repo_url::RepoUrl::parse(&repo_url)
                .and_then(|u| crate::model::repo_url::api_project(kind, &u, api_url.as_deref()))
        {
            self.problem(format!("{path}.repo_url"), line(&m.repo_url), format!("{msg} (repo_type {})", kind.as_str()));
        }
        let auth = self.auth(&format!("{path}.auth"), &m.auth);
        if expanded.is_some() {
            self.ssh_key_only_for_ssh(path, &repo_url, &auth, &m.auth);
        }
        let filter = PathFilter {
            paths: self.globs(&format!("{path}.paths"), &m.paths),
            ignore: self.globs(&format!("{path}.ignore_paths"), &m.ignore_paths),
        };
        let (tag_patterns, tags) = match &m.tags {
            Some(list) => {
                if list.value.is_empty() {
                    self.problem(
                        format!("{path}.tags"),
                        line(list),
                        "at least one tag pattern (regex), or leave tags out",
                    );
                }
                self.patterns(&format!("{path}.tags"), &list.value, "tag")
            }
            None => (Vec::new(), Vec::new()),
        };
        let semver = match &m.semver {
            None => None,
            Some(s) => {
                let spath = format!("{path}.semver");
                match self.string(&spath, s).filter(|v| !v.trim().is_empty()) {
                    None => None,
                    Some(v) => {
                        if m.tags.is_none() {
                            self.problem(
                                &spath,
                                line(s),
                                "semver selects among tags: set monitor.tags too (e.g. [\"v.*\"])",
                            );
                        }
                        match semver::VersionReq::parse(v.trim()) {
                            Ok(r) => Some(r),
                            Err(e) => {
                                self.problem(&spath, line(s), format!("invalid semver range {v:?}: {e}"));
                                None
                            }
                        }
                    }
                }
            }
        };
        expanded?;
        let lines = MonitorLines {
            repo_url: m.repo_url.line,
            branches: m.branches.line,
            tags: m.tags.as_ref().map_or(0, |t| t.line),
        };
        Some(Monitor { repo_url, patterns, branches, kind, api_url, auth, filter, tag_patterns, tags, semver, lines })
    }

    fn kind(&mut self, path: &str, s: &Option<S<String>>) -> ForgeKind {
        self.choice(
            path,
            s,
            &[
                ("github", ForgeKind::Github),
                ("gitlab", ForgeKind::Gitlab),
                ("gitea", ForgeKind::Gitea),
                ("git", ForgeKind::Git),
            ],
            ForgeKind::Git,
        )
    }

    fn auth(&mut self, path: &str, a: &Option<raw::Auth>) -> Auth {
        let Some(a) = a else { return Auth::default() };
        let username = self.opt_credential(&format!("{path}.username"), &a.username);
        let before = self.problems.len();
        let token = self.opt_credential(&format!("{path}.token"), &a.token);
        // A token that could not be expanded is reported already: not "missing" a second time.
        let unexpanded = self.problems.len() > before;
        if username.is_some() && token.is_none() && !unexpanded {
            let l = a.username.as_ref().and_then(line);
            self.problem(format!("{path}.token"), l, "a username is set but the token is missing or empty");
        }
        if let Some(t) = &token
            && t.chars().any(|c| c.is_control() || c == ' ')
        {
            let l = a.token.as_ref().and_then(line);
            self.problem(format!("{path}.token"), l, "the token contains whitespace or control characters");
        }
        let ssh_key_file = self
            .opt_string(&format!("{path}.ssh_key_file"), &a.ssh_key_file)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        Auth { username, token: token.map(Secret::new), ssh_key_file, known_hosts: None }
    }

    /// SPEC §2: `ssh_key_file` with an http(s) URL is refused (the key would never be used).
    /// An empty one (`""`, `${KEY:-}`) is not set (SPEC §2 v2).
    fn ssh_key_only_for_ssh(&mut self, path: &str, url: &str, auth: &Auth, a: &Option<raw::Auth>) {
        if auth.ssh_key_file.is_none() {
            return;
        }
        let Some(key) = a.as_ref().and_then(|a| a.ssh_key_file.as_ref()) else { return };
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if matches!(scheme.as_deref(), Some("http" | "https")) {
            self.problem(
                format!("{path}.auth.ssh_key_file"),
                line(key),
                "an ssh key is used only with ssh:// and scp-like URLs (user@host:path), not with http(s)",
            );
        }
    }

    fn deploy(&mut self, path: &str, d: &raw::Deploy, repo_name: &str, name_line: Option<u64>) -> Option<Deploy> {
        // Not expanded: a problem already; the rest of the section is still checked.
        let expanded = self.credential(&format!("{path}.qa_repo_url"), &d.qa_repo_url);
        let qa_repo_url = expanded.clone().unwrap_or_default();
        if expanded.is_some()
            && let Err(m) = check_url(&qa_repo_url, &["http", "https", "ssh", "git", "file"], true)
        {
            self.problem(format!("{path}.qa_repo_url"), line(&d.qa_repo_url), m);
        }
        let branch =
            self.opt_string(&format!("{path}.qa_repo_branch"), &d.qa_repo_branch).unwrap_or_else(|| "main".into());
        if let Err(m) = check_branch_name(&branch) {
            let l = d.qa_repo_branch.as_ref().and_then(line);
            self.problem(format!("{path}.qa_repo_branch"), l, m);
        }
        let kind = self.kind(&format!("{path}.repo_type"), &d.repo_type);
        let project_name = match self.opt_string(&format!("{path}.project_name"), &d.project_name) {
            Some(p) => {
                if let (Err(m), Some(s)) = (check_dns_label(&p), &d.project_name) {
                    self.problem(format!("{path}.project_name"), line(s), m);
                }
                p
            }
            None => {
                // The default is the repository's name, which must then be a DNS label too.
                if check_dns_label(repo_name).is_err() {
                    self.problem(
                        format!("{path}.project_name"),
                        name_line,
                        format!(
                            "not set, so it defaults to the repository name {repo_name:?}, which is not a DNS label \
                             (lowercase letters, digits and '-', at most 63 characters): set project_name"
                        ),
                    );
                }
                repo_name.to_string()
            }
        };
        if d.commands.value.is_empty() {
            self.problem(format!("{path}.commands"), line(&d.commands), "at least one command is required");
        }
        let commands = self.shell(&format!("{path}.commands"), &d.commands.value);
        let on_failure = self.shell(&format!("{path}.on_failure"), d.on_failure.as_ref().map_or(&[], |l| &l.value[..]));
        let mut env = BTreeMap::new();
        for (k, v) in &d.env {
            let epath = format!("{path}.env.{k}");
            if !is_env_name(k) {
                self.problem(&epath, line(v), "environment variable names must match [A-Za-z_][A-Za-z0-9_]*");
            } else if k.starts_with("SENTRY_") || k == "TMPDIR" {
                self.problem(&epath, line(v), "SENTRY_* and TMPDIR are set by sentry and cannot be overridden");
            }
            if let Some(value) = self.string(&epath, v) {
                // A NUL cannot reach a process environment: refuse it here, not at every deploy.
                if value.contains('\0') {
                    self.problem(&epath, line(v), "the value contains a NUL byte");
                }
                env.insert(k.clone(), value);
            }
        }
        let auth = self.auth(&format!("{path}.auth"), &d.auth);
        if expanded.is_some() {
            self.ssh_key_only_for_ssh(path, &qa_repo_url, &auth, &d.auth);
        }
        let report_status = d.report_status.as_ref().is_some_and(|s| s.value);
        expanded?;
        Some(Deploy {
            qa_repo_url,
            qa_repo_branch: branch,
            kind,
            project_name,
            commands,
            on_failure,
            env,
            auth,
            report_status,
            qa_repo_url_line: d.qa_repo_url.line,
        })
    }
}

/// The names of `${NAME}` and `${NAME:-x}` in `s`.
fn braced_names(s: &str) -> Vec<String> {
    s.split("${")
        .skip(1)
        .filter_map(|part| {
            let inner = part.split('}').next()?;
            let name = inner.split(":-").next()?;
            Some(name.to_string()).filter(|n| !n.is_empty())
        })
        .collect()
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_env_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c == b'_' || c.is_ascii_alphabetic())
        && b.all(|c| c == b'_' || c.is_ascii_alphanumeric())
}

/// github.com and gitlab.com are known; any other host is watched with `git ls-remote`.
fn infer_kind(url: &str) -> ForgeKind {
    let host = crate::model::url::split(url).map(|p| p.host.to_ascii_lowercase()).unwrap_or_default();
    match host.as_str() {
        "github.com" | "www.github.com" => ForgeKind::Github,
        "gitlab.com" => ForgeKind::Gitlab,
        _ => ForgeKind::Git,
    }
}

/// Checks a repository or API URL: scheme among `schemes`, a host, nothing git could take for an
/// option. `scp` also allows `user@host:path`.
pub fn check_url(url: &str, schemes: &[&str], scp: bool) -> Result<(), String> {
    if url.is_empty() {
        return Err("URL is empty".into());
    }
    if url.starts_with('-') {
        return Err(format!("{url:?} starts with '-' and could be taken for an option"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} contains whitespace or control characters"));
    }
    match url.split_once("://") {
        Some((scheme, _)) => {
            let scheme_l = scheme.to_ascii_lowercase();
            if !schemes.contains(&scheme_l.as_str()) {
                return Err(format!("scheme {scheme:?} is not allowed here (use {})", schemes.join(", ")));
            }
            let p = crate::model::url::split(url)?;
            if scheme_l != "file" && p.host.is_empty() {
                return Err(format!("{url:?} has no host"));
            }
            // SPEC §4: no user information on http(s) at all (`https://TOKEN@host` is a token
            // too); ssh and git may name a user, never a password.
            match p.userinfo {
                Some(_) if matches!(scheme_l.as_str(), "http" | "https") => {
                    return Err(
                        "credentials (user information) in the URL are not allowed: use the auth section".into()
                    );
                }
                Some(u) if u.contains(':') => {
                    return Err("credentials in the URL are not allowed: use the auth section".into());
                }
                _ => {}
            }
            if scheme_l == "file" && !p.rest.starts_with('/') {
                return Err(format!("{url:?}: file URLs need an absolute path (file:///path)"));
            }
            Ok(())
        }
        None if scp => {
            // scp-like: [user@]host:path, where host has no '/' (git's own rule).
            match url.split_once(':') {
                Some((host, path)) if !host.is_empty() && !host.contains('/') && !path.is_empty() => {
                    if host.contains("::") || path.starts_with(':') {
                        return Err(format!("{url:?} looks like a transport helper URL, which is not allowed"));
                    }
                    Ok(())
                }
                _ => Err(format!("{url:?} is not a URL (scheme://host/path) or scp-like user@host:path")),
            }
        }
        None => Err(format!("{url:?} is not a URL: expected {}://host/path", schemes[0])),
    }
}

/// Checks a branch name the way `git check-ref-format --branch` would reject the dangerous ones.
pub fn check_branch_name(b: &str) -> Result<(), String> {
    let bad = b.is_empty()
        || b.starts_with('-')
        || b.starts_with('/')
        || b.ends_with('/')
        || b.ends_with(".lock")
        || b.ends_with('.')
        || b.contains("..")
        || b.contains("@{")
        || b.contains("//")
        || b.chars().any(|c| c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'));
    if bad { Err(format!("{b:?} is not a valid branch name")) } else { Ok(()) }
}

/// Checks a Kubernetes DNS label (the rule itself lives in `model::location`).
pub fn check_dns_label(s: &str) -> Result<(), String> {
    if is_dns_label(s) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a DNS label: lowercase letters, digits and '-', starting and ending alphanumeric, at most 63 characters"
        ))
    }
}

#[cfg(test)]
mod tests;

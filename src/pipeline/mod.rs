//! One pass, the only place that knows the order: lock and load the state -> check every
//! repository -> plan (pure) -> save -> deploy (saving after each job) -> record -> notify ->
//! metrics. `poll`, `deploy` (and later `rollback`) share it; what they get back is a
//! [`Summary`], which the command prints and turns into an exit code.

mod journal;

use crate::config::{Config, ForgeKind, Repository};
use crate::deploy::{self, Batch, JobResult};
use crate::error::{Error, Exit};
use crate::forge::{Checker, ForgeStats, Listing, status};
use crate::http::{Http, Method, Request};
use crate::model::{DeploymentRecord, Heads, Job, JobStatus, Location, Reason, Sha, Validators};
use crate::notify;
use crate::plan::{self, Note};
use crate::report::{Checked, Summary};
use crate::state::{self, LastRun, LockMode, MAX_DELIVERY_RUNS, Pending, State, StateError, StateStore, StoreOptions};
use journal::Journal;
use std::collections::BTreeMap;
use std::sync::{Mutex, mpsc};
use std::time::Instant;

/// Notifications delivered at once.
const DELIVERY_THREADS: usize = 4;

/// Identity and clock of one pass.
pub struct Run {
    /// Time-ordered, unique across concurrent processes.
    pub id: String,
    started: Instant,
    started_at: String,
    /// With `--shard`: this process's shard.
    shard: Option<u32>,
    /// Where the state lives: the stable name of this deployment (and shard) for the Pushgateway.
    place: String,
}

impl Run {
    /// A new run starting now.
    pub fn start() -> Run {
        let now = std::time::SystemTime::now();
        let nanos = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        // Time-ordered and unique enough across concurrent processes: seconds, pid, sub-second noise.
        // Fixed width, so ids line up and sort as text: seconds, pid, sub-second noise.
        let id =
            format!("{:08x}-{:08x}-{:08x}", nanos / 1_000_000_000, std::process::id(), (nanos % 1_000_000_000) as u32);
        crate::logging::set_run_id(&id);
        Run { id, started: Instant::now(), started_at: crate::time::rfc3339(now), shard: None, place: String::new() }
    }

    /// An empty summary of this run.
    pub fn summary(&self, dry_run: bool) -> Summary {
        Summary {
            run_id: self.id.clone(),
            started_at: self.started_at.clone(),
            duration_ms: 0,
            dry_run,
            checked: Vec::new(),
            deployments: Vec::new(),
            parked: Vec::new(),
            errors: Vec::new(),
            skipped: None,
            state_error: false,
        }
    }

    /// The summary of a pass that did nothing, and why.
    fn skipped(&self, dry_run: bool, why: String) -> Summary {
        Summary { skipped: Some(why), duration_ms: self.elapsed_ms(), ..self.summary(dry_run) }
    }

    /// Milliseconds since the start.
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Where a pass keeps its state, and which shard it is (for `{shard}` in `metrics_file`).
pub struct At<'a> {
    /// The state location (its `{shard}` already replaced).
    pub location: &'a Location,
    /// This process's shard, with `--shard`.
    pub shard: Option<u32>,
}

/// What a manual deployment asks for (`sentry deploy`).
pub struct Manual<'a> {
    /// The repositories to deploy.
    pub targets: Vec<&'a Repository>,
    /// Which monitored branch (default: the first configured branch that exists).
    pub branch: Option<&'a str>,
    /// A monitored tag instead of a branch.
    pub tag: Option<&'a str>,
    /// Which commit (default: the branch's head).
    pub commit: Option<&'a Sha>,
}

/// Options the store needs from the configuration.
fn store_options(run_id: &str, config: &Config) -> StoreOptions {
    StoreOptions {
        run_id: run_id.to_string(),
        lock_timeout: config.global.timeout,
        http_timeout: config.global.http_timeout,
    }
}

/// Starts a pass: the store open with the lock `mode` asks for and the state read, or the
/// summary of a pass that does nothing (another run holds the lock; a stop while waiting).
#[allow(clippy::type_complexity)] // Private, three callers: a struct would only rename the tuple.
fn begin(
    config: &Config,
    at: &At<'_>,
    mode: LockMode,
    dry_run: bool,
) -> Result<Result<(Run, Box<dyn StateStore>, State), Summary>, Error> {
    let mut run = Run::start();
    run.shard = at.shard;
    run.place = at.location.to_string();
    let mut store = match open_store(&run, at.location, mode, config)? {
        Ok(store) => store,
        Err(why) => return Ok(Err(run.skipped(dry_run, why))),
    };
    let state = store.load()?;
    Ok(Ok((run, store, state)))
}

/// Opens the store with the lock `mode` asks for, or says why this pass does nothing: another
/// run holds the lock (`poll`), or a stop was requested while waiting for it (`deploy`: exit 0,
/// nothing deployed, the state untouched, SPEC §3).
fn open_store(
    run: &Run,
    location: &Location,
    mode: LockMode,
    config: &Config,
) -> Result<Result<Box<dyn StateStore>, String>, Error> {
    match state::open(location, mode, &store_options(&run.id, config)) {
        Ok(store) => Ok(Ok(store)),
        Err(StateError::Busy { holder, .. }) if mode == LockMode::Try => {
            log::info!(state = location.to_string(), holder = holder.as_str(); "another run is in progress: nothing to do");
            Ok(Err(format!("another run holds the lock ({holder})")))
        }
        Err(e @ StateError::Stopped { .. }) => {
            log::info!("{e}");
            Ok(Err(e.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens the state without a lock and reads it (`status`). Needs no configuration (SPEC §1 v2):
/// `http_timeout` is `global.http_timeout` when one loaded, else its default.
pub fn read_state(location: &Location, http_timeout: std::time::Duration) -> Result<(State, String), StateError> {
    let options = StoreOptions { run_id: "status".into(), lock_timeout: http_timeout, http_timeout };
    let mut store = state::open(location, LockMode::None, &options)?;
    let state = store.load()?;
    Ok((state, store.location()))
}

/// One `poll` pass: lock, load, check, plan, save, deploy (saving after each job), notify,
/// metrics. Another run holding the lock is a summary with `skipped` set.
pub fn poll(config: &Config, at: &At<'_>, repos: &[&Repository], dry_run: bool) -> Result<Summary, Error> {
    let mode = if dry_run { LockMode::None } else { LockMode::Try };
    let (run, store, state) = match begin(config, at, mode, dry_run)? {
        Ok(begun) => begun,
        Err(skipped) => return Ok(skipped),
    };
    let mut summary = run.summary(dry_run);
    let clients = Clients::new(config)?;
    let mut checks = check(&clients.checker, repos, &state, &mut summary);
    let now = crate::time::now_rfc3339();
    let mut planned = plan::plan_with_tags(config, &checks.heads, &checks.tags, state, &now);
    log_notes(&planned.notes, dry_run);
    // Parked deployments are listed on every run until a human acts (SPEC §5).
    summary.parked = parked(&planned.notes, &planned.state);
    summary.deployments = examine(config, &clients.checker, &mut planned);
    // The compare requests count like the listings'.
    checks.stats = clients.checker.stats();
    // The heads are in the plan now; at 10,000 repositories they are MBs the saves can use.
    checks.release_heads(&mut summary);
    proceed(config, &run, &clients, store, planned.state, planned.jobs, checks, summary, &now)
}

/// Examines the planned changes (SPEC §4 "filters"; of every repository while skip markers are
/// on): the files changed since the last deployed or filtered commit and the head's message,
/// from the forge; [`plan::verdict`] decides. A filtered change leaves the jobs, is recorded in the next
/// state (seen, the next comparison's base, a counter) and comes back as a `filtered` record.
/// Changes whose files cannot be told are deployed.
fn examine(config: &Config, checker: &Checker, planned: &mut plan::Plan) -> Vec<DeploymentRecord> {
    let jobs = std::mem::take(&mut planned.jobs);
    // Planning never changes a moved ref's deployed or filtered commit, and recording a
    // filtered job touches only its own ref: each base is the one the pass started with.
    let mut asked = Vec::new();
    let mut examining = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let repo = config.repository(&job.repo).filter(|r| plan::needs_examining(r, job, &config.global.skip_markers));
        let base = repo.and_then(|r| plan::compare_base(&planned.state, job).map(|b| (r, b)));
        examining.push(base.is_some());
        if let Some((r, b)) = base {
            asked.push((r, b, job.commit.clone()));
        }
    }
    // Answers come in the order asked, which is the jobs' order.
    let mut answers = checker.changes_all(&asked, &config.global.tmp_dir).into_iter().zip(&asked);
    let mut filtered = Vec::new();
    let mut kept = Vec::with_capacity(jobs.len());
    for (job, examined) in jobs.into_iter().zip(examining) {
        let Some((examined, (repo, base, _))) = examined.then(|| answers.next()).flatten() else {
            kept.push(job);
            continue;
        };
        if let Some(why) = &examined.why_unknown {
            log::info!(
                repo = job.repo.as_str(), branch = job.branch.as_str(), from = base.as_str(), to = job.commit.as_str();
                "the changed files cannot be told, so the change is deployed: {}", crate::logging::redact(why)
            );
        }
        match plan::verdict(&repo.monitor.filter, &config.global.skip_markers, &examined) {
            Some(reason) => {
                log::info!(
                    repo = job.repo.as_str(), branch = job.branch.as_str(), from = base.as_str(),
                    to = job.commit.as_str(), reason = reason.key();
                    "change filtered: recorded as seen, not deployed"
                );
                plan::record_filtered(&mut planned.state, &job, reason);
                let mut record = DeploymentRecord::planned(&job, JobStatus::Filtered, None);
                record.reason = reason;
                filtered.push(record);
            }
            None => kept.push(job),
        }
    }
    plan::drop_orphan_triggers(&mut kept);
    planned.jobs = kept;
    filtered
}

/// The parked deployments the plan noted, with their last error.
fn parked(notes: &[Note], state: &State) -> Vec<crate::report::Parked> {
    notes
        .iter()
        .filter_map(|n| match n {
            Note::Parked { repo, branch, tag, commit, attempts } => {
                Some(parked_entry(state, repo, branch, *tag, commit, *attempts))
            }
            _ => None,
        })
        .collect()
}

/// The parked branch (or `tag`) `name` of `repo`, with its last error.
fn parked_entry(
    state: &State,
    repo: &str,
    name: &str,
    tag: bool,
    commit: &Sha,
    attempts: u32,
) -> crate::report::Parked {
    let refs = state.repos.get(repo).map(|r| r.refs(tag));
    crate::report::Parked {
        repo: repo.to_string(),
        branch: (!tag).then(|| name.to_string()),
        tag: tag.then(|| name.to_string()),
        commit: commit.to_string(),
        attempts,
        error: refs
            .and_then(|r| r.get(name))
            .and_then(|b| b.failure.as_ref())
            .map(|f| f.error.clone())
            .unwrap_or_default(),
    }
}

/// Deployments of this run whose failure used the last attempt: parked from now on, so the run
/// that parks them lists them already (SPEC §5), beside those parked before.
fn newly_parked(summary: &mut Summary, state: &State, max_attempts: u32) {
    let mut found = Vec::new();
    for d in &summary.deployments {
        let name = d.tag.as_deref().unwrap_or(&d.branch);
        let Some(r) = state.repos.get(&d.repo) else { continue };
        let refs = r.refs(d.tag.is_some());
        let Some(f) = refs.get(name).and_then(|b| b.failure.as_ref()) else { continue };
        let listed = summary.parked.iter().chain(&found).any(|p: &crate::report::Parked| {
            p.repo == d.repo
                && p.tag.is_some() == d.tag.is_some()
                && p.branch.as_deref().or(p.tag.as_deref()) == Some(name)
        });
        if f.commit == d.commit && f.attempts >= max_attempts && !listed {
            found.push(parked_entry(state, &d.repo, name, d.tag.is_some(), &f.commit, f.attempts));
        }
    }
    summary.parked.extend(found);
}

/// `sentry deploy`: deploy now, whatever changed; waits for the lock.
pub fn deploy(config: &Config, at: &At<'_>, manual: &Manual<'_>, dry_run: bool) -> Result<Summary, Error> {
    let mode = if dry_run { LockMode::None } else { LockMode::Wait(config.global.timeout) };
    let (run, store, state) = match begin(config, at, mode, dry_run)? {
        Ok(begun) => begun,
        Err(skipped) => return Ok(skipped),
    };
    let mut summary = run.summary(dry_run);
    let clients = Clients::new(config)?;
    let now = crate::time::now_rfc3339();
    // Both --branch and --commit: everything the job needs is known, no forge is contacted
    // (SPEC §1 v2); the branch must still be a monitored one. The state keeps what it knew.
    if let (Some(tag), Some(commit)) = (manual.tag, manual.commit) {
        let tags: Heads = [(tag.to_string(), commit.clone())].into_iter().collect();
        let mut jobs = Vec::new();
        for repo in &manual.targets {
            jobs.push(plan::manual_tag(repo, &tags, tag, Some(commit), &state).map_err(Error::Usage)?);
        }
        return proceed(config, &run, &clients, store, state, jobs, Checks::none(), summary, &now);
    }
    if let (Some(branch), Some(commit)) = (manual.branch, manual.commit) {
        let heads: Heads = [(branch.to_string(), commit.clone())].into_iter().collect();
        let mut jobs = Vec::new();
        for repo in &manual.targets {
            jobs.push(plan::manual(repo, &heads, Some(branch), Some(commit), &state).map_err(Error::Usage)?);
        }
        let checks = Checks::none();
        return proceed(config, &run, &clients, store, state, jobs, checks, summary, &now);
    }
    let mut checks = check(&clients.checker, &manual.targets, &state, &mut summary);
    let mut jobs = Vec::new();
    for repo in &manual.targets {
        let Some(h) = checks.heads.get(&repo.name) else { continue };
        let job = match manual.tag {
            Some(tag) => {
                let none = Heads::new();
                let tags = checks.tags.get(&repo.name).unwrap_or(&none);
                plan::manual_tag(repo, tags, tag, manual.commit, &state)
            }
            None => plan::manual(repo, h, manual.branch, manual.commit, &state),
        };
        jobs.push(job.map_err(Error::Usage)?);
    }
    // Keep the bookkeeping a poll would do (seen heads, baselines, dropped branches), without its jobs.
    let planned = plan::plan_with_tags(config, &checks.heads, &checks.tags, state, &now);
    checks.release_heads(&mut summary);
    proceed(config, &run, &clients, store, planned.state, jobs, checks, summary, &now)
}

/// `sentry rollback`: like `deploy` (lock, state, notifications, exit codes) with a job the
/// history decides; no forge is contacted.
pub fn rollback(
    config: &Config,
    at: &At<'_>,
    repo: &Repository,
    branch: Option<&str>,
    to: Option<&str>,
    dry_run: bool,
) -> Result<Summary, Error> {
    let mode = if dry_run { LockMode::None } else { LockMode::Wait(config.global.timeout) };
    let (run, store, state) = match begin(config, at, mode, dry_run)? {
        Ok(begun) => begun,
        Err(skipped) => return Ok(skipped),
    };
    let job = plan::rollback(repo, &state, branch, to).map_err(Error::Usage)?;
    let summary = run.summary(dry_run);
    let clients = Clients::new(config)?;
    let checks = Checks::none();
    let now = crate::time::now_rfc3339();
    proceed(config, &run, &clients, store, state, vec![job], checks, summary, &now)
}

/// The common tail of a pass once the jobs are known: save, deploy, notify, metrics.
#[allow(clippy::too_many_arguments)] // One private step of two callers; a struct would only rename them.
fn proceed(
    config: &Config,
    run: &Run,
    clients: &Clients,
    mut store: Box<dyn StateStore>,
    mut next: State,
    jobs: Vec<Job>,
    checks: Checks,
    mut summary: Summary,
    now: &str,
) -> Result<Summary, Error> {
    absorb_checks(&mut next, &checks);
    log_jobs(&jobs);
    if summary.dry_run {
        summary.deployments.extend(jobs.iter().map(|j| DeploymentRecord::planned(j, JobStatus::Skipped, None)));
        summary.duration_ms = run.elapsed_ms();
        return Ok(summary);
    }
    next.last_run = Some(LastRun { run_id: run.id.clone(), at: now.to_string() });
    count_http(config, &mut next, &checks);
    let earlier_success = next.last_success.clone();
    // With nothing to deploy or deliver this save is the run's last: it records a clean run.
    if jobs.is_empty() && next.outbox.is_empty() && summary.exit() == Exit::Success {
        next.last_success = Some(now.to_string());
    }
    store.save(&next)?;
    let mut last = deploy_and_record(config, clients, run, store, next, jobs, &mut summary);
    newly_parked(&mut summary, &last, config.global.max_attempts);
    if summary.exit() != Exit::Success {
        // Recorded in anticipation, then the last save failed (exit 4): it is not a success.
        last.last_success = earlier_success;
    }
    write_metrics(config, clients, &last, run, &mut summary, &checks);
    summary.duration_ms = run.elapsed_ms();
    Ok(summary)
}

/// What the check phase learned, per repository name.
struct Checks {
    /// Matching heads of every repository checked successfully (the planner's input).
    heads: BTreeMap<String, Heads>,
    /// Matching tags of the repositories among those that monitor tags.
    tags: BTreeMap<String, Heads>,
    /// The full listings, for their cache validators.
    listings: BTreeMap<String, Listing>,
    /// Why the others could not be checked (redacted).
    errors: BTreeMap<String, String>,
    /// HTTP answers and rate-limit headroom per forge.
    stats: ForgeStats,
}

impl Checks {
    /// Nothing checked (a manual deployment that names its commit).
    fn none() -> Checks {
        Checks {
            heads: BTreeMap::new(),
            tags: BTreeMap::new(),
            listings: BTreeMap::new(),
            errors: BTreeMap::new(),
            stats: ForgeStats::default(),
        }
    }

    /// Hands the heads and tags, once planned, to the summary's `checked` entries: nothing after
    /// the plan reads them here, and one copy of 10,000 repositories' heads is enough.
    fn release_heads(&mut self, summary: &mut Summary) {
        let mut heads = std::mem::take(&mut self.heads);
        let mut tags = std::mem::take(&mut self.tags);
        let text = |h: Heads| h.into_iter().map(|(name, sha)| (name, String::from(sha))).collect::<Vec<_>>();
        for c in &mut summary.checked {
            if let Some(h) = heads.remove(&c.repo) {
                c.branches = text(h);
            }
            if let Some(t) = tags.remove(&c.repo) {
                c.tags = Some(text(t));
            }
        }
    }
}

/// The clients of one run: one HTTP agent (connection reuse, TLS roots) shared by all.
struct Clients {
    checker: Checker,
    sender: notify::Sender,
}

impl Clients {
    fn new(config: &Config) -> Result<Clients, Error> {
        let setup = |e: anyhow::Error| Error::Setup(format!("{e:#}"));
        let settings =
            crate::http::HttpSettings { redactor: config.redactor(), ..crate::forge::http_settings(&config.global) };
        let http = Http::new(&settings).map_err(setup)?;
        Ok(Clients {
            checker: Checker::with_http(http.clone(), &config.global).map_err(setup)?,
            sender: notify::Sender::new(http),
        })
    }
}

/// Checks `repos` concurrently and records each outcome in the summary.
fn check(checker: &Checker, repos: &[&Repository], state: &State, summary: &mut Summary) -> Checks {
    let cached: Vec<Option<Validators>> =
        repos.iter().map(|r| state.repos.get(&r.name).and_then(|s| s.validators())).collect();
    let inputs: Vec<(&Repository, Option<&Validators>)> =
        repos.iter().zip(&cached).map(|(r, v)| (*r, v.as_ref())).collect();
    let results = checker.check_all(&inputs);
    let mut heads = BTreeMap::new();
    let mut listings = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for (repo, result) in repos.iter().zip(results) {
        match result {
            Ok(mut listing) => {
                // The heads join this entry once planned ([`Checks::release_heads`]).
                summary.checked.push(Checked {
                    repo: repo.name.clone(),
                    branches: Vec::new(),
                    tags: None,
                    error: None,
                });
                // Moved, not copied: only the validators and counters of a listing are used later.
                heads.insert(repo.name.clone(), std::mem::take(&mut listing.heads));
                listings.insert(repo.name.clone(), listing);
            }
            Err(e) => {
                let msg = crate::logging::redact(&e.to_string());
                log::warn!(repo = repo.name.as_str(); "repository could not be checked: {msg}");
                summary.checked.push(Checked {
                    repo: repo.name.clone(),
                    branches: Vec::new(),
                    tags: None,
                    error: Some(msg.clone()),
                });
                summary.errors.push(format!("{}: {msg}", repo.name));
                errors.insert(repo.name.clone(), msg);
            }
        }
    }
    // Tags, for the repositories that monitor them and whose branches were listed: a tag
    // listing that fails makes the whole repository unchecked (no half-planned repository).
    let tagged: Vec<&Repository> =
        repos.iter().copied().filter(|r| !r.monitor.tags.is_empty() && heads.contains_key(&r.name)).collect();
    let mut tags = BTreeMap::new();
    for (repo, result) in tagged.iter().zip(checker.tags_all(&tagged)) {
        match result {
            Ok(t) => {
                tags.insert(repo.name.clone(), t);
            }
            Err(e) => {
                let msg = crate::logging::redact(&e.to_string());
                log::warn!(repo = repo.name.as_str(); "repository could not be checked: {msg}");
                if let Some(c) = summary.checked.iter_mut().find(|c| c.repo == repo.name) {
                    c.error = Some(msg.clone());
                }
                summary.errors.push(format!("{}: {msg}", repo.name));
                heads.remove(&repo.name);
                listings.remove(&repo.name);
                errors.insert(repo.name.clone(), msg);
            }
        }
    }
    Checks { heads, tags, listings, errors, stats: checker.stats() }
}

/// Applies what the checks learned that planning does not decide: cache validators, check errors.
fn absorb_checks(next: &mut State, checks: &Checks) {
    for (name, listing) in &checks.listings {
        next.repos.entry(name.clone()).or_default().set_validators(listing.validators.as_ref());
    }
    for (name, msg) in &checks.errors {
        next.repos.entry(name.clone()).or_default().last_error = Some(msg.clone());
    }
}

fn log_notes(notes: &[Note], dry_run: bool) {
    for note in notes {
        match note {
            Note::Baseline { repo, branch, head } if dry_run => log::info!(
                repo = repo.as_str(), branch = branch.as_str(), head = head.as_str();
                "first seen: would be recorded as baseline (dry run: nothing is recorded)"
            ),
            Note::Baseline { repo, branch, head } => {
                log::info!(repo = repo.as_str(), branch = branch.as_str(), head = head.as_str(); "first seen: recorded as baseline")
            }
            Note::Gone { repo, branch } => log::info!(
                repo = repo.as_str(), branch = branch.as_str();
                "branch no longer listed or matching: its record is kept for 30 days"
            ),
            Note::Dropped { repo, branch } => {
                log::info!(repo = repo.as_str(), branch = branch.as_str(); "branch gone for 30 days: dropped from state")
            }
            Note::EmptyListing { repo } => log::warn!(
                repo = repo.as_str();
                "no branch listed or matching, though there were before: a forge hiccup or a pattern that matches nothing? records are kept"
            ),
            Note::NameTooLong { repo, bytes } => log::warn!(
                repo = repo.as_str(), bytes = *bytes;
                "ignoring a branch whose name is longer than {} bytes", crate::state::MAX_REF_BYTES
            ),
            Note::Parked { repo, branch, tag, commit, attempts } => log::warn!(
                repo = repo.as_str(), branch = branch.as_str(), tag = *tag, commit = commit.as_str(), attempts = *attempts;
                "deployment parked after repeated failures: push a new commit or run `sentry deploy` by hand"
            ),
            Note::Pinned { repo, branch, head } => log::info!(
                repo = repo.as_str(), branch = branch.as_str(), head = head.as_str();
                "pinned by a rollback: not deployed until the head moves or `sentry deploy` is run"
            ),
            Note::UnmatchedTag { repo, pattern } => log::warn!(
                repo = repo.as_str(), pattern = pattern.as_str();
                "tag pattern matches no tag (patterns match the whole name; check monitor.tags)"
            ),
            Note::Unmatched { repo, pattern } => log::warn!(
                repo = repo.as_str(), pattern = pattern.as_str();
                "branch pattern matches no branch (patterns match the whole name; check monitor.branches)"
            ),
        }
    }
}

fn log_jobs(jobs: &[Job]) {
    for j in jobs {
        let from = j.previous.as_ref().map_or("none", Sha::as_str);
        match j.reason {
            // Asked for by hand: nothing was detected.
            Reason::Manual | Reason::Rollback => log::info!(
                repo = j.repo.as_str(), branch = j.branch.as_str(), from = from, to = j.commit.as_str(),
                reason = j.reason.as_str(), attempt = j.attempt;
                "deployment requested"
            ),
            _ => log::info!(
                repo = j.repo.as_str(), branch = j.branch.as_str(), from = from, to = j.commit.as_str(),
                reason = j.reason.as_str(), attempt = j.attempt;
                "change detected"
            ),
        }
    }
}

/// Adds this pass's forge requests to the counters kept in the state.
fn count_http(config: &Config, state: &mut State, checks: &Checks) {
    for ((forge, status), n) in &checks.stats.requests {
        let status = if *status == 0 { "error".to_string() } else { status.to_string() };
        bump(state.http.requests.entry(format!("{forge}/{status}")).or_default(), *n);
    }
    // `git ls-remote` is not HTTP through our client: count its invocations by outcome.
    let is_git = |name: &String| config.repository(name).is_some_and(|r| r.monitor.kind == ForgeKind::Git);
    for listing in checks.listings.iter().filter(|(n, _)| is_git(n)).map(|(_, l)| l) {
        bump(state.http.requests.entry("git/ok".into()).or_default(), u64::from(listing.requests));
    }
    for _ in checks.errors.keys().filter(|n| is_git(n)) {
        bump(state.http.requests.entry("git/error".into()).or_default(), 1);
    }
    bump(&mut state.http.cache_hits, checks.listings.values().filter(|l| l.cache_hit).count() as u64);
}

/// Adds to a counter read from the state file, which may hold any number: saturating.
fn bump(counter: &mut u64, n: u64) {
    *counter = counter.saturating_add(n);
}

/// Writes `global.metrics_file` and pushes to `global.pushgateway_url`, if configured. A failure
/// is reported, never fatal.
fn write_metrics(config: &Config, clients: &Clients, state: &State, run: &Run, summary: &mut Summary, checks: &Checks) {
    if config.global.metrics_file.is_none() && config.global.pushgateway_url.is_none() {
        return;
    }
    let m = crate::metrics::RunMetrics {
        finished: Some(std::time::SystemTime::now()),
        duration: run.started.elapsed(),
        checked: checks.listings.len() + checks.errors.len(),
        check_errors: checks.errors.len(),
        rate_limits: checks.stats.rate_limits.clone(),
        exit_code: summary.exit().code(),
    };
    let text = crate::metrics::render(config, state, &m);
    // Shards write one file each: `{shard}` in the path is the shard's number.
    let path = config.global.metrics_file.as_ref().map(|p| match run.shard {
        Some(i) => std::path::PathBuf::from(p.to_string_lossy().replace("{shard}", &i.to_string())),
        None => p.clone(),
    });
    if let Some(path) = &path
        && let Err(e) = crate::metrics::write_file(path, &text)
    {
        log::warn!("{e}");
        summary.errors.push(e);
    }
    if let Some(base) = &config.global.pushgateway_url {
        // The grouping key must be stable across runs: a CronJob's pods get a new name every run,
        // so the hostname would leave a stale group behind each time. The state location names
        // this deployment (and shard) for good.
        let instance = crate::forge::url::encode(&run.place);
        let url = format!("{}/metrics/job/sentry/instance/{instance}", base.trim_end_matches('/'));
        let req = Request::new(Method::Put, url).body("text/plain; version=0.0.4", text.into_bytes());
        if let Err(e) = clients.checker.http().send(&req) {
            let msg = format!("metrics push to the Pushgateway failed: {}", notify::describe(&e));
            log::warn!("{msg}");
            summary.errors.push(msg);
        }
    }
}

/// Runs the jobs in batches and records each result in the state as it finishes; delivers the
/// notifications (this run's and those earlier runs left) and posts the commit statuses beside
/// them, in parallel, and waits for both at most `notify_timeout` after the last job.
fn deploy_and_record(
    config: &Config,
    clients: &Clients,
    run: &Run,
    store: Box<dyn StateStore>,
    state: State,
    jobs: Vec<Job>,
    summary: &mut Summary,
) -> State {
    if jobs.is_empty() && state.outbox.is_empty() {
        return state;
    }
    let ctx = deploy::Context {
        tmp_dir: config.global.tmp_dir.clone(),
        cleanup: config.global.cleanup,
        timeout: config.global.timeout,
        run_id: run.id.clone(),
        redactor: config.redactor(),
        strip_env: config.tokens().into_iter().cloned().collect(),
        inherited: Default::default(),
        kill_grace: deploy::KILL_GRACE,
        lock: store.lock_handle(),
    };
    let leftovers = state.outbox.clone();
    if !leftovers.is_empty() {
        log::info!(count = leftovers.len(); "delivering notifications left by earlier runs");
    }
    let batches = batches(config, jobs);
    let sender = &clients.sender;
    let statuses = status::Reporter::start(clients.checker.http().clone(), config);
    let journal = Journal::new(store, state);
    let host = crate::sys::host_label();
    let (tx, rx) = mpsc::channel::<Pending>();
    for p in leftovers {
        let _ = tx.send(p);
    }
    let rx = Mutex::new(rx);
    // Set when the last job ends: deliveries stop starting then + notify_timeout.
    let cutoff: Mutex<Option<Instant>> = Mutex::new(None);
    let notify_timeout = config.global.notify_timeout;
    let results = std::thread::scope(|scope| {
        // Deliveries run beside the deployments (a slow webhook never delays a job or a save),
        // several at once (one slow receiver does not hold up the others).
        for i in 0..DELIVERY_THREADS {
            let (rx, journal, cutoff) = (&rx, &journal, &cutoff);
            let spawned = std::thread::Builder::new().name(format!("notify-{i}")).spawn_scoped(scope, move || {
                loop {
                    let next = rx.lock().ok().and_then(|r| r.recv().ok());
                    let Some(pending) = next else { return };
                    let now = Instant::now();
                    let own = now.checked_add(notify_timeout).unwrap_or(now);
                    let deadline = match cutoff.lock().ok().and_then(|c| *c) {
                        Some(c) if now >= c => continue, // out of time: stays in the outbox
                        Some(c) => c.min(own),
                        None => own,
                    };
                    let outcome = sender.deliver(config, &pending, deadline);
                    journal.delivered(&pending.id, outcome);
                }
            });
            if let Err(e) = spawned {
                log::warn!("cannot start a notification thread: {e}");
            }
        }
        let on_start = |job: &Job| statuses.started(config, job);
        let on_done = |result: &JobResult| {
            let done = result.record();
            statuses.finished(config, &done);
            // Skipped and interrupted deployments say nothing about the commit: no attempt is
            // counted, and the next run deploys it again.
            if !done.status.is_verdict() {
                return;
            }
            let finished = std::time::SystemTime::now();
            let now = crate::time::rfc3339(finished);
            let started_at = crate::time::rfc3339(finished.checked_sub(result.duration).unwrap_or(finished));
            let stamp =
                plan::Stamp { now: &now, started_at: &started_at, run_id: &run.id, history: config.global.history };
            let pending = notify::pending(&done, &run.id, &host, &now)
                .filter(|_| !notify::targets(config, &done.repo).is_empty());
            let recorded = journal.record_repo(&done.repo, |state| {
                plan::record(state, &done, &stamp);
                // Recorded in the same save as the outcome: an interruption cannot lose it.
                if let Some(p) = &pending {
                    state.outbox.push(p.clone());
                }
            });
            let Some(generation) = recorded else { return };
            journal.commit(generation, &format!("after deploying {}", done.repo));
            if let Some(p) = pending {
                let _ = tx.send(p);
            }
        };
        let results = deploy::run_batches_with(&ctx, batches, &on_start, &on_done);
        statuses.close();
        if let Ok(mut c) = cutoff.lock() {
            let now = Instant::now();
            *c = Some(now.checked_add(notify_timeout).unwrap_or(now));
        }
        drop(tx);
        results
    });
    // The last save of the run also records whether it succeeded (exit 0), if so far it did.
    // (Filtered changes are in the summary already.)
    summary.deployments.extend(results.iter().map(JobResult::record));
    let succeeded = summary.exit() == Exit::Success && !journal.save_failed();
    // What was not delivered stays for the next run, at most MAX_DELIVERY_RUNS runs in all.
    let mut dropped = Vec::new();
    if let Some(generation) = journal.record(|state| {
        if succeeded {
            state.last_success = Some(crate::time::now_rfc3339());
        }
        state.outbox.retain_mut(|p| {
            p.runs = p.runs.saturating_add(1);
            let keep = p.runs < MAX_DELIVERY_RUNS;
            if !keep {
                dropped.push(p.id.clone());
            }
            keep
        })
    }) {
        journal.commit(generation, "after the notifications");
    }
    let sh = journal.into_shared();
    summary.state_error |= !sh.save_errors.is_empty();
    summary.errors.extend(sh.save_errors);
    summary.errors.extend(sh.notify_errors);
    summary.errors.extend(statuses.finish());
    for id in dropped {
        let msg = format!("notification {id} dropped: not delivered in {MAX_DELIVERY_RUNS} runs");
        log::error!("{msg}");
        summary.errors.push(msg);
    }
    sh.state
}

/// Groups jobs into batches: one per group (configuration order of first appearance) and one for
/// the ungrouped jobs. Job order within a batch is the plan's (configuration) order.
fn batches(config: &Config, jobs: Vec<Job>) -> Vec<Batch<'_>> {
    let mut grouped: Vec<Batch<'_>> = Vec::new();
    let mut ungrouped = Batch { group: None, jobs: Vec::new() };
    for job in jobs {
        let Some(repo) = config.repository(&job.repo) else { continue };
        match job.group.as_deref().and_then(|g| config.groups.get(g)) {
            Some(group) => match grouped.iter_mut().find(|b| b.group.is_some_and(|g| g.name == group.name)) {
                Some(b) => b.jobs.push((job, repo)),
                None => grouped.push(Batch { group: Some(group), jobs: vec![(job, repo)] }),
            },
            None => ungrouped.jobs.push((job, repo)),
        }
    }
    if !ungrouped.jobs.is_empty() {
        grouped.push(ungrouped);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Failure, RefState, RepoState};

    #[test]
    fn a_parked_tag_is_listed_as_a_tag_with_its_error() {
        let sha = Sha::parse(&"a".repeat(40)).expect("sha");
        let failure =
            Failure { at: "2026-12-01T00:00:00Z".into(), attempts: 3, commit: sha.clone(), error: "boom".into() };
        let mut repo = RepoState::default();
        repo.tags.insert("v1.0.0".into(), Box::new(RefState { failure: Some(failure), ..RefState::default() }));
        let mut state = State::default();
        state.repos.insert("app".into(), repo);
        // A branch of the same name exists too: the note says which one is parked.
        state.repos.get_mut("app").expect("app").branches.insert("v1.0.0".into(), Box::default());
        let notes =
            [Note::Parked { repo: "app".into(), branch: "v1.0.0".into(), tag: true, commit: sha.clone(), attempts: 3 }];
        let p = parked(&notes, &state);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].branch.as_deref(), p[0].tag.as_deref(), p[0].error.as_str()), (None, Some("v1.0.0"), "boom"));
    }
}

//! The run: the one place that knows the order config -> state -> check -> plan -> deploy -> report.

use crate::cli::{DeployArgs, OutputFormat, PollArgs};
use crate::config::{Config, Repository};
use crate::deploy::{self, Batch, JobResult, JobStatus};
use crate::error::{Exit, Fatal};
use crate::forge::{Checker, Listing};
use crate::model::{Heads, Job, Sha};
use crate::notify;
use crate::plan::{self, Note, Outcome};
use crate::report::{self, Checked, Deployment, Summary};
use crate::state::Pending;
use crate::state::{self, LockMode, State, StateError, StateStore, StoreOptions};
use std::collections::BTreeMap;
use std::sync::{Mutex, mpsc};
use std::time::Instant;

/// `sentry validate --connectivity`.
pub fn connectivity(config: &Config, output: OutputFormat) -> anyhow::Result<Exit> {
    crate::forge::connectivity::run(config, output)
}

/// `sentry status`.
pub fn status(config: &Config, location: Option<&str>, output: OutputFormat) -> anyhow::Result<Exit> {
    crate::state::status::run(config, location, output)
}

/// Identity and clock of one pass.
struct RunInfo {
    id: String,
    started: Instant,
    started_at: String,
}

impl RunInfo {
    fn new() -> RunInfo {
        let now = std::time::SystemTime::now();
        let nanos = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        // Time-ordered and unique enough across concurrent processes: seconds, pid, sub-second noise.
        let id = format!("{:x}-{:x}-{:x}", nanos / 1_000_000_000, std::process::id(), (nanos % 1_000_000_000) as u32);
        RunInfo { id, started: Instant::now(), started_at: crate::time::rfc3339(now) }
    }

    fn summary(&self, dry_run: bool) -> Summary {
        Summary {
            run_id: self.id.clone(),
            started_at: self.started_at.clone(),
            duration_ms: 0,
            dry_run,
            checked: Vec::new(),
            deployments: Vec::new(),
            errors: Vec::new(),
            state_error: false,
        }
    }
}

/// `sentry poll`: one pass with `--once` (or `--dry-run`), else a pass every polling_interval.
pub fn poll(config: &Config, location: Option<&str>, output: OutputFormat, args: &PollArgs) -> anyhow::Result<Exit> {
    let selected = select(config, &args.repos, &args.groups)?;
    let location = state::resolve_location(location, config)?;
    crate::signals::install();
    if args.once || args.dry_run {
        return pass(config, &location, output, &selected, args.dry_run);
    }
    log::info!(interval_s = config.polling_interval.as_secs(); "polling until SIGTERM or SIGINT");
    loop {
        let started = Instant::now();
        match pass(config, &location, output, &selected, false) {
            Ok(_) => {}
            // A loop that serves a Deployment keeps going; the next pass may well succeed.
            Err(e) => log::error!("{}", crate::logging::redact(&format!("pass failed: {e:#}"))),
        }
        if crate::signals::stop_requested() {
            break;
        }
        let wait = config.polling_interval.saturating_sub(started.elapsed());
        if !crate::signals::sleep_unless_stopped(wait) {
            break;
        }
    }
    log::info!("stop requested: exiting");
    Ok(Exit::Success)
}

/// The repositories a `poll` covers: all, or those named and those in the named groups.
fn select<'c>(config: &'c Config, repos: &[String], groups: &[String]) -> Result<Vec<&'c Repository>, Fatal> {
    for name in repos {
        if config.repository(name).is_none() {
            return Err(unknown("repository", name, config.repositories.iter().map(|r| r.name.as_str())));
        }
    }
    for name in groups {
        if !config.groups.contains_key(name) {
            return Err(unknown("group", name, config.groups.keys().map(String::as_str)));
        }
    }
    Ok(config
        .repositories
        .iter()
        .filter(|r| {
            (repos.is_empty() && groups.is_empty())
                || repos.contains(&r.name)
                || r.group.as_ref().is_some_and(|g| groups.contains(g))
        })
        .collect())
}

fn unknown<'a>(what: &str, name: &str, known: impl Iterator<Item = &'a str>) -> Fatal {
    let known: Vec<_> = known.collect();
    let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
    Fatal::usage(format!("unknown {what} {name:?} (known: {known})"))
}

fn open_store(
    location: &state::Location,
    mode: LockMode,
    config: &Config,
    run: &RunInfo,
) -> Result<Box<dyn StateStore>, StateError> {
    state::open(location, mode, &StoreOptions::from_config(run.id.clone(), config))
}

fn state_fatal(e: StateError) -> anyhow::Error {
    Fatal::state(crate::logging::redact(&e.to_string())).into()
}

/// What the check phase learned, per repository name.
struct Checks {
    /// Matching heads of every repository checked successfully (the planner's input).
    heads: BTreeMap<String, Heads>,
    /// The full listings, for their cache validators.
    listings: BTreeMap<String, Listing>,
    /// Why the others could not be checked (redacted).
    errors: BTreeMap<String, String>,
}

/// Checks `repos` concurrently and records each outcome in the summary.
fn check(config: &Config, repos: &[&Repository], state: &State, summary: &mut Summary) -> anyhow::Result<Checks> {
    let checker = Checker::new(&config.global)?;
    let inputs: Vec<(&Repository, Option<&crate::model::Validators>)> =
        repos.iter().map(|r| (*r, state.repos.get(&r.name).and_then(|s| s.validators.as_ref()))).collect();
    let results = checker.check_all(&inputs);
    let mut heads = BTreeMap::new();
    let mut listings = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for (repo, result) in repos.iter().zip(results) {
        match result {
            Ok(listing) => {
                summary.checked.push(Checked {
                    repo: repo.name.clone(),
                    branches: listing.heads.iter().map(|(b, s)| (b.clone(), s.to_string())).collect(),
                    error: None,
                });
                heads.insert(repo.name.clone(), listing.heads.clone());
                listings.insert(repo.name.clone(), listing);
            }
            Err(e) => {
                let msg = crate::logging::redact(&e.to_string());
                log::warn!(repo = repo.name.as_str(); "repository could not be checked: {msg}");
                summary.checked.push(Checked {
                    repo: repo.name.clone(),
                    branches: BTreeMap::new(),
                    error: Some(msg.clone()),
                });
                summary.errors.push(format!("{}: {msg}", repo.name));
                errors.insert(repo.name.clone(), msg);
            }
        }
    }
    Ok(Checks { heads, listings, errors })
}

/// Applies what the checks learned that planning does not decide: cache validators, check errors.
fn absorb_checks(next: &mut State, checks: &Checks) {
    for (name, listing) in &checks.listings {
        next.repos.entry(name.clone()).or_default().validators = listing.validators.clone();
    }
    for (name, msg) in &checks.errors {
        next.repos.entry(name.clone()).or_default().last_error = Some(msg.clone());
    }
}

fn log_notes(notes: &[Note]) {
    for note in notes {
        match note {
            Note::Baseline { repo, branch, head } => {
                log::info!(repo = repo.as_str(), branch = branch.as_str(), head = head.short(); "first seen: recorded as baseline")
            }
            Note::Dropped { repo, branch } => {
                log::info!(repo = repo.as_str(), branch = branch.as_str(); "branch is gone: dropped from state")
            }
            Note::Parked { repo, branch, commit, attempts } => log::warn!(
                repo = repo.as_str(), branch = branch.as_str(), commit = commit.short(), attempts = *attempts;
                "deployment parked after repeated failures: push a new commit or run `sentry deploy` by hand"
            ),
        }
    }
}

fn log_jobs(jobs: &[Job]) {
    for j in jobs {
        log::info!(
            repo = j.repo.as_str(), branch = j.branch.as_str(),
            from = j.previous.as_ref().map_or("none", Sha::short), to = j.commit.short(),
            reason = j.reason.as_str(), attempt = j.attempt;
            "change detected"
        );
    }
}

/// One `poll` pass: lock, load, check, plan, save, deploy (saving after each job), report.
fn pass(
    config: &Config,
    location: &state::Location,
    output: OutputFormat,
    repos: &[&Repository],
    dry_run: bool,
) -> anyhow::Result<Exit> {
    let run = RunInfo::new();
    let mode = if dry_run { LockMode::None } else { LockMode::Try };
    let mut store = match open_store(location, mode, config, &run) {
        Ok(s) => s,
        Err(StateError::Busy { holder, .. }) => {
            log::info!(state = location.to_string(), holder = holder.as_str(); "another run is in progress: nothing to do");
            return Ok(Exit::Success);
        }
        Err(e) => return Err(state_fatal(e)),
    };
    let state = store.load().map_err(state_fatal)?;
    let mut summary = run.summary(dry_run);
    let checks = check(config, repos, &state, &mut summary)?;
    let now = crate::time::now_rfc3339();
    let planned = plan::plan(config, &checks.heads, &state, &now);
    let mut next = planned.state;
    absorb_checks(&mut next, &checks);
    log_notes(&planned.notes);
    log_jobs(&planned.jobs);
    if dry_run {
        summary.deployments = planned.jobs.iter().map(planned_deployment).collect();
        return Ok(finish(summary, &run, output));
    }
    next.last_run = Some(crate::state::RunInfo { run_id: run.id.clone(), at: now });
    count_http(config, &mut next, &checks);
    store.save(&next).map_err(state_fatal)?;
    flush_outbox(config, &mut store, &mut next, &mut summary);
    let last = execute(config, &run, store, next, planned.jobs, &mut summary);
    write_metrics(config, &last, &run, &mut summary, &checks);
    Ok(finish(summary, &run, output))
}

/// Adds this pass's forge requests to the counters kept in the state.
fn count_http(config: &Config, state: &mut State, checks: &Checks) {
    for (name, listing) in &checks.listings {
        let Some(repo) = config.repository(name) else { continue };
        let status = if listing.cache_hit { "304" } else { "200" };
        *state.http.requests.entry(format!("{}/{status}", repo.monitor.kind.as_str())).or_default() +=
            u64::from(listing.requests);
        state.http.cache_hits += u64::from(listing.cache_hit);
    }
    for name in checks.errors.keys() {
        let Some(repo) = config.repository(name) else { continue };
        *state.http.requests.entry(format!("{}/error", repo.monitor.kind.as_str())).or_default() += 1;
    }
}

/// Writes `global.metrics_file`, if configured. A failure is reported, never fatal.
fn write_metrics(config: &Config, state: &State, run: &RunInfo, summary: &mut Summary, checks: &Checks) {
    let Some(path) = &config.global.metrics_file else { return };
    let m = crate::metrics::RunMetrics {
        finished: Some(std::time::SystemTime::now()),
        duration: run.started.elapsed(),
        checked: checks.listings.len() + checks.errors.len(),
        check_errors: checks.errors.len(),
        rate_limits: BTreeMap::new(),
    };
    if let Err(e) = crate::metrics::write_file(path, &crate::metrics::render(config, state, &m)) {
        log::warn!("{e}");
        summary.errors.push(e);
    }
}

fn finish(mut summary: Summary, run: &RunInfo, output: OutputFormat) -> Exit {
    summary.duration_ms = run.started.elapsed().as_millis() as u64;
    let exit = summary.exit();
    let failed = summary.deployments.iter().filter(|d| d.status == "failed" || d.status == "timed_out").count();
    log::info!(
        run_id = run.id.as_str(), checked = summary.checked.len(),
        check_errors = summary.checked.iter().filter(|c| c.error.is_some()).count(),
        deployments = summary.deployments.len(), failed = failed, duration_ms = summary.duration_ms, exit = exit.code();
        "run finished"
    );
    summary.print(output);
    exit
}

/// Runs the jobs in batches and records each result in the state as it finishes.
fn execute(
    config: &Config,
    run: &RunInfo,
    store: Box<dyn StateStore>,
    state: State,
    jobs: Vec<Job>,
    summary: &mut Summary,
) -> State {
    if jobs.is_empty() {
        return state;
    }
    let ctx = deploy::Context {
        tmp_dir: config.global.tmp_dir.clone(),
        cleanup: config.global.cleanup,
        timeout: config.global.timeout,
        run_id: run.id.clone(),
        redactor: config.redactor(),
        strip_env: config.tokens().into_iter().cloned().collect(),
    };
    let batches = batches(config, jobs);
    let shared = Mutex::new(Shared { store, state, save_errors: Vec::new(), notify_errors: Vec::new() });
    let sender = notify::Sender::new(config.global.http_timeout);
    let host = notify::hostname();
    let (tx, rx) = mpsc::channel::<Pending>();
    let results = std::thread::scope(|scope| {
        // Deliveries run beside the deployments: a slow webhook never delays a job or a save.
        scope.spawn(|| {
            for pending in rx {
                let outcome = sender.deliver(config, &pending);
                if let Ok(mut sh) = shared.lock() {
                    sh.delivered(&pending.id, outcome);
                }
            }
        });
        let on_done = |result: &JobResult| {
            let outcome = match result.status {
                JobStatus::Succeeded => Outcome::Succeeded,
                JobStatus::Skipped => Outcome::Skipped,
                // An interrupted deployment says nothing about the commit: no attempt is counted,
                // and the next run deploys it again.
                _ if result.interrupted() => Outcome::Skipped,
                JobStatus::Failed | JobStatus::TimedOut => Outcome::Failed(failure_text(result)),
            };
            if outcome == Outcome::Skipped {
                return;
            }
            let now = crate::time::now_rfc3339();
            let pending = notify::pending(result, &run.id, &host, &now)
                .filter(|_| !notify::targets(config, &result.job.repo).is_empty());
            let Ok(mut sh) = shared.lock() else { return };
            plan::record(&mut sh.state, &result.job, &outcome, &now);
            let rs = sh.state.repos.entry(result.job.repo.clone()).or_default();
            *rs.deployments.entry(result.status.as_str().to_string()).or_default() += 1;
            rs.last_deployment_ms = Some(result.duration.as_millis() as u64);
            // Recorded in the same save as the outcome: an interruption cannot lose it.
            if let Some(p) = &pending {
                sh.state.outbox.push(p.clone());
            }
            sh.save(&format!("after deploying {}", result.job.repo));
            drop(sh);
            if let Some(p) = pending {
                let _ = tx.send(p);
            }
        };
        let results = deploy::run_batches(&ctx, batches, &on_done);
        drop(tx);
        results
    });
    summary.deployments = results.iter().map(deployment).collect();
    let sh = match shared.into_inner() {
        Ok(sh) => sh,
        // A panic while saving: the stored state is whatever the last good save wrote.
        Err(poisoned) => poisoned.into_inner(),
    };
    summary.state_error |= !sh.save_errors.is_empty();
    summary.errors.extend(sh.save_errors);
    summary.errors.extend(sh.notify_errors);
    sh.state
}

/// The state and its store while jobs finish on several threads.
struct Shared {
    store: Box<dyn StateStore>,
    state: State,
    save_errors: Vec<String>,
    notify_errors: Vec<String>,
}

impl Shared {
    /// Saves; a failure is logged and remembered (exit 4), never fatal mid-batch.
    fn save(&mut self, when: &str) {
        if let Err(e) = self.store.save(&self.state) {
            let msg = crate::logging::redact(&format!("state could not be saved {when}: {e}"));
            log::error!("{msg}");
            self.save_errors.push(msg);
        }
    }

    /// Removes a delivered (or given up) notification from the outbox.
    fn delivered(&mut self, id: &str, outcome: Result<(), String>) {
        if let Err(e) = outcome {
            let msg = crate::logging::redact(&format!("notification failed: {e}"));
            log::warn!("{msg}");
            self.notify_errors.push(msg);
        }
        self.state.outbox.retain(|p| p.id != id);
        self.save("after a notification");
    }
}

/// Delivers what an interrupted run left in the outbox, before anything else happens.
fn flush_outbox(config: &Config, store: &mut Box<dyn StateStore>, state: &mut State, summary: &mut Summary) {
    if state.outbox.is_empty() {
        return;
    }
    log::info!(count = state.outbox.len(); "delivering notifications left by an interrupted run");
    let sender = notify::Sender::new(config.global.http_timeout);
    for pending in std::mem::take(&mut state.outbox) {
        if let Err(e) = sender.deliver(config, &pending) {
            let msg = crate::logging::redact(&format!("notification failed: {e}"));
            log::warn!("{msg}");
            summary.errors.push(msg);
        }
    }
    if let Err(e) = store.save(state) {
        summary.state_error = true;
        summary.errors.push(crate::logging::redact(&format!("state could not be saved after notifications: {e}")));
    }
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

fn failure_text(r: &JobResult) -> String {
    match (&r.failed_command, &r.error) {
        (Some(f), _) => format!(
            "command {} `{}` exited {}",
            f.index,
            f.command,
            f.exit_code.map_or("by signal".to_string(), |c| c.to_string())
        ),
        (None, Some(e)) => e.clone(),
        (None, None) => format!("{:?}", r.status).to_lowercase(),
    }
}

fn deployment(r: &JobResult) -> Deployment {
    Deployment {
        repo: r.job.repo.clone(),
        group: r.job.group.clone(),
        branch: r.job.branch.clone(),
        commit: r.job.commit.to_string(),
        previous_commit: r.job.previous.as_ref().map(Sha::to_string),
        status: r.status.as_str().to_string(),
        reason: r.job.reason,
        attempt: r.job.attempt,
        duration_ms: r.duration.as_millis() as u64,
        failed_command: r.failed_command.as_ref().map(|f| report::FailedCommand {
            index: f.index,
            command: f.command.clone(),
            exit_code: f.exit_code,
        }),
        error: r.error.clone(),
        output_tail: r.output_tail.clone(),
    }
}

fn planned_deployment(j: &Job) -> Deployment {
    Deployment {
        repo: j.repo.clone(),
        group: j.group.clone(),
        branch: j.branch.clone(),
        commit: j.commit.to_string(),
        previous_commit: j.previous.as_ref().map(Sha::to_string),
        status: "skipped".into(),
        reason: j.reason,
        attempt: j.attempt,
        duration_ms: 0,
        failed_command: None,
        error: None,
        output_tail: String::new(),
    }
}

/// `sentry deploy`: deploy now, whatever changed; waits for the lock.
pub fn deploy(
    config: &Config,
    location: Option<&str>,
    output: OutputFormat,
    args: &DeployArgs,
) -> anyhow::Result<Exit> {
    let targets: Vec<&Repository> = match (&args.repo, &args.group) {
        (Some(name), _) => vec![
            config
                .repository(name)
                .ok_or_else(|| unknown("repository", name, config.repositories.iter().map(|r| r.name.as_str())))?,
        ],
        (None, Some(group)) => {
            if !config.groups.contains_key(group) {
                return Err(unknown("group", group, config.groups.keys().map(String::as_str)).into());
            }
            let members: Vec<_> = config.repositories.iter().filter(|r| r.group.as_ref() == Some(group)).collect();
            if members.is_empty() {
                return Err(Fatal::usage(format!("group {group:?} has no repositories")).into());
            }
            members
        }
        (None, None) => return Err(Fatal::usage("deploy needs --repo NAME or --group NAME").into()),
    };
    let commit = match &args.commit {
        Some(c) => Some(
            Sha::parse(c)
                .ok_or_else(|| Fatal::usage(format!("--commit {c:?} is not a full commit id (40 or 64 hex digits)")))?,
        ),
        None => None,
    };
    let location = state::resolve_location(location, config)?;
    crate::signals::install();
    let run = RunInfo::new();
    let mode = if args.dry_run { LockMode::None } else { LockMode::Wait(config.global.timeout) };
    let mut store = open_store(&location, mode, config, &run).map_err(state_fatal)?;
    let state = store.load().map_err(state_fatal)?;
    let mut summary = run.summary(args.dry_run);
    let checks = check(config, &targets, &state, &mut summary)?;
    let mut jobs = Vec::new();
    for repo in &targets {
        let Some(h) = checks.heads.get(&repo.name) else { continue };
        match plan::manual(repo, h, args.branch.as_deref(), commit.as_ref(), &state) {
            Ok(job) => jobs.push(job),
            Err(msg) => return Err(Fatal::usage(msg).into()),
        }
    }
    log_jobs(&jobs);
    let now = crate::time::now_rfc3339();
    // Keep the bookkeeping a poll would do (seen heads, baselines, dropped branches), without its jobs.
    let planned = plan::plan(config, &checks.heads, &state, &now);
    let mut next = planned.state;
    absorb_checks(&mut next, &checks);
    if args.dry_run {
        summary.deployments = jobs.iter().map(planned_deployment).collect();
        return Ok(finish(summary, &run, output));
    }
    next.last_run = Some(crate::state::RunInfo { run_id: run.id.clone(), at: now });
    count_http(config, &mut next, &checks);
    store.save(&next).map_err(state_fatal)?;
    flush_outbox(config, &mut store, &mut next, &mut summary);
    let last = execute(config, &run, store, next, jobs, &mut summary);
    write_metrics(config, &last, &run, &mut summary, &checks);
    Ok(finish(summary, &run, output))
}

//! The run: the one place that knows the order config -> state -> check -> plan -> deploy -> report.

use crate::cli::{DeployArgs, OutputFormat, PollArgs};
use crate::config::{Config, ForgeKind, Repository};
use crate::deploy::{self, Batch, JobResult, JobStatus};
use crate::error::{Exit, Fatal};
use crate::forge::{Checker, ForgeStats, Listing};
use crate::http::{Http, HttpSettings, Method, Request};
use crate::model::{Heads, Job, Sha};
use crate::notify;
use crate::plan::{self, Note, Outcome};
use crate::report::{Checked, Deployment, Summary};
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
            skipped: None,
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
    /// HTTP answers and rate-limit headroom per forge.
    stats: ForgeStats,
}

/// The clients of one run: one HTTP agent (connection reuse, TLS roots) shared by all.
struct Clients {
    checker: Checker,
    sender: notify::Sender,
}

impl Clients {
    fn new(config: &Config) -> anyhow::Result<Clients> {
        let http =
            Http::new(&HttpSettings { redactor: config.redactor(), ..crate::forge::http_settings(&config.global) })?;
        Ok(Clients { checker: Checker::with_http(http.clone(), &config.global)?, sender: notify::Sender::new(http) })
    }
}

/// Checks `repos` concurrently and records each outcome in the summary.
fn check(checker: &Checker, repos: &[&Repository], state: &State, summary: &mut Summary) -> Checks {
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
    Checks { heads, listings, errors, stats: checker.stats() }
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
            // A JSON consumer still gets its one object; the human output stays empty, so cron
            // does not mail every minute while a long deployment runs.
            if output == OutputFormat::Json {
                let mut summary = run.summary(dry_run);
                summary.skipped = Some(format!("another run holds the lock ({holder})"));
                summary.duration_ms = run.started.elapsed().as_millis() as u64;
                summary.print(output);
            }
            return Ok(Exit::Success);
        }
        Err(e) => return Err(state_fatal(e)),
    };
    let state = store.load().map_err(state_fatal)?;
    let mut summary = run.summary(dry_run);
    let clients = Clients::new(config)?;
    let checks = check(&clients.checker, repos, &state, &mut summary);
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
    flush_outbox(config, &clients.sender, &mut store, &mut next, &mut summary);
    let last = execute(config, &clients.sender, &run, store, next, planned.jobs, &mut summary);
    write_metrics(config, &clients, &last, &run, &mut summary, &checks);
    Ok(finish(summary, &run, output))
}

/// Adds this pass's forge requests to the counters kept in the state.
fn count_http(config: &Config, state: &mut State, checks: &Checks) {
    for ((forge, status), n) in &checks.stats.requests {
        let status = if *status == 0 { "error".to_string() } else { status.to_string() };
        *state.http.requests.entry(format!("{forge}/{status}")).or_default() += n;
    }
    // `git ls-remote` is not HTTP through our client: count its invocations by outcome.
    let is_git = |name: &String| config.repository(name).is_some_and(|r| r.monitor.kind == ForgeKind::Git);
    for listing in checks.listings.iter().filter(|(n, _)| is_git(n)).map(|(_, l)| l) {
        *state.http.requests.entry("git/ok".into()).or_default() += u64::from(listing.requests);
    }
    for _ in checks.errors.keys().filter(|n| is_git(n)) {
        *state.http.requests.entry("git/error".into()).or_default() += 1;
    }
    state.http.cache_hits += checks.listings.values().filter(|l| l.cache_hit).count() as u64;
}

/// Writes `global.metrics_file` and pushes to `global.pushgateway_url`, if configured. A failure
/// is reported, never fatal.
fn write_metrics(
    config: &Config,
    clients: &Clients,
    state: &State,
    run: &RunInfo,
    summary: &mut Summary,
    checks: &Checks,
) {
    if config.global.metrics_file.is_none() && config.global.pushgateway_url.is_none() {
        return;
    }
    let m = crate::metrics::RunMetrics {
        finished: Some(std::time::SystemTime::now()),
        duration: run.started.elapsed(),
        checked: checks.listings.len() + checks.errors.len(),
        check_errors: checks.errors.len(),
        rate_limits: checks.stats.rate_limits.clone(),
    };
    let text = crate::metrics::render(config, state, &m);
    if let Some(path) = &config.global.metrics_file
        && let Err(e) = crate::metrics::write_file(path, &text)
    {
        log::warn!("{e}");
        summary.errors.push(e);
    }
    if let Some(base) = &config.global.pushgateway_url {
        let url = format!("{}/metrics/job/sentry/instance/{}", base.trim_end_matches('/'), notify::hostname());
        let req = Request::new(Method::Put, url).body("text/plain; version=0.0.4", text.into_bytes());
        if let Err(e) = clients.checker.http().send(&req) {
            let msg = format!("metrics push to the Pushgateway failed: {}", notify::describe(&e));
            log::warn!("{msg}");
            summary.errors.push(msg);
        }
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
    sender: &notify::Sender,
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
    let journal = Journal::new(store, state);
    let host = notify::hostname();
    let (tx, rx) = mpsc::channel::<Pending>();
    let results = std::thread::scope(|scope| {
        // Deliveries run beside the deployments: a slow webhook never delays a job or a save.
        scope.spawn(|| {
            for pending in rx {
                let outcome = sender.deliver(config, &pending);
                journal.delivered(&pending.id, outcome);
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
            let recorded = journal.record(|state| {
                plan::record(state, &result.job, &outcome, &now);
                let rs = state.repos.entry(result.job.repo.clone()).or_default();
                *rs.deployments.entry(result.status.as_str().to_string()).or_default() += 1;
                rs.last_deployment_ms = Some(result.duration.as_millis() as u64);
                // Recorded in the same save as the outcome: an interruption cannot lose it.
                if let Some(p) = &pending {
                    state.outbox.push(p.clone());
                }
            });
            let Some(generation) = recorded else { return };
            journal.commit(generation, &format!("after deploying {}", result.job.repo));
            if let Some(p) = pending {
                let _ = tx.send(p);
            }
        };
        let results = deploy::run_batches(&ctx, batches, &on_done);
        drop(tx);
        results
    });
    summary.deployments = results.iter().map(deployment).collect();
    let sh = journal.into_shared();
    summary.state_error |= !sh.save_errors.is_empty();
    summary.errors.extend(sh.save_errors);
    summary.errors.extend(sh.notify_errors);
    sh.state
}

/// The state and its store while jobs finish on several threads.
///
/// Saves are group commits: a finished job records its outcome, then returns once a save that
/// includes it is durable. Jobs that finish while a save is being written are all covered by
/// the next one, so five jobs ending together cost two fsync'd writes instead of five, and
/// their slots start the next jobs sooner (BENCHMARKS.md, P4).
struct Journal {
    shared: Mutex<Shared>,
    /// Held while writing; taken before `shared`, never the other way round.
    store: Mutex<Saved>,
}

/// What the job threads change: the state and what went wrong.
struct Shared {
    state: State,
    /// Count of changes recorded so far.
    recorded: u64,
    save_errors: Vec<String>,
    notify_errors: Vec<String>,
}

struct Saved {
    store: Box<dyn StateStore>,
    /// Changes `1..=saved` are durable.
    saved: u64,
}

impl Journal {
    fn new(store: Box<dyn StateStore>, state: State) -> Journal {
        Journal {
            shared: Mutex::new(Shared { state, recorded: 0, save_errors: Vec::new(), notify_errors: Vec::new() }),
            store: Mutex::new(Saved { store, saved: 0 }),
        }
    }

    /// Applies `change` to the state; returns its number for [`Journal::commit`].
    fn record(&self, change: impl FnOnce(&mut State)) -> Option<u64> {
        let mut sh = self.shared.lock().ok()?;
        change(&mut sh.state);
        sh.recorded += 1;
        Some(sh.recorded)
    }

    /// Returns once change `generation` is saved (or saving failed: logged, remembered for exit
    /// 4, never fatal mid-batch; a later commit saves it again).
    fn commit(&self, generation: u64, when: &str) {
        let Ok(mut saved) = self.store.lock() else { return };
        if saved.saved >= generation {
            return;
        }
        let Ok((snapshot, upto)) = self.shared.lock().map(|sh| (sh.state.clone(), sh.recorded)) else { return };
        match saved.store.save(&snapshot) {
            Ok(()) => saved.saved = upto,
            Err(e) => {
                let msg = crate::logging::redact(&format!("state could not be saved {when}: {e}"));
                log::error!("{msg}");
                if let Ok(mut sh) = self.shared.lock() {
                    sh.save_errors.push(msg);
                }
            }
        }
    }

    /// Removes a delivered (or given up) notification from the outbox.
    fn delivered(&self, id: &str, outcome: Result<(), String>) {
        let recorded = self.record(|state| state.outbox.retain(|p| p.id != id));
        if let Err(e) = outcome {
            let msg = crate::logging::redact(&format!("notification failed: {e}"));
            log::warn!("{msg}");
            if let Ok(mut sh) = self.shared.lock() {
                sh.notify_errors.push(msg);
            }
        }
        if let Some(generation) = recorded {
            self.commit(generation, "after a notification");
        }
    }

    fn into_shared(self) -> Shared {
        match self.shared.into_inner() {
            Ok(sh) => sh,
            // A panic while recording: the stored state is whatever the last good save wrote.
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Delivers what an interrupted run left in the outbox, before anything else happens.
fn flush_outbox(
    config: &Config,
    sender: &notify::Sender,
    store: &mut Box<dyn StateStore>,
    state: &mut State,
    summary: &mut Summary,
) {
    if state.outbox.is_empty() {
        return;
    }
    log::info!(count = state.outbox.len(); "delivering notifications left by an interrupted run");
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
        (Some(f), _) => f.to_string(),
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
        failed_command: r.failed_command.clone(),
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
    let clients = Clients::new(config)?;
    let checks = check(&clients.checker, &targets, &state, &mut summary);
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
    flush_outbox(config, &clients.sender, &mut store, &mut next, &mut summary);
    let last = execute(config, &clients.sender, &run, store, next, jobs, &mut summary);
    write_metrics(config, &clients, &last, &run, &mut summary, &checks);
    Ok(finish(summary, &run, output))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    /// A store that keeps every state it is given, slowly (as an fsync'd write is).
    struct Recording(Arc<Mutex<Vec<State>>>);

    impl StateStore for Recording {
        fn load(&mut self) -> Result<State, StateError> {
            Ok(State::default())
        }
        fn save(&mut self, state: &State) -> Result<(), StateError> {
            std::thread::sleep(std::time::Duration::from_millis(10));
            self.0.lock().expect("saves").push(state.clone());
            Ok(())
        }
        fn location(&self) -> String {
            "memory".into()
        }
    }

    /// Eight jobs finish on eight threads; each records its repository and commits.
    fn finish_eight(together: bool) -> Vec<State> {
        let saves = Arc::new(Mutex::new(Vec::new()));
        let journal = Journal::new(Box::new(Recording(saves.clone())), State::default());
        let barrier = Barrier::new(8);
        std::thread::scope(|s| {
            for i in 0..8 {
                let (journal, saves, barrier) = (&journal, &saves, &barrier);
                s.spawn(move || {
                    let name = format!("r{i}");
                    let generation = journal
                        .record(|st| {
                            st.repos.entry(name.clone()).or_default();
                        })
                        .expect("recorded");
                    if together {
                        barrier.wait();
                    }
                    journal.commit(generation, "in a test");
                    // Durable when commit returns: states only grow, so the last save holds it.
                    let saved = saves.lock().expect("saves");
                    assert!(saved.last().is_some_and(|st| st.repos.contains_key(&name)), "{name} not saved");
                });
            }
        });
        let saved = saves.lock().expect("saves").clone();
        assert_eq!(saved.last().map(|st| st.repos.len()), Some(8), "every outcome in the final save");
        assert!(journal.into_shared().save_errors.is_empty());
        saved
    }

    #[test]
    fn journal_returns_only_once_a_change_is_saved() {
        let saved = finish_eight(false);
        assert!((1..=8).contains(&saved.len()), "{} saves", saved.len());
    }

    #[test]
    fn journal_covers_changes_recorded_together_with_one_save() {
        assert_eq!(finish_eight(true).len(), 1);
    }
}

//! Commit statuses (SPEC §4, `deploy.report_status`): `pending` on the monitored commit when its
//! deployment starts, `success` or `failure` when it ends, under the context
//! `sentry/<project_name>`.
//!
//! | forge  | request                                        | states sent                         | description |
//! |--------|------------------------------------------------|-------------------------------------|-------------|
//! | GitHub | `POST {api}/repos/{owner}/{repo}/statuses/{sha}` | pending, success, failure, error    | ≤ 140 chars |
//! | GitLab | `POST {api}/projects/{path}/statuses/{sha}`     | running, success, failed, canceled  | ≤ 255 chars |
//! | Gitea  | `POST {api}/repos/{owner}/{repo}/statuses/{sha}` | pending, success, failure, error    | ≤ 255 chars |
//!
//! The requests carry the monitor's token (the listing's credential header) and go through the
//! run's [`Http`] client: its retries, origin rules and redaction. [`Reporter`] posts them off the
//! deployment threads, never delaying a job: each job's statuses go through one lane in order
//! (its `pending` lands before its verdict), under the notifications' deadlines (`notify_timeout`
//! each, and nothing starts later than `notify_timeout` after the last job). A status that
//! cannot be posted is logged as a warning and returned as an error for the summary; it never
//! changes a deployment or the exit code.

use super::url::{encode, owner_repo};
use super::{Api, gitea, github, gitlab};
use crate::config::{Config, ForgeKind, Repository};
use crate::http::{Http, Method, Request};
use crate::model::{DeploymentRecord, Job, JobStatus, Sha};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Threads posting statuses; one job's statuses always share one.
const LANES: usize = 4;

/// What a status says about the deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The deployment started.
    Pending,
    /// It succeeded.
    Success,
    /// A command failed, or it timed out.
    Failure,
    /// It could not start (job directory, clone).
    Error,
    /// A pending deployment was stopped or never ran (a stop requested by signal).
    Canceled,
}

impl State {
    /// The word `forge` uses for it.
    pub fn as_str(self, forge: ForgeKind) -> &'static str {
        match (forge, self) {
            (ForgeKind::Gitlab, State::Pending) => "running",
            (ForgeKind::Gitlab, State::Failure | State::Error) => "failed",
            (ForgeKind::Gitlab, State::Canceled) => "canceled",
            (_, State::Pending) => "pending",
            (_, State::Success) => "success",
            (_, State::Failure) => "failure",
            (_, State::Error | State::Canceled) => "error",
        }
    }
}

/// One status to post: a state and a one-line description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The state.
    pub state: State,
    /// One line; cut to each forge's limit when posted.
    pub description: String,
}

impl Status {
    /// The status of a job that starts now.
    pub fn started(job: &Job) -> Status {
        let description = match job.attempt {
            0 | 1 => "deploying".to_string(),
            n => format!("deploying (attempt {n})"),
        };
        Status { state: State::Pending, description }
    }

    /// The verdict on a finished job: "deployed in 8.1 s", "command 2 failed (exit 1)", "timed
    /// out after 300 s". `timeout` is `global.timeout`, the limit a timed-out job ran into
    /// unless its error names its group's `global_timeout`. Skipped and interrupted jobs have no
    /// verdict: [`State::Canceled`] with the reason.
    ///
    /// A status is shown to whoever can see the commit (anyone, on a public repository), so its
    /// description is sentry's own words only: never a command's text, its output, or an error
    /// that quotes them (a clone error names the deploy repository); those stay in sentry's log
    /// and summary.
    pub fn finished(r: &DeploymentRecord, timeout: Duration) -> Status {
        let own_words = |e: &str| e.starts_with("not started: ") || e == "stopped by signal";
        let (state, description) = match r.status {
            JobStatus::Succeeded => (State::Success, format!("deployed in {:.1} s", r.duration_ms as f64 / 1000.0)),
            JobStatus::Failed => match &r.failed_command {
                Some(f) => match f.exit_code {
                    Some(code) => (State::Failure, format!("command {} failed (exit {code})", f.index)),
                    None => (State::Failure, format!("command {} was killed by a signal", f.index)),
                },
                None => (State::Failure, "failed before its first command".to_string()),
            },
            JobStatus::TimedOut => match &r.error {
                Some(e) if e.contains("global_timeout") => (State::Failure, crate::text::one_line(e)),
                _ => (State::Failure, format!("timed out after {} s", timeout.as_secs())),
            },
            JobStatus::FailedToStart => match &r.error {
                Some(e) if e.starts_with("clone failed") => {
                    (State::Error, "did not start: the deploy repository could not be cloned".to_string())
                }
                _ => (State::Error, "did not start: see sentry's log".to_string()),
            },
            // A filtered change never runs, so it posts nothing (SPEC §4); listed for completeness.
            JobStatus::Interrupted | JobStatus::Skipped | JobStatus::Filtered => match &r.error {
                Some(e) if own_words(e) => (State::Canceled, crate::text::one_line(e)),
                _ => (State::Canceled, "interrupted".to_string()),
            },
        };
        Status { state, description }
    }
}

/// Longest description each forge takes.
fn max_description(forge: ForgeKind) -> usize {
    match forge {
        ForgeKind::Github => 140,
        _ => 255,
    }
}

/// The request posting `status` on `commit` (reached through `branch`) of `repo`'s monitored
/// repository, with the monitor's credentials. `Err` for a `git` repository (no API) or a
/// repository URL that names no API project.
pub fn request(repo: &Repository, commit: &Sha, branch: &str, status: &Status) -> Result<Request, String> {
    let m = &repo.monitor;
    let context = format!("sentry/{}", repo.deploy.project_name);
    let description = cut(&status.description, max_description(m.kind));
    let state = status.state.as_str(m.kind);
    let (api, url, body) = match m.kind {
        ForgeKind::Github | ForgeKind::Gitea => {
            let api = if m.kind == ForgeKind::Github { github::api(m)? } else { gitea::api(m)? };
            let (owner, name) = owner_repo(&api.project)?;
            let url = format!("{}/repos/{}/{}/statuses/{commit}", api.api_base, encode(owner), encode(name));
            let body = serde_json::json!({"state": state, "context": context, "description": description});
            (api, url, body)
        }
        ForgeKind::Gitlab => {
            let api = gitlab::api(m)?;
            let url = format!("{}/projects/{}/statuses/{commit}", api.api_base, encode(&api.project));
            let body = serde_json::json!({"state": state, "name": context, "ref": branch, "description": description});
            (api, url, body)
        }
        ForgeKind::Git => return Err("a plain Git repository has no commit status API".into()),
    };
    Ok(with_auth(&api, Request::new(Method::Post, url)).body("application/json", body.to_string().into_bytes()))
}

fn with_auth(api: &Api, mut r: Request) -> Request {
    for (k, v) in &api.headers {
        if !k.eq_ignore_ascii_case("content-type") {
            r = r.header(k, *v);
        }
    }
    if let Some((k, v)) = &api.secret {
        r = r.secret_header(k, v.clone());
    }
    r
}

/// `s` in at most `max` characters, `…` marking a cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { crate::text::truncate(s, max.saturating_sub(1)) }
}

/// One status waiting for its lane.
struct Post {
    /// `repo/branch/commit/attempt`: the job it belongs to.
    job: String,
    /// What it says, for messages.
    what: String,
    request: Request,
}

/// What the lanes share.
struct Shared {
    /// No post starts after this (set when the last job ends).
    cutoff: Mutex<Option<Instant>>,
    /// Why statuses could not be posted, for the summary.
    errors: Mutex<Vec<String>>,
}

/// Posts the commit statuses of one run beside its deployments (see the module documentation).
pub struct Reporter {
    lanes: Mutex<Vec<mpsc::Sender<Post>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    shared: Arc<Shared>,
    /// Jobs whose `pending` was queued: only they get a status when they end without a verdict.
    started: Mutex<HashSet<String>>,
    http: Http,
    /// `notify_timeout`: each post's own deadline, and the time after the last job.
    timeout: Duration,
    /// `global.timeout`, for "timed out after N s".
    job_timeout: Duration,
}

impl Reporter {
    /// A reporter on the run's client; it starts its threads only if a repository of `config`
    /// has `report_status`.
    pub fn start(http: Http, config: &Config) -> Reporter {
        let shared = Arc::new(Shared { cutoff: Mutex::new(None), errors: Mutex::new(Vec::new()) });
        let mut lanes = Vec::new();
        let mut workers = Vec::new();
        let timeout = config.global.notify_timeout.min(crate::http::MAX_TIMEOUT);
        if config.repositories.iter().any(|r| r.deploy.report_status) {
            for i in 0..LANES {
                let (tx, rx) = mpsc::channel::<Post>();
                let (http, shared) = (http.clone(), shared.clone());
                match std::thread::Builder::new()
                    .name(format!("status-{i}"))
                    .spawn(move || lane(&http, &shared, rx, timeout))
                {
                    Ok(handle) => {
                        lanes.push(tx);
                        workers.push(handle);
                    }
                    Err(e) => log::warn!("cannot start a commit status thread: {e}"),
                }
            }
        }
        Reporter {
            lanes: Mutex::new(lanes),
            workers: Mutex::new(workers),
            shared,
            started: Mutex::new(HashSet::new()),
            http,
            timeout,
            job_timeout: config.global.timeout,
        }
    }

    /// Queues `pending` for `job`, if its repository reports statuses.
    pub fn started(&self, config: &Config, job: &Job) {
        let Some(repo) = config.repository(&job.repo).filter(|r| r.deploy.report_status) else { return };
        let key = key(&job.repo, &job.branch, &job.commit, job.attempt);
        if let Ok(mut s) = self.started.lock() {
            s.insert(key.clone());
        }
        self.post(repo, key, &job.branch, &job.commit, &Status::started(job));
    }

    /// Queues the verdict on a finished job, if its repository reports statuses. A job that
    /// ended without a verdict (skipped, interrupted) gets one only if its `pending` was sent.
    pub fn finished(&self, config: &Config, done: &DeploymentRecord) {
        let Some(repo) = config.repository(&done.repo).filter(|r| r.deploy.report_status) else { return };
        let key = key(&done.repo, &done.branch, &done.commit, done.attempt);
        let was_started = self.started.lock().map(|mut s| s.remove(&key)).unwrap_or(false);
        if !done.status.is_verdict() && !was_started {
            return;
        }
        self.post(repo, key, &done.branch, &done.commit, &Status::finished(done, self.job_timeout));
    }

    fn post(&self, repo: &Repository, job: String, branch: &str, commit: &Sha, status: &Status) {
        let what = format!(
            "commit status {} of {} {branch} {}",
            status.state.as_str(repo.monitor.kind),
            repo.name,
            commit.short()
        );
        let request = match request(repo, commit, branch, status) {
            Ok(r) => r,
            Err(e) => return fail(&self.shared, format!("{what} not posted: {e}")),
        };
        let post = Post { job, what, request };
        // One job, one lane: its statuses arrive in the order they were queued.
        let queued = match self.lanes.lock() {
            Ok(lanes) if !lanes.is_empty() => {
                let i = (crate::model::shard::fnv1a64(post.job.as_bytes()) % lanes.len() as u64) as usize;
                lanes[i].send(post).map_err(|e| e.0)
            }
            _ => Err(post),
        };
        // No thread to take it: post it here, within the same deadline.
        if let Err(post) = queued {
            send(&self.http, &self.shared, &post, self.timeout);
        }
    }

    /// The last job ended: statuses still queued get at most `notify_timeout` from now, and no
    /// more are accepted.
    pub fn close(&self) {
        if let Ok(mut c) = self.shared.cutoff.lock() {
            let now = Instant::now();
            c.get_or_insert(now.checked_add(self.timeout).unwrap_or(now));
        }
        if let Ok(mut lanes) = self.lanes.lock() {
            lanes.clear();
        }
    }

    /// Waits for the lanes (bounded by the cutoff [`Reporter::close`] set) and returns what
    /// could not be posted.
    pub fn finish(&self) -> Vec<String> {
        self.close();
        let workers = self.workers.lock().map(|mut w| std::mem::take(&mut *w)).unwrap_or_default();
        for w in workers {
            if w.join().is_err() {
                log::error!("internal error (a bug in sentry) in a commit status thread");
            }
        }
        self.shared.errors.lock().map(|mut e| std::mem::take(&mut *e)).unwrap_or_default()
    }
}

/// One lane: posts in arrival order. After a status is refused (a 4xx: no permission, no such
/// commit), the job's later statuses are not tried: the first error says it.
fn lane(http: &Http, shared: &Shared, rx: mpsc::Receiver<Post>, timeout: Duration) {
    let mut refused: HashSet<String> = HashSet::new();
    for post in rx {
        if refused.contains(&post.job) {
            log::debug!(job = post.job.as_str(); "{} not posted: an earlier status of this job was refused", post.what);
            continue;
        }
        if send(http, shared, &post, timeout) == Some(true) {
            refused.insert(post.job);
        }
    }
}

/// Posts one status by its deadline; `Some(refused)` on failure.
fn send(http: &Http, shared: &Shared, post: &Post, timeout: Duration) -> Option<bool> {
    let now = Instant::now();
    let own = now.checked_add(timeout).unwrap_or(now);
    let deadline = match shared.cutoff.lock().ok().and_then(|c| *c) {
        Some(c) if now >= c => {
            fail(shared, format!("{} not posted: out of time (notify_timeout)", post.what));
            return Some(false);
        }
        Some(c) => c.min(own),
        None => own,
    };
    match http.send(&post.request.clone().deadline(deadline)) {
        Ok(_) => {
            log::debug!(job = post.job.as_str(); "{} posted", post.what);
            None
        }
        Err(e) => {
            let refused = e.status.is_some_and(|s| (400..500).contains(&s));
            fail(shared, format!("{} not posted: {e}", post.what));
            Some(refused)
        }
    }
}

/// Logs and keeps `msg` (already redacted: HTTP errors are, and the rest holds no secret).
fn fail(shared: &Shared, msg: String) {
    log::warn!("{msg}");
    if let Ok(mut errors) = shared.errors.lock() {
        errors.push(msg);
    }
}

fn key(repo: &str, branch: &str, commit: &Sha, attempt: u32) -> String {
    format!("{repo}/{branch}/{commit}/{attempt}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FailedCommand, Reason};

    fn record(status: JobStatus) -> DeploymentRecord {
        DeploymentRecord {
            duration_ms: 8123,
            ..DeploymentRecord::planned(&job(), status, Some("timed out after 300s".into()))
        }
    }

    fn job() -> Job {
        Job {
            repo: "app".into(),
            group: None,
            branch: "main".into(),
            tag: false,
            commit: Sha::parse(&"c".repeat(40)).expect("sha"),
            previous: None,
            reason: Reason::Changed,
            attempt: 1,
        }
    }

    #[test]
    fn descriptions_say_what_happened_in_one_line() {
        let t = Duration::from_secs(300);
        let d = |r: &DeploymentRecord| Status::finished(r, t);
        assert_eq!(d(&record(JobStatus::Succeeded)).description, "deployed in 8.1 s");
        let mut failed = record(JobStatus::Failed);
        failed.failed_command = Some(FailedCommand { index: 2, command: "make".into(), exit_code: Some(1) });
        assert_eq!(d(&failed), Status { state: State::Failure, description: "command 2 failed (exit 1)".into() });
        assert_eq!(d(&record(JobStatus::TimedOut)).description, "timed out after 300 s");
        let mut group = record(JobStatus::TimedOut);
        group.error = Some("global_timeout of group g expired".into());
        assert_eq!(d(&group).description, "global_timeout of group g expired");
        // Words that quote a command, its output or the deploy repository never reach the forge.
        let mut clone = record(JobStatus::FailedToStart);
        clone.error = Some("clone failed (exit code 128): fatal: repository 'https://qa.internal/x' not found".into());
        let want = "did not start: the deploy repository could not be cloned";
        assert_eq!(d(&clone), Status { state: State::Error, description: want.into() });
        let mut shell = record(JobStatus::Failed);
        shell.error = Some("cannot run sh: No such file or directory (os error 2)".into());
        assert_eq!(d(&shell).description, "failed before its first command");
        let mut stopped = record(JobStatus::Interrupted);
        stopped.error = Some("stopped by signal".into());
        assert_eq!(d(&stopped), Status { state: State::Canceled, description: "stopped by signal".into() });
        let mut skipped = record(JobStatus::Skipped);
        skipped.error = Some("not started: stop requested by signal".into());
        assert_eq!(d(&skipped).description, "not started: stop requested by signal");
        assert_eq!(Status::started(&job()).description, "deploying");
        assert_eq!(Status::started(&Job { attempt: 3, ..job() }).description, "deploying (attempt 3)");
        assert_eq!(cut("abcdef", 6), "abcdef");
        assert_eq!(cut("abcdefg", 6), "abcde…");
    }

    #[test]
    fn each_forge_has_its_words() {
        let all = [State::Pending, State::Success, State::Failure, State::Error, State::Canceled];
        let words = |f| all.map(|s| s.as_str(f));
        assert_eq!(words(ForgeKind::Github), ["pending", "success", "failure", "error", "error"]);
        assert_eq!(words(ForgeKind::Gitea), ["pending", "success", "failure", "error", "error"]);
        assert_eq!(words(ForgeKind::Gitlab), ["running", "success", "failed", "failed", "canceled"]);
    }
}

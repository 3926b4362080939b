//! Group strategies: batches run concurrently with one another; inside a batch, jobs run one by
//! one (sequential, ungrouped) or up to `max_parallel` at once, each worker thread taking the
//! next queued job. Threads are plain scoped threads, not rayon's pool: a pod with one CPU gets
//! a one-thread pool, and a deployment mostly waits on a child process anyway.

use super::{Context, JobResult, log_skipped, run_job, skip_reason};
use crate::config::{Group, Repository, Strategy};
use crate::model::{Job, JobStatus};
use std::sync::Mutex;
use std::time::Instant;

/// One batch: a group's jobs (run with its strategy) or the ungrouped jobs (group `None`: one
/// after another, each independent of the others' failures).
pub struct Batch<'a> {
    /// The group, or `None` for the ungrouped jobs.
    pub group: Option<&'a Group>,
    /// The jobs in configuration order, each with its repository.
    pub jobs: Vec<(Job, &'a Repository)>,
}

/// Runs all batches concurrently with one another and returns every job's result, batch by
/// batch in the given order, jobs in their order. Calls `on_done` after every finished or
/// skipped job (the caller saves state there), from any thread.
pub fn run_batches(ctx: &Context, batches: Vec<Batch<'_>>, on_done: &(dyn Fn(&JobResult) + Sync)) -> Vec<JobResult> {
    run_batches_with(ctx, batches, &|_| {}, on_done)
}

/// [`run_batches`], calling `on_start` (from the job's thread) just before each job that is
/// started, never for one skipped; its `on_done` follows on the same thread.
pub fn run_batches_with(
    ctx: &Context,
    batches: Vec<Batch<'_>>,
    on_start: &(dyn Fn(&Job) + Sync),
    on_done: &(dyn Fn(&JobResult) + Sync),
) -> Vec<JobResult> {
    let hooks = Hooks { on_start, on_done };
    let hooks = &hooks;
    // Each batch waits in a slot its thread takes it from; if the thread cannot be made, the
    // batch is still there and runs on this thread instead (later, but it gets results).
    let slots: Vec<Mutex<Option<Batch<'_>>>> = batches.into_iter().map(|b| Mutex::new(Some(b))).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = slots
            .iter()
            .enumerate()
            .map(|(i, slot)| {
                std::thread::Builder::new()
                    .name(format!("batch-{i}"))
                    .spawn_scoped(scope, move || take(slot).map(|b| run_batch(ctx, b, hooks)).unwrap_or_default())
            })
            .collect();
        handles
            .into_iter()
            .zip(&slots)
            .flat_map(|(handle, slot)| match handle {
                // Jobs and their recording are guarded below; what is left cannot panic, and if it
                // did, the run goes on without that batch's results rather than aborting.
                Ok(handle) => handle.join().unwrap_or_else(|panic| {
                    log::error!("internal error (a bug in sentry) in a batch: {}", crate::text::panic_message(&*panic));
                    Vec::new()
                }),
                Err(e) => {
                    log::warn!("cannot start a thread for a batch, running it on the caller's: {e}");
                    take(slot).map(|b| run_batch(ctx, b, hooks)).unwrap_or_default()
                }
            })
            .collect()
    })
}

/// Runs one job; a panic inside it (a bug in sentry) is that job's failure, not the run's end.
fn run_guarded(ctx: &Context, repo: &Repository, job: &Job, deadline: Option<Instant>) -> JobResult {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_job(ctx, repo, job, deadline))).unwrap_or_else(
        |panic| {
            let why =
                format!("internal error (a bug in sentry, please report it): {}", crate::text::panic_message(&*panic));
            log::error!(repo = job.repo.as_str(), branch = job.branch.as_str(); "{why}");
            JobResult { status: JobStatus::Failed, ..JobResult::skipped(job.clone(), why) }
        },
    )
}

fn take<'a>(slot: &Mutex<Option<Batch<'a>>>) -> Option<Batch<'a>> {
    slot.lock().ok().and_then(|mut s| s.take())
}

/// What the caller is told about each job.
struct Hooks<'h> {
    on_start: &'h (dyn Fn(&Job) + Sync),
    on_done: &'h (dyn Fn(&JobResult) + Sync),
}

/// The shared queue of one batch.
struct Queue {
    next: usize,
    failed: bool,
    results: Vec<Option<JobResult>>,
}

/// Runs one batch under its strategy.
fn run_batch(ctx: &Context, batch: Batch<'_>, hooks: &Hooks<'_>) -> Vec<JobResult> {
    let (workers, stop_on_failure) = match batch.group {
        None => (1, false),
        Some(g) => match g.strategy {
            Strategy::Sequential => (1, !g.continue_on_error),
            Strategy::Parallel => (g.max_parallel.max(1), !g.continue_on_error),
        },
    };
    let deadline = batch.group.and_then(|g| g.global_timeout).and_then(|t| Instant::now().checked_add(t));
    let group_name = batch.group.map(|g| g.name.as_str());
    let jobs = &batch.jobs;
    let queue = Mutex::new(Queue { next: 0, failed: false, results: jobs.iter().map(|_| None).collect() });

    let work = || {
        loop {
            let (index, skip) = {
                let Ok(mut q) = queue.lock() else { return };
                if q.next >= jobs.len() {
                    return;
                }
                let index = q.next;
                q.next += 1;
                let skip = if stop_on_failure && q.failed {
                    Some(format!("not started: an earlier deployment of group {} failed", group_name.unwrap_or("")))
                } else {
                    None
                };
                (index, skip)
            };
            let (job, repo) = &jobs[index];
            let skip = skip.or_else(|| skip_reason(job, deadline));
            let result = match skip {
                Some(why) => {
                    log_skipped(job, &why);
                    JobResult::skipped(job.clone(), why)
                }
                None => {
                    // A bug in the caller's hook must not cost the deployment.
                    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (hooks.on_start)(job)))
                    {
                        log::error!(repo = job.repo.as_str(); "internal error (a bug in sentry) before a deployment: {}", crate::text::panic_message(&*panic));
                    }
                    run_guarded(ctx, repo, job, deadline)
                }
            };
            if let Ok(mut q) = queue.lock() {
                q.failed |= result.status.is_failure();
            }
            // The caller records and saves here; a bug there must not take other jobs down.
            if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (hooks.on_done)(&result))) {
                log::error!(repo = job.repo.as_str(); "internal error (a bug in sentry) while recording a deployment: {}", crate::text::panic_message(&*panic));
            }
            if let Ok(mut q) = queue.lock() {
                q.results[index] = Some(result);
            }
        }
    };

    let workers = workers.min(jobs.len());
    if workers <= 1 {
        work();
    } else {
        std::thread::scope(|scope| {
            let mut started = 0;
            for i in 0..workers {
                let spawned = std::thread::Builder::new()
                    .name(format!("{}-{i}", group_name.unwrap_or("jobs")))
                    .spawn_scoped(scope, work);
                match spawned {
                    Ok(_) => started += 1,
                    Err(e) => log::warn!(group = group_name.unwrap_or(""); "cannot start a worker thread: {e}"),
                }
            }
            if started == 0 {
                work();
            }
        });
    }

    let results = match queue.into_inner() {
        Ok(q) => q.results,
        Err(poisoned) => poisoned.into_inner().results,
    };
    // A slot is empty only if a worker died: report its job rather than lose it.
    results
        .into_iter()
        .zip(jobs)
        .map(|(r, (job, _))| {
            r.unwrap_or_else(|| JobResult {
                status: JobStatus::Failed,
                ..JobResult::skipped(job.clone(), "internal error: the job's worker stopped")
            })
        })
        .collect()
}

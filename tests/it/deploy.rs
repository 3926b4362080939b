//! The deploy engine, called through the library: real `git`, real `sh`, real process groups.
//!
//! Time is only ever asserted as a generous upper bound ("did not wait for the 300 s sleep").
//! Tests that need process-wide state (environment variables, signals, a logger) run their job
//! in a child test process (see `in_child`).

use crate::support::Sandbox;
use crate::support::config::{Conf, Group, Repo};
use crate::support::git_server::GitServer;
use crate::support::repos::BareRepo;
use sentry::config::{Config, Repository};
use sentry::deploy::{Batch, Context, JobResult, run_batches, run_batches_with, run_job};
use sentry::model::JobStatus;
use sentry::model::{Job, Reason, Sha};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const COMMIT: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

/// A sandbox with a QA repository (`file://`) holding a few files on `main`.
struct Qa {
    sb: Sandbox,
    url: String,
}

impl Qa {
    fn new() -> Qa {
        let sb = Sandbox::new();
        let repo = BareRepo::create(sb.path(), "qa.git");
        repo.commit(
            "main",
            &[("README", "qa\n"), (".tekton/rag/pipeline.yaml", "kind: Pipeline\n"), ("deploy.sh", "echo deployed\n")],
            "pipelines",
        );
        let url = format!("file://{}", repo.path.display());
        Qa { sb, url }
    }

    fn path(&self) -> &Path {
        self.sb.path()
    }

    /// `name` inside the sandbox, as text for commands.
    fn file(&self, name: &str) -> String {
        self.path().join(name).display().to_string()
    }
}

/// `name`, deployed from the QA repository at `url` (plain git) as project `proj-<name>`.
fn app(name: &str, url: &str, commands: &[String]) -> Repo {
    Repo::new(name).qa(url).qa_kind("git").project(format!("proj-{name}")).commands(commands)
}

fn context(dir: &Path, config: &Config, timeout: Duration) -> Context {
    Context {
        tmp_dir: dir.join("work"),
        cleanup: true,
        timeout,
        run_id: "run-42".into(),
        redactor: config.redactor(),
        strip_env: config.tokens().into_iter().cloned().collect(),
        inherited: Default::default(),
        kill_grace: sentry::deploy::KILL_GRACE,
        lock: None,
    }
}

fn job(repo: &Repository) -> Job {
    Job {
        tag: false,
        repo: repo.name.clone(),
        group: repo.group.clone(),
        branch: "main".into(),
        commit: Sha::parse(COMMIT).expect("sha"),
        previous: None,
        reason: Reason::Changed,
        attempt: 1,
    }
}

fn cmds(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Runs the only repository of `config` as a job.
fn run_only(ctx: &Context, config: &Config) -> JobResult {
    let repo = &config.repositories[0];
    run_job(ctx, repo, &job(repo), None)
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The process group of `pid`, if it still exists (from `/proc/<pid>/stat`).
fn pgid_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Every process whose group is `pgid`, excluding zombies.
fn members(pgid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        if fields.first() != Some(&"Z") && fields.get(2).and_then(|p| p.parse().ok()) == Some(pgid) {
            pids.push(pid);
        }
    }
    pids
}

/// True when `pid` is gone or is now some other process (not in `pgid`).
fn gone(pid: u32, pgid: u32) -> bool {
    pgid_of(pid) != Some(pgid)
}

fn pid_in(path: &str) -> u32 {
    read(path).trim().parse().unwrap_or_else(|e| panic!("pid in {path}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// One shell session, stopping at the first failure.

#[test]
fn deploy_commands_share_one_session_cd_and_export_carry_over() {
    let qa = Qa::new();
    let out = qa.file("out.txt");
    let commands = cmds(&[
        "cd .tekton/rag",
        "export GREETING='hello world'",
        "test -f pipeline.yaml",
        &format!("echo \"$PWD|$GREETING\" > {out}"),
        // Separators, pipes, quotes and a here-document all stay inside their own command.
        &format!("echo a | tr a b >> {out} && echo \"it's; fine\" >> {out}; echo 'x \"y\"' >> {out}"),
        &format!("cat >> {out} <<'EOF'\nheredoc $GREETING\nEOF"),
        "echo to stdout; echo to stderr >&2",
    ]);
    let config = Conf::new().repo(app("app", &qa.url, &commands)).parse(qa.path(), &[]);
    let ctx = context(qa.path(), &config, Duration::from_secs(60));
    let r = run_only(&ctx, &config);

    assert_eq!(r.status, JobStatus::Succeeded, "{r:?}");
    assert_eq!(r.failed_command, None);
    assert_eq!(r.error, None);
    let text = read(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].ends_with("/repo/.tekton/rag|hello world"), "cd and export carried over: {text}");
    assert_eq!(&lines[1..], ["b", "it's; fine", "x \"y\"", "heredoc $GREETING"]);
    assert!(r.output_tail.contains("to stdout\nto stderr\n"), "both streams, in order: {:?}", r.output_tail);
    assert_eq!(std::fs::read_dir(&ctx.tmp_dir).expect("tmp_dir").count(), 0, "cleanup removed the job directory");
}

#[test]
fn deploy_stops_at_the_first_failing_command_and_names_it() {
    let qa = Qa::new();
    let marker = qa.file("marker");
    let commands = cmds(&["echo one", "echo two; sh -c 'exit 3'", &format!("touch {marker}")]);
    let config = Conf::new().repo(app("app", &qa.url, &commands)).parse(qa.path(), &[]);
    let ctx = context(qa.path(), &config, Duration::from_secs(60));
    let r = run_only(&ctx, &config);

    assert_eq!(r.status, JobStatus::Failed);
    let failed = r.failed_command.as_ref().expect("failed command");
    assert_eq!(failed.index, 1);
    assert_eq!(failed.command, "echo two; sh -c 'exit 3'");
    assert_eq!(failed.exit_code, Some(3));
    assert_eq!(r.error.as_deref(), Some("command 1 failed with exit code 3"));
    assert!(!Path::new(&marker).exists(), "the command after the failure must not run");
    assert!(r.output_tail.contains("one\ntwo\n"), "{:?}", r.output_tail);
}

#[test]
fn deploy_a_broken_command_or_an_exit_fails_only_there() {
    let qa = Qa::new();
    let marker = qa.file("marker");
    // An unbalanced quote must not swallow the following commands.
    let commands = cmds(&["true", "echo 'unbalanced", &format!("touch {marker}")]);
    let exits = cmds(&["true", "true", "exit 5", &format!("touch {marker}")]);
    let config =
        Conf::new().repo(app("broken", &qa.url, &commands)).repo(app("exits", &qa.url, &exits)).parse(qa.path(), &[]);
    let ctx = context(qa.path(), &config, Duration::from_secs(60));

    let r = run_job(&ctx, &config.repositories[0], &job(&config.repositories[0]), None);
    assert_eq!(r.status, JobStatus::Failed);
    let failed = r.failed_command.as_ref().expect("failed command");
    assert_eq!((failed.index, failed.command.as_str()), (1, "echo 'unbalanced"));
    assert!(failed.exit_code.is_some_and(|c| c != 0), "{failed:?}");

    let r = run_job(&ctx, &config.repositories[1], &job(&config.repositories[1]), None);
    let failed = r.failed_command.as_ref().expect("failed command");
    assert_eq!((failed.index, failed.exit_code), (2, Some(5)));
    assert!(!Path::new(&marker).exists());
}

#[test]
fn deploy_clone_failure_is_reported_and_runs_nothing() {
    let qa = Qa::new();
    let marker = qa.file("marker");
    let missing = format!("file://{}", qa.path().join("nope.git").display());
    let config = Conf::new().repo(app("app", &missing, &[format!("touch {marker}")])).parse(qa.path(), &[]);
    let ctx = context(qa.path(), &config, Duration::from_secs(60));
    let r = run_only(&ctx, &config);
    assert_eq!(r.status, JobStatus::FailedToStart, "a clone failure counts no attempt");
    assert!(r.error.as_deref().is_some_and(|e| e.starts_with("clone failed (exit code 128)")), "{:?}", r.error);
    assert_eq!(r.failed_command, None);
    assert!(!Path::new(&marker).exists());
}

#[test]
fn deploy_cleanup_false_keeps_private_unique_directories() {
    let qa = Qa::new();
    let config = Conf::new().repo(app("app", &qa.url, &cmds(&["true"]))).parse(qa.path(), &[]);
    let mut ctx = context(qa.path(), &config, Duration::from_secs(60));
    ctx.cleanup = false;
    let a = run_only(&ctx, &config);
    let b = run_only(&ctx, &config);
    let (a, b) = (a.kept_dir.expect("kept"), b.kept_dir.expect("kept"));
    assert_ne!(a, b, "two jobs of the same repository and branch get distinct directories");
    for dir in [&a, &b] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        assert!(dir.join("repo/README").is_file());
        assert!(dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("app-main-")));
    }
}

// ---------------------------------------------------------------------------------------------
// Timeouts and process groups.

#[test]
fn deploy_timeout_kills_the_whole_process_group() {
    let qa = Qa::new();
    let (sh_pid, bg_pid) = (qa.file("sh.pid"), qa.file("bg.pid"));
    // Commands reach `sh` as written: `$$` is the shell's own PID.
    let commands = cmds(&[&format!("echo $$ > {sh_pid}; sleep 300 & echo $! > {bg_pid}"), "sleep 300"]);
    let config = Conf::new().repo(app("slow", &qa.url, &commands)).parse(qa.path(), &[]);
    let ctx = context(qa.path(), &config, Duration::from_secs(2));
    let start = Instant::now();
    let r = run_only(&ctx, &config);
    let took = start.elapsed();

    assert_eq!(r.status, JobStatus::TimedOut, "{r:?}");
    assert_eq!(r.error.as_deref(), Some("timed out after 2s"));
    let failed = r.failed_command.as_ref().expect("the command it was stopped in");
    assert_eq!((failed.index, failed.exit_code), (1, None));
    assert!(took < Duration::from_secs(2 + 10 + 5), "took {took:?}");
    let pgid = pid_in(&sh_pid);
    assert!(gone(pid_in(&bg_pid), pgid), "the background sleep survived");
    assert_eq!(members(pgid), Vec::<u32>::new(), "processes of the job's group survived");
    assert!(r.output_tail.contains("[sentry] timed out after 2s"), "{:?}", r.output_tail);
}

#[test]
fn deploy_timeout_escalates_to_sigkill_for_processes_ignoring_sigterm() {
    let qa = Qa::new();
    let (sh_pid, bg_pid) = (qa.file("sh.pid"), qa.file("bg.pid"));
    // Ignored signals stay ignored across exec: both sleeps ignore SIGTERM too.
    let commands = cmds(&["trap '' TERM", &format!("echo $$ > {sh_pid}; sleep 300 & echo $! > {bg_pid}; sleep 300")]);
    let config = Conf::new().repo(app("stubborn", &qa.url, &commands)).parse(qa.path(), &[]);
    // The grace is a parameter (10 s in a real run): a short one keeps the test quick.
    let grace = Duration::from_secs(2);
    let ctx = Context { kill_grace: grace, ..context(qa.path(), &config, Duration::from_secs(1)) };
    let start = Instant::now();
    let r = run_only(&ctx, &config);
    let took = start.elapsed();

    assert_eq!(r.status, JobStatus::TimedOut);
    assert!(took >= Duration::from_secs(1) + grace, "SIGKILL came before the grace ended: {took:?}");
    assert!(took < Duration::from_secs(1 + 2 + 5), "took {took:?}");
    let pgid = pid_in(&sh_pid);
    assert!(gone(pid_in(&bg_pid), pgid));
    assert_eq!(members(pgid), Vec::<u32>::new());
}

#[test]
fn deploy_leftover_background_processes_neither_hang_nor_survive_the_job() {
    let qa = Qa::new();
    let (sh_pid, bg_pid, escaped_pid) = (qa.file("sh.pid"), qa.file("bg.pid"), qa.file("escaped.pid"));
    let commands = cmds(&[
        // Holds the output pipe, in the job's group.
        &format!("echo $$ > {sh_pid}; (sleep 300; echo late) & echo $! > {bg_pid}"),
        // Holds the output pipe from a session of its own: out of reach, but must not hang us.
        &format!("setsid sleep 301 & echo $! > {escaped_pid}"),
        "echo done",
    ]);
    let config = Conf::new().repo(app("bg", &qa.url, &commands)).parse(qa.path(), &[]);
    let ctx = context(qa.path(), &config, Duration::from_secs(120));
    let start = Instant::now();
    let r = run_only(&ctx, &config);
    let took = start.elapsed();
    let escaped = pid_in(&escaped_pid);
    // SAFETY (test): signals the setsid'd sleep this test started, by its pid.
    unsafe {
        libc::kill(escaped as i32, libc::SIGKILL);
    }

    assert_eq!(r.status, JobStatus::Succeeded, "{r:?}");
    assert!(took < Duration::from_secs(30), "waited for a leftover process: {took:?}");
    let pgid = pid_in(&sh_pid);
    assert!(gone(pid_in(&bg_pid), pgid));
    assert_eq!(members(pgid), Vec::<u32>::new());
    assert!(r.output_tail.contains("done\n"));
}

// ---------------------------------------------------------------------------------------------
// Group strategies.

/// Jobs `app0..n` of one group `g`, each with `commands(i)`.
fn group_config(qa: &Qa, group: Group, n: usize, commands: impl Fn(usize) -> Vec<String>) -> Config {
    let repos = (0..n).map(|i| app(&format!("app{i}"), &qa.url, &commands(i)).group("g"));
    Conf::new().group("g", group).repos(repos).parse(qa.path(), &[])
}

fn group_batch(config: &Config) -> Batch<'_> {
    Batch { group: config.groups.get("g"), jobs: config.repositories.iter().map(|r| (job(r), r)).collect() }
}

/// Runs the batches, collecting what `on_done` saw.
fn run_collecting(ctx: &Context, batches: Vec<Batch<'_>>) -> (Vec<JobResult>, Vec<(String, JobStatus)>) {
    let seen = Mutex::new(Vec::new());
    let results = run_batches(ctx, batches, &|r: &JobResult| {
        seen.lock().expect("lock").push((r.job.repo.clone(), r.status));
    });
    (results, seen.into_inner().expect("lock"))
}

fn statuses(results: &[JobResult]) -> Vec<(&str, JobStatus)> {
    results.iter().map(|r| (r.job.repo.as_str(), r.status)).collect()
}

#[test]
fn deploy_parallel_group_never_runs_more_than_max_parallel() {
    let qa = Qa::new();
    let times = qa.path().join("times");
    std::fs::create_dir_all(&times).expect("mkdir");
    let config = group_config(&qa, Group::parallel().max_parallel(2), 6, |i| {
        let f = times.join(format!("{i}")).display().to_string();
        cmds(&[&format!("date +%s%N > {f}"), "sleep 1", &format!("date +%s%N >> {f}")])
    });
    let ctx = context(qa.path(), &config, Duration::from_secs(120));
    let (results, seen) = run_collecting(&ctx, vec![group_batch(&config)]);

    assert!(results.iter().all(|r| r.status == JobStatus::Succeeded), "{:?}", statuses(&results));
    assert_eq!(seen.len(), 6, "on_done after every job");
    let mut events = Vec::new();
    for i in 0..6 {
        let text = read(times.join(format!("{i}")));
        let t: Vec<u128> = text.lines().map(|l| l.trim().parse().expect("ns")).collect();
        events.push((t[0], 1i32));
        events.push((t[1], -1i32));
    }
    // Ends sort before starts at the same instant: touching intervals do not overlap.
    events.sort();
    let (mut running, mut most) = (0, 0);
    for (_, delta) in events {
        running += delta;
        most = most.max(running);
    }
    assert_eq!(most, 2, "at most max_parallel at once, and the group did run in parallel");
}

#[test]
fn deploy_sequential_group_skips_the_rest_after_a_failure_unless_continue_on_error() {
    for (continue_on_error, third) in [(false, JobStatus::Skipped), (true, JobStatus::Succeeded)] {
        let qa = Qa::new();
        let group = Group::sequential().continue_on_error(continue_on_error);
        let order = qa.file("order");
        let config = group_config(&qa, group, 3, |i| {
            let mut c = cmds(&[&format!("echo {i} >> {order}")]);
            if i == 1 {
                c.push("false".into());
            }
            c
        });
        let ctx = context(qa.path(), &config, Duration::from_secs(60));
        let (results, seen) = run_collecting(&ctx, vec![group_batch(&config)]);

        let want = vec![("app0", JobStatus::Succeeded), ("app1", JobStatus::Failed), ("app2", third)];
        assert_eq!(statuses(&results), want, "continue_on_error: {continue_on_error}");
        let seen: Vec<_> = seen.iter().map(|(r, s)| (r.as_str(), *s)).collect();
        assert_eq!(seen, want, "on_done in order, skipped jobs included");
        let ran = if continue_on_error { "0\n1\n2\n" } else { "0\n1\n" };
        assert_eq!(read(&order), ran);
        if !continue_on_error {
            let e = results[2].error.as_deref().unwrap_or("");
            assert!(e.contains("earlier deployment of group g failed"), "{e}");
        }
    }
}

#[test]
fn deploy_on_start_comes_before_each_started_job_and_never_for_a_skipped_one() {
    let qa = Qa::new();
    let order = qa.file("order");
    let config = group_config(&qa, Group::sequential().continue_on_error(false), 3, |i| {
        let mut c = cmds(&[&format!("echo {i} >> {order}")]);
        if i == 1 {
            c.push("false".into());
        }
        c
    });
    let ctx = context(qa.path(), &config, Duration::from_secs(60));
    let events = Mutex::new(Vec::new());
    let ran = || std::fs::read_to_string(&order).unwrap_or_default().lines().count();
    let push = |e: String| events.lock().expect("lock").push(e);
    run_batches_with(
        &ctx,
        vec![group_batch(&config)],
        &|job: &Job| push(format!("start {} after {} ran", job.repo, ran())),
        &|r: &JobResult| push(format!("done {}", r.job.repo)),
    );
    let events = events.into_inner().expect("lock");
    assert_eq!(
        events,
        ["start app0 after 0 ran", "done app0", "start app1 after 1 ran", "done app1", "done app2"],
        "app2 is skipped after app1 failed: no start for it"
    );
}

#[test]
fn deploy_parallel_group_without_continue_on_error_starts_no_more_after_a_failure() {
    let qa = Qa::new();
    let group = Group::parallel().max_parallel(2).continue_on_error(false);
    let config = group_config(&qa, group, 4, |i| if i == 0 { cmds(&["false"]) } else { cmds(&["sleep 2"]) });
    let ctx = context(qa.path(), &config, Duration::from_secs(60));
    let (results, _) = run_collecting(&ctx, vec![group_batch(&config)]);
    assert_eq!(
        statuses(&results),
        vec![
            ("app0", JobStatus::Failed),
            ("app1", JobStatus::Succeeded),
            ("app2", JobStatus::Skipped),
            ("app3", JobStatus::Skipped)
        ]
    );
}

#[test]
fn deploy_group_global_timeout_stops_the_running_job_and_skips_the_queue() {
    let qa = Qa::new();
    let group = Group::sequential().global_timeout(2);
    let config = group_config(&qa, group, 3, |_| cmds(&["sleep 300"]));
    let ctx = context(qa.path(), &config, Duration::from_secs(300));
    let start = Instant::now();
    let (results, seen) = run_collecting(&ctx, vec![group_batch(&config)]);

    assert!(start.elapsed() < Duration::from_secs(2 + 10 + 5), "took {:?}", start.elapsed());
    assert_eq!(
        statuses(&results),
        vec![("app0", JobStatus::TimedOut), ("app1", JobStatus::Skipped), ("app2", JobStatus::Skipped)]
    );
    assert_eq!(results[0].error.as_deref(), Some("global_timeout of group g expired"));
    assert!(results[1].error.as_deref().is_some_and(|e| e.contains("global_timeout")));
    assert_eq!(seen.len(), 3);
}

#[test]
fn deploy_batches_run_concurrently_and_ungrouped_jobs_are_independent() {
    let qa = Qa::new();
    let release = qa.file("release");
    // The grouped job waits until the ungrouped ones have finished: only concurrency lets it end.
    let wait =
        format!("i=0; while [ ! -f {release} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; test -f {release}");
    let config = Conf::new()
        .group("slow", Group::sequential())
        .repo(app("grouped", &qa.url, &[wait]).group("slow"))
        .repo(app("free1", &qa.url, &cmds(&["false"])))
        .repo(app("free2", &qa.url, &[format!("touch {release}")]))
        .parse(qa.path(), &[]);
    let ctx = context(qa.path(), &config, Duration::from_secs(120));
    let r = &config.repositories;
    let batches = vec![
        Batch { group: config.groups.get("slow"), jobs: vec![(job(&r[0]), &r[0])] },
        Batch { group: None, jobs: vec![(job(&r[1]), &r[1]), (job(&r[2]), &r[2])] },
    ];
    let (results, seen) = run_collecting(&ctx, batches);
    assert_eq!(
        statuses(&results),
        vec![("grouped", JobStatus::Succeeded), ("free1", JobStatus::Failed), ("free2", JobStatus::Succeeded)],
        "results in batch order; the grouped job could only succeed while the other batch ran; \
         an ungrouped failure does not stop the next ungrouped job"
    );
    assert_eq!(seen.len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Credentials: clone over HTTP with Basic auth, redaction, the commands' environment.

const USER: &str = "alice";
const TOKEN: &str = "tok-s3cret-9f8e7d6c";

/// Every process's argv that mentions `needle`, and whether any held a forbidden string.
#[derive(Default)]
struct ArgvScan {
    saw_git: usize,
    leaks: Vec<String>,
}

fn scan_argv(needle: &str, forbidden: &[String], scan: &mut ArgvScan) {
    let Ok(dir) = std::fs::read_dir("/proc") else { return };
    for entry in dir.flatten() {
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let argv = String::from_utf8_lossy(&raw).replace('\0', " ");
        if argv.contains(needle) {
            scan.saw_git += 1;
        }
        if forbidden.iter().any(|f| argv.contains(f.as_str())) {
            scan.leaks.push(argv);
        }
    }
}

/// Every file below `dir` whose bytes contain one of `forbidden`.
fn files_containing(dir: &Path, forbidden: &[String]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && forbidden.iter().any(|f| bytes.windows(f.len()).any(|w| w == f.as_bytes()))
            {
                hits.push(path);
            }
        }
    }
    hits
}

#[test]
fn deploy_clones_over_http_with_basic_auth_and_the_token_goes_nowhere() {
    let sb = Sandbox::new();
    let root = sb.path().join("srv");
    let qa = BareRepo::create(&root, "team/qa.git");
    // Incompressible bulk makes the clone last long enough to be seen by the argv scan.
    let mut bulk = String::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..150_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bulk.push_str(&format!("{:016x}", x));
    }
    let head = qa.commit("main", &[("deploy/run.sh", "echo from-qa\n"), ("bulk.txt", &bulk)], "qa");
    let server = GitServer::start(&root, Some((USER, TOKEN)));
    let url = server.url("team/qa.git");
    let commands = cmds(&["sh deploy/run.sh", "git rev-parse HEAD", "sleep 1"]);
    let web = app("web", &url, &commands).deploy_auth(Some("alice"), "${QA_TOKEN}");
    let config = Conf::new().repo(web).parse(sb.path(), &[("QA_TOKEN", TOKEN)]);
    let mut ctx = context(sb.path(), &config, Duration::from_secs(120));
    ctx.cleanup = false;

    let forbidden = vec![TOKEN.to_string(), sentry::secret::base64(format!("{USER}:{TOKEN}").as_bytes())];
    let port = format!("127.0.0.1:{}", server.port());
    let done = std::sync::atomic::AtomicBool::new(false);
    let (r, scan) = std::thread::scope(|s| {
        let scanner = s.spawn(|| {
            let mut scan = ArgvScan::default();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                scan_argv(&port, &forbidden, &mut scan);
                std::thread::yield_now();
            }
            scan
        });
        let r = run_only(&ctx, &config);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (r, scanner.join().expect("scanner"))
    });

    assert_eq!(r.status, JobStatus::Succeeded, "{r:?}");
    assert!(r.output_tail.contains("from-qa\n"), "{:?}", r.output_tail);
    assert!(r.output_tail.contains(&head), "cloned the branch head");
    assert!(scan.saw_git > 0, "the argv scan never saw the clone running");
    assert_eq!(scan.leaks, Vec::<String>::new(), "a token in a process's argv");
    let dir = r.kept_dir.expect("kept");
    let git_config = read(dir.join("repo/.git/config"));
    assert!(forbidden.iter().all(|f| !git_config.contains(f.as_str())), "{git_config}");
    assert!(!git_config.contains("extraheader") && !git_config.contains("extraHeader"), "{git_config}");
    assert_eq!(files_containing(&dir, &forbidden), Vec::<PathBuf>::new(), "a token in a file of the job");
    let authed =
        server.requests().iter().filter(|q| q.status == 200 && q.headers.contains_key("authorization")).count();
    assert!(authed > 0, "the clone authenticated with the header");
    assert!(r.output_tail.lines().all(|l| !l.contains(TOKEN)));
}

#[test]
fn deploy_clone_with_a_wrong_token_fails_without_printing_it() {
    let sb = Sandbox::new();
    let root = sb.path().join("srv");
    BareRepo::create(&root, "qa.git").commit("main", &[("README", "x\n")], "qa");
    let server = GitServer::start(&root, Some((USER, TOKEN)));
    let wrong = "tok-wrong-0123456789";
    let web = app("web", &server.url("qa.git"), &cmds(&["true"])).deploy_auth(Some("alice"), "${QA_TOKEN}");
    let config = Conf::new().repo(web).parse(sb.path(), &[("QA_TOKEN", wrong)]);
    let ctx = context(sb.path(), &config, Duration::from_secs(60));
    let r = run_only(&ctx, &config);
    assert_eq!(r.status, JobStatus::FailedToStart);
    let error = r.error.as_deref().unwrap_or("");
    assert!(error.starts_with("clone failed"), "{error}");
    let basic = sentry::secret::base64(format!("{USER}:{wrong}").as_bytes());
    for text in [error, r.output_tail.as_str()] {
        assert!(!text.contains(wrong) && !text.contains(&basic), "{text}");
    }
}

/// Runs the test `deploy::<name>` alone in a fresh process of this test binary, with `vars`
/// added to its environment (and no inherited `SENTRY_*`).
fn in_child(name: &str, vars: &[(&str, String)]) -> std::process::Child {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args([&format!("deploy::{name}"), "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("DEPLOY_IT_CHILD", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("SENTRY_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child test")
}

fn child_var(name: &str) -> Option<String> {
    std::env::var("DEPLOY_IT_CHILD").ok()?;
    std::env::var(name).ok()
}

const DEPLOY_TOKEN: &str = "tok-deploy-5a5a5a5a";
const MONITOR_TOKEN: &str = "tok-monitor-6b6b6b6b";

#[test]
fn deploy_environment_is_exactly_specified_and_tokens_are_redacted_everywhere() {
    let qa = Qa::new();
    let out = qa.path().join("out");
    let child = in_child(
        "child_environment_and_redaction",
        &[
            ("IT_QA_URL", qa.url.clone()),
            ("IT_OUT", out.display().to_string()),
            ("IT_DEPLOY_TOKEN", DEPLOY_TOKEN.into()),
            ("IT_MONITOR_TOKEN", MONITOR_TOKEN.into()),
            ("IT_HOLDER", format!("Bearer {MONITOR_TOKEN}")),
            ("IT_KEEP", "visible".into()),
        ],
    );
    let output = child.wait_with_output().expect("child");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{}\n{stderr}", String::from_utf8_lossy(&output.stdout));

    let env: BTreeMap<String, String> = read(out.join("env"))
        .split('\0')
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let qa_dir = read(out.join("pwd")).trim().to_string();
    let sentry: BTreeMap<&str, &str> =
        env.iter().filter(|(k, _)| k.starts_with("SENTRY_")).map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let want: BTreeMap<&str, &str> = [
        ("SENTRY_REPO", "envy"),
        ("SENTRY_GROUP", ""),
        ("SENTRY_BRANCH", "main"),
        ("SENTRY_TAG", ""),
        ("SENTRY_REF", "refs/heads/main"),
        ("SENTRY_COMMIT", COMMIT),
        ("SENTRY_PREVIOUS_COMMIT", ""),
        ("SENTRY_PROJECT", "proj-envy"),
        ("SENTRY_REPO_URL", "https://github.com/acme/envy"),
        ("SENTRY_QA_DIR", qa_dir.as_str()),
        ("SENTRY_RUN_ID", "run-42"),
    ]
    .into_iter()
    .collect();
    assert_eq!(sentry, want);
    assert!(qa_dir.ends_with("/repo") && Path::new(&qa_dir).is_absolute(), "{qa_dir}");
    let tmpdir = env.get("TMPDIR").expect("TMPDIR");
    assert_eq!(Path::new(tmpdir), Path::new(&qa_dir).parent().expect("job dir").join("tmp"));
    assert_eq!(read(out.join("tmpdir-ok")).trim(), "yes", "TMPDIR existed and was writable");
    assert_eq!(env.get("PIPELINE_NAMESPACE").map(String::as_str), Some("tekton-pipelines"), "deploy.env");
    assert_eq!(env.get("IT_KEEP").map(String::as_str), Some("visible"), "the rest of the environment");
    for name in ["IT_DEPLOY_TOKEN", "IT_MONITOR_TOKEN", "IT_HOLDER"] {
        assert!(!env.contains_key(name), "{name} holds a token and must be stripped");
    }
    for (k, v) in &env {
        assert!(!v.contains(DEPLOY_TOKEN) && !v.contains(MONITOR_TOKEN), "{k} holds a token");
    }

    let result: serde_json::Value = serde_json::from_str(&read(out.join("result.json"))).expect("result json");
    let text = result.to_string();
    assert!(!text.contains(DEPLOY_TOKEN) && !text.contains(MONITOR_TOKEN), "{text}");
    assert_eq!(result["status"], "failed");
    assert_eq!(result["failed_command"]["index"], 3);
    assert_eq!(result["failed_command"]["command"], "echo \"leaked: ***\" && exit 4");
    assert!(result["output_tail"].as_str().is_some_and(|t| t.contains("leaked: ***\n")), "{text}");
    assert!(!stderr.contains(DEPLOY_TOKEN) && !stderr.contains(MONITOR_TOKEN), "a token in the logs:\n{stderr}");
    assert!(stderr.contains("leaked: ***"), "the output is logged, redacted:\n{stderr}");
    assert!(stderr.contains("deployment started") && stderr.contains("deployment finished"), "{stderr}");
}

/// The child half of the test above: a logger, tokens in the process environment.
#[test]
#[ignore = "run by deploy_environment_is_exactly_specified_and_tokens_are_redacted_everywhere in a child process"]
fn child_environment_and_redaction() {
    let Some(out) = child_var("IT_OUT") else { return };
    let url = std::env::var("IT_QA_URL").expect("url");
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).expect("mkdir");
    let o = |n: &str| out.join(n).display().to_string();
    let commands = cmds(&[
        &format!("pwd > {}", o("pwd")),
        &format!("env -0 > {}", o("env")),
        &format!("touch \"$TMPDIR/x\" && echo yes > {}", o("tmpdir-ok")),
        &format!("echo \"leaked: {DEPLOY_TOKEN}\" && exit 4"),
    ]);
    let envy = app("envy", &url, &commands)
        .monitor_auth(None, "${IT_MONITOR_TOKEN}")
        .env("PIPELINE_NAMESPACE", "tekton-pipelines")
        .deploy_auth(Some("bob"), "${IT_DEPLOY_TOKEN}");
    let config = Conf::new().repo(envy).parse_with(&out, &|name| std::env::var(name).ok());
    sentry::logging::init(log::LevelFilter::Debug, false);
    sentry::logging::set_redactor(config.redactor());
    let ctx = context(&out, &config, Duration::from_secs(60));
    let r = run_only(&ctx, &config);
    let json = serde_json::json!({
        "status": r.status,
        "failed_command": r.failed_command,
        "error": r.error,
        "output_tail": r.output_tail,
    });
    std::fs::write(out.join("result.json"), json.to_string()).expect("write result");
}

#[test]
fn deploy_sigterm_stops_the_running_job_and_skips_the_queued_ones() {
    let qa = Qa::new();
    let out = qa.path().join("out");
    let mut child = in_child("child_signal", &[("IT_QA_URL", qa.url.clone()), ("IT_OUT", out.display().to_string())]);
    let started = out.join("started");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the job never started");
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("child ended early: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let t0 = Instant::now();
    // SAFETY (test): signals the child test process this test spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let output = child.wait_with_output().expect("child");
    assert!(t0.elapsed() < Duration::from_secs(10 + 5), "stopping took {:?}", t0.elapsed());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{}\n{stderr}", String::from_utf8_lossy(&output.stdout));

    let result: serde_json::Value = serde_json::from_str(&read(out.join("result.json"))).expect("result json");
    assert_eq!(result[0]["status"], "failed", "{result}");
    assert_eq!(result[0]["error"], "stopped by signal");
    assert_eq!(result[0]["failed_command"]["index"], 1);
    assert_eq!(result[1]["status"], "skipped", "{result}");
    let pgid = pid_in(&out.join("sh.pid").display().to_string());
    assert!(gone(pid_in(&out.join("bg.pid").display().to_string()), pgid));
    assert_eq!(members(pgid), Vec::<u32>::new());
}

/// The child half of the test above: installs the handlers, then runs a slow job and a queued one.
#[test]
#[ignore = "run by deploy_sigterm_stops_the_running_job_and_skips_the_queued_ones in a child process"]
fn child_signal() {
    let Some(out) = child_var("IT_OUT") else { return };
    let url = std::env::var("IT_QA_URL").expect("url");
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).expect("mkdir");
    let o = |n: &str| out.join(n).display().to_string();
    let slow = cmds(&[
        &format!("echo $$ > {}; sleep 300 & echo $! > {}", o("sh.pid"), o("bg.pid")),
        &format!("touch {}; sleep 300", o("started")),
    ]);
    let config =
        Conf::new().repo(app("slow", &url, &slow)).repo(app("queued", &url, &cmds(&["true"]))).parse(&out, &[]);
    sentry::signals::install();
    let ctx = context(&out, &config, Duration::from_secs(300));
    let r = &config.repositories;
    let batch = Batch { group: None, jobs: vec![(job(&r[0]), &r[0]), (job(&r[1]), &r[1])] };
    let results = run_batches(&ctx, vec![batch], &|_| {});
    let json: Vec<_> = results
        .iter()
        .map(|r| serde_json::json!({"status": r.status, "error": r.error, "failed_command": r.failed_command}))
        .collect();
    std::fs::write(out.join("result.json"), serde_json::Value::from(json).to_string()).expect("write result");
    assert!(sentry::signals::stop_requested());
    assert!(!sentry::signals::sleep_unless_stopped(Duration::from_secs(30)), "sleep returns at once after a stop");
}

//! Benchmarks of whole `sentry` runs against the in-repo fake forge on loopback (issue 9).
//!
//!     cargo bench --bench poll              # every scenario
//!     cargo bench --bench poll -- P1 P3     # some of them
//!
//! Each scenario builds its repositories and config in a temp dir, starts the fake forge with
//! an injected per-request latency, runs the real release binary and prints one table row.
//! Timings are medians of several runs; nothing here asserts a time (see BENCHMARKS.md).

#![allow(dead_code)]

// The fake forge of the integration tests, reused as is (`super::…` is this crate root).
#[path = "../tests/it/support/fake_forge.rs"]
mod fake_forge;
#[path = "../tests/it/support/fake_git.rs"]
mod fake_git;
#[path = "../tests/it/support/git_server.rs"]
mod git_server;
#[path = "../tests/it/support/http1.rs"]
mod http1;

use fake_forge::FakeForge;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SENTRY: &str = env!("CARGO_BIN_EXE_sentry");

/// A commit id the fake forge reports (the objects need not exist: only refs are listed).
fn sha(i: usize) -> String {
    format!("{:040x}", i + 1)
}

/// A minimal bare repository: HEAD plus loose branch refs. Enough for the fake forge and for
/// `git ls-remote`, and a thousand of them take milliseconds to create.
fn bare(root: &Path, rel: &str, branches: &[String], seed: usize) {
    let dir = root.join(rel);
    std::fs::create_dir_all(dir.join("objects")).expect("mkdir");
    std::fs::write(dir.join("HEAD"), "ref: refs/heads/main\n").expect("HEAD");
    for (j, b) in branches.iter().enumerate() {
        let p = dir.join("refs/heads").join(b);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir refs");
        std::fs::write(p, format!("{}\n", sha(seed * 1000 + j))).expect("ref");
    }
}

/// [`bare`] with the branches in one `packed-refs` file, as `git pack-refs` leaves them: the
/// fake forge reads one file per request instead of thousands, so a repository of 5,000
/// branches measures sentry, not the forge's disk reads.
fn bare_packed(root: &Path, rel: &str, branches: &[String], seed: usize) {
    let dir = root.join(rel);
    std::fs::create_dir_all(dir.join("objects")).expect("mkdir");
    std::fs::create_dir_all(dir.join("refs/heads")).expect("mkdir refs");
    std::fs::write(dir.join("HEAD"), "ref: refs/heads/main\n").expect("HEAD");
    let mut packed = String::from("# pack-refs with: peeled fully-peeled sorted \n");
    for (j, b) in branches.iter().enumerate() {
        packed.push_str(&format!("{} refs/heads/{b}\n", sha(seed * 10_000 + j)));
    }
    std::fs::write(dir.join("packed-refs"), packed).expect("packed-refs");
}

struct Bench {
    dir: tempfile::TempDir,
    forge: FakeForge,
}

#[derive(Clone, Copy)]
enum Kind {
    Github,
    Gitlab,
    Gitea,
    Git,
    /// Plain git over http: the fake forge's Git smart HTTP (protocol v2 `ls-refs`).
    GitHttp,
}

impl Bench {
    fn new() -> Bench {
        let mut dir = tempfile::Builder::new().prefix("sentry-bench-").tempdir().expect("tempdir");
        if std::env::var_os("SENTRY_BENCH_KEEP").is_some() {
            // For looking at a scenario by hand afterwards (config, state, the fake forge's tree).
            dir.disable_cleanup(true);
            eprintln!("keeping {}", dir.path().display());
        }
        let forge = FakeForge::start(&dir.path().join("srv"));
        Bench { dir, forge }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("srv")
    }

    /// Creates `n` repositories of `kind` with `branches` each and returns their config entries.
    fn repos(&self, kind: Kind, n: usize, branches: usize, offset: usize) -> String {
        let names: Vec<String> =
            std::iter::once("main".to_string()).chain((1..branches).map(|j| format!("feature/b{j:04}"))).collect();
        let mut yaml = String::new();
        for i in offset..offset + n {
            let (rel, url, repo_type) = match kind {
                Kind::Github => (format!("gh/r{i}.git"), self.forge.repo_url(&format!("gh/r{i}")), "github"),
                Kind::Gitlab => (format!("gl/sub/r{i}.git"), self.forge.repo_url(&format!("gl/sub/r{i}")), "gitlab"),
                Kind::Gitea => (format!("gt/r{i}.git"), self.forge.repo_url(&format!("gt/r{i}")), "gitea"),
                Kind::Git => {
                    let rel = format!("git/r{i}.git");
                    let url = format!("file://{}", self.root().join(&rel).display());
                    (rel, url, "git")
                }
                Kind::GitHttp => {
                    let rel = format!("git/r{i}.git");
                    let url = self.forge.repo_url(&rel);
                    (rel, url, "git")
                }
            };
            bare(&self.root(), &rel, &names, i);
            yaml.push_str(&format!(
                "  - name: r{i}\n    monitor:\n      repo_url: {url}\n      branches: [main]\n      repo_type: {repo_type}\n    deploy:\n      qa_repo_url: file:///nonexistent/qa.git\n      commands: [\"true\"]\n"
            ));
        }
        yaml
    }

    fn write_config(&self, global: &str, groups: &str, repos: &str) -> PathBuf {
        let path = self.dir.path().join("sentry.yaml");
        let text = format!(
            "global:\n  tmp_dir: {}\n  state: {}\n{global}\n{groups}repositories:\n{repos}",
            self.dir.path().join("tmp").display(),
            self.dir.path().join("state.json").display()
        );
        std::fs::write(&path, text).expect("config");
        path
    }

    fn sentry(&self, args: &[&str]) -> (Duration, i32) {
        let level = std::env::var("SENTRY_BENCH_LOG").unwrap_or_else(|_| "warn".into());
        let (t, code, stderr) = self.sentry_logged(args, &level);
        if std::env::var_os("SENTRY_BENCH_LOG").is_some() {
            eprint!("{stderr}");
        }
        (t, code)
    }

    /// Runs `sentry ARGS` at log `level`; returns its wall time, exit code and stderr.
    fn sentry_logged(&self, args: &[&str], level: &str) -> (Duration, i32, String) {
        let started = Instant::now();
        // SENTRY_BENCH_WRAP="strace -f -o /tmp/trace" runs sentry under another program.
        let wrap = std::env::var("SENTRY_BENCH_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace();
        let mut cmd = match words.next() {
            Some(w) => {
                let mut c = Command::new(w);
                c.args(words).arg(SENTRY);
                c
            }
            None => Command::new(SENTRY),
        };
        let out = cmd
            .args(["-c"])
            .arg(self.dir.path().join("sentry.yaml"))
            .args(["--log-level", level])
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("SENTRY_STATE")
            .output()
            .expect("run sentry");
        (started.elapsed(), out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Median wall time of `runs` runs of `sentry ARGS`.
    fn median(&self, runs: usize, args: &[&str]) -> Duration {
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let (t, code) = self.sentry(args);
                assert!(code == 0 || code == 3, "sentry {args:?} exited {code}");
                t
            })
            .collect();
        times.sort();
        times[runs / 2]
    }

    /// Median wall time and median CPU time (user + system, of sentry and anything it ran) of
    /// `runs` runs of `sentry ARGS`.
    fn median_with_cpu(&self, runs: usize, args: &[&str]) -> (Duration, Duration) {
        let (mut walls, mut cpus): (Vec<Duration>, Vec<Duration>) = (0..runs)
            .map(|_| {
                let before = children_cpu();
                let (t, code) = self.sentry(args);
                assert!(code == 0 || code == 3, "sentry {args:?} exited {code}");
                (t, children_cpu().saturating_sub(before))
            })
            .unzip();
        walls.sort();
        cpus.sort();
        (walls[runs / 2], cpus[runs / 2])
    }

    /// With `SENTRY_BENCH_HOLD=SECONDS`, keeps the fake forge up that long so the scenario's
    /// directory (printed) can be run by hand: profilers, `/usr/bin/time`, other settings.
    fn hold(&self) {
        if let Some(secs) = std::env::var("SENTRY_BENCH_HOLD").ok().and_then(|s| s.parse().ok()) {
            eprintln!("holding {secs} s: cd {} && {SENTRY} -c sentry.yaml poll --once", self.dir.path().display());
            std::thread::sleep(Duration::from_secs(secs));
        }
    }

    /// Median wall time of `runs` first passes (`poll --once` with no state: every listing a 200).
    /// Leaves the state of the last one in place.
    fn median_first(&self, runs: usize) -> Duration {
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let _ = std::fs::remove_file(self.dir.path().join("state.json"));
                self.forge.clear_log();
                let (t, code) = self.sentry(&["poll", "--once"]);
                if std::env::var_os("SENTRY_BENCH_LOG").is_some() {
                    eprintln!("first pass {t:?}: forge answered {} requests", self.forge.requests().len());
                }
                assert!(code == 0 || code == 3, "first pass exited {code}");
                t
            })
            .collect();
        times.sort();
        if std::env::var_os("SENTRY_BENCH_LOG").is_some() {
            eprintln!("first passes: {times:?}");
        }
        times[runs / 2]
    }

    /// Peak resident set size (KiB) of one `sentry ARGS`, via /usr/bin/time.
    fn peak_rss_kib(&self, args: &[&str]) -> Option<u64> {
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M", SENTRY, "-c"])
            .arg(self.dir.path().join("sentry.yaml"))
            .args(["--log-level", "warn"])
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stderr).lines().last()?.trim().parse().ok()
    }
}

/// User + system CPU time of every child process waited for so far (getrusage
/// `RUSAGE_CHILDREN`): the difference around one run is that run's, its own children included.
/// The fake forge runs on this process's threads, so none of its time is counted.
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage the call may fill.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn row(id: &str, what: &str, measured: &str, target: &str) {
    println!("| {id} | {what} | {measured} | {target} |");
}

fn p1_p2_p3(runs: usize) {
    let b = Bench::new();
    let repos = b.repos(Kind::Github, 1000, 1, 0);
    b.write_config("  concurrency: 32", "", &repos);
    b.forge.set_latency(Duration::from_millis(20));
    let first = b.median_first(runs);
    b.hold();
    b.forge.clear_log();
    let unchanged = b.median(runs, &["poll", "--once"]);
    let floor = Duration::from_millis(1000_u64.div_ceil(32) * 20);
    let start = b.median(runs, &["--version"]);
    row(
        "P1",
        "1000 GitHub repos, 20 ms latency, concurrency 32: first pass, no state (every listing a 200; median)",
        &ms(first),
        "",
    );
    row(
        "P1",
        "same, unchanged pass (median)",
        &format!(
            "{} = {:.2} x floor {} (+ start {})",
            ms(unchanged),
            unchanged.as_secs_f64() / floor.as_secs_f64(),
            ms(floor),
            ms(start)
        ),
        "<= 1.2 x floor + start",
    );
    let log = b.forge.requests();
    let per_pass = log.len() / runs;
    let not_modified = log.iter().filter(|r| r.status == 304).count();
    row(
        "P2",
        "requests per unchanged pass (1000 repos, 1 branch)",
        &format!("{per_pass} ({not_modified} of {} answered 304)", log.len()),
        "1 per repo, all 304",
    );
    let rss = b.peak_rss_kib(&["poll", "--once"]).map_or("n/a".into(), |k| format!("{:.1} MB", k as f64 / 1024.0));
    row("P3", "peak RSS of the P1 unchanged pass", &rss, "<= 30 MB");
    let state = std::fs::metadata(b.dir.path().join("state.json")).map(|m| m.len()).unwrap_or(0);
    row(
        "P3",
        "state file size at 1000 repositories",
        &format!("{:.0} KiB", state as f64 / 1024.0),
        "fits a 1 MiB ConfigMap",
    );
    let validate = b.median(runs * 2, &["validate"]);
    row("P3", "`sentry validate`, 1000-repository config (median)", &ms(validate), "<= 50 ms");

    b.write_config("  concurrency: 1", "", &repos);
    let (sequential, _) = b.sentry(&["poll", "--once"]);
    row(
        "P1",
        "same unchanged pass with concurrency 1 (the seed's sequential pattern)",
        &format!("{} ({:.1}x slower)", ms(sequential), sequential.as_secs_f64() / unchanged.as_secs_f64()),
        "ratio",
    );
}

/// A real QA repository to clone (file://, so the clone is local and cheap); its URL.
fn qa_repo(b: &Bench) -> String {
    let qa = b.root().join("qa.git");
    let ok = |c: &mut Command| assert!(c.status().expect("git").success());
    ok(Command::new("git").args(["init", "-q", "--bare", "-b", "main"]).arg(&qa));
    let work = b.dir.path().join("qa-work");
    ok(Command::new("git").args(["clone", "-q"]).arg(&qa).arg(&work));
    std::fs::write(work.join("README"), "qa\n").expect("write");
    ok(Command::new("git").current_dir(&work).args(["add", "."]));
    ok(Command::new("git").current_dir(&work).args([
        "-c",
        "user.name=b",
        "-c",
        "user.email=b@b",
        "commit",
        "-qm",
        "qa",
    ]));
    ok(Command::new("git").current_dir(&work).args(["push", "-q", "origin", "HEAD:main"]));
    format!("file://{}", qa.display())
}

fn p4(runs: usize) {
    let b = Bench::new();
    let qa_url = qa_repo(&b);

    let make = |cmd: &str, n: usize| {
        let repos = b
            .repos(Kind::Github, n, 1, 0)
            .replace("file:///nonexistent/qa.git", &qa_url)
            .replace("      commands: [\"true\"]\n", &format!("      commands: [\"{cmd}\"]\n    group: g\n"));
        b.write_config(
            "  on_first_seen: deploy",
            "groups:\n  g:\n    execution_strategy: parallel\n    max_parallel: 5\n",
            &repos,
        );
    };
    let (mut walls, mut checks, mut clones) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let _ = std::fs::remove_file(b.dir.path().join("state.json"));
        make("sleep 0.5", 20);
        let (wall, code, log) = b.sentry_logged(&["poll", "--once"], "info");
        assert_eq!(code, 0, "P4 run failed: {log}");
        walls.push(wall);
        // sentry logs each clone's duration: "deploy repository cloned ... duration_ms=N".
        let ms: Vec<u64> = log
            .lines()
            .filter(|l| l.contains("deploy repository cloned"))
            .filter_map(|l| l.rsplit("duration_ms=").next()?.trim().parse().ok())
            .collect();
        assert_eq!(ms.len(), 20, "20 clones logged");
        clones.push(Duration::from_millis(ms.iter().sum::<u64>() / 20));
        // The same 20 repositories again, unchanged: the check alone.
        checks.push(b.sentry(&["poll", "--once"]).0);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (wall, check, clone) = (median(&mut walls), median(&mut checks), median(&mut clones));
    // Each of the 5 slots runs 4 jobs one after another: 4 x (clone + 0.5 s) after the check.
    let net = wall.saturating_sub(check).saturating_sub(clone * 4);
    row(
        "P4",
        "parallel group, 20 jobs of `sleep 0.5`, max_parallel 5: wall (check + clones + commands)",
        &ms(wall),
        "",
    );
    row(
        "P4",
        "mean clone per job, 5 at a time (file://, as sentry logs it)",
        &format!("{} (check alone {})", ms(clone), ms(check)),
        "reported",
    );
    row(
        "P4",
        "same group, check and the 4 rounds of clones excluded (wall - check - 4 x clone)",
        &format!(
            "{} = {:.2} x 2.0 s; per job beyond clone and command {:.0} ms",
            ms(net),
            net.as_secs_f64() / 2.0,
            (net.as_secs_f64() - 2.0) * 1000.0 / 4.0
        ),
        "<= 1.1 x 2.0 s",
    );
    make("sleep 0.5", 20);
    b.hold();
}

/// sentry's own CPU time and peak RSS, from the debug line every run ends with.
fn own_usage(log: &str) -> (Duration, u64) {
    let line = log.lines().rev().find(|l| l.contains("resources used by sentry itself")).expect("usage line");
    let field = |k: &str| -> u64 {
        line.split(k).nth(1).and_then(|r| r.split_whitespace().next()).and_then(|v| v.parse().ok()).expect("field")
    };
    (Duration::from_millis(field("cpu_ms=")), field("max_rss_kib="))
}

/// Issue 21: a parallel group of 50 jobs (`true`, a local QA clone each) among 50 and among
/// 3,000 configured repositories. sentry's own CPU per job (children excluded: clone and
/// commands are git's and sh's) is the job pass's own CPU minus an unchanged pass's, over 50;
/// peak RSS is sentry's own (`getrusage`), of the job pass and of the unchanged pass.
fn p5(runs: usize) {
    const JOBS: usize = 50;
    let mut results = Vec::new();
    for n in [JOBS, 3_000] {
        let b = Bench::new();
        let qa_url = qa_repo(&b);
        let group = b
            .repos(Kind::Github, JOBS, 1, 0)
            .replace("file:///nonexistent/qa.git", &qa_url)
            .replace("      commands: [\"true\"]\n", "      commands: [\"true\"]\n    group: g\n");
        let rest = b.repos(Kind::Github, n - JOBS, 1, JOBS);
        b.write_config(
            "  concurrency: 32",
            "groups:\n  g:\n    execution_strategy: parallel\n    max_parallel: 10\n",
            &format!("{group}{rest}"),
        );
        let (_, code, log) = b.sentry_logged(&["poll", "--once"], "info");
        assert_eq!(code, 0, "baseline pass failed: {log}");
        let (mut per_job, mut rss, mut idle_rss) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            let (_, code, log) = b.sentry_logged(&["poll", "--once"], "debug");
            assert_eq!(code, 0, "unchanged pass failed");
            let (idle, idle_peak) = own_usage(&log);
            // Every group member's head moves: 50 jobs.
            let names = ["main".to_string()];
            for i in 0..JOBS {
                bare(&b.root(), &format!("gh/r{i}.git"), &names, 1_000 + run * JOBS + i);
            }
            let (_, code, log) = b.sentry_logged(&["poll", "--once"], "debug");
            let problems: Vec<&str> = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
            assert_eq!(code, 0, "job pass failed: {problems:?}");
            assert_eq!(log.matches("deploy repository cloned").count(), JOBS, "{JOBS} jobs ran");
            let (busy, peak) = own_usage(&log);
            per_job.push(busy.saturating_sub(idle) / JOBS as u32);
            rss.push(peak);
            idle_rss.push(idle_peak);
        }
        per_job.sort();
        rss.sort();
        idle_rss.sort();
        let (job, peak, idle_peak) = (per_job[runs / 2], rss[runs / 2], idle_rss[runs / 2]);
        row(
            "P5",
            &format!(
                "parallel group of {JOBS} jobs (`true`, max_parallel 10) among {n} configured: sentry's own CPU per job; peak RSS of the job pass (of an unchanged pass) (median of {runs})"
            ),
            &format!(
                "{:.1} ms; {:.1} MB ({:.1} MB)",
                job.as_secs_f64() * 1000.0,
                peak as f64 / 1024.0,
                idle_peak as f64 / 1024.0
            ),
            "<= 5 ms per job",
        );
        results.push((peak, idle_peak));
        b.hold();
    }
    let ((small, small_idle), (large, large_idle)) = (results[0], results[1]);
    row(
        "P5",
        "peak RSS of the job pass, 3,000 configured / 50 configured; what the jobs add at 3,000 / at 50",
        &format!(
            "{:.2} x; +{:.1} MB / +{:.1} MB",
            large as f64 / small as f64,
            large.saturating_sub(large_idle) as f64 / 1024.0,
            small.saturating_sub(small_idle) as f64 / 1024.0
        ),
        "<= 1.2 x",
    );
    row(
        "P5",
        "peak RSS of the job pass / of an unchanged pass with the same config, 3,000 configured / 50 configured",
        &format!("{:.2} x / {:.2} x", large as f64 / large_idle as f64, small as f64 / small_idle as f64),
        "what jobs add does not grow with the config",
    );
}

fn mixed(runs: usize) {
    let b = Bench::new();
    let mut repos = String::new();
    for (k, kind) in [Kind::Github, Kind::Gitlab, Kind::Gitea, Kind::Git].into_iter().enumerate() {
        repos.push_str(&b.repos(kind, 250, 1, k * 250));
    }
    b.write_config("  concurrency: 32", "", &repos);
    b.forge.set_latency(Duration::from_millis(20));
    b.sentry(&["poll", "--once"]);
    b.forge.clear_log();
    let t = b.median(runs, &["poll", "--once"]);
    let per_pass = b.forge.requests().len() / runs;
    row(
        "mixed",
        "250 each of GitHub/GitLab/Gitea (20 ms) and git (ls-remote, file://), unchanged pass",
        &format!("{} ({per_pass} API requests per pass)", ms(t)),
        "reported",
    );
}

fn pagination(runs: usize) {
    let b = Bench::new();
    let repos = b.repos(Kind::Github, 100, 300, 0);
    b.write_config("  concurrency: 32", "", &repos);
    b.forge.set_latency(Duration::from_millis(20));
    let (first, _) = b.sentry(&["poll", "--once"]);
    b.forge.clear_log();
    let t = b.median(runs, &["poll", "--once"]);
    let log = b.forge.requests();
    row(
        "pages",
        "100 GitHub repos x 300 branches (3 pages each), 20 ms: first / unchanged pass",
        &format!(
            "{} / {} ({} requests per pass, {} 304)",
            ms(first),
            ms(t),
            log.len() / runs,
            log.iter().filter(|r| r.status == 304).count() / runs
        ),
        "reported",
    );
}

/// Issue 21: 10 GitHub repositories x 5,000 branches (50 full pages of 100, then the empty page
/// after a full last one: 51 requests each), 20 ms latency, concurrency 32, unchanged pass. The
/// floor is every page of every repository asked `concurrency` at a time:
/// ceil(requests / 32) x 20 ms, plus the process start (`--version`).
fn many_pages(runs: usize) {
    const REPOS: usize = 10;
    const BRANCHES: usize = 5_000;
    const CONCURRENCY: u64 = 32;
    const LATENCY: Duration = Duration::from_millis(20);
    let b = Bench::new();
    let names: Vec<String> =
        std::iter::once("main".to_string()).chain((1..BRANCHES).map(|j| format!("feature/b{j:04}"))).collect();
    let mut repos = String::new();
    for i in 0..REPOS {
        bare_packed(&b.root(), &format!("gh/p{i}.git"), &names, i);
        repos.push_str(&format!(
            "  - name: p{i}\n    monitor:\n      repo_url: {}\n      branches: [main]\n      repo_type: github\n    deploy:\n      qa_repo_url: file:///nonexistent/qa.git\n      commands: [\"true\"]\n",
            b.forge.repo_url(&format!("gh/p{i}"))
        ));
    }
    b.write_config(&format!("  concurrency: {CONCURRENCY}"), "", &repos);
    b.forge.set_latency(LATENCY);
    let first = b.median_first(1);
    b.forge.clear_log();
    let t = b.median(runs, &["poll", "--once"]);
    let log = b.forge.requests();
    let per_pass = (log.len() / runs) as u64;
    let not_modified = log.iter().filter(|r| r.status == 304).count() as u64 / runs as u64;
    let start = b.median(runs, &["--version"]);
    let floor = LATENCY * u32::try_from(per_pass.div_ceil(CONCURRENCY)).expect("rounds") + start;
    row(
        "pages",
        &format!(
            "{REPOS} GitHub repos x {BRANCHES} branches, 20 ms, concurrency {CONCURRENCY}: first / unchanged pass (median of {runs})"
        ),
        &format!(
            "{} / {} = {:.2} x floor {} ({per_pass} requests per pass, {not_modified} answered 304)",
            ms(first),
            ms(t),
            t.as_secs_f64() / floor.as_secs_f64(),
            ms(floor),
        ),
        "<= 1.2 x floor",
    );
    b.hold();
}

/// Issue 21: 10,000 GitHub repositories with a token, 1 branch each, 20 ms latency,
/// concurrency 32: GraphQL (100 repositories per request) against REST (one conditional request
/// per repository), requests and wall time of an unchanged pass, peak RSS, and `validate`.
fn scale(runs: usize) {
    const TOKEN: &str = "bench-token-0123456789";
    const N: usize = 10_000;
    let b = Bench::new();
    b.forge.require_token(TOKEN);
    let made = Instant::now();
    let repos = b.repos(Kind::Github, N, 1, 0).replace(
        "      repo_type: github\n",
        &format!("      repo_type: github\n      auth:\n        token: {TOKEN}\n"),
    );
    eprintln!("S1: {N} repositories made in {}", ms(made.elapsed()));
    b.forge.set_latency(Duration::from_millis(20));
    let mut unchanged = Vec::new();
    for (api, label) in [("graphql", "GraphQL"), ("rest", "REST")] {
        b.write_config(&format!("  concurrency: 32\n  github_api: {api}"), "", &repos);
        let first = b.median_first(1);
        let first_requests = b.forge.requests().len();
        b.forge.clear_log();
        let t = b.median(runs, &["poll", "--once"]);
        let log = b.forge.requests();
        let per_pass = log.len() / runs;
        let not_modified = log.iter().filter(|r| r.status == 304).count() / runs;
        row(
            "S1",
            &format!(
                "{N} GitHub repos, 1 branch, token, 20 ms, concurrency 32, {label}: first / unchanged pass (median of {runs})"
            ),
            &format!(
                "{} / {} ({first_requests} / {per_pass} requests per pass, {not_modified} answered 304)",
                ms(first),
                ms(t)
            ),
            "reported",
        );
        let rss = b.peak_rss_kib(&["poll", "--once"]).map_or("n/a".into(), |k| format!("{:.1} MB", k as f64 / 1024.0));
        row("S1", &format!("peak RSS of the {label} unchanged pass at {N}"), &rss, "reported");
        unchanged.push(t);
    }
    row(
        "S1",
        "unchanged pass, REST / GraphQL (same run)",
        &format!("{:.1} x", unchanged[1].as_secs_f64() / unchanged[0].as_secs_f64()),
        "reported",
    );
    let state = std::fs::metadata(b.dir.path().join("state.json")).map(|m| m.len()).unwrap_or(0);
    row(
        "S1",
        &format!("state file at {N} (REST, with ETags)"),
        &format!("{:.0} KiB", state as f64 / 1024.0),
        "reported",
    );
    let validate = b.median(runs * 2, &["validate"]);
    row("S1", &format!("`sentry validate`, {N}-repository config (median)"), &ms(validate), "reported");
    let rss = b.peak_rss_kib(&["validate"]).map_or("n/a".into(), |k| format!("{:.1} MB", k as f64 / 1024.0));
    row("S1", &format!("peak RSS of `validate` at {N}"), &rss, "reported");
    b.hold();
}

/// Issue 21: plain Git over http against the real `git http-backend` (a CGI process per
/// request, so the server, not sentry, is the bottleneck): sentry's in-process `ls-refs`
/// against the `git ls-remote` it used before, one process per repository run by this bench at
/// the same concurrency (32) on the same server.
fn git_http(runs: usize) {
    const N: usize = 200;
    let b = Bench::new();
    let root = b.root().join("plain");
    let names = vec!["main".to_string()];
    for i in 0..N {
        bare(&root, &format!("r{i}.git"), &names, i);
    }
    let server = git_server::GitServer::start(&root, None);
    let urls: Vec<String> = (0..N).map(|i| server.url(&format!("r{i}.git"))).collect();
    let mut yaml = String::new();
    for (i, url) in urls.iter().enumerate() {
        yaml.push_str(&format!(
            "  - name: r{i}\n    monitor:\n      repo_url: {url}\n      branches: [main]\n      repo_type: git\n    deploy:\n      qa_repo_url: file:///nonexistent/qa.git\n      commands: [\"true\"]\n"
        ));
    }
    b.write_config("  concurrency: 32", "", &yaml);
    let (_, code) = b.sentry(&["poll", "--once"]);
    assert_eq!(code, 0, "first pass of plain git over http");
    let before = server.requests().len();
    let t = b.median(runs, &["poll", "--once"]);
    let per_pass = (server.requests().len() - before) / runs;
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let next = std::sync::atomic::AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..32 {
                    s.spawn(|| {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let Some(url) = urls.get(i) else { break };
                            let out = Command::new("git").args(["ls-remote", "--heads", url]).output().expect("git");
                            assert!(out.status.success(), "git ls-remote {url}");
                        }
                    });
                }
            });
            started.elapsed()
        })
        .collect();
    times.sort();
    let ls_remote = times[runs / 2];
    row(
        "G1",
        &format!(
            "{N} plain-git repos over http (git http-backend), concurrency 32: unchanged pass, ls-refs in process"
        ),
        &format!("{} ({per_pass} HTTP requests per pass)", ms(t)),
        "reported",
    );
    row(
        "G1",
        &format!("same {N} with `git ls-remote --heads`, one process per repository, 32 at a time"),
        &format!("{} ({:.2} x ls-refs)", ms(ls_remote), ls_remote.as_secs_f64() / t.as_secs_f64()),
        "reported",
    );
}

/// Issue 21's target for plain Git over http at 1,000 repositories: the fake forge's Git smart
/// HTTP (held byte for byte to `git http-backend` by `forge::lsrefs` in the tests), 20 ms per
/// request, `concurrency: 32`, against the 1,000-repository GitHub REST pass (one conditional
/// request per repository, answered 304) on the same forge in the same run; and sentry's CPU
/// per repository.
fn git_http_1000(runs: usize) {
    const N: usize = 1000;
    let b = Bench::new();
    let git = b.repos(Kind::GitHttp, N, 1, 0);
    let rest = b.repos(Kind::Github, N, 1, 0);
    b.forge.set_latency(Duration::from_millis(20));
    let mut results = Vec::new();
    for (label, repos, global) in [
        ("plain git (ls-refs)", &git, "  concurrency: 32"),
        ("GitHub REST", &rest, "  concurrency: 32\n  github_api: rest"),
    ] {
        b.write_config(global, "", repos);
        let _ = std::fs::remove_file(b.dir.path().join("state.json"));
        let (_, code) = b.sentry(&["poll", "--once"]);
        assert_eq!(code, 0, "G2 first pass, {label}");
        b.forge.clear_log();
        let (wall, cpu) = b.median_with_cpu(runs, &["poll", "--once"]);
        let log = b.forge.requests();
        let per_pass = log.len() / runs;
        let bad = log.iter().filter(|r| !matches!(r.status, 200 | 304)).count();
        assert_eq!(bad, 0, "G2 {label}: {bad} requests neither 200 nor 304");
        row(
            "G2",
            &format!("{N} repos, 1 branch, 20 ms, concurrency 32, {label}: unchanged pass (median of {runs})"),
            &format!(
                "{} ({per_pass} requests per pass); sentry CPU {} = {:.2} ms per repository",
                ms(wall),
                ms(cpu),
                cpu.as_secs_f64() * 1000.0 / N as f64
            ),
            if label.starts_with("plain") { "CPU <= 1 ms per repository" } else { "reported" },
        );
        results.push(wall);
    }
    row(
        "G2",
        "unchanged pass, plain git / GitHub REST (same run; network floor 2 x: two round trips against one)",
        &format!("{:.2} x", results[0].as_secs_f64() / results[1].as_secs_f64()),
        "<= 2 x",
    );
    b.write_config("  concurrency: 32", "", &git);
    b.hold();
}

fn binary() {
    let size = std::fs::metadata(SENTRY).map(|m| m.len()).unwrap_or(0);
    row("bin", "release binary size", &format!("{:.1} MB", size as f64 / 1_048_576.0), "reported");
    let mut times: Vec<Duration> = (0..21)
        .map(|_| {
            let started = Instant::now();
            let _ = Command::new(SENTRY).arg("--version").output();
            started.elapsed()
        })
        .collect();
    times.sort();
    row(
        "bin",
        "cold start: `sentry --version` (median of 21)",
        &format!("{:.1} ms", times[10].as_secs_f64() * 1000.0),
        "reported",
    );
}

/// Issue 15: the release binary against servers whose wait headers are near 2^64 (a debug
/// build would panic on an unchecked overflow; the release build must agree): exit 3, no panic.
fn hostile() {
    let max = u64::MAX.to_string();
    let cases: Vec<(&str, u16, (&str, String))> = vec![
        ("retry-after", 503, ("Retry-After", max.clone())),
        ("ratelimit-reset", 429, ("x-ratelimit-reset", max.clone())),
        ("draft-ratelimit-reset", 429, ("RateLimit-Reset", max)),
        ("retry-after-9999", 503, ("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT".into())),
    ];
    for (name, status, (k, v)) in cases {
        let (k, v) = (k.to_string(), v.clone());
        let server = http1::Server::start(move |_req: http1::Request| {
            http1::Response::new(status, "{}").header(&k, v.clone()).header("x-ratelimit-remaining", "0")
        });
        let dir = tempfile::tempdir().expect("dir");
        let port = server.port();
        let yaml = format!(
            "repositories:\n  - name: app\n    monitor:\n      repo_url: http://127.0.0.1:{port}/acme/app\n      \
             branches: [main]\n      repo_type: github\n      api_url: http://127.0.0.1:{port}/api/v3\n    deploy:\n      \
             qa_repo_url: http://127.0.0.1:{port}/qa.git\n      commands: [\"true\"]\n"
        );
        std::fs::write(dir.path().join("sentry.yaml"), yaml).expect("config");
        let out = Command::new(SENTRY).current_dir(dir.path()).args(["poll", "--once"]).output().expect("run");
        let code = out.status.code().unwrap_or(-1);
        let verdict = if code == 3 { "exit 3" } else { "WRONG" };
        row(
            "hostile",
            &format!("{name}: {status} with a wait near 2^64 (release build)"),
            &format!("{verdict} (exit {code})"),
            "exit 3, never 101",
        );
    }
}

fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wants = |id: &str| filters.is_empty() || filters.iter().any(|f| id.eq_ignore_ascii_case(f));
    let runs = 5;
    println!("| id | scenario | measured | target |");
    println!("|---|---|---|---|");
    if wants("bin") {
        binary();
    }
    if wants("P1") || wants("P2") || wants("P3") {
        p1_p2_p3(runs);
    }
    if wants("P4") {
        p4(3);
    }
    if wants("P5") {
        p5(3);
    }
    if wants("mixed") {
        mixed(3);
    }
    if wants("pages") {
        pagination(3);
        many_pages(5);
    }
    if wants("hostile") {
        hostile();
    }
    if wants("S1") {
        scale(3);
    }
    if wants("G1") {
        git_http(3);
    }
    if wants("G2") {
        git_http_1000(runs);
    }
}

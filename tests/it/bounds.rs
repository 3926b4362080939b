//! Never a crash, never a stall (SPEC §4, issue 15): values from the config, the OS and the
//! command line that used to panic or hang a run. Each test names the item it guards
//! (RELIABILITY.md lists them).

use crate::support::Sandbox;
use crate::support::config::{Conf, Repo};
use crate::support::world::{World, line};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Item 2: values validate used to accept and poll then added to a clock.
#[test]
fn absurd_durations_and_counts_are_refused_by_validate() {
    let sb = Sandbox::new();
    for (key, value, says) in [
        ("http_timeout", "10000000000000000000", "at most 3600"),
        ("timeout", "18446744073709551615", "at most 604800"),
        ("notify_timeout", "604801", "at most 604800"),
        ("concurrency", "100000", "at most 256"),
        ("max_attempts", "4294967296", "at most 1000"),
    ] {
        let yaml = Conf::new()
            .repo(Repo::new("app"))
            .yaml()
            .replace("repositories:", &format!("global:\n  {key}: {value}\nrepositories:"));
        sb.write("sentry.yaml", &yaml);
        let r = sb.run(&["validate"]);
        assert_eq!(r.code, 2, "{key}: {}", r.all());
        assert!(r.stderr.contains(&format!("global.{key}")) && r.stderr.contains(says), "{key}: {}", r.stderr);
    }
    let yaml = format!("polling_interval: 18446744073709551615\n{}", Conf::new().repo(Repo::new("app")).yaml());
    sb.write("sentry.yaml", &yaml);
    let r = sb.run(&["validate"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("polling_interval"), "{}", r.stderr);
}

/// Item 2: the largest values validate accepts run without a panic.
#[test]
fn the_largest_accepted_values_run() {
    let sb = Sandbox::new();
    // Nothing listens on port 1 of loopback: the check fails fast, the run must not panic.
    Conf::new()
        .global("timeout", 604_800)
        .global("http_timeout", 3600)
        .global("notify_timeout", 604_800)
        .global("concurrency", 256)
        .global("max_attempts", 1000)
        .repo(Repo::new("app").monitor_url("http://127.0.0.1:1/app.git").kind("git"))
        .write(&sb);
    assert_eq!(sb.run(&["validate"]).code, 0);
    let r = sb.run(&["poll", "--once"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
}

/// Item 10: the size cap is applied to what is read, not to what metadata says.
#[test]
fn an_endless_config_file_is_refused_without_reading_it_all() {
    let sb = Sandbox::new();
    let started = Instant::now();
    let r = sb.run(&["--config", "/dev/zero", "validate"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("larger than"), "{}", r.stderr);
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}

/// Item 10: a NUL in a deploy.env value would fail every deployment; validate says so.
#[test]
fn a_nul_in_a_deploy_env_value_is_a_validation_error() {
    let sb = Sandbox::new();
    Conf::new().repo(Repo::new("app").env("WHERE", "a\u{0}b")).write(&sb);
    let r = sb.run(&["validate"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("repositories[0].deploy.env.WHERE") && r.stderr.contains("NUL"), "{}", r.stderr);
}

/// Item 13: the parser's default budget refused any config over ~6,700 repositories.
#[test]
fn a_config_of_fifty_thousand_repositories_validates() {
    let sb = Sandbox::new();
    let mut yaml = String::from("repositories:\n");
    for i in 0..50_000 {
        yaml.push_str(&format!(
            "  - name: r{i}\n    monitor: {{repo_url: \"https://github.com/acme/r{i}\", branches: [main]}}\n    \
             deploy: {{qa_repo_url: \"https://gitlab.com/acme/qa\", commands: [\"true\"], project_name: p}}\n"
        ));
    }
    sb.write("sentry.yaml", &yaml);
    let r = sb.run(&["validate"]);
    assert_eq!(r.code, 0, "{}", &r.all()[..r.all().len().min(2000)]);
    assert!(r.stdout.contains("50000 repositories"), "{}", r.stdout);
}

/// Item 3: a closed stdout ends quietly; a failing one is a clear error, never a panic.
#[test]
fn a_closed_or_full_stdout_never_panics() {
    let (w, _app) = World::with_app();
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let out = w.sb.sentry().args(["status"]).env("E2E_TOKEN", "x").stdout(full).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot write to stdout") && !stderr.contains("panicked"), "{stderr}");

    // `| head -0`: the reader is gone before sentry writes.
    let mut child =
        w.sb.sentry()
            .args(["status"])
            .env("E2E_TOKEN", "x")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("ERROR"), "{stderr}");
}

/// Item 4: a panic inside one job is that job's failure; the others deploy, the state is saved,
/// and the exit code is one of SPEC §5's.
#[test]
fn a_panicking_job_costs_that_job_only() {
    let w = World::new();
    let (a, b) = (w.create("a"), w.create("b"));
    a.commit("main", &[("v", "1")], "a1");
    let b1 = b.commit("main", &[("v", "1")], "b1");
    w.conf().repo(w.repo("a")).repo(w.repo("b")).write(&w.sb);
    assert_eq!(w.poll().code, 0);
    let a2 = a.commit("main", &[("v", "2")], "a2");
    let b2 = b.commit("main", &[("v", "2")], "b2");
    let r = Command::new(env!("CARGO_BIN_EXE_sentry"))
        .current_dir(w.sb.path())
        .args(["poll", "--once", "--output", "json"])
        .env("E2E_TOKEN", crate::support::world::TOKEN)
        .env("SENTRY_TMP_DIR", w.sb.path().join("tmp"))
        .env("SENTRY_TEST_PANIC_IN_JOB", "a")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&r.stderr));
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON summary");
    let status = |repo: &str| {
        summary["deployments"]
            .as_array()
            .and_then(|d| d.iter().find(|x| x["repo"] == repo))
            .map(|x| x["status"].clone())
    };
    assert_eq!(status("a"), Some(serde_json::json!("failed")), "{summary}");
    assert_eq!(status("b"), Some(serde_json::json!("succeeded")), "{summary}");
    assert_eq!(w.deployed(), [line("b", "main", &b2, Some(&b1), None)]);
    assert_eq!(w.state()["repos"]["b"]["branches"]["main"]["deployed"], b2.as_str(), "b's outcome was saved");
    assert_ne!(w.state()["repos"]["a"]["branches"]["main"]["deployed"], a2.as_str());
}

/// Item 8: a deploy host that is down for three runs parks nothing; when it is back, the
/// commit deploys.
#[test]
fn a_transient_clone_failure_never_parks_a_good_commit() {
    let (w, app) = World::with_app();
    let good = w.sb.path().join("sentry.yaml");
    let text = std::fs::read_to_string(&good).expect("config");
    let qa = w.server.url("qa/deploy.git");
    let down = text.replace(&qa, "http://127.0.0.1:1/qa/deploy.git");
    let v2 = app.commit("main", &[("v", "2")], "v2");
    std::fs::write(&good, &down).expect("write");
    for run in 1..=3 {
        let r = w.poll();
        assert_eq!(r.code, 1, "run {run}: {}", r.all());
        assert!(r.all().contains("clone failed"), "run {run}: {}", r.all());
    }
    std::fs::write(&good, &text).expect("write");
    let r = w.poll();
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(w.state()["repos"]["app"]["branches"]["main"]["deployed"], v2.as_str(), "{}", r.all());
}

/// Item 9: SIGTERM while `deploy` waits for the lock ends it at once: exit 0, nothing deployed,
/// the state untouched.
#[test]
fn sigterm_while_deploy_waits_for_the_lock_touches_nothing() {
    let (w, app) = World::with_app();
    app.commit("main", &[("v", "2")], "v2");
    let state_path = w.sb.path().join("sentry-state.json");
    let before = std::fs::read(&state_path).expect("state");
    // Another run holds the lock.
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(w.sb.path().join("sentry-state.json.lock"))
        .expect("lock file");
    lock.try_lock().expect("take the lock");
    let child =
        w.sb.sentry()
            .args(["deploy", "--repo", "app"])
            .env("E2E_TOKEN", crate::support::world::TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
    std::thread::sleep(Duration::from_millis(800));
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let started = Instant::now();
    let out = child.wait_with_output().expect("wait");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stop requested while waiting for the lock"), "{stderr}");
    assert_eq!(std::fs::read(&state_path).expect("state"), before, "the state was not touched");
    assert_eq!(w.deployed().len(), 0, "nothing deployed");
}

/// A forge that answers every branch page slowly and always has a next one.
fn endless_forge(delay: Duration) -> crate::support::http1::Server {
    use crate::support::http1::{Request, Response, Server};
    Server::start_with(move |port| {
        move |req: Request| {
            std::thread::sleep(delay);
            let page: u64 = req.url.split("&page=").nth(1).and_then(|p| p.split('&').next()?.parse().ok()).unwrap_or(1);
            let body = format!(r#"[{{"name":"b{page}","commit":{{"sha":"{}"}}}}]"#, "a".repeat(40));
            let next = format!(
                "<http://127.0.0.1:{port}/api/v3/repos/acme/app/branches?per_page=100&page={}>; rel=\"next\"",
                page + 1
            );
            Response::new(200, body).header("Link", next)
        }
    })
}

/// Item 5: a listing that never ends costs its repository its budget, checked on every page.
#[test]
fn an_endless_slow_listing_ends_at_the_repository_budget() {
    let server = endless_forge(Duration::from_millis(100));
    let dir = tempfile::tempdir().expect("dir");
    let config = Conf::new()
        .repo(
            Repo::new("app")
                .monitor_url(format!("http://127.0.0.1:{}/acme/app", server.port()))
                .kind("github")
                .branches(["b.*"]),
        )
        .yaml()
        .replace(
            "repo_type: \"github\"",
            &format!("repo_type: \"github\"\n      api_url: \"http://127.0.0.1:{}/api/v3\"", server.port()),
        );
    let config = sentry::config::parse(&dir.path().join("sentry.yaml"), &config, &|_| None).expect("config");
    let checker = sentry::forge::Checker::new(&config.global).expect("checker").with_budget(Duration::from_secs(2));
    let started = Instant::now();
    let e = checker.check(&config.repositories[0], None).expect_err("bounded");
    assert!(e.message.contains("ran out of time") || e.message.contains("timed out"), "{}", e.message);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
}

/// Item 5: SIGTERM is heard between pages: the run ends soon, the repository is reported.
#[test]
fn sigterm_stops_an_endless_listing() {
    let server = endless_forge(Duration::from_millis(200));
    let sb = Sandbox::new();
    let yaml = Conf::new()
        .repo(Repo::new("app").monitor_url(format!("http://127.0.0.1:{}/acme/app", server.port())).kind("github"))
        .yaml()
        .replace(
            "repo_type: \"github\"",
            &format!("repo_type: \"github\"\n      api_url: \"http://127.0.0.1:{}/api/v3\"", server.port()),
        );
    sb.write("sentry.yaml", &yaml);
    let child =
        sb.sentry().args(["poll", "--once"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success());
    let started = Instant::now();
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}: {stderr}", started.elapsed());
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("stop requested"), "{stderr}");
    assert!(sb.path().join("sentry-state.json").exists(), "the state is saved after the checks");
}

/// Item 7: a webhook receiver that never answers holds neither the run nor its lock beyond
/// notify_timeout; the notification waits in the outbox, and after 5 runs it is dropped.
#[test]
fn a_silent_webhook_costs_at_most_notify_timeout_and_is_dropped_after_five_runs() {
    use crate::support::http1::{Request, Response, Server};
    let silent = Server::start(|_req: Request| {
        std::thread::sleep(Duration::from_secs(30));
        Response::new(200, "late")
    });
    let (w, app) = World::with_app();
    w.conf()
        .global("webhook_url", format!("http://127.0.0.1:{}/hook", silent.port()))
        .global("notify_timeout", 2)
        .repo(w.repo("app"))
        .write(&w.sb);
    app.commit("main", &[("v", "2")], "v2");
    let started = Instant::now();
    let r = w.poll();
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(started.elapsed() < Duration::from_secs(20), "the webhook held the run: {:?}", started.elapsed());
    assert_eq!(w.deployed().len(), 1, "deployed before any notification");
    assert_eq!(w.state()["outbox"][0]["runs"], 1, "{}", w.state());
    for run in 2..=5 {
        let r = w.sentry(&["poll", "--once", "--output", "json"]);
        assert_eq!(r.code, 0, "run {run}: {}", r.all());
        if run < 5 {
            assert_eq!(w.state()["outbox"][0]["runs"], run, "{}", w.state());
        } else {
            assert!(w.state().get("outbox").is_none(), "dropped after 5 runs: {}", w.state());
            assert!(r.json()["errors"].to_string().contains("dropped"), "{}", r.stdout);
        }
    }
}

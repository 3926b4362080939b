//! Issue 16: secrets stay with their origin, private files stay private. One test per item, each
//! on loopback only, against the real binary.

use crate::support::Run;
use crate::support::git_server::GitServer;
use crate::support::http1::{Response, Server};
use crate::support::webhook::Receiver;
use crate::support::world::{TOKEN, USER, World};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `sentry ARGS` in the world, with the token variable and `env` set.
fn run(w: &World, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = w.sb.sentry();
    cmd.args(args).env("E2E_TOKEN", TOKEN);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().expect("run sentry"))
}

/// Waits (bounded) until `path` exists.
fn wait_for(path: &Path, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn am_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

// Item 1 ------------------------------------------------------------------------------------

#[test]
fn git_redirects_never_carry_the_token_to_another_origin() {
    let w = World::new();
    let app = w.create("app");
    app.commit("main", &[("v", "1")], "v1");
    // The other origin serves the same repositories to anyone and records what it receives.
    let other = GitServer::start(&w.root, None);
    let other_port = other.port();
    let front_seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let seen = front_seen.clone();
    let front = Server::start(move |req| {
        seen.lock().expect("log").push(req.header("authorization").map(String::from));
        Response::new(302, "").header("Location", format!("http://127.0.0.1:{other_port}{}", req.url))
    });
    let front_url = |rel: &str| format!("http://127.0.0.1:{}/{rel}", front.port());

    // The listing (`repo_type: git`, git ls-remote) through the redirecting front.
    w.conf().repo(w.repo("app").monitor_url(front_url("apps/app.git"))).write(&w.sb);
    let r = run(&w, &["--log-level", "debug", "poll", "--once"], &[]);
    assert!(
        other.requests().iter().all(|q| !q.headers.contains_key("authorization")),
        "listing: the other origin received credentials"
    );
    assert_eq!(r.code, 3, "the listing fails: {}", r.all());
    assert!(r.all().contains(&front_url("apps/app.git")), "names the configured URL: {}", r.all());
    assert!(r.all().contains(&other.url("apps/app.git")), "names where it was sent: {}", r.all());

    // The deploy clone through the front (the listing comes straight from the real server).
    w.conf().repo(w.repo("app").qa(front_url("qa/deploy.git"))).write(&w.sb);
    assert_eq!(w.poll().code, 0, "baseline");
    app.commit("main", &[("v", "2")], "v2");
    let r = run(&w, &["poll", "--once", "--output", "json"], &[]);
    assert_ne!(r.code, 0, "{}", r.all());
    let error = r.json()["deployments"][0]["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains(&front_url("qa/deploy.git")) && error.contains(&other.url("qa/deploy.git")), "{error}");
    assert!(w.deployed().is_empty());

    let leaked: Vec<_> = other.requests().into_iter().filter(|q| q.headers.contains_key("authorization")).collect();
    assert!(leaked.is_empty(), "the other origin received credentials: {leaked:?}");
    let front_seen = front_seen.lock().expect("log").clone();
    assert!(front_seen.iter().any(|a| a.is_some()), "the configured origin still gets its credentials");
}

// Item 2 ------------------------------------------------------------------------------------

#[test]
fn deploy_commands_cannot_read_sentry_environ_or_memory() {
    let (w, app) = World::with_app();
    let probe = r#"for f in environ maps; do
  if cat "/proc/$PPID/$f" > "$CTRL/got-$f" 2>/dev/null; then echo yes > "$CTRL/ok-$f"; else echo no > "$CTRL/ok-$f"; fi
done
if sh -c 'exec 3< "$1"' sh "/proc/$PPID/mem" 2>/dev/null; then echo yes > "$CTRL/ok-mem"; else echo no > "$CTRL/ok-mem"; fi
if sh -c 'cat "/proc/$PPID/environ"' > /dev/null 2>&1; then echo yes > "$CTRL/ok-self"; else echo no > "$CTRL/ok-self"; fi"#;
    w.conf().repo(w.repo("app").commands([probe])).write(&w.sb);
    app.commit("main", &[("v", "2")], "v2");
    let mut cmd = w.sb.sentry();
    cmd.env("E2E_TOKEN", TOKEN);
    // As root, sentry and its commands would have CAP_SYS_PTRACE, which reads anything: run
    // without capabilities, as sentry runs in production (a user, the commands the same user).
    let wrapper: &[&str] = if am_root() { &["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"] } else { &[] };
    let r = if wrapper.is_empty() {
        Run::from(cmd.args(["poll", "--once"]).output().expect("run"))
    } else {
        run_via(&cmd, wrapper, &["poll", "--once"])
    };
    assert_eq!(r.code, 0, "{}", r.all());
    let read = |name: &str| std::fs::read_to_string(w.ctrl().join(name)).unwrap_or_default().trim().to_string();
    assert_eq!(read("ok-self"), "yes", "the probe works: a command reads its own shell's environment");
    for f in ["environ", "maps", "mem"] {
        assert_eq!(read(&format!("ok-{f}")), "no", "a deploy command opened /proc/<sentry>/{f}");
    }
    assert!(!read("got-environ").contains(TOKEN));
}

// Item 3 ------------------------------------------------------------------------------------

/// Runs one change through a deployment with `tmp_dir` at `tmp`; returns the run.
fn deploy_into(w: &World, app: &crate::support::repos::BareRepo, tmp: &Path, n: &str) -> Run {
    app.commit("main", &[("v", n)], n);
    run(w, &["poll", "--once", "--output", "json"], &[("SENTRY_TMP_DIR", tmp.to_str().expect("utf8"))])
}

#[test]
fn a_tmp_dir_others_could_change_is_refused() {
    let (w, app) = World::with_app();
    let shared = w.sb.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let r = deploy_into(&w, &app, &shared, "2");
    assert_ne!(r.code, 0, "{}", r.all());
    let error = r.json()["deployments"][0]["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("writable by other users") && error.contains(&shared.display().to_string()), "{error}");
    assert_eq!(std::fs::read_dir(&shared).expect("ls").count(), 0, "nothing was created in it");
    assert!(w.deployed().is_empty());

    if am_root() {
        // Owned by another user (as a squatter who created /tmp/sentry first).
        let squatted = w.sb.path().join("squatted");
        std::fs::create_dir(&squatted).expect("mkdir");
        std::os::unix::fs::chown(&squatted, Some(65534), Some(65534)).expect("chown");
        let r = deploy_into(&w, &app, &squatted, "3");
        let error = r.json()["deployments"][0]["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains("owned by uid 65534"), "{error}");
        assert_eq!(std::fs::read_dir(&squatted).expect("ls").count(), 0);
        // A link planted by another user in place of tmp_dir.
        let planted = w.sb.path().join("planted");
        std::os::unix::fs::symlink(w.sb.path().join("tmp"), &planted).expect("link");
        std::os::unix::fs::lchown(&planted, Some(65534), Some(65534)).expect("lchown");
        let r = deploy_into(&w, &app, &planted, "4");
        let error = r.json()["deployments"][0]["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains("symbolic link owned by uid 65534"), "{error}");
        assert!(w.deployed().is_empty());
    }

    // Sticky and writable by all, as /tmp: fine, and the job directory is private.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let recorder = r#"stat -c %a "$SENTRY_QA_DIR/.." > "$CTRL/job-mode"; stat -c %a "$TMPDIR" > "$CTRL/tmp-mode""#;
    w.conf().repo(w.repo("app").commands([recorder, "./deploy.sh"])).write(&w.sb);
    let r = deploy_into(&w, &app, &shared, "5");
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(std::fs::read_to_string(w.ctrl().join("job-mode")).expect("mode").trim(), "700");
    assert_eq!(std::fs::read_to_string(w.ctrl().join("tmp-mode")).expect("mode").trim(), "700");
    assert_eq!(w.deployed().len(), 1);
}

// Item 4 ------------------------------------------------------------------------------------

#[test]
fn a_symlinked_state_keeps_its_link_and_its_two_names_share_one_lock() {
    let (w, app) = World::with_app();
    let data = w.sb.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::os::unix::fs::symlink("data/state.json", w.sb.path().join("link.json")).expect("link");
    let by_link = ["--state", "link.json"];
    let r = run(&w, &["poll", "--once", by_link[0], by_link[1]], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    let link_meta = std::fs::symlink_metadata(w.sb.path().join("link.json")).expect("lstat");
    assert!(link_meta.file_type().is_symlink(), "the link stays");
    assert!(std::fs::read_to_string(data.join("state.json")).expect("target").contains("\"app\""));

    // A run through the link holds the lock while its job sleeps; a run through the target's
    // own name must find it held.
    std::fs::write(w.ctrl().join("sleep"), "3").expect("ctrl");
    app.commit("main", &[("v", "2")], "v2");
    let first =
        w.sb.sentry()
            .args(["poll", "--once", "--state", "link.json"])
            .env("E2E_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
    let mut first = Killer(first);
    assert!(wait_for(&data.join("state.json.lock"), Duration::from_secs(30)));
    // The job is running once its script says so.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !w.ctrl().join("running-app").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = run(&w, &["poll", "--once", "--state", data.join("state.json").to_str().expect("utf8")], &[]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert!(second.stderr.contains("another run"), "{}", second.stderr);
    assert!(first.0.wait().expect("wait").success());
    assert_eq!(w.deployed().len(), 1, "deployed once, by the first run only");
    assert!(!w.sb.path().join("link.json.lock").exists(), "one lock, on the resolved path");
}

/// Kills a child left running when a test fails.
struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// Item 5 ------------------------------------------------------------------------------------

/// Sends SIGKILL to process group `pgid` (the `kill` utility: no unsafe in tests).
fn kill_group(pgid: &str) {
    let _ = Command::new("kill").args(["-9", "--", &format!("-{pgid}")]).status();
}

/// True while process `pid` runs (a zombie, or no such process, is not running).
fn running(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // `pid (comm) S ...`: the state follows the last ')'.
    stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
}

#[test]
fn a_killed_sentry_keeps_the_lock_while_its_job_runs() {
    let (w, app) = World::with_app();
    // The first job sleeps (a long deployment); the one after it does not. The sleep is started
    // before the marker appears, so a kill right after the marker still leaves it running.
    // (The shell's pid is its child's parent.)
    let job = r#"sh -c 'echo $PPID' > "$CTRL/pgid"; [ -e "$CTRL/started" ] || { sleep 60 & touch "$CTRL/started"; wait; }; echo done >> "$CTRL/done""#;
    w.conf().repo(w.repo("app").commands([job])).write(&w.sb);
    app.commit("main", &[("v", "2")], "v2");
    let mut sentry =
        w.sb.sentry()
            .args(["poll", "--once"])
            .env("E2E_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
    let started = wait_for(&w.ctrl().join("started"), Duration::from_secs(30));
    let _ = sentry.kill(); // SIGKILL
    let _ = sentry.wait();
    assert!(started, "the job started");
    let pgid = std::fs::read_to_string(w.ctrl().join("pgid")).expect("pgid").trim().to_string();
    struct Orphans(String);
    impl Drop for Orphans {
        fn drop(&mut self) {
            kill_group(&self.0);
        }
    }
    let orphans = Orphans(pgid.clone());
    // The job's shell dies with sentry (PR_SET_PDEATHSIG); its `sleep` is left, an orphan.
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(&pgid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!running(&pgid), "the job's shell died with sentry");

    // The orphan still runs: the next run must not deploy beside it.
    let r = w.poll();
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("another run"), "the lock outlives the killed sentry: {}", r.stderr);
    assert!(r.stderr.contains("still runs"), "and says why: {}", r.stderr);
    assert!(!w.ctrl().join("done").exists());

    // Once the orphan is gone, the next run deploys.
    drop(orphans);
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        let r = w.poll();
        if !r.stderr.contains("another run") || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.stderr.contains("another run"), "the lock is free once the job's processes are gone");
    assert_eq!(std::fs::read_to_string(w.ctrl().join("done")).unwrap_or_default(), "done\n", "deployed once");
}

// Item 6 ------------------------------------------------------------------------------------

#[test]
fn webhook_paths_never_reach_the_logs_even_at_trace() {
    let rx = Receiver::start();
    rx.respond(&[500, 503]);
    let (w, app) = World::with_app();
    let secret_path = "/services/T0000/B0000/XSECRETKEY0123456789";
    w.conf().global("webhook_url", rx.url(secret_path)).repo(w.repo("app")).write(&w.sb);
    app.commit("main", &[("v", "2")], "v2");
    let r = run(&w, &["--log-level", "trace", "poll", "--once"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(rx.received().len(), 3, "delivered after two retries");
    assert!(r.stderr.contains("http retry"), "the retry lines were logged: {}", r.stderr);
    assert!(r.stderr.contains(&rx.url("")), "the origin is logged: {}", r.stderr);
    for part in ["XSECRETKEY0123456789", "/services/"] {
        assert!(!r.all().contains(part), "{part} in the output:\n{}", r.all());
    }
}

// Item 7 ------------------------------------------------------------------------------------

#[test]
fn a_token_in_a_url_is_refused_and_goes_nowhere() {
    let w = World::new();
    let app = w.create("app");
    app.commit("main", &[("v", "1")], "v1");
    let port = w.server.port();
    let conf = w.conf().repo(
        w.repo("app")
            .monitor_url(format!("http://${{E2E_TOKEN}}@127.0.0.1:{port}/apps/app.git"))
            .qa(format!("http://{USER}:${{E2E_TOKEN}}@127.0.0.1:{port}/qa/deploy.git")),
    );
    conf.write(&w.sb);
    let basic = sentry::secret::base64(format!("{USER}:{TOKEN}").as_bytes());
    for args in [
        &["--log-level", "trace", "validate", "--connectivity"][..],
        &["--log-level", "trace", "validate", "--connectivity", "--output", "json"],
        &["--log-level", "trace", "--log-format", "json", "poll", "--once", "--output", "json"],
    ] {
        let r = run(&w, args, &[]);
        assert_eq!(r.code, 2, "{args:?} refuses the configuration: {}", r.all());
        assert!(r.all().contains("credentials"), "{args:?} says why: {}", r.all());
        assert!(!r.all().contains(TOKEN) && !r.all().contains(&basic), "{args:?} printed the token: {}", r.all());
    }
    // Nothing was asked of any server, so no git argv, no job, no SENTRY_REPO_URL carried it.
    assert!(w.server.requests().is_empty(), "{:?}", w.server.requests());
    assert!(w.deployed().is_empty());
    assert!(!w.sb.path().join("sentry-state.json").exists());
}

// Item 8 ------------------------------------------------------------------------------------

#[test]
fn git_tracing_from_the_environment_cannot_leak_the_default_basic_form() {
    let w = World::new();
    // No user name configured: git sends the default one, `sentry` for plain git.
    let server = GitServer::start(&w.root, Some(("sentry", TOKEN)));
    let app = w.create("app");
    app.commit("main", &[("v", "1")], "v1");
    let repo = w
        .repo("app")
        .monitor_url(server.url("apps/app.git"))
        .monitor_auth(None, "${E2E_TOKEN}")
        .qa(server.url("qa/deploy.git"))
        .deploy_auth(None, "${E2E_TOKEN}");
    w.conf().repo(repo).write(&w.sb);
    assert_eq!(w.poll().code, 0);
    app.commit("main", &[("v", "2")], "v2");
    let tracing = [
        ("GIT_TRACE", "1"),
        ("GIT_TRACE_CURL", "1"),
        ("GIT_TRACE_REDACT", "0"),
        ("GIT_CURL_VERBOSE", "1"),
        ("GIT_TRACE_PACKET", "1"),
    ];
    let r = run(&w, &["--log-level", "trace", "poll", "--once", "--output", "json"], &tracing);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(w.deployed().len(), 1);
    let mut needles = vec![TOKEN.to_string()];
    for user in ["sentry", "x-access-token", "oauth2"] {
        needles.push(sentry::secret::base64(format!("{user}:{TOKEN}").as_bytes()));
    }
    for n in &needles {
        assert!(!r.all().contains(n.as_str()), "{n} in the output:\n{}", r.all());
    }
}

// Item 9 ------------------------------------------------------------------------------------

#[test]
fn names_cannot_ping_a_channel_or_drive_the_terminal() {
    let rx = Receiver::start();
    let (w, app) = World::with_app();
    w.conf()
        .repo(w.repo("app").branches(["main", "feat/.*"]).webhook(rx.url("/slack")).webhook_format("slack"))
        .write(&w.sb);
    let branch = "feat/x`<!channel>`";
    app.commit(branch, &[("v", "2")], "ping");
    let r = w.poll();
    assert_eq!(r.code, 0, "{}", r.all());
    let bodies: Vec<String> = rx.received().into_iter().map(|q| q.body).collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(!bodies[0].contains("<!channel>"), "{}", bodies[0]);
    assert!(bodies[0].contains("&lt;!channel&gt;"), "{}", bodies[0]);

    // A branch name with escape sequences, as a forge (or an edited state) may hold: the
    // human tables show it escaped.
    let path = w.sb.path().join("sentry-state.json");
    let mut state = w.state();
    let main = state["repos"]["app"]["branches"]["main"].clone();
    state["repos"]["app"]["branches"]["evil\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m"] = main;
    std::fs::write(&path, serde_json::to_string(&state).expect("json")).expect("write");
    let r = run(&w, &["status"], &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("evil\\x1b]0;owned\\x07\\x1b[2J\\x9b31m"), "{}", r.stdout);
    assert!(!r.stdout.chars().any(|c| c.is_control() && c != '\n'), "{:?}", r.stdout);
}

// Item 10 -----------------------------------------------------------------------------------

#[test]
fn the_metrics_file_follows_the_umask_and_the_state_stays_private() {
    let (w, app) = World::with_app();
    let metrics = w.sb.path().join("metrics.prom");
    w.conf().global("metrics_file", &metrics).repo(w.repo("app")).write(&w.sb);
    app.commit("main", &[("v", "2")], "v2");
    // Through sh, to run sentry under a known umask.
    let mut cmd = w.sb.sentry();
    cmd.env("E2E_TOKEN", TOKEN);
    let out = run_via(&cmd, &["sh", "-c", "umask 022 && exec \"$0\" \"$@\""], &["poll", "--once"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&metrics), 0o644, "node-exporter (another user) can read it");
    assert_eq!(mode(&w.sb.path().join("sentry-state.json")), 0o600, "the state stays private");
}

/// Runs the prepared `sentry` command `cmd` with `args` through `wrapper` (a command line that
/// ends by running the program after it), with `cmd`'s directory and environment.
fn run_via(cmd: &Command, wrapper: &[&str], args: &[&str]) -> Run {
    let program: PathBuf = cmd.get_program().into();
    let mut via = Command::new(wrapper[0]);
    via.args(&wrapper[1..]).arg(program).args(args);
    if let Some(dir) = cmd.get_current_dir() {
        via.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => via.env(k, v),
            None => via.env_remove(k),
        };
    }
    Run::from(via.output().expect("run sentry"))
}

// Proxies -----------------------------------------------------------------------------------

#[test]
fn a_proxy_gets_its_own_credentials_only_and_they_reach_no_log() {
    // (request target, Proxy-Authorization, Authorization) of each request the proxy got.
    type Seen = (String, Option<String>, Option<String>);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    // A forward proxy that records what it is asked and forwards nothing.
    let proxy = Server::start(move |req| {
        let auth = req.header("authorization").map(String::from);
        log.lock().expect("log").push((req.url.clone(), req.header("proxy-authorization").map(String::from), auth));
        Response::new(502, "no upstream")
    });
    let rx = Receiver::start();
    let (w, app) = World::with_app();
    // The webhook by name, so that it goes through the proxy; git and the listing by address,
    // which NO_PROXY exempts.
    let key = "XPROXYHOOKKEY-0123456789";
    let hook = rx.url(&format!("/services/T0/B0/{key}")).replace("127.0.0.1", "localhost");
    w.conf().global("webhook_url", hook).repo(w.repo("app")).write(&w.sb);
    app.commit("main", &[("v", "2")], "v2");
    let password = "PROXYPASS-0123456789";
    let proxy_url = format!("http://puser:{password}@127.0.0.1:{}", proxy.port());
    let env = [("HTTP_PROXY", proxy_url.as_str()), ("NO_PROXY", "127.0.0.1")];
    let r = run(&w, &["--log-level", "trace", "poll", "--once", "--output", "json"], &env);
    assert_eq!(w.deployed().len(), 1, "{}", r.all());
    let seen = seen.lock().expect("log").clone();
    assert!(!seen.is_empty(), "the webhook went through the proxy");
    let basic = sentry::secret::base64(format!("puser:{password}").as_bytes());
    for (url, proxy_auth, auth) in &seen {
        assert!(url.contains("localhost"), "only the webhook goes through the proxy: {url}");
        assert_eq!(
            proxy_auth.as_deref(),
            Some(format!("Basic {basic}").as_str()),
            "the proxy gets its own credentials"
        );
        assert_eq!(auth, &None, "and no other");
    }
    for needle in [password, basic.as_str(), key, TOKEN] {
        assert!(!r.all().contains(needle), "{needle} in the output:\n{}", r.all());
    }
}

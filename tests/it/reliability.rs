//! Reliability and secrets: crashes at random moments, overlapping runs, and a full audit of
//! everything observable for tokens. Every loop is bounded in count and time.

use crate::support::fake_kube::FakeKube;
use crate::support::world::{TOKEN, World};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A small deterministic generator: reproducible "random" kill moments without a crate.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn deployed_commits(w: &World) -> BTreeSet<String> {
    w.deployed().iter().filter_map(|l| l.split(' ').nth(2).map(String::from)).collect()
}

#[test]
fn sigkill_at_random_moments_never_corrupts_or_invents_state() {
    let w = World::new();
    let a = w.create("a");
    let b = w.create("b");
    let mut baseline = BTreeSet::new();
    baseline.insert(a.commit("main", &[("v", "0")], "a0"));
    baseline.insert(b.commit("main", &[("v", "0")], "b0"));
    w.conf().repo(w.repo("a")).repo(w.repo("b")).write(&w.sb);
    assert_eq!(w.poll().code, 0);
    // Deployments take a little while, so kills land before, during and after them.
    std::fs::write(w.ctrl().join("sleep"), "0.05").expect("ctrl");
    let mut rng = Lcg(0x5EED);
    let started = Instant::now();
    let iterations = 50;
    for i in 0..iterations {
        assert!(started.elapsed() < Duration::from_secs(240), "iteration {i}: out of time");
        let heads = [
            a.commit("main", &[("v", &i.to_string())], &format!("a{i}")),
            b.commit("main", &[("v", &i.to_string())], &format!("b{i}")),
        ];
        let mut child =
            w.sb.sentry()
                .args(["poll", "--once"])
                .env("E2E_TOKEN", TOKEN)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn");
        std::thread::sleep(Duration::from_millis(rng.below(250)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();

        // The state parses, and every commit it calls deployed really was deployed (or is a baseline).
        let state = w.state();
        let deployed = deployed_commits(&w);
        for name in ["a", "b"] {
            if let Some(sha) = state["repos"][name]["branches"]["main"]["deployed"].as_str() {
                assert!(
                    deployed.contains(sha) || baseline.contains(sha),
                    "iteration {i}: state shows {name} at {sha}, which was never deployed"
                );
            }
        }
        // The next run completes normally: no stale lock, and it catches up. Processes of the
        // killed run's jobs hold the lock until they are gone (SPEC §3): they die with sentry
        // (the shell) or within the 50 ms of their sleep, so wait for that, bounded.
        let lock = w.sb.path().join("sentry-state.json.lock");
        let freed = Instant::now() + Duration::from_secs(20);
        while std::fs::File::open(&lock).is_ok_and(|f| f.try_lock().is_err()) {
            assert!(Instant::now() < freed, "iteration {i}: the lock stayed held after the kill");
            std::thread::sleep(Duration::from_millis(20));
        }
        let r = w.poll();
        assert_eq!(r.code, 0, "iteration {i}: recovery run failed: {}", r.all());
        assert!(!r.stderr.contains("another run"), "iteration {i}: stale lock: {}", r.stderr);
        let state = w.state();
        for (name, head) in ["a", "b"].iter().zip(&heads) {
            assert_eq!(state["repos"][*name]["branches"]["main"]["deployed"], head.as_str(), "iteration {i}: {name}");
        }
    }
    // Every head was deployed at least once; a kill between a job's end and its save means at
    // most a repeat, never a loss.
    let deployed = deployed_commits(&w);
    assert!(w.deployed().len() >= 2 * iterations);
    assert!(deployed.len() >= 2 * iterations);
}

/// Starts two `poll --once` at the same instant and waits for both.
fn overlap(w: &World, extra_env: &[(&str, &str)], state_arg: &[&str]) -> (i32, i32) {
    let spawn = || {
        let mut cmd = w.sb.sentry();
        cmd.args(["poll", "--once"]).args(state_arg).env("E2E_TOKEN", TOKEN);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn")
    };
    let (c1, c2) = (spawn(), spawn());
    let (o1, o2) = (c1.wait_with_output().expect("wait"), c2.wait_with_output().expect("wait"));
    (o1.status.code().unwrap_or(-1), o2.status.code().unwrap_or(-1))
}

#[test]
fn overlapping_runs_deploy_each_change_once_with_file_state() {
    let w = World::new();
    let app = w.create("app");
    app.commit("main", &[("v", "0")], "v0");
    w.conf().repo(w.repo("app")).write(&w.sb);
    assert_eq!(w.poll().code, 0);
    std::fs::write(w.ctrl().join("sleep"), "0.2").expect("ctrl");
    for i in 1..=8 {
        app.commit("main", &[("v", &i.to_string())], "next");
        assert_eq!(overlap(&w, &[], &[]), (0, 0), "round {i}");
        assert_eq!(w.deployed().len(), i, "round {i}: each change deployed exactly once");
    }
}

#[test]
fn overlapping_runs_deploy_each_change_once_with_configmap_state() {
    let w = World::new();
    let kube = FakeKube::start();
    let app = w.create("app");
    app.commit("main", &[("v", "0")], "v0");
    w.conf().repo(w.repo("app")).write(&w.sb);
    let env = [("SENTRY_KUBE_API", kube.url.as_str())];
    let state = ["--state", "configmap:ops/sentry-state"];
    let first = crate::support::Run::from(
        w.sb.sentry().args(["poll", "--once"]).args(state).envs(env).env("E2E_TOKEN", TOKEN).output().expect("run"),
    );
    assert_eq!(first.code, 0, "{}", first.all());
    assert!(kube.state_json("ops", "sentry-state").is_some(), "state created in the ConfigMap");
    std::fs::write(w.ctrl().join("sleep"), "0.2").expect("ctrl");
    for i in 1..=6 {
        app.commit("main", &[("v", &i.to_string())], "next");
        assert_eq!(overlap(&w, &env, &state), (0, 0), "round {i}");
        assert_eq!(w.deployed().len(), i, "round {i}: each change deployed exactly once");
    }
    assert!(!w.sb.path().join("sentry-state.json").exists(), "no file state was written");
}

/// Every file under `dir`, recursively (symlinks not followed).
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            out.extend(files(&e.path()));
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn secrets_audit_finds_no_token_anywhere() {
    let rx = crate::support::webhook::Receiver::start();
    let w = World::new();
    let app = w.create("app");
    app.commit("main", &[("v", "1")], "v1");
    let metrics = w.sb.path().join("metrics.prom");
    // A webhook whose path is its key, as Slack's: the path is a secret too (issue 16).
    let hook_key = "XHOOKKEY-audit-0123456789";
    // The job also tries to read sentry's own environment (issue 16): whatever it gets is
    // written under the sandbox, which is scanned below.
    let peek = r#"cat "/proc/$PPID/environ" > "$CTRL/sentry-environ-seen-by-job" 2>&1; true"#;
    w.conf()
        .global("cleanup", false)
        .global("metrics_file", &metrics)
        .global("webhook_url", rx.url(&format!("/services/T0/B0/{hook_key}")))
        .global("log_level", "trace")
        .repo(w.repo("app").commands([peek, "./deploy.sh"]))
        .write(&w.sb);
    assert_eq!(w.poll().code, 0);
    // The job records its own environment and sleeps, so its processes can be inspected live.
    std::fs::write(w.ctrl().join("sleep"), "1").expect("ctrl");
    app.commit("main", &[("v", "2")], "v2");
    let user = crate::support::world::USER;
    // The token, and every Basic form git may send it in (configured and default user names).
    let mut needles = vec![TOKEN.to_string()];
    for u in [user, "x-access-token", "oauth2", "sentry"] {
        needles.push(sentry::secret::base64(format!("{u}:{TOKEN}").as_bytes()));
    }

    let mut cmd = w.sb.sentry();
    // As root, run without capabilities, as in production: CAP_SYS_PTRACE would let the job
    // read sentry's environment whatever sentry does.
    let root = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false);
    if root {
        let program = cmd.get_program().to_owned();
        let mut via = Command::new("setpriv");
        via.args(["--inh-caps=-all", "--bounding-set=-all", "--"]).arg(program);
        via.current_dir(w.sb.path());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => via.env(k, v),
                None => via.env_remove(k),
            };
        }
        cmd = via;
    }
    let child = cmd
        .args(["--log-level", "trace", "poll", "--once", "--output", "json"])
        .env("E2E_TOKEN", TOKEN)
        // Tracing asked for by the environment must not print what git sends.
        .env("GIT_TRACE_CURL", "1")
        .env("GIT_TRACE_REDACT", "0")
        .env("GIT_CURL_VERBOSE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let sentry_pid = child.id();
    // Scan every process's argv while the run goes on, and the environment of the deployment's
    // processes (descendants of sentry other than git, which must get the header through env).
    let mut argv_hits = Vec::new();
    let mut env_hits = Vec::new();
    let mut saw_job = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let mut alive = false;
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            if pid == sentry_pid {
                alive = true;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if needles.iter().any(|n| cmdline.contains(n.as_str())) {
                argv_hits.push(cmdline.clone());
            }
            let environ = String::from_utf8_lossy(&std::fs::read(entry.path().join("environ")).unwrap_or_default())
                .replace('\0', "\n");
            if environ.contains("SENTRY_RUN_ID=") && !cmdline.starts_with("git") {
                saw_job = true;
                if needles.iter().any(|n| environ.contains(n.as_str())) {
                    env_hits.push(cmdline);
                }
            }
        }
        if !alive {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(saw_job, "the deployment's processes were observed");
    assert!(argv_hits.is_empty(), "token in argv: {argv_hits:?}");
    assert!(env_hits.is_empty(), "token in a deployment process's environment: {env_hits:?}");

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TRACE") || stderr.contains("DEBUG"), "ran at a verbose level");
    let mut places: Vec<(String, String)> = vec![
        ("stdout".into(), String::from_utf8_lossy(&out.stdout).into_owned()),
        ("stderr".into(), stderr.into_owned()),
        ("metrics".into(), std::fs::read_to_string(&metrics).expect("metrics")),
    ];
    for f in files(w.sb.path()) {
        // The config holds ${E2E_TOKEN}, not the token; the bare repositories are test fixtures.
        if f.starts_with(w.sb.path().join("srv")) {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap_or_default()).into_owned();
        places.push((f.display().to_string(), text));
    }
    for r in rx.received() {
        places.push((format!("webhook {}", r.path), r.body));
    }
    assert!(places.iter().any(|(p, _)| p.contains("sentry-state.json")));
    assert!(places.iter().any(|(p, _)| p.contains("/tmp/")), "cleanup: false kept the job directory");
    assert!(places.iter().any(|(p, _)| p.starts_with("webhook")), "a notification was sent");
    assert!(places.iter().any(|(p, _)| p.ends_with("sentry-environ-seen-by-job")), "the job tried to read sentry");
    for (place, text) in &places {
        for n in &needles {
            assert!(!text.contains(n.as_str()), "token found in {place}");
        }
    }
    for (place, text) in places.iter().filter(|(p, _)| p == "stdout" || p == "stderr") {
        assert!(!text.contains(hook_key), "the webhook's key found in {place}");
    }
}

#[test]
fn tokens_in_deploy_env_are_explicit_only() {
    // The commands never see a token unless deploy.env passes it on purpose.
    let (w, app) = World::with_app();
    app.commit("main", &[("v", "2")], "v2");
    let out = Command::new(env!("CARGO_BIN_EXE_sentry"))
        .current_dir(w.sb.path())
        .args(["poll", "--once"])
        .env("E2E_TOKEN", TOKEN)
        .env("SOME_OTHER_VAR", format!("prefix-{TOKEN}-suffix"))
        .env("SENTRY_TMP_DIR", w.sb.path().join("tmp"))
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let env = std::fs::read_to_string(w.ctrl().join("fullenv-app")).expect("env");
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "the process environment is passed on:\n{env}");
    assert!(env.lines().any(|l| l == "CTRL=".to_string() + &w.ctrl().display().to_string()), "deploy.env is set");
    assert!(!env.contains("SOME_OTHER_VAR"), "a variable holding a token is removed:\n{env}");
    assert!(!env.contains("E2E_TOKEN"), "the variable the config read the token from is removed");
    assert!(!env.contains(TOKEN));
}

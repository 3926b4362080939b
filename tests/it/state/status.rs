//! `sentry status` through the real binary, on a state written by the store.

use super::{opts, sha};
use crate::support::Sandbox;
use crate::support::config::{Conf, Repo};
use crate::support::fake_kube::{self, FakeKube};
use sentry::state::file::FileStore;
use sentry::state::{Failure, LastRun, LockMode, RefState, RepoState, State, StateStore, to_json};

/// Two repositories, `one` and `two`, parked after three attempts.
fn config() -> Conf {
    let repo = |name: &str| Repo::new(name).qa_kind("gitlab").project(name);
    Conf::new().global("max_attempts", 3).repo(repo("one")).repo(repo("two"))
}

fn sandbox_with(config: Conf) -> Sandbox {
    let sb = Sandbox::new();
    config.write(&sb);
    sb
}

fn state() -> State {
    let mut repo = RepoState { last_checked: Some("2026-11-22T12:00:00Z".into()), ..Default::default() };
    repo.branches.insert(
        "main".into(),
        Box::new(RefState {
            seen: Some(sha('a')),
            deployed: Some(sha('a')),
            deployed_at: Some("2026-11-22T11:00:00Z".into()),
            failure: None,
            ..Default::default()
        }),
    );
    repo.branches.insert(
        "dev".into(),
        Box::new(RefState {
            seen: Some(sha('c')),
            deployed: Some(sha('b')),
            deployed_at: None,
            failure: Some(Failure { commit: sha('c'), attempts: 3, error: "command 2 failed".into(), at: "t".into() }),
            ..Default::default()
        }),
    );
    let mut s = State {
        last_run: Some(LastRun { run_id: "run-7".into(), at: "2026-11-22T12:00:01Z".into() }),
        ..Default::default()
    };
    s.repos.insert("one".into(), repo);
    s
}

/// Writes `state` at `path` through the real store, as a run would.
fn save(path: &std::path::Path, state: &State) {
    let mut store = FileStore::open(path, LockMode::Try, &opts("writer")).expect("opens");
    store.save(state).expect("saves");
}

#[test]
fn status_prints_a_table_of_a_saved_state() {
    let sb = sandbox_with(config());
    save(&sb.path().join("sentry-state.json"), &state());
    let r = sb.run(&["status"]);
    assert_eq!(r.code, 1, "a parked failure needs a human: {}", r.all());
    let out = &r.stdout;
    assert!(out.contains("./sentry-state.json (saved by run run-7 at 2026-11-22T12:00:01Z)"), "{out}");
    assert!(out.contains("aaaaaaaa  aaaaaaaa  2026-11-22T11:00:00Z"), "{out}");
    assert!(out.contains("PARKED after 3 attempts (cccccccc)"), "{out}");
    assert!(out.contains("one/dev: parked for cccccccc after 3 attempts, at t: command 2 failed"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("two ") && l.ends_with("no state yet")), "{out}");
    assert!(!out.contains(&"a".repeat(9)), "short SHAs in the table: {out}");
}

#[test]
fn status_json_has_every_repository_and_branch() {
    let sb = sandbox_with(config());
    save(&sb.path().join("sentry-state.json"), &state());
    let r = sb.run(&["--output", "json", "status"]);
    assert_eq!(r.code, 1, "a parked failure needs a human: {}", r.all());
    let j = r.json();
    let one = &j["repositories"]["one"];
    assert_eq!(one["last_checked"], "2026-11-22T12:00:00Z");
    assert_eq!(one["last_error"], serde_json::Value::Null);
    assert_eq!(one["branches"]["main"]["seen"], "a".repeat(40));
    assert_eq!(one["branches"]["main"]["deployed"], "a".repeat(40));
    assert_eq!(one["branches"]["main"]["failure"], serde_json::Value::Null);
    assert_eq!(one["branches"]["main"]["parked"], false);
    assert_eq!(one["branches"]["dev"]["parked"], true);
    assert_eq!(one["branches"]["dev"]["failure"]["attempts"], 3);
    assert_eq!(one["branches"]["dev"]["failure"]["max_attempts"], 3);
    assert_eq!(one["branches"]["dev"]["failure"]["error"], "command 2 failed");
    assert_eq!(j["repositories"]["two"]["in_state"], false);
    assert_eq!(j["repositories"]["two"]["branches"], serde_json::json!({}));
}

#[test]
fn status_finds_the_state_by_flag_env_and_config() {
    let sb = sandbox_with(config().global("state", "./from-config/s.json"));
    save(&sb.path().join("from-config/s.json"), &state());
    save(&sb.path().join("flag.json"), &State::default());
    let shows = |r: crate::support::Run, what: &str| {
        // Exit 1 for the state with a parked failure, 0 for the empty ones.
        let parked = what.contains("run-7");
        assert_eq!(r.code, i32::from(parked), "{}", r.all());
        assert!(r.stdout.contains(what), "{what}: {}", r.stdout);
    };
    shows(sb.run(&["status"]), "./from-config/s.json (saved by run run-7");
    shows(sb.run(&["status", "--state", "flag.json"]), "flag.json (never saved)");
    let r = sb.sentry().args(["status"]).env("SENTRY_STATE", "flag.json").output().expect("run");
    shows(r.into(), "flag.json (never saved)");
    // Nothing exists there: an empty state, and status creates nothing.
    shows(sb.run(&["status", "--state", "nowhere/s.json"]), "no state yet");
    assert!(!sb.path().join("nowhere").exists());
    assert_eq!(sb.run(&["status", "--state", "configmap:Not_Valid"]).code, 2);
}

#[test]
fn a_corrupt_state_file_exits_4_and_stays_byte_for_byte() {
    let sb = sandbox_with(config());
    let corrupt = b"{\"version\": 1, \"repos\": {\"one\": \x00 truncated";
    let path = sb.path().join("sentry-state.json");
    std::fs::write(&path, corrupt).expect("write");
    let r = sb.run(&["status"]);
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(r.stderr.contains("sentry-state.json") && r.stderr.contains("cannot be read"), "{}", r.stderr);
    assert_eq!(std::fs::read(&path).expect("read"), corrupt);
    let names: Vec<_> = std::fs::read_dir(sb.path()).expect("dir").flatten().map(|e| e.file_name()).collect();
    assert_eq!(names.len(), 2, "nothing else created: {names:?}");
    // A run that takes the lock does not overwrite it either.
    let mut store = FileStore::open(&path, LockMode::Try, &opts("run")).expect("opens");
    assert!(store.load().is_err());
    assert!(store.save(&State::default()).is_err());
    assert_eq!(std::fs::read(&path).expect("read"), corrupt);
}

#[test]
fn a_newer_state_version_exits_4_and_says_upgrade() {
    let sb = sandbox_with(config());
    let newer = "{\"version\": 3, \"repos\": {}, \"something_new\": true}\n";
    let path = sb.write("sentry-state.json", newer);
    let r = sb.run(&["--output", "json", "status"]);
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(r.stderr.contains("format version 3") && r.stderr.contains("upgrade"), "{}", r.stderr);
    // SPEC §5 (v2): a failure before any summary is one JSON object on stdout.
    let doc = r.json();
    assert_eq!(doc["exit_code"], 4, "{doc}");
    assert!(doc["error"].as_str().is_some_and(|e| e.contains("format version 3")), "{doc}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), newer);
}

#[test]
fn status_reads_a_configmap_through_kubectl_proxy() {
    let kube = FakeKube::start();
    kube.put("ops", "sentry-state", serde_json::json!({"data": {"state.json": to_json(&state())}}));
    let sb = sandbox_with(config());
    let r = sb
        .sentry()
        .args(["--output", "json", "status", "--state", "configmap:ops/sentry-state"])
        .env("SENTRY_KUBE_API", &kube.url)
        .output()
        .expect("run");
    let r = crate::support::Run::from(r);
    assert_eq!(r.code, 1, "a parked failure needs a human: {}", r.all());
    assert_eq!(r.json()["location"], "configmap:ops/sentry-state");
    assert_eq!(r.json()["repositories"]["one"]["branches"]["dev"]["parked"], true);
    assert!(kube.log().iter().all(|l| l.method == "GET"), "status only reads: {:?}", kube.calls());

    kube.put("ops", "sentry-state", serde_json::json!({"data": {"state.json": "{ broken"}}));
    let r = sb
        .sentry()
        .args(["status", "--state", "configmap:ops/sentry-state"])
        .env("SENTRY_KUBE_API", &kube.url)
        .output();
    let r = crate::support::Run::from(r.expect("run"));
    assert_eq!(r.code, 4, "{}", r.all());
    assert!(r.stderr.contains("configmap:ops/sentry-state"), "{}", r.stderr);
}

#[test]
fn status_in_a_pod_uses_the_service_account_over_tls() {
    let (ca_pem, server_config) = fake_kube::tls_for_localhost();
    let kube = FakeKube::start_tls("pod-token-321", server_config);
    kube.put("team-a", "sentry-state", serde_json::json!({"data": {"state.json": to_json(&state())}}));
    let sa = tempfile::tempdir().expect("tempdir");
    std::fs::write(sa.path().join("token"), "pod-token-321").expect("token");
    std::fs::write(sa.path().join("ca.crt"), ca_pem).expect("ca");
    std::fs::write(sa.path().join("namespace"), "team-a\n").expect("namespace");
    let sb = sandbox_with(config());
    let r = sb
        .sentry()
        .args(["--log-level", "trace", "status", "--state", "configmap:sentry-state"])
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", kube.port.to_string())
        .env(sentry::state::configmap::TEST_SA_DIR_ENV, sa.path())
        // The API server is reached directly, whatever the proxy settings say.
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("https_proxy", "http://127.0.0.1:9")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .expect("run");
    let r = crate::support::Run::from(r);
    assert_eq!(r.code, 1, "a parked failure needs a human: {}", r.all());
    assert!(r.stdout.contains("configmap:team-a/sentry-state (saved by run run-7"), "{}", r.stdout);
    // At trace level too, where ureq would hex-dump the request headers.
    assert!(!r.all().contains("pod-token-321"), "the token never shows: {}", r.all());
    assert!(!r.all().to_lowercase().contains("bearer"), "no Authorization header in any form: {}", r.all());
    assert!(kube.log().iter().all(|l| l.auth.as_deref() == Some("Bearer pod-token-321")));
}

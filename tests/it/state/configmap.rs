//! The ConfigMap store against the fake Kubernetes API: CAS, merge, lease, TLS in-cluster.

use super::{numbered_state, opts};
use crate::support::fake_kube::{self, FakeKube};
use sentry::error::Exit;
use sentry::secret::Secret;
use sentry::state::configmap::{ConfigMapStore, Endpoint, TEST_SA_DIR_ENV};
use sentry::state::{LockMode, State, StateError, StateStore, from_json, to_json};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const NS: &str = "ops";
const NAME: &str = "sentry-state";

/// An endpoint like `kubectl proxy`: no credentials.
fn proxy(kube: &FakeKube) -> Endpoint {
    Endpoint { base: kube.url.clone(), token: None, ca_pem: None, sa_dir: PathBuf::from("/nonexistent") }
}

fn open(kube: &FakeKube, mode: LockMode, run: &str) -> Result<ConfigMapStore, StateError> {
    ConfigMapStore::open_at(&proxy(kube), Some(NS), NAME, mode, &opts(run))
}

fn stored(kube: &FakeKube) -> State {
    from_json("fake", kube.state_json(NS, NAME).expect("state.json").as_bytes()).expect("stored state parses")
}

fn lease(holder: &str, expires: &str) -> serde_json::Value {
    json!(json!({"holder": holder, "expires": expires}).to_string())
}

#[test]
fn creates_the_configmap_when_missing_then_updates_it() {
    let kube = FakeKube::start();
    let mut store = open(&kube, LockMode::Try, "run-1").expect("opens");
    assert_eq!(kube.calls(), ["GET 404", "POST 201"], "created with the lease");
    assert_eq!(kube.lease(NS, NAME).expect("lease")["holder"], "run-1");
    assert_eq!(store.load().expect("loads"), State::default(), "no state.json yet");
    assert_eq!(store.location(), "configmap:ops/sentry-state");

    store.save(&numbered_state(1)).expect("saves");
    store.save(&numbered_state(2)).expect("saves again");
    assert_eq!(stored(&kube), numbered_state(2));
    // The same document as the file, compact (SPEC §3 v2: gzip under binaryData).
    let stored_text = kube.state_json(NS, NAME).expect("data");
    let pretty: serde_json::Value = serde_json::from_str(&to_json(&numbered_state(2))).expect("json");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stored_text).expect("json"), pretty);
    assert!(!stored_text.contains('\n'), "compact: {stored_text}");
    let puts: Vec<_> = kube.log().into_iter().filter(|l| l.method == "PUT").collect();
    assert_eq!(puts.len(), 2);
    for put in &puts {
        let body: serde_json::Value = serde_json::from_str(&put.body).expect("json");
        assert!(body.pointer("/metadata/resourceVersion").is_some(), "every PUT is a compare-and-swap");
    }
    drop(store);
    assert!(kube.lease(NS, NAME).is_none(), "lease released on drop");
    assert_eq!(stored(&kube), numbered_state(2), "release keeps the data");
}

#[test]
fn keeps_other_data_keys_and_annotations() {
    let kube = FakeKube::start();
    kube.put(
        NS,
        NAME,
        json!({"metadata": {"annotations": {"team": "ops"}, "labels": {"app": "sentry"}}, "data": {"notes": "hi"}}),
    );
    let mut store = open(&kube, LockMode::Try, "run-1").expect("opens");
    store.save(&numbered_state(3)).expect("saves");
    drop(store);
    let obj = kube.object(NS, NAME).expect("object");
    assert_eq!(obj["data"]["notes"], "hi");
    assert_eq!(obj["metadata"]["annotations"]["team"], "ops");
    assert_eq!(obj["metadata"]["labels"]["app"], "sentry");
}

#[test]
fn read_only_open_takes_no_lease_and_writes_nothing() {
    let kube = FakeKube::start();
    let mut store = open(&kube, LockMode::None, "status").expect("opens");
    assert_eq!(store.load().expect("missing is empty"), State::default());
    assert!(matches!(store.save(&numbered_state(1)), Err(StateError::ReadOnly { .. })));
    drop(store);
    assert!(kube.log().iter().all(|l| l.method == "GET"), "{:?}", kube.calls());
    assert!(kube.object(NS, NAME).is_none());
}

#[test]
fn a_conflict_is_re_read_and_merged_never_overwritten() {
    let kube = FakeKube::start();
    let mut store = open(&kube, LockMode::Try, "run-1").expect("opens");
    store.load().expect("loads");
    // Someone (kubectl edit, a run without the lease) writes behind our back.
    let mut theirs = numbered_state(0);
    theirs.repos.insert("theirs-only".into(), Default::default());
    theirs
        .repos
        .insert("both".into(), sentry::state::RepoState { last_error: Some("theirs".into()), ..Default::default() });
    kube.edit(NS, NAME, |obj| obj["data"] = json!({"state.json": to_json(&theirs)}));
    kube.clear_log();

    let mut ours = numbered_state(4);
    ours.repos
        .insert("both".into(), sentry::state::RepoState { last_error: Some("ours".into()), ..Default::default() });
    store.save(&ours).expect("saves after the conflict");
    assert_eq!(kube.calls(), ["PUT 409", "GET 200", "PUT 200"]);
    let saved = stored(&kube);
    assert!(saved.repos.contains_key("theirs-only"), "their repository is kept");
    assert_eq!(saved.repos["both"].last_error.as_deref(), Some("ours"), "ours wins where both have it");
    for name in ours.repos.keys() {
        assert_eq!(saved.repos[name], ours.repos[name]);
    }
    assert_eq!(kube.lease(NS, NAME).expect("lease")["holder"], "run-1", "the edit kept our lease");
}

#[test]
fn a_corrupt_or_newer_configmap_state_is_never_overwritten() {
    for data in ["{ not json", r#"{"version": 99, "repos": {}}"#] {
        let kube = FakeKube::start();
        kube.put(NS, NAME, json!({"data": {"state.json": data}}));
        let mut store = open(&kube, LockMode::Try, "run-1").expect("opens");
        let err = store.load().expect_err("unreadable");
        assert!(matches!(err, StateError::Corrupt { .. } | StateError::TooNew { .. }), "{err:?}");
        assert!(err.to_string().contains("configmap:ops/sentry-state"), "{err}");
        assert_eq!(sentry::error::Error::State(err).exit(), Exit::State);
        assert!(store.save(&numbered_state(1)).is_err());
        drop(store);
        assert_eq!(kube.state_json(NS, NAME).as_deref(), Some(data));
    }
}

/// `n` hex digits from a fixed xorshift sequence: about 4 bits of entropy per byte.
fn noise(n: usize) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x % 16) as u32, 16).unwrap_or('0')
        })
        .collect()
}

#[test]
fn a_state_over_one_mib_is_refused_before_sending() {
    let kube = FakeKube::start();
    let mut store = open(&kube, LockMode::Try, "run-1").expect("opens");
    let mut big = numbered_state(1);
    big.repos.insert(
        "huge".into(),
        // Compressed, so it must be text gzip cannot squeeze under 1 MiB: pseudo-random hex.
        sentry::state::RepoState { last_error: Some(noise(3 * 1024 * 1024)), ..Default::default() },
    );
    kube.clear_log();
    let err = store.save(&big).expect_err("too large");
    assert!(matches!(err, StateError::TooLarge { .. }), "{err:?}");
    assert!(kube.log().iter().all(|l| l.method != "PUT"), "nothing sent: {:?}", kube.calls());
}

#[test]
fn a_lease_held_by_another_run_is_busy() {
    let kube = FakeKube::start();
    // Within one term of ours (5 s timeout + 1 s slack): a valid lease.
    let until = sentry::time::rfc3339(std::time::SystemTime::now() + Duration::from_secs(5));
    kube.put(NS, NAME, json!({"metadata": {"annotations": {"sentry.dev/lease": lease("other-run", &until)}}}));
    let before = kube.object(NS, NAME);

    let err = open(&kube, LockMode::Try, "run-2").expect_err("busy");
    let StateError::Busy { holder, .. } = &err else { panic!("{err:?}") };
    assert!(holder.contains("other-run") && holder.contains(&until), "{holder}");

    let started = Instant::now();
    let err = open(&kube, LockMode::Wait(Duration::from_millis(1500)), "run-3").expect_err("still busy");
    assert!(matches!(err, StateError::Busy { .. }));
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(kube.object(NS, NAME), before, "the other run's lease is untouched");
    // Reading is always allowed.
    open(&kube, LockMode::None, "status").expect("opens").load().expect("loads");
}

#[test]
fn a_lease_further_ahead_than_one_term_is_taken_over() {
    // A skewed clock or a hand edit: obeyed, it would stop every run forever (issue 15 item 11).
    let kube = FakeKube::start();
    let until = sentry::time::rfc3339(std::time::SystemTime::now() + Duration::from_secs(86_400));
    kube.put(NS, NAME, json!({"metadata": {"annotations": {"sentry.dev/lease": lease("skewed-run", &until)}}}));
    let store = open(&kube, LockMode::Try, "run-now").expect("takes the bogus lease over");
    assert_eq!(kube.lease(NS, NAME).expect("lease")["holder"], "run-now");
    drop(store);
}

#[test]
fn wait_takes_the_lease_once_the_holder_releases_it() {
    let kube = FakeKube::start();
    let first = open(&kube, LockMode::Try, "first").expect("opens");
    assert!(matches!(open(&kube, LockMode::Try, "second"), Err(StateError::Busy { .. })));
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        drop(first);
    });
    let second = open(&kube, LockMode::Wait(Duration::from_secs(10)), "second").expect("gets the lease");
    releaser.join().expect("join");
    assert_eq!(kube.lease(NS, NAME).expect("lease")["holder"], "second");
    drop(second);
}

#[test]
fn an_expired_lease_is_taken_over() {
    let kube = FakeKube::start();
    kube.put(
        NS,
        NAME,
        json!({
            "metadata": {"annotations": {"sentry.dev/lease": lease("crashed-run", "2000-01-01T00:00:00Z")}},
            "data": {"state.json": to_json(&numbered_state(5))},
        }),
    );
    let mut store = open(&kube, LockMode::Try, "run-new").expect("takes over");
    assert_eq!(kube.lease(NS, NAME).expect("lease")["holder"], "run-new");
    assert_eq!(store.load().expect("loads"), numbered_state(5));
    // A lease nobody can read does not block either.
    drop(store);
    kube.edit(NS, NAME, |o| o["metadata"]["annotations"]["sentry.dev/lease"] = json!("garbage"));
    open(&kube, LockMode::Try, "run-3").expect("takes over an unreadable lease");
}

#[test]
fn a_lease_taken_over_mid_run_fails_the_next_save() {
    let kube = FakeKube::start();
    let mut store = open(&kube, LockMode::Try, "slow-run").expect("opens");
    let until = sentry::time::rfc3339(std::time::SystemTime::now() + Duration::from_secs(600));
    kube.edit(NS, NAME, |o| o["metadata"]["annotations"]["sentry.dev/lease"] = lease("usurper", &until));
    store.load().expect("loads");
    let err = store.save(&numbered_state(1)).expect_err("lost");
    assert!(matches!(err, StateError::LeaseLost { .. }), "{err:?}");
    assert_eq!(sentry::error::Error::State(err).exit(), Exit::State);
    drop(store);
    assert_eq!(kube.lease(NS, NAME).expect("lease")["holder"], "usurper", "not released: not ours");
    assert!(kube.state_json(NS, NAME).is_none(), "nothing written");
}

#[test]
fn a_long_run_keeps_its_lease_renewed() {
    let kube = FakeKube::start();
    let short = sentry::state::StoreOptions { lock_timeout: Duration::from_secs(2), ..opts("long-run") };
    // Term: 2 s + 1 s; renewed every second.
    let store = ConfigMapStore::open_at(&proxy(&kube), Some(NS), NAME, LockMode::Try, &short).expect("opens");
    let first = kube.lease(NS, NAME).expect("lease")["expires"].as_str().expect("expires").to_string();
    std::thread::sleep(Duration::from_millis(3500));
    let later = kube.lease(NS, NAME).expect("lease")["expires"].as_str().expect("expires").to_string();
    assert!(later > first, "renewed: {first} -> {later}");
    assert!(
        matches!(open(&kube, LockMode::Try, "other"), Err(StateError::Busy { .. })),
        "still held past the first term"
    );
    drop(store);
    open(&kube, LockMode::Try, "other").expect("released");
}

#[test]
fn a_wrong_token_is_a_clear_error_without_the_token() {
    let kube = FakeKube::with_token("right-token-123");
    let endpoint = Endpoint { token: Some(Secret::new("wrong-token-456")), ..proxy(&kube) };
    let err = ConfigMapStore::open_at(&endpoint, Some(NS), NAME, LockMode::Try, &opts("r")).expect_err("401");
    let text = err.to_string();
    assert!(text.contains("401") && text.contains("configmap:ops/sentry-state"), "{text}");
    assert!(!text.contains("wrong-token-456") && !text.contains("right-token-123"), "{text}");
    assert_eq!(sentry::error::Error::State(err).exit(), Exit::State);
}

#[test]
fn an_unreachable_api_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let endpoint =
        Endpoint { base: format!("http://127.0.0.1:{port}"), token: None, ca_pem: None, sa_dir: PathBuf::from("/x") };
    let started = Instant::now();
    let err = ConfigMapStore::open_at(&endpoint, Some(NS), NAME, LockMode::None, &opts("r"))
        .and_then(|mut s| s.load())
        .expect_err("unreachable");
    assert!(err.to_string().contains("cannot reach the Kubernetes API"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A service-account directory like the one a pod gets.
fn sa_dir(token: &str, ca_pem: &str, namespace: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), format!("{token}\n")).expect("token");
    std::fs::write(dir.path().join("ca.crt"), ca_pem).expect("ca");
    std::fs::write(dir.path().join("namespace"), namespace).expect("namespace");
    dir
}

fn in_cluster_env(kube: &FakeKube, sa: &std::path::Path) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("KUBERNETES_SERVICE_HOST".to_string(), "127.0.0.1".to_string()),
        ("KUBERNETES_SERVICE_PORT".to_string(), kube.port.to_string()),
        (TEST_SA_DIR_ENV.to_string(), sa.display().to_string()),
    ])
}

#[test]
fn in_cluster_over_tls_with_the_service_account() {
    let (ca_pem, server_config) = fake_kube::tls_for_localhost();
    let kube = FakeKube::start_tls("sa-token-789", server_config);
    let sa = sa_dir("sa-token-789", &ca_pem, "ops");
    let env = in_cluster_env(&kube, sa.path());
    let endpoint = Endpoint::from_env(&|k| env.get(k).cloned()).expect("in-cluster endpoint");
    assert_eq!(endpoint.base, kube.url);
    assert!(!format!("{endpoint:?}").contains("sa-token-789"), "Debug hides the token");

    // `configmap:NAME`: the namespace comes from the service account.
    let mut store = ConfigMapStore::open_at(&endpoint, None, NAME, LockMode::Try, &opts("pod-run")).expect("opens");
    assert_eq!(store.location(), "configmap:ops/sentry-state");
    store.load().expect("loads");
    store.save(&numbered_state(3)).expect("saves");
    drop(store);
    assert_eq!(stored(&kube), numbered_state(3));
    let log = kube.log();
    assert!(log.len() >= 4, "{:?}", kube.calls());
    assert!(log.iter().all(|l| l.auth.as_deref() == Some("Bearer sa-token-789")), "token on every request");
    assert!(log.iter().all(|l| l.path.starts_with("/api/v1/namespaces/ops/configmaps")));

    // A CA that did not sign the server's certificate is refused.
    let (other_ca, _) = fake_kube::tls_for_localhost();
    let bad = sa_dir("sa-token-789", &other_ca, "ops");
    let env = in_cluster_env(&kube, bad.path());
    let endpoint = Endpoint::from_env(&|k| env.get(k).cloned()).expect("endpoint");
    let err = ConfigMapStore::open_at(&endpoint, None, NAME, LockMode::Try, &opts("r")).expect_err("untrusted");
    assert!(err.to_string().contains("cannot reach the Kubernetes API"), "{err}");
    assert!(!err.to_string().contains("sa-token-789"));
}

#[test]
fn endpoint_from_env_explains_what_is_missing() {
    let none = |_: &str| None;
    let err = Endpoint::from_env(&none).expect_err("nowhere");
    assert!(err.contains("KUBERNETES_SERVICE_HOST") && err.contains("SENTRY_KUBE_API"), "{err}");

    let sa = tempfile::tempdir().expect("tempdir");
    let env = BTreeMap::from([
        ("KUBERNETES_SERVICE_HOST".to_string(), "10.0.0.1".to_string()),
        (TEST_SA_DIR_ENV.to_string(), sa.path().display().to_string()),
    ]);
    let err = Endpoint::from_env(&|k| env.get(k).cloned()).expect_err("no token");
    assert!(err.contains("token") && err.contains(&sa.path().display().to_string()), "{err}");

    let env = BTreeMap::from([("SENTRY_KUBE_API".to_string(), "http://127.0.0.1:8001/".to_string())]);
    let e = Endpoint::from_env(&|k| env.get(k).cloned()).expect("proxy");
    assert_eq!(e.base, "http://127.0.0.1:8001");
    assert!(e.token.is_none());

    // `configmap:NAME` outside a pod has no namespace to go by.
    let err = ConfigMapStore::open_at(&e, None, NAME, LockMode::None, &opts("r")).expect_err("no namespace");
    assert!(err.to_string().contains("configmap:NAMESPACE/sentry-state"), "{err}");
}

/// SPEC §3 v2: one ConfigMap holds at least 10,000 single-branch repositories with the default
/// history — each here with a deployment in its history, check times and a run id, as after a
/// first deploy (the compressed document must stay under 1 MiB).
#[test]
fn ten_thousand_repositories_fit_in_one_configmap() {
    use sentry::model::{JobStatus, Reason};
    use sentry::state::{HistoryEntry, RefState, RepoState};
    let kube = FakeKube::start();
    let mut store = open(&kube, LockMode::Try, "run-big").expect("opens");
    let mut state = State::default();
    let hex = |i: u64| format!("{:040x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) as u128 * 0x1_0000_0001);
    for i in 0..10_000u64 {
        let commit = sentry::model::Sha::parse(&hex(i)).expect("sha");
        let mut repo = RepoState { last_checked: Some("2026-11-22T12:00:00Z".into()), ..Default::default() };
        repo.branches.insert(
            "main".into(),
            Box::new(RefState {
                seen: Some(commit.clone()),
                deployed: Some(commit.clone()),
                deployed_at: Some("2026-11-22T12:00:03Z".into()),
                history: vec![HistoryEntry {
                    attempt: 1,
                    commit,
                    duration_ms: 1000 + i % 5000,
                    exit_code: None,
                    failed_command: None,
                    reason: Reason::Changed,
                    run_id: "6929c5f0-1f-1a2b3c4d".into(),
                    started_at: "2026-11-22T12:00:01Z".into(),
                    status: JobStatus::Succeeded,
                }],
                ..Default::default()
            }),
        );
        state.repos.insert(format!("service-{i:05}"), repo);
    }
    store.save(&state).expect("10,000 repositories fit");
    assert_eq!(stored(&kube).repos.len(), 10_000);
}

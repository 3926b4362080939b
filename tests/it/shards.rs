//! Shards (SPEC §1 v2, issue 24): `--shard I/N`, `auto/N`, `all/N`, `{shard}` in the state.

use crate::support::Sandbox;
use crate::support::config::{Conf, Group, Repo};
use crate::support::fake_kube::FakeKube;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// 40 repositories, a dozen of them in three groups; their forge is a closed loopback port, so a
/// pass checks (and fails to list) exactly the repositories of its shard, quickly.
fn world() -> Sandbox {
    let sb = Sandbox::new();
    let mut conf = Conf::new()
        .group("alpha", Group::parallel())
        .group("beta", Group::sequential())
        .group("gamma", Group::parallel());
    for i in 0..40 {
        let mut r =
            Repo::new(&format!("svc-{i:02}")).monitor_url(format!("http://127.0.0.1:1/svc-{i:02}.git")).kind("git");
        if i < 12 {
            r = r.group(["alpha", "beta", "gamma"][i % 3]);
        }
        conf = conf.repo(r);
    }
    conf.write(&sb);
    sb
}

/// The repositories one shard's pass checks.
fn checked(sb: &Sandbox, shard: &str) -> Vec<String> {
    let r = sb.run(&["--shard", shard, "--state", "s-{shard}.json", "--output", "json", "poll", "--dry-run"]);
    assert_eq!(r.code, 3, "{shard}: {}", r.all());
    r.json()["checked"]
        .as_array()
        .expect("checked")
        .iter()
        .filter_map(|c| c["repo"].as_str().map(String::from))
        .collect()
}

#[test]
fn shards_partition_the_repositories_and_keep_groups_whole() {
    let sb = world();
    let group_of = |name: &str| -> Option<&str> {
        let i: usize = name.trim_start_matches("svc-").parse().ok()?;
        (i < 12).then(|| ["alpha", "beta", "gamma"][i % 3])
    };
    for n in 1..=5u32 {
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        for i in 0..n {
            for repo in checked(&sb, &format!("{i}/{n}")) {
                assert!(seen.insert(repo.clone(), i).is_none(), "{repo} in two shards of {n}");
            }
        }
        assert_eq!(seen.len(), 40, "every repository in exactly one shard of {n}");
        for g in ["alpha", "beta", "gamma"] {
            let shards: std::collections::BTreeSet<u32> =
                seen.iter().filter(|(r, _)| group_of(r) == Some(g)).map(|(_, s)| *s).collect();
            assert_eq!(shards.len(), 1, "group {g} split over shards {shards:?} of {n}");
        }
        // validate --shard reports the same spread.
        let v =
            sb.run(&["--shard", &format!("0/{n}"), "--state", "s-{shard}.json", "--output", "json", "validate"]).json();
        let counts: Vec<u64> =
            v["shards"].as_array().expect("shards").iter().filter_map(|s| s["repositories"].as_u64()).collect();
        let expected: Vec<u64> = (0..n).map(|i| seen.values().filter(|s| **s == i).count() as u64).collect();
        assert_eq!(counts, expected, "{v}");
    }
}

#[test]
fn auto_reads_the_job_completion_index_and_says_when_it_is_missing() {
    let sb = world();
    let r = sb.run(&["--shard", "auto/3", "--state", "s-{shard}.json", "poll", "--dry-run"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("JOB_COMPLETION_INDEX"), "{}", r.stderr);
    let by_auto = crate::support::Run::from(
        sb.sentry()
            .args(["--shard", "auto/3", "--state", "s-{shard}.json", "--output", "json", "poll", "--dry-run"])
            .env("JOB_COMPLETION_INDEX", "2")
            .output()
            .expect("run"),
    );
    let auto: Vec<Value> =
        by_auto.json()["checked"].as_array().expect("checked").iter().map(|c| c["repo"].clone()).collect();
    let explicit: Vec<Value> = checked(&sb, "2/3").into_iter().map(Value::from).collect();
    assert_eq!(auto, explicit);
}

#[test]
fn a_sharded_run_needs_shard_in_its_state_location() {
    let sb = world();
    let r = sb.run(&["--shard", "0/2", "poll", "--once"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("{shard}"), "{}", r.stderr);
    assert!(!sb.path().join("sentry-state.json").exists(), "nothing written");
    // validate refuses the same combination (SPEC §2: what validate accepts, poll can run).
    let r = sb.run(&["--shard", "0/2", "--output", "json", "validate"]);
    assert_eq!(r.code, 2, "{}", r.all());
    let v = r.json();
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["errors"][0]["path"], "global.state", "{v}");
    assert!(v["errors"][0]["message"].as_str().unwrap_or_default().contains("{shard}"), "{v}");
    let r = sb.run(&["--shard", "0/2", "--state", "s-{shard}.json", "validate"]);
    assert_eq!(r.code, 0, "with {{shard}} it is valid: {}", r.all());
}

#[test]
fn shards_keep_their_own_configmaps_and_leases_and_status_reads_them_all() {
    let kube = FakeKube::start();
    let sb = world();
    let run = |shard: &str| {
        crate::support::Run::from(
            sb.sentry()
                .args(["--shard", shard, "--state", "configmap:ops/sentry-state-{shard}", "poll", "--once"])
                .env("SENTRY_KUBE_API", &kube.url)
                .output()
                .expect("run"),
        )
    };
    // Shard 0's lease is held by a run elsewhere: shard 0 skips, shard 1 goes on beside it.
    let until = sentry::time::rfc3339(std::time::SystemTime::now() + std::time::Duration::from_secs(60));
    let lease = json!({"holder": "other-pod", "expires": until}).to_string();
    kube.put("ops", "sentry-state-0", json!({"metadata": {"annotations": {"sentry.dev/lease": lease}}}));
    let r0 = run("0/2");
    assert_eq!(r0.code, 0, "{}", r0.all());
    assert!(r0.stderr.contains("another run"), "{}", r0.stderr);
    let r1 = run("1/2");
    assert_eq!(r1.code, 3, "shard 1 checked its repositories: {}", r1.all());
    assert!(kube.state_json("ops", "sentry-state-1").is_some(), "shard 1 has its own state");
    assert!(kube.state_json("ops", "sentry-state-0").is_none(), "shard 0 was left alone");
    // status --shard all/2 reads both (shard 0 has no state yet: an empty one).
    let status = crate::support::Run::from(
        sb.sentry()
            .args(["--shard", "all/2", "--state", "configmap:ops/sentry-state-{shard}", "--output", "json", "status"])
            .env("SENTRY_KUBE_API", &kube.url)
            .output()
            .expect("run"),
    );
    let doc = status.json();
    assert!(doc["location"].as_str().is_some_and(|l| l.contains("2 shards")), "{doc}");
    let shard1: Vec<String> = checked(&sb, "1/2");
    for repo in &shard1 {
        assert!(doc["repositories"][repo]["in_state"] == true, "{repo} in status: {doc}");
    }
}

/// Each shard writes its own metrics file when the path holds `{shard}`.
#[test]
fn each_shard_writes_its_own_metrics_file() {
    let sb = Sandbox::new();
    Conf::new()
        .global("metrics_file", "m-{shard}.prom")
        .repo(Repo::new("a").monitor_url("http://127.0.0.1:1/a.git").kind("git"))
        .repo(Repo::new("b").monitor_url("http://127.0.0.1:1/b.git").kind("git"))
        .write(&sb);
    for shard in ["0/2", "1/2"] {
        let r = sb.run(&["--shard", shard, "--state", "s-{shard}.json", "poll", "--once"]);
        assert!(r.code == 0 || r.code == 3, "{shard}: {}", r.all());
    }
    for i in 0..2 {
        let text = std::fs::read_to_string(sb.path().join(format!("m-{i}.prom"))).expect("metrics of each shard");
        assert!(text.contains("sentry_repositories_checked"), "{text}");
    }
}

//! State format 2 (SPEC §3 v2): a state written by sentry 1.x is read and upgraded by the next
//! save with nothing lost, in a file and in a ConfigMap; and the compact format fits 10,000
//! repositories in one ConfigMap.

use crate::support::Sandbox;
use crate::support::config::{Conf, Repo};
use crate::support::fake_kube::FakeKube;
use serde_json::{Value, json};

const V1: &str = include_str!("../fixtures/state-v1.json");

/// A config whose repositories cannot be reached (the run still saves the state after the
/// checks) and whose webhook is down (the outbox entry must survive, counted once).
fn unreachable_world(sb: &Sandbox) {
    Conf::new()
        .global("webhook_url", "http://127.0.0.1:1/hook")
        .global("notify_timeout", 2)
        .repo(Repo::new("api").monitor_url("http://127.0.0.1:1/api.git").kind("git"))
        .write(sb);
}

/// What must survive the upgrade, in the upgraded document `v2`.
fn assert_nothing_lost(v2: &Value) {
    let v1: Value = serde_json::from_str(V1).expect("fixture");
    assert_eq!(v2["version"], 2, "{v2}");
    // Counters carried over (this run adds its own failed git check on top).
    assert_eq!(v2["http"]["cache_hits"], v1["http"]["cache_hits"], "{v2}");
    for (key, n) in v1["http"]["requests"].as_object().expect("requests") {
        assert_eq!(&v2["http"]["requests"][key], n, "counter {key}: {v2}");
    }
    let (old, new) = (&v1["repos"]["api"], &v2["repos"]["api"]);
    assert_eq!(new["validators"]["etags"], old["validators"]["etags"], "ETags kept");
    assert_eq!(new["validators"]["fingerprint"], old["validators"]["fingerprint"]);
    assert!(new["validators"].get("heads").is_none(), "heads are no longer stored twice: {new}");
    assert_eq!(new["deployments"], old["deployments"]);
    assert_eq!(new["last_deployment_ms"], old["last_deployment_ms"]);
    let main = &new["branches"]["main"];
    // Times are stored as Unix seconds in format 2: 2026-11-28T09:14:02Z is 1795857242.
    let mut failure = old["branches"]["main"]["failure"].clone();
    failure["at"] = json!(1_795_857_242u64);
    assert_eq!(main["failure"], failure, "the pending failure");
    assert_eq!(main["deployed_at"], json!(1_795_795_364u64), "2026-11-27T16:02:44Z");
    assert_eq!(main["deployed"], old["branches"]["main"]["deployed"]);
    assert_eq!(main["seen"], old["branches"]["main"]["seen"], "seen differs from deployed: kept");
    let rel = &new["branches"]["release/1.x"];
    assert_eq!(rel["deployed"], old["branches"]["release/1.x"]["deployed"]);
    assert!(rel.get("seen").is_none(), "seen = deployed is stored once: {rel}");
    let mut web = v1["repos"]["web"].clone();
    web.as_object_mut().expect("object").remove("branches"); // empty maps are no longer written
    assert_eq!(v2["repos"]["web"], web, "not configured: untouched");
    let outbox = v2["outbox"].as_array().expect("outbox kept");
    assert_eq!(outbox.len(), 1, "{v2}");
    // The notification as it was (format 2 only adds `on_failure` and `tag`, null here).
    let mut payload = outbox[0]["payload"].clone();
    assert_eq!(payload.as_object_mut().and_then(|p| p.remove("on_failure")), Some(Value::Null));
    assert_eq!(payload.as_object_mut().and_then(|p| p.remove("tag")), Some(Value::Null));
    assert_eq!(payload, v1["outbox"][0]["payload"], "the notification, field for field");
    assert_eq!(outbox[0]["runs"], 1, "one run tried to deliver it");
}

#[test]
fn a_version_1_state_file_is_upgraded_with_nothing_lost() {
    let sb = Sandbox::new();
    unreachable_world(&sb);
    let path = sb.write("sentry-state.json", V1);
    let r = sb.run(&["poll", "--once"]);
    assert_eq!(r.code, 3, "api cannot be checked: {}", r.all());
    let v2: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("state")).expect("json");
    assert_nothing_lost(&v2);
    assert!(v2["repos"]["api"]["last_error"].is_string(), "this run's check error recorded");
}

#[test]
fn a_version_1_configmap_is_converted_to_gzip_with_nothing_lost() {
    let kube = FakeKube::start();
    kube.put("ops", "sentry-state", json!({"data": {"state.json": V1, "other": "kept"}}));
    let sb = Sandbox::new();
    unreachable_world(&sb);
    let r = crate::support::Run::from(
        sb.sentry()
            .args(["poll", "--once", "--state", "configmap:ops/sentry-state"])
            .env("SENTRY_KUBE_API", &kube.url)
            .output()
            .expect("run"),
    );
    assert_eq!(r.code, 3, "{}", r.all());
    let obj = kube.object("ops", "sentry-state").expect("object");
    assert!(obj["data"].get("state.json").is_none(), "the v1 copy is replaced: {obj}");
    assert_eq!(obj["data"]["other"], "kept");
    assert!(obj["binaryData"]["state.json.gz"].is_string(), "{obj}");
    let v2: Value = serde_json::from_str(&kube.state_json("ops", "sentry-state").expect("state")).expect("json");
    assert_nothing_lost(&v2);
}

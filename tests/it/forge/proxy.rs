//! A real forward proxy (Debian's tinyproxy, configured like its default: CONNECT to 443 and 563
//! only) in front of the API, git and webhook paths (issue 17 item 6): plain http goes in
//! absolute form (a CONNECT to another port is refused), git is told about the uppercase
//! `HTTP_PROXY` curl ignores, `NO_PROXY` CIDR blocks are honoured everywhere, https goes through
//! CONNECT, and an error through a proxy names it. Skipped (saying why) without tinyproxy,
//! unless `SENTRY_REQUIRE_REAL=1`.

use crate::support::Run;
use crate::support::config::Repo;
use crate::support::fake_forge::FakeForge;
use crate::support::real::Tinyproxy;
use crate::support::repos::BareRepo;
use crate::support::webhook::Receiver;
use crate::support::world::{TOKEN, World};

/// A world with a GitHub repository on the fake forge and a plain Git one on the git server,
/// both deployed from the git server, with a webhook: every path sentry talks HTTP on.
struct ProxyWorld {
    w: World,
    forge: FakeForge,
    hook: Receiver,
}

impl ProxyWorld {
    fn new() -> ProxyWorld {
        let w = World::new();
        w.create("plain").commit("main", &[("v", "1")], "v1");
        let api_root = w.sb.path().join("api");
        BareRepo::create(&api_root, "acme/app.git").commit("main", &[("v", "1")], "v1");
        let forge = FakeForge::start(&api_root);
        let hook = Receiver::start();
        w.conf()
            .global("on_first_seen", "deploy")
            .global("http_timeout", 5)
            .repo(w.repo("plain").webhook(hook.url("/hook")))
            .repo(
                Repo::new("app")
                    .kind("github")
                    .monitor_url(forge.repo_url("acme/app"))
                    .qa(w.server.url("qa/deploy.git"))
                    .deploy_auth(Some(crate::support::world::USER), "${E2E_TOKEN}")
                    .commands(["true"]),
            )
            .write(&w.sb);
        ProxyWorld { w, forge, hook }
    }

    /// `poll --once --output json` with `env` and no other proxy variable.
    fn poll(&self, env: &[(&str, String)]) -> Run {
        let mut cmd = self.w.sb.sentry();
        cmd.args(["poll", "--once", "--output", "json"]).env("E2E_TOKEN", TOKEN);
        for v in
            ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"]
        {
            cmd.env_remove(v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("run sentry"))
    }
}

#[test]
fn plain_http_goes_through_the_proxy_on_every_path_and_no_proxy_cidr_bypasses_it() {
    let Some(proxy) = Tinyproxy::start(&[]) else { return };
    let pw = ProxyWorld::new();
    // Uppercase HTTP_PROXY only: curl (so git) ignores it unless told.
    let r = pw.poll(&[("HTTP_PROXY", proxy.url())]);
    assert_eq!(r.code, 0, "{}\n{}", r.all(), proxy.log());
    let doc = r.json();
    assert_eq!(doc["deployments"].as_array().map(Vec::len), Some(2), "{doc}");
    let via = |h: Option<&String>| h.is_some_and(|v| v.contains("tinyproxy"));
    assert!(pw.forge.requests().iter().all(|q| via(q.headers.get("via"))), "API: {:?}", pw.forge.requests());
    let git = pw.w.server.requests();
    assert!(!git.is_empty() && git.iter().all(|q| via(q.headers.get("via"))), "git ls-remote and clone: {git:?}");
    let hooks = pw.hook.received();
    assert!(!hooks.is_empty() && hooks.iter().all(|h| via(h.via.as_ref())), "webhook: {hooks:?}");
    // tinyproxy logs each request line ("Request (file descriptor N): GET http://..."): no tunnel.
    assert!(!proxy.log().contains("): CONNECT "), "no tunnel for plain http: {}", proxy.log());
    assert!(proxy.log().contains("): GET http://127.0.0.1:"), "absolute form: {}", proxy.log());

    // A new commit, and NO_PROXY as a CIDR block: nothing goes through the proxy.
    pw.w.create("plain").commit("main", &[("v", "2")], "v2");
    let (api, git, hooks) = (pw.forge.requests().len(), pw.w.server.requests().len(), pw.hook.received().len());
    let r = pw.poll(&[("HTTP_PROXY", proxy.url()), ("NO_PROXY", "10.0.0.0/8,127.0.0.0/8".into())]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(pw.forge.requests()[api..].iter().all(|q| !q.headers.contains_key("via")));
    assert!(pw.w.server.requests()[git..].iter().all(|q| !q.headers.contains_key("via")));
    assert!(pw.w.server.requests().len() > git);
    let new_hooks = &pw.hook.received()[hooks..];
    assert!(!new_hooks.is_empty() && new_hooks.iter().all(|h| h.via.is_none()), "{new_hooks:?}");
}

#[test]
fn https_goes_through_connect_and_an_error_through_a_proxy_names_it() {
    let (ca_pem, tls) = crate::support::fake_kube::tls_for_localhost();
    let tls_server = crate::support::fake_kube::FakeKube::start_tls("unused", tls);
    let tls_port = tls_server.port;
    let Some(proxy) = Tinyproxy::start(&[tls_port]) else { return };
    let pw = ProxyWorld::new();
    let ca = pw.w.sb.write("ca.pem", &ca_pem);
    // A GitHub Enterprise whose API is on https (here a server that wants another token).
    pw.w.conf()
        .global("http_timeout", 5)
        .global("ca_file", &ca)
        .repo(
            Repo::new("ghe")
                .kind("github")
                .monitor_url(format!("https://127.0.0.1:{tls_port}/acme/app"))
                .qa(pw.w.server.url("qa/deploy.git"))
                .commands(["true"]),
        )
        .write(&pw.w.sb);
    let r = pw.poll(&[("HTTPS_PROXY", proxy.url())]);
    assert_eq!(r.code, 3, "{}", r.all());
    let e = r.json()["checked"][0]["error"].as_str().unwrap_or("").to_string();
    assert!(e.contains("401") && e.contains("through proxy"), "reached through the tunnel: {e}\n{}", proxy.log());
    assert!(proxy.log().contains(&format!("CONNECT 127.0.0.1:{tls_port}")), "{}", proxy.log());

    // A proxy that is not there: the error says which proxy, for the API and for git.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let dead_url = format!("http://127.0.0.1:{dead}");
    pw.w.conf().global("http_timeout", 5).repo(pw.w.repo("plain")).write(&pw.w.sb);
    let r = pw.poll(&[("HTTPS_PROXY", dead_url.clone()), ("HTTP_PROXY", dead_url)]);
    assert_eq!(r.code, 3, "{}", r.all());
    let e = r.json()["checked"][0]["error"].as_str().unwrap_or("").to_string();
    assert!(e.contains(&format!("through proxy 127.0.0.1:{dead}")), "{e}");
    drop(tls_server);
}

//! Plain Git over http(s) listed in process with protocol v2 `ls-refs` (issue 21), against the
//! real `git http-backend`: the same heads as `git ls-remote`, two HTTP requests, Basic
//! credentials, and `git ls-remote` kept for servers that do not speak version 2.

use super::{BAD, TOKEN, as_strings, big_repo, checker, config, repo};
use crate::support::Sandbox;
use crate::support::git_server::GitServer;
use crate::support::http1::{Response, Server};
use crate::support::repos::BareRepo;
use sentry::forge::CheckErrorKind;

#[test]
fn ls_refs_lists_every_branch_in_two_requests_with_basic_auth() {
    let sb = Sandbox::new();
    let bare = big_repo(sb.path(), "group/app.git");
    let server = GitServer::start(sb.path(), Some(("bob", TOKEN)));
    let mk = |name: &str, pats: &[&str], token: &str| {
        repo(name, "git", server.url("group/app.git"), pats, None).monitor_auth(Some("bob"), token)
    };
    let c = config(&[mk("all", &[".*"], TOKEN), mk("some", &["release/.*"], TOKEN), mk("bad", &["main"], BAD)], 2);
    let ck = checker(&c);
    let l = ck.check(&c.repositories[0], None).expect("ls-refs");
    assert_eq!(as_strings(&l.heads), bare.heads());
    assert_eq!(l.requests, 2);
    let log = server.requests();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        (log[0].method.as_str(), log[0].url.as_str()),
        ("GET", "/group/app.git/info/refs?service=git-upload-pack")
    );
    assert_eq!((log[1].method.as_str(), log[1].url.as_str()), ("POST", "/group/app.git/git-upload-pack"));
    for r in &log {
        assert_eq!(r.headers.get("git-protocol").map(String::as_str), Some("version=2"));
        assert_eq!(r.status, 200);
    }
    assert_eq!(log[1].headers.get("content-type").map(String::as_str), Some("application/x-git-upload-pack-request"));
    let l = ck.check(&c.repositories[1], None).expect("filtered");
    assert_eq!(l.heads.keys().collect::<Vec<_>>(), ["release/1", "release/2.0", "release/x/y"]);
    let e = ck.check(&c.repositories[2], None).expect_err("bad password");
    assert_eq!(e.kind, CheckErrorKind::Unauthorized);
    assert!(e.message.contains("repository bad") && !e.message.contains(BAD), "{e}");
}

#[test]
fn missing_repository_is_not_found() {
    let sb = Sandbox::new();
    BareRepo::create(sb.path(), "app.git").commit("main", &[("a", "b")], "c");
    let server = GitServer::start(sb.path(), None);
    let c = config(&[repo("gone", "git", server.url("gone.git"), &["main"], None)], 1);
    let e = checker(&c).check(&c.repositories[0], None).expect_err("gone");
    assert_eq!(e.kind, CheckErrorKind::NotFound, "{e}");
}

/// A server that answers a version 0 advertisement whatever it is asked (an old smart HTTP
/// server) is listed by `git ls-remote`, which reads that advertisement itself.
#[test]
fn a_server_without_protocol_v2_is_left_to_ls_remote() {
    let sha = "a".repeat(40);
    let advert = {
        let mut b = b"001e# service=git-upload-pack\n0000".to_vec();
        let first = format!("{sha} HEAD\0multi_ack side-band-64k symref=HEAD:refs/heads/main\n");
        b.extend(format!("{:04x}{first}", first.len() + 4).into_bytes());
        let main = format!("{sha} refs/heads/main\n");
        b.extend(format!("{:04x}{main}", main.len() + 4).into_bytes());
        b.extend(b"0000");
        b
    };
    let server = Server::start(move |_req| {
        Response::new(200, advert.clone()).header("Content-Type", "application/x-git-upload-pack-advertisement")
    });
    let url = format!("http://127.0.0.1:{}/old.git", server.port());
    let c = config(&[repo("old", "git", url, &["main"], None)], 1);
    let l = checker(&c).check(&c.repositories[0], None).expect("ls-remote reads v0");
    assert_eq!(l.heads["main"].as_str(), sha);
}

#[test]
fn malformed_pkt_lines_are_an_error_not_a_panic() {
    let server = Server::start(move |req| {
        if req.url.contains("info/refs") {
            Response::new(200, b"000eversion 2\n000cls-refs\n0000".to_vec())
                .header("Content-Type", "application/x-git-upload-pack-advertisement")
        } else {
            Response::new(200, b"ffffzz".to_vec()).header("Content-Type", "application/x-git-upload-pack-result")
        }
    });
    let url = format!("http://127.0.0.1:{}/bad.git", server.port());
    let c = config(&[repo("bad", "git", url, &["main"], None)], 1);
    let e = checker(&c).check(&c.repositories[0], None).expect_err("malformed");
    assert_eq!(e.kind, CheckErrorKind::Protocol, "{e}");
    assert!(e.message.contains("pkt-line"), "{e}");
}

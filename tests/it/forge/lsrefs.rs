//! Plain Git over http(s) listed in process with protocol v2 `ls-refs` (issue 21), against the
//! real `git http-backend`: the same heads as `git ls-remote`, two HTTP requests, Basic
//! credentials, and `git ls-remote` kept for servers that do not speak version 2.

use super::{BAD, TOKEN, as_strings, big_repo, checker, config, repo};
use crate::support::Sandbox;
use crate::support::fake_forge::FakeForge;
use crate::support::git_server::GitServer;
use crate::support::http1::{Response, Server};
use crate::support::repos::{BareRepo, git};
use sentry::forge::CheckErrorKind;
use std::io::{Read, Write};
use std::net::TcpStream;

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

/// Tags of a plain-Git repository over http are listed the same way (`peel`, `ref-prefix
/// refs/tags/`), by sentry rather than by a `git ls-remote` process, annotated tags at their
/// commit, only the watched ones kept.
#[test]
fn ls_refs_lists_tags_peeled_in_process() {
    let sb = Sandbox::new();
    let bare = BareRepo::create(sb.path(), "group/app.git");
    let one = bare.commit("main", &[("v", "1")], "v1");
    let two = bare.commit("main", &[("v", "2")], "v2");
    git(&bare.path, &["tag", "v1.0.0", &one]);
    git(&bare.path, &["tag", "-a", "-m", "release", "v2.0.0", &two]);
    git(&bare.path, &["tag", "other", &two]);
    let server = GitServer::start(sb.path(), Some(("bob", TOKEN)));
    let r =
        repo("app", "git", server.url("group/app.git"), &["main"], None).monitor_auth(Some("bob"), TOKEN).tags(["v.*"]);
    let c = config(&[r], 1);
    let tags = checker(&c).tags(&c.repositories[0]).expect("tags");
    assert_eq!(
        as_strings(&tags),
        [("v1.0.0".to_string(), one), ("v2.0.0".to_string(), two)].into_iter().collect(),
        "the annotated tag at its commit, `other` not watched"
    );
    let log = server.requests();
    let asked: Vec<(&str, &str)> = log.iter().map(|r| (r.method.as_str(), r.url.as_str())).collect();
    assert_eq!(
        asked,
        [("GET", "/group/app.git/info/refs?service=git-upload-pack"), ("POST", "/group/app.git/git-upload-pack")]
    );
    for r in &log {
        let agent = r.headers.get("user-agent").map(String::as_str).unwrap_or_default();
        assert!(agent.starts_with("sentry"), "asked by sentry, not by a git process: {agent}");
    }
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
    assert_eq!(l.heads.get("main").expect("listed").as_str(), sha);
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

/// One pkt-line of `s`.
fn pkt(s: &str) -> Vec<u8> {
    format!("{:04x}{s}", s.len() + 4).into_bytes()
}

/// What a raw HTTP/1.1 exchange answered: status, the headers compared (content type, `Allow`,
/// no-cache), body.
type Exchange = (u16, Vec<(String, String)>, Vec<u8>);

/// One request of the comparison: what it tries, method, path, headers, body.
type Case<'a> = (String, &'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>);

/// Sends one request on a fresh connection and reads the whole answer.
fn exchange(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Exchange {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).expect("write");
    // The test servers keep the connection open: the body is read by its Content-Length.
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "connection closed before the end of the head");
        out.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).expect("status");
    let all: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = all.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = out[end + 4..].to_vec();
    body.resize(len, 0);
    let have = (out.len() - end - 4).min(len);
    s.read_exact(&mut body[have..]).expect("read body");
    let mut kept: Vec<(String, String)> = all
        .into_iter()
        .filter(|(k, _)| ["content-type", "allow", "cache-control", "expires", "pragma"].contains(&k.as_str()))
        .collect();
    kept.sort();
    kept.dedup();
    (status, kept, body)
}

/// The fake forge's Git smart HTTP is held to the real `git http-backend`, on the same
/// repositories: byte for byte on every request below (advertisements of each protocol
/// version, `ls-refs` with each argument, and what git dies on), and the same listing through
/// sentry and through `git ls-remote`. Benchmarks of plain Git run against the fake: this is
/// what makes their numbers mean something for a real server.
#[test]
fn the_fake_forge_speaks_git_smart_http_as_git_http_backend_does() {
    let sb = Sandbox::new();
    let bare = big_repo(sb.path(), "group/app.git");
    let main = bare.head("main").expect("main");
    git(&bare.path, &["tag", "-a", "-m", "release one", "v1", &main]);
    git(&bare.path, &["tag", "light", &main]);
    // Packed refs (tags peeled in packed-refs) under loose ones, and a symbolic ref.
    git(&bare.path, &["pack-refs", "--all"]);
    bare.commit("dev", &[("dev", "loose")], "dev after packing");
    git(&bare.path, &["symbolic-ref", "refs/heads/alias", "refs/heads/release/1"]);
    BareRepo::create(sb.path(), "empty.git");
    let detached = BareRepo::create(sb.path(), "detached.git");
    let d = detached.commit("main", &[("a", "b")], "c");
    git(&detached.path, &["update-ref", "--no-deref", "HEAD", &d]);

    let real = GitServer::start(sb.path(), Some(("bob", TOKEN)));
    let fake = FakeForge::start(sb.path());
    fake.require_token(TOKEN);
    let basic = format!("Basic {}", sentry::secret::base64(format!("bob:{TOKEN}").as_bytes()));

    let v2 = [("Authorization", basic.as_str()), ("Git-Protocol", "version=2")];
    let get = |proto: Option<&'static str>| {
        let mut h = vec![("Authorization", basic.as_str())];
        h.extend(proto.map(|p| ("Git-Protocol", p)));
        h
    };
    let advert = "/group/app.git/info/refs?service=git-upload-pack";
    let mut cases: Vec<Case> = Vec::new();
    for proto in [Some("version=2"), None, Some("version=1"), Some("version=3"), Some("x=y:version=2")] {
        cases.push((format!("GET advertisement, Git-Protocol {proto:?}"), "GET", advert.into(), get(proto), vec![]));
    }
    for (what, path) in [
        ("no .git suffix", "/group/app/info/refs?service=git-upload-pack"),
        ("dumb info/refs", "/group/app.git/info/refs"),
        ("unknown service", "/group/app.git/info/refs?service=git-frob"),
        ("missing repository", "/nope.git/info/refs?service=git-upload-pack"),
        ("empty repository", "/empty.git/info/refs?service=git-upload-pack"),
        ("detached HEAD", "/detached.git/info/refs?service=git-upload-pack"),
    ] {
        for proto in [Some("version=2"), None] {
            cases.push((format!("GET {what}, {proto:?}"), "GET", path.into(), get(proto), vec![]));
        }
    }
    cases.push(("POST to info/refs".into(), "POST", advert.into(), v2.to_vec(), vec![]));
    cases.push(("GET git-upload-pack".into(), "GET", "/group/app.git/git-upload-pack".into(), v2.to_vec(), vec![]));

    let cmd = pkt("command=ls-refs\n");
    let join = |parts: &[&[u8]]| parts.concat();
    let posts: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "sentry's request",
            "app",
            join(&[&cmd, &pkt("agent=sentry/1\n"), b"0001", &pkt("ref-prefix refs/heads/\n"), b"0000"]),
        ),
        ("every argument", "app", join(&[&cmd, b"0001", &pkt("symrefs\n"), &pkt("peel\n"), &pkt("unborn\n"), b"0000"])),
        ("no arguments, no delimiter", "app", join(&[&cmd, b"0000"])),
        ("no arguments", "app", join(&[&cmd, b"0001", b"0000"])),
        (
            "prefixes",
            "app",
            join(&[
                &cmd,
                b"0001",
                &pkt("ref-prefix refs/tags/l\n"),
                &pkt("ref-prefix HEAD\n"),
                &pkt("peel\n"),
                b"0000",
            ]),
        ),
        (
            "overlapping prefixes",
            "app",
            join(&[
                &cmd,
                b"0001",
                &pkt("ref-prefix refs/heads/r\n"),
                &pkt("ref-prefix refs/heads/release/\n"),
                &pkt("ref-prefix refs/t\n"),
                b"0000",
            ]),
        ),
        ("empty prefix", "app", join(&[&cmd, b"0001", &pkt("ref-prefix \n"), b"0000"])),
        (
            "lines without newline",
            "app",
            join(&[b"0013command=ls-refs", b"0001", b"0019ref-prefix refs/tags/", b"0000"]),
        ),
        (
            "client capabilities",
            "app",
            join(&[&cmd, &pkt("agent\n"), &pkt("server-option=x\n"), &pkt("object-format=sha1\n"), b"0001", b"0000"]),
        ),
        ("unknown argument", "app", join(&[&cmd, b"0001", &pkt("bogus\n"), b"0000"])),
        ("uppercase argument", "app", join(&[&cmd, b"0001", &pkt("PEEL\n"), b"0000"])),
        ("prefix without a space", "app", join(&[&cmd, b"0001", &pkt("ref-prefix\n"), b"0000"])),
        ("unknown capability", "app", join(&[&cmd, &pkt("session-id=1\n"), b"0001", b"0000"])),
        ("sha256 client", "app", join(&[&cmd, &pkt("object-format=sha256\n"), b"0001", b"0000"])),
        ("unknown command", "app", join(&[&pkt("command=frob\n"), b"0001", b"0000"])),
        ("command with a value", "app", join(&[&pkt("command=ls-refs=1\n"), b"0001", b"0000"])),
        ("two commands", "app", join(&[&cmd, &cmd, b"0001", b"0000"])),
        ("no command", "app", join(&[&pkt("agent=x\n"), b"0000"])),
        ("arguments end in a delimiter", "app", join(&[&cmd, b"0001", &pkt("peel\n"), b"0001"])),
        ("no final flush", "app", join(&[&cmd, b"0001", &pkt("ref-prefix refs/heads/\n")])),
        ("response end", "app", join(&[&cmd, b"0002"])),
        ("empty pkt-line", "app", join(&[&cmd, b"0001", b"0004", b"0000"])),
        ("bad length", "app", b"zzzz".to_vec()),
        ("CRLF", "app", join(&[b"0015command=ls-refs\r\n", b"0001", b"0000"])),
        ("empty body", "app", Vec::new()),
        ("flush only", "app", b"0000".to_vec()),
        ("data after the request", "app", join(&[&cmd, b"0001", b"0000", b"junk"])),
        ("unborn HEAD", "empty", join(&[&cmd, b"0001", &pkt("symrefs\n"), &pkt("unborn\n"), b"0000"])),
        ("unborn HEAD, not asked", "empty", join(&[&cmd, b"0001", &pkt("symrefs\n"), b"0000"])),
        ("detached HEAD", "detached", join(&[&cmd, b"0001", &pkt("symrefs\n"), &pkt("unborn\n"), b"0000"])),
    ];
    let ct = ("Content-Type", "application/x-git-upload-pack-request");
    for (what, repo, body) in &posts {
        let mut h = v2.to_vec();
        h.push(ct);
        let path = format!("/{}.git/git-upload-pack", if *repo == "app" { "group/app" } else { repo });
        cases.push((format!("POST {what}"), "POST", path, h, body.clone()));
    }
    let sentrys = posts[0].2.clone();
    let mut h = get(None);
    h.push(ct);
    cases.push(("POST without version 2".into(), "POST", "/group/app.git/git-upload-pack".into(), h, sentrys.clone()));
    let mut h = v2.to_vec();
    h.push(("Content-Type", "application/x-git-upload-pack-request; charset=utf-8"));
    cases.push((
        "POST with a content type".into(),
        "POST",
        "/group/app.git/git-upload-pack".into(),
        h,
        sentrys.clone(),
    ));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&posts[1].2).expect("gzip");
    let mut h = v2.to_vec();
    h.extend([ct, ("Content-Encoding", "gzip")]);
    cases.push(("POST gzip".into(), "POST", "/group/app.git/git-upload-pack".into(), h, gz.finish().expect("gzip")));

    for (what, method, path, headers, body) in &cases {
        let want = exchange(real.port(), method, path, headers, body);
        let got = exchange(fake.port(), method, path, headers, body);
        assert_eq!((got.0, &got.1), (want.0, &want.1), "{what}: fake forge (left) against git http-backend (right)");
        if got.2 != want.2 {
            let (g, w) = (String::from_utf8_lossy(&got.2), String::from_utf8_lossy(&want.2));
            let at =
                g.lines().zip(w.lines()).position(|(a, b)| a != b).unwrap_or(g.lines().count().min(w.lines().count()));
            panic!(
                "{what}: bodies differ at line {at}: fake {:?}, git http-backend {:?} ({} and {} bytes)",
                g.lines().nth(at),
                w.lines().nth(at),
                got.2.len(),
                want.2.len()
            );
        }
    }
    // Without credentials both refuse, asking for Basic.
    for port in [real.port(), fake.port()] {
        let (status, ..) = exchange(port, "GET", advert, &[("Git-Protocol", "version=2")], b"");
        assert_eq!(status, 401);
    }

    // The same listings through sentry (two requests each) and through a real git client.
    let mk =
        |name: &str, url: String, pats: &[&str]| repo(name, "git", url, pats, None).monitor_auth(Some("bob"), TOKEN);
    let c = config(
        &[
            mk("real", real.url("group/app.git"), &[".*"]),
            mk("fake", fake.repo_url("group/app.git"), &[".*"]),
            mk("real-some", real.url("group/app.git"), &["release/.*"]),
            mk("fake-some", fake.repo_url("group/app.git"), &["release/.*"]),
        ],
        2,
    );
    let ck = checker(&c);
    let listed: Vec<_> = c.repositories.iter().map(|r| ck.check(r, None).expect("listed")).collect();
    assert_eq!(as_strings(&listed[1].heads), as_strings(&listed[0].heads));
    assert_eq!(as_strings(&listed[3].heads), as_strings(&listed[2].heads));
    assert_eq!(listed[0].heads.len(), bare.heads().len());
    assert!(listed.iter().all(|l| l.requests == 2));
    let ls_remote = |port: u16| {
        let url = format!("http://bob:{TOKEN}@127.0.0.1:{port}/group/app.git");
        git(sb.path(), &["-c", "protocol.version=2", "ls-remote", "--symref", &url])
    };
    assert_eq!(ls_remote(fake.port()), ls_remote(real.port()));
}

/// The fake forge's Git endpoints fail the way a Git host does (a 5xx; a 429 with
/// `Retry-After` and no API headers): the in-process listing waits and retries like any
/// request, and gives up as a server error.
#[test]
fn ls_refs_through_the_fake_forge_retries_a_throttle_and_gives_up_on_5xx() {
    let sb = Sandbox::new();
    let bare = BareRepo::create(sb.path(), "acme/app.git");
    bare.commit("main", &[("a", "b")], "c");
    let forge = FakeForge::start(sb.path());
    let c = config(&[repo("app", "git", forge.repo_url("acme/app.git"), &["main"], None)], 1);
    forge.throttle_next(1, 1);
    let l = checker(&c).check(&c.repositories[0], None).expect("after the wait");
    assert_eq!(as_strings(&l.heads), bare.heads());
    let statuses: Vec<u16> = forge.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200, 200], "the advertisement asked again, then ls-refs");
    forge.clear_log();
    forge.fail_next(5, 503);
    let e = checker(&c).check(&c.repositories[0], None).expect_err("gives up");
    assert_eq!(e.kind, CheckErrorKind::Server, "{e}");
    assert!(forge.requests().iter().all(|r| r.status == 503), "{:?}", forge.requests());
}

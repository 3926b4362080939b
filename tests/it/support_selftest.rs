//! The test support itself: the Git server really serves clones and enforces auth; the HTTP/1.1
//! server under every test double keeps connections alive and reads every body framing.

use crate::support::Sandbox;
use crate::support::git_server::GitServer;
use crate::support::http1::{Response, Server};
use crate::support::repos::BareRepo;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;

#[test]
fn git_server_clones_with_basic_auth_and_refuses_without() {
    let sb = Sandbox::new();
    let root = sb.path().join("srv");
    let repo = BareRepo::create(&root, "team/app.git");
    let sha = repo.commit("main", &[("README", "hi\n"), ("deploy.sh", "echo ok\n")], "first");
    let server = GitServer::start(&root, Some(("alice", "s3cret-pw")));

    let url = server.url("team/app.git");
    let anon =
        Command::new("git").args(["ls-remote", "--heads", &url]).env("GIT_TERMINAL_PROMPT", "0").output().expect("git");
    assert!(!anon.status.success(), "anonymous ls-remote must be refused");

    let dest = sb.path().join("clone");
    let header = format!("Authorization: Basic {}", sentry::secret::base64(b"alice:s3cret-pw"));
    let ok = Command::new("git")
        .args(["clone", "-q", "--depth", "1", "--branch", "main", &url])
        .arg(&dest)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
        .env("GIT_CONFIG_VALUE_0", &header)
        .output()
        .expect("git");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(std::fs::read_to_string(dest.join("README")).expect("README"), "hi\n");
    let head = crate::support::repos::git(&dest, &["rev-parse", "HEAD"]);
    assert_eq!(head, sha);
    assert!(server.requests().iter().any(|r| r.status == 401));
    assert!(server.requests().iter().any(|r| r.status == 200 && r.url.contains("git-upload-pack")));
}

#[test]
fn repo_helpers_track_branches() {
    let sb = Sandbox::new();
    let repo = BareRepo::create(sb.path(), "r.git");
    let a = repo.commit("main", &[("f", "1")], "one");
    let b = repo.commit("main", &[("f", "2")], "two");
    assert_ne!(a, b);
    repo.create_branches(&["x/1".to_string(), "x/2".to_string()], &a);
    repo.set_branch("main", &a);
    repo.delete_branch("x/2");
    let heads = repo.heads();
    assert_eq!(heads.len(), 2);
    assert_eq!(heads["main"], a);
    assert_eq!(heads["x/1"], a);
}

/// Reads one response (head and `Content-Length` body) from `r`; returns (status line, body).
fn read_response(r: &mut BufReader<TcpStream>) -> (String, String) {
    let mut status = String::new();
    r.read_line(&mut status).expect("status line");
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header");
        if h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().expect("length");
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).expect("body");
    (status.trim().to_string(), String::from_utf8(body).expect("utf-8"))
}

#[test]
fn http1_server_keeps_alive_and_reads_length_chunked_and_100_continue_bodies() {
    let server = Server::start_with(|port| {
        move |req: crate::support::http1::Request| {
            let body = String::from_utf8_lossy(&req.body).into_owned();
            Response::new(200, format!("{port} {} {} {body}", req.method, req.url))
        }
    });
    let port = server.port();
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // A framing bug must fail the test, not hang it.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let mut w = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);
    // Three requests on one connection: Content-Length, chunked (with a trailer), 100-continue.
    w.write_all(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello").expect("write");
    assert_eq!(read_response(&mut r), ("HTTP/1.1 200 OK".into(), format!("{port} POST /a hello")));
    w.write_all(
        b"POST /b?q=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-T: 1\r\n\r\n",
    )
    .expect("write");
    assert_eq!(read_response(&mut r).1, format!("{port} POST /b?q=1 abcdefg"));
    w.write_all(b"PUT /c HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n").expect("write");
    assert_eq!(read_response(&mut r).0, "HTTP/1.1 100 Continue");
    w.write_all(b"ok").expect("write");
    assert_eq!(read_response(&mut r).1, format!("{port} PUT /c ok"));
    // Dropping the server closes the connection a client still holds.
    drop(server);
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).map(|n| n == 0).ok(), Some(true), "connection closed");
}

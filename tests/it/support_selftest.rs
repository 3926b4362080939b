//! The test support itself: the Git server really serves clones and enforces auth.

use crate::support::Sandbox;
use crate::support::git_server::GitServer;
use crate::support::repos::BareRepo;
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

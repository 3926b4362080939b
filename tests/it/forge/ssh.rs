//! git over ssh against a real OpenSSH server on loopback (issue 16 item 11, issue 17 item 7):
//! listing and clone with `auth.ssh_key_file` and `global.known_hosts`; an unknown host key
//! fails at once (no prompt, even from a terminal and with the user's own `GIT_SSH_COMMAND`),
//! and a wrong key says so. Skipped (saying why) without openssh-server, unless
//! `SENTRY_REQUIRE_REAL=1`.

use crate::support::config::{Conf, Repo};
use crate::support::real::{Sshd, keygen};
use crate::support::repos::BareRepo;
use crate::support::{Run, Sandbox};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A sandbox with two keys (one authorized), a watched repository and a deploy repository, and
/// a running sshd; `None` when sshd is not installed.
struct SshWorld {
    sb: Sandbox,
    sshd: Sshd,
    good_key: PathBuf,
    bad_key: PathBuf,
    app: BareRepo,
    qa: BareRepo,
}

impl SshWorld {
    fn new() -> Option<SshWorld> {
        let sb = Sandbox::new();
        let keys = sb.path().join("keys");
        std::fs::create_dir_all(&keys).expect("keys dir");
        let good_key = keys.join("id_good");
        let bad_key = keys.join("id_bad");
        let good_pub = keygen(&good_key);
        keygen(&bad_key);
        let sshd = Sshd::start(&[&good_pub])?;
        let app = BareRepo::create(&sb.path().join("srv"), "app.git");
        app.commit("main", &[("v", "1")], "v1");
        let qa = BareRepo::create(&sb.path().join("srv"), "qa.git");
        qa.commit("main", &[("deploy.sh", "#!/bin/sh\necho deployed-over-ssh\n")], "qa");
        Some(SshWorld { sb, sshd, good_key, bad_key, app, qa })
    }

    fn known_hosts(&self, trusted: bool) -> PathBuf {
        let line = if trusted { self.sshd.known_hosts_line() + "\n" } else { String::new() };
        self.sb.write("known_hosts", &line)
    }

    /// Watches `app` and deploys from `qa`, both over ssh with `key`, deploying on first sight.
    fn conf(&self, known_hosts: &Path, monitor_key: &Path, deploy_key: &Path) -> Conf {
        Conf::new()
            .global("tmp_dir", self.sb.path().join("tmp"))
            .global("http_timeout", 10)
            .global("timeout", 60)
            .global("on_first_seen", "deploy")
            .global("known_hosts", known_hosts)
            .repo(
                Repo::new("app")
                    .kind("git")
                    .monitor_url(self.sshd.url(&self.app.path))
                    .monitor_ssh_key(monitor_key.display().to_string())
                    .qa(self.sshd.url(&self.qa.path))
                    .deploy_ssh_key(deploy_key.display().to_string())
                    .commands(["sh deploy.sh"]),
            )
    }

    /// `sentry ARGS` with a HOME of its own, so no ~/.ssh of the machine takes part.
    fn sentry(&self, args: &[&str]) -> Command {
        let mut cmd = self.sb.sentry();
        cmd.args(args).env("HOME", self.sb.path()).env_remove("GIT_SSH_COMMAND").env_remove("SSH_AUTH_SOCK");
        cmd
    }
}

#[test]
fn ssh_lists_and_clones_with_the_key_and_known_hosts() {
    let Some(w) = SshWorld::new() else { return };
    let kh = w.known_hosts(true);
    w.conf(&kh, &w.good_key, &w.good_key).write(&w.sb);
    let r = Run::from(w.sentry(&["poll", "--once", "--output", "json"]).output().expect("run"));
    assert_eq!(r.code, 0, "{}", r.all());
    let doc = r.json();
    assert_eq!(doc["checked"][0]["branches"]["main"], w.app.head("main").expect("main"));
    assert_eq!(doc["deployments"][0]["status"], "succeeded", "{doc}");
    assert!(doc["deployments"][0]["output_tail"].as_str().unwrap_or("").contains("deployed-over-ssh"), "{doc}");
    // The key is used where it is, never copied into the job or named in the output.
    assert!(!r.all().contains("BEGIN OPENSSH PRIVATE KEY"));
}

#[test]
fn an_unknown_host_key_fails_at_once_without_a_prompt_even_from_a_terminal() {
    let Some(w) = SshWorld::new() else { return };
    let kh = w.known_hosts(false);
    w.conf(&kh, &w.good_key, &w.good_key).write(&w.sb);
    // A user's own GIT_SSH_COMMAND that would ask (its options come first, so they win), and a
    // terminal: `script` runs sentry on a pseudo-terminal, as a person at a shell would.
    let started = Instant::now();
    let mut cmd = Command::new("script");
    cmd.args(["-qefc", "exec \"$SENTRY_BIN\" poll --once --output json", "/dev/null"])
        .current_dir(w.sb.path())
        .env("SENTRY_BIN", env!("CARGO_BIN_EXE_sentry"))
        .env("SENTRY_TMP_DIR", w.sb.path().join("tmp"))
        .env("HOME", w.sb.path())
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=no -o StrictHostKeyChecking=ask")
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("run script");
    // Keep the terminal's input open (an answer could come) while sentry runs.
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "waited {took:?} (a prompt, then the timeout): {text}");
    assert!(text.contains("Host key verification failed"), "{text}");
    assert!(text.contains("known_hosts"), "says what to do: {text}");
    assert!(!text.contains("after 3 attempts") && !text.contains("after 2 attempts"), "not retried: {text}");
    assert!(text.contains("host_key") || text.contains("could not be checked"), "{text}");
}

#[test]
fn a_wrong_key_is_a_clear_error_for_listing_and_clone() {
    let Some(w) = SshWorld::new() else { return };
    let kh = w.known_hosts(true);
    // Listing with the wrong key.
    w.conf(&kh, &w.bad_key, &w.good_key).write(&w.sb);
    let r = Run::from(w.sentry(&["poll", "--once", "--output", "json"]).output().expect("run"));
    assert_eq!(r.code, 3, "{}", r.all());
    let e = r.json()["checked"][0]["error"].as_str().unwrap_or("").to_string();
    assert!(e.contains("Permission denied (publickey)") && e.contains("ssh_key_file"), "{e}");
    assert!(!e.contains("Please make sure"), "the cause, not git's advice: {e}");
    // Cloning with the wrong key.
    w.conf(&kh, &w.good_key, &w.bad_key).write(&w.sb);
    let r = Run::from(w.sentry(&["poll", "--once", "--output", "json"]).output().expect("run"));
    let doc = r.json();
    let err = doc["deployments"][0]["error"].as_str().unwrap_or("").to_string();
    assert!(err.starts_with("clone failed") && err.contains("Permission denied (publickey)"), "{doc}");
    assert!(err.contains("ssh_key_file"), "{err}");
}

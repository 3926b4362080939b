//! Shared test support: sandboxes, running the binary.

#![allow(dead_code)]

pub mod config;
pub mod fake_forge;
pub mod fake_git;
pub mod fake_kube;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A private directory for one test, removed when dropped.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox { dir: tempfile::Builder::new().prefix("sentry-it-").tempdir().expect("tempdir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` to `name` inside the sandbox and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }

    /// A `sentry` command running in the sandbox with a clean SENTRY_* environment.
    pub fn sentry(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sentry"));
        cmd.current_dir(self.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("SENTRY_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("SENTRY_TMP_DIR", self.path().join("tmp"));
        cmd
    }

    /// Runs `sentry ARGS` and returns what it did.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.sentry().args(args).output().expect("run sentry"))
    }
}

/// The observable result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// stdout and stderr together, for "does the output mention X" assertions.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Parses stdout as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

pub mod git_server;
pub mod http1;
pub mod real;
pub mod repos;
pub mod webhook;
pub mod world;

/// A loopback port where a connection is refused, held for as long as the value lives: a TCP
/// socket bound but not listening. (Binding a listener and closing it frees the port for the
/// next bind of any test running beside, which then answers instead of refusing.)
pub struct ClosedPort {
    _socket: std::os::fd::OwnedFd,
    /// The port.
    pub port: u16,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket calls on a descriptor this function owns from creation; the
        // address structs are zero-initialised and sized for AF_INET.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let socket = std::os::fd::OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let rc = libc::bind(fd, (&raw const addr).cast(), len);
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            let mut bound: libc::sockaddr_in = std::mem::zeroed();
            let mut blen = len;
            let rc = libc::getsockname(fd, (&raw mut bound).cast(), &mut blen);
            assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
            ClosedPort { _socket: socket, port: u16::from_be(bound.sin_port) }
        }
    }
}

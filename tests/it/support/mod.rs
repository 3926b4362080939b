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

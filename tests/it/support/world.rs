//! A watched world for end-to-end tests: a git server with Basic auth, a deploy repository
//! whose script records what it deploys, watched repositories and a config that ties them.

use crate::support::config::{Conf, Repo};
use crate::support::git_server::GitServer;
use crate::support::repos::BareRepo;
use crate::support::{Run, Sandbox};
use std::path::PathBuf;

pub const USER: &str = "deployer";
pub const TOKEN: &str = "e2e-token-QWERTY-987";

/// A watched world: a git server, a deploy repository with a recording script, watched repos.
pub struct World {
    pub sb: Sandbox,
    pub server: GitServer,
    pub root: PathBuf,
}

/// The deployment script: records its SENTRY_* context, fails when a control file says so,
/// and says it runs (`running-REPO`) before it sleeps as long as `sleep` says.
pub const DEPLOY_SH: &str = r#"#!/bin/sh
set -u
line="$SENTRY_REPO $SENTRY_BRANCH $SENTRY_COMMIT ${SENTRY_PREVIOUS_COMMIT:-none} ${SENTRY_GROUP:-none}"
if [ -e "$CTRL/fail-$SENTRY_REPO" ]; then echo "failing on purpose: $line"; exit 3; fi
: > "$CTRL/running-$SENTRY_REPO"
if [ -e "$CTRL/sleep" ]; then sleep "$(cat "$CTRL/sleep")"; fi
env | grep '^SENTRY_\|^TMPDIR=' | sort > "$CTRL/env-$SENTRY_REPO-$(echo "$SENTRY_BRANCH" | tr / _)"
env > "$CTRL/fullenv-$SENTRY_REPO"
echo "$line" >> "$CTRL/deployed.log"
echo "deployed $line"
"#;

impl World {
    pub fn new() -> World {
        let sb = Sandbox::new();
        let root = sb.path().join("srv");
        BareRepo::create(&root, "qa/deploy.git").commit("main", &[("deploy.sh", DEPLOY_SH)], "deploy script");
        let server = GitServer::start(&root, Some((USER, TOKEN)));
        std::fs::create_dir_all(sb.path().join("ctrl")).expect("ctrl dir");
        World { sb, server, root }
    }

    /// A world watching one repository, `app`, whose `main` is at a first commit already
    /// recorded as the baseline by one `poll --once`: the start of most end-to-end stories.
    pub fn with_app() -> (World, BareRepo) {
        let w = World::new();
        let app = w.create("app");
        app.commit("main", &[("v", "1")], "v1");
        w.conf().repo(w.repo("app")).write(&w.sb);
        let r = w.poll();
        assert_eq!(r.code, 0, "baseline poll: {}", r.all());
        (w, app)
    }

    pub fn create(&self, name: &str) -> BareRepo {
        BareRepo::create(&self.root, &format!("apps/{name}.git"))
    }

    pub fn ctrl(&self) -> PathBuf {
        self.sb.path().join("ctrl")
    }

    /// What every world's configuration starts from: job directories kept inside the sandbox,
    /// a 60 s job timeout, and a failure parked after two attempts.
    pub fn conf(&self) -> Conf {
        Conf::new().global("tmp_dir", self.sb.path().join("tmp")).global("timeout", 60).global("max_attempts", 2)
    }

    /// `name` watched on this world's git server and deployed by the recording script; both
    /// sides authenticate with the token through `${E2E_TOKEN}`, which `sentry()` sets.
    pub fn repo(&self, name: &str) -> Repo {
        Repo::new(name)
            .monitor_url(self.server.url(&format!("apps/{name}.git")))
            .kind("git")
            .monitor_auth(Some(USER), "${E2E_TOKEN}")
            .qa(self.server.url("qa/deploy.git"))
            .project(name)
            .commands(["./deploy.sh"])
            .env("CTRL", self.ctrl().display().to_string())
            .deploy_auth(Some(USER), "${E2E_TOKEN}")
    }

    pub fn sentry(&self, args: &[&str]) -> Run {
        Run::from(self.sb.sentry().args(args).env("E2E_TOKEN", TOKEN).output().expect("run sentry"))
    }

    pub fn poll(&self) -> Run {
        self.sentry(&["poll", "--once"])
    }

    pub fn deployed(&self) -> Vec<String> {
        std::fs::read_to_string(self.ctrl().join("deployed.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    pub fn state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.sb.path().join("sentry-state.json")).expect("state file");
        serde_json::from_str(&text).expect("state parses")
    }

    pub fn status_json(&self) -> serde_json::Value {
        let r = self.sentry(&["status", "--output", "json"]);
        assert_eq!(r.code, 0, "{}", r.all());
        r.json()
    }
}

pub fn line(repo: &str, branch: &str, commit: &str, prev: Option<&str>, group: Option<&str>) -> String {
    format!("{repo} {branch} {commit} {} {}", prev.unwrap_or("none"), group.unwrap_or("none"))
}

//! A watched world for end-to-end tests: a git server with Basic auth, a deploy repository
//! whose script records what it deploys, watched repositories and a config that ties them.

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

/// The deployment script: records its SENTRY_* context, fails when a control file says so.
pub const DEPLOY_SH: &str = r#"#!/bin/sh
set -u
line="$SENTRY_REPO $SENTRY_BRANCH $SENTRY_COMMIT ${SENTRY_PREVIOUS_COMMIT:-none} ${SENTRY_GROUP:-none}"
if [ -e "$CTRL/fail-$SENTRY_REPO" ]; then echo "failing on purpose: $line"; exit 3; fi
if [ -e "$CTRL/sleep" ]; then sleep "$(cat "$CTRL/sleep")"; fi
env | grep '^SENTRY_\|^TMPDIR=' | sort > "$CTRL/env-$SENTRY_REPO-$(echo "$SENTRY_BRANCH" | tr / _)"
env > "$CTRL/fullenv-$SENTRY_REPO"
echo "$line" >> "$CTRL/deployed.log"
echo "deployed $line"
"#;

pub struct RepoSpec<'a> {
    pub name: &'a str,
    pub branches: &'a str,
    pub group: Option<&'a str>,
}

pub fn repo<'a>(name: &'a str, branches: &'a str) -> RepoSpec<'a> {
    RepoSpec { name, branches, group: None }
}

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
        w.config("", "", &[repo("app", "[main]")]);
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

    /// Writes sentry.yaml for `repos` with extra `global` lines and a `groups` section.
    pub fn config(&self, global: &str, groups: &str, repos: &[RepoSpec]) {
        let mut y = format!(
            "global:\n  tmp_dir: {}\n  timeout: 60\n  max_attempts: 2\n{global}\n",
            self.sb.path().join("tmp").display()
        );
        if !groups.is_empty() {
            y.push_str(&format!("groups:\n{groups}\n"));
        }
        y.push_str("repositories:\n");
        for r in repos {
            y.push_str(&format!(
                "  - name: {name}
{group}    monitor:
      repo_url: {url}
      branches: {branches}
      repo_type: git
      auth:
        username: {USER}
        token: ${{E2E_TOKEN}}
    deploy:
      qa_repo_url: {qa}
      qa_repo_branch: main
      project_name: {name}
      commands:
        - ./deploy.sh
      env:
        CTRL: {ctrl}
      auth:
        username: {USER}
        token: ${{E2E_TOKEN}}
",
                name = r.name,
                group = r.group.map(|g| format!("    group: {g}\n")).unwrap_or_default(),
                url = self.server.url(&format!("apps/{}.git", r.name)),
                branches = r.branches,
                qa = self.server.url("qa/deploy.git"),
                ctrl = self.ctrl().display(),
            ));
        }
        self.sb.write("sentry.yaml", &y);
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

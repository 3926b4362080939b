//! The one way the integration tests write a valid sentry configuration.
//!
//! Hand-assembled YAML drifts (each test file grew its own builder) and breaks quietly: an
//! unquoted path, URL or token that happens to hold `: `, `#` or a leading `-` changes the
//! document instead of the value. Here every string is written as a double-quoted scalar, so the
//! configuration holds exactly the text given; `${VAR}` and `$$` pass through untouched, since
//! expanding them is sentry's job (or, in commands, the shell's), not YAML's.
//!
//! Broken or hostile YAML is out of scope on purpose: those tests keep raw text (often a textual
//! mutation of what this builder writes), because a builder can only write what it knows.
//!
//! ```ignore
//! Conf::new()
//!     .global("timeout", 60)
//!     .group("g", Group::parallel().max_parallel(2))
//!     .repo(Repo::new("app").branches(["main", "dev.*"]).group("g"))
//!     .write(&sandbox);
//! ```

use crate::support::Sandbox;
use sentry::config::Config;
use std::path::{Path, PathBuf};

/// A whole configuration document.
#[derive(Clone, Default)]
pub struct Conf {
    polling_interval: Option<u64>,
    global: Vec<(String, Scalar)>,
    groups: Vec<(String, Group)>,
    repos: Vec<Repo>,
}

impl Conf {
    pub fn new() -> Conf {
        Conf::default()
    }

    pub fn polling_interval(mut self, seconds: u64) -> Conf {
        self.polling_interval = Some(seconds);
        self
    }

    /// Sets `global.<key>`. Any key is accepted, so the builder need not track the schema; setting
    /// a key again replaces it in place, so a shared base can be overridden without a duplicate.
    pub fn global(mut self, key: &str, value: impl Into<Scalar>) -> Conf {
        let value = value.into();
        match self.global.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.global.push((key.to_string(), value)),
        }
        self
    }

    pub fn group(mut self, name: &str, group: Group) -> Conf {
        self.groups.push((name.to_string(), group));
        self
    }

    pub fn repo(mut self, repo: Repo) -> Conf {
        self.repos.push(repo);
        self
    }

    pub fn repos(mut self, repos: impl IntoIterator<Item = Repo>) -> Conf {
        self.repos.extend(repos);
        self
    }

    /// The document. Fields come in a fixed order, so tests that mutate the text (bad cases,
    /// line numbers) can rely on it.
    pub fn yaml(&self) -> String {
        let mut y = String::new();
        if let Some(p) = self.polling_interval {
            y += &format!("polling_interval: {p}\n");
        }
        if !self.global.is_empty() {
            y += "global:\n";
            for (k, v) in &self.global {
                y += &format!("  {k}: {}\n", v.0);
            }
        }
        if !self.groups.is_empty() {
            y += "groups:\n";
            for (name, g) in &self.groups {
                y += &format!("  {}:\n", quote(name));
                g.render(&mut y);
            }
        }
        y += "repositories:\n";
        for r in &self.repos {
            r.render(&mut y);
        }
        y
    }

    /// Writes `sentry.yaml` in the sandbox, where the binary looks by default.
    pub fn write(&self, sb: &Sandbox) -> PathBuf {
        sb.write("sentry.yaml", &self.yaml())
    }

    /// Parses through the library as `dir/sentry.yaml`, `${VAR}` taken from `vars` only, so the
    /// test's own environment cannot leak in. Panics with the document if it is refused.
    pub fn parse(&self, dir: &Path, vars: &[(&str, &str)]) -> Config {
        self.parse_with(dir, &|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    /// Like [`Conf::parse`], with `${VAR}` looked up by `env` (e.g. the process environment).
    pub fn parse_with(&self, dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Config {
        let yaml = self.yaml();
        sentry::config::parse(&dir.join("sentry.yaml"), &yaml, env).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }
}

/// An entry of `groups:`.
#[derive(Clone)]
pub struct Group {
    strategy: &'static str,
    max_parallel: Option<u64>,
    continue_on_error: Option<bool>,
    global_timeout: Option<u64>,
    trigger: Option<String>,
}

impl Group {
    pub fn sequential() -> Group {
        Group::with_strategy("sequential")
    }

    pub fn parallel() -> Group {
        Group::with_strategy("parallel")
    }

    fn with_strategy(strategy: &'static str) -> Group {
        Group { strategy, max_parallel: None, continue_on_error: None, global_timeout: None, trigger: None }
    }

    pub fn max_parallel(mut self, n: u64) -> Group {
        self.max_parallel = Some(n);
        self
    }

    pub fn continue_on_error(mut self, yes: bool) -> Group {
        self.continue_on_error = Some(yes);
        self
    }

    pub fn global_timeout(mut self, seconds: u64) -> Group {
        self.global_timeout = Some(seconds);
        self
    }

    pub fn trigger(mut self, trigger: &str) -> Group {
        self.trigger = Some(trigger.to_string());
        self
    }

    fn render(&self, y: &mut String) {
        *y += &format!("    execution_strategy: {}\n", quote(self.strategy));
        if let Some(n) = self.max_parallel {
            *y += &format!("    max_parallel: {n}\n");
        }
        if let Some(b) = self.continue_on_error {
            *y += &format!("    continue_on_error: {b}\n");
        }
        if let Some(n) = self.global_timeout {
            *y += &format!("    global_timeout: {n}\n");
        }
        if let Some(t) = &self.trigger {
            *y += &format!("    trigger: {}\n", quote(t));
        }
    }
}

/// An entry of `repositories:`.
///
/// The defaults make a valid entry that reaches nothing (the smallest one most tests need);
/// optional fields are left out unless set, so sentry's own defaults apply to them.
#[derive(Clone)]
pub struct Repo {
    name: String,
    group: Option<String>,
    monitor_url: String,
    kind: String,
    branches: Vec<String>,
    paths: Option<Vec<String>>,
    ignore_paths: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    semver: Option<String>,
    monitor_auth: Option<Auth>,
    monitor_key: Option<String>,
    qa: String,
    qa_branch: String,
    qa_kind: Option<String>,
    project: Option<String>,
    commands: Vec<String>,
    on_failure: Vec<String>,
    env: Vec<(String, String)>,
    deploy_auth: Option<Auth>,
    deploy_key: Option<String>,
    report_status: Option<bool>,
    webhook: Option<String>,
    webhook_format: Option<String>,
}

#[derive(Clone)]
struct Auth {
    username: Option<String>,
    token: String,
}

impl Repo {
    /// Watches `main` of `https://github.com/acme/<name>` and deploys with `echo deploying` from
    /// `main` of `https://gitlab.com/acme/qa`.
    pub fn new(name: &str) -> Repo {
        Repo {
            name: name.to_string(),
            group: None,
            monitor_url: format!("https://github.com/acme/{name}"),
            kind: "github".into(),
            branches: vec!["main".into()],
            paths: None,
            ignore_paths: None,
            tags: None,
            semver: None,
            monitor_auth: None,
            monitor_key: None,
            qa: "https://gitlab.com/acme/qa".into(),
            qa_branch: "main".into(),
            qa_kind: None,
            project: None,
            commands: vec!["echo deploying".into()],
            on_failure: Vec::new(),
            env: Vec::new(),
            deploy_auth: None,
            deploy_key: None,
            report_status: None,
            webhook: None,
            webhook_format: None,
        }
    }

    pub fn group(mut self, group: &str) -> Repo {
        self.group = Some(group.to_string());
        self
    }

    pub fn monitor_url(mut self, url: impl Into<String>) -> Repo {
        self.monitor_url = url.into();
        self
    }

    /// `monitor.repo_type`: which forge API lists the branches.
    pub fn kind(mut self, kind: &str) -> Repo {
        self.kind = kind.to_string();
        self
    }

    /// Branch names or regexes, written as given (no `${VAR}` or regex escaping added).
    pub fn branches<I: IntoIterator<Item: AsRef<str>>>(mut self, patterns: I) -> Repo {
        self.branches = patterns.into_iter().map(|p| p.as_ref().to_string()).collect();
        self
    }

    /// `monitor.paths`: globs; a change deploys only when a changed file matches one.
    pub fn paths<I: IntoIterator<Item: AsRef<str>>>(mut self, globs: I) -> Repo {
        self.paths = Some(globs.into_iter().map(|p| p.as_ref().to_string()).collect());
        self
    }

    /// `monitor.ignore_paths`: globs of files that never count.
    pub fn ignore_paths<I: IntoIterator<Item: AsRef<str>>>(mut self, globs: I) -> Repo {
        self.ignore_paths = Some(globs.into_iter().map(|p| p.as_ref().to_string()).collect());
        self
    }

    /// `monitor.tags`: tag regexes (whole name).
    pub fn tags<I: IntoIterator<Item: AsRef<str>>>(mut self, patterns: I) -> Repo {
        self.tags = Some(patterns.into_iter().map(|p| p.as_ref().to_string()).collect());
        self
    }

    /// `monitor.semver`: a SemVer range over the tags.
    pub fn semver(mut self, range: &str) -> Repo {
        self.semver = Some(range.to_string());
        self
    }

    /// `monitor.auth`; the token is usually a `${VAR}` reference, so no secret lands in the file.
    pub fn monitor_auth(mut self, username: Option<&str>, token: &str) -> Repo {
        self.monitor_auth = Some(Auth { username: username.map(String::from), token: token.to_string() });
        self
    }

    /// `monitor.auth.ssh_key_file`: the private key for an ssh `repo_url`.
    pub fn monitor_ssh_key(mut self, path: impl Into<String>) -> Repo {
        self.monitor_key = Some(path.into());
        self
    }

    /// `deploy.auth.ssh_key_file`: the private key for an ssh `qa_repo_url`.
    pub fn deploy_ssh_key(mut self, path: impl Into<String>) -> Repo {
        self.deploy_key = Some(path.into());
        self
    }

    /// `deploy.qa_repo_url`: where the deployment scripts are cloned from.
    pub fn qa(mut self, url: impl Into<String>) -> Repo {
        self.qa = url.into();
        self
    }

    /// `deploy.repo_type`; unset, sentry treats the QA repository as plain git.
    pub fn qa_kind(mut self, kind: &str) -> Repo {
        self.qa_kind = Some(kind.to_string());
        self
    }

    /// `deploy.project_name`; unset, sentry uses the repository's name.
    pub fn project(mut self, project: impl Into<String>) -> Repo {
        self.project = Some(project.into());
        self
    }

    /// `deploy.on_failure`: shell commands run after a failed or timed-out deployment.
    pub fn on_failure<I: IntoIterator<Item: AsRef<str>>>(mut self, commands: I) -> Repo {
        self.on_failure = commands.into_iter().map(|c| c.as_ref().to_string()).collect();
        self
    }

    /// Shell commands, written as given; sentry passes them to `sh` verbatim (no `${VAR}` or
    /// `$$` processing), so `$$` is the shell's PID.
    pub fn commands<I: IntoIterator<Item: AsRef<str>>>(mut self, commands: I) -> Repo {
        self.commands = commands.into_iter().map(|c| c.as_ref().to_string()).collect();
        self
    }

    pub fn env(mut self, name: &str, value: impl Into<String>) -> Repo {
        self.env.push((name.to_string(), value.into()));
        self
    }

    pub fn deploy_auth(mut self, username: Option<&str>, token: &str) -> Repo {
        self.deploy_auth = Some(Auth { username: username.map(String::from), token: token.to_string() });
        self
    }

    /// `deploy.report_status`: post each deployment as a commit status on the watched commit.
    pub fn report_status(mut self, on: bool) -> Repo {
        self.report_status = Some(on);
        self
    }

    pub fn webhook(mut self, url: impl Into<String>) -> Repo {
        self.webhook = Some(url.into());
        self
    }

    pub fn webhook_format(mut self, format: &str) -> Repo {
        self.webhook_format = Some(format.to_string());
        self
    }

    fn render(&self, y: &mut String) {
        *y += &format!("  - name: {}\n", quote(&self.name));
        if let Some(g) = &self.group {
            *y += &format!("    group: {}\n", quote(g));
        }
        *y += "    monitor:\n";
        *y += &format!("      repo_url: {}\n", quote(&self.monitor_url));
        let branches: Vec<String> = self.branches.iter().map(|b| quote(b)).collect();
        *y += &format!("      branches: [{}]\n", branches.join(", "));
        for (key, list) in [("paths", &self.paths), ("ignore_paths", &self.ignore_paths), ("tags", &self.tags)] {
            if let Some(list) = list {
                let items: Vec<String> = list.iter().map(|p| quote(p)).collect();
                *y += &format!("      {key}: [{}]\n", items.join(", "));
            }
        }
        if let Some(r) = &self.semver {
            *y += &format!("      semver: {}\n", quote(r));
        }
        *y += &format!("      repo_type: {}\n", quote(&self.kind));
        render_auth(y, &self.monitor_auth, &self.monitor_key);
        *y += "    deploy:\n";
        *y += &format!("      qa_repo_url: {}\n", quote(&self.qa));
        *y += &format!("      qa_repo_branch: {}\n", quote(&self.qa_branch));
        if let Some(k) = &self.qa_kind {
            *y += &format!("      repo_type: {}\n", quote(k));
        }
        if let Some(p) = &self.project {
            *y += &format!("      project_name: {}\n", quote(p));
        }
        *y += "      commands:\n";
        for c in &self.commands {
            *y += &format!("        - {}\n", quote(c));
        }
        if !self.on_failure.is_empty() {
            *y += "      on_failure:\n";
            for c in &self.on_failure {
                *y += &format!("        - {}\n", quote(c));
            }
        }
        if !self.env.is_empty() {
            *y += "      env:\n";
            for (k, v) in &self.env {
                *y += &format!("        {}: {}\n", quote(k), quote(v));
            }
        }
        if let Some(on) = self.report_status {
            *y += &format!("      report_status: {on}\n");
        }
        render_auth(y, &self.deploy_auth, &self.deploy_key);
        if let Some(w) = &self.webhook {
            *y += &format!("    webhook_url: {}\n", quote(w));
        }
        if let Some(f) = &self.webhook_format {
            *y += &format!("    webhook_format: {}\n", quote(f));
        }
    }
}

fn render_auth(y: &mut String, auth: &Option<Auth>, key: &Option<String>) {
    if auth.is_none() && key.is_none() {
        return;
    }
    *y += "      auth:\n";
    if let Some(a) = auth {
        if let Some(u) = &a.username {
            *y += &format!("        username: {}\n", quote(u));
        }
        *y += &format!("        token: {}\n", quote(&a.token));
    }
    if let Some(k) = key {
        *y += &format!("        ssh_key_file: {}\n", quote(k));
    }
}

/// A value for a `global:` key, already in its YAML form: numbers and booleans bare (the schema
/// types them), text quoted.
#[derive(Clone)]
pub struct Scalar(String);

impl Scalar {
    /// A value written as given (a flow list such as `[]`).
    pub fn yaml(text: &str) -> Scalar {
        Scalar(text.to_string())
    }
}

macro_rules! bare {
    ($($t:ty),*) => {$(
        impl From<$t> for Scalar {
            fn from(v: $t) -> Scalar {
                Scalar(v.to_string())
            }
        }
    )*};
}
bare!(bool, i32, i64, u32, u64, usize);

impl From<&str> for Scalar {
    fn from(s: &str) -> Scalar {
        Scalar(quote(s))
    }
}

impl From<String> for Scalar {
    fn from(s: String) -> Scalar {
        Scalar(quote(&s))
    }
}

impl From<&Path> for Scalar {
    fn from(p: &Path) -> Scalar {
        Scalar(quote(&p.display().to_string()))
    }
}

impl From<&PathBuf> for Scalar {
    fn from(p: &PathBuf) -> Scalar {
        p.as_path().into()
    }
}

impl From<PathBuf> for Scalar {
    fn from(p: PathBuf) -> Scalar {
        p.as_path().into()
    }
}

/// `s` as a YAML double-quoted scalar. JSON string syntax is a subset of it; the few characters
/// JSON leaves bare but YAML may not print raw (DEL and the C1 controls) are escaped too.
fn quote(s: &str) -> String {
    let json = serde_json::to_string(s).expect("a string serializes");
    if !json.chars().any(|c| c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c)) {
        return json;
    }
    json.chars()
        .map(|c| match c {
            '\u{7f}' | '\u{80}'..='\u{9f}' => format!("\\u{:04x}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

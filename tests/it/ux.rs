//! Issue 19, "what an operator types": each item end to end through the binary.

use crate::support::config::{Conf, Repo};
use crate::support::world::{World, line};
use crate::support::{Run, Sandbox};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The target directory this test binary was built into (`CARGO_TARGET_DIR` or `target/`).
fn target_dir() -> PathBuf {
    // .../<target>/debug/sentry
    let bin = Path::new(env!("CARGO_BIN_EXE_sentry"));
    bin.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

#[test]
fn quickstart_finds_the_binary_wherever_cargo_put_it() {
    let sb = Sandbox::new();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.sh");
    // Not `target/` of the checkout: the script must ask cargo where the binary is.
    let out = Command::new("bash")
        .arg(script)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("TMPDIR", sb.path())
        .env_remove("SENTRY_CONFIG_PATH")
        .env_remove("SENTRY_STATE")
        .output()
        .expect("run quickstart");
    let r = Run::from(out);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("OK: commit"), "{}", r.stdout);
}

// ---------------------------------------------------------------------------------------------
// Item 2: commands are shell code, passed verbatim; validate warns about their variables.

#[test]
fn commands_reach_the_shell_verbatim_and_validate_warns_about_their_variables() {
    let (w, app) = World::with_app();
    let out = w.ctrl().join("verbatim");
    let cmd =
        format!("echo \"${{SENTRY_COMMIT}} ${{SENTRY_PREVIOUS_COMMIT:-none}} ${{GREETING}} $$\" > {}", out.display());
    w.conf().repo(w.repo("app").env("GREETING", "hello").commands([cmd.as_str()])).write(&w.sb);
    let v1 = app.head("main").expect("v1");
    let v2 = app.commit("main", &[("v", "2")], "v2");
    let r = w.poll();
    assert_eq!(r.code, 0, "{}", r.all());
    let written = std::fs::read_to_string(&out).expect("the command ran");
    let fields: Vec<&str> = written.split_whitespace().collect();
    // The shell expanded them from the job's environment: not "none", not the empty load-time value.
    assert_eq!(fields[..3], [v2.as_str(), v1.as_str(), "hello"], "{written}");
    assert!(fields[3].parse::<u32>().is_ok(), "$$ is the shell's PID: {written}");

    // A variable the job will not have, and one that holds a token: warnings, not errors.
    let cmds = ["echo $NOT_SET_ANYWHERE ${ALSO_UNSET:-fine} $SENTRY_COMMIT", "echo $E2E_TOKEN"];
    w.conf().repo(w.repo("app").commands(cmds)).write(&w.sb);
    let r = w.sentry(&["validate", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let doc = r.json();
    assert_eq!(doc["valid"], true);
    let warnings = doc["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 2, "{doc}");
    assert_eq!(warnings[0]["path"], "repositories[0].deploy.commands[0]");
    assert!(warnings[0]["message"].as_str().is_some_and(|m| m.contains("$NOT_SET_ANYWHERE")), "{doc}");
    assert_eq!(warnings[1]["path"], "repositories[0].deploy.commands[1]");
    assert!(warnings[1]["message"].as_str().is_some_and(|m| m.contains("holds a token")), "{doc}");
    let r = w.sentry(&["validate"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("warning:") && r.stdout.contains("2 warnings"), "{}", r.all());
}

// ---------------------------------------------------------------------------------------------
// Item 3: the seed's reference configuration, in the seed's shape.

/// The Go sentry's own example, as operators have it: quoted everything, `webhook_url: ""`,
/// unbraced `$GITHUB_TOKEN` (which the Go sentry expanded and we never did).
const SEED_CONFIG: &str = r#"polling_interval: 60  # Poll interval in seconds (minimum 60)

groups:
  ai-blueprints:
    execution_strategy: "parallel"
    max_parallel: 3
    continue_on_error: true
    global_timeout: 900

repositories:
  - name: "rag-project"
    group: "ai-blueprints"
    monitor:
      repo_url: "https://github.com/acme/rag"
      branches: ["main", "dev.*"]
      repo_type: "github"
      auth:
        username: "$GITHUB_USERNAME"
        token: "$GITHUB_TOKEN"
    deploy:
      qa_repo_url: "https://gitlab.example.com/qa/blueprint-test"
      qa_repo_branch: "main"
      repo_type: "gitlab"
      auth:
        username: "${GITLAB_USERNAME}"
        token: "${GITLAB_TOKEN}"
      project_name: "rag"
      commands:
        - "cd .tekton/rag"
        - "kubectl apply -f . --namespace=tekton-pipelines"
    webhook_url: ""

global:
  tmp_dir: "/tmp/sentry"
  cleanup: true
  log_level: "info"
  timeout: 300
"#;

fn validate_with(sb: &Sandbox, yaml: &str, env: &[(&str, &str)]) -> Run {
    sb.write("sentry.yaml", yaml);
    let mut cmd = sb.sentry();
    cmd.args(["validate", "--output", "json"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().expect("run"))
}

#[test]
fn the_seeds_reference_config_says_exactly_what_to_change() {
    let sb = Sandbox::new();
    let env =
        [("GITHUB_USERNAME", "u"), ("GITHUB_TOKEN", "gh-tok-123"), ("GITLAB_USERNAME", "v"), ("GITLAB_TOKEN", "gl-t")];
    let r = validate_with(&sb, SEED_CONFIG, &env);
    assert_eq!(r.code, 2, "{}", r.all());
    let doc = r.json();
    let errors = doc["errors"].as_array().expect("errors");
    let got: Vec<(&str, &str)> =
        errors.iter().map(|e| (e["path"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or(""))).collect();
    assert_eq!(got.len(), 2, "only the two unbraced references: {got:#?}");
    assert_eq!(got[0].0, "repositories[0].monitor.auth.username");
    assert!(got[0].1.contains("username: \"${GITHUB_USERNAME}\""), "{got:?}");
    assert_eq!(got[1].0, "repositories[0].monitor.auth.token");
    assert!(got[1].1.contains("token: \"${GITHUB_TOKEN}\""), "{got:?}");
    assert!(!r.all().contains("gh-tok-123"));

    // Braced, it is valid as it stands: webhook_url: "" means no webhook.
    let fixed = SEED_CONFIG
        .replace("\"$GITHUB_USERNAME\"", "\"${GITHUB_USERNAME}\"")
        .replace("\"$GITHUB_TOKEN\"", "\"${GITHUB_TOKEN}\"");
    let r = validate_with(&sb, &fixed, &env);
    assert_eq!(r.code, 0, "{}", r.all());
    // An empty value after expansion is "not set" too.
    let r = validate_with(&sb, &fixed.replace("webhook_url: \"\"", "webhook_url: \"${WEBHOOK_URL:-}\""), &env);
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn older_shapes_get_a_hint_saying_where_the_configuration_is() {
    let sb = Sandbox::new();
    // The Go sentry's first schema.
    let first = "monitor:\n  repo_a:\n    type: \"github\"\n    url: \"https://github.com/o/a\"\n    branch: \"main\"\n    token: \"${GITHUB_TOKEN}\"\n  poll:\n    interval: 30\ndeploy:\n  namespace: \"tekton-pipelines\"\n";
    let r = validate_with(&sb, first, &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let doc = r.json();
    assert_eq!(doc["errors"].as_array().map(Vec::len), Some(1), "one hint, not a wall: {doc}");
    let m = doc["errors"][0]["message"].as_str().unwrap_or("");
    assert!(m.contains("Go sentry") && m.contains("repositories"), "{m}");
    // The Kubernetes manifest that carries the configuration (ours, as shipped).
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/k8s-cronjob.yaml")).expect("manifest");
    let r = validate_with(&sb, &manifest, &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let doc = r.json();
    let e = &doc["errors"][0];
    let start = manifest.lines().position(|l| l.contains("sentry.yaml: |")).expect("data key") as u64 + 2;
    assert_eq!(e["line"], start, "{doc}");
    assert!(e["message"].as_str().is_some_and(|m| m.contains("Kubernetes manifest") && m.contains("data.sentry.yaml")));
}

// ---------------------------------------------------------------------------------------------
// Item 4: status needs only the state.

#[test]
fn status_needs_only_the_state_and_exits_1_when_a_human_is_needed() {
    let (w, app) = World::with_app();
    // No E2E_TOKEN in the environment: the config's ${E2E_TOKEN} cannot be expanded.
    let r = Run::from(w.sb.sentry().arg("status").output().expect("run"));
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("app ") && r.stdout.contains("baseline"), "{}", r.stdout);
    // Two failures park the commit (max_attempts 2): a human is needed.
    std::fs::write(w.ctrl().join("fail-app"), "").expect("fail");
    app.commit("main", &[("v", "2")], "v2");
    assert_eq!(w.poll().code, 1);
    assert_eq!(w.poll().code, 1);
    let r = w.sentry(&["status"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stdout.contains("PARKED"), "{}", r.stdout);
    // Without any configuration: a warning, the state as stored (default max_attempts 3: a
    // retry pending, not parked), exit 0.
    std::fs::remove_file(w.sb.path().join("sentry.yaml")).expect("rm config");
    let r = w.sentry(&["status", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("WARN") && r.stderr.contains("not used"), "{}", r.stderr);
    let doc = r.json();
    assert_eq!(doc["config_loaded"], false);
    assert_eq!(doc["repositories"]["app"]["branches"]["main"]["failure"]["attempts"], 2);
    assert_eq!(doc["repositories"]["app"]["configured"], serde_json::Value::Null);
    // An invalid configuration is a warning too.
    w.sb.write("sentry.yaml", "repositories: [");
    let r = w.sentry(&["status"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("retry"), "{}", r.stdout);
}

#[test]
fn status_exits_1_for_a_repository_whose_last_check_failed() {
    let (w, _app) = World::with_app();
    let gone = w.repo("gone").monitor_url(w.server.url("apps/gone.git"));
    w.conf().repo(w.repo("app")).repo(gone).write(&w.sb);
    assert_eq!(w.poll().code, 3);
    let r = w.sentry(&["status"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stdout.contains("gone: last check failed"), "{}", r.stdout);
    // --quiet prints it (it needs a human); when nothing does, quiet prints nothing.
    assert!(!w.sentry(&["status", "-q"]).stdout.is_empty());
    w.conf().repo(w.repo("app")).write(&w.sb);
    let r = w.sentry(&["status", "-q"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.all());
}

// ---------------------------------------------------------------------------------------------
// Item 5: deploy --branch --commit contacts no forge.

#[test]
fn deploy_with_branch_and_commit_contacts_no_forge() {
    let (w, app) = World::with_app();
    let v1 = app.head("main").expect("v1");
    let v2 = app.commit("main", &[("v", "2")], "v2");
    // The monitored repository is unreachable (nothing listens on port 9); the QA one is fine.
    w.conf().repo(w.repo("app").monitor_url("http://127.0.0.1:9/apps/app.git")).write(&w.sb);
    let r = w.sentry(&["deploy", "--repo", "app", "--branch", "main", "--commit", &v2, "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(w.deployed(), [line("app", "main", &v2, Some(&v1), None)]);
    assert_eq!(r.json()["checked"], serde_json::json!([]), "nothing was listed");
    assert_eq!(w.state()["repos"]["app"]["branches"]["main"]["deployed"], v2.as_str());
    // The branch must still be a monitored one; a short id is refused, saying so.
    let r = w.sentry(&["deploy", "--repo", "app", "--branch", "feature", "--commit", &v2]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("not monitored"), "{}", r.stderr);
    let r = w.sentry(&["deploy", "--repo", "app", "--branch", "main", "--commit", &v2[..7]]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.starts_with("error: --commit") && r.stderr.contains("short commit id"), "{}", r.stderr);
    assert!(r.stderr.contains("git rev-parse"), "{}", r.stderr);
    // Without --commit the forge is asked, and here it cannot answer.
    assert_eq!(w.sentry(&["deploy", "--repo", "app", "--branch", "main"]).code, 3);
}

// ---------------------------------------------------------------------------------------------
// Item 6: a pattern that matches nothing is not silent.

#[test]
fn a_branch_pattern_that_matches_nothing_fails_connectivity_and_warns_each_poll() {
    let (w, _app) = World::with_app();
    w.conf().repo(w.repo("app").branches(["main", "relese/.*"])).write(&w.sb);
    let r = w.sentry(&["validate", "--connectivity"]);
    assert_eq!(r.code, 3, "{}", r.all());
    let fail: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fail.len(), 1, "{}", r.stdout);
    assert!(fail[0].contains("\"relese/.*\"") && fail[0].contains("matches no branch"), "{}", fail[0]);
    let r = w.sentry(&["validate", "--connectivity", "--output", "json"]);
    assert_eq!(r.json()["errors"][0]["path"], "repositories[0].monitor.branches[1]");
    let yaml = std::fs::read_to_string(w.sb.path().join("sentry.yaml")).expect("config");
    let branches = yaml.lines().position(|l| l.trim_start().starts_with("branches:")).expect("branches line");
    assert_eq!(r.json()["errors"][0]["line"], branches as u64 + 1, "the line of `branches:`");
    for _ in 0..2 {
        let r = w.poll();
        assert_eq!(r.code, 0, "{}", r.all());
        let warned =
            r.stderr.lines().any(|l| l.contains("WARN") && l.contains("matches no branch") && l.contains("relese/.*"));
        assert!(warned, "{}", r.stderr);
    }
}

// ---------------------------------------------------------------------------------------------
// Item 7 and 13: every structural problem at once, in words an operator understands.

#[test]
fn every_structural_problem_is_reported_in_one_run_with_path_and_line() {
    let sb = Sandbox::new();
    let yaml = "\
global:
  timeout: soon
  tmpdir: /var/tmp
repositories:
  - name: app
    monitor:
      repo_url: https://github.com/acme/app
      branches: main
      token: \"${GH_TOKEN_UNSET}\"
    deploy:
      qa_repo_url: \"${QA_URL_UNSET}\"
";
    let r = validate_with(&sb, yaml, &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let doc = r.json();
    let got: Vec<(String, u64)> = doc["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| (e["path"].as_str().unwrap_or("").to_string(), e["line"].as_u64().unwrap_or(0)))
        .collect();
    let want = [
        ("global.timeout", 2),
        ("global.tmpdir", 3),
        ("repositories[0].monitor.branches", 8),
        ("repositories[0].monitor.token", 9),
        ("repositories[0].deploy.qa_repo_url", 11),
        ("repositories[0].deploy.commands", 11),
    ];
    assert_eq!(got, want.map(|(p, l)| (p.to_string(), l)), "{doc}");
    // Human: each once, with its line said once.
    sb.write("sentry.yaml", yaml);
    let r = sb.run(&["validate"]);
    let e = &r.stderr;
    assert!(e.contains("global.timeout (line 2): must be a whole number of seconds, e.g. 300 (got \"soon\")"), "{e}");
    assert!(e.contains("did you mean `tmp_dir`?"), "{e}");
    assert!(e.contains("must be a list: branches: [main]"), "{e}");
    assert!(e.contains("it belongs in auth"), "{e}");
    assert!(e.contains("QA_URL_UNSET is not set"), "{e}");
    assert!(!e.contains("column"), "the line is said once: {e}");
}

#[test]
fn error_wording_for_the_common_mistakes() {
    let sb = Sandbox::new();
    // An empty file.
    sb.write("sentry.yaml", "# nothing yet\n\n");
    let r = sb.run(&["validate"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("the file is empty"), "{}", r.stderr);
    // No file at the default path: how to name one.
    std::fs::remove_file(sb.path().join("sentry.yaml")).expect("rm");
    let r = sb.run(&["poll", "--once"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("sentry.yaml") && r.stderr.contains("-c PATH") && r.stderr.contains("SENTRY_CONFIG_PATH"),
        "{}",
        r.stderr
    );
    // A bad regex keeps its lines (the caret under the culprit), indented under the problem.
    let yaml = Conf::new().repo(Repo::new("app").branches(["feat/(x"])).yaml();
    sb.write("sentry.yaml", &yaml);
    let r = sb.run(&["validate"]);
    assert_eq!(r.code, 2);
    let lines: Vec<&str> = r.stderr.lines().collect();
    let at = lines.iter().position(|l| l.contains("invalid regex \"feat/(x\":")).expect(&r.stderr);
    assert!(lines[at + 2].trim_start().starts_with("feat/(x"), "{}", r.stderr);
    assert!(lines[at + 3].trim() == "^", "{}", r.stderr);
    // An invalid value in an environment variable names the variable.
    let r = Run::from(sb.sentry().arg("validate").env("SENTRY_LOG_LEVEL", "verbose").output().expect("run"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("SENTRY_LOG_LEVEL=\"verbose\""), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------------
// Item 8: relative paths in the file are relative to the file.

#[test]
fn relative_paths_in_the_file_follow_the_file_and_the_command_line_the_working_directory() {
    let (w, app) = World::with_app();
    let conf = w.conf().global("state", "state/s.json").global("tmp_dir", "jobs").repo(w.repo("app"));
    w.sb.write("etc/sentry.yaml", &conf.yaml());
    std::fs::create_dir_all(w.sb.path().join("elsewhere")).expect("mkdir");
    let poll = || {
        Run::from(
            w.sb.sentry()
                .current_dir(w.sb.path().join("elsewhere"))
                .args(["poll", "--once", "-c", "../etc/sentry.yaml"])
                .env("E2E_TOKEN", crate::support::world::TOKEN)
                .env_remove("SENTRY_TMP_DIR")
                .output()
                .expect("run"),
        )
    };
    assert_eq!(poll().code, 0, "baseline in the new state");
    app.commit("main", &[("v", "2")], "v2");
    let r = poll();
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("succeeded"), "{}", r.all());
    assert!(w.sb.path().join("etc/state/s.json").is_file(), "state beside the file: {}", r.all());
    assert!(w.sb.path().join("etc/jobs").is_dir(), "tmp_dir beside the file");
    assert!(!w.sb.path().join("elsewhere/state").exists());
    // On the command line, relative to the working directory.
    let r = Run::from(
        w.sb.sentry()
            .current_dir(w.sb.path().join("elsewhere"))
            .args(["status", "-c", "../etc/sentry.yaml", "--state", "cli.json"])
            .output()
            .expect("run"),
    );
    assert!(r.stdout.contains("cli.json (never saved)"), "{}", r.all());
}

// ---------------------------------------------------------------------------------------------
// Item 9: project_name defaults to the repository name, which must then be a DNS label.

#[test]
fn a_repository_name_that_is_no_dns_label_needs_a_project_name() {
    let sb = Sandbox::new();
    let r = validate_with(&sb, &Conf::new().repo(Repo::new("Rag_Service")).yaml(), &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    let doc = r.json();
    assert_eq!(doc["errors"][0]["path"], "repositories[0].deploy.project_name");
    assert!(doc["errors"][0]["message"].as_str().is_some_and(|m| m.contains("set project_name")), "{doc}");
    let r = validate_with(&sb, &Conf::new().repo(Repo::new("Rag_Service").project("rag")).yaml(), &[]);
    assert_eq!(r.code, 0, "{}", r.all());
}

// ---------------------------------------------------------------------------------------------
// Item 10: the poll loop re-reads its configuration; SIGHUP starts a pass now.

fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill").args([format!("-{name}"), pid.to_string()]).status().expect("kill");
    assert!(ok.success(), "kill -{name} {pid}");
}

/// Waits until `path` holds `needle` `times` times (or more); panics with the text after 60 s.
fn wait_for(path: &Path, needle: &str, times: usize) -> String {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.matches(needle).count() >= times {
            return text;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no {needle:?} x{times} in:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_poll_loop_rereads_its_configuration_and_sighup_passes_at_once() {
    let (w, _app) = World::with_app();
    let other = w.create("other");
    other.commit("main", &[("v", "1")], "v1");
    let log = w.sb.path().join("loop.log");
    let mut child =
        w.sb.sentry()
            .args(["poll"])
            .env("E2E_TOKEN", crate::support::world::TOKEN)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn");
    wait_for(&log, "run finished", 1);
    // A second repository: after SIGHUP, the pass starts now (polling_interval is 60 s) and
    // sees it.
    w.conf().repo(w.repo("app")).repo(w.repo("other")).write(&w.sb);
    let hup = Instant::now();
    signal(child.id(), "HUP");
    let text = wait_for(&log, "run finished", 2);
    assert!(hup.elapsed() < Duration::from_secs(30), "{text}");
    assert!(text.contains("SIGHUP received"), "{text}");
    assert!(text.contains("first seen: recorded as baseline repo=other"), "{text}");
    // A broken file: logged, and the loop goes on with the last good configuration.
    w.sb.write("sentry.yaml", "repositories: [");
    signal(child.id(), "HUP");
    let text = wait_for(&log, "run finished", 3);
    assert!(text.contains("configuration not reloaded, keeping the last good one"), "{text}");
    signal(child.id(), "TERM");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{}", std::fs::read_to_string(&log).unwrap_or_default());
}

#[test]
fn poll_once_says_at_once_that_it_heard_sigterm() {
    let (w, app) = World::with_app();
    std::fs::write(w.ctrl().join("sleep"), "30").expect("sleep");
    app.commit("main", &[("v", "2")], "v2");
    let log = w.sb.path().join("once.log");
    let mut child =
        w.sb.sentry()
            .args(["poll", "--once"])
            .env("E2E_TOKEN", crate::support::world::TOKEN)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn");
    wait_for(&log, "change detected", 1);
    std::thread::sleep(Duration::from_millis(500)); // into the job's commands
    let term = Instant::now();
    signal(child.id(), "TERM");
    let text = wait_for(&log, "SIGTERM received", 1);
    assert!(term.elapsed() < Duration::from_secs(3), "acknowledged late: {text}");
    let status = child.wait().expect("wait");
    assert!(status.code().is_some(), "exited by itself");
}

// ---------------------------------------------------------------------------------------------
// Item 11: --quiet.

#[test]
fn quiet_prints_only_what_matters() {
    let (w, app) = World::with_app();
    let r = w.sentry(&["poll", "--once", "-q"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "nothing changed: {}", r.all());
    let r = w.sentry(&["--quiet", "validate"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.all());
    app.commit("main", &[("v", "2")], "v2");
    let r = w.sentry(&["poll", "--once", "-q"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("succeeded"), "a deployment is worth a mail: {}", r.stdout);
    // A repository that cannot be checked is worth one too.
    w.conf().repo(w.repo("app")).repo(w.repo("gone")).write(&w.sb);
    let r = w.sentry(&["poll", "--once", "-q", "--output", "json"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.json()["checked"].as_array().is_some_and(|c| c.iter().any(|c| !c["error"].is_null())));
}

// ---------------------------------------------------------------------------------------------
// Item 12: help, usage errors, the seed's syntax, completions and the man page.

#[test]
fn subcommand_help_lists_its_own_options_first_with_examples_and_exit_codes() {
    let sb = Sandbox::new();
    let r = sb.run(&["deploy", "--help"]);
    assert_eq!(r.code, 0);
    let own = r.stdout.find("--commit").expect("own option");
    let global = r.stdout.find("Global options:").expect("global heading");
    assert!(own < global && global < r.stdout.find("--config").expect("global option"), "{}", r.stdout);
    assert!(r.stdout.contains("Examples:") && r.stdout.contains("Exit codes"), "{}", r.stdout);
    let r = sb.run(&["--help"]);
    assert!(r.stdout.contains("Exit codes:") && r.stdout.contains("4  state could not be read"), "{}", r.stdout);
}

#[test]
fn usage_errors_after_parsing_read_like_clap() {
    let (w, app) = World::with_app();
    let r = w.sentry(&["deploy", "--repo", "ap"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.starts_with("error: unknown repository \"ap\"\n"), "{}", r.stderr);
    assert!(r.stderr.contains("tip: did you mean \"app\"?"), "{}", r.stderr);
    assert!(r.stderr.contains("For more information, try 'sentry deploy --help'."), "{}", r.stderr);
    assert!(!r.stderr.contains("ERROR"), "not a log line: {}", r.stderr);
    let r = w.sentry(&["poll", "--once", "--group", "nope"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.starts_with("error: unknown group \"nope\""), "{}", r.stderr);
    let sha = app.head("main").expect("head");
    let r = w.sentry(&["deploy", "--repo", "app", "--commit", &format!("{sha}zz")]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.starts_with("error: --commit"), "{}", r.stderr);
    // JSON callers still get their object.
    let r = w.sentry(&["--output", "json", "deploy", "--repo", "ap"]);
    assert_eq!(r.json()["exit_code"], 2);
}

#[test]
fn the_seeds_command_line_suggests_the_command() {
    let sb = Sandbox::new();
    for (old, new) in [
        (&["-action=validate"][..], "sentry validate"),
        (&["-action", "watch", "-verbose"][..], "sentry poll"),
        (&["--action=trigger"][..], "sentry deploy --repo NAME"),
    ] {
        let r = sb.run(old);
        assert_eq!(r.code, 2, "{old:?}");
        assert!(r.stderr.contains("Go sentry") && r.stderr.contains(&format!("tip: {new}")), "{old:?}: {}", r.stderr);
    }
    let r = sb.run(&["-action", "watch", "-verbose"]);
    assert!(r.stderr.contains("--log-level debug"), "{}", r.stderr);
}

#[test]
fn completions_and_man_page() {
    let sb = Sandbox::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef sentry"),
        ("fish", "complete -c sentry"),
        ("elvish", "edit:completion"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let r = sb.run(&["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.all());
        assert!(
            r.stdout.contains(marker) && r.stdout.contains("validate"),
            "{shell}: {}",
            &r.stdout[..r.stdout.len().min(400)]
        );
    }
    assert_eq!(sb.run(&["completions", "tcsh"]).code, 2);
    let r = sb.run(&["man"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains(".TH sentry") && r.stdout.contains("completions"),
        "{}",
        &r.stdout[..r.stdout.len().min(400)]
    );
    // Neither needs a configuration.
    assert!(!sb.path().join("sentry.yaml").exists());
}

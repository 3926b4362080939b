//! Configuration loading and `sentry validate`, through the real binary.

use crate::support::Sandbox;
use crate::support::config::{Conf, Group, Repo};

/// A repository entry with every field the bad cases below rewrite spelled out.
fn entry(name: &str) -> Repo {
    Repo::new(name).qa_kind("gitlab").project(name)
}

/// A valid two-repository configuration with a group (`alpha` is in it).
fn base_with(alpha: Repo, beta: Repo) -> Conf {
    Conf::new()
        .polling_interval(60)
        .global("timeout", 300)
        .group("g1", Group::parallel().max_parallel(2))
        .repo(alpha.group("g1"))
        .repo(beta)
}

/// The base every bad case mutates as text.
fn base() -> String {
    base_with(entry("alpha"), entry("beta")).yaml()
}

fn validate(sb: &Sandbox, yaml: &str, extra_env: &[(&str, &str)]) -> crate::support::Run {
    let path = sb.write("sentry.yaml", yaml);
    let mut cmd = sb.sentry();
    cmd.args(["validate", "-c"]).arg(&path);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    crate::support::Run::from(cmd.output().expect("run"))
}

#[test]
fn base_config_and_full_example_are_valid() {
    let sb = Sandbox::new();
    let r = validate(&sb, &base(), &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("valid"), "{}", r.stdout);
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sentry.yaml");
    let r = sb.run(&["validate", "-c", example]);
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn config_path_precedence_flag_then_env_then_default() {
    let sb = Sandbox::new();
    sb.write("sentry.yaml", &base());
    sb.write("bad.yaml", "nonsense: [");
    // Default: ./sentry.yaml.
    assert_eq!(sb.run(&["validate"]).code, 0);
    // SENTRY_CONFIG_PATH beats the default.
    let r = crate::support::Run::from(
        sb.sentry().arg("validate").env("SENTRY_CONFIG_PATH", "bad.yaml").output().expect("run"),
    );
    assert_eq!(r.code, 2);
    // --config beats the environment.
    let r = crate::support::Run::from(
        sb.sentry()
            .args(["validate", "--config", "sentry.yaml"])
            .env("SENTRY_CONFIG_PATH", "bad.yaml")
            .output()
            .expect("run"),
    );
    assert_eq!(r.code, 0, "{}", r.all());
}

/// Each bad configuration: exit 2 and the message names the field path.
#[test]
fn bad_configurations_name_the_field() {
    let b = base();
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed yaml", "repositories: [\n  - name: a\n".into(), "repositories"),
        ("unknown top-level field", format!("colour: blue\n{b}"), "colour"),
        ("unknown global field", b.replace("  timeout: 300", "  timeout: 300\n  timeuot: 5"), "global.timeuot"),
        ("unknown group field", b.replace("    max_parallel: 2", "    max_paralel: 2"), "groups.g1.max_paralel"),
        (
            "unknown monitor field",
            b.replacen("      branches: [\"main\"]", "      branches: [\"main\"]\n      brnach: x", 1),
            "repositories[0].monitor.brnach",
        ),
        (
            "unknown deploy field (second repo)",
            {
                let i = b.rfind("      qa_repo_branch: \"main\"").expect("second");
                format!("{}      qa_branch: x\n{}", &b[..i], &b[i..])
            },
            "repositories[1].deploy.qa_branch",
        ),
        (
            "missing env var",
            b.replacen("project_name: \"alpha\"", "project_name: ${NOPE_NOT_SET}", 1),
            "repositories[0].deploy.project_name",
        ),
        (
            "bad regex",
            b.replacen("branches: [\"main\"]", "branches: [\"feat/(\"]", 1),
            "repositories[0].monitor.branches[0]",
        ),
        ("empty branches", b.replacen("branches: [\"main\"]", "branches: []", 1), "repositories[0].monitor.branches"),
        (
            "bad project_name",
            b.replacen("project_name: \"alpha\"", "project_name: Alpha_1", 1),
            "repositories[0].deploy.project_name",
        ),
        (
            "project_name too long",
            b.replacen("project_name: \"alpha\"", &format!("project_name: {}", "a".repeat(64)), 1),
            "repositories[0].deploy.project_name",
        ),
        ("unknown group", b.replace("    group: \"g1\"", "    group: g2"), "repositories[0].group"),
        ("duplicate name", b.replace("name: \"beta\"", "name: alpha"), "repositories[1].name"),
        ("bad name chars", b.replace("name: \"beta\"", "name: \"be ta\""), "repositories[1].name"),
        ("name with ../", b.replace("name: \"beta\"", "name: ../etc"), "repositories[1].name"),
        ("polling_interval 30", b.replace("polling_interval: 60", "polling_interval: 30"), "polling_interval"),
        (
            "bad repo url",
            b.replacen("repo_url: \"https://github.com/acme/alpha\"", "repo_url: github.com/acme/alpha", 1),
            "repositories[0].monitor.repo_url",
        ),
        (
            "ftp scheme",
            b.replacen("qa_repo_url: \"https://gitlab.com/acme/qa\"", "qa_repo_url: ftp://x/qa", 1),
            "repositories[0].deploy.qa_repo_url",
        ),
        (
            "option-like url",
            b.replacen("qa_repo_url: \"https://gitlab.com/acme/qa\"", "qa_repo_url: \"--upload-pack=touch /tmp/x\"", 1),
            "repositories[0].deploy.qa_repo_url",
        ),
        ("wrong type", b.replace("  timeout: 300", "  timeout: soon"), "global.timeout"),
        (
            "commands not a list",
            b.replacen("      commands:\n        - \"echo deploying\"", "      commands: 5", 1),
            "repositories[0].deploy.commands",
        ),
        (
            "empty commands",
            b.replacen("      commands:\n        - \"echo deploying\"", "      commands: []", 1),
            "repositories[0].deploy.commands",
        ),
        (
            "username without token",
            b.replacen(
                "      repo_type: \"github\"\n",
                "      repo_type: \"github\"\n      auth:\n        username: bob\n",
                1,
            ),
            "repositories[0].monitor.auth.token",
        ),
        (
            "unknown repo_type",
            b.replacen("repo_type: \"github\"", "repo_type: bitbucket", 1),
            "repositories[0].monitor.repo_type",
        ),
        (
            "unknown strategy",
            b.replace("execution_strategy: \"parallel\"", "execution_strategy: sideways"),
            "groups.g1.execution_strategy",
        ),
        ("max_parallel 0", b.replace("max_parallel: 2", "max_parallel: 0"), "groups.g1.max_parallel"),
        ("zero timeout", b.replace("  timeout: 300", "  timeout: 0"), "global.timeout"),
        ("negative timeout", b.replace("  timeout: 300", "  timeout: -5"), "global.timeout"),
        (
            "unreadable ca_file",
            b.replace("  timeout: 300", "  timeout: 300\n  ca_file: /nonexistent/ca.pem"),
            "global.ca_file",
        ),
        (
            "bad on_first_seen",
            b.replace("  timeout: 300", "  timeout: 300\n  on_first_seen: maybe"),
            "global.on_first_seen",
        ),
        (
            "bad qa branch",
            b.replacen("qa_repo_branch: \"main\"", "qa_repo_branch: \"-x\"", 1),
            "repositories[0].deploy.qa_repo_branch",
        ),
        ("no repositories", "repositories: []\n".into(), "repositories"),
        ("missing repositories", "polling_interval: 60\n".into(), "repositories"),
        (
            "bad state location",
            b.replace("  timeout: 300", "  timeout: 300\n  state: \"configmap:Bad_Name\""),
            "global.state",
        ),
    ];
    assert!(cases.len() >= 20);
    let sb = Sandbox::new();
    for (what, yaml, path) in &cases {
        let r = validate(&sb, yaml, &[]);
        assert_eq!(r.code, 2, "{what}: expected exit 2\n{}", r.all());
        assert!(r.stderr.contains(path), "{what}: message does not name {path:?}:\n{}", r.stderr);
        assert!(r.stderr.contains("sentry.yaml"), "{what}: message does not name the file:\n{}", r.stderr);
        let j = crate::support::Run::from(sb.sentry().args(["--output", "json", "validate"]).output().expect("run"));
        assert_eq!(j.code, 2, "{what} (json)");
        let doc = j.json();
        assert_eq!(doc["valid"], false);
        let errors = doc["errors"].as_array().expect("errors array");
        assert!(
            errors.iter().any(|e| e["path"].as_str().is_some_and(|p| p.contains(path)) && e["message"].is_string()),
            "{what}: json errors lack {path:?}: {doc}"
        );
    }
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let sb = Sandbox::new();
    let yaml = base()
        .replace("polling_interval: 60", "polling_interval: 10")
        .replace("project_name: \"beta\"", "project_name: BETA")
        .replacen("branches: [\"main\"]", "branches: [\"(\"]", 1);
    let r = crate::support::Run::from(
        sb.sentry()
            .args(["validate", "--output", "json", "-c"])
            .arg(sb.write("sentry.yaml", &yaml))
            .output()
            .expect("run"),
    );
    assert_eq!(r.code, 2);
    let doc = r.json();
    let errors = doc["errors"].as_array().expect("errors");
    let got: Vec<(String, u64)> = errors
        .iter()
        .map(|e| (e["path"].as_str().unwrap_or("").to_string(), e["line"].as_u64().unwrap_or(0)))
        .collect();
    let line_of = |needle: &str| yaml.lines().position(|l| l.contains(needle)).map(|i| i as u64 + 1).unwrap_or(0);
    assert_eq!(
        got,
        [
            ("polling_interval".to_string(), 1),
            ("repositories[0].monitor.branches[0]".to_string(), line_of("branches: [\"(\"]")),
            ("repositories[1].deploy.project_name".to_string(), line_of("project_name: BETA")),
        ]
    );
}

#[test]
fn env_expansion_rules() {
    let sb = Sandbox::new();
    let with_alpha = |alpha: Repo| base_with(alpha, entry("beta")).yaml();
    // Default used in a value; commands are shell code, left entirely to the shell.
    let yaml = with_alpha(
        entry("alpha").project("${PROJ:-alpha-default}").commands(["echo $$ costs \\$5 in $(pwd) for ${HOME}"]),
    );
    let r = validate(&sb, &yaml, &[]);
    assert_eq!(r.code, 0, "{}", r.all());
    // A value containing ": " or a newline stays one string: the YAML structure does not change.
    let yaml = with_alpha(entry("alpha").env("TRICKY", "${TRICKY}"));
    let r = validate(&sb, &yaml, &[("TRICKY", "echo a: b\nfoo: [1, 2]\n- rm -rf /")]);
    assert_eq!(r.code, 0, "{}", r.all());
    // And an injected value cannot smuggle an invalid field in: it is just a string.
    let yaml = with_alpha(entry("alpha").project("${TRICKY}"));
    let r = validate(&sb, &yaml, &[("TRICKY", "alpha\ncommands: []")]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("repositories[0].deploy.project_name"), "{}", r.stderr);
    // Expansion happens in values, never in keys.
    let yaml = with_alpha(entry("alpha").env("${KEY}", "v"));
    let r = validate(&sb, &yaml, &[("KEY", "GOOD")]);
    assert_eq!(r.code, 2, "a key is not expanded, and `${{KEY}}` is not a valid variable name");
    assert!(r.stderr.contains("repositories[0].deploy.env"), "{}", r.stderr);
}

#[test]
fn token_never_appears_in_validate_output_at_any_level() {
    let token = "tok-ZXCVBNM-0123456789";
    let sb = Sandbox::new();
    let alpha = |auth_token: &str| entry("alpha").monitor_auth(Some("bob"), auth_token);
    let with_auth = base_with(alpha("${THE_TOKEN}"), entry("beta")).yaml();
    // Valid, and invalid on the very repository that holds the token.
    let invalid = base_with(alpha("${THE_TOKEN}").project("NOT_VALID"), entry("beta")).yaml();
    let invalid_token = base_with(alpha("${THE_TOKEN} trailing"), entry("beta")).yaml();
    for yaml in [&with_auth, &invalid, &invalid_token] {
        for level in ["error", "warn", "info", "debug", "trace"] {
            for output in ["human", "json"] {
                let path = sb.write("sentry.yaml", yaml);
                let r = crate::support::Run::from(
                    sb.sentry()
                        .args(["--log-level", level, "--output", output, "validate", "-c"])
                        .arg(&path)
                        .env("THE_TOKEN", token)
                        .output()
                        .expect("run"),
                );
                assert!(!r.all().contains(token), "token leaked at {level}/{output}: {}", r.all());
                assert!(!r.all().contains("ZXCVBNM"), "part of the token leaked at {level}/{output}");
            }
        }
    }
}

#[test]
fn missing_file_and_non_utf8_are_clear_errors() {
    let sb = Sandbox::new();
    let r = sb.run(&["validate", "-c", "nope.yaml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("nope.yaml"), "{}", r.stderr);
    std::fs::write(sb.path().join("bin.yaml"), b"repositories: \xff\xfe\n").expect("write");
    let r = sb.run(&["validate", "-c", "bin.yaml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("UTF-8"), "{}", r.stderr);
}

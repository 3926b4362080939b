//! Hostile configuration and state: every case is a clear error, a non-zero exit, nothing written.

use crate::support::config::{Conf, Repo};
use crate::support::{Run, Sandbox};
use std::time::{Duration, Instant};

/// One repository, every field the hostile cases rewrite spelled out.
fn app() -> Repo {
    Repo::new("app").qa_kind("gitlab").project("app")
}

/// The valid document the hostile cases mutate as text.
fn base() -> String {
    Conf::new().repo(app()).yaml()
}

/// Runs `validate` and `poll --once` on `yaml` (bytes), asserting exit 2, a message, and that no
/// state file and no job directory appeared.
fn assert_rejected(what: &str, yaml: &[u8], must_mention: &str) {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("sentry.yaml"), yaml).expect("write");
    let started = Instant::now();
    for args in [&["validate"][..], &["poll", "--once"][..]] {
        let r = sb.run(args);
        assert_eq!(r.code, 2, "{what} ({args:?}): expected exit 2, got {}\n{}", r.code, r.all());
        assert!(
            r.stderr.to_lowercase().contains(&must_mention.to_lowercase()),
            "{what}: message lacks {must_mention:?}:\n{}",
            r.stderr
        );
    }
    assert!(started.elapsed() < Duration::from_secs(20), "{what}: took {:?}", started.elapsed());
    assert!(!sb.path().join("sentry-state.json").exists(), "{what}: state was written");
    assert!(!sb.path().join("tmp").exists(), "{what}: a job directory was created");
}

#[test]
fn hostile_configurations_are_refused() {
    let b = base();
    let bomb = {
        let mut s = String::from("a0: &a0 [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
        for i in 1..10 {
            s.push_str(&format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 9].join(",")));
        }
        s.push_str("repositories: *a9\n");
        s
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "deep nesting",
            format!("repositories: {}{}\n", "[".repeat(50_000), "]".repeat(50_000)).into_bytes(),
            "repositories",
        ),
        (
            "deep mapping nesting",
            (0..2000).map(|i| format!("{}a{i}:\n", " ".repeat(i))).collect::<String>().into_bytes(),
            "a0",
        ),
        ("alias bomb", bomb.into_bytes(), "a0"),
        (
            "alias bomb inside commands",
            b.replacen("      commands:\n        - \"echo deploying\"", "      commands: &c [*c]", 1).into_bytes(),
            "commands",
        ),
        (
            "huge string",
            format!("repositories:\n  - name: \"{}\"\n", "n".repeat(4_000_000)).into_bytes(),
            "repositories[0]",
        ),
        ("huge file", vec![b'#'; 65 * 1024 * 1024], "larger than"),
        ("non-UTF-8 bytes", [b"repositories:\n  - name: \xff\xfe\xfd\n".as_slice()].concat(), "UTF-8"),
        ("NUL byte", b"repositories:\n  - name: a\x00b\n".to_vec(), "repositories"),
        ("name with ../", b.replace("name: \"app\"", "name: ../../etc").into_bytes(), "repositories[0].name"),
        ("name with slash", b.replace("name: \"app\"", "name: a/b").into_bytes(), "repositories[0].name"),
        ("name dot-dot", b.replace("name: \"app\"", "name: \"..\"").into_bytes(), "repositories[0].name"),
        ("name with newline", b.replace("name: \"app\"", "name: \"a\\nb\"").into_bytes(), "repositories[0].name"),
        (
            "qa url option",
            b.replace(
                "qa_repo_url: \"https://gitlab.com/acme/qa\"",
                "qa_repo_url: \"-oProxyCommand=touch /tmp/pwned\"",
            )
            .into_bytes(),
            "qa_repo_url",
        ),
        (
            "qa url --upload-pack",
            b.replace("qa_repo_url: \"https://gitlab.com/acme/qa\"", "qa_repo_url: \"--upload-pack=touch /tmp/pwned\"")
                .into_bytes(),
            "qa_repo_url",
        ),
        (
            "qa url ext::",
            b.replace("qa_repo_url: \"https://gitlab.com/acme/qa\"", "qa_repo_url: \"ext::sh -c touch% /tmp/pwned\"")
                .into_bytes(),
            "qa_repo_url",
        ),
        (
            "qa url fd::",
            b.replace("qa_repo_url: \"https://gitlab.com/acme/qa\"", "qa_repo_url: \"fd::17\"").into_bytes(),
            "qa_repo_url",
        ),
        (
            "monitor url ext::",
            b.replace("repo_url: \"https://github.com/acme/app\"", "repo_url: \"ext::sh -c id\"")
                .replace("repo_type: \"github\"", "repo_type: git")
                .into_bytes(),
            "repo_url",
        ),
        (
            "monitor url file for api forge",
            b.replace("repo_url: \"https://github.com/acme/app\"", "repo_url: file:///etc").into_bytes(),
            "repo_url",
        ),
        (
            "url with credentials",
            b.replace("qa_repo_url: \"https://gitlab.com/acme/qa\"", "qa_repo_url: https://u:pw@gitlab.com/acme/qa")
                .into_bytes(),
            "credentials",
        ),
        (
            "url with spaces",
            b.replace("qa_repo_url: \"https://gitlab.com/acme/qa\"", "qa_repo_url: \"https://gitlab.com/a b\"")
                .into_bytes(),
            "qa_repo_url",
        ),
        (
            "project_name shell metachars",
            b.replace("project_name: \"app\"", "project_name: \"app;rm -rf /\"").into_bytes(),
            "project_name",
        ),
        (
            "project_name command substitution",
            b.replace("project_name: \"app\"", "project_name: \"$(id)\"").into_bytes(),
            "project_name",
        ),
        (
            "qa branch option",
            b.replace("qa_repo_branch: \"main\"", "qa_repo_branch: \"--upload-pack=x\"").into_bytes(),
            "qa_repo_branch",
        ),
        (
            "qa branch with space",
            b.replace("qa_repo_branch: \"main\"", "qa_repo_branch: \"a b\"").into_bytes(),
            "qa_repo_branch",
        ),
        (
            "qa branch revision syntax",
            b.replace("qa_repo_branch: \"main\"", "qa_repo_branch: \"main@{1}\"").into_bytes(),
            "qa_repo_branch",
        ),
        (
            "regex too big",
            b.replace("branches: [\"main\"]", &format!("branches: [\"{}\"]", "(a{1000}){1000}")).into_bytes(),
            "branches[0]",
        ),
        (
            "env name injection",
            b.replace("      commands:", "      env:\n        \"A=B; rm\": x\n      commands:").into_bytes(),
            "deploy.env",
        ),
        (
            "env overrides SENTRY_",
            b.replace("      commands:", "      env:\n        SENTRY_COMMIT: x\n      commands:").into_bytes(),
            "deploy.env.SENTRY_COMMIT",
        ),
        (
            "token with newline",
            b.replace(
                "      repo_type: \"github\"\n",
                "      repo_type: \"github\"\n      auth:\n        token: \"abc\\ndef\"\n",
            )
            .into_bytes(),
            "auth.token",
        ),
        (
            "tag trickery",
            b.replace("polling_interval", "x").replace("repositories:", "repositories: !!binary aGVsbG8=").into_bytes(),
            "repositories",
        ),
        ("document stream", format!("{b}---\n{b}").into_bytes(), ""),
        ("scalar document", b"just a string\n".to_vec(), ""),
        ("empty document", Vec::new(), ""),
        ("negative interval", format!("polling_interval: -60\n{b}").into_bytes(), "polling_interval"),
        ("float interval", format!("polling_interval: 60.5\n{b}").into_bytes(), "polling_interval"),
        ("huge interval", format!("polling_interval: 99999999999999999999999\n{b}").into_bytes(), "polling_interval"),
    ];
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for (what, yaml, mention) in &cases {
        assert_rejected(what, yaml, mention);
    }
}

#[test]
fn catastrophic_backtracking_regex_is_harmless() {
    // `(a+)+$` takes exponential time in backtracking engines; the regex crate is linear.
    let sb = Sandbox::new();
    Conf::new().repo(app().branches(["(a+)+b"])).write(&sb);
    let r = sb.run(&["validate"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let config = sentry::config::load(&sb.path().join("sentry.yaml")).expect("valid");
    let started = Instant::now();
    let evil = format!("{}c", "a".repeat(100_000));
    assert!(!config.repositories[0].monitor.matches(&evil));
    assert!(started.elapsed() < Duration::from_secs(5), "matching took {:?}", started.elapsed());
}

/// A realistic state document to cut into pieces.
fn real_state() -> String {
    let sha = |c: char| c.to_string().repeat(40);
    format!(
        r#"{{
  "last_run": {{"at": "2026-11-22T12:00:00Z", "run_id": "abc"}},
  "repos": {{
    "app": {{
      "branches": {{
        "main": {{"deployed": "{a}", "deployed_at": "2026-11-22T12:00:00Z", "seen": "{b}",
                  "failure": {{"at": "2026-11-22T12:00:00Z", "attempts": 2, "commit": "{b}", "error": "command 0 `x` exited 1"}}}},
        "release/1.0": {{"deployed": "{c}", "seen": "{c}"}}
      }},
      "last_checked": "2026-11-22T12:00:00Z",
      "validators": {{"etags": ["W/\"abc\""], "fingerprint": "f", "heads": {{"main": "{b}"}}}}
    }}
  }},
  "version": 1
}}
"#,
        a = sha('a'),
        b = sha('b'),
        c = sha('c')
    )
}

#[test]
fn state_truncated_at_every_offset_is_refused() {
    let text = real_state();
    sentry::state::from_json("x", text.as_bytes()).expect("the full document is valid");
    let bytes = text.as_bytes();
    // Every proper prefix that is not the whole document minus trailing whitespace is corrupt.
    let meaningful = text.trim_end().len();
    for cut in 0..meaningful {
        assert!(
            sentry::state::from_json("x", &bytes[..cut]).is_err(),
            "a state truncated at byte {cut} was accepted: {:?}",
            &text[..cut]
        );
    }
    // And through the binary, for a sample of offsets: exit 4, file untouched, nothing else written.
    let sb = Sandbox::new();
    sb.write("sentry.yaml", &base());
    for cut in (0..meaningful).step_by(37).chain([1, meaningful - 1]) {
        let path = sb.path().join("sentry-state.json");
        std::fs::write(&path, &bytes[..cut]).expect("write");
        for args in [&["status"][..], &["poll", "--once"][..], &["deploy", "--repo", "app"][..]] {
            let r: Run = sb.run(args);
            assert_eq!(r.code, 4, "cut {cut} {args:?}: {}", r.all());
            assert_eq!(std::fs::read(&path).expect("read"), &bytes[..cut], "cut {cut}: state modified");
        }
    }
}

#[test]
fn hostile_states_are_refused() {
    let sha = "a".repeat(40);
    let cases = [
        ("not json", "garbage".to_string()),
        ("array", "[]".into()),
        ("newer version", "{\"version\": 99, \"repos\": {}}".into()),
        ("negative version", "{\"version\": -1}".into()),
        ("version string", "{\"version\": \"1\"}".into()),
        ("unknown field", "{\"version\": 1, \"repos\": {}, \"surprise\": true}".into()),
        ("short sha", "{\"version\": 1, \"repos\": {\"a\": {\"branches\": {\"main\": {\"seen\": \"abc\"}}}}}".into()),
        ("wrong type", "{\"version\": 1, \"repos\": {\"a\": {\"branches\": []}}}".into()),
        ("deep nesting", format!("{{\"version\": 1, \"repos\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000))),
        (
            "attempts overflow",
            format!(
                "{{\"version\": 1, \"repos\": {{\"a\": {{\"branches\": {{\"m\": {{\"failure\": {{\"commit\": \"{sha}\", \"attempts\": 99999999999, \"error\": \"\", \"at\": \"\"}}}}}}}}}}}}"
            ),
        ),
    ];
    for (what, text) in cases {
        assert!(sentry::state::from_json("x", text.as_bytes()).is_err(), "{what} accepted");
    }
    let mut bad = b"{\"version\": 1, \"repos\": {\"\xff\": {}}}".to_vec();
    assert!(sentry::state::from_json("x", &bad).is_err(), "non-UTF-8 accepted");
    bad.clear();
}

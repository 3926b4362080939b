use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "TOKEN" => Some("s3cr3t-token".into()),
        "USER" => Some("bob".into()),
        _ => None,
    }
}

fn parse_str(text: &str) -> Result<Config, ConfigError> {
    parse(Path::new("test.yaml"), text, &env)
}

const MINIMAL: &str = "
repositories:
  - name: app
    monitor:
      repo_url: https://github.com/acme/app
      branches: [main]
    deploy:
      qa_repo_url: https://gitlab.com/acme/qa
      commands: [\"true\"]
";

#[test]
fn minimal_gets_defaults() {
    let c = parse_str(MINIMAL).expect("valid");
    assert_eq!(c.polling_interval, Duration::from_secs(60));
    assert_eq!(c.global.timeout, Duration::from_secs(300));
    assert_eq!(c.global.concurrency, 16);
    assert_eq!(c.global.max_attempts, 3);
    assert_eq!(c.global.on_first_seen, OnFirstSeen::Record);
    let r = &c.repositories[0];
    assert_eq!(r.monitor.kind, ForgeKind::Github);
    assert_eq!(r.deploy.qa_repo_branch, "main");
    assert_eq!(r.deploy.project_name, "app");
    assert!(r.monitor.matches("main"));
    assert!(!r.monitor.matches("main2"));
}

#[test]
fn patterns_are_anchored() {
    let text = MINIMAL.replace("[main]", "[\"release/.*\", \"v[0-9]+\"]");
    let c = parse_str(&text).expect("valid");
    let m = &c.repositories[0].monitor;
    assert!(m.matches("release/1.0"));
    assert!(!m.matches("old-release/1"));
    assert!(m.matches("v12"));
    assert!(!m.matches("v12x"));
}

#[test]
fn problems_are_collected_with_paths_and_lines() {
    let text = "
polling_interval: 30
repositories:
  - name: app
    group: nope
    monitor:
      repo_url: https://github.com/acme/app
      branches: [\"(\"]
    deploy:
      qa_repo_url: https://gitlab.com/acme/qa
      project_name: Bad_Name
      commands: []
";
    let e = parse_str(text).expect_err("invalid");
    let paths: Vec<_> = e.problems.iter().map(|p| (p.path.as_str(), p.line)).collect();
    assert_eq!(
        paths,
        [
            ("polling_interval", Some(2)),
            ("repositories[0].group", Some(5)),
            ("repositories[0].monitor.branches[0]", Some(8)),
            ("repositories[0].deploy.project_name", Some(11)),
            ("repositories[0].deploy.commands", Some(12)),
        ]
    );
}

#[test]
fn token_is_a_secret_and_expanded() {
    let text = MINIMAL.replace(
        "      branches: [main]",
        "      branches: [main]\n      auth:\n        username: ${USER}\n        token: ${TOKEN}",
    );
    let c = parse_str(&text).expect("valid");
    let auth = &c.repositories[0].monitor.auth;
    assert_eq!(auth.username.as_deref(), Some("bob"));
    assert_eq!(auth.token.as_ref().map(Secret::expose), Some("s3cr3t-token"));
    assert!(!format!("{c:?}").contains("s3cr3t-token"));
}

#[test]
fn urls() {
    let web = ["http", "https"];
    assert!(check_url("https://github.com/a/b", &web, false).is_ok());
    assert!(check_url("http://127.0.0.1:8080/a/b.git", &web, false).is_ok());
    assert!(check_url("ftp://x/y", &web, false).is_err());
    assert!(check_url("github.com/a/b", &web, false).is_err());
    assert!(check_url("https://user:pw@github.com/a", &web, false).is_err());
    assert!(check_url("http://host:99999/a", &web, false).is_err());
    let git = ["http", "https", "ssh", "git", "file"];
    assert!(check_url("git@github.com:a/b.git", &git, true).is_ok());
    assert!(check_url("file:///srv/repo.git", &git, true).is_ok());
    assert!(check_url("-uhttps://x", &git, true).is_err());
    assert!(check_url("ext::sh -c touch% /tmp/pwned", &git, true).is_err());
    assert!(check_url("ext::sh", &git, true).is_err());
    assert!(check_url("git@github.com:a/b.git", &git, false).is_err());
}

#[test]
fn dns_labels() {
    for ok in ["a", "rag", "rag-service-2", &"a".repeat(63)] {
        assert!(check_dns_label(ok).is_ok(), "{ok}");
    }
    for bad in ["", "-a", "a-", "A", "a_b", "a.b", "a;rm", &"a".repeat(64)] {
        assert!(check_dns_label(bad).is_err(), "{bad}");
    }
}

#[test]
fn branch_names() {
    assert!(check_branch_name("main").is_ok());
    assert!(check_branch_name("release/1.0").is_ok());
    for bad in ["", "-b", "a..b", "a b", "a~1", "x.lock", "a:b"] {
        assert!(check_branch_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn branch_patterns_match_whole_names_whether_plain_or_regex() {
    let exact = |p: &str| matches!(BranchPattern::new(p), Ok(BranchPattern::Exact(_)));
    assert!(exact("main") && exact("feature/login-2") && exact("rel_1") && exact("résumé"));
    assert!(!exact("dev.*") && !exact("release-1.2") && !exact("a|b") && !exact("[ab]"));
    let names = ["main", "main2", "xmain", "feature/login-2", "release-1.2", "release-1x2", "dev", "dev-x", "a", "b"];
    // Every pattern agrees with the anchored regex it stands for, on every name.
    for p in ["main", "feature/login-2", "release-1.2", "dev.*", "a|b", "[ab]", "résumé"] {
        let pattern = BranchPattern::new(p).expect("valid");
        let re = regex::Regex::new(&format!("^(?:{p})$")).expect("regex");
        for n in names {
            assert_eq!(pattern.is_match(n), re.is_match(n), "pattern {p:?} on {n:?}");
        }
    }
    assert!(BranchPattern::new("(").is_err());
}

#[test]
fn ssh_key_and_known_hosts_paths_and_the_http_refusal() {
    let yaml = "global:\n  known_hosts: ssh/known_hosts\nrepositories:\n  - name: a\n    monitor:\n      repo_url: git@h:o/a.git\n      branches: [main]\n      repo_type: git\n      auth:\n        ssh_key_file: ssh/id\n    deploy:\n      qa_repo_url: ssh://git@h/qa.git\n      commands: [\"true\"]\n      auth:\n        ssh_key_file: /abs/id\n";
    let c = parse(Path::new("/etc/sentry/sentry.yaml"), yaml, &|_| None).expect("valid");
    let r = &c.repositories[0];
    assert_eq!(c.global.known_hosts.as_deref(), Some(Path::new("/etc/sentry/ssh/known_hosts")));
    assert_eq!(r.monitor.auth.ssh_key_file.as_deref(), Some(Path::new("/etc/sentry/ssh/id")));
    assert_eq!(r.deploy.auth.ssh_key_file.as_deref(), Some(Path::new("/abs/id")));
    assert_eq!(r.deploy.auth.known_hosts, c.global.known_hosts);
    let bad = yaml.replace("git@h:o/a.git", "https://h/o/a.git");
    let e = parse(Path::new("/etc/sentry/sentry.yaml"), &bad, &|_| None).expect_err("refused");
    assert!(e.problems.iter().any(|p| p.path == "repositories[0].monitor.auth.ssh_key_file"), "{e}");
}

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

/// Issue 15: every duration and count of the config, driven with arbitrary values, is either
/// accepted within its SPEC §2 bound or refused with a problem naming it; never a panic, and
/// every accepted duration can be added to the clock.
#[test]
fn every_duration_and_count_field_is_bounded_for_arbitrary_values() {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut values =
        vec![0, 1, 59, 60, 3600, 3601, 604_800, 604_801, u64::from(u32::MAX), 1 << 53, i64::MAX as u64, u64::MAX];
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        values.push(x >> (x % 64));
    }
    let fields = [
        ("polling_interval", ""),
        ("timeout", "global"),
        ("http_timeout", "global"),
        ("notify_timeout", "global"),
        ("concurrency", "global"),
        ("max_attempts", "global"),
        ("history", "global"),
        ("global_timeout", "group"),
        ("max_parallel", "group"),
    ];
    let base = MINIMAL.replace("  - name: app\n", "  - name: app\n    group: g\n");
    for (field, section) in fields {
        for v in &values {
            let group = "groups:\n  g:\n    execution_strategy: parallel\n";
            let text = match section {
                "" => format!("{field}: {v}\n{group}{base}"),
                "global" => format!("global:\n  {field}: {v}\n{group}{base}"),
                _ => format!("{group}    {field}: {v}\n{base}"),
            };
            match parse_str(&text) {
                Ok(c) => {
                    let now = std::time::Instant::now();
                    for d in [c.polling_interval, c.global.timeout, c.global.http_timeout, c.global.notify_timeout] {
                        assert!(now.checked_add(d).is_some(), "{field}: {v}");
                        assert!(d <= Duration::from_secs(MAX_DURATION_S), "{field}: {v}");
                    }
                    assert!(c.global.concurrency <= MAX_CONCURRENCY as usize);
                }
                Err(e) => assert!(e.problems.iter().any(|p| p.path.ends_with(field)), "{field}: {v}: {e}"),
            }
        }
    }
}

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
    assert_eq!(c.global.github_api, GithubApi::Graphql);
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
/// A document that sets every field of the `tree` table, each in the shape it names.
fn every_field(section: &tree::Section, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for f in section.fields {
        out.push_str(&format!("{pad}{}:", f.name));
        render_shape(f.shape, indent, out);
    }
}

fn render_shape(shape: tree::Shape, indent: usize, out: &mut String) {
    use tree::Shape;
    let pad = " ".repeat(indent + 2);
    match shape {
        Shape::Text | Shape::Shell => out.push_str(" \"x\"\n"),
        Shape::Seconds | Shape::Count => out.push_str(" 1\n"),
        Shape::Bool => out.push_str(" true\n"),
        Shape::List(item) => {
            out.push('\n');
            out.push_str(&format!("{pad}-"));
            match item {
                Shape::Struct(s) => {
                    out.push('\n');
                    every_field(s, indent + 4, out);
                }
                other => render_shape(*other, indent + 2, out),
            }
        }
        Shape::Struct(s) => {
            out.push('\n');
            every_field(s, indent + 2, out);
        }
        Shape::Dict(item) => {
            out.push_str(&format!("\n{pad}k:"));
            render_shape(*item, indent + 2, out);
        }
    }
}

/// serde's list of the fields a section accepts, from its "unknown field" message.
fn serde_fields(doc: &str) -> Vec<String> {
    let Err(p) = read_yaml(doc) else { panic!("zzz was accepted:\n{doc}") };
    let list = p.message.split("expected one of ").nth(1).unwrap_or_else(|| panic!("{}", p.message));
    let mut fields: Vec<String> = list.split(", ").map(|f| f.trim_matches('`').to_string()).collect();
    fields.sort();
    fields
}

#[test]
fn the_tree_table_lists_exactly_the_fields_of_raw() {
    let mut doc = String::new();
    every_field(&tree::ROOT, 0, &mut doc);
    assert!(read_yaml(&doc).is_ok(), "serde refuses the table's document:\n{doc}");
    let docs = tree::read(&doc, yaml_options(&doc)).expect("tree");
    assert_eq!(tree::problems(&docs, &|_| Some("v".into())).problems, [], "{doc}");
    // And raw has no field the table lacks: serde names them all when it meets `zzz`.
    let sections: [(&tree::Section, &str); 6] = [
        (&tree::ROOT, "repositories:"),
        (&tree::GLOBAL, "global:"),
        (&tree::GROUP, "  k:"),
        (&tree::REPOSITORY, "  -\n"),
        (&tree::MONITOR, "    monitor:"),
        (&tree::DEPLOY, "    deploy:"),
    ];
    for (section, anchor) in sections {
        let at = doc.find(anchor).unwrap_or_else(|| panic!("{anchor:?} in\n{doc}")) + anchor.len();
        let line_end = doc[at..].find('\n').map_or(doc.len(), |i| at + i + 1);
        let indent = doc[line_end..].chars().take_while(|c| *c == ' ').count();
        let (indent, at) = if section.name == "the top level" { (0, 0) } else { (indent, line_end) };
        let mutated = format!("{}{}zzz: 1\n{}", &doc[..at], " ".repeat(indent), &doc[at..]);
        let mut table: Vec<String> = section.fields.iter().map(|f| f.name.to_string()).collect();
        table.sort();
        assert_eq!(serde_fields(&mutated), table, "{}", section.name);
    }
}

#[test]
fn structural_problems_are_all_reported_at_once() {
    let text = "
global:
  timeout: soon
  tmpdir: /x
  webhook_url: \"${NOT_SET_A}\"
repositories:
  - name: app
    monitor:
      repo_url: https://github.com/acme/app
      branches: main
      webhook_url: x
    deploy:
      qa_repo_url: ${NOT_SET_B}
";
    let e = parse_str(text).expect_err("invalid");
    let got: Vec<_> = e.problems.iter().map(|p| (p.path.as_str(), p.line, p.message.as_str())).collect();
    let paths: Vec<_> = got.iter().map(|(p, l, _)| (*p, *l)).collect();
    assert_eq!(
        paths,
        [
            ("global.timeout", Some(3)),
            ("global.tmpdir", Some(4)),
            ("global.webhook_url", Some(5)),
            ("repositories[0].monitor.branches", Some(10)),
            ("repositories[0].monitor.webhook_url", Some(11)),
            ("repositories[0].deploy.qa_repo_url", Some(13)),
            ("repositories[0].deploy.commands", Some(13)),
        ],
        "{got:#?}"
    );
    assert!(got[0].2.contains("a whole number of seconds, e.g. 300"), "{got:?}");
    assert!(got[1].2.contains("did you mean `tmp_dir`"), "{got:?}");
    assert!(got[2].2.contains("NOT_SET_A is not set"), "{got:?}");
    assert!(got[3].2.contains("branches: [main]"), "{got:?}");
    assert!(got[4].2.contains("belongs in global or repositories[]"), "{got:?}");
}

#[test]
fn empty_means_unset_and_unbraced_variables_are_refused() {
    let text = MINIMAL.replace(
        "      branches: [main]",
        "      branches: [main]\n      api_url: \"\"\n      auth:\n        username: \"\"\n        token: \"${NO_TOKEN:-}\"",
    ) + "    webhook_url: \"\"\n";
    let c = parse_str(&text).expect("valid");
    let r = &c.repositories[0];
    assert!(r.webhook.is_none() && r.monitor.api_url.is_none() && r.monitor.auth.token.is_none());
    let text =
        MINIMAL.replace("      branches: [main]", "      branches: [main]\n      auth:\n        token: \"$TOKEN\"");
    let e = parse_str(&text).expect_err("unbraced");
    assert!(e.problems[0].message.contains("token: \"${TOKEN}\""), "{e}");
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
}

#[test]
fn commands_are_not_expanded_and_their_variables_are_checked() {
    let text = MINIMAL
        .replace(
            "commands: [\"true\"]",
            "commands: [\"echo ${TOKEN} $USER $MISSING ${OPTIONAL:-x} $SENTRY_COMMIT $SENTRY_COMIT $$ $LOCAL\", \"LOCAL=1\"]",
        )
        .replace("      branches: [main]", "      branches: [main]\n      auth:\n        token: \"${TOKEN}\"");
    let c = parse_str(&text).expect("valid");
    assert_eq!(
        c.repositories[0].deploy.commands[0],
        "echo ${TOKEN} $USER $MISSING ${OPTIONAL:-x} $SENTRY_COMMIT $SENTRY_COMIT $$ $LOCAL"
    );
    let warned: Vec<&str> = c.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(warned.len(), 3, "{warned:#?}");
    assert!(warned[0].contains("$TOKEN, which holds a token"), "{warned:?}");
    assert!(warned[1].contains("$MISSING, which the job's environment will not have"), "{warned:?}");
    assert!(warned[2].contains("$SENTRY_COMIT") && warned[2].contains("no such variable"), "{warned:?}");
}

#[test]
fn relative_paths_in_the_file_are_relative_to_it() {
    let text =
        format!("global:\n  state: st.json\n  tmp_dir: tmp\n  metrics_file: /abs/m.prom\n{}", MINIMAL.trim_start());
    let c = parse(Path::new("/etc/sentry/sentry.yaml"), &text, &env).expect("valid");
    assert_eq!(c.global.state, Some(Location::File("/etc/sentry/st.json".into())));
    assert_eq!(c.global.tmp_dir, PathBuf::from("/etc/sentry/tmp"));
    assert_eq!(c.global.metrics_file, Some(PathBuf::from("/abs/m.prom")));
    let c = parse(Path::new("sentry.yaml"), &text, &env).expect("valid");
    assert_eq!(c.global.state, Some(Location::File("st.json".into())));
}

#[test]
fn project_name_defaults_to_a_name_that_must_be_a_dns_label() {
    let text = MINIMAL.replace("name: app", "name: My_App");
    let e = parse_str(&text).expect_err("not a DNS label");
    assert_eq!(e.problems[0].path, "repositories[0].deploy.project_name");
    assert!(e.problems[0].message.contains("set project_name"), "{e}");
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
    // An empty key, written or expanded, is not set (SPEC §2 v2): nothing to refuse.
    for empty in ["\"\"", "\"${NO_KEY:-}\""] {
        let unset = bad.replace("ssh_key_file: ssh/id", &format!("ssh_key_file: {empty}"));
        let c = parse(Path::new("/etc/sentry/sentry.yaml"), &unset, &|_| None).expect("an empty key is not set");
        assert_eq!(c.repositories[0].monitor.auth.ssh_key_file, None, "{empty}");
    }
}

#[test]
fn report_status_needs_a_forge_api_and_teams_is_a_format() {
    let with = |kind: &str| {
        MINIMAL
            .replace("branches: [main]", &format!("branches: [main]\n      repo_type: {kind}"))
            .replace("commands: [\"true\"]", "commands: [\"true\"]\n      report_status: true")
            + "    webhook_url: https://hooks.example.com/x\n    webhook_format: teams\n"
    };
    for kind in ["github", "gitlab", "gitea"] {
        let c = parse_str(&with(kind)).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(c.repositories[0].deploy.report_status, "{kind}");
        assert_eq!(c.repositories[0].webhook.as_ref().map(|w| w.format), Some(WebhookFormat::Teams));
    }
    assert!(!parse_str(MINIMAL).expect("valid").repositories[0].deploy.report_status, "off by default");
    let e = parse_str(&with("git")).expect_err("git has no status API");
    assert_eq!(e.problems.len(), 1, "{e}");
    let p = &e.problems[0];
    assert_eq!(p.path, "repositories[0].deploy.report_status");
    assert_eq!(p.line, Some(11), "{e}");
    assert!(p.message.contains("repo_type is git"), "{e}");
    // `false` on a git repository is no problem.
    assert!(parse_str(&with("git").replace("report_status: true", "report_status: false")).is_ok());
}

#[test]
fn github_api_is_graphql_or_rest() {
    let with = |v: &str| parse_str(&format!("global:\n  github_api: {v}\n{MINIMAL}"));
    assert_eq!(with("rest").expect("rest").global.github_api, GithubApi::Rest);
    assert_eq!(with("graphql").expect("graphql").global.github_api, GithubApi::Graphql);
    let e = with("soap").expect_err("refused").to_string();
    assert!(e.contains("global.github_api"), "{e}");
}

#[test]
fn every_unset_variable_is_reported_in_one_run() {
    let text = "
global:
  tmp_dir: ${UNSET_TMP}
  webhook_url: ${UNSET_HOOK}
  metrics_file: ${UNSET_METRICS}
repositories:
  - name: app
    monitor:
      repo_url: ${UNSET_REPO}
      branches: [main]
      auth:
        token: ${UNSET_TOKEN}
    deploy:
      qa_repo_url: ${UNSET_QA}
      commands: [\"true\"]
      env:
        REGION: ${UNSET_REGION}
";
    let e = parse_str(text).expect_err("invalid");
    let said = e.to_string();
    for name in ["UNSET_TMP", "UNSET_HOOK", "UNSET_METRICS", "UNSET_REPO", "UNSET_TOKEN", "UNSET_QA", "UNSET_REGION"] {
        assert!(said.contains(&format!("{name} is not set")), "{name} missing from:\n{said}");
    }
    // A URL that could not be expanded is not also called empty or malformed.
    assert_eq!(e.problems.len(), 7, "{said}");
}

#[test]
fn an_empty_required_list_is_not_told_to_be_empty_text() {
    let e = parse_str("repositories:\n").expect_err("invalid");
    let said = e.to_string();
    assert!(said.contains("`repositories` has no value: give it one"), "{said}");
    assert!(!said.contains("for empty text"), "{said}");
    let e =
        parse_str(&MINIMAL.replace("qa_repo_url: https://gitlab.com/acme/qa", "qa_repo_url:")).expect_err("invalid");
    assert!(e.to_string().contains("(\"\" for empty text)"), "{e}");
}

#[test]
fn branch_and_tag_regex_errors_point_into_the_pattern_as_written() {
    let text = MINIMAL.replace("branches: [main]", "branches: [\"rel(\"]\n      tags: [\"v(1\"]");
    let said = parse_str(&text).expect_err("invalid").to_string();
    assert!(said.contains("monitor.branches[0]") && said.contains("invalid regex \"rel(\""), "{said}");
    assert!(said.contains("monitor.tags[0]") && said.contains("invalid regex \"v(1\""), "{said}");
    assert!(!said.contains("^(?:"), "the anchoring sentry adds is not the user's: {said}");
}

#[test]
fn a_repo_url_the_forge_api_cannot_name_is_refused() {
    let with = |url: &str, kind: &str| {
        MINIMAL
            .replace("https://github.com/acme/app", url)
            .replace("      branches: [main]\n", &format!("      branches: [main]\n      repo_type: {kind}\n"))
    };
    for (url, kind) in [
        ("https://github.com/acme", "github"),
        ("https://github.com/acme/x/y", "github"),
        ("https://gitlab.com/acme", "gitlab"),
        ("https://gitea.example/acme", "gitea"),
    ] {
        let e = parse_str(&with(url, kind)).expect_err(url);
        let p =
            e.problems.iter().find(|p| p.path == "repositories[0].monitor.repo_url").unwrap_or_else(|| panic!("{e}"));
        assert_eq!(p.line, Some(5), "{url}: {e}");
        assert!(p.message.contains("expected the repository URL to end in"), "{url}: {e}");
    }
    for (url, kind) in [
        ("https://github.com/acme/app", "github"),
        ("https://gitlab.com/a/b/c", "gitlab"),
        ("https://gitea.example/acme/app.git", "gitea"),
        ("https://git.example/one", "git"),
    ] {
        parse_str(&with(url, kind)).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

#[test]
fn stray_keys_and_bad_values_are_reported_in_one_run() {
    // A misplaced key (ssh_key_file belongs under auth), an unknown one opening a list item,
    // one with a block value, and values that are wrong in their own right: all of them, on their lines.
    let text = "
global:
  concurrency: 0
  colour: blue
repositories:
  - nmae: typo
    name: app
    monitor:
      repo_url: https://github.com/acme
      branches: [main]
      ssh_key_file: /k
    deploy:
      qa_repo_url: https://gitlab.com/acme/qa
      project_name: Bad_Name
      commands: []
      extra:
        - a
        - b
";
    let e = parse_str(text).expect_err("invalid");
    let got: Vec<_> = e.problems.iter().map(|p| (p.path.as_str(), p.line)).collect();
    assert_eq!(
        got,
        [
            ("global.concurrency", Some(3)),
            ("global.colour", Some(4)),
            ("repositories[0].nmae", Some(6)),
            ("repositories[0].monitor.repo_url", Some(9)),
            ("repositories[0].monitor.ssh_key_file", Some(11)),
            ("repositories[0].deploy.project_name", Some(14)),
            ("repositories[0].deploy.commands", Some(15)),
            ("repositories[0].deploy.extra", Some(16)),
        ],
        "{e}"
    );
}

#[test]
fn a_username_with_an_unset_token_variable_is_one_problem() {
    let text = MINIMAL.replace(
        "      branches: [main]\n",
        "      branches: [main]\n      auth:\n        username: bob\n        token: ${NO_SUCH_TOKEN}\n",
    );
    let e = parse_str(&text).expect_err("unset");
    let token: Vec<_> =
        e.problems.iter().filter(|p| p.path == "repositories[0].monitor.auth.token").map(|p| &p.message).collect();
    assert_eq!(token.len(), 1, "the unset variable, not also 'token missing': {e}");
    assert!(token[0].contains("NO_SUCH_TOKEN"), "{e}");
    // Without any token, the missing one is the problem.
    let text =
        MINIMAL.replace("      branches: [main]\n", "      branches: [main]\n      auth:\n        username: bob\n");
    let e = parse_str(&text).expect_err("missing");
    assert!(e.problems.iter().any(|p| p.message.contains("token is missing")), "{e}");
}

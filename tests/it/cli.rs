//! The command line itself: help, version, usage errors.

use crate::support::Sandbox;

#[test]
fn help_lists_every_command_and_env_var() {
    let sb = Sandbox::new();
    let r = sb.run(&["--help"]);
    assert_eq!(r.code, 0);
    for word in
        ["poll", "deploy", "validate", "status", "SENTRY_CONFIG_PATH", "SENTRY_STATE", "SENTRY_LOG_LEVEL", "--output"]
    {
        assert!(r.stdout.contains(word), "help lacks {word}: {}", r.stdout);
    }
    let r = sb.run(&["poll", "--help"]);
    for word in ["--once", "--dry-run", "--repo", "--group"] {
        assert!(r.stdout.contains(word), "poll help lacks {word}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let r = Sandbox::new().run(&["--version"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.stdout.trim(), format!("sentry {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_2() {
    let sb = Sandbox::new();
    assert_eq!(sb.run(&["frobnicate"]).code, 2);
    assert_eq!(sb.run(&["deploy"]).code, 2, "deploy needs --repo or --group");
    assert_eq!(sb.run(&["--output", "yaml", "validate"]).code, 2);
    assert_eq!(sb.run(&["--log-level", "loud", "validate"]).code, 2);
}

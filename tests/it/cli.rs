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

/// SPEC §5 v2: with `--output json`, a usage error is also `{"error", "exit_code"}` on stdout
/// (one document, nothing else there); help and version stay what they are.
#[test]
fn usage_errors_with_json_output_print_the_error_document() {
    let sb = Sandbox::new();
    for (args, says) in [
        (&["--output", "json", "deploy"][..], "--repo"),
        (&["deploy", "--repo", "a", "--group", "g", "--output=json"][..], "cannot be used with"),
        (&["--output", "json", "frobnicate"][..], "frobnicate"),
        (&["--output", "json", "--log-level", "loud", "status"][..], "loud"),
    ] {
        let r = sb.run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.all());
        let v: serde_json::Value =
            serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", r.stdout));
        assert_eq!(v["exit_code"], 2, "{args:?}: {v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains(says) && !error.contains('\n'), "{args:?}: {v}");
        assert!(r.stderr.contains("error:"), "clap's own message stays on stderr: {args:?}");
    }
    assert!(sb.run(&["--output", "json", "deploy"]).stdout.lines().count() == 1);
    let r = sb.run(&["--output", "json", "--version"]);
    assert_eq!((r.code, r.stdout.trim()), (0, format!("sentry {}", env!("CARGO_PKG_VERSION")).as_str()));
    assert!(sb.run(&["frobnicate"]).stdout.is_empty(), "human output: nothing on stdout");
}

//! Issue 19, "what an operator types": each item end to end through the binary.

use crate::support::{Run, Sandbox};
use std::path::{Path, PathBuf};
use std::process::Command;

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

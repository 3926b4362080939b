//! Configuration parsing and validation must never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |name: &str| (name.len() % 2 == 0).then(|| format!("v-{name}"));
    if let Err(e) = sentry::config::parse(Path::new("fuzz.yaml"), text, &env) {
        // Every error names at least one problem.
        assert!(!e.problems.is_empty());
        let _ = e.to_string();
    }
});

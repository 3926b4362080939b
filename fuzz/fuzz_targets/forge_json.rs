//! A forge's branch list, whatever bytes it is, must never panic: it parses or it is an error,
//! and every head it yields is a full commit id.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for field in ["sha", "id"] {
        if let Ok(page) = sentry::forge::parse_branches(data, field) {
            for (_, sha) in page.branches {
                assert!(sentry::model::Sha::parse(sha.as_str()).is_some());
            }
        }
    }
});

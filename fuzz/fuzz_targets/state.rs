//! State parsing must never panic, and whatever it accepts must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = sentry::state::from_json("fuzz", data) {
        let text = sentry::state::to_json(&state);
        let again = sentry::state::from_json("fuzz", text.as_bytes()).expect("what we write, we read");
        assert_eq!(again, state);
    }
});

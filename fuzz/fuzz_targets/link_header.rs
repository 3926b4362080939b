//! Pagination and wait headers from a hostile server must never panic, and a next page is
//! always an absolute URL.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = sentry::forge::page::parse_link(text);
    let current = "https://api.example.com/repos/o/r/branches?per_page=100&page=2";
    for name in ["link", "x-next-page", "x-total-count"] {
        let headers = vec![(name.to_string(), text.to_string())];
        if let Some(next) = sentry::forge::page::next_page(current, &headers, None) {
            assert!(next.contains("://"), "{next}");
        }
        if let Ok(mut pager) = sentry::forge::page::Pager::new(current, "https://api.example.com", 10) {
            let _ = pager.next(current, &headers, 100);
        }
    }
    let _ = sentry::http::parse_http_date(text);
    let now = std::time::SystemTime::now();
    for (name, value) in [("retry-after", text), ("x-ratelimit-reset", text), ("ratelimit-reset", text)] {
        let headers =
            vec![("x-ratelimit-remaining".to_string(), "0".to_string()), (name.to_string(), value.to_string())];
        let _ = sentry::http::server_wait(&headers, now);
    }
    let _ = sentry::forge::url::RepoUrl::parse(text);
});

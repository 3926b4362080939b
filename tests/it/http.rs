//! The shared HTTP layer on loopback: extra CA roots, redirects that must not carry secrets
//! to another origin, redirect loops, the response body cap, the cluster client, and hostile
//! wait, pagination and length headers (SPEC §4: never a crash, never a stall).

use crate::support::fake_kube::{FakeKube, tls_for_localhost};
use crate::support::http1;
use sentry::http::{Http, HttpErrorKind, HttpSettings, MAX_BODY, MAX_HEAD, Request};
use sentry::secret::Secret;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Log = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

/// A tiny server answering with `route(path) -> (status, headers, body)`, logging every request.
struct Server {
    log: Log,
    server: http1::Server,
}

impl Server {
    fn start(route: impl Fn(&str, u16) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync + 'static) -> Server {
        let log: Log = Arc::default();
        let l = log.clone();
        let server = http1::Server::start_with(|port| {
            move |req: http1::Request| {
                l.lock().expect("lock").push((req.url.clone(), req.headers.clone()));
                let (status, headers, body) = route(&req.url, port);
                http1::Response { status, headers, body }
            }
        });
        Server { log, server }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.server.port())
    }

    fn log(&self) -> Vec<(String, BTreeMap<String, String>)> {
        self.log.lock().expect("lock").clone()
    }
}

fn http(ca_file: Option<std::path::PathBuf>) -> Http {
    let s = HttpSettings { timeout: Duration::from_secs(10), ca_file, max_idle: 2, ..HttpSettings::default() };
    Http::with_env(&s, &|_| None).expect("http")
}

fn redirect(to: String) -> (u16, Vec<(String, String)>, Vec<u8>) {
    (302, vec![("Location".into(), to)], Vec::new())
}

#[test]
fn secrets_follow_same_origin_redirects_only() {
    let other = Server::start(|_, _| (200, vec![], b"landed".to_vec()));
    let other_url = other.url("/landing");
    let main = Server::start(move |path, _| match path {
        "/same" => redirect("/final".into()),
        "/away" => redirect(other_url.clone()),
        "/loop" => redirect("/loop".into()),
        _ => (200, vec![], b"final".to_vec()),
    });
    let h = http(None);
    let req = |p: &str| {
        Request::get(main.url(p))
            .secret_header("PRIVATE-TOKEN", Secret::new("glpat-secret-1234"))
            .secret_header("Authorization", Secret::new("Bearer gh-secret-5678"))
    };
    let r = h.send(&req("/same")).expect("same origin");
    assert_eq!(r.body, b"final");
    let log = main.log();
    assert_eq!(log[1].0, "/final");
    assert_eq!(log[1].1.get("private-token").map(String::as_str), Some("glpat-secret-1234"));

    let r = h.send(&req("/away")).expect("other origin");
    assert_eq!(r.body, b"landed");
    assert_eq!(r.url, other.url("/landing"));
    let landed = &other.log()[0].1;
    assert!(!landed.contains_key("private-token") && !landed.contains_key("authorization"), "{landed:?}");

    let e = h.send(&req("/loop")).expect_err("loop");
    assert_eq!(e.kind, HttpErrorKind::Protocol);
    assert!(e.to_string().contains("redirects"), "{e}");
}

#[test]
fn bodies_are_capped() {
    let big = Server::start(|_, _| (200, vec![], vec![b'x'; MAX_BODY as usize + 1]));
    let e = http(None).send(&Request::get(big.url("/big"))).expect_err("too big");
    assert_eq!(e.kind, HttpErrorKind::Protocol);
    assert!(e.to_string().contains("larger than"), "{e}");
}

#[test]
fn response_heads_are_capped_but_big_real_ones_fit() {
    // GitHub answers with ~3 KiB of headers; a 20 KiB Link header still fits, 40 KiB does not.
    let fat = |n: usize| vec![("X-Padding".to_string(), "p".repeat(n))];
    let server = Server::start(move |path, _| match path {
        "/fits" => (200, fat(20 * 1024), b"ok".to_vec()),
        _ => (200, fat(MAX_HEAD + 8 * 1024), b"ok".to_vec()),
    });
    let h = http(None);
    assert_eq!(h.send(&Request::get(server.url("/fits"))).expect("20 KiB head").body, b"ok");
    let e = h.send(&Request::get(server.url("/huge")).attempts(1)).expect_err("40 KiB head");
    assert_eq!(e.kind, HttpErrorKind::Protocol, "{e}");
    assert!(e.to_string().contains("response headers are larger than"), "{e}");
}

#[test]
fn error_bodies_are_redacted_and_summarised() {
    // A server that echoes the credential back in its error body must not make us print it.
    let echo = Server::start(|_, _| (400, vec![], br#"{"message":"bad header: Bearer tok-echoed-999"}"#.to_vec()));
    let req = Request::get(echo.url("/x")).secret_header("Authorization", Secret::new("Bearer tok-echoed-999"));
    let e = http(None).send(&req).expect_err("400");
    assert_eq!((e.kind.clone(), e.status), (HttpErrorKind::Status, Some(400)));
    assert!(!e.to_string().contains("tok-echoed-999"), "{e}");
    assert!(e.to_string().contains("400 Bad Request: bad header: ***"), "{e}");
    assert_eq!(echo.log().len(), 1, "400 is not retried");
}

#[test]
fn ca_file_adds_a_trusted_root() {
    let (ca_pem, config) = tls_for_localhost();
    let kube = FakeKube::start_tls("kube-token-1", config);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).expect("write ca");
    let url = format!("{}/api/v1/namespaces/ns/configmaps/state", kube.url);
    let req = Request::get(&url).secret_header("Authorization", Secret::new("Bearer kube-token-1")).attempts(1);

    let e = http(None).send(&req).expect_err("unknown issuer without ca_file");
    assert_eq!(e.kind, HttpErrorKind::Network, "{e}");

    // With the CA: the TLS handshake succeeds (the fake answers 404 for a missing ConfigMap).
    match http(Some(ca.clone())).send(&req) {
        Ok(r) => assert_eq!(r.status, 200),
        Err(e) => assert_eq!(e.status, Some(404), "{e}"),
    }

    std::fs::write(&ca, "not a certificate").expect("write");
    let s = HttpSettings { timeout: Duration::from_secs(5), ca_file: Some(ca), max_idle: 1, ..HttpSettings::default() };
    let err = Http::new(&s).expect_err("no certificate").to_string();
    assert!(err.contains("CA file") && err.contains("no PEM certificate"), "{err}");
}

#[test]
fn a_cluster_client_hands_back_every_status_once() {
    let server = Server::start(|path, _| match path {
        "/moved" => redirect("/elsewhere".into()),
        _ => (503, vec![("Retry-After".into(), "1".into())], br#"{"kind":"Status"}"#.to_vec()),
    });
    let h = Http::cluster(None, Duration::from_secs(5)).expect("cluster client");
    let r = h.send(&Request::get(server.url("/busy")).any_status()).expect("any status is an answer");
    assert_eq!((r.status, r.body.as_slice()), (503, br#"{"kind":"Status"}"#.as_slice()));
    let r = h.send(&Request::get(server.url("/moved")).any_status()).expect("a redirect is an answer");
    assert_eq!(r.status, 302);
    assert_eq!(server.log().len(), 2, "no retry, no redirect followed: {:?}", server.log());
    let big = Server::start(|_, _| (200, vec![], vec![b'x'; 2048]));
    let e = h.send(&Request::get(big.url("/")).max_body(1024)).expect_err("over the request's cap");
    assert!(e.to_string().contains("larger than 1024"), "{e}");
    let e = Http::cluster(Some(b"not a certificate"), Duration::from_secs(5)).expect_err("no CA");
    assert!(e.contains("no PEM certificate"), "{e}");
}

/// A small deterministic xorshift64* generator: the same 20,000 cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Values a hostile or broken server might send, and pieces to build more from.
const EDGES: &[&str] = &[
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-1",
    "0",
    "1",
    "1000000000",
    "1000000001",
    "4294967296",
    "",
    " ",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Sat, 01 Jan 0000 00:00:00 GMT",
    "Thu, 01 Jan 1970 00:00:00 GMT",
    "Sun, 06 Nov 1994 08:49:37 GMT",
    "Sun, 06 Nov 99999999999999999999 08:49:37 GMT",
    "Mon, 29 Feb 2100 25:61:61 GMT",
    "<https://api.example.com/x?page=3>; rel=\"next\"",
    "<https://evil.example/x?page=2>; rel=next",
    "</x?page=18446744073709551615>; rel=next",
    "<",
    ">",
    ";",
    ",",
    "\"",
    "=",
    "rel=next",
    "page=",
    "limit=",
    "?",
    "&",
    "%",
    "//",
    "://",
    "[::1]",
    ":99999",
    "é",
    "\u{0}",
    "\u{feff}",
    "GMT",
    "Nov",
];

fn hostile_string(rng: &mut Rng) -> String {
    const CHARS: &[u8] = b"0123456789 :,;<>=\"-+./?&#[]@abcdefGMTNovDecrelnxtpage";
    let mut s = String::new();
    for _ in 0..rng.below(8) {
        if rng.below(3) == 0 {
            for _ in 0..rng.below(24) {
                s.push(CHARS[rng.below(CHARS.len())] as char);
            }
        } else {
            s.push_str(EDGES[rng.below(EDGES.len())]);
        }
    }
    if rng.below(500) == 0 {
        s.push_str(&"9".repeat(20_000));
    }
    s
}

#[test]
fn hostile_rate_limit_and_pagination_headers_never_panic() {
    use sentry::forge::page::{Pager, next_page, parse_link};
    use sentry::http::{is_rate_limited, parse_http_date, server_wait};
    use std::time::{SystemTime, UNIX_EPOCH};

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let far = UNIX_EPOCH.checked_add(Duration::from_secs(i64::MAX as u64 / 2)).unwrap_or(UNIX_EPOCH);
    let nows = [SystemTime::now(), UNIX_EPOCH, far];
    let edges = EDGES.iter().map(|e| e.to_string());
    let random = std::iter::repeat_with(|| hostile_string(&mut rng));
    for v in edges.chain(random).take(20_000) {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let sets = [
            h(&[("retry-after", &v)]),
            h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &v)]),
            h(&[("ratelimit-remaining", "0"), ("ratelimit-reset", &v)]),
            h(&[("x-ratelimit-remaining", &v), ("retry-after", &v), ("ratelimit-reset", &v)]),
            h(&[("link", &v)]),
            h(&[("x-next-page", &v)]),
            h(&[("x-total-count", &v)]),
        ];
        let _ = parse_http_date(&v);
        let _ = parse_link(&v);
        let current =
            ["https://api.example.com/x?per_page=100&page=2".to_string(), format!("https://g/x?limit={v}&page={v}")];
        for headers in &sets {
            for now in nows {
                let _ = server_wait(headers, now);
            }
            for status in [403, 429, 503] {
                let _ = is_rate_limited(status, headers);
            }
            for cur in &current {
                if let Some(next) = next_page(cur, headers, None) {
                    assert!(next.contains("://"), "{next:?} from {v:?}");
                }
                if let Ok(mut pager) = Pager::new(cur, "https://g", 10) {
                    let _ = pager.next(cur, headers, 100);
                }
            }
        }
    }
}

#[test]
fn server_waits_past_the_deadline_fail_at_once() {
    let max = u64::MAX.to_string();
    let server = Server::start(move |path, _| {
        let hs = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match path {
            "/503" => (503, hs(&[("Retry-After", &max)]), b"busy".to_vec()),
            "/503-overflow" => (503, hs(&[("Retry-After", "99999999999999999999999999")]), b"busy".to_vec()),
            "/429" => (429, hs(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &max)]), b"slow".to_vec()),
            "/429-draft" => (429, hs(&[("RateLimit-Remaining", "0"), ("RateLimit-Reset", &max)]), b"slow".to_vec()),
            _ => (403, hs(&[("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT")]), b"later".to_vec()),
        }
    });
    let h = http(None);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let send = |path: &str| {
        let started = std::time::Instant::now();
        let e = h.send(&Request::get(server.url(path)).deadline(deadline)).expect_err(path);
        assert!(started.elapsed() < Duration::from_secs(10), "{path}: waited {:?}", started.elapsed());
        e
    };
    for path in ["/503", "/503-overflow"] {
        let e = send(path);
        assert_eq!((e.kind.clone(), e.status), (HttpErrorKind::Status, Some(503)), "{path}");
        assert!(e.to_string().contains("no time left to retry"), "{e}");
    }
    for path in ["/429", "/429-draft"] {
        let e = send(path);
        assert_eq!(e.kind, HttpErrorKind::RateLimited { until: None }, "{path}: {e}");
        assert!(e.to_string().contains("rate limited for longer"), "{e}");
    }
    let e = send("/403-date");
    match &e.kind {
        HttpErrorKind::RateLimited { until: Some(t) } => {
            assert!(sentry::time::rfc3339(*t).starts_with("9999-12-31"), "{e}")
        }
        other => panic!("{other:?}: {e}"),
    }
    assert_eq!(server.log().len(), 5, "one request each, no retry: {:?}", server.log());
}

#[test]
fn hostile_content_lengths_are_errors() {
    use std::io::{BufRead, BufReader, Write};
    for length in ["18446744073709551615", "18446744073709551616", "99999999999999999999999", "-1", "1e3"] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\nshort");
        // Detached: one connection (no retry), then it ends.
        std::thread::spawn(move || {
            for stream in listener.incoming().take(1).flatten() {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let mut w = stream;
                let _ = w.write_all(head.as_bytes());
            }
        });
        let req = Request::get(format!("http://127.0.0.1:{port}/x")).attempts(1);
        let e = http(None).send(&req).expect_err(length);
        assert!(matches!(e.kind, HttpErrorKind::Network | HttpErrorKind::Protocol), "{length}: {e}");
    }
}

#[test]
fn a_timeout_too_long_for_the_clock_is_capped_not_a_panic() {
    let server = Server::start(|_, _| (200, vec![], b"ok".to_vec()));
    let s = HttpSettings { timeout: Duration::MAX, ..HttpSettings::default() };
    let r = Http::with_env(&s, &|_| None).expect("http").send(&Request::get(server.url("/"))).expect("answer");
    assert_eq!(r.body, b"ok");
    let r = Http::cluster(None, Duration::from_secs(u64::MAX)).expect("cluster").send(&Request::get(server.url("/")));
    assert_eq!(r.expect("answer").status, 200);
}

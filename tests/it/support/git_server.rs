//! A real Git smart-HTTP server on loopback: `git http-backend` run as CGI behind tiny_http, with
//! optional Basic auth and a request log. Clones and `ls-remote` in tests talk to it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    /// Path and query string.
    pub url: String,
    /// Header name (lowercase) -> value.
    pub headers: BTreeMap<String, String>,
    /// The status the server answered.
    pub status: u16,
}

struct Shared {
    root: PathBuf,
    auth: Option<String>,
    log: Mutex<Vec<LoggedRequest>>,
    fail_next: AtomicUsize,
    stop: AtomicBool,
}

/// A running server; stops when dropped.
pub struct GitServer {
    shared: Arc<Shared>,
    server: Arc<tiny_http::Server>,
    port: u16,
    thread: Option<JoinHandle<()>>,
}

impl GitServer {
    /// Serves every repository under `root` (URL path = path below root). With `credentials`,
    /// every request needs `Authorization: Basic base64(user:pass)`, else 401.
    pub fn start(root: &Path, credentials: Option<(&str, &str)>) -> GitServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind loopback"));
        let port = server.server_addr().to_ip().expect("ip addr").port();
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            auth: credentials.map(|(u, p)| format!("Basic {}", sentry::secret::base64(format!("{u}:{p}").as_bytes()))),
            log: Mutex::new(Vec::new()),
            fail_next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let (s, sh) = (server.clone(), shared.clone());
        let thread = std::thread::spawn(move || {
            for request in s.incoming_requests() {
                if sh.stop.load(Ordering::SeqCst) {
                    break;
                }
                let sh = sh.clone();
                // A thread per request: parallel clones must not queue behind each other.
                std::thread::spawn(move || handle(&sh, request));
            }
        });
        GitServer { shared, server, port, thread: Some(thread) }
    }

    /// The clone URL of `rel` (a path below root).
    pub fn url(&self, rel: &str) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, rel.trim_start_matches('/'))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.log.lock().expect("log lock").clone()
    }

    /// The next `n` requests are answered 503.
    pub fn fail_next(&self, n: usize) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(sh: &Shared, mut request: tiny_http::Request) {
    let headers: BTreeMap<String, String> = request
        .headers()
        .iter()
        .map(|h| (h.field.as_str().as_str().to_ascii_lowercase(), h.value.as_str().to_string()))
        .collect();
    let method = request.method().as_str().to_string();
    let url = request.url().to_string();
    let record = |status: u16| {
        sh.log.lock().expect("log lock").push(LoggedRequest {
            method: method.clone(),
            url: url.clone(),
            headers: headers.clone(),
            status,
        })
    };
    if sh.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        record(503);
        let _ = request.respond(tiny_http::Response::from_string("injected failure").with_status_code(503));
        return;
    }
    if let Some(expected) = &sh.auth
        && headers.get("authorization") != Some(expected)
    {
        record(401);
        let h = tiny_http::Header::from_bytes("WWW-Authenticate", "Basic realm=\"sentry-test\"").expect("header");
        let _ = request.respond(tiny_http::Response::from_string("unauthorized").with_status_code(401).with_header(h));
        return;
    }
    // tiny_http de-chunks the request body for us.
    let mut body = Vec::new();
    if request.as_reader().read_to_end(&mut body).is_err() {
        record(400);
        let _ = request.respond(tiny_http::Response::from_string("bad body").with_status_code(400));
        return;
    }
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &sh.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", &sh.root)
        .env("PATH_INFO", path)
        .env("REQUEST_METHOD", &method)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ct) = headers.get("content-type") {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(p) = headers.get("git-protocol") {
        cmd.env("GIT_PROTOCOL", p);
    }
    if let Some(enc) = headers.get("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    if sh.auth.is_some() {
        cmd.env("REMOTE_USER", "tester");
    }
    let Ok(mut child) = cmd.spawn() else {
        record(500);
        let _ = request.respond(tiny_http::Response::from_string("cannot run git http-backend").with_status_code(500));
        return;
    };
    // Write the body on a thread: http-backend may start answering before it has read everything.
    let mut stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(&body);
        }
    });
    let out = child.wait_with_output();
    let _ = writer.join();
    let Ok(out) = out else {
        record(500);
        let _ = request.respond(tiny_http::Response::from_string("http-backend failed").with_status_code(500));
        return;
    };
    let (status, cgi_headers, payload) = parse_cgi(&out.stdout);
    record(status);
    let mut response = tiny_http::Response::from_data(payload).with_status_code(status);
    for (k, v) in cgi_headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            response = response.with_header(h);
        }
    }
    let _ = request.respond(response);
}

/// Splits CGI output into status, headers and body.
fn parse_cgi(out: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let (head_end, sep) = match out.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => (p, 4),
        None => match out.windows(2).position(|w| w == b"\n\n") {
            Some(p) => (p, 2),
            None => return (500, Vec::new(), out.to_vec()),
        },
    };
    let head = String::from_utf8_lossy(&out[..head_end]);
    let mut status = 200;
    let mut headers = Vec::new();
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            status = v.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(500);
        } else {
            headers.push((k.trim().to_string(), v.to_string()));
        }
    }
    (status, headers, out[head_end + sep..].to_vec())
}

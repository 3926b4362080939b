//! A real Git smart-HTTP server on loopback: `git http-backend` run as CGI behind [`super::http1`], with
//! optional Basic auth and a request log. Clones and `ls-remote` in tests talk to it.

use super::http1::{Request, Response, Server};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
}

/// A running server; stops when dropped.
pub struct GitServer {
    shared: Arc<Shared>,
    server: Server,
}

impl GitServer {
    /// Serves every repository under `root` (URL path = path below root). With `credentials`,
    /// every request needs `Authorization: Basic base64(user:pass)`, else 401.
    pub fn start(root: &Path, credentials: Option<(&str, &str)>) -> GitServer {
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            auth: credentials.map(|(u, p)| format!("Basic {}", sentry::secret::base64(format!("{u}:{p}").as_bytes()))),
            log: Mutex::new(Vec::new()),
            fail_next: AtomicUsize::new(0),
        });
        let sh = shared.clone();
        // A thread per connection: parallel clones must not queue behind each other.
        let server = Server::start(move |request| handle(&sh, request));
        GitServer { shared, server }
    }

    /// The clone URL of `rel` (a path below root).
    pub fn url(&self, rel: &str) -> String {
        format!("http://127.0.0.1:{}/{}", self.server.port(), rel.trim_start_matches('/'))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.server.port()
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

fn handle(sh: &Shared, request: Request) -> Response {
    let Request { method, url, headers, body } = request;
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
        return Response::new(503, "injected failure");
    }
    if let Some(expected) = &sh.auth
        && headers.get("authorization") != Some(expected)
    {
        record(401);
        return Response::new(401, "unauthorized").header("WWW-Authenticate", "Basic realm=\"sentry-test\"");
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
        // What a web server passes (RFC 3875): http-backend answers a wrong method 405 with it.
        .env("SERVER_PROTOCOL", "HTTP/1.1")
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
        return Response::new(500, "cannot run git http-backend");
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
        return Response::new(500, "http-backend failed");
    };
    let (status, headers, payload) = parse_cgi(&out.stdout);
    record(status);
    Response { status, headers, body: payload }
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

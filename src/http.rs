//! The one HTTP client setup: agent, timeouts, proxies, CA roots, redirects, retries with backoff,
//! rate-limit waits, capped bodies and pagination headers. It knows nothing of what requests are for.
//!
//! One [`Http`] per run; clones share one connection pool. Every request is synchronous (ureq 3).
//! Secrets travel only in headers added with [`Request::secret_header`]: they are dropped on a
//! redirect to another origin and scrubbed from every error text.

use crate::secret::{Redactor, Secret};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("sentry/", env!("CARGO_PKG_VERSION"));

/// Largest response head (status line and headers) read; also the input buffer per connection.
pub const MAX_HEAD: usize = 32 * 1024;

/// Largest response body read into memory; a bigger one is an error, not an allocation.
pub const MAX_BODY: u64 = 16 * 1024 * 1024;

/// Attempts per request (first try included) for retryable failures.
pub const ATTEMPTS: u32 = 3;

/// Redirects followed per request.
const MAX_REDIRECTS: u32 = 5;

/// First backoff step; doubled per attempt, with jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(500);

/// Longest wait between attempts when the request has no deadline of its own.
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);

/// Most of an error body shown in messages.
const SNIPPET_CHARS: usize = 300;

/// Response headers worth showing in an error: they say what to check.
const TELLING_HEADERS: [&str; 8] = [
    "www-authenticate",
    "x-accepted-github-permissions",
    "x-github-sso",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "ratelimit-remaining",
    "ratelimit-reset",
    "retry-after",
];

/// How the shared client is set up.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Limit for one request (connect, send, receive), per attempt.
    pub timeout: Duration,
    /// Extra trusted roots (PEM), on top of the bundled web roots.
    pub ca_file: Option<PathBuf>,
    /// Idle connections kept for reuse (size it to the number of requests in flight).
    pub max_idle: usize,
}

impl HttpSettings {
    /// Settings from the configuration's `global` section.
    pub fn from_global(g: &crate::config::Global) -> HttpSettings {
        HttpSettings { timeout: g.http_timeout, ca_file: g.ca_file.clone(), max_idle: g.concurrency }
    }
}

/// A shared, cheap-to-clone HTTP client.
#[derive(Clone)]
pub struct Http {
    inner: Arc<Inner>,
}

struct Inner {
    agent: ureq::Agent,
    proxies: Proxies,
    stats: Mutex<HttpStats>,
}

/// What the client saw so far, for metrics: answers per host and status, rate-limit headroom.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Answers per (host, status); requests that got no answer count under status 0.
    pub responses: BTreeMap<(String, u16), u64>,
    /// The last `x-ratelimit-remaining` / `RateLimit-Remaining` each host reported.
    pub rate_limit_remaining: BTreeMap<String, i64>,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http").finish_non_exhaustive()
    }
}

/// HTTP methods sentry uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

impl Method {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// One request to send, with its retry budget.
#[derive(Clone, Debug)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    secrets: Vec<(String, Secret)>,
    body: Option<Vec<u8>>,
    deadline: Option<Instant>,
    attempts: u32,
}

impl Request {
    /// A request with `method` to `url`.
    pub fn new(method: Method, url: impl Into<String>) -> Request {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            secrets: Vec::new(),
            body: None,
            deadline: None,
            attempts: ATTEMPTS,
        }
    }

    /// A GET request.
    pub fn get(url: impl Into<String>) -> Request {
        Request::new(Method::Get, url)
    }

    /// Adds a plain header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Request {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Adds a header carrying a credential: never logged, dropped on a cross-origin redirect,
    /// scrubbed from error texts.
    pub fn secret_header(mut self, name: &str, value: Secret) -> Request {
        self.secrets.push((name.to_string(), value));
        self
    }

    /// Makes the request conditional on the entity having changed.
    pub fn if_none_match(self, etag: &str) -> Request {
        self.header("If-None-Match", etag)
    }

    /// A body, with its content type.
    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Request {
        self.body = Some(body);
        self.header("Content-Type", content_type)
    }

    /// Retries never wait past `deadline`: a longer server-requested wait fails the request instead.
    pub fn deadline(mut self, deadline: Instant) -> Request {
        self.deadline = Some(deadline);
        self
    }

    /// Attempts in total for retryable failures (1 = no retry).
    pub fn attempts(mut self, n: u32) -> Request {
        self.attempts = n.max(1);
        self
    }

    /// The URL (never carries a secret).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    fn redactor(&self) -> Redactor {
        Redactor::new(self.secrets.iter().map(|(_, s)| (None, s)))
    }
}

/// Response headers: lowercase name -> value, in arrival order.
pub type Headers = Vec<(String, String)>;

/// A response read whole (2xx or 304).
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercase.
    pub headers: Headers,
    /// The body (empty for 304), at most [`MAX_BODY`] bytes.
    pub body: Vec<u8>,
    /// The URL that answered, after redirects.
    pub url: String,
    /// Requests it took (retries and redirects included).
    pub requests: u32,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// True for `304 Not Modified`.
    pub fn not_modified(&self) -> bool {
        self.status == 304
    }
}

/// The first value of header `name` in `headers` (case-insensitive).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpErrorKind {
    /// Connection refused, DNS, TLS, reset: the server was not reached or dropped us.
    Network,
    /// No complete answer within the timeout.
    Timeout,
    /// The server answered with a non-2xx status (see `status`).
    Status,
    /// Rate limited; the limit lifts at `until` (when the server said).
    RateLimited {
        /// When a retry may succeed, if known.
        until: Option<SystemTime>,
    },
    /// The response broke a rule: body too large, redirect loop, unusable URL.
    Protocol,
}

/// A failed request, with everything needed to say what to check. Its texts are redacted.
#[derive(Clone, Debug)]
pub struct HttpError {
    /// What kind of failure.
    pub kind: HttpErrorKind,
    /// Method sent.
    pub method: Method,
    /// URL asked (never carries a secret).
    pub url: String,
    /// Status of the last answer, if there was one.
    pub status: Option<u16>,
    /// Headers of the last answer.
    pub headers: Headers,
    /// The start of the error body, one line, redacted.
    pub body: String,
    /// What went wrong, one line, redacted.
    pub detail: String,
    /// Requests made (retries included).
    pub requests: u32,
}

impl HttpError {
    fn new(kind: HttpErrorKind, req: &Request, detail: String) -> HttpError {
        HttpError {
            kind,
            method: req.method,
            url: req.url.clone(),
            status: None,
            headers: Vec::new(),
            body: String::new(),
            detail,
            requests: 1,
        }
    }

    /// The message an error body carries (`{"message": ...}` of the forges' JSON), else the snippet.
    pub fn server_message(&self) -> &str {
        &self.body
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.method.as_str(), self.url, self.detail)?;
        if self.requests > 1 {
            write!(f, " (after {} requests)", self.requests)?;
        }
        Ok(())
    }
}

impl std::error::Error for HttpError {}

impl Http {
    /// Builds the client: reads `ca_file`, the proxy environment, sets timeouts and pool size.
    pub fn new(s: &HttpSettings) -> anyhow::Result<Http> {
        Http::with_env(s, &|name| std::env::var(name).ok())
    }

    /// Like [`Http::new`] with an explicit environment (for tests).
    pub fn with_env(s: &HttpSettings, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Http> {
        use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
        let mut tls = TlsConfig::builder();
        if let Some(path) = &s.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read global.ca_file {}: {e}", path.display()))?;
            // The bundled web roots stay trusted; the file adds to them.
            let mut roots: Vec<Certificate<'static>> =
                webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().map(|c| Certificate::from_der(c).to_owned()).collect();
            let bundled = roots.len();
            for item in ureq::tls::parse_pem(&pem) {
                match item {
                    Ok(PemItem::Certificate(c)) => roots.push(c),
                    Ok(_) => {}
                    Err(e) => anyhow::bail!("cannot parse global.ca_file {}: {e}", path.display()),
                }
            }
            if roots.len() == bundled {
                anyhow::bail!("global.ca_file {} holds no PEM certificate", path.display());
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&roots));
        }
        let idle = s.max_idle.max(1);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Redirects are followed here, so credentials never follow one to another origin.
            .max_redirects(0)
            .timeout_global(Some(s.timeout))
            .timeout_connect(Some(s.timeout))
            .user_agent(USER_AGENT)
            // Chosen per request from the environment (HTTPS_PROXY vs HTTP_PROXY, NO_PROXY).
            .proxy(None)
            .max_idle_connections(idle)
            .max_idle_connections_per_host(idle)
            // ureq's 128 KiB buffers, per connection each way, were a quarter of the peak RSS at
            // concurrency 32 (BENCHMARKS.md, P3). Bodies stream through them, so only a response
            // head must fit: forges send 2 to 8 KiB.
            // (A little more than MAX_HEAD, so an oversized head is reported as such.)
            .input_buffer_size(MAX_HEAD + 4096)
            .max_response_header_size(MAX_HEAD)
            .output_buffer_size(16 * 1024)
            .tls_config(tls.build())
            .build()
            .new_agent();
        let proxies = Proxies::from_env(env)?;
        Ok(Http { inner: Arc::new(Inner { agent, proxies, stats: Mutex::new(HttpStats::default()) }) })
    }

    /// A snapshot of what this client (and its clones) saw so far.
    pub fn stats(&self) -> HttpStats {
        self.inner.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn record(&self, host: &str, status: u16, headers: &Headers) {
        let Ok(mut s) = self.inner.stats.lock() else { return };
        *s.responses.entry((host.to_string(), status)).or_default() += 1;
        let remaining = header(headers, "x-ratelimit-remaining").or_else(|| header(headers, "ratelimit-remaining"));
        if let Some(n) = remaining.and_then(|v| v.trim().parse::<i64>().ok()) {
            s.rate_limit_remaining.insert(host.to_string(), n);
        }
    }

    /// Sends `req`, following redirects and retrying what is worth retrying. `Ok` is a 2xx or
    /// a 304; any other final status is an [`HttpError`] of kind `Status` or `RateLimited`.
    // An error is rare and ends a request: its size costs nothing worth a Box in every signature.
    #[allow(clippy::result_large_err)]
    pub fn send(&self, req: &Request) -> Result<Response, HttpError> {
        let redactor = req.redactor();
        let mut requests = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.once(req, &redactor, &mut requests);
            let (mut err, server_wait, rate_limited) = match outcome {
                Ok(resp) if (200..300).contains(&resp.status) || resp.status == 304 => {
                    return Ok(Response { requests, ..resp });
                }
                Ok(resp) => {
                    let rate_limited = is_rate_limited(resp.status, &resp.headers);
                    let wait = server_wait(&resp.headers, SystemTime::now());
                    let retryable = rate_limited || resp.status >= 500 || resp.status == 408;
                    let err = status_error(req, &redactor, resp);
                    if !retryable {
                        return Err(HttpError { requests, ..err });
                    }
                    (err, wait, rate_limited)
                }
                Err(e) if matches!(e.kind, HttpErrorKind::Network | HttpErrorKind::Timeout) => (e, None, false),
                Err(e) => return Err(HttpError { requests, ..e }),
            };
            err.requests = requests;
            let wait = server_wait.unwrap_or_else(|| backoff(attempt));
            let until = SystemTime::now() + wait;
            if rate_limited {
                err.kind = HttpErrorKind::RateLimited { until: server_wait.map(|_| until) };
            }
            if attempt >= req.attempts {
                return Err(err);
            }
            let budget = match req.deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => DEFAULT_MAX_WAIT,
            };
            if wait > budget {
                if rate_limited {
                    err.kind = HttpErrorKind::RateLimited { until: Some(until) };
                    err.detail = format!("{}; rate limited until {}", err.detail, crate::time::rfc3339(until));
                } else {
                    err.detail = format!("{}; no time left to retry", err.detail);
                }
                return Err(err);
            }
            log::debug!(
                method = req.method.as_str(), url = req.url.as_str(), attempt = attempt,
                wait_ms = wait.as_millis() as u64; "http retry after {}", err.detail
            );
            std::thread::sleep(wait);
        }
    }

    /// One attempt: the request and its redirects.
    #[allow(clippy::result_large_err)]
    fn once(&self, req: &Request, redactor: &Redactor, requests: &mut u32) -> Result<Response, HttpError> {
        let first = Origin::parse(&req.url).map_err(|m| HttpError::new(HttpErrorKind::Protocol, req, m))?;
        let mut url = req.url.clone();
        let mut method = req.method;
        let mut body = req.body.clone();
        let mut with_secrets = true;
        let mut hops = 0;
        loop {
            let origin = Origin::parse(&url).map_err(|m| HttpError::new(HttpErrorKind::Protocol, req, m))?;
            *requests += 1;
            let started = Instant::now();
            let result = self.exchange(method, &url, &origin, req, with_secrets, body.as_deref());
            let ms = started.elapsed().as_millis() as u64;
            let (status, headers, payload) = match result {
                Ok(r) => r,
                Err(e) => {
                    self.record(&origin.host, 0, &Vec::new());
                    let mut err = transport_error(e, req, redactor);
                    err.url = url.clone();
                    log::debug!(
                        method = method.as_str(), url = url.as_str(), duration_ms = ms,
                        error = err.detail.as_str(); "http request failed"
                    );
                    return Err(err);
                }
            };
            self.record(&origin.host, status, &headers);
            log::debug!(
                method = method.as_str(), url = url.as_str(), status = status, duration_ms = ms,
                cache_hit = status == 304; "http request"
            );
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                let Some(location) = header(&headers, "location") else {
                    return Ok(Response { status, headers, body: payload, url, requests: 0 });
                };
                hops += 1;
                if hops > MAX_REDIRECTS {
                    let mut e =
                        HttpError::new(HttpErrorKind::Protocol, req, format!("more than {MAX_REDIRECTS} redirects"));
                    e.status = Some(status);
                    return Err(e);
                }
                let next = resolve(&url, location)
                    .map_err(|m| HttpError::new(HttpErrorKind::Protocol, req, format!("bad redirect: {m}")))?;
                let next_origin = Origin::parse(&next)
                    .map_err(|m| HttpError::new(HttpErrorKind::Protocol, req, format!("bad redirect: {m}")))?;
                if !first.may_receive_secrets(&next_origin) {
                    with_secrets = false;
                }
                if status == 303 || (matches!(status, 301 | 302) && method == Method::Post) {
                    method = Method::Get;
                    body = None;
                }
                url = next;
                continue;
            }
            return Ok(Response { status, headers, body: payload, url, requests: 0 });
        }
    }

    /// One request on the wire; the body is read whole, up to [`MAX_BODY`].
    fn exchange(
        &self,
        method: Method,
        url: &str,
        origin: &Origin,
        req: &Request,
        with_secrets: bool,
        body: Option<&[u8]>,
    ) -> Result<(u16, Headers, Vec<u8>), ureq::Error> {
        let mut b = ureq::http::Request::builder().method(method.as_str()).uri(url);
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        if with_secrets {
            for (k, v) in &req.secrets {
                b = b.header(k.as_str(), v.expose());
            }
        }
        let proxy = self.inner.proxies.for_origin(origin);
        let agent = &self.inner.agent;
        let response = match body {
            Some(bytes) => {
                let r = agent.configure_request(b.body(bytes.to_vec())?).proxy(proxy).build();
                agent.run(r)?
            }
            None => {
                let r = agent.configure_request(b.body(())?).proxy(proxy).build();
                agent.run(r)?
            }
        };
        let status = response.status().as_u16();
        let headers: Headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let payload = if status == 304 || method == Method::Get && status == 204 {
            Vec::new()
        } else {
            response.into_body().into_with_config().limit(MAX_BODY).read_to_vec().map_err(|e| match e {
                // Say that the head arrived and the body did not: a truncated answer, not a
                // server that could not be reached.
                ureq::Error::Io(io) => {
                    ureq::Error::Io(std::io::Error::new(io.kind(), format!("response body cut short: {io}")))
                }
                other => other,
            })?
        };
        Ok((status, headers, payload))
    }
}

/// Turns a ureq failure into an error that says what happened, without secrets.
fn transport_error(e: ureq::Error, req: &Request, redactor: &Redactor) -> HttpError {
    use ureq::Error as E;
    let (kind, detail) = match &e {
        E::Timeout(t) => (HttpErrorKind::Timeout, format!("timed out ({t})")),
        E::HostNotFound => (HttpErrorKind::Network, "host not found".to_string()),
        E::ConnectionFailed => (HttpErrorKind::Network, "connection failed".to_string()),
        E::Io(io) => (HttpErrorKind::Network, format!("connection error: {io}")),
        E::BodyExceedsLimit(n) => (HttpErrorKind::Protocol, format!("response body is larger than {n} bytes")),
        E::LargeResponseHeader(_, max) => {
            (HttpErrorKind::Protocol, format!("response headers are larger than {max} bytes"))
        }
        E::BadUri(m) => (HttpErrorKind::Protocol, format!("invalid URL: {m}")),
        E::Http(m) => (HttpErrorKind::Protocol, format!("invalid request: {m}")),
        E::Protocol(m) => (HttpErrorKind::Network, format!("protocol error: {m}")),
        other => (HttpErrorKind::Network, other.to_string()),
    };
    HttpError::new(kind, req, clean(redactor, &detail))
}

/// Builds the error for a final non-2xx answer: status, telling headers, body snippet.
fn status_error(req: &Request, redactor: &Redactor, resp: Response) -> HttpError {
    let snippet = clean(redactor, &error_snippet(&resp.body));
    let reason = ureq::http::StatusCode::from_u16(resp.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let telling: Vec<String> = TELLING_HEADERS
        .iter()
        .filter_map(|h| header(&resp.headers, h).map(|v| format!("{h}: {}", clean(redactor, v))))
        .collect();
    let mut detail = format!("{} {reason}", resp.status).trim_end().to_string();
    if !snippet.is_empty() {
        detail.push_str(&format!(": {snippet}"));
    }
    if !telling.is_empty() {
        detail.push_str(&format!(" [{}]", telling.join(", ")));
    }
    HttpError {
        kind: HttpErrorKind::Status,
        method: req.method,
        url: resp.url,
        status: Some(resp.status),
        headers: resp.headers,
        body: snippet,
        detail,
        requests: 1,
    }
}

/// The useful part of an error body: the forges' `message` field, else the text start, one line.
pub fn error_snippet(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(m) = v.get("message").or_else(|| v.get("error")).and_then(|m| m.as_str())
    {
        return truncate(&one_line(m), SNIPPET_CHARS);
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(4 * SNIPPET_CHARS)]);
    truncate(&one_line(&text), SNIPPET_CHARS)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Redacts with the request's own secrets and with every secret the logger knows.
fn clean(redactor: &Redactor, text: &str) -> String {
    crate::logging::redact(&redactor.redact(text))
}

/// True when the answer means "slow down" rather than "no": 429, or GitHub's 403 with the
/// primary limit exhausted (`x-ratelimit-remaining: 0`) or a secondary limit (`retry-after`).
pub fn is_rate_limited(status: u16, headers: &Headers) -> bool {
    status == 429
        || (status == 403
            && (header(headers, "x-ratelimit-remaining").is_some_and(|v| v.trim() == "0")
                || header(headers, "retry-after").is_some()))
}

/// How long the server asked us to wait: `Retry-After` (seconds or HTTP-date), else, when the
/// quota is exhausted, until `x-ratelimit-reset` / `RateLimit-Reset` (epoch seconds, or seconds
/// from now for small values as in the IETF draft).
pub fn server_wait(headers: &Headers, now: SystemTime) -> Option<Duration> {
    if let Some(v) = header(headers, "retry-after") {
        let v = v.trim();
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Some(at) = parse_http_date(v) {
            return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    let exhausted = ["x-ratelimit-remaining", "ratelimit-remaining"]
        .iter()
        .any(|h| header(headers, h).is_some_and(|v| v.trim() == "0"));
    if !exhausted {
        return None;
    }
    let reset = header(headers, "x-ratelimit-reset").or_else(|| header(headers, "ratelimit-reset"))?;
    let n = reset.trim().parse::<u64>().ok()?;
    // Epoch seconds are > 10^9; the IETF draft's delta-seconds are small.
    if n > 1_000_000_000 {
        let at = UNIX_EPOCH + Duration::from_secs(n);
        Some(at.duration_since(now).unwrap_or(Duration::ZERO))
    } else {
        Some(Duration::from_secs(n))
    }
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form servers must send.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let m = MONTHS.iter().position(|x| x.eq_ignore_ascii_case(month))? as i64 + 1;
    let d: i64 = day.parse().ok()?;
    let y: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, mi, sec] = hms.as_slice() else { return None };
    if !(1..=31).contains(&d) || *h > 23 || *mi > 59 || *sec > 60 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let (yy, mm) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    u64::try_from(secs).ok().map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// Exponential backoff with jitter: attempt 1 -> 0.25-0.5 s, 2 -> 0.5-1 s, 3 -> 1-2 s, ...
pub fn backoff(attempt: u32) -> Duration {
    let step = BACKOFF_BASE.saturating_mul(1 << attempt.saturating_sub(1).min(6));
    let half = step / 2;
    half + half.mul_f64(jitter())
}

/// A number in [0, 1) that differs between calls and processes (no RNG crate needed for this).
fn jitter() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Scheme, host and port of a URL: what decides where secrets may go and which proxy applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`, lowercase.
    pub scheme: String,
    /// Host, lowercase, without brackets for IPv6.
    pub host: String,
    /// Port, explicit or the scheme's default.
    pub port: u16,
}

impl Origin {
    /// Parses the origin of an absolute http(s) URL.
    pub fn parse(url: &str) -> Result<Origin, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("{url:?} is not an absolute URL"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(format!("{url:?}: only http and https are supported")),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let hostport = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| format!("{url:?}: bad IPv6 host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let port = match port.filter(|p| !p.is_empty()) {
            Some(p) => p.parse::<u16>().map_err(|_| format!("{url:?} has an invalid port"))?,
            None => default_port,
        };
        Ok(Origin { scheme, host: host.to_ascii_lowercase(), port })
    }

    /// Credentials meant for `self` may be sent to `other`: same host and port, and no
    /// downgrade from https to http (an upgrade to https on the default port is fine).
    pub fn may_receive_secrets(&self, other: &Origin) -> bool {
        if self.host != other.host {
            return false;
        }
        match (self.scheme.as_str(), other.scheme.as_str()) {
            (a, b) if a == b => self.port == other.port,
            ("http", "https") => other.port == 443 || self.port == other.port,
            _ => false,
        }
    }
}

/// Resolves a `Location` or `Link` target against the URL it came from.
pub fn resolve(base: &str, target: &str) -> Result<String, String> {
    let target = target.trim();
    if target.contains("://") {
        return Ok(target.to_string());
    }
    let (scheme, rest) = base.split_once("://").ok_or_else(|| format!("{base:?} is not absolute"))?;
    if let Some(t) = target.strip_prefix("//") {
        return Ok(format!("{scheme}://{t}"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if target.starts_with('/') {
        return Ok(format!("{scheme}://{authority}{target}"));
    }
    let path = rest[authority.len()..].split(['?', '#']).next().unwrap_or("");
    if target.starts_with('?') {
        return Ok(format!("{scheme}://{authority}{path}{target}"));
    }
    let dir = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "/",
    };
    Ok(format!("{scheme}://{authority}{dir}{target}"))
}

/// The (url, rel) pairs of a `Link` header (RFC 8288), relations lowercase.
pub fn parse_link(value: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let Some(end) = rest[start..].find('>') else { break };
        let url = rest[start + 1..start + end].trim().to_string();
        rest = &rest[start + end + 1..];
        // Parameters run to the next link (a comma outside quotes).
        let mut params_end = rest.len();
        let mut quoted = false;
        for (i, c) in rest.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    params_end = i;
                    break;
                }
                _ => {}
            }
        }
        let mut rels = Vec::new();
        for param in rest[..params_end].split(';') {
            if let Some((k, v)) = param.split_once('=')
                && k.trim().eq_ignore_ascii_case("rel")
            {
                rels.extend(v.trim().trim_matches('"').split_whitespace().map(|r| r.to_ascii_lowercase()));
            }
        }
        out.push((url, rels));
        rest = &rest[params_end..];
    }
    out
}

/// Sets query parameter `key` to `value` in `url`, replacing any previous value.
pub fn set_query(url: &str, key: &str, value: &str) -> String {
    let (url, fragment) = match url.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (url, None),
    };
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pairs: Vec<String> =
        query.split('&').filter(|p| !p.is_empty() && p.split('=').next() != Some(key)).map(String::from).collect();
    pairs.push(format!("{key}={value}"));
    let mut out = format!("{path}?{}", pairs.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// The value of query parameter `key` in `url`.
pub fn query_param<'a>(url: &'a str, key: &str) -> Option<&'a str> {
    let query = url.split('#').next()?.split_once('?')?.1;
    query.split('&').find_map(|p| match p.split_once('=') {
        Some((k, v)) if k == key => Some(v),
        _ => None,
    })
}

/// The next page of a listing, from the headers of the page at `current`: `Link rel="next"`
/// (GitHub, GitLab, Gitea), else GitLab's `X-Next-Page`, else Gitea's `X-Total-Count` with the
/// page size of the query (`limit` or `per_page`). `None` on the last page.
pub fn next_page(current: &str, headers: &Headers) -> Option<String> {
    for (_, value) in headers.iter().filter(|(k, _)| k == "link") {
        if let Some((url, _)) = parse_link(value).into_iter().find(|(_, rels)| rels.iter().any(|r| r == "next")) {
            return resolve(current, &url).ok();
        }
    }
    if let Some(n) = header(headers, "x-next-page") {
        let n = n.trim();
        return (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then(|| set_query(current, "page", n));
    }
    let total: u64 = header(headers, "x-total-count")?.trim().parse().ok()?;
    let size: u64 = query_param(current, "limit").or_else(|| query_param(current, "per_page"))?.parse().ok()?;
    let page: u64 = query_param(current, "page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    (size > 0 && page.saturating_mul(size) < total).then(|| set_query(current, "page", &(page + 1).to_string()))
}

/// Walks a paginated listing safely: a page cap, no page twice, no page on another origin.
#[derive(Debug)]
pub struct Pager {
    origin: Origin,
    seen: HashSet<String>,
    max_pages: usize,
}

impl Pager {
    /// A pager starting at `first` that stops with an error after `max_pages` pages.
    pub fn new(first: &str, max_pages: usize) -> Result<Pager, String> {
        let origin = Origin::parse(first)?;
        let mut seen = HashSet::new();
        seen.insert(first.to_string());
        Ok(Pager { origin, seen, max_pages })
    }

    /// Pages accepted so far.
    pub fn pages(&self) -> usize {
        self.seen.len()
    }

    /// The next page after `current`, checked: `Ok(None)` at the end, `Err` on a loop, on a
    /// page beyond the cap, or on a next link to another origin (it would receive our token).
    pub fn next(&mut self, current: &str, headers: &Headers) -> Result<Option<String>, String> {
        let Some(next) = next_page(current, headers) else { return Ok(None) };
        let origin = Origin::parse(&next).map_err(|m| format!("unusable next-page link: {m}"))?;
        if !self.origin.may_receive_secrets(&origin) {
            return Err(format!("the next-page link points to another server ({})", origin.host));
        }
        if !self.seen.insert(next.clone()) {
            return Err(format!("pagination loops: {next} was already listed"));
        }
        if self.seen.len() > self.max_pages {
            return Err(format!("more than {} pages: listing stopped", self.max_pages));
        }
        Ok(Some(next))
    }
}

/// Proxies from the environment, chosen per request.
#[derive(Debug, Default)]
struct Proxies {
    http: Option<ureq::Proxy>,
    https: Option<ureq::Proxy>,
    no_proxy: Vec<String>,
}

impl Proxies {
    fn from_env(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Proxies> {
        let var = |names: &[&'static str]| -> Option<(&'static str, String)> {
            names.iter().find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (*n, v)))
        };
        let proxy = |found: Option<(&'static str, String)>| -> anyhow::Result<Option<ureq::Proxy>> {
            match found {
                // The value may hold a password: name the variable only.
                Some((name, v)) => ureq::Proxy::new(v.trim())
                    .map(Some)
                    .map_err(|_| anyhow::anyhow!("{name} is not a valid proxy URL (expected http://host:port)")),
                None => Ok(None),
            }
        };
        let all = var(&["ALL_PROXY", "all_proxy"]);
        let https = var(&["HTTPS_PROXY", "https_proxy"]).or_else(|| all.clone());
        let http = var(&["HTTP_PROXY", "http_proxy"]).or(all);
        let no_proxy = var(&["NO_PROXY", "no_proxy"])
            .map(|(_, v)| v.split(',').map(|e| e.trim().to_ascii_lowercase()).filter(|e| !e.is_empty()).collect())
            .unwrap_or_default();
        Ok(Proxies { http: proxy(http)?, https: proxy(https)?, no_proxy })
    }

    fn for_origin(&self, o: &Origin) -> Option<ureq::Proxy> {
        let p = if o.scheme == "https" { &self.https } else { &self.http };
        match p {
            Some(p) if !no_proxy_matches(&self.no_proxy, &o.host) => Some(p.clone()),
            _ => None,
        }
    }
}

/// `NO_PROXY` matching as curl does it: `*`, exact host, domain suffix (`example.com` and
/// `.example.com` both cover `a.example.com`), IP address or CIDR block; ports are ignored.
pub fn no_proxy_matches(entries: &[String], host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
    let ip: Option<IpAddr> = host.parse().ok();
    entries.iter().any(|entry| {
        if entry == "*" {
            return true;
        }
        if let Some((net, bits)) = entry.split_once('/') {
            return match (ip, net.parse::<IpAddr>(), bits.parse::<u32>()) {
                (Some(ip), Ok(net), Ok(bits)) => in_cidr(ip, net, bits),
                _ => false,
            };
        }
        let mut e = entry.as_str();
        if let Some(v6) = e.strip_prefix('[') {
            e = v6.split(']').next().unwrap_or(v6);
        } else if e.matches(':').count() == 1 {
            e = e.split(':').next().unwrap_or(e);
        }
        let e = e.trim_start_matches("*.").trim_start_matches('.');
        if e.is_empty() {
            return false;
        }
        host == e || (ip.is_none() && host.ends_with(e) && host[..host.len() - e.len()].ends_with('.'))
    })
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn link_header_parses_github_style() {
        let v = r#"<https://api.github.com/repositories/1/branches?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/branches?per_page=100&page=3>; rel="last""#;
        let links = parse_link(v);
        assert_eq!(links.len(), 2);
        assert_eq!(links[0].0, "https://api.github.com/repositories/1/branches?per_page=100&page=2");
        assert_eq!(links[0].1, ["next"]);
        assert_eq!(links[1].1, ["last"]);
    }

    #[test]
    fn link_header_tolerates_odd_forms() {
        let links = parse_link(r#"</p?page=2>;rel=next , </p?a=1,2>; title="x, y"; rel="prev first""#);
        assert_eq!(links[0], ("/p?page=2".to_string(), vec!["next".to_string()]));
        assert_eq!(links[1].0, "/p?a=1,2");
        assert_eq!(links[1].1, ["prev", "first"]);
        assert!(parse_link("garbage").is_empty());
        assert!(parse_link("<unterminated").is_empty());
    }

    #[test]
    fn next_page_from_link_relative_and_absolute() {
        let cur = "http://h:8/api/v1/repos/o/r/branches?limit=50&page=1";
        let hd = h(&[("link", r#"</api/v1/repos/o/r/branches?limit=50&page=2>; rel="next""#)]);
        assert_eq!(next_page(cur, &hd).as_deref(), Some("http://h:8/api/v1/repos/o/r/branches?limit=50&page=2"));
        let last = h(&[("link", r#"<http://h:8/x?page=1>; rel="first", <http://h:8/x?page=1>; rel="prev""#)]);
        assert_eq!(next_page(cur, &last), None);
    }

    #[test]
    fn next_page_from_gitlab_headers() {
        let cur = "https://gl/api/v4/projects/a%2Fb/repository/branches?per_page=100";
        let hd = h(&[("x-next-page", "2"), ("x-page", "1")]);
        assert_eq!(
            next_page(cur, &hd).as_deref(),
            Some("https://gl/api/v4/projects/a%2Fb/repository/branches?per_page=100&page=2")
        );
        assert_eq!(next_page(cur, &h(&[("x-next-page", "")])), None);
        assert_eq!(next_page(cur, &h(&[("x-next-page", "2; drop")])), None);
    }

    #[test]
    fn next_page_from_total_count() {
        let cur = "https://g/api/v1/repos/o/r/branches?limit=50&page=2";
        assert_eq!(
            next_page(cur, &h(&[("x-total-count", "120")])).as_deref(),
            Some("https://g/api/v1/repos/o/r/branches?limit=50&page=3")
        );
        assert_eq!(next_page(cur, &h(&[("x-total-count", "100")])), None);
        assert_eq!(
            next_page("https://g/x?limit=50", &h(&[("x-total-count", "51")])).as_deref(),
            Some("https://g/x?limit=50&page=2")
        );
        assert_eq!(next_page("https://g/x?limit=0", &h(&[("x-total-count", "51")])), None);
    }

    #[test]
    fn pager_stops_loops_caps_and_foreign_hosts() {
        let first = "https://api/x?page=1";
        let mut p = Pager::new(first, 3).unwrap();
        let self_link = h(&[("link", "<https://api/x?page=1>; rel=\"next\"")]);
        assert!(p.next(first, &self_link).unwrap_err().contains("loops"));

        let mut p = Pager::new(first, 3).unwrap();
        let to = |n: u32| h(&[("link", &format!("<https://api/x?page={n}>; rel=\"next\""))]);
        assert_eq!(p.next(first, &to(2)).unwrap().as_deref(), Some("https://api/x?page=2"));
        assert_eq!(p.next("https://api/x?page=2", &to(3)).unwrap().as_deref(), Some("https://api/x?page=3"));
        assert!(p.next("https://api/x?page=3", &to(4)).unwrap_err().contains("more than 3 pages"));

        let mut p = Pager::new(first, 10).unwrap();
        let evil = h(&[("link", "<https://evil.example/x?page=2>; rel=\"next\"")]);
        assert!(p.next(first, &evil).unwrap_err().contains("another server"));
        assert_eq!(p.next(first, &h(&[])).unwrap(), None);
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_770);
        assert_eq!(server_wait(&h(&[("retry-after", "7")]), now), Some(Duration::from_secs(7)));
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
        let date = h(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(server_wait(&date, now), Some(Duration::from_secs(7)));
        assert_eq!(server_wait(&h(&[("retry-after", "soon")]), now), None);
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(UNIX_EPOCH));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
    }

    #[test]
    fn rate_limit_reset_headers() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let gh = h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1700000042")]);
        assert_eq!(server_wait(&gh, now), Some(Duration::from_secs(42)));
        let gl = h(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "1700000005")]);
        assert_eq!(server_wait(&gl, now), Some(Duration::from_secs(5)));
        let draft = h(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "30")]);
        assert_eq!(server_wait(&draft, now), Some(Duration::from_secs(30)));
        let past = h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1600000000")]);
        assert_eq!(server_wait(&past, now), Some(Duration::ZERO));
        // Quota left: the reset time is no reason to wait.
        assert_eq!(server_wait(&h(&[("x-ratelimit-remaining", "10"), ("x-ratelimit-reset", "1700000042")]), now), None);
    }

    #[test]
    fn which_answers_are_rate_limits() {
        assert!(is_rate_limited(429, &h(&[])));
        assert!(is_rate_limited(403, &h(&[("x-ratelimit-remaining", "0")])));
        assert!(is_rate_limited(403, &h(&[("retry-after", "60")])));
        assert!(!is_rate_limited(403, &h(&[("x-ratelimit-remaining", "4999")])));
        assert!(!is_rate_limited(401, &h(&[("x-ratelimit-remaining", "0")])));
    }

    #[test]
    fn backoff_grows_with_jitter_in_bounds() {
        for attempt in 1..=4 {
            let step = BACKOFF_BASE * (1 << (attempt - 1));
            let d = backoff(attempt);
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn origins_and_secret_forwarding() {
        let o = |u| Origin::parse(u).unwrap();
        assert_eq!(o("https://GitHub.com/a"), Origin { scheme: "https".into(), host: "github.com".into(), port: 443 });
        assert_eq!(o("http://[::1]:8080/x").host, "::1");
        assert_eq!(o("http://u@h:81?x").port, 81);
        assert!(Origin::parse("ftp://h/").is_err());
        assert!(Origin::parse("http://h:99999/").is_err());
        assert!(o("https://a/x").may_receive_secrets(&o("https://a:443/y")));
        assert!(o("http://a/x").may_receive_secrets(&o("https://a/y")));
        assert!(!o("https://a/x").may_receive_secrets(&o("http://a/y")));
        assert!(!o("https://a/x").may_receive_secrets(&o("https://b/y")));
        assert!(!o("https://a/x").may_receive_secrets(&o("https://a:8443/y")));
    }

    #[test]
    fn resolve_relative_targets() {
        let base = "https://h:1/a/b/c?q=1";
        assert_eq!(resolve(base, "/x?y").unwrap(), "https://h:1/x?y");
        assert_eq!(resolve(base, "d").unwrap(), "https://h:1/a/b/d");
        assert_eq!(resolve(base, "?page=2").unwrap(), "https://h:1/a/b/c?page=2");
        assert_eq!(resolve(base, "//o/p").unwrap(), "https://o/p");
        assert_eq!(resolve(base, "http://z/").unwrap(), "http://z/");
    }

    #[test]
    fn query_helpers() {
        assert_eq!(set_query("http://h/p", "page", "2"), "http://h/p?page=2");
        assert_eq!(set_query("http://h/p?page=1&per_page=100", "page", "2"), "http://h/p?per_page=100&page=2");
        assert_eq!(query_param("http://h/p?limit=50&page=3", "page"), Some("3"));
        assert_eq!(query_param("http://h/p", "page"), None);
    }

    #[test]
    fn no_proxy_rules() {
        let e: Vec<String> = ["localhost", ".svc", "example.com", "10.0.0.0/8", "::1", "host:8080"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(no_proxy_matches(&e, "localhost"));
        assert!(no_proxy_matches(&e, "api.default.svc"));
        // As in curl, a leading dot is ignored: `.svc` covers `svc` itself too.
        assert!(no_proxy_matches(&e, "svc"));
        assert!(!no_proxy_matches(&e, "notsvc"));
        assert!(no_proxy_matches(&e, "example.com"));
        assert!(no_proxy_matches(&e, "a.example.com"));
        assert!(!no_proxy_matches(&e, "badexample.com"));
        assert!(no_proxy_matches(&e, "10.1.2.3"));
        assert!(!no_proxy_matches(&e, "11.1.2.3"));
        assert!(no_proxy_matches(&e, "[::1]"));
        assert!(no_proxy_matches(&e, "host"));
        assert!(no_proxy_matches(&["*".to_string()], "anything"));
        assert!(!no_proxy_matches(&[], "anything"));
    }

    #[test]
    fn proxies_follow_scheme_and_no_proxy() {
        let env = |n: &str| match n {
            "HTTPS_PROXY" => Some("http://secure-proxy:3128".to_string()),
            "http_proxy" => Some("http://plain-proxy:3128".to_string()),
            "NO_PROXY" => Some("internal.example, 127.0.0.1".to_string()),
            _ => None,
        };
        let p = Proxies::from_env(&env).unwrap();
        let o = |u| Origin::parse(u).unwrap();
        assert_eq!(
            p.for_origin(&o("https://github.com/")).map(|p| p.host().to_string()).as_deref(),
            Some("secure-proxy")
        );
        assert_eq!(
            p.for_origin(&o("http://github.com/")).map(|p| p.host().to_string()).as_deref(),
            Some("plain-proxy")
        );
        assert!(p.for_origin(&o("https://git.internal.example/")).is_none());
        assert!(p.for_origin(&o("http://127.0.0.1:9/")).is_none());
        let bad = |n: &str| (n == "HTTPS_PROXY").then(|| "http://user:pw@[bad".to_string());
        let err = Proxies::from_env(&bad).unwrap_err().to_string();
        assert!(err.contains("HTTPS_PROXY") && !err.contains("pw"), "{err}");
    }

    #[test]
    fn snippets_prefer_the_message_field() {
        assert_eq!(error_snippet(br#"{"message":"Bad credentials","documentation_url":"x"}"#), "Bad credentials");
        assert_eq!(error_snippet(b"<html>\n  <body>oops</body>\n</html>"), "<html> <body>oops</body> </html>");
        let long = "x".repeat(1000);
        assert_eq!(error_snippet(long.as_bytes()).chars().count(), SNIPPET_CHARS + 1);
    }

    #[test]
    fn request_builder_keeps_secrets_apart() {
        let r =
            Request::get("https://h/x").header("Accept", "a").secret_header("Authorization", Secret::new("tok-abcdef"));
        assert_eq!(r.url(), "https://h/x");
        assert!(!format!("{r:?}").contains("tok-abcdef"));
        assert_eq!(r.redactor().redact("say tok-abcdef"), "say ***");
    }
}

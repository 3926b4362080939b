//! The one HTTP client setup: agent, timeouts, proxies, CA roots, redirects, retries with backoff,
//! rate-limit waits and capped bodies. It knows nothing of what requests are for (so pagination,
//! which depends on the API, is its callers' business).
//!
//! One [`Http`] per run; clones share one connection pool. Every request is synchronous (ureq 3).
//! Secrets travel only in headers added with [`Request::secret_header`]: they are dropped on a
//! redirect to another origin and scrubbed from every error text.
//!
//! `client`: the agent, TLS roots, redirects and the retry loop ([`Http::cluster`]: the
//! ConfigMap store's direct client); `retry`: backoff, rate limits and the waits servers ask
//! for (always checked, capped by the request's budget); `proxy`; `origin`; `error`.

mod client;
mod error;
mod origin;
mod proxy;
mod retry;

pub use client::Http;
pub use error::{HttpError, HttpErrorKind};
pub use origin::{Origin, resolve};
pub use proxy::proxy_url_for;
pub use retry::{MIN_RATE_LIMIT_WAIT, backoff, is_rate_limited, is_secondary_rate_limit, parse_http_date, server_wait};

use crate::secret::{Redactor, Secret};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("sentry/", env!("CARGO_PKG_VERSION"));

/// Largest response head (status line and headers) read; also the input buffer per connection.
pub const MAX_HEAD: usize = 32 * 1024;

/// Largest response body read into memory; a bigger one is an error, not an allocation.
pub const MAX_BODY: u64 = 16 * 1024 * 1024;

/// Attempts per request (first try included) for retryable failures.
pub const ATTEMPTS: u32 = 3;

/// Longest timeout honoured; a longer one is cut to it, as ureq adds the timeout to the clock
/// unchecked (a panic near 2^64 seconds). A day is no limit in practice.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// How the shared client is set up.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Limit for one request (connect, send, receive), per attempt.
    pub timeout: Duration,
    /// Extra trusted roots (PEM), on top of the bundled web roots.
    pub ca_file: Option<PathBuf>,
    /// Idle connections kept for reuse (size it to the number of requests in flight).
    pub max_idle: usize,
    /// Secrets scrubbed from every error text, besides each request's own (a server may echo
    /// any token it has seen).
    pub redactor: Redactor,
}

impl Default for HttpSettings {
    fn default() -> HttpSettings {
        HttpSettings { timeout: Duration::from_secs(30), ca_file: None, max_idle: 1, redactor: Redactor::default() }
    }
}

/// What the client saw so far, for metrics: answers per host and status, rate-limit headroom.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Answers per (host, status); requests that got no answer count under status 0.
    pub responses: BTreeMap<(String, u16), u64>,
    /// The last `x-ratelimit-remaining` / `RateLimit-Remaining` each host reported.
    pub rate_limit_remaining: BTreeMap<String, i64>,
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
    max_body: u64,
    any_status: bool,
    /// The URL's path may be logged: it carries no secret (forge API paths). Off by default,
    /// since a webhook's path is often its key (Slack's `/services/T/B/KEY`).
    public_path: bool,
}

/// What logs and errors show of `url`: `scheme://host[:port]`, and the path (never the query)
/// when `with_path`.
pub(crate) fn shown_url(url: &str, with_path: bool) -> String {
    let Ok(p) = crate::model::url::split(url) else { return "(invalid URL)".into() };
    let origin = p.origin_text();
    if !with_path {
        return origin;
    }
    let path = p.rest.split(['?', '#']).next().unwrap_or("");
    format!("{origin}{path}")
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
            max_body: MAX_BODY,
            any_status: false,
            public_path: false,
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

    /// A lower cap on the response body than [`MAX_BODY`].
    pub fn max_body(mut self, bytes: u64) -> Request {
        self.max_body = bytes.min(MAX_BODY);
        self
    }

    /// Every final answer is an `Ok` [`Response`], whatever its status, for callers that read
    /// the status themselves; a status is then never retried.
    pub fn any_status(mut self) -> Request {
        self.any_status = true;
        self
    }

    /// Declares that the URL's path carries no secret, so logs and errors may show it (never
    /// the query). Without it they show `scheme://host[:port]` only.
    pub fn public_path(mut self) -> Request {
        self.public_path = true;
        self
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What logs and errors may show of `url` (this request's or a redirect's).
    pub(crate) fn shown(&self, url: &str) -> String {
        shown_url(url, self.public_path)
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

/// A response read whole (2xx or 304, or any status with [`Request::any_status`]).
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercase.
    pub headers: Headers,
    /// The body (empty for 304), at most [`MAX_BODY`] bytes (or the request's own cap).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_builder_keeps_secrets_apart() {
        let r =
            Request::get("https://h/x").header("Accept", "a").secret_header("Authorization", Secret::new("tok-abcdef"));
        assert_eq!(r.url(), "https://h/x");
        assert!(!format!("{r:?}").contains("tok-abcdef"));
        assert_eq!(r.redactor().redact("say tok-abcdef"), "say ***");
    }

    #[test]
    fn logs_show_the_origin_and_a_public_path_only() {
        let hook = Request::new(Method::Post, "https://hooks.slack.com/services/T0/B0/XSECRET?x=1");
        assert_eq!(hook.shown(hook.url()), "https://hooks.slack.com");
        let api = Request::get("http://127.0.0.1:8080/repos/o/r/branches?per_page=100&t=1").public_path();
        assert_eq!(api.shown(api.url()), "http://127.0.0.1:8080/repos/o/r/branches");
        assert_eq!(shown_url("not a url", true), "(invalid URL)");
    }
}

//! Failed requests: what kind, and a redacted one-line account of what the server said.

use super::{Headers, Method, Request, Response, header};
use crate::secret::Redactor;
use crate::text::{one_line, truncate};
use std::fmt;
use std::time::SystemTime;

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
    /// What may be shown of the URL asked: `scheme://host[:port]`, with the path for requests
    /// marked [`Request::public_path`].
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
    pub(super) fn new(kind: HttpErrorKind, req: &Request, detail: String) -> HttpError {
        HttpError {
            kind,
            method: req.method,
            url: req.shown(&req.url),
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

/// Turns a ureq failure into an error that says what happened, without secrets.
pub(super) fn transport_error(e: ureq::Error, req: &Request, redactor: &Redactor) -> HttpError {
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
pub(super) fn status_error(req: &Request, redactor: &Redactor, resp: Response) -> HttpError {
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
        url: req.shown(&resp.url),
        status: Some(resp.status),
        headers: resp.headers,
        body: snippet,
        detail,
        requests: 1,
    }
}

/// The useful part of an error body: the forges' `message` field, else the text start, one line.
fn error_snippet(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(m) = v.get("message").or_else(|| v.get("error")).and_then(|m| m.as_str())
    {
        return truncate(&one_line(m), SNIPPET_CHARS);
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(4 * SNIPPET_CHARS)]);
    truncate(&one_line(&text), SNIPPET_CHARS)
}

/// Redacts with the request's own secrets and the client's (see [`super::HttpSettings::redactor`]).
fn clean(redactor: &Redactor, text: &str) -> String {
    redactor.redact(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_prefer_the_message_field() {
        assert_eq!(error_snippet(br#"{"message":"Bad credentials","documentation_url":"x"}"#), "Bad credentials");
        assert_eq!(error_snippet(b"<html>\n  <body>oops</body>\n</html>"), "<html> <body>oops</body> </html>");
        let long = "x".repeat(1000);
        assert_eq!(error_snippet(long.as_bytes()).chars().count(), SNIPPET_CHARS + 1);
    }
}

//! The client: the ureq agent, TLS roots, redirects and the retry loop.

use super::error::{status_error, transport_error};
use super::proxy::{AbsoluteFormConnector, Proxies, ProxyResolver};
use super::retry::DEFAULT_MAX_WAIT;
use super::{
    Headers, HttpError, HttpErrorKind, HttpSettings, HttpStats, MAX_HEAD, MAX_TIMEOUT, MIN_RATE_LIMIT_WAIT, Method,
    Origin, Request, Response, USER_AGENT, backoff, header, is_rate_limited, is_secondary_rate_limit, resolve,
    server_wait,
};
use crate::secret::Redactor;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::unversioned::transport::{ConnectProxyConnector, Connector, RustlsConnector, TcpConnector};

/// Redirects followed per request.
const MAX_REDIRECTS: u32 = 5;

/// A shared, cheap-to-clone HTTP client.
#[derive(Clone)]
pub struct Http {
    inner: Arc<Inner>,
}

struct Inner {
    agent: ureq::Agent,
    proxies: Arc<Proxies>,
    redactor: Redactor,
    /// Redirects are followed and retryable failures retried (the shared client); a cluster
    /// client does neither.
    follow_and_retry: bool,
    /// The agent's limit for one request; a request's deadline can only shorten it.
    timeout: Duration,
    stats: Mutex<HttpStats>,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http").finish_non_exhaustive()
    }
}

impl Http {
    /// Builds the client: reads `ca_file`, the proxy environment, sets timeouts and pool size.
    pub fn new(s: &HttpSettings) -> anyhow::Result<Http> {
        Http::with_env(s, &|name| std::env::var(name).ok())
    }

    /// Like [`Http::new`] with an explicit environment (for tests).
    pub fn with_env(s: &HttpSettings, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Http> {
        let mut tls = TlsConfig::builder();
        if let Some(path) = &s.ca_file {
            let pem =
                std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read the CA file {}: {e}", path.display()))?;
            // The bundled web roots stay trusted; the file adds to them.
            let mut roots: Vec<Certificate<'static>> =
                webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().map(|c| Certificate::from_der(c).to_owned()).collect();
            roots.extend(certificates(&pem).map_err(|m| anyhow::anyhow!("the CA file {} {m}", path.display()))?);
            tls = tls.root_certs(RootCerts::new_with_certs(&roots));
        }
        let proxies = Arc::new(Proxies::from_env(env)?);
        let agent = agent(s.timeout, s.max_idle, tls.build(), &proxies);
        Ok(Http::from_parts(agent, proxies, s.redactor.clone(), true, s.timeout))
    }

    /// A client for one cluster's API server: the roots of `ca_pem` only when given (else the
    /// bundled web roots), no proxy (the API server is reached directly, whatever HTTPS_PROXY
    /// says), no redirect followed, no retry. The error names what is wrong with `ca_pem`.
    pub fn cluster(ca_pem: Option<&[u8]>, timeout: Duration) -> Result<Http, String> {
        let mut tls = TlsConfig::builder();
        if let Some(pem) = ca_pem {
            tls = tls.root_certs(RootCerts::new_with_certs(&certificates(pem)?));
        }
        let proxies = Arc::new(Proxies::default());
        Ok(Http::from_parts(agent(timeout, 1, tls.build(), &proxies), proxies, Redactor::default(), false, timeout))
    }

    fn from_parts(
        agent: ureq::Agent,
        proxies: Arc<Proxies>,
        redactor: Redactor,
        follow_and_retry: bool,
        timeout: Duration,
    ) -> Http {
        let stats = Mutex::new(HttpStats::default());
        let timeout = timeout.min(MAX_TIMEOUT);
        Http { inner: Arc::new(Inner { agent, proxies, redactor, follow_and_retry, timeout, stats }) }
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
    /// a 304 (any status with [`Request::any_status`]); any other final status is an
    /// [`HttpError`] of kind `Status` or `RateLimited`.
    // An error is rare and ends a request: its size costs nothing worth a Box in every signature.
    #[allow(clippy::result_large_err)]
    pub fn send(&self, req: &Request) -> Result<Response, HttpError> {
        self.send_once_or_more(req).map_err(|mut e| {
            // What failed may be the proxy, not the server: say which proxy it went through.
            if let Some(proxy) = Origin::parse(&e.url).ok().and_then(|o| self.inner.proxies.for_origin(&o)) {
                e.detail = format!("{} (through proxy {}:{})", e.detail, proxy.host(), proxy.port());
            }
            e
        })
    }

    #[allow(clippy::result_large_err)]
    fn send_once_or_more(&self, req: &Request) -> Result<Response, HttpError> {
        // Built only for an error to redact: merging copies every needle of the run's redactor,
        // which with a token per repository is thousands of strings per request.
        let merged = std::cell::OnceCell::new();
        let redactor = || merged.get_or_init(|| req.redactor().merged(&self.inner.redactor));
        let attempts = if self.inner.follow_and_retry { req.attempts } else { 1 };
        let mut requests = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.once(req, &redactor, &mut requests);
            let (mut err, server_wait, rate_limited) = match outcome {
                Ok(resp) if req.any_status || (200..300).contains(&resp.status) || resp.status == 304 => {
                    return Ok(Response { requests, ..resp });
                }
                Ok(resp) => {
                    let rate_limited =
                        is_rate_limited(resp.status, &resp.headers) || is_secondary_rate_limit(resp.status, &resp.body);
                    // A rate limit that names no time (GitHub's secondary limit, a bare 429):
                    // at least a minute, never a quick retry that makes it worse.
                    let wait = server_wait(&resp.headers, SystemTime::now())
                        .or_else(|| rate_limited.then_some(MIN_RATE_LIMIT_WAIT));
                    let retryable = rate_limited || resp.status >= 500 || resp.status == 408;
                    let err = status_error(req, redactor(), resp);
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
            // `None`: the wait ends past what the clock can hold (a hostile or broken header).
            let until = SystemTime::now().checked_add(wait);
            if rate_limited {
                err.kind = HttpErrorKind::RateLimited { until: server_wait.and(until) };
            }
            if attempt >= attempts {
                return Err(err);
            }
            let budget = match req.deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => DEFAULT_MAX_WAIT,
            };
            // The server's wait is capped by the budget: beyond it the request fails now.
            if wait > budget {
                err.detail = match (rate_limited, until) {
                    (true, Some(t)) => format!("{}; rate limited until {}", err.detail, crate::time::rfc3339(t)),
                    (true, None) => format!("{}; rate limited for longer than the clock can count", err.detail),
                    (false, _) => format!("{}; no time left to retry", err.detail),
                };
                if rate_limited {
                    err.kind = HttpErrorKind::RateLimited { until };
                }
                return Err(err);
            }
            log::debug!(
                method = req.method.as_str(), url = req.shown(&req.url).as_str(), attempt = attempt,
                wait_ms = wait.as_millis() as u64; "http retry after {}", err.detail
            );
            std::thread::sleep(wait);
        }
    }

    /// One attempt: the request and its redirects.
    #[allow(clippy::result_large_err)]
    fn once<'r>(
        &self,
        req: &Request,
        redactor: &dyn Fn() -> &'r Redactor,
        requests: &mut u32,
    ) -> Result<Response, HttpError> {
        let first = Origin::parse(&req.url).map_err(|m| HttpError::new(HttpErrorKind::Protocol, req, m))?;
        let mut url = req.url.clone();
        let mut method = req.method;
        let mut body = req.body.clone();
        let mut with_secrets = true;
        let mut hops = 0;
        // Each hop's origin: the request's first, then each redirect's (parsed once, there).
        let mut origin = first.clone();
        loop {
            *requests += 1;
            let started = Instant::now();
            let result = self.exchange(method, &url, &origin, req, with_secrets, body.as_deref());
            let ms = started.elapsed().as_millis() as u64;
            let (status, headers, payload) = match result {
                Ok(r) => r,
                Err(e) => {
                    self.record(&origin.host, 0, &Vec::new());
                    let mut err = transport_error(e, req, redactor());
                    err.url = req.shown(&url);
                    log::debug!(
                        method = method.as_str(), url = err.url.as_str(), duration_ms = ms,
                        error = err.detail.as_str(); "http request failed"
                    );
                    return Err(err);
                }
            };
            self.record(&origin.host, status, &headers);
            log::debug!(
                method = method.as_str(), url = req.shown(&url).as_str(), status = status, duration_ms = ms,
                cache_hit = status == 304; "http request"
            );
            if self.inner.follow_and_retry && matches!(status, 301 | 302 | 303 | 307 | 308) {
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
                origin = next_origin;
                continue;
            }
            return Ok(Response { status, headers, body: payload, url, requests: 0 });
        }
    }

    /// One request on the wire; the body is read whole, up to the request's cap.
    fn exchange(
        &self,
        method: Method,
        url: &str,
        origin: &Origin,
        req: &Request,
        with_secrets: bool,
        body: Option<&[u8]>,
    ) -> Result<(u16, Headers, Vec<u8>), ureq::Error> {
        // https and SOCKS go through ureq's tunnel; plain http through an http proxy goes in
        // absolute form (see `proxy`), so ureq is given no proxy for it.
        let proxy =
            self.inner.proxies.for_origin(origin).filter(|_| self.inner.proxies.absolute_form_origin(origin).is_none());
        let mut b = ureq::http::Request::builder().method(method.as_str()).uri(url);
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        if with_secrets {
            for (k, v) in &req.secrets {
                b = b.header(k.as_str(), v.expose());
            }
        }
        let agent = &self.inner.agent;
        // The request's deadline (a listing's budget, notify_timeout) shortens the agent's limit,
        // so a server that never answers cannot hold a run longer than its caller allows.
        let limit = match req.deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ureq::Error::Timeout(ureq::Timeout::Global));
                }
                left.min(self.inner.timeout)
            }
            None => self.inner.timeout,
        };
        let response = match body {
            Some(bytes) => {
                let r =
                    agent.configure_request(b.body(bytes.to_vec())?).proxy(proxy).timeout_global(Some(limit)).build();
                agent.run(r)?
            }
            None => {
                let r = agent.configure_request(b.body(())?).proxy(proxy).timeout_global(Some(limit)).build();
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
            response.into_body().into_with_config().limit(req.max_body).read_to_vec().map_err(|e| match e {
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

/// The agent of every client: statuses as answers, redirects left to [`Http::send`], proxies
/// chosen per request, small buffers.
fn agent(timeout: Duration, max_idle: usize, tls: TlsConfig, proxies: &Arc<Proxies>) -> ureq::Agent {
    let idle = max_idle.max(1);
    let timeout = timeout.min(MAX_TIMEOUT);
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Redirects are followed here, so credentials never follow one to another origin.
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout))
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
        .tls_config(tls)
        .build();
    // ureq's default chain (CONNECT tunnel, TCP, TLS) with the absolute-form wrapper for plain
    // http through a proxy, and a resolver that sends those requests to the proxy.
    let connector =
        ().chain(ConnectProxyConnector::default())
            .chain(TcpConnector::default())
            .chain(AbsoluteFormConnector { proxies: proxies.clone() })
            .chain(RustlsConnector::default());
    let resolver = ProxyResolver::new(proxies.clone());
    ureq::Agent::with_parts(config, connector, resolver)
}

/// The certificates of a PEM bundle; an error (to follow the bundle's name) when one does not
/// parse or there is none.
fn certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("does not parse as PEM: {e}")),
        }
    }
    if out.is_empty() {
        return Err("holds no PEM certificate".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_client_uses_no_proxy_and_the_shared_one_does() {
        let o = Origin::parse("https://10.0.0.1:6443/api").expect("origin");
        let cluster = Http::cluster(None, Duration::from_secs(1)).expect("cluster");
        assert!(cluster.inner.proxies.for_origin(&o).is_none());
        assert!(!cluster.inner.follow_and_retry);
        let env = |n: &str| (n == "HTTPS_PROXY").then(|| "http://proxy:3128".to_string());
        let shared = Http::with_env(&HttpSettings::default(), &env).expect("shared");
        assert!(shared.inner.proxies.for_origin(&o).is_some());
    }
}

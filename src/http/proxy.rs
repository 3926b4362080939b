//! Proxies from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`).
//!
//! https goes through the proxy with CONNECT (ureq's own tunnel). Plain http goes in absolute
//! form (`GET http://host:port/path HTTP/1.1` to the proxy, RFC 9112 §3.2.2), as curl does:
//! ureq 3 tunnels every proxied request with CONNECT, which squid and tinyproxy refuse for
//! ports other than 443. So for an http origin that has a proxy, [`ProxyResolver`] gives ureq
//! the proxy's address instead of the target's, and [`AbsoluteFormConnector`] wraps that
//! connection so each request line names the whole target URL. (ureq's `unversioned` transport
//! API: a ureq upgrade may need this file adjusted; the proxy tests say so at once.)

use super::Origin;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};

/// Proxies from the environment, chosen per request.
#[derive(Debug, Default)]
pub(crate) struct Proxies {
    http: Option<ureq::Proxy>,
    https: Option<ureq::Proxy>,
    no_proxy: Vec<String>,
}

impl Proxies {
    pub(crate) fn from_env(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Proxies> {
        let proxy = |found: Option<(&'static str, String)>| -> anyhow::Result<Option<ureq::Proxy>> {
            match found {
                // The value may hold a password: name the variable only.
                Some((name, v)) => ureq::Proxy::new(v.trim())
                    .map(Some)
                    .map_err(|_| anyhow::anyhow!("{name} is not a valid proxy URL (expected http://host:port)")),
                None => Ok(None),
            }
        };
        let ProxyEnv { http, https, no_proxy } = ProxyEnv::read(env);
        Ok(Proxies { http: proxy(http)?, https: proxy(https)?, no_proxy })
    }

    /// The proxy that `o` goes through, if any (`NO_PROXY` applied).
    pub(crate) fn for_origin(&self, o: &Origin) -> Option<ureq::Proxy> {
        let p = if o.scheme == "https" { &self.https } else { &self.http };
        match p {
            Some(p) if !no_proxy_matches(&self.no_proxy, &o.host) => Some(p.clone()),
            _ => None,
        }
    }

    /// [`Proxies::absolute_form`] for an origin.
    pub(crate) fn absolute_form_origin(&self, o: &Origin) -> Option<ureq::Proxy> {
        if o.scheme != "http" {
            return None;
        }
        self.for_origin(o).filter(|p| matches!(p.protocol(), ureq::ProxyProtocol::Http))
    }

    /// The proxy that a request to `uri` reaches in absolute form: an http origin with an
    /// http proxy. (https, and SOCKS proxies, go through ureq's own tunnels.)
    pub(crate) fn absolute_form(&self, uri: &ureq::http::Uri) -> Option<ureq::Proxy> {
        // Asked twice per request (resolver and connector): without an http proxy, skip
        // printing and parsing the URL.
        self.http.as_ref()?;
        self.absolute_form_origin(&Origin::parse(&uri.to_string()).ok()?)
    }
}

/// How long resolved addresses are reused: curl's default DNS cache timeout, which git's http
/// transport runs with.
const DNS_TTL: Duration = Duration::from_secs(60);

/// Resolves the proxy's address for the requests [`Proxies::absolute_form`] picks, so that
/// ureq connects to the proxy; every other host as usual. Addresses are kept [`DNS_TTL`].
#[derive(Debug)]
pub(crate) struct ProxyResolver {
    pub(crate) proxies: Arc<Proxies>,
    pub(crate) inner: DefaultResolver,
    /// `host:port` -> when it was resolved, and to what. ureq resolves the host of every
    /// request, pooled connection or not, and with a timeout set (sentry always sets one)
    /// each lookup runs on a thread of its own: a thread and a getaddrinfo per request, more
    /// CPU than the rest of a small exchange (BENCHMARKS.md, G2).
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl ProxyResolver {
    /// A resolver for the proxies `proxies`, with an empty cache.
    pub(crate) fn new(proxies: Arc<Proxies>) -> ProxyResolver {
        ProxyResolver { proxies, inner: DefaultResolver::default(), cache: Mutex::new(HashMap::new()) }
    }

    /// `uri`'s addresses: from the cache while fresh, else looked up (and kept if found).
    fn cached(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => DefaultResolver::host_and_port(scheme, authority),
            _ => None,
        };
        let Some(key) = key else { return self.inner.resolve(uri, config, timeout) };
        let now = Instant::now();
        let fresh = |at: &Instant| now.saturating_duration_since(*at) < DNS_TTL;
        // A poisoned lock only means no cache: resolve as ureq would.
        if let Ok(cache) = self.cache.lock()
            && let Some((at, addrs)) = cache.get(&key)
            && fresh(at)
        {
            return Ok(addrs.clone());
        }
        // Looked up outside the lock: a slow name must not hold up the others. Failures are not
        // kept, so the next request asks again.
        let addrs = self.inner.resolve(uri, config, timeout)?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, (at, _)| fresh(at));
            cache.insert(key, (now, addrs.clone()));
        }
        Ok(addrs)
    }
}

impl Resolver for ProxyResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        match self.proxies.absolute_form(uri) {
            Some(p) => {
                let host = if p.host().contains(':') { format!("[{}]", p.host()) } else { p.host().to_string() };
                let proxy_uri: ureq::http::Uri = format!("http://{host}:{}/", p.port())
                    .parse()
                    .map_err(|e: ureq::http::uri::InvalidUri| ureq::Error::BadUri(e.to_string()))?;
                self.cached(&proxy_uri, config, timeout)
            }
            None => self.cached(uri, config, timeout),
        }
    }
}

/// Wraps the connection of a request [`Proxies::absolute_form`] picks (already connected to
/// the proxy by [`ProxyResolver`]) in an [`AbsoluteForm`] transport.
#[derive(Debug)]
pub(crate) struct AbsoluteFormConnector {
    pub(crate) proxies: Arc<Proxies>,
}

impl<In: Transport> Connector<In> for AbsoluteFormConnector {
    type Out = Box<dyn Transport>;

    fn connect(&self, details: &ConnectionDetails, chained: Option<In>) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(t) = chained else { return Ok(None) };
        match self.proxies.absolute_form(details.uri) {
            Some(p) => {
                let target = match details.uri.authority() {
                    Some(a) => format!("http://{}", a.as_str().rsplit('@').next().unwrap_or(a.as_str())),
                    None => return Err(ureq::Error::BadUri(format!("{} has no host", details.uri))),
                };
                let auth = p.username().map(|user| {
                    let pair = format!("{user}:{}", p.password().unwrap_or(""));
                    format!("Proxy-Authorization: Basic {}\r\n", crate::secret::base64(pair.as_bytes()))
                });
                Ok(Some(Box::new(AbsoluteForm { inner: Box::new(t), target, auth, at_request_start: true })))
            }
            None => Ok(Some(Box::new(t))),
        }
    }
}

/// A connection to a proxy whose request lines name the whole target URL: `GET /p HTTP/1.1`
/// as ureq writes it becomes `GET http://host:port/p HTTP/1.1` (plus `Proxy-Authorization`).
pub(crate) struct AbsoluteForm {
    inner: Box<dyn Transport>,
    /// `http://host:port` of the target.
    target: String,
    /// The `Proxy-Authorization` header line, when the proxy URL has credentials.
    auth: Option<String>,
    /// The next output starts a request (a response is read between two requests).
    at_request_start: bool,
}

impl std::fmt::Debug for AbsoluteForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbsoluteForm").field("target", &self.target).finish_non_exhaustive()
    }
}

/// The request head in `out` with an absolute request-target (and `auth` after the request
/// line); `None` when `out` does not start with an origin-form request line.
pub(crate) fn rewrite_request_line(out: &[u8], target: &str, auth: Option<&str>) -> Option<Vec<u8>> {
    let line_end = out.windows(2).position(|w| w == b"\r\n")?;
    let line = &out[..line_end];
    let space = line.iter().position(|b| *b == b' ')?;
    if line.get(space + 1) != Some(&b'/') {
        return None;
    }
    let mut v = Vec::with_capacity(out.len() + target.len() + auth.map_or(0, str::len));
    v.extend_from_slice(&line[..=space]);
    v.extend_from_slice(target.as_bytes());
    v.extend_from_slice(&line[space + 1..]);
    v.extend_from_slice(b"\r\n");
    if let Some(a) = auth {
        v.extend_from_slice(a.as_bytes());
    }
    v.extend_from_slice(&out[line_end + 2..]);
    Some(v)
}

impl Transport for AbsoluteForm {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        if !self.at_request_start {
            return self.inner.transmit_output(amount, timeout);
        }
        self.at_request_start = false;
        let head = self.inner.buffers().output().get(..amount).map(<[u8]>::to_vec).unwrap_or_default();
        let Some(bytes) = rewrite_request_line(&head, &self.target, self.auth.as_deref()) else {
            return self.inner.transmit_output(amount, timeout);
        };
        // Longer than what ureq wrote: sent through the same buffer, a piece at a time.
        let cap = self.inner.buffers().output().len().max(1);
        for piece in bytes.chunks(cap) {
            let Some(out) = self.inner.buffers().output().get_mut(..piece.len()) else {
                return Err(ureq::Error::Io(std::io::Error::other("output buffer too small")));
            };
            out.copy_from_slice(piece);
            self.inner.transmit_output(piece.len(), timeout)?;
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        // Input is an answer: whatever is written next starts the next request.
        self.at_request_start = true;
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }
}

/// The proxy URL (as the environment gives it) that a request to `url` goes through: the same
/// choice the HTTP client makes (`HTTPS_PROXY` or `HTTP_PROXY`/`http_proxy`, then `ALL_PROXY`;
/// `NO_PROXY` with domains, IP addresses and CIDR blocks). For other processes that speak HTTP
/// (git), which must be told explicitly: curl ignores the uppercase `HTTP_PROXY`, and its
/// `NO_PROXY` rules are not ours.
pub fn proxy_url_for(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let o = Origin::parse(url).ok()?;
    let ProxyEnv { http, https, no_proxy } = ProxyEnv::read(env);
    let (_, chosen) = if o.scheme == "https" { https } else { http }?;
    (!no_proxy_matches(&no_proxy, &o.host)).then(|| chosen.trim().to_string())
}

/// The proxy variables, read once with their precedence: `HTTPS_PROXY` or `HTTP_PROXY` (either
/// case), then `ALL_PROXY`; blank is unset. Each chosen value comes with its variable's name
/// (an error names the variable, never the value: it may hold a password).
struct ProxyEnv {
    http: Option<(&'static str, String)>,
    https: Option<(&'static str, String)>,
    no_proxy: Vec<String>,
}

impl ProxyEnv {
    fn read(env: &dyn Fn(&str) -> Option<String>) -> ProxyEnv {
        let var = |names: &[&'static str]| -> Option<(&'static str, String)> {
            names.iter().find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (*n, v)))
        };
        let all = var(&["ALL_PROXY", "all_proxy"]);
        let https = var(&["HTTPS_PROXY", "https_proxy"]).or_else(|| all.clone());
        let http = var(&["HTTP_PROXY", "http_proxy"]).or(all);
        let no_proxy = var(&["NO_PROXY", "no_proxy"])
            .map(|(_, v)| v.split(',').map(|e| e.trim().to_ascii_lowercase()).filter(|e| !e.is_empty()).collect())
            .unwrap_or_default();
        ProxyEnv { http, https, no_proxy }
    }
}

/// `NO_PROXY` matching as curl does it: `*`, exact host, domain suffix (`example.com` and
/// `.example.com` both cover `a.example.com`), IP address or CIDR block; ports are ignored.
pub(crate) fn no_proxy_matches(entries: &[String], host: &str) -> bool {
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

    #[test]
    fn resolved_addresses_are_kept_for_a_minute() {
        let r = ProxyResolver::new(Arc::new(Proxies::default()));
        let config = ureq::Agent::config_builder().build();
        let uri: ureq::http::Uri = "http://127.0.0.1:9/x".parse().expect("uri");
        let first = r.resolve(&uri, &config, NextTimeout::default()).expect("resolve");
        assert_eq!(first.first().map(|a| a.to_string()).as_deref(), Some("127.0.0.1:9"));
        // A cached answer is recognisable by an address the name does not have.
        let mut other = first.clone();
        other[0] = "192.0.2.1:9".parse().expect("addr");
        let at = Instant::now();
        r.cache.lock().expect("cache").insert("127.0.0.1:9".into(), (at, other));
        let again = r.resolve(&uri, &config, NextTimeout::default()).expect("cached");
        assert_eq!(again.first().map(|a| a.to_string()).as_deref(), Some("192.0.2.1:9"));
        // Past the TTL it is looked up again.
        if let Some(old) = at.checked_sub(DNS_TTL) {
            r.cache.lock().expect("cache").get_mut("127.0.0.1:9").expect("entry").0 = old;
            let fresh = r.resolve(&uri, &config, NextTimeout::default()).expect("resolve");
            assert_eq!(fresh.first().map(|a| a.to_string()).as_deref(), Some("127.0.0.1:9"));
        }
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
    fn request_lines_get_the_absolute_target() {
        let head = b"GET /api/v3/x?y=1 HTTP/1.1\r\nHost: h:8\r\n\r\n";
        let out = rewrite_request_line(head, "http://h:8", Some("Proxy-Authorization: Basic eA==\r\n")).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET http://h:8/api/v3/x?y=1 HTTP/1.1\r\nProxy-Authorization: Basic eA==\r\nHost: h:8\r\n\r\n"
        );
        assert_eq!(rewrite_request_line(b"body bytes", "http://h", None), None);
        assert_eq!(rewrite_request_line(b"GET http://h/ HTTP/1.1\r\n", "http://h", None), None);
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
}

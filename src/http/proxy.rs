//! Proxies from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`).

use super::Origin;
use std::net::IpAddr;

/// Proxies from the environment, chosen per request.
#[derive(Debug, Default)]
pub(crate) struct Proxies {
    http: Option<ureq::Proxy>,
    https: Option<ureq::Proxy>,
    no_proxy: Vec<String>,
}

impl Proxies {
    pub(crate) fn from_env(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Proxies> {
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

    /// The proxy that `o` goes through, if any (`NO_PROXY` applied).
    pub(crate) fn for_origin(&self, o: &Origin) -> Option<ureq::Proxy> {
        let p = if o.scheme == "https" { &self.https } else { &self.http };
        match p {
            Some(p) if !no_proxy_matches(&self.no_proxy, &o.host) => Some(p.clone()),
            _ => None,
        }
    }
}

/// The proxy URL (as the environment gives it) that a request to `url` goes through: the same
/// choice the HTTP client makes (`HTTPS_PROXY` or `HTTP_PROXY`/`http_proxy`, then `ALL_PROXY`;
/// `NO_PROXY` with domains, IP addresses and CIDR blocks). For other processes that speak HTTP
/// (git), which must be told explicitly: curl ignores the uppercase `HTTP_PROXY`, and its
/// `NO_PROXY` rules are not ours.
pub fn proxy_url_for(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let o = Origin::parse(url).ok()?;
    let var =
        |names: &[&str]| names.iter().find_map(|n| env(n).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()));
    let chosen =
        if o.scheme == "https" { var(&["HTTPS_PROXY", "https_proxy"]) } else { var(&["HTTP_PROXY", "http_proxy"]) }
            .or_else(|| var(&["ALL_PROXY", "all_proxy"]))?;
    let no_proxy: Vec<String> = var(&["NO_PROXY", "no_proxy"])
        .map(|v| v.split(',').map(|e| e.trim().to_ascii_lowercase()).filter(|e| !e.is_empty()).collect())
        .unwrap_or_default();
    (!no_proxy_matches(&no_proxy, &o.host)).then_some(chosen)
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
}

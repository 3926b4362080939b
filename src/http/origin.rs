//! Origins (scheme, host, port): where credentials may go; relative targets resolved.

/// Scheme, host and port of a URL: what decides where secrets may go and which proxy applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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
        let p = crate::model::url::split(url)?;
        let scheme = p.scheme.ok_or_else(|| format!("{url:?} is not an absolute URL"))?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(format!("{url:?}: only http and https are supported")),
        };
        if p.host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        Ok(Origin { scheme, host: p.host.to_ascii_lowercase(), port: p.port.unwrap_or(default_port) })
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

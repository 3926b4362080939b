//! The one URL splitter: scheme, user information, host, port and the rest, for every form
//! users write (`https://host:port/path`, `ssh://git@host/path`, scp-like `git@host:path`,
//! `file:///path`, bracketed IPv6). Repository URLs, HTTP origins, validation and messages all
//! read hosts through it, so they cannot disagree about what a URL names.

/// The parts of a URL, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts<'a> {
    /// The scheme as written; `None` for the scp-like form (`user@host:path`).
    pub scheme: Option<&'a str>,
    /// What stands before `@` in the authority, if anything.
    pub userinfo: Option<&'a str>,
    /// The host, without IPv6 brackets (see `bracketed`).
    pub host: &'a str,
    /// The host was a bracketed IPv6 address.
    pub bracketed: bool,
    /// An explicit port.
    pub port: Option<u16>,
    /// Path, query and fragment: everything after the authority (for scp-like, after `:`).
    pub rest: &'a str,
}

impl Parts<'_> {
    /// The host as it appears in a URL (IPv6 in brackets), lowercase.
    pub fn host_for_url(&self) -> String {
        let host = self.host.to_ascii_lowercase();
        if self.bracketed { format!("[{host}]") } else { host }
    }

    /// `scheme://host[:port]`, for messages that must not show a path (it may be a secret).
    pub fn origin_text(&self) -> String {
        let scheme = self.scheme.unwrap_or("ssh").to_ascii_lowercase();
        match self.port {
            Some(p) => format!("{scheme}://{}:{p}", self.host_for_url()),
            None => format!("{scheme}://{}", self.host_for_url()),
        }
    }
}

/// Splits `url`. Errors name what is wrong (no scheme or scp form, a bad port, an unterminated
/// IPv6 address); an empty host is left for the caller to judge (`file:///path` has none).
pub fn split(url: &str) -> Result<Parts<'_>, String> {
    let (scheme, authority, rest) = match url.split_once("://") {
        Some((scheme, after)) => {
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            (Some(scheme), &after[..end], &after[end..])
        }
        None => {
            // scp-like: [user@]host:path, where host has no '/' (git's own rule).
            let (authority, path) =
                url.split_once(':').ok_or_else(|| format!("{url:?} is not a URL (scheme://host/path)"))?;
            if authority.is_empty() || authority.contains('/') {
                return Err(format!("{url:?} is not a URL (scheme://host/path)"));
            }
            (None, authority, path)
        }
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if scheme.is_none() {
        return Ok(Parts { scheme, userinfo, host: hostport, bracketed: false, port: None, rest });
    }
    let (host, bracketed, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| format!("{url:?}: unterminated IPv6 address"))?;
        (h, true, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, false, Some(p)),
            None => (hostport, false, None),
        }
    };
    let port = match port.filter(|p| !p.is_empty()) {
        Some(p) => Some(p.parse::<u16>().map_err(|_| format!("{url:?} has an invalid port {p:?}"))?),
        None => None,
    };
    Ok(Parts { scheme, userinfo, host, bracketed, port, rest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_splits() {
        let p = split("https://user:pw@Git.Example:8443/a/b.git?x#y").expect("url");
        assert_eq!(
            (p.scheme, p.userinfo, p.host, p.port, p.rest),
            (Some("https"), Some("user:pw"), "Git.Example", Some(8443), "/a/b.git?x#y")
        );
        assert_eq!(p.origin_text(), "https://git.example:8443");
        let p = split("git@github.com:a/b.git").expect("scp");
        assert_eq!((p.scheme, p.userinfo, p.host, p.rest), (None, Some("git"), "github.com", "a/b.git"));
        let p = split("http://[::1]:9/x").expect("v6");
        assert_eq!((p.host, p.bracketed, p.port, p.host_for_url()), ("::1", true, Some(9), "[::1]".into()));
        let p = split("file:///srv/r.git").expect("file");
        assert_eq!((p.host, p.rest), ("", "/srv/r.git"));
        assert!(split("http://h:99999/").is_err());
        assert!(split("http://[::1/").is_err());
        assert!(split("github.com/a/b").is_err());
        assert!(split("/abs/path").is_err());
    }
}

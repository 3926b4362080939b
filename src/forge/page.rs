//! Pagination of REST listings: `Link` headers (RFC 8288), GitLab's `X-Next-Page`, Gitea's
//! `X-Total-Count`, and a walker that refuses loops, endless listings and foreign origins.

use crate::http::{Headers, Origin, header, resolve};
use std::collections::HashSet;

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
/// (GitHub, GitLab, Gitea), else GitLab's `X-Next-Page`, else Gitea's `X-Total-Count`. The
/// page size for `X-Total-Count` is the one the server used (`page_size`: what its pages held;
/// servers cap what is asked, Gitea at `MAX_RESPONSE_ITEMS`), else GitLab's `X-Per-Page`, else
/// the size asked for (`limit` or `per_page`). `None` on the last page. The link is returned as
/// the server wrote it, possibly on another origin: [`Pager`] decides where it goes.
pub fn next_page(current: &str, headers: &Headers, page_size: Option<u64>) -> Option<String> {
    for (_, value) in headers.iter().filter(|(k, _)| k == "link") {
        if let Some((url, _)) = parse_link(value).into_iter().find(|(_, rels)| rels.iter().any(|r| r == "next")) {
            return resolve(current, &url).ok();
        }
    }
    if let Some(n) = next_page_number(headers) {
        return Some(set_query(current, "page", n));
    }
    if header(headers, "x-next-page").is_some() {
        return None;
    }
    let total: u64 = header(headers, "x-total-count")?.trim().parse().ok()?;
    let asked = || query_param(current, "limit").or_else(|| query_param(current, "per_page"))?.parse().ok();
    let per_page = || header(headers, "x-per-page")?.trim().parse().ok();
    let size: u64 = page_size.filter(|n| *n > 0).or_else(per_page).or_else(asked)?;
    let page: u64 = query_param(current, "page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    // Checked: a total near 2^64 never wraps into a page that exists.
    let listed = page.checked_mul(size)?;
    let next = page.checked_add(1)?;
    (size > 0 && listed < total).then(|| set_query(current, "page", &next.to_string()))
}

/// GitLab's `X-Next-Page`, when it names a page (digits only).
fn next_page_number(headers: &Headers) -> Option<&str> {
    let n = header(headers, "x-next-page")?.trim();
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(n)
}

/// `scheme://authority` of an absolute URL, as written.
fn origin_prefix(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    Some(&url[..scheme.len() + 3 + authority.len()])
}

/// Path and query of an absolute URL (from the first `/` after the authority; `/` if none).
fn path_and_query(url: &str) -> String {
    let Some(prefix) = origin_prefix(url) else { return "/".to_string() };
    let rest = url[prefix.len()..].split('#').next().unwrap_or("");
    if rest.starts_with('/') { rest.to_string() } else { format!("/{rest}") }
}

/// Walks a paginated listing safely: a page cap, no page twice, every page on the configured
/// origin (credentials never leave it).
///
/// Forges build their next-page links from their own idea of their address (GitLab's
/// `external_url`, Gitea's `ROOT_URL`, the GitHub Enterprise hostname), which need not be the
/// address sentry was configured with (an internal name, a port-forward, a proxy in front). A
/// link to another origin is therefore followed on the configured one: its path and query when
/// they lie under the configured API base, else only its page number (its `page` parameter, or
/// GitLab's `X-Next-Page`) set on the current request.
#[derive(Debug)]
pub struct Pager {
    origin: Origin,
    /// `scheme://authority` of the first page, as configured.
    prefix: String,
    /// The API base's path, without a trailing slash (`/api/v4`, or empty).
    base_path: String,
    seen: HashSet<String>,
    max_pages: usize,
    /// The most items a page held so far: the server's page size, whatever was asked.
    page_size: usize,
}

impl Pager {
    /// A pager starting at `first` (under the API base `api_base`) that stops with an error
    /// after `max_pages` pages.
    pub fn new(first: &str, api_base: &str, max_pages: usize) -> Result<Pager, String> {
        let origin = Origin::parse(first)?;
        let prefix = origin_prefix(first).ok_or_else(|| format!("{first:?} is not an absolute URL"))?.to_string();
        let base_path = match origin_prefix(api_base) {
            Some(_) => path_and_query(api_base).split('?').next().unwrap_or("").trim_end_matches('/').to_string(),
            None => String::new(),
        };
        let mut seen = HashSet::new();
        seen.insert(first.to_string());
        Ok(Pager { origin, prefix, base_path, seen, max_pages, page_size: 0 })
    }

    /// Pages accepted so far.
    pub fn pages(&self) -> usize {
        self.seen.len()
    }

    /// The server's page size as seen so far (the most items one page held); 0 before any.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The next page after `current`, which held `items` items, checked: `Ok(None)` at the end,
    /// `Err` on a loop, on a page beyond the cap, or on a link to another origin that cannot be
    /// followed on the configured one.
    pub fn next(&mut self, current: &str, headers: &Headers, items: usize) -> Result<Option<String>, String> {
        self.page_size = self.page_size.max(items);
        let size = u64::try_from(self.page_size).ok().filter(|n| *n > 0);
        let Some(next) = next_page(current, headers, size) else { return Ok(None) };
        let origin = Origin::parse(&next).map_err(|m| format!("unusable next-page link: {m}"))?;
        let next = if self.origin.may_receive_secrets(&origin) && origin.scheme == self.origin.scheme {
            next
        } else {
            self.rebase(current, &next, headers).ok_or_else(|| {
                format!(
                    "the next-page link points to another server ({}) and names no page to ask {} for",
                    origin.host, self.origin.host
                )
            })?
        };
        if !self.seen.insert(next.clone()) {
            return Err(format!("pagination loops: {next} was already listed"));
        }
        if self.seen.len() > self.max_pages {
            return Err(format!("more than {} pages: listing stopped", self.max_pages));
        }
        Ok(Some(next))
    }

    /// `next` (on another origin) moved to the configured one.
    fn rebase(&self, current: &str, next: &str, headers: &Headers) -> Option<String> {
        let pq = path_and_query(next);
        let path = pq.split('?').next().unwrap_or("");
        let under_base = self.base_path.is_empty()
            || path == self.base_path
            || path.strip_prefix(&self.base_path).is_some_and(|rest| rest.starts_with('/'));
        if under_base {
            return Some(format!("{}{pq}", self.prefix));
        }
        let page = query_param(next, "page")
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .or_else(|| next_page_number(headers))?;
        Some(set_query(current, "page", page))
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
        assert_eq!(next_page(cur, &hd, None).as_deref(), Some("http://h:8/api/v1/repos/o/r/branches?limit=50&page=2"));
        let last = h(&[("link", r#"<http://h:8/x?page=1>; rel="first", <http://h:8/x?page=1>; rel="prev""#)]);
        assert_eq!(next_page(cur, &last, None), None);
    }

    #[test]
    fn next_page_from_gitlab_headers() {
        let cur = "https://gl/api/v4/projects/a%2Fb/repository/branches?per_page=100";
        let hd = h(&[("x-next-page", "2"), ("x-page", "1")]);
        assert_eq!(
            next_page(cur, &hd, None).as_deref(),
            Some("https://gl/api/v4/projects/a%2Fb/repository/branches?per_page=100&page=2")
        );
        assert_eq!(next_page(cur, &h(&[("x-next-page", "")]), None), None);
        assert_eq!(next_page(cur, &h(&[("x-next-page", "2; drop")]), None), None);
    }

    #[test]
    fn next_page_from_total_count() {
        let cur = "https://g/api/v1/repos/o/r/branches?limit=50&page=2";
        assert_eq!(
            next_page(cur, &h(&[("x-total-count", "120")]), None).as_deref(),
            Some("https://g/api/v1/repos/o/r/branches?limit=50&page=3")
        );
        assert_eq!(next_page(cur, &h(&[("x-total-count", "100")]), None), None);
        assert_eq!(
            next_page("https://g/x?limit=50", &h(&[("x-total-count", "51")]), None).as_deref(),
            Some("https://g/x?limit=50&page=2")
        );
        assert_eq!(next_page("https://g/x?limit=0", &h(&[("x-total-count", "51")]), None), None);
    }

    #[test]
    fn pager_stops_loops_caps_and_keeps_the_configured_origin() {
        let first = "https://api/x?page=1";
        let mut p = Pager::new(first, "https://api", 3).unwrap();
        let self_link = h(&[("link", "<https://api/x?page=1>; rel=\"next\"")]);
        assert!(p.next(first, &self_link, 1).unwrap_err().contains("loops"));

        let mut p = Pager::new(first, "https://api", 3).unwrap();
        let to = |n: u32| h(&[("link", &format!("<https://api/x?page={n}>; rel=\"next\""))]);
        assert_eq!(p.next(first, &to(2), 1).unwrap().as_deref(), Some("https://api/x?page=2"));
        assert_eq!(p.next("https://api/x?page=2", &to(3), 1).unwrap().as_deref(), Some("https://api/x?page=3"));
        assert!(p.next("https://api/x?page=3", &to(4), 1).unwrap_err().contains("more than 3 pages"));

        // A link on another origin is followed on the configured one, never there.
        let mut p = Pager::new(first, "https://api", 10).unwrap();
        let evil = h(&[("link", "<https://evil.example/x?page=2>; rel=\"next\"")]);
        assert_eq!(p.next(first, &evil, 1).unwrap().as_deref(), Some("https://api/x?page=2"));
        assert_eq!(p.next(first, &h(&[]), 1).unwrap(), None);
    }

    #[test]
    fn foreign_next_links_keep_path_under_the_base_else_their_page_number() {
        let first = "http://127.0.0.1:8080/api/v4/projects/g%2Fp/repository/branches?per_page=100";
        let base = "http://127.0.0.1:8080/api/v4";
        // GitLab's external_url: same path, other host.
        let mut p = Pager::new(first, base, 10).unwrap();
        let link = h(&[(
            "link",
            "<https://gitlab.example.com/api/v4/projects/g%2Fp/repository/branches?id=g%2Fp&page=2&per_page=100>; rel=\"next\"",
        )]);
        assert_eq!(
            p.next(first, &link, 100).unwrap().as_deref(),
            Some("http://127.0.0.1:8080/api/v4/projects/g%2Fp/repository/branches?id=g%2Fp&page=2&per_page=100")
        );
        // A relative URL root the configured base does not have: only the page number is kept.
        let mut p = Pager::new(first, base, 10).unwrap();
        let link = h(&[(
            "link",
            "<https://gl.example.com/gitlab/api/v4/projects/7/repository/branches?page=3>; rel=\"next\"",
        )]);
        assert_eq!(
            p.next(first, &link, 100).unwrap().as_deref(),
            Some("http://127.0.0.1:8080/api/v4/projects/g%2Fp/repository/branches?per_page=100&page=3")
        );
        // No page number in the link: GitLab's X-Next-Page says which.
        let mut p = Pager::new(first, base, 10).unwrap();
        let link = h(&[("link", "<https://gl.example.com/other?cursor=abc>; rel=\"next\""), ("x-next-page", "2")]);
        assert!(p.next(first, &link, 100).unwrap().is_some_and(|n| n.ends_with("per_page=100&page=2")));
        let mut p = Pager::new(first, base, 10).unwrap();
        let link = h(&[("link", "<https://gl.example.com/other?cursor=abc>; rel=\"next\"")]);
        assert!(p.next(first, &link, 100).unwrap_err().contains("another server"));
    }

    #[test]
    fn total_count_uses_the_page_size_the_server_used() {
        let first = "https://g/api/v1/repos/o/r/branches?limit=50";
        let mut p = Pager::new(first, "https://g/api/v1", 10).unwrap();
        // The server capped the page at 30: 100 branches are 4 pages, not 2.
        let total = h(&[("x-total-count", "100")]);
        let two = p.next(first, &total, 30).unwrap().expect("page 2");
        assert!(two.ends_with("page=2"), "{two}");
        let three = p.next(&two, &total, 30).unwrap().expect("page 3");
        let four = p.next(&three, &total, 30).unwrap().expect("page 4");
        assert_eq!(p.next(&four, &total, 10).unwrap(), None);
        assert_eq!(p.page_size(), 30);
    }

    #[test]
    fn query_helpers() {
        assert_eq!(set_query("http://h/p", "page", "2"), "http://h/p?page=2");
        assert_eq!(set_query("http://h/p?page=1&per_page=100", "page", "2"), "http://h/p?per_page=100&page=2");
        assert_eq!(query_param("http://h/p?limit=50&page=3", "page"), Some("3"));
        assert_eq!(query_param("http://h/p", "page"), None);
    }

    #[test]
    fn hostile_pagination_headers_end_the_listing_or_point_to_one_more_page() {
        let max = u64::MAX.to_string();
        let cur = format!("https://g/x?limit=50&page={max}");
        assert_eq!(next_page(&cur, &h(&[("x-total-count", &max)]), None), None, "no page after the last u64");
        let cur = format!("https://g/x?limit={max}&page=2");
        assert_eq!(next_page(&cur, &h(&[("x-total-count", &max)]), None), None, "page * size overflows");
        assert_eq!(
            next_page("https://g/x?limit=50", &h(&[("x-total-count", &max)]), None).as_deref(),
            Some("https://g/x?limit=50&page=2")
        );
        for v in ["-1", "-9223372036854775808", "18446744073709551616", "", "1e9", &"9".repeat(10_000)] {
            assert_eq!(next_page("https://g/x?limit=50&page=1", &h(&[("x-total-count", v)]), None), None, "{v:?}");
        }
        // An overlong X-Next-Page is a page number like any other: the pager's cap ends the walk.
        let long = "9".repeat(10_000);
        assert!(
            next_page("https://g/x?page=1", &h(&[("x-next-page", &long)]), None).is_some_and(|n| n.ends_with(&long))
        );
        assert_eq!(next_page("https://g/x", &h(&[("x-next-page", "-1")]), None), None);
        // Link: unterminated, empty, nested and very long values.
        let many = "<https://g/x?page=2>; rel=\"prev\", ".repeat(5_000);
        assert_eq!(parse_link(&many).len(), 5_000);
        for v in ["<", ">", "<>", "<<>>; rel=next", "<https://g/x>; rel=\"", ";;;,,,", "<\u{0}>; rel=next"] {
            let _ = parse_link(v);
            let _ = next_page("https://g/x", &h(&[("link", v)]), None);
        }
        assert_eq!(next_page("https://g/x", &h(&[("link", "<>; rel=next")]), None).as_deref(), Some("https://g/"));
    }
}

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
    // Checked: a total near 2^64 never wraps into a page that exists.
    let listed = page.checked_mul(size)?;
    let next = page.checked_add(1)?;
    (size > 0 && listed < total).then(|| set_query(current, "page", &next.to_string()))
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
        assert_eq!(next_page(&cur, &h(&[("x-total-count", &max)])), None, "no page after the last u64");
        let cur = format!("https://g/x?limit={max}&page=2");
        assert_eq!(next_page(&cur, &h(&[("x-total-count", &max)])), None, "page * size overflows");
        assert_eq!(
            next_page("https://g/x?limit=50", &h(&[("x-total-count", &max)])).as_deref(),
            Some("https://g/x?limit=50&page=2")
        );
        for v in ["-1", "-9223372036854775808", "18446744073709551616", "", "1e9", &"9".repeat(10_000)] {
            assert_eq!(next_page("https://g/x?limit=50&page=1", &h(&[("x-total-count", v)])), None, "{v:?}");
        }
        // An overlong X-Next-Page is a page number like any other: the pager's cap ends the walk.
        let long = "9".repeat(10_000);
        assert!(next_page("https://g/x?page=1", &h(&[("x-next-page", &long)])).is_some_and(|n| n.ends_with(&long)));
        assert_eq!(next_page("https://g/x", &h(&[("x-next-page", "-1")])), None);
        // Link: unterminated, empty, nested and very long values.
        let many = "<https://g/x?page=2>; rel=\"prev\", ".repeat(5_000);
        assert_eq!(parse_link(&many).len(), 5_000);
        for v in ["<", ">", "<>", "<<>>; rel=next", "<https://g/x>; rel=\"", ";;;,,,", "<\u{0}>; rel=next"] {
            let _ = parse_link(v);
            let _ = next_page("https://g/x", &h(&[("link", v)]));
        }
        assert_eq!(next_page("https://g/x", &h(&[("link", "<>; rel=next")])).as_deref(), Some("https://g/"));
    }
}

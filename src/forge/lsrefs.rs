//! Plain Git over http(s) listed in process: Git protocol v2 `ls-refs` through the run's HTTP
//! client, instead of one `git ls-remote` process per repository (SPEC §4 "Listing").
//!
//! `GET {url}/info/refs?service=git-upload-pack` with `Git-Protocol: version=2` answers the
//! capability advertisement; `POST {url}/git-upload-pack` with `command=ls-refs` and
//! `ref-prefix refs/heads/` answers one pkt-line `<oid> <ref>` per branch (for tags, `peel` and
//! `ref-prefix refs/tags/`: `<oid> <ref> peeled:<commit>` for an annotated one). A server that does
//! not speak version 2 (a v0 advertisement, a dumb server, no `ls-refs`) is left to
//! `git ls-remote`. Credentials: the Basic header `git` would send, to the configured origin only;
//! like sentry's `git`, no redirect is followed.

use super::{CheckError, CheckErrorKind, Checker, MAX_REFS};
use crate::config::Repository;
use crate::http::{HttpError, HttpErrorKind, Method, Request, Response};
use crate::model::Sha;
use std::borrow::Cow;
use std::time::Instant;

/// Largest pkt-line payload (LARGE_PACKET_DATA_MAX: 65520 bytes with the 4-byte length).
const MAX_PKT: usize = 65520;

/// Largest advertisement read: a few capabilities.
const MAX_ADVERTISEMENT: u64 = 1024 * 1024;

/// Largest `ls-refs` answer read (~150k branches); a bigger one is an error for the repository.
const MAX_LS_REFS: u64 = crate::http::MAX_BODY;

/// One pkt-line.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pkt<'a> {
    /// `0000`.
    Flush,
    /// `0001`.
    Delim,
    /// `0002`.
    ResponseEnd,
    /// A payload (its trailing newline kept).
    Data(&'a [u8]),
}

/// Splits `body` into pkt-lines, strictly: a length that is not 4 hex digits, `0003`, over
/// 65520, or past the end of the body is an error, never a panic.
pub(super) fn pkt_lines(body: &[u8]) -> Result<Vec<Pkt<'_>>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < body.len() {
        let head = body.get(pos..pos.checked_add(4).ok_or("length overflow")?).ok_or("a truncated pkt-line length")?;
        let text = std::str::from_utf8(head).map_err(|_| format!("bad pkt-line length at byte {pos}"))?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("bad pkt-line length {text:?} at byte {pos}"));
        }
        let len = usize::from_str_radix(text, 16).map_err(|_| format!("bad pkt-line length {text:?} at byte {pos}"))?;
        let pkt = match len {
            0 => Pkt::Flush,
            1 => Pkt::Delim,
            2 => Pkt::ResponseEnd,
            3 => return Err(format!("invalid pkt-line length 0003 at byte {pos}")),
            n if n > MAX_PKT => return Err(format!("pkt-line of {n} bytes at byte {pos} (at most {MAX_PKT})")),
            n => {
                let end = pos.checked_add(n).ok_or("length overflow")?;
                let data = body
                    .get(pos + 4..end)
                    .ok_or_else(|| format!("a pkt-line of {n} bytes at byte {pos} runs past the end"))?;
                pos = end;
                out.push(Pkt::Data(data));
                continue;
            }
        };
        pos += 4;
        out.push(pkt);
    }
    Ok(out)
}

/// One pkt-line of `payload` (at most [`MAX_PKT`] - 4 bytes; the callers' are short).
fn pkt(out: &mut Vec<u8>, payload: &str) {
    use std::io::Write as _;
    let len = payload.len().saturating_add(4).min(MAX_PKT);
    // Into the body itself: no string per line (writing to a Vec cannot fail).
    let _ = write!(out, "{len:04x}");
    out.extend_from_slice(payload.as_bytes().get(..len.saturating_sub(4)).unwrap_or_default());
}

/// The capabilities of a version 2 advertisement (borrowed from `body` when UTF-8, as they
/// are); `None` when it is not version 2.
pub(super) fn advertisement(body: &[u8]) -> Result<Option<Vec<Cow<'_, str>>>, String> {
    let pkts = pkt_lines(body)?;
    let mut it = pkts.iter().peekable();
    // Smart HTTP servers may start with `# service=git-upload-pack` and a flush.
    if let Some(Pkt::Data(d)) = it.peek()
        && d.starts_with(b"# service=")
    {
        it.next();
        if matches!(it.peek(), Some(Pkt::Flush)) {
            it.next();
        }
    }
    match it.next() {
        Some(Pkt::Data(d)) if trim_nl(d) == b"version 2" => {}
        _ => return Ok(None),
    }
    let mut caps = Vec::new();
    for p in it {
        match p {
            Pkt::Data(d) => caps.push(String::from_utf8_lossy(trim_nl(d))),
            Pkt::Flush => break,
            _ => return Err("unexpected delimiter in the capability advertisement".into()),
        }
    }
    Ok(Some(caps))
}

/// Which refs a listing asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RefKind {
    /// `refs/heads/`.
    Branches,
    /// `refs/tags/`, annotated ones peeled to their commit.
    Tags,
}

impl RefKind {
    fn prefix(self) -> &'static str {
        match self {
            RefKind::Branches => "refs/heads/",
            RefKind::Tags => "refs/tags/",
        }
    }
}

/// The refs of `kind` in an `ls-refs` answer (`<oid> <ref>[ attributes]` lines up to a flush),
/// by short name; a tag's `peeled:<oid>` attribute, when given, is its commit.
pub(super) fn parse_ls_refs(body: &[u8], kind: RefKind) -> Result<Vec<(String, Sha)>, String> {
    let mut heads = Vec::new();
    let mut flushed = false;
    for p in pkt_lines(body)? {
        match p {
            Pkt::Data(d) if d.starts_with(b"ERR ") => {
                return Err(format!("the server said: {}", crate::text::one_line(&String::from_utf8_lossy(&d[4..]))));
            }
            Pkt::Data(d) => {
                if flushed {
                    return Err("data after the final flush".into());
                }
                let line = std::str::from_utf8(trim_nl(d)).map_err(|_| "a ref line that is not UTF-8".to_string())?;
                let mut parts = line.split(' ');
                let (Some(oid), Some(name)) = (parts.next(), parts.next()) else {
                    return Err(format!("unexpected ls-refs line {:?}", crate::text::truncate(line, 200)));
                };
                let Some(short) = name.strip_prefix(kind.prefix()) else { continue };
                let oid = parts.find_map(|a| a.strip_prefix("peeled:")).unwrap_or(oid);
                let sha =
                    Sha::parse(oid).ok_or_else(|| format!("not a commit id: {:?}", crate::text::truncate(oid, 80)))?;
                heads.push((short.to_string(), sha));
                if heads.len() > MAX_REFS {
                    return Err(format!("more than {MAX_REFS} refs"));
                }
            }
            Pkt::Flush => flushed = true,
            Pkt::Delim | Pkt::ResponseEnd => return Err("unexpected delimiter in the ls-refs answer".into()),
        }
    }
    if !flushed {
        return Err("the ls-refs answer ends without a flush (truncated)".into());
    }
    Ok(heads)
}

fn trim_nl(d: &[u8]) -> &[u8] {
    d.strip_suffix(b"\n").unwrap_or(d)
}

/// What an in-process listing found.
pub(super) enum LsRefs {
    /// Every branch, and the HTTP requests it took.
    Listed(Vec<(String, Sha)>, u32),
    /// The server does not speak protocol v2 `ls-refs` over smart HTTP: ask `git ls-remote`.
    NotV2(String),
}

impl Checker {
    /// Lists `repo`'s branches or tags with protocol v2 `ls-refs` (its `monitor.repo_url` is
    /// http(s)).
    pub(super) fn ls_refs(&self, repo: &Repository, kind: RefKind, deadline: Instant) -> Result<LsRefs, CheckError> {
        let m = &repo.monitor;
        let url = m.repo_url.trim().trim_end_matches('/');
        let auth = crate::gitcmd::basic_auth_header(&m.auth, m.kind);
        let fail = |kind, msg: String| CheckError {
            repo: repo.name.clone(),
            kind,
            message: format!("repository {} (monitor): git ls-refs {url}: {msg}", repo.name),
        };
        let with_auth = |r: Request| match &auth {
            Some(a) => r.secret_header("Authorization", a.clone()),
            None => r,
        };
        let advert_url = format!("{url}/info/refs?service=git-upload-pack");
        let req = with_auth(
            Request::get(&advert_url)
                .deadline(deadline)
                .header("Git-Protocol", "version=2")
                .header("Accept", "*/*")
                .header("Pragma", "no-cache")
                .max_body(MAX_ADVERTISEMENT),
        );
        let resp = self.http.send(&req).map_err(|e| http_fail(&fail, &auth, e))?;
        let mut requests = resp.requests;
        no_redirect(&resp, &advert_url).map_err(|m| fail(CheckErrorKind::Protocol, m))?;
        if !resp
            .header("content-type")
            .is_some_and(|t| t.trim().starts_with("application/x-git-upload-pack-advertisement"))
        {
            return Ok(LsRefs::NotV2("not a smart HTTP server".into()));
        }
        let caps = match advertisement(&resp.body).map_err(|m| fail(CheckErrorKind::Protocol, m))? {
            Some(caps) => caps,
            None => return Ok(LsRefs::NotV2("the server answered without protocol version 2".into())),
        };
        if !caps.iter().any(|c| c == "ls-refs" || c.starts_with("ls-refs=")) {
            return Ok(LsRefs::NotV2("the server does not offer ls-refs".into()));
        }
        if caps.iter().any(|c| c.starts_with("object-format=") && c != "object-format=sha1") {
            return Ok(LsRefs::NotV2("the repository does not use SHA-1 object ids".into()));
        }
        let mut body = Vec::with_capacity(96);
        pkt(&mut body, "command=ls-refs\n");
        if caps.iter().any(|c| c.starts_with("agent=")) {
            pkt(&mut body, &format!("agent={}\n", crate::http::USER_AGENT));
        }
        body.extend_from_slice(b"0001");
        if kind == RefKind::Tags {
            pkt(&mut body, "peel\n");
        }
        pkt(&mut body, &format!("ref-prefix {}\n", kind.prefix()));
        body.extend_from_slice(b"0000");
        let pack_url = format!("{url}/git-upload-pack");
        let req = with_auth(
            Request::new(Method::Post, &pack_url)
                .deadline(deadline)
                .header("Git-Protocol", "version=2")
                .header("Accept", "application/x-git-upload-pack-result")
                .max_body(MAX_LS_REFS)
                .body("application/x-git-upload-pack-request", body),
        );
        let resp = self.http.send(&req).map_err(|e| http_fail(&fail, &auth, e))?;
        requests = requests.saturating_add(resp.requests);
        no_redirect(&resp, &pack_url).map_err(|m| fail(CheckErrorKind::Protocol, m))?;
        let heads = parse_ls_refs(&resp.body, kind).map_err(|m| fail(CheckErrorKind::Protocol, m))?;
        Ok(LsRefs::Listed(heads, requests))
    }
}

/// sentry's git follows no redirect (credentials go only to the configured origin): neither
/// does its in-process listing.
fn no_redirect(resp: &Response, asked: &str) -> Result<(), String> {
    if resp.url == asked {
        return Ok(());
    }
    let strip = |u: &str| u.split('?').next().unwrap_or("").to_string();
    let base = |u: &str| {
        let u = strip(u);
        u.strip_suffix("/info/refs").or_else(|| u.strip_suffix("/git-upload-pack")).map(String::from).unwrap_or(u)
    };
    Err(crate::gitcmd::redirect_error(&base(asked), Some(&base(&resp.url))))
}

fn http_fail(
    fail: &dyn Fn(CheckErrorKind, String) -> CheckError,
    auth: &Option<crate::secret::Secret>,
    e: HttpError,
) -> CheckError {
    let kind = match (&e.kind, e.status) {
        (HttpErrorKind::Status, Some(401 | 403)) => CheckErrorKind::Unauthorized,
        (HttpErrorKind::Status, Some(404)) => CheckErrorKind::NotFound,
        (HttpErrorKind::Status, Some(s)) if s >= 500 => CheckErrorKind::Server,
        (HttpErrorKind::RateLimited { .. }, _) => CheckErrorKind::RateLimited,
        (HttpErrorKind::Network | HttpErrorKind::Timeout, _) => CheckErrorKind::Network,
        _ => CheckErrorKind::Protocol,
    };
    let hint = match kind {
        CheckErrorKind::Unauthorized if auth.is_some() => ": check monitor.auth (username and token)",
        CheckErrorKind::Unauthorized => ": set monitor.auth.token (and username)",
        CheckErrorKind::NotFound => ": check monitor.repo_url, or the credentials if it is private",
        _ => "",
    };
    fail(kind, format!("{e}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkt_lines_are_read_strictly() {
        assert_eq!(pkt_lines(b"0000").unwrap(), [Pkt::Flush]);
        assert_eq!(pkt_lines(b"0009hello00010002").unwrap(), [Pkt::Data(b"hello"), Pkt::Delim, Pkt::ResponseEnd]);
        for bad in [&b"000"[..], b"0003", b"00zz", b"0010short", b"fff0", b"+00a", b"\xff\xff\xff\xff", b"0005"] {
            // `0005` with no payload byte runs past the end.
            assert!(pkt_lines(bad).is_err(), "{bad:?}");
        }
        assert_eq!(pkt_lines(b"0004").unwrap(), [Pkt::Data(b"")]);
    }

    /// One pkt-line of `s`.
    fn p(s: &str) -> String {
        format!("{:04x}{s}", s.len() + 4)
    }

    #[test]
    fn advertisements_of_version_2_and_others() {
        let v2 = format!("{}{}{}0000", p("version 2\n"), p("agent=git/2.47.3\n"), p("ls-refs=unborn\n"));
        assert_eq!(
            advertisement(v2.as_bytes()).unwrap(),
            Some(vec!["agent=git/2.47.3".into(), "ls-refs=unborn".into()])
        );
        let with_service =
            format!("{}0000{}{}0000", p("# service=git-upload-pack\n"), p("version 2\n"), p("ls-refs\n"));
        assert_eq!(advertisement(with_service.as_bytes()).unwrap(), Some(vec!["ls-refs".into()]));
        let v0 = format!(
            "{}0000{}0000",
            p("# service=git-upload-pack\n"),
            p(&format!("{} HEAD\0multi_ack\n", "a".repeat(40)))
        );
        assert_eq!(advertisement(v0.as_bytes()).unwrap(), None);
        assert!(advertisement(format!("{}0001", p("version 2\n")).as_bytes()).is_err());
    }

    #[test]
    fn ls_refs_answers_parse_and_bad_ones_are_errors() {
        let a = "a".repeat(40);
        let body = format!(
            "{}{}{}0000",
            p(&format!("{a} refs/heads/main\n")),
            p(&format!("{a} refs/heads/feature/x\n")),
            p(&format!("{a} refs/tags/v1 peeled:{a}\n"))
        );
        let heads = parse_ls_refs(body.as_bytes(), RefKind::Branches).unwrap();
        assert_eq!(heads.iter().map(|(b, _)| b.as_str()).collect::<Vec<_>>(), ["main", "feature/x"]);
        let c = "c".repeat(40);
        let tags = format!("{}{}0000", p(&format!("{a} refs/tags/v1 peeled:{c}\n")), p(&format!("{a} refs/tags/v2\n")));
        let tags = parse_ls_refs(tags.as_bytes(), RefKind::Tags).unwrap();
        let tags: Vec<(&str, String)> = tags.iter().map(|(t, s)| (t.as_str(), s.to_string())).collect();
        assert_eq!(tags, [("v1", c.clone()), ("v2", a.clone())], "an annotated tag is its commit");
        assert!(parse_ls_refs(p(&format!("{a} refs/heads/main\n")).as_bytes(), RefKind::Branches).is_err(), "no flush");
        assert!(
            parse_ls_refs(format!("{}0000", p("ERR no access\n")).as_bytes(), RefKind::Branches)
                .unwrap_err()
                .contains("no access")
        );
        assert!(parse_ls_refs(format!("{}0000", p("zz refs/heads/main\n")).as_bytes(), RefKind::Branches).is_err());
        assert!(parse_ls_refs(format!("{}0000", p("nospace\n")).as_bytes(), RefKind::Branches).is_err());
        assert!(
            parse_ls_refs(format!("0000{}", p(&format!("{a} refs/heads/late\n"))).as_bytes(), RefKind::Branches)
                .is_err(),
            "after flush"
        );
    }

    #[test]
    fn requests_are_framed() {
        let mut b = Vec::new();
        pkt(&mut b, "command=ls-refs\n");
        assert_eq!(b, b"0014command=ls-refs\n");
    }
}

//! Git smart HTTP for the plain-git repositories of the fake forge, answered as `git
//! http-backend` answers them (checked byte for byte against it in `tests/it/forge/lsrefs.rs`),
//! without a process per request, so a benchmark measures the client and not a CGI.
//!
//! - `GET …/info/refs?service=git-upload-pack`: with `Git-Protocol: version=2` the protocol v2
//!   capability advertisement (`version 2`, `agent`, `ls-refs=unborn`, `fetch=shallow
//!   wait-for-done`, `server-option`, `object-format=sha1`, flush). Like http-backend, and unlike
//!   the `# service=` header gitprotocol-http describes, no service line precedes it in version 2.
//!   Without version 2 the version 0 (or, for `version=1`, 1) advertisement of every ref, with
//!   `# service=git-upload-pack` and a flush first. Without `service` the dumb `info/refs` text.
//!   `git-receive-pack` is 403 (pushes are not enabled), another service 403.
//! - `POST …/git-upload-pack` (`Content-Type: application/x-git-upload-pack-request` exactly,
//!   else 415; a gzip body is inflated): in version 2 the `ls-refs` command with its `peel`,
//!   `symrefs`, `unborn` and `ref-prefix` arguments, and the capabilities a client may send
//!   (`agent`, `server-option`, `object-format=sha1`). Whatever `git upload-pack` would die on
//!   (an unknown argument or capability, a malformed pkt-line, a missing flush) is what
//!   http-backend then answers: a 200 whose body ends where git died, here before any output.
//!   Not served: `fetch` and version 0 negotiation (no packs), which get that same empty 200.
//! - a wrong method is 405 with `Allow` (what http-backend answers behind an HTTP/1.1 server),
//!   a missing repository 404; every answer carries http-backend's no-cache headers.
//!
//! Refs are read from the repository's files (loose refs over `packed-refs`, `HEAD`, symbolic
//! refs); only `peel` and the v0 and dumb advertisements, which need object types, ask git.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// LARGE_PACKET_MAX: the longest pkt-line git reads, its 4-byte length included.
const MAX_PKT: usize = 65520;

/// ls-refs ignores all its prefixes when sent this many (git's TOO_MANY_PREFIXES).
const TOO_MANY_PREFIXES: usize = 65536;

/// upload-pack's version 0 capabilities for a stateless (HTTP) client, before `symref`.
const V0_CAPS: &str = "multi_ack thin-pack side-band side-band-64k ofs-delta shallow deepen-since deepen-not deepen-relative no-progress include-tag multi_ack_detailed no-done";

/// Which smart HTTP endpoint a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `info/refs` (`?service=…`): the advertisement.
    InfoRefs,
    /// `git-upload-pack`: a command (v2) or a negotiation (v0).
    UploadPack,
    /// `git-receive-pack`: a push, never enabled here.
    ReceivePack,
}

/// The repository path (below the server root) and endpoint of a smart HTTP URL path.
pub fn route(path: &str) -> Option<(&str, Endpoint)> {
    let (rel, endpoint) = if let Some(r) = path.strip_suffix("/info/refs") {
        (r, Endpoint::InfoRefs)
    } else if let Some(r) = path.strip_suffix("/git-upload-pack") {
        (r, Endpoint::UploadPack)
    } else if let Some(r) = path.strip_suffix("/git-receive-pack") {
        (r, Endpoint::ReceivePack)
    } else {
        return None;
    };
    let rel = rel.trim_start_matches('/');
    (!rel.is_empty()).then_some((rel, endpoint))
}

/// An answer before it is sent.
pub struct GitAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl GitAnswer {
    /// `status` with http-backend's no-cache headers and `content_type` if any.
    fn new(status: u16, content_type: Option<&str>, body: Vec<u8>) -> GitAnswer {
        let mut headers = vec![
            ("Expires".to_string(), "Fri, 01 Jan 1980 00:00:00 GMT".to_string()),
            ("Pragma".to_string(), "no-cache".to_string()),
            ("Cache-Control".to_string(), "no-cache, max-age=0, must-revalidate".to_string()),
        ];
        if let Some(t) = content_type {
            headers.push(("Content-Type".to_string(), t.to_string()));
        }
        GitAnswer { status, headers, body }
    }
}

/// Answers one smart HTTP request for `repo` (`None`: no such repository).
pub fn serve(
    repo: Option<&Path>,
    method: &str,
    endpoint: Endpoint,
    query: &str,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> GitAnswer {
    // http-backend serves HEAD as GET; a method its route does not take is 405.
    let method = if method == "HEAD" { "GET" } else { method };
    let wanted = if endpoint == Endpoint::InfoRefs { "GET" } else { "POST" };
    if method != wanted {
        let mut a = GitAnswer::new(405, None, Vec::new());
        a.headers.push(("Allow".into(), if wanted == "GET" { "GET, HEAD" } else { "POST" }.into()));
        return a;
    }
    let Some(repo) = repo else { return GitAnswer::new(404, None, Vec::new()) };
    let version = protocol_version(headers.get("git-protocol").map(String::as_str));
    match endpoint {
        Endpoint::InfoRefs => info_refs(repo, query, version),
        Endpoint::ReceivePack => GitAnswer::new(403, None, Vec::new()),
        Endpoint::UploadPack => {
            let expected = "application/x-git-upload-pack-request";
            let actual = headers.get("content-type").map(String::as_str).unwrap_or("");
            if actual != expected {
                let text = format!("Expected POST with Content-Type '{expected}', but received '{actual}' instead.\n");
                return GitAnswer::new(415, None, text.into_bytes());
            }
            let result = Some("application/x-git-upload-pack-result");
            let body = match headers.get("content-encoding").map(String::as_str) {
                Some("gzip" | "x-gzip") => {
                    let mut out = Vec::new();
                    if flate2::read::GzDecoder::new(body).read_to_end(&mut out).is_err() {
                        return GitAnswer::new(200, result, Vec::new());
                    }
                    out
                }
                _ => body.to_vec(),
            };
            // Version 0 negotiation (a fetch) is not served: upload-pack would send a pack.
            let out = if version == 2 { serve_v2(repo, &body).unwrap_or_default() } else { Vec::new() };
            GitAnswer::new(200, result, out)
        }
    }
}

/// The protocol version `Git-Protocol` asks for: the highest valid `version=N` among its
/// `:`-separated entries, 0 without one (git's determine_protocol_version_server).
fn protocol_version(header: Option<&str>) -> u8 {
    header
        .unwrap_or("")
        .split(':')
        .filter_map(|kv| match kv.strip_prefix("version=")? {
            "0" => Some(0),
            "1" => Some(1),
            "2" => Some(2),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// The `agent` capability: this machine's git, as http-backend here says it.
fn agent() -> &'static str {
    static AGENT: OnceLock<String> = OnceLock::new();
    AGENT.get_or_init(|| {
        let version = Command::new("git")
            .arg("version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().trim_start_matches("git version ").to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "2.47.3".into());
        // git_user_agent_sanitized: anything but printable ASCII, and spaces, become dots.
        let clean: String = version.chars().map(|c| if c.is_ascii_graphic() { c } else { '.' }).collect();
        format!("git/{clean}")
    })
}

/// Appends one pkt-line of `payload`.
fn pkt(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(format!("{:04x}", payload.len() + 4).as_bytes());
    out.extend_from_slice(payload);
}

/// `GET info/refs`: the advertisement of `service`, or the dumb refs list without one.
fn info_refs(repo: &Path, query: &str, version: u8) -> GitAnswer {
    let service = query.split('&').find_map(|kv| kv.strip_prefix("service="));
    let Some(service) = service else {
        let Some(db) = RefDb::read(repo, true) else { return GitAnswer::new(500, None, Vec::new()) };
        let mut text = String::new();
        for r in &db.refs {
            text.push_str(&format!("{}\t{}\n", r.oid, r.name));
            if let Some(p) = db.peeled.get(&r.oid) {
                text.push_str(&format!("{p}\t{}^{{}}\n", r.name));
            }
        }
        return GitAnswer::new(200, Some("text/plain"), text.into_bytes());
    };
    if service != "git-upload-pack" {
        return GitAnswer::new(403, None, Vec::new());
    }
    let advert = Some("application/x-git-upload-pack-advertisement");
    let mut out = Vec::new();
    if version == 2 {
        pkt(&mut out, b"version 2\n");
        pkt(&mut out, format!("agent={}\n", agent()).as_bytes());
        for cap in ["ls-refs=unborn", "fetch=shallow wait-for-done", "server-option", "object-format=sha1"] {
            pkt(&mut out, format!("{cap}\n").as_bytes());
        }
        out.extend_from_slice(b"0000");
        return GitAnswer::new(200, advert, out);
    }
    let Some(db) = RefDb::read(repo, true) else { return GitAnswer::new(500, None, Vec::new()) };
    pkt(&mut out, b"# service=git-upload-pack\n");
    out.extend_from_slice(b"0000");
    if version == 1 {
        pkt(&mut out, b"version 1\n");
    }
    let symref = match &db.head {
        Some(Head { oid: Some(_), target: Some(t) }) => format!(" symref=HEAD:{t}"),
        _ => String::new(),
    };
    let caps = format!("{V0_CAPS}{symref} object-format=sha1 agent={}", agent());
    let mut lines: Vec<(String, String)> = Vec::new();
    if let Some(Head { oid: Some(oid), .. }) = &db.head {
        lines.push((oid.clone(), "HEAD".into()));
    }
    for r in &db.refs {
        lines.push((r.oid.clone(), r.name.clone()));
        if let Some(p) = db.peeled.get(&r.oid) {
            lines.push((p.clone(), format!("{}^{{}}", r.name)));
        }
    }
    if lines.is_empty() {
        lines.push(("0".repeat(40), "capabilities^{}".into()));
    }
    for (i, (oid, name)) in lines.iter().enumerate() {
        let line = if i == 0 { format!("{oid} {name}\0{caps}\n") } else { format!("{oid} {name}\n") };
        pkt(&mut out, line.as_bytes());
    }
    out.extend_from_slice(b"0000");
    GitAnswer::new(200, advert, out)
}

/// One pkt-line as git's reader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pkt<'a> {
    /// A payload, one trailing newline removed.
    Line(&'a [u8]),
    Flush,
    Delim,
    ResponseEnd,
    /// The end of the request.
    Eof,
    /// Something git dies on: a bad length, a truncated line.
    Bad,
}

/// Reads pkt-lines from a request body, with one line of look-ahead.
struct Reader<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// The next pkt-line and where the one after it starts.
    fn at(&self) -> (Pkt<'a>, usize) {
        let rest = &self.body[self.pos..];
        if rest.is_empty() {
            return (Pkt::Eof, self.pos);
        }
        let Some(len) = rest
            .get(..4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| usize::from_str_radix(h, 16).ok())
        else {
            return (Pkt::Bad, self.pos);
        };
        let pkt = match len {
            0 => Pkt::Flush,
            1 => Pkt::Delim,
            2 => Pkt::ResponseEnd,
            3 => Pkt::Bad,
            n if n > MAX_PKT => Pkt::Bad,
            n => match rest.get(4..n) {
                Some(d) => return (Pkt::Line(d.strip_suffix(b"\n").unwrap_or(d)), self.pos + n),
                None => Pkt::Bad,
            },
        };
        (pkt, self.pos + 4)
    }

    fn peek(&self) -> Pkt<'a> {
        self.at().0
    }

    fn next(&mut self) -> Pkt<'a> {
        let (p, next) = self.at();
        self.pos = next;
        p
    }
}

/// A protocol v2 request (serve.c's process_request, stateless): what it answers, `None` where
/// git dies (http-backend has sent its 200 by then: the body just ends).
fn serve_v2(repo: &Path, body: &[u8]) -> Option<Vec<u8>> {
    let mut r = Reader { body, pos: 0 };
    if r.peek() == Pkt::Eof {
        return Some(Vec::new());
    }
    let mut command: Option<&[u8]> = None;
    let mut seen = false;
    loop {
        match r.peek() {
            Pkt::Line(line) => {
                if let Some(cmd) = line.strip_prefix(b"command=") {
                    if command.is_some() || !matches!(cmd, b"ls-refs" | b"fetch") {
                        return None;
                    }
                    command = Some(cmd);
                } else if !client_capability(line) {
                    return None;
                }
                seen = true;
                r.next();
            }
            // A flush before anything is a no-op request; after, it ends the capabilities and
            // is left for the command to read as the end of its (empty) arguments.
            Pkt::Flush if !seen => return Some(Vec::new()),
            Pkt::Flush => break,
            Pkt::Delim => {
                r.next();
                break;
            }
            Pkt::ResponseEnd | Pkt::Eof | Pkt::Bad => return None,
        }
    }
    match command? {
        b"ls-refs" => ls_refs(repo, &mut r),
        // `fetch` would answer a pack: not served here.
        _ => None,
    }
}

/// Whether serve.c accepts `line` as a client capability (given the advertisement above).
fn client_capability(line: &[u8]) -> bool {
    // `object-format` must name the server's own algorithm, else upload-pack dies.
    matches!(line, b"agent" | b"server-option" | b"object-format=sha1")
        || line.starts_with(b"agent=")
        || line.starts_with(b"server-option=")
}

/// ls-refs.c: the arguments up to a flush, then HEAD (possibly unborn) and every ref that
/// matches a prefix, sorted, and a flush.
fn ls_refs(repo: &Path, r: &mut Reader) -> Option<Vec<u8>> {
    let (mut peel, mut symrefs, mut unborn) = (false, false, false);
    let mut prefixes: Vec<&[u8]> = Vec::new();
    loop {
        match r.next() {
            Pkt::Line(b"peel") => peel = true,
            Pkt::Line(b"symrefs") => symrefs = true,
            Pkt::Line(b"unborn") => unborn = true,
            Pkt::Line(line) => {
                let prefix = line.strip_prefix(b"ref-prefix ")?;
                if prefixes.len() < TOO_MANY_PREFIXES {
                    prefixes.push(prefix);
                }
            }
            Pkt::Flush => break,
            _ => return None,
        }
    }
    // Too many prefixes are ignored all together: they must form a complete list or none.
    if prefixes.len() >= TOO_MANY_PREFIXES {
        prefixes.clear();
    }
    let matches = |name: &str| prefixes.is_empty() || prefixes.iter().any(|p| name.as_bytes().starts_with(p));
    let db = RefDb::read(repo, peel)?;
    let mut out = Vec::new();
    let mut send = |oid: Option<&str>, name: &str, target: Option<&str>| {
        let mut line = match oid {
            Some(oid) => format!("{oid} {name}"),
            None => format!("unborn {name}"),
        };
        if let (true, Some(t)) = (symrefs, target) {
            line.push_str(&format!(" symref-target:{t}"));
        }
        if let (true, Some(p)) = (peel, oid.and_then(|o| db.peeled.get(o))) {
            line.push_str(&format!(" peeled:{p}"));
        }
        line.push('\n');
        pkt(&mut out, line.as_bytes());
    };
    if let Some(h) = &db.head {
        // An unborn HEAD only when asked for with both `unborn` and `symrefs`.
        let shown = h.oid.is_some() || (unborn && symrefs && h.target.is_some());
        if shown && matches("HEAD") {
            send(h.oid.as_deref(), "HEAD", h.target.as_deref());
        }
    }
    for e in db.refs.iter().filter(|e| matches(&e.name)) {
        send(Some(&e.oid), &e.name, e.target.as_deref());
    }
    out.extend_from_slice(b"0000");
    Some(out)
}

/// `HEAD`: its commit (`None` when unborn) and, when symbolic, the ref it names.
struct Head {
    oid: Option<String>,
    target: Option<String>,
}

/// One ref under `refs/`, symbolic ones resolved.
struct RefEntry {
    name: String,
    oid: String,
    /// The ref a symbolic ref names.
    target: Option<String>,
}

/// The refs of a repository (the files backend), sorted by name as git iterates them.
struct RefDb {
    head: Option<Head>,
    refs: Vec<RefEntry>,
    /// object -> what it peels to, for annotated tags (filled only when asked for).
    peeled: BTreeMap<String, String>,
}

impl RefDb {
    /// Reads `repo`'s refs; with `peel`, asks git which of them are tags and what they peel to.
    fn read(repo: &Path, peel: bool) -> Option<RefDb> {
        // name -> raw value: an object id or `ref: <name>`; loose refs override packed ones.
        let mut raw: BTreeMap<String, String> = BTreeMap::new();
        if let Ok(packed) = std::fs::read_to_string(repo.join("packed-refs")) {
            for line in packed.lines().filter(|l| !l.starts_with('#') && !l.starts_with('^')) {
                if let Some((oid, name)) = line.split_once(' ') {
                    raw.insert(name.to_string(), oid.to_string());
                }
            }
        }
        fn walk(dir: &Path, prefix: &str, raw: &mut BTreeMap<String, String>) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for e in entries.flatten() {
                let name = format!("{prefix}{}", e.file_name().to_string_lossy());
                match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path(), &format!("{name}/"), raw),
                    Ok(t) if t.is_file() && !name.ends_with(".lock") => {
                        if let Ok(v) = std::fs::read_to_string(e.path()) {
                            raw.insert(name, v.trim().to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        walk(&repo.join("refs"), "refs/", &mut raw);
        // Follows symbolic refs (git gives up after 5): the object and the first ref named.
        let resolve = |value: &str| -> (Option<String>, Option<String>) {
            let mut v = value.to_string();
            let mut target = None;
            for _ in 0..5 {
                let Some(name) = v.strip_prefix("ref:").map(|n| n.trim().to_string()) else {
                    return (Some(v), target);
                };
                target.get_or_insert_with(|| name.clone());
                match raw.get(&name) {
                    Some(next) => v = next.clone(),
                    None => return (None, target),
                }
            }
            (None, target)
        };
        let head = std::fs::read_to_string(repo.join("HEAD")).ok().map(|h| {
            let (oid, target) = resolve(h.trim());
            Head { oid, target }
        });
        let refs: Vec<RefEntry> = raw
            .iter()
            .filter_map(|(name, value)| {
                // A dangling symbolic ref is broken: git's iteration skips it.
                let (oid, target) = resolve(value);
                Some(RefEntry { name: name.clone(), oid: oid?, target })
            })
            .collect();
        let peeled = if peel {
            let oids = head.iter().filter_map(|h| h.oid.clone()).chain(refs.iter().map(|r| r.oid.clone()));
            peel_tags(repo, oids)?
        } else {
            BTreeMap::new()
        };
        Some(RefDb { head, refs, peeled })
    }
}

/// Annotated tags among `oids` -> the object they peel to, from one `git cat-file`.
fn peel_tags(repo: &Path, oids: impl Iterator<Item = String>) -> Option<BTreeMap<String, String>> {
    let oids: Vec<String> = oids.collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let mut child = Command::new("git")
        .current_dir(repo)
        .args(["cat-file", "--batch-check=%(objectname)"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let input: String = oids.iter().map(|o| format!("{o}^{{}}\n")).collect();
    let mut stdin = child.stdin.take()?;
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().ok()?;
    let _ = writer.join();
    let text = String::from_utf8_lossy(&out.stdout);
    // One answer line per asked line: the peeled object, or `<asked> missing`.
    Some(
        oids.iter()
            .zip(text.lines())
            .filter(|(oid, peeled)| !peeled.ends_with(" missing") && peeled != oid)
            .map(|(oid, peeled)| (oid.clone(), peeled.to_string()))
            .collect(),
    )
}

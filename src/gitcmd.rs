//! Running `git` safely: credentials only through the environment and only for the configured
//! origin, no redirect followed, no prompts, allowed transports only, no inherited tracing.
//!
//! Both the plain-Git forge (`ls-remote`) and the deploy engine (`clone`) build their commands here,
//! so the hardening exists once.
//!
//! Redirects: git follows the redirect of its first request (`/info/refs`) by default and then
//! sends every `http.extraHeader` to the new base URL, another origin and plain http included.
//! So the header is scoped to the configured origin (`http.<origin>/.extraHeader`) and redirects
//! are refused (`http.followRedirects=false`, also for the exact URL, which no user-level
//! `http.<url>.followRedirects` can outrank). A refused redirect is reported with its target,
//! learnt by [`redirect_target`], which asks again without credentials.
//!
//! [`command`] also sets the proxy of an http(s) URL and the ssh
//! command (batch mode, host keys checked against `global.known_hosts`, `auth.ssh_key_file`),
//! and starts git without a controlling terminal, so nothing can wait on a prompt; [`explain`]
//! says why a git command failed, from its stderr.

use crate::config::{Auth, ForgeKind};
use crate::secret::{Secret, base64};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Transports git may use; everything else (`ext::`, `fd::`, remote helpers) is refused.
const ALLOWED_PROTOCOLS: [&str; 5] = ["http", "https", "ssh", "git", "file"];

/// Environment variables that would let the calling environment change what git does with our URL.
const SCRUBBED: [&str; 6] =
    ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CONFIG_PARAMETERS", "GIT_PROXY_COMMAND", "GIT_EXEC_PATH"];

/// Inherited variables that make git print what it sends (headers included) or trace itself:
/// removed for sentry's own git calls, whose output ends up in logs and summaries. Every
/// `GIT_TRACE*` variable is removed too (see [`command`]).
const TRACING: [&str; 2] = ["GIT_CURL_VERBOSE", "GIT_REDACT_COOKIES"];

/// The user name sent with a token for Basic auth when none is configured. The names live in
/// [`crate::secret::DEFAULT_BASIC_USERS`], so the redactor knows every Basic form git may send.
pub fn default_username(kind: ForgeKind) -> &'static str {
    use crate::secret::DEFAULT_BASIC_USERS as U;
    match kind {
        ForgeKind::Github => U[0],
        ForgeKind::Gitlab => U[1],
        ForgeKind::Gitea | ForgeKind::Git => U[2],
    }
}

/// The `Authorization` header value for Basic auth with `auth`, if it has a token.
pub fn basic_auth_header(auth: &Auth, kind: ForgeKind) -> Option<Secret> {
    let token = auth.token.as_ref()?;
    let user = auth.username.as_deref().unwrap_or(default_username(kind));
    Some(Secret::new(format!("Basic {}", base64(format!("{user}:{}", token.expose()).as_bytes()))))
}

/// `scheme://host[:port]/` of an http(s) URL, as a git `http.<url>.*` key matches it (any
/// path of that origin); `None` for other transports, which take no HTTP header.
fn http_origin_key(url: &str) -> Option<String> {
    let p = crate::model::url::split(url).ok()?;
    let scheme = p.scheme?.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https") || p.host.is_empty() {
        return None;
    }
    Some(format!("{}/", p.origin_text()))
}

/// A `git` command for `url` with credentials in the environment only, and only for `url`'s
/// origin; redirects refused, prompts off, transports limited, inherited tracing removed.
///
/// Configuration goes through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`, so neither
/// the token nor the hardening appears in the argument list (`ps`) or in `.git/config`.
///
/// For a git command that reaches `url`: through the proxy the environment gives
/// for it (passed as `http.proxy`, since curl ignores `HTTP_PROXY` and knows no CIDR in
/// `NO_PROXY`), and for ssh with [`ssh_command`]. git starts without a controlling terminal.
pub fn command(url: &str, auth: &Auth, kind: ForgeKind) -> Command {
    let mut extra = Vec::new();
    let proxy = crate::http::proxy_url_for(url, &|n| std::env::var(n).ok());
    if let Some(p) = &proxy {
        extra.push(("http.proxy".to_string(), p.clone()));
    }
    let mut cmd = build(url, auth, kind, extra);
    if proxy.is_none() {
        // Our NO_PROXY said no (a CIDR block, say): curl must not decide otherwise.
        cmd.env("NO_PROXY", "*").env("no_proxy", "*");
    }
    let own = std::env::var("GIT_SSH_COMMAND").ok().filter(|c| !c.trim().is_empty());
    cmd.env("GIT_SSH_COMMAND", ssh_command(own.as_deref(), auth.known_hosts.as_deref(), auth.ssh_key_file.as_deref()));
    crate::sys::without_terminal(&mut cmd);
    cmd
}

/// The proxy a git command for `url` goes through, as `host:port` (no credentials), to name it
/// in errors.
pub fn proxy_for(url: &str) -> Option<String> {
    let p = crate::http::proxy_url_for(url, &|n| std::env::var(n).ok())?;
    let with_scheme = if p.contains("://") { p } else { format!("http://{p}") };
    let o = crate::http::Origin::parse(&with_scheme).ok()?;
    Some(format!("{}:{}", o.host, o.port))
}

/// The ssh command git runs: `base` (the user's own `GIT_SSH_COMMAND`, else `ssh`) with batch
/// mode (no password or passphrase prompt), host keys checked (`StrictHostKeyChecking=yes`,
/// never updated: a mounted known_hosts is read-only), against `known_hosts` alone when given,
/// and `key` as the only identity. ssh takes the first value of an option, so a user's command
/// that sets one of these keeps its own.
pub fn ssh_command(base: Option<&str>, known_hosts: Option<&Path>, key: Option<&Path>) -> String {
    let mut c = base.unwrap_or("ssh").trim().to_string();
    for o in ["BatchMode=yes", "StrictHostKeyChecking=yes", "UpdateHostKeys=no", "ConnectTimeout=15"] {
        c.push_str(" -o ");
        c.push_str(o);
    }
    if let Some(k) = known_hosts {
        c.push_str(&format!(" -o {} -o GlobalKnownHostsFile=/dev/null", option_with_path("UserKnownHostsFile", k)));
    }
    if let Some(k) = key {
        c.push_str(&format!(" -o {} -o IdentitiesOnly=yes", option_with_path("IdentityFile", k)));
    }
    c
}

/// `-o NAME="PATH"` as one shell word: ssh splits option values at whitespace unless quoted.
fn option_with_path(name: &str, path: &Path) -> String {
    let p = path.display().to_string().replace('\\', "\\\\").replace('"', "\\\"");
    shell_quote(&format!("{name}=\"{p}\""))
}

/// `s` as one single-quoted shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn build(url: &str, auth: &Auth, kind: ForgeKind, extra: Vec<(String, String)>) -> Command {
    let mut cmd = Command::new("git");
    let mut config: Vec<(String, String)> = vec![
        ("protocol.allow".into(), "never".into()),
        // An empty helper list: never ask a stored credential helper (or a keychain popup) for more.
        ("credential.helper".into(), String::new()),
        ("core.askPass".into(), String::new()),
        // Every redirect is an error: git would send the extra headers to wherever the first
        // request was redirected (see the module documentation).
        ("http.followRedirects".into(), "false".into()),
    ];
    for p in ALLOWED_PROTOCOLS {
        config.push((format!("protocol.{p}.allow"), "always".into()));
    }
    if http_origin_key(url).is_some() && !url.contains(['\n', '\0']) {
        // The most specific key git can match: no `http.<url>.followRedirects` of a user's own
        // configuration can turn redirects back on for this URL.
        config.push((format!("http.{url}.followRedirects"), "false".into()));
    }
    if let (Some(header), Some(origin)) = (basic_auth_header(auth, kind), http_origin_key(url)) {
        config.push((format!("http.{origin}.extraHeader"), format!("Authorization: {}", header.expose())));
    }
    config.extend(extra);
    cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
    for (i, (k, v)) in config.into_iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), k);
        cmd.env(format!("GIT_CONFIG_VALUE_{i}"), v);
    }
    for var in SCRUBBED.iter().chain(&TRACING) {
        cmd.env_remove(var);
    }
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with("GIT_TRACE")) {
            cmd.env_remove(name);
        }
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0");
    cmd.env("GIT_ASKPASS", "true");
    cmd.env("SSH_ASKPASS", "true");
    cmd.env("SSH_ASKPASS_REQUIRE", "never");
    cmd.env("GCM_INTERACTIVE", "never");
    cmd.env("LC_ALL", "C");
    cmd
}

/// True when git's (LC_ALL=C) error output says an HTTP redirect was refused.
pub fn refused_redirect(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    ["301", "302", "303", "307", "308"].iter().any(|c| s.contains(&format!("the requested url returned error: {c}")))
}

/// Most of the probe's trace read: the first answer's headers are at its start.
const MAX_TRACE: u64 = 256 * 1024;

/// Where `url` redirects git to: the `Location` of the first answer, asked again *without
/// credentials* (git's own trace of the response headers, nothing followed), within `timeout`.
/// `None` when it cannot be told.
pub fn redirect_target(url: &str, timeout: Duration) -> Option<String> {
    let mut cmd = command(url, &Auth::default(), ForgeKind::Git);
    cmd.args(["ls-remote", "--heads", "--", url]);
    cmd.env("GIT_TRACE_CURL", "1").env("GIT_TRACE_CURL_NO_DATA", "1").env("GIT_TRACE_REDACT", "1");
    // The shared runner: the group killed at the deadline, every wait (the output's too) bounded.
    let ran = run_bounded(cmd, Instant::now().checked_add(timeout)?, 0, MAX_TRACE).ok()?;
    location(url, &String::from_utf8_lossy(&ran.stderr))
}

/// The first `Location` header in a `GIT_TRACE_CURL` trace, resolved against `url`, with git's
/// `/info/refs?service=...` suffix taken off so that it reads as a repository URL.
fn location(url: &str, trace: &str) -> Option<String> {
    let value = trace.lines().find_map(|line| {
        let (_, header) = line.split_once("<= Recv header:")?;
        let (name, value) = header.trim().split_once(':')?;
        name.trim().eq_ignore_ascii_case("location").then(|| value.trim().to_string())
    })?;
    let absolute = if value.contains("://") {
        value
    } else if value.starts_with('/') {
        format!("{}{value}", crate::model::url::split(url).ok()?.origin_text())
    } else {
        return Some(value);
    };
    let repo = match absolute.split_once("/info/refs") {
        Some((base, _)) => base.to_string(),
        None => absolute,
    };
    Some(crate::text::one_line(&repo))
}

/// `scheme://host:port` with the scheme's default port made explicit, for comparing origins.
fn normalized_origin(url: &str) -> Option<(String, String, u16)> {
    let p = crate::model::url::split(url).ok()?;
    let scheme = p.scheme?.to_ascii_lowercase();
    let port = p.port.or(match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    Some((scheme, p.host.to_ascii_lowercase(), port))
}

/// The error for a redirect git was not allowed to follow, naming both URLs.
pub fn redirect_error(url: &str, target: Option<&str>) -> String {
    let Some(target) = target else {
        return format!(
            "{url} answered with a redirect, which sentry's git does not follow (credentials go only to the configured origin); set the URL to where the repository lives"
        );
    };
    let same = normalized_origin(url).is_some_and(|o| normalized_origin(target) == Some(o));
    if same {
        format!("{url} redirects to {target}, which sentry's git does not follow: set the URL to {target}")
    } else {
        format!(
            "{url} redirects to another origin, {target}: refused, credentials go only to the configured origin (set the URL to {target} if that is where the repository lives)"
        )
    }
}

/// What a git command left when it ended, or was ended at its deadline.
pub struct Ran {
    /// How it exited; `None` when it was killed at the deadline.
    pub status: Option<std::process::ExitStatus>,
    /// Its stdout, at most the cap given.
    pub stdout: Vec<u8>,
    /// False when stdout did not end within the grace after git did (a process git left behind
    /// holds it): `stdout` is then empty, and must not be read as "git printed nothing".
    pub stdout_complete: bool,
    /// Its stderr, at most the cap given.
    pub stderr: Vec<u8>,
}

/// Why a git that exited 0 is not believed when [`Ran::stdout_complete`] is false.
pub const INCOMPLETE_OUTPUT: &str = "git exited but its output did not end (a process it started still holds it)";

/// How long the output of an ended git is waited for: a helper it left behind (outside its
/// process group) may hold the pipes open, and must not stall the run.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Runs `cmd` (a [`command`]: its own session and process group) until it exits or `deadline`,
/// when its whole group is killed. stdout and stderr are read on their own threads up to
/// `max_out`/`max_err` bytes, the rest drained so git never blocks on a full pipe; every wait is
/// bounded, the output's included.
pub fn run_bounded(mut cmd: Command, deadline: Instant, max_out: u64, max_err: u64) -> std::io::Result<Ran> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let reader = |r: Option<Box<dyn Read + Send>>, cap: u64| {
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(r) = r {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut r = r.take(cap);
                let _ = r.read_to_end(&mut buf);
                let _ = std::io::copy(&mut r.into_inner(), &mut std::io::sink());
                let _ = tx.send(buf);
            });
        }
        rx
    };
    let out = reader(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>), max_out);
    let err = reader(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>), max_err);
    let status = loop {
        match child.try_wait()? {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
                    crate::sys::signal_group(pgid, libc::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    // One grace for both pipes, not one each.
    let grace_end = Instant::now() + OUTPUT_GRACE;
    let take = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(grace_end.saturating_duration_since(Instant::now())).ok()
    };
    let (stdout, stderr) = (take(out), take(err));
    Ok(Ran {
        status,
        stdout_complete: stdout.is_some(),
        stdout: stdout.unwrap_or_default(),
        stderr: stderr.unwrap_or_default(),
    })
}

/// What kind of failure a git command's stderr tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The credentials (token, password, ssh key) were refused or missing.
    Auth,
    /// ssh does not know or does not trust the server's host key: never retried.
    HostKey,
    /// No such repository, or invisible to these credentials.
    NotFound,
    /// The server was not reached, or dropped the connection.
    Network,
    /// The server answered 5xx.
    Server,
}

/// Why a git command failed: its class, the stderr lines that say why (one line), and what to
/// check for this URL's transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explained {
    /// The class of failure.
    pub failure: Failure,
    /// The telling lines of stderr, joined with " | " (git's generic closing advice dropped).
    pub summary: String,
    /// What to check, starting with " (", or empty.
    pub hint: &'static str,
}

/// Lines git prints after every remote failure, which say nothing of the cause.
const GENERIC: [&str; 3] = [
    "could not read from remote repository",
    "please make sure you have the correct access rights",
    "and the repository exists",
];

/// Telling stderr patterns (lowercase) per class, first match wins.
const HOST_KEY: [&str; 6] = [
    "host key verification failed",
    "remote host identification has changed",
    "host key is known for",
    "no ed25519 host key is known",
    "no ecdsa host key is known",
    "no rsa host key is known",
];
const AUTH: [&str; 14] = [
    "permission denied",
    "too many authentication failures",
    "load key",
    "no such identity",
    "bad permissions",
    "returned error: 401",
    "returned error: 403",
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "access denied",
    "invalid username or password",
    "unprotected private key file",
];
const NOT_FOUND: [&str; 6] = [
    "repository not found",
    "returned error: 404",
    "not found",
    "does not appear to be a git repository",
    "does not exist",
    "no such file or directory",
];
const NETWORK: [&str; 12] = [
    "could not resolve",
    "connection refused",
    "connection timed out",
    "operation timed out",
    "no route to host",
    "network is unreachable",
    "connection reset",
    "connection closed",
    "failed to connect",
    "kex_exchange_identification",
    "proxy",
    "unable to access",
];

/// Explains a failed git command from its (LC_ALL=C) stderr, for `url`.
pub fn explain(stderr: &str, url: &str) -> Explained {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let lower: Vec<String> = lines.iter().map(|l| l.to_ascii_lowercase()).collect();
    let has = |set: &[&str]| lower.iter().any(|l| set.iter().any(|p| l.contains(p)));
    let failure = if has(&HOST_KEY) {
        Failure::HostKey
    } else if has(&AUTH) {
        Failure::Auth
    } else if has(&NOT_FOUND) {
        Failure::NotFound
    } else if has(&["returned error: 5"]) {
        Failure::Server
    } else {
        Failure::Network
    };
    let telling = |l: &String| {
        [&HOST_KEY[..], &AUTH[..], &NOT_FOUND[..], &NETWORK[..], &["returned error", "remote:", "fatal:", "error:"][..]]
            .iter()
            .any(|set| set.iter().any(|p| l.contains(p)))
            && !GENERIC.iter().any(|g| l.contains(g))
    };
    let mut kept: Vec<&str> = Vec::new();
    for (line, l) in lines.iter().zip(&lower) {
        if telling(l) && !kept.contains(line) {
            kept.push(line);
        }
    }
    if kept.is_empty() {
        kept =
            lines.iter().zip(&lower).filter(|(_, l)| !GENERIC.iter().any(|g| l.contains(g))).map(|(x, _)| *x).collect();
    }
    let tail = kept[kept.len().saturating_sub(3)..].join(" | ");
    let tail = if tail.is_empty() { "no error output".to_string() } else { tail };
    let summary = match tail.char_indices().nth(400) {
        Some((i, _)) => format!("{}…", &tail[..i]),
        None => tail,
    };
    let ssh = is_ssh_url(url);
    let hint = match (failure, ssh) {
        (Failure::HostKey, _) => {
            " (the server's ssh host key is not in global.known_hosts, or changed: add its key after checking the fingerprint, e.g. ssh-keyscan -p PORT HOST)"
        }
        (Failure::Auth, true) => {
            " (check auth.ssh_key_file: a private key, readable only by its owner, that this server accepts for the repository, e.g. a deploy key)"
        }
        (Failure::Auth, false) => " (check the auth username and token, and that they may read this repository)",
        (Failure::NotFound, _) => " (repository not found, or the credentials lack access to it)",
        (Failure::Network, true) => " (check the host and port of the ssh URL, and that ssh may reach it)",
        (Failure::Network, false) => " (check the URL, and HTTPS_PROXY / HTTP_PROXY / NO_PROXY if a proxy is needed)",
        (Failure::Server, _) => "",
    };
    Explained { failure, summary, hint }
}

/// True for `ssh://…` and scp-like `[user@]host:path` URLs.
pub fn is_ssh_url(url: &str) -> bool {
    match url.split_once("://") {
        Some((scheme, _)) => scheme.eq_ignore_ascii_case("ssh") || scheme.to_ascii_lowercase().contains("ssh"),
        None => url.split_once(':').is_some_and(|(host, _)| !host.is_empty() && !host.contains('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_bounded_reads_output_and_says_when_it_did_not_end() {
        let far = Instant::now() + Duration::from_secs(30);
        let mut echo = Command::new("sh");
        echo.args(["-c", "echo heads; echo oops >&2"]);
        let ran = run_bounded(echo, far, 1024, 1024).expect("runs");
        assert!(ran.status.is_some_and(|s| s.success()) && ran.stdout_complete);
        assert_eq!((ran.stdout.as_slice(), ran.stderr.as_slice()), (&b"heads\n"[..], &b"oops\n"[..]));

        // git's exit is not the end of its output when a process it started keeps the pipe:
        // the wait is bounded, and the empty stdout is not passed off as an answer.
        let mut left = Command::new("sh");
        left.args(["-c", "echo heads; sleep 4 & exit 0"]);
        let ran = run_bounded(left, far, 1024, 1024).expect("runs");
        assert!(ran.status.is_some_and(|s| s.success()));
        assert!(!ran.stdout_complete && ran.stdout.is_empty(), "{:?}", ran.stdout);

        // A deadline kills it: no status.
        let mut slow = Command::new("sleep");
        slow.arg("20");
        let ran = run_bounded(slow, Instant::now() + Duration::from_millis(200), 16, 16).expect("runs");
        assert!(ran.status.is_none());
    }

    fn envs(cmd: &Command) -> Vec<(String, String)> {
        cmd.get_envs().filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string()))).collect()
    }

    #[test]
    fn token_only_in_environment() {
        let auth = Auth { username: Some("bob".into()), token: Some(Secret::new("tok-123456")), ..Auth::default() };
        let cmd = command("https://git.example:8443/a/b.git", &auth, ForgeKind::Git);
        assert!(cmd.get_args().all(|a| !a.to_string_lossy().contains("tok-123456")));
        let header = format!("Authorization: Basic {}", base64(b"bob:tok-123456"));
        assert!(envs(&cmd).iter().any(|(_, v)| *v == header));
        assert!(envs(&cmd).contains(&("GIT_TERMINAL_PROMPT".into(), "0".into())));
    }

    /// The value of the `GIT_CONFIG_KEY_n` whose key is `key`.
    fn config_value(cmd: &Command, key: &str) -> Option<String> {
        let env = envs(cmd);
        let (name, _) = env.iter().find(|(k, v)| k.starts_with("GIT_CONFIG_KEY_") && v == key)?;
        let n = name.trim_start_matches("GIT_CONFIG_KEY_");
        env.iter().find(|(k, _)| *k == format!("GIT_CONFIG_VALUE_{n}")).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_header_is_scoped_to_the_origin_and_redirects_are_refused() {
        let auth = Auth { username: None, token: Some(Secret::new("tok-123456")), ..Auth::default() };
        let url = "https://Git.Example:8443/a/b.git";
        let cmd = command(url, &auth, ForgeKind::Gitlab);
        assert_eq!(config_value(&cmd, "http.extraHeader"), None, "never a header for every origin");
        let header = format!("Authorization: Basic {}", base64(b"oauth2:tok-123456"));
        assert_eq!(config_value(&cmd, "http.https://git.example:8443/.extraHeader"), Some(header));
        assert_eq!(config_value(&cmd, "http.followRedirects").as_deref(), Some("false"));
        assert_eq!(config_value(&cmd, &format!("http.{url}.followRedirects")).as_deref(), Some("false"));
        // ssh and file take no HTTP header at all.
        let ssh = command("git@host:a/b.git", &auth, ForgeKind::Git);
        assert!(envs(&ssh).iter().all(|(_, v)| !v.contains("Authorization")));
    }

    #[test]
    fn redirects_are_told_with_both_urls() {
        let trace = "12:00:00.000 http.c:1 <= Recv header: HTTP/1.1 302 Found\n\
                     12:00:00.000 http.c:1 <= Recv header: location: http://127.0.0.1:9/r.git/info/refs?service=git-upload-pack\n";
        let target = location("https://h/r.git", trace);
        assert_eq!(target.as_deref(), Some("http://127.0.0.1:9/r.git"));
        assert_eq!(
            location("https://h:1/r.git", "<= Recv header: Location: /new/r.git/info/refs?x").as_deref(),
            Some("https://h:1/new/r.git")
        );
        assert_eq!(location("https://h/r.git", "<= Recv header: Content-Type: x"), None);
        let e = redirect_error("https://h/r.git", target.as_deref());
        assert!(
            e.contains("https://h/r.git") && e.contains("http://127.0.0.1:9/r.git") && e.contains("another origin"),
            "{e}"
        );
        let e = redirect_error("https://h/r.git", Some("https://h:443/s.git"));
        assert!(!e.contains("another origin") && e.contains("https://h:443/s.git"), "{e}");
        assert!(refused_redirect("fatal: unable to access 'x': The requested URL returned error: 302"));
        assert!(!refused_redirect("fatal: unable to access 'x': The requested URL returned error: 404"));
    }

    #[test]
    fn no_header_without_token() {
        let cmd = command("https://github.com/a/b", &Auth::default(), ForgeKind::Github);
        assert!(envs(&cmd).iter().all(|(_, v)| !v.contains("Authorization")));
        assert_eq!(basic_auth_header(&Auth::default(), ForgeKind::Github), None);
    }

    #[test]
    fn default_user_per_forge() {
        let auth = Auth { username: None, token: Some(Secret::new("t0k3n")), ..Auth::default() };
        let h = basic_auth_header(&auth, ForgeKind::Gitlab).expect("header");
        assert_eq!(h.expose(), format!("Basic {}", base64(b"oauth2:t0k3n")));
    }

    #[test]
    fn ssh_command_is_batch_mode_with_checked_host_keys() {
        let c = ssh_command(None, None, None);
        assert!(c.starts_with("ssh ") && c.contains("BatchMode=yes") && c.contains("StrictHostKeyChecking=yes"), "{c}");
        let c = ssh_command(Some("ssh -J bastion"), Some(Path::new("/etc/k h")), Some(Path::new("/s/id's")));
        assert!(c.starts_with("ssh -J bastion -o BatchMode=yes"), "{c}");
        assert!(c.contains(r#"'UserKnownHostsFile="/etc/k h"' -o GlobalKnownHostsFile=/dev/null"#), "{c}");
        assert!(c.contains(r#"'IdentityFile="/s/id'\''s"' -o IdentitiesOnly=yes"#), "{c}");
    }

    #[test]
    fn explains_git_and_ssh_failures_by_their_cause() {
        let generic = "\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n";
        let e = explain(&format!("Host key verification failed.{generic}"), "ssh://git@h:2222/r.git");
        assert_eq!(e.failure, Failure::HostKey);
        assert_eq!(e.summary, "Host key verification failed.");
        assert!(e.hint.contains("known_hosts"));
        let e = explain(&format!("git@h: Permission denied (publickey).{generic}"), "git@h:r.git");
        assert_eq!(e.failure, Failure::Auth);
        assert_eq!(e.summary, "git@h: Permission denied (publickey).");
        assert!(e.hint.contains("ssh_key_file"));
        let e = explain("remote: Repository not found.\nfatal: repository 'https://h/x/' not found\n", "https://h/x");
        assert_eq!(e.failure, Failure::NotFound);
        assert!(e.summary.contains("Repository not found"));
        let e = explain("fatal: unable to access 'http://h/r/': The requested URL returned error: 401", "http://h/r");
        assert_eq!((e.failure, e.hint.contains("token")), (Failure::Auth, true));
        let e = explain("fatal: could not read Username for 'https://h': terminal prompts disabled", "https://h/r");
        assert_eq!(e.failure, Failure::Auth);
        let e = explain("fatal: '/nope' does not appear to be a git repository", "/nope");
        assert_eq!(e.failure, Failure::NotFound);
        let e = explain("fatal: unable to access 'x': The requested URL returned error: 503", "https://x/r");
        assert_eq!(e.failure, Failure::Server);
        let e = explain(&format!("ssh: connect to host h port 22: Connection refused{generic}"), "git@h:r");
        assert_eq!(e.failure, Failure::Network);
        assert_eq!(e.summary, "ssh: connect to host h port 22: Connection refused");
        assert_eq!(explain("", "x").summary, "no error output");
        assert!(is_ssh_url("git@github.com:a/b.git") && is_ssh_url("ssh://h/r") && !is_ssh_url("https://h/r"));
        assert!(!is_ssh_url("/abs/path") && !is_ssh_url("file:///x"));
    }
}

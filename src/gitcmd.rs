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

use crate::config::{Auth, ForgeKind};
use crate::secret::{Secret, base64};
use std::io::Read;
use std::os::unix::process::CommandExt;
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
pub fn command(url: &str, auth: &Auth, kind: ForgeKind) -> Command {
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
    cmd.env("GCM_INTERACTIVE", "never");
    cmd.env("LC_ALL", "C");
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        // Never wait for a password or a host-key prompt nobody will answer.
        cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=15");
    }
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
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).process_group(0);
    let mut child = cmd.spawn().ok()?;
    let stderr = child.stderr.take()?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut r = stderr.take(MAX_TRACE);
        let _ = r.read_to_end(&mut buf);
        let _ = std::io::copy(&mut r.into_inner(), &mut std::io::sink());
        buf
    });
    let deadline = Instant::now().checked_add(timeout)?;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
                    crate::sys::signal_group(pgid, libc::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
        }
    }
    let trace = reader.join().ok()?;
    location(url, &String::from_utf8_lossy(&trace))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn envs(cmd: &Command) -> Vec<(String, String)> {
        cmd.get_envs().filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string()))).collect()
    }

    #[test]
    fn token_only_in_environment() {
        let auth = Auth { username: Some("bob".into()), token: Some(Secret::new("tok-123456")) };
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
        let auth = Auth { username: None, token: Some(Secret::new("tok-123456")) };
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
        let auth = Auth { username: None, token: Some(Secret::new("t0k3n")) };
        let h = basic_auth_header(&auth, ForgeKind::Gitlab).expect("header");
        assert_eq!(h.expose(), format!("Basic {}", base64(b"oauth2:t0k3n")));
    }
}

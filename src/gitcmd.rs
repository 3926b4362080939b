//! Running `git` safely: credentials only through the environment, no prompts, allowed transports only.
//!
//! Both the plain-Git forge (`ls-remote`) and the deploy engine (`clone`) build their commands here,
//! so the hardening exists once: [`command_for`] also sets the proxy of an http(s) URL and the ssh
//! command (batch mode, host keys checked against `global.known_hosts`, `auth.ssh_key_file`),
//! and starts git without a controlling terminal, so nothing can wait on a prompt; [`explain`]
//! says why a git command failed, from its stderr.

use crate::config::{Auth, ForgeKind};
use crate::secret::{Secret, base64};
use std::path::Path;
use std::process::Command;

/// Transports git may use; everything else (`ext::`, `fd::`, remote helpers) is refused.
const ALLOWED_PROTOCOLS: [&str; 5] = ["http", "https", "ssh", "git", "file"];

/// Environment variables that would let the calling environment change what git does with our URL.
const SCRUBBED: [&str; 6] =
    ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CONFIG_PARAMETERS", "GIT_PROXY_COMMAND", "GIT_EXEC_PATH"];

/// The user name sent with a token for Basic auth when none is configured.
pub fn default_username(kind: ForgeKind) -> &'static str {
    match kind {
        ForgeKind::Github => "x-access-token",
        ForgeKind::Gitlab => "oauth2",
        ForgeKind::Gitea | ForgeKind::Git => "sentry",
    }
}

/// The `Authorization` header value for Basic auth with `auth`, if it has a token.
pub fn basic_auth_header(auth: &Auth, kind: ForgeKind) -> Option<Secret> {
    let token = auth.token.as_ref()?;
    let user = auth.username.as_deref().unwrap_or(default_username(kind));
    Some(Secret::new(format!("Basic {}", base64(format!("{user}:{}", token.expose()).as_bytes()))))
}

/// A `git` command with credentials in the environment only, prompts off and transports limited.
///
/// Configuration goes through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`, so neither
/// the token nor the hardening appears in the argument list (`ps`) or in `.git/config`.
///
/// For a git command that reaches `url`: through the proxy the environment gives
/// for it (passed as `http.proxy`, since curl ignores `HTTP_PROXY` and knows no CIDR in
/// `NO_PROXY`), and for ssh with [`ssh_command`]. git starts without a controlling terminal.
pub fn command_for(auth: &Auth, kind: ForgeKind, url: &str) -> Command {
    let mut extra = Vec::new();
    let proxy = crate::http::proxy_url_for(url, &|n| std::env::var(n).ok());
    if let Some(p) = &proxy {
        extra.push(("http.proxy".to_string(), p.clone()));
    }
    let mut cmd = build(auth, kind, extra);
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

fn build(auth: &Auth, kind: ForgeKind, extra: Vec<(String, String)>) -> Command {
    let mut cmd = Command::new("git");
    let mut config: Vec<(String, String)> = vec![
        ("protocol.allow".into(), "never".into()),
        // An empty helper list: never ask a stored credential helper (or a keychain popup) for more.
        ("credential.helper".into(), String::new()),
        ("core.askPass".into(), String::new()),
    ];
    for p in ALLOWED_PROTOCOLS {
        config.push((format!("protocol.{p}.allow"), "always".into()));
    }
    if let Some(header) = basic_auth_header(auth, kind) {
        config.push(("http.extraHeader".into(), format!("Authorization: {}", header.expose())));
    }
    config.extend(extra);
    cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
    for (i, (k, v)) in config.into_iter().enumerate() {
        cmd.env(format!("GIT_CONFIG_KEY_{i}"), k);
        cmd.env(format!("GIT_CONFIG_VALUE_{i}"), v);
    }
    for var in SCRUBBED {
        cmd.env_remove(var);
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0");
    cmd.env("GIT_ASKPASS", "true");
    cmd.env("SSH_ASKPASS", "true");
    cmd.env("SSH_ASKPASS_REQUIRE", "never");
    cmd.env("GCM_INTERACTIVE", "never");
    cmd.env("LC_ALL", "C");
    cmd
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

    fn envs(cmd: &Command) -> Vec<(String, String)> {
        cmd.get_envs().filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string()))).collect()
    }

    #[test]
    fn token_only_in_environment() {
        let auth = Auth { username: Some("bob".into()), token: Some(Secret::new("tok-123456")), ..Auth::default() };
        let cmd = command_for(&auth, ForgeKind::Git, "https://h/r");
        assert!(cmd.get_args().all(|a| !a.to_string_lossy().contains("tok-123456")));
        let header = format!("Authorization: Basic {}", base64(b"bob:tok-123456"));
        assert!(envs(&cmd).iter().any(|(_, v)| *v == header));
        assert!(envs(&cmd).contains(&("GIT_TERMINAL_PROMPT".into(), "0".into())));
    }

    #[test]
    fn no_header_without_token() {
        let cmd = command_for(&Auth::default(), ForgeKind::Github, "https://h/r");
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

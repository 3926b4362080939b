//! Running `git` safely: credentials only through the environment, no prompts, allowed transports only.
//!
//! Both the plain-Git forge (`ls-remote`) and the deploy engine (`clone`) build their commands here,
//! so the hardening exists once.

use crate::config::{Auth, ForgeKind};
use crate::secret::{Secret, base64};
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
pub fn command(auth: &Auth, kind: ForgeKind) -> Command {
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
    cmd.env("GCM_INTERACTIVE", "never");
    cmd.env("LC_ALL", "C");
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        // Never wait for a password or a host-key prompt nobody will answer.
        cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=15");
    }
    cmd
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
        let cmd = command(&auth, ForgeKind::Git);
        assert!(cmd.get_args().all(|a| !a.to_string_lossy().contains("tok-123456")));
        let header = format!("Authorization: Basic {}", base64(b"bob:tok-123456"));
        assert!(envs(&cmd).iter().any(|(_, v)| *v == header));
        assert!(envs(&cmd).contains(&("GIT_TERMINAL_PROMPT".into(), "0".into())));
    }

    #[test]
    fn no_header_without_token() {
        let cmd = command(&Auth::default(), ForgeKind::Github);
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

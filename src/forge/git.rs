//! Any Git host: `git ls-remote --heads` through the hardened [`crate::gitcmd::command_for`]
//! (credentials in the environment only, no terminal and no prompts, ssh host keys checked, the
//! proxy of the URL), bounded in time and output.

use super::CheckErrorKind;
use crate::config::{Auth, ForgeKind};
use crate::gitcmd::Failure;
use crate::model::Sha;
use crate::secret::Redactor;
use std::time::{Duration, Instant};

/// Largest `ls-remote` output read (a repository with ~300k branches).
const MAX_STDOUT: u64 = 32 * 1024 * 1024;

/// Most of git's stderr kept for the error message.
const MAX_STDERR: u64 = 64 * 1024;

/// Why `ls-remote` failed, already redacted.
#[derive(Debug)]
pub(super) struct GitFailure {
    pub kind: CheckErrorKind,
    pub message: String,
}

/// Lists `refs/heads/*` of `url` (only `patterns` when given, e.g. `refs/heads/main`) within `timeout`.
pub(super) fn ls_remote(
    url: &str,
    auth: &Auth,
    kind: ForgeKind,
    patterns: &[String],
    timeout: Duration,
) -> Result<Vec<(String, Sha)>, GitFailure> {
    // A session of its own (so no terminal, and its own process group: a timeout also ends
    // git-remote-https and ssh).
    let mut cmd = crate::gitcmd::command(url, auth, kind);
    cmd.args(["ls-remote", "--heads", "--", url]).args(patterns);
    let redactor = Redactor::new(auth.token.as_ref().map(|t| (auth.username.as_deref(), t)));
    let fail = |kind, message: String| GitFailure { kind, message: crate::logging::redact(&redactor.redact(&message)) };
    let started = Instant::now();
    let deadline = started.checked_add(timeout).unwrap_or(started);
    let ran = crate::gitcmd::run_bounded(cmd, deadline, MAX_STDOUT, MAX_STDERR)
        .map_err(|e| fail(CheckErrorKind::Protocol, format!("cannot run git: {e}")))?;
    if ran.status.is_some_and(|s| s.success()) && !ran.stdout_complete {
        // An empty listing would read as "no branches": fail the check instead.
        return Err(fail(CheckErrorKind::Network, format!("ls-remote {url}: {}", crate::gitcmd::INCOMPLETE_OUTPUT)));
    }
    let (status, out, err) = (ran.status, ran.stdout, ran.stderr);
    let ms = started.elapsed().as_millis() as u64;
    let Some(status) = status else {
        log::debug!(url = url, duration_ms = ms; "git ls-remote timed out");
        return Err(fail(
            CheckErrorKind::Network,
            format!("git ls-remote {url} timed out after {}s", timeout.as_secs()),
        ));
    };
    log::debug!(url = url, duration_ms = ms, exit = status.code().unwrap_or(-1); "git ls-remote");
    if !status.success() {
        let text = String::from_utf8_lossy(&err);
        if crate::gitcmd::refused_redirect(&text) {
            // Credentials go only to the configured origin: say where it was sent instead.
            let target = crate::gitcmd::redirect_target(url, timeout);
            return Err(fail(CheckErrorKind::Protocol, crate::gitcmd::redirect_error(url, target.as_deref())));
        }
        let why = crate::gitcmd::explain(&text, url);
        let kind = match why.failure {
            Failure::Auth => CheckErrorKind::Unauthorized,
            Failure::HostKey => CheckErrorKind::HostKey,
            Failure::NotFound => CheckErrorKind::NotFound,
            Failure::Network => CheckErrorKind::Network,
            Failure::Server => CheckErrorKind::Server,
        };
        let via = crate::gitcmd::proxy_for(url).map(|p| format!(" (through proxy {p})")).unwrap_or_default();
        return Err(fail(kind, format!("git ls-remote {url} failed: {}{via}{}", why.summary, why.hint)));
    }
    if out.len() as u64 >= MAX_STDOUT {
        return Err(fail(
            CheckErrorKind::Protocol,
            format!("git ls-remote {url}: more than {MAX_STDOUT} bytes of refs"),
        ));
    }
    parse(&String::from_utf8_lossy(&out))
        .map_err(|m| fail(CheckErrorKind::Protocol, format!("git ls-remote {url}: {m}")))
}

/// Parses `SHA<TAB>refs/heads/NAME` lines into (branch, head).
pub(super) fn parse(out: &str) -> Result<Vec<(String, Sha)>, String> {
    let mut heads = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let (sha, name) = line.split_once('\t').ok_or_else(|| format!("unexpected output line {line:?}"))?;
        let Some(branch) = name.strip_prefix("refs/heads/") else { continue };
        let sha = Sha::parse(sha).ok_or_else(|| format!("not a commit id: {sha:?}"))?;
        heads.push((branch.to_string(), sha));
    }
    Ok(heads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads_and_skips_other_refs() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let out = format!("{a}\trefs/heads/main\n{b}\trefs/heads/release/1.0\n{a}\trefs/tags/v1\n\n");
        let heads = parse(&out).unwrap();
        assert_eq!(heads.len(), 2);
        assert_eq!(heads[1].0, "release/1.0");
        assert!(parse("zzz\trefs/heads/x").is_err());
        assert!(parse("no tab here").is_err());
    }
}

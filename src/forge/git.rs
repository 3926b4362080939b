//! Any Git host: `git ls-remote --heads` through the hardened [`crate::gitcmd::command_for`]
//! (credentials in the environment only, no terminal and no prompts, ssh host keys checked, the
//! proxy of the URL), bounded in time and output.

use super::CheckErrorKind;
use crate::config::{Auth, ForgeKind};
use crate::gitcmd::Failure;
use crate::model::Sha;
use crate::secret::Redactor;
use std::io::Read;
use std::process::Stdio;
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
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let redactor = Redactor::new(auth.token.as_ref().map(|t| (auth.username.as_deref(), t)));
    let fail = |kind, message: String| GitFailure { kind, message: crate::logging::redact(&redactor.redact(&message)) };
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| fail(CheckErrorKind::Protocol, format!("cannot run git: {e}")))?;
    let stdout = child.stdout.take().map(|s| std::thread::spawn(move || read_capped(s, MAX_STDOUT)));
    let stderr = child.stderr.take().map(|s| std::thread::spawn(move || read_capped(s, MAX_STDERR)));
    let deadline = started + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                // git runs in a group of its own: its helpers (ssh, remote-https) die with it.
                if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
                    crate::sys::signal_group(pgid, libc::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(fail(CheckErrorKind::Protocol, format!("cannot wait for git: {e}"))),
        }
    };
    let out = stdout.and_then(|t| t.join().ok()).unwrap_or_default();
    let err = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
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

fn read_capped(r: impl Read, cap: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut r = r.take(cap);
    let _ = r.read_to_end(&mut buf);
    // Drain the rest so git never blocks on a full pipe; it is discarded.
    let _ = std::io::copy(&mut r.into_inner(), &mut std::io::sink());
    buf
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

//! Plain Git hosts: `git ls-remote --heads`, credentials through the environment only.

use super::{CheckError, CheckErrorKind, Listing};
use crate::config::{Auth, ForgeKind, Repository};
use crate::model::{Heads, Sha};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Largest ls-remote output read: 100k branches is already absurd.
const MAX_OUTPUT: u64 = 16 << 20;

/// Lists the monitored repository's matching heads.
pub fn list(repo: &Repository, timeout: Duration) -> Result<Listing, CheckError> {
    let m = &repo.monitor;
    let out = ls_remote(&repo.name, &m.repo_url, &m.auth, m.kind, None, timeout)?;
    let heads = parse(&out)
        .map_err(|message| CheckError { repo: repo.name.clone(), kind: CheckErrorKind::Protocol, message })?
        .into_iter()
        .filter(|(b, _)| m.matches(b))
        .collect();
    Ok(Listing { heads, validators: None, cache_hit: false, requests: 1 })
}

/// Checks that the deploy repository and its branch are reachable with its credentials.
pub fn probe(repo: &Repository, timeout: Duration) -> Result<(), CheckError> {
    let d = &repo.deploy;
    let out = ls_remote(&repo.name, &d.qa_repo_url, &d.auth, d.kind, Some(&d.qa_repo_branch), timeout)?;
    let heads = parse(&out).map_err(|message| CheckError {
        repo: repo.name.clone(),
        kind: CheckErrorKind::Protocol,
        message,
    })?;
    if heads.contains_key(&d.qa_repo_branch) {
        Ok(())
    } else {
        Err(CheckError {
            repo: repo.name.clone(),
            kind: CheckErrorKind::NotFound,
            message: format!("{}: deploy repository {} has no branch {:?}", repo.name, d.qa_repo_url, d.qa_repo_branch),
        })
    }
}

fn ls_remote(
    name: &str,
    url: &str,
    auth: &Auth,
    kind: ForgeKind,
    branch: Option<&str>,
    timeout: Duration,
) -> Result<String, CheckError> {
    let fail = |kind, message: String| CheckError { repo: name.to_string(), kind, message };
    let mut cmd: Command = crate::git::command(auth, kind);
    // `--` ends the options: no URL or branch can become one.
    cmd.args(["ls-remote", "--heads", "--", url]);
    if let Some(b) = branch {
        cmd.arg(format!("refs/heads/{b}"));
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| fail(CheckErrorKind::Network, format!("{name}: cannot run git: {e}")))?;
    let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
    // Read on threads so a chatty git never blocks on a full pipe while we wait.
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.take(MAX_OUTPUT).read_to_string(&mut s);
        }
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.take(64 << 10).read_to_string(&mut s);
        }
        s
    });
    let limit = timeout.saturating_mul(2);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = crate::logging::redact(err.join().unwrap_or_default().trim());
    log::debug!(repo = name, duration_ms = started.elapsed().as_millis() as u64; "git ls-remote");
    match status {
        Some(s) if s.success() => Ok(stdout),
        Some(_) => {
            let (kind, hint) = classify(&stderr);
            let last = stderr.lines().last().unwrap_or("").trim_start_matches("fatal: ");
            Err(fail(kind, format!("{name}: git ls-remote {url} failed: {last} ({hint})")))
        }
        None => Err(fail(CheckErrorKind::Network, format!("{name}: git ls-remote {url} timed out after {limit:?}"))),
    }
}

fn classify(stderr: &str) -> (CheckErrorKind, &'static str) {
    let s = stderr.to_ascii_lowercase();
    if s.contains("authentication failed")
        || s.contains("could not read username")
        || s.contains(" 401")
        || s.contains(" 403")
    {
        (CheckErrorKind::Unauthorized, "check the token and that it can read this repository")
    } else if s.contains("not found") || s.contains("does not appear to be a git repository") || s.contains(" 404") {
        (CheckErrorKind::NotFound, "check the URL, and that the token can see the repository")
    } else {
        (CheckErrorKind::Network, "check the host is reachable")
    }
}

/// Parses `<sha>\trefs/heads/<name>` lines.
fn parse(out: &str) -> Result<Heads, String> {
    let mut heads = Heads::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let (sha, name) = line.split_once('\t').ok_or_else(|| format!("unexpected ls-remote line {line:?}"))?;
        let Some(branch) = name.strip_prefix("refs/heads/") else { continue };
        let sha = Sha::parse(sha).ok_or_else(|| format!("unexpected object id in ls-remote output: {sha:?}"))?;
        heads.insert(branch.to_string(), sha);
    }
    Ok(heads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ls_remote() {
        let a = "a".repeat(40);
        let out = format!("{a}\trefs/heads/main\n{a}\trefs/heads/release/1.0\n{a}\tHEAD\n");
        let heads = parse(&out).expect("parses");
        assert_eq!(heads.keys().collect::<Vec<_>>(), ["main", "release/1.0"]);
        assert!(parse("garbage").is_err());
        assert!(parse("xyz\trefs/heads/main").is_err());
    }
}

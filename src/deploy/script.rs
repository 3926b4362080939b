//! The `sh` script that runs a deployment's commands in one session, and its environment.
//!
//! Each command is handed to `eval` as one single-quoted word, so whatever it contains (`;`,
//! `&&`, pipes, quotes, here-documents, even a syntax error) stays within that command: `cd` and
//! `export` still carry over to the next one, because `eval` runs in the same shell. Before each
//! command the script writes its index to a progress file (outside the clone); after it, a
//! non-zero status ends the script with that status. The failing command is thus the last index
//! written, and its exit code the shell's, even when a command calls `exit` or `set -e` ends
//! the session early.

use crate::config::Repository;
use crate::model::Job;
use crate::secret::Secret;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Tokens shorter than this are only stripped when a variable's whole value equals them, so a
/// silly two-letter token cannot empty `PATH`.
const MIN_SUBSTRING_TOKEN: usize = 4;

/// The script running `commands` in order, recording progress in `progress`.
pub(crate) fn script(commands: &[String], progress: &Path) -> Vec<u8> {
    let progress = quote(progress.as_os_str().as_bytes());
    let mut s: Vec<u8> = b"# Written by sentry: the deployment's commands, in one shell session.\n".to_vec();
    for (i, command) in commands.iter().enumerate() {
        s.extend_from_slice(format!("printf '%s\\n' {i} >").as_bytes());
        s.extend_from_slice(&progress);
        s.extend_from_slice(b"\neval ");
        s.extend_from_slice(&quote(command.as_bytes()));
        s.extend_from_slice(b"\n__sentry_status=$?\n");
        s.extend_from_slice(b"if [ \"$__sentry_status\" -ne 0 ]; then exit \"$__sentry_status\"; fi\n");
    }
    s.extend_from_slice(b"exit 0\n");
    s
}

/// The command that was running when the script ended, from the progress file's text.
pub(crate) fn running_index(progress: &str) -> Option<usize> {
    progress.lines().last()?.trim().parse().ok()
}

/// Quotes bytes as one `sh` word: inside single quotes everything is literal except `'`.
fn quote(bytes: &[u8]) -> Vec<u8> {
    let mut q = Vec::with_capacity(bytes.len() + 2);
    q.push(b'\'');
    for &b in bytes {
        if b == b'\'' {
            q.extend_from_slice(b"'\\''");
        } else {
            q.push(b);
        }
    }
    q.push(b'\'');
    q
}

/// The values the commands see besides the inherited environment.
pub(crate) struct JobEnv<'a> {
    pub repo: &'a Repository,
    pub job: &'a Job,
    pub qa_dir: &'a Path,
    pub tmp: &'a Path,
    pub run_id: &'a str,
}

/// True when `value` holds one of `tokens` (the test for stripping a variable).
pub(crate) fn holds_token(value: &OsStr, tokens: &[Secret]) -> bool {
    let value = value.as_bytes();
    tokens.iter().any(|t| {
        let t = t.expose().as_bytes();
        !t.is_empty() && (value == t || (t.len() >= MIN_SUBSTRING_TOKEN && value.windows(t.len()).any(|w| w == t)))
    })
}

/// The process environment minus every variable holding a token (and `PWD`/`OLDPWD`), worked
/// out once per run on first use and shared by every job of it: the check costs (variables x
/// tokens x length), which a run of many jobs should not pay per job.
#[derive(Clone, Default)]
pub struct InheritedEnv(Arc<OnceLock<Inherited>>);

pub(crate) struct Inherited {
    /// What the commands inherit.
    pub kept: Vec<(OsString, OsString)>,
    /// Names of the variables holding a token (also removed from `git clone`'s environment).
    pub stripped: Vec<OsString>,
}

impl std::fmt::Debug for InheritedEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values never: the environment may hold other secrets.
        match self.0.get() {
            Some(i) => write!(f, "InheritedEnv({} kept, {} stripped)", i.kept.len(), i.stripped.len()),
            None => f.write_str("InheritedEnv(not read yet)"),
        }
    }
}

impl InheritedEnv {
    /// The split of the process environment against `tokens` (computed on the first call).
    pub(crate) fn get(&self, tokens: &[Secret]) -> &Inherited {
        self.0.get_or_init(|| split_env(std::env::vars_os(), tokens))
    }
}

/// Splits `vars` into what jobs inherit and the names of variables holding a token.
pub(crate) fn split_env(vars: impl IntoIterator<Item = (OsString, OsString)>, tokens: &[Secret]) -> Inherited {
    let mut out = Inherited { kept: Vec::new(), stripped: Vec::new() };
    for (k, v) in vars {
        if holds_token(&v, tokens) {
            out.stripped.push(k);
        } else if k != "PWD" && k != "OLDPWD" {
            // PWD/OLDPWD describe sentry's directory, not the clone the shell starts in.
            out.kept.push((k, v));
        }
    }
    out
}

/// The commands' environment (SPEC §4): `inherited` (already without the variables holding a
/// token, see [`InheritedEnv`]), plus `deploy.env`, plus the `SENTRY_*` context and `TMPDIR`.
/// Later entries win.
pub(crate) fn environment(inherited: &[(OsString, OsString)], e: &JobEnv<'_>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = inherited.to_vec();
    let mut set = |k: &str, v: OsString| {
        env.retain(|(key, _)| key != k);
        env.push((k.into(), v));
    };
    for (k, v) in &e.repo.deploy.env {
        set(k, v.into());
    }
    let job = e.job;
    set("SENTRY_REPO", job.repo.clone().into());
    set("SENTRY_GROUP", job.group.clone().unwrap_or_default().into());
    // A tag deploys with SENTRY_TAG set and SENTRY_BRANCH empty, a branch the other way round.
    set("SENTRY_BRANCH", if job.tag { String::new() } else { job.branch.clone() }.into());
    set("SENTRY_TAG", if job.tag { job.branch.clone() } else { String::new() }.into());
    set("SENTRY_REF", job.full_ref().into());
    set("SENTRY_COMMIT", job.commit.as_str().into());
    set("SENTRY_PREVIOUS_COMMIT", job.previous.as_ref().map(|s| s.as_str()).unwrap_or_default().into());
    set("SENTRY_PROJECT", e.repo.deploy.project_name.clone().into());
    set("SENTRY_REPO_URL", e.repo.monitor.repo_url.clone().into());
    set("SENTRY_QA_DIR", e.qa_dir.as_os_str().to_owned());
    set("SENTRY_RUN_ID", e.run_id.into());
    set("TMPDIR", e.tmp.as_os_str().to_owned());
    env
}

/// A directory-name-safe rendering of `s`: `[A-Za-z0-9._-]`, others as `_`, at most `max` bytes.
pub(crate) fn sanitize(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(quote(b"it's"), b"'it'\\''s'".to_vec());
        assert_eq!(quote(b""), b"''".to_vec());
    }

    #[test]
    fn script_records_progress_and_stops() {
        let s = String::from_utf8(script(&["cd a".into(), "echo 'x'".into()], Path::new("/j/p"))).expect("utf8");
        assert!(s.contains("printf '%s\\n' 0 >'/j/p'\neval 'cd a'\n"), "{s}");
        assert!(s.contains("eval 'echo '\\''x'\\'''\n"), "{s}");
        assert!(s.ends_with("exit 0\n"));
    }

    #[test]
    fn progress_is_the_last_index() {
        assert_eq!(running_index("0\n1\n"), Some(1));
        assert_eq!(running_index("3\n"), Some(3));
        assert_eq!(running_index(""), None);
    }

    #[test]
    fn token_holders_are_found() {
        let tokens = [Secret::new("tok-123456"), Secret::new("ab")];
        assert!(holds_token(OsStr::new("Bearer tok-123456"), &tokens));
        assert!(holds_token(OsStr::new("ab"), &tokens));
        assert!(!holds_token(OsStr::new("/usr/bin:/bin:/abc"), &tokens));
        assert!(!holds_token(OsStr::new("tok-12345"), &tokens));
    }

    #[test]
    fn the_environment_is_split_once_and_shared() {
        let tokens = [Secret::new("tok-123456")];
        let vars = [("A", "1"), ("GH", "x tok-123456 y"), ("PWD", "/here"), ("B", "2")]
            .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let split = split_env(vars, &tokens);
        assert_eq!(split.kept, [("A".into(), "1".into()), ("B".into(), "2".into())]);
        assert_eq!(split.stripped, [OsString::from("GH")]);
        let shared = InheritedEnv::default();
        let copy = shared.clone();
        let first: *const Inherited = shared.get(&tokens);
        assert!(std::ptr::eq(first, copy.get(&[])), "computed once, shared by clones");
        assert!(!format!("{shared:?}").contains('='), "{shared:?}");
    }

    #[test]
    fn sanitize_keeps_safe_characters() {
        assert_eq!(sanitize("feature/x y", 64), "feature_x_y");
        assert_eq!(sanitize("abcdef", 3), "abc");
    }
}

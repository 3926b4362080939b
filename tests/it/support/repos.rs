//! Real bare Git repositories for tests, built with git plumbing (fast: no working tree, no clone).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinct, increasing commit dates so identical trees still get distinct commits.
static CLOCK: AtomicU64 = AtomicU64::new(1_700_000_000);

/// A bare repository on disk.
#[derive(Clone, Debug)]
pub struct BareRepo {
    pub path: PathBuf,
}

/// Runs git in `dir` with a fixed identity and returns trimmed stdout; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_with(dir, args, &[], None)
}

fn git_with(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> String {
    let when = CLOCK.fetch_add(1, Ordering::SeqCst).to_string() + " +0000";
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .env("GIT_AUTHOR_DATE", &when)
        .env("GIT_COMMITTER_DATE", &when)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn git");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input).expect("write git stdin");
    }
    let out = child.wait_with_output().expect("wait git");
    assert!(out.status.success(), "git {args:?} in {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl BareRepo {
    /// Creates `root/rel` (any depth, e.g. `group/sub/app.git`) as an empty bare repository.
    pub fn create(root: &Path, rel: &str) -> BareRepo {
        let path = root.join(rel);
        std::fs::create_dir_all(&path).expect("mkdir repo");
        git(&path, &["init", "--bare", "-q", "-b", "main"]);
        // Let `git http-backend` serve it read-write without extra config.
        git(&path, &["config", "http.receivepack", "true"]);
        BareRepo { path }
    }

    /// Commits `files` (path, content) on top of `branch` (created if missing) and returns the new SHA.
    /// Files ending in `.sh` are executable.
    pub fn commit(&self, branch: &str, files: &[(&str, &str)], message: &str) -> String {
        let index = tempfile::NamedTempFile::new().expect("index file");
        let index_path = index.path().to_string_lossy().into_owned();
        // An empty file is not a valid index: let git create it.
        std::fs::remove_file(&index_path).expect("rm index");
        let env = [("GIT_INDEX_FILE", index_path.as_str())];
        let parent = self.head(branch);
        if let Some(p) = &parent {
            git_with(&self.path, &["read-tree", p], &env, None);
        }
        for (name, content) in files {
            let blob = git_with(&self.path, &["hash-object", "-w", "--stdin"], &env, Some(content.as_bytes()));
            let mode = if name.ends_with(".sh") { "100755" } else { "100644" };
            git_with(
                &self.path,
                &["update-index", "--add", "--cacheinfo", &format!("{mode},{blob},{name}")],
                &env,
                None,
            );
        }
        let tree = git_with(&self.path, &["write-tree"], &env, None);
        let mut args = vec!["commit-tree", tree.as_str(), "-m", message];
        if let Some(p) = &parent {
            args.extend(["-p", p.as_str()]);
        }
        let sha = git_with(&self.path, &args, &env, None);
        self.set_branch(branch, &sha);
        sha
    }

    /// Points `branch` at `sha` (creating it, or force-moving it like a force-push).
    pub fn set_branch(&self, branch: &str, sha: &str) {
        git(&self.path, &["update-ref", &format!("refs/heads/{branch}"), sha]);
    }

    /// Creates many branches at `sha` in one git call.
    pub fn create_branches(&self, names: &[String], sha: &str) {
        let input: String = names.iter().map(|n| format!("create refs/heads/{n} {sha}\n")).collect();
        git_with(&self.path, &["update-ref", "--stdin"], &[], Some(input.as_bytes()));
    }

    /// Creates lightweight tags `names` at `sha` in one `git update-ref`.
    pub fn create_tags(&self, names: &[String], sha: &str) {
        let input: String = names.iter().map(|n| format!("create refs/tags/{n} {sha}\n")).collect();
        git_with(&self.path, &["update-ref", "--stdin"], &[], Some(input.as_bytes()));
    }

    /// Deletes `branch`.
    pub fn delete_branch(&self, branch: &str) {
        git(&self.path, &["update-ref", "-d", &format!("refs/heads/{branch}")]);
    }

    /// The head of `branch`, if it exists.
    pub fn head(&self, branch: &str) -> Option<String> {
        let out = Command::new("git")
            .current_dir(&self.path)
            .args(["rev-parse", "--verify", "-q", &format!("refs/heads/{branch}^{{commit}}")])
            .output()
            .expect("git rev-parse");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Every branch and its head, as `git for-each-ref refs/heads` says.
    pub fn heads(&self) -> BTreeMap<String, String> {
        git(&self.path, &["for-each-ref", "--format=%(refname) %(objectname)", "refs/heads"])
            .lines()
            .filter_map(|l| {
                let (r, sha) = l.split_once(' ')?;
                Some((r.strip_prefix("refs/heads/")?.to_string(), sha.to_string()))
            })
            .collect()
    }
}

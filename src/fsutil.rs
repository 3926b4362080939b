//! Durable file replacement shared by the state file and the metrics file.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A failed step of [`write_atomic`]: what was being done, and why it failed.
#[derive(Debug)]
pub struct WriteError {
    /// The step, e.g. "sync /var/lib/sentry/.state.json.x1y2.tmp".
    pub action: String,
    /// The cause.
    pub source: io::Error,
}

/// The directory of `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Temporary files for `path` are named `.<file name>.<random>.tmp` beside it.
pub fn temp_prefix(path: &Path) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(path.file_name().unwrap_or_default());
    prefix.push(".");
    prefix
}

/// Replaces `path` with `bytes` so that a reader, or a crash at any instant, sees either the old
/// or the new content: temporary file in the same directory, fsync, rename, fsync of the directory.
/// The file is private to its owner (0600): the state.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_atomic_with(path, bytes, 0o600)
}

/// Like [`write_atomic`], with the mode a new file gets from the process umask (0666 less the
/// umask), for files other users read: the metrics file, read by node-exporter (SPEC §4).
pub fn write_atomic_shared(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_atomic_with(path, bytes, 0o666)
}

fn write_atomic_with(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |action: String| move |source| WriteError { action, source };
    let dir = parent_dir(path);
    // The kernel applies the umask to the mode given at creation.
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(path))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(&dir)
        .map_err(fail(format!("create a temporary file in {}", dir.display())))?;
    let tmp_name = tmp.path().display().to_string();
    tmp.write_all(bytes).map_err(fail(format!("write {tmp_name}")))?;
    // Data on disk before the rename makes it visible; otherwise a crash could expose an empty
    // file under the real name.
    tmp.as_file().sync_all().map_err(fail(format!("sync {tmp_name}")))?;
    tmp.persist(path).map_err(|e| WriteError { action: format!("rename {tmp_name} into place"), source: e.error })?;
    // The rename itself is durable only once the directory is synced.
    File::open(&dir).and_then(|d| d.sync_all()).map_err(fail(format!("sync directory {}", dir.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.txt");
        write_atomic(&path, b"one").expect("write");
        write_atomic(&path, b"two").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn shared_files_follow_the_umask_and_private_ones_do_not() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        let private = dir.path().join("state.json");
        write_atomic(&private, b"{}").expect("write");
        assert_eq!(mode(&private), 0o600);
        let shared = dir.path().join("metrics.prom");
        write_atomic_shared(&shared, b"m 1\n").expect("write");
        // Whatever the umask of the test process is, it is what the file got.
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let umask = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            .expect("umask");
        assert_eq!(mode(&shared), 0o666 & !umask, "umask {umask:o}");
    }

    #[test]
    fn missing_directory_is_an_error_naming_it() {
        let e = write_atomic(Path::new("/nonexistent-dir-xyz/f"), b"x").expect_err("fails");
        assert!(e.action.contains("/nonexistent-dir-xyz"), "{}", e.action);
    }
}

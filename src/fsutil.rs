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
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let fail = |action: String| move |source| WriteError { action, source };
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(path))
        .suffix(".tmp")
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
    fn missing_directory_is_an_error_naming_it() {
        let e = write_atomic(Path::new("/nonexistent-dir-xyz/f"), b"x").expect_err("fails");
        assert!(e.action.contains("/nonexistent-dir-xyz"), "{}", e.action);
    }
}

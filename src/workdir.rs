//! Job directories that nobody else can change (SPEC §4 "Files"): a deployment's, and the
//! private repository a path filter's compare fetches into.
//!
//! `tmp_dir` is opened once per job after checking that no other user can swap what is inside:
//! it (and every directory above it) belongs to this user or root and is not writable by group
//! or others unless sticky; a symbolic link in its place must belong to this user or root as
//! well. Everything sentry itself creates or reads in a job directory then goes through
//! directory handles (`mkdirat`/`openat`) with `O_NOFOLLOW`, so no symbolic link that sentry did
//! not create is ever followed, and no path is looked up twice.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// Attempts at a fresh job directory name before giving up (a name taken is tried again).
const NAME_ATTEMPTS: u32 = 64;

/// Most of the progress file read: it holds one small number.
const MAX_PROGRESS: u64 = 4096;

/// A job's private directory: its absolute path (for the processes of the job) and a handle
/// (for sentry's own files in it).
#[derive(Debug)]
pub(crate) struct JobDir {
    pub path: PathBuf,
    fd: OwnedFd,
}

fn refuse(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, message)
}

/// True when `uid` may own a directory sentry relies on: this user, or root (who can do
/// anything anyway).
fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == crate::sys::euid()
}

/// Group- or other-writable without the sticky bit: another user could rename entries.
fn writable_by_others(mode: u32) -> bool {
    mode & 0o022 != 0 && mode & 0o1000 == 0
}

/// Why `meta` (of `what`, at `path`) cannot hold private job directories, if it cannot.
fn untrusted(what: &str, path: &Path, meta: &fs::Metadata) -> Option<String> {
    if !trusted_owner(meta.uid()) {
        return Some(format!(
            "{what} {} is owned by uid {}, not by this user (uid {}) or root: another user could swap the deployments' files; remove it, or set global.tmp_dir to a directory of this user",
            path.display(),
            meta.uid(),
            crate::sys::euid()
        ));
    }
    if writable_by_others(meta.mode()) {
        return Some(format!(
            "{what} {} is writable by other users (mode {:o}) without the sticky bit: another user could swap the deployments' files; make it private (chmod 700) or sticky, or set global.tmp_dir elsewhere",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    None
}

/// Opens `tmp_dir` for job directories, creating it (mode 0700) when missing, after the checks
/// of the module documentation. Returns its absolute, link-free path and a handle on it.
pub(crate) fn open_tmp_dir(tmp_dir: &Path) -> io::Result<(PathBuf, OwnedFd)> {
    match fs::symlink_metadata(tmp_dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(tmp_dir)?;
        }
        Err(e) => return Err(e),
        // An operator's link (to a data disk) is fine; one planted by another user is not.
        Ok(m) if m.file_type().is_symlink() && !trusted_owner(m.uid()) => {
            return Err(refuse(format!(
                "tmp_dir {} is a symbolic link owned by uid {}, not by this user (uid {}) or root: refusing to follow it",
                tmp_dir.display(),
                m.uid(),
                crate::sys::euid()
            )));
        }
        Ok(_) => {}
    }
    // Absolute and free of links, so paths handed to the shell stay valid after a `cd`.
    let path = fs::canonicalize(tmp_dir)?;
    for parent in path.ancestors().skip(1) {
        let meta = fs::metadata(parent)?;
        if let Some(why) = untrusted("the directory", parent, &meta) {
            return Err(refuse(format!("{why} (it holds tmp_dir {})", path.display())));
        }
    }
    let fd = rustix::fs::open(&path, OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    // Checked on the handle: what is checked is what is used.
    let file = File::from(fd);
    let meta = file.metadata()?;
    if let Some(why) = untrusted("tmp_dir", &path, &meta) {
        return Err(refuse(why));
    }
    Ok((path, file.into()))
}

/// A name suffix that is hard to guess; uniqueness comes from `mkdirat` failing on a taken name.
fn random_suffix(attempt: u32) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u32(attempt);
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    let n = h.finish();
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..8).map(|i| char::from(CHARS[((n >> (i * 6)) & 63) as usize % CHARS.len()])).collect()
}

impl JobDir {
    /// Creates a fresh private directory `<prefix><random>` (mode 0700) in `tmp_dir`.
    pub(crate) fn create(tmp_dir: &Path, prefix: &str) -> io::Result<JobDir> {
        let (base, base_fd) = open_tmp_dir(tmp_dir)?;
        for attempt in 0..NAME_ATTEMPTS {
            let name = format!("{prefix}{}", random_suffix(attempt));
            match rustix::fs::mkdirat(&base_fd, name.as_str(), Mode::from_raw_mode(0o700)) {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
            let fd = rustix::fs::openat(
                &base_fd,
                name.as_str(),
                OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            return Ok(JobDir { path: base.join(name), fd });
        }
        Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free job directory name"))
    }

    /// Creates the private subdirectory `name` (0700) and returns its path.
    pub(crate) fn subdir(&self, name: &str) -> io::Result<PathBuf> {
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700))?;
        Ok(self.path.join(name))
    }

    /// Writes a new file `name` only its owner can read (0600); never through a link, never over
    /// an existing file. Returns its path.
    pub(crate) fn write_private(&self, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(0o600))?;
        File::from(fd).write_all(bytes)?;
        Ok(self.path.join(name))
    }

    /// The start of the regular file `name`, read without following a link (a job that
    /// replaced it with one gets nothing from sentry).
    pub(crate) fn read_small(&self, name: &str) -> io::Result<String> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let file = File::from(rustix::fs::openat(&self.fd, name, flags, Mode::empty())?);
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{name} is not a regular file")));
        }
        let mut text = String::new();
        file.take(MAX_PROGRESS).read_to_string(&mut text)?;
        Ok(text)
    }
}

/// Removes a job directory, first making read-only directories writable (a clone can hold some).
/// `remove_dir_all` never follows links inside; the permission fix opens each directory with
/// `O_NOFOLLOW` and changes it through that handle.
pub(crate) fn remove(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(first) => {
            make_writable(dir, 0);
            fs::remove_dir_all(dir).map_err(|_| first)
        }
    }
}

/// Deepest directory level [`make_writable`] descends to.
const MAX_DEPTH: u32 = 256;

fn make_writable(dir: &Path, depth: u32) {
    if depth > MAX_DEPTH {
        return;
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::open(dir, flags, Mode::empty()) else { return };
    let _ = File::from(fd).set_permissions(fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&entry.path(), depth + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_directories_are_private_and_links_are_not_followed() {
        let sb = tempfile::tempdir().expect("tempdir");
        let tmp = sb.path().join("a/tmp");
        let dir = JobDir::create(&tmp, "app-main-").expect("job dir");
        assert_eq!(fs::metadata(&tmp).expect("tmp").mode() & 0o777, 0o700, "created private");
        assert_eq!(fs::metadata(&dir.path).expect("dir").mode() & 0o777, 0o700);
        let script = dir.write_private("script.sh", b"echo").expect("write");
        assert_eq!(fs::metadata(&script).expect("script").mode() & 0o777, 0o600);
        assert!(dir.write_private("script.sh", b"again").is_err(), "never over an existing file");

        let outside = sb.path().join("outside");
        fs::write(&outside, "7\n").expect("write");
        std::os::unix::fs::symlink(&outside, dir.path.join("progress")).expect("link");
        assert!(dir.read_small("progress").is_err(), "a link is not followed");
        std::os::unix::fs::symlink(&outside, dir.path.join("planted")).expect("link");
        assert!(dir.write_private("planted", b"x").is_err());
        assert_eq!(fs::read_to_string(&outside).expect("read"), "7\n", "nothing written through a link");
    }

    #[test]
    fn a_tmp_dir_writable_by_others_is_refused_unless_sticky() {
        let sb = tempfile::tempdir().expect("tempdir");
        let tmp = sb.path().join("tmp");
        fs::create_dir(&tmp).expect("mkdir");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = JobDir::create(&tmp, "x-").expect_err("refused");
        assert!(e.to_string().contains("writable by other users"), "{e}");
        assert_eq!(fs::read_dir(&tmp).expect("ls").count(), 0, "nothing created in it");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).expect("chmod");
        JobDir::create(&tmp, "x-").expect("a sticky directory is fine");
    }
}

//! The JSON-file backend: atomic replace, and an exclusive lock on `<file>.lock` for the whole run.
//!
//! The lock is an advisory `flock` (std `File::try_lock`) on a separate, never-deleted file: it
//! dies with the last process holding its descriptor, so a SIGKILL never leaves a lock that
//! blocks the next run once the processes of the killed run's jobs (which inherit it, SPEC §3)
//! are gone, and the state file itself can be replaced by rename without losing the lock.
//!
//! A state path that is a symbolic link is resolved once, at open (SPEC §3): the link stays,
//! its target is what is read, replaced and locked (`<target>.lock`), so two names of one state
//! share one lock. The lock file itself is never opened through a link (`O_NOFOLLOW`), so
//! writing the holder's note can never truncate another file.

use super::{LockMode, State, StateError, StateStore, StoreOptions, from_json, to_json};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest state file read or written: a state for hundreds of repositories is a few hundred
/// kilobytes; anything near this is a mistake, not a state.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Symbolic links followed when resolving a state path (as the kernel's own limit).
const MAX_LINKS: usize = 40;

/// How often `LockMode::Wait` tries the lock again.
const LOCK_POLL: Duration = Duration::from_millis(100);

/// A state kept in a JSON file.
#[derive(Debug)]
pub struct FileStore {
    /// The state file itself: the configured path with symbolic links resolved.
    path: PathBuf,
    location: String,
    /// The open, locked `<file>.lock`; closing it (drop, and the end of every job process
    /// that inherited it) releases the lock.
    lock: Option<Arc<File>>,
    read_only: bool,
    /// The file on disk is known to parse (or to be missing), so `save` may replace it.
    verified: bool,
    /// The records `save_changed` wrote last, for the next one.
    cache: super::PrettyCache,
}

impl FileStore {
    /// Opens the state file at `path`; unless `mode` is `None`, creates its directory and takes the lock.
    pub fn open(path: &Path, mode: LockMode, opts: &StoreOptions) -> Result<FileStore, StateError> {
        let mut store = FileStore {
            path: path.to_path_buf(),
            location: path.display().to_string(),
            lock: None,
            read_only: mode == LockMode::None,
            verified: false,
            cache: super::PrettyCache::default(),
        };
        let wait = match mode {
            LockMode::None => {
                store.path = resolve(path).map_err(|e| store.io("resolve the symbolic link".into(), e))?;
                return Ok(store);
            }
            LockMode::Try => Duration::ZERO,
            LockMode::Wait(d) => d,
        };
        let dir = store.dir();
        fs::create_dir_all(&dir).map_err(|e| store.io(format!("create directory {}", dir.display()), e))?;
        store.path = resolve(path).map_err(|e| store.io("resolve the symbolic link".into(), e))?;
        let lock_path = lock_path(&store.path);
        // Never through a link: the holder's note below truncates what it opened. Rust opens
        // files close-on-exec: only job processes inherit the lock, on purpose (`lock_handle`).
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&lock_path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => store.io(
                    format!("open lock file {}", lock_path.display()),
                    io::Error::other("it is a symbolic link, which sentry never follows for its lock: remove it"),
                ),
                _ => store.io(format!("open lock file {}", lock_path.display()), e),
            })?;
        match file.metadata() {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(store.io(
                    format!("open lock file {}", lock_path.display()),
                    io::Error::other("it is not a regular file"),
                ));
            }
            Err(e) => return Err(store.io(format!("read metadata of lock file {}", lock_path.display()), e)),
        }
        let deadline = Instant::now().checked_add(wait);
        let mut said_waiting = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                // SIGTERM while waiting (`deploy`): leave without touching anything (SPEC §3).
                Err(TryLockError::WouldBlock) if crate::signals::stop_requested() => {
                    return Err(StateError::Stopped { location: store.location.clone() });
                }
                Err(TryLockError::WouldBlock) if deadline.is_none_or(|d| Instant::now() < d) => {
                    if !said_waiting {
                        // Once, with who holds it: a `deploy` that seems to hang says why.
                        said_waiting = true;
                        let holder = fs::read_to_string(&lock_path).unwrap_or_default();
                        log::info!(
                            state = store.location.as_str(), holder = holder.trim(), wait_s = wait.as_secs();
                            "waiting for the lock held by another run"
                        );
                    }
                    let left = deadline.map_or(LOCK_POLL, |d| d.saturating_duration_since(Instant::now()));
                    std::thread::sleep(LOCK_POLL.min(left));
                }
                Err(TryLockError::WouldBlock) => {
                    let mut note = String::new();
                    let _ = file.rewind().and_then(|_| (&file).take(4096).read_to_string(&mut note));
                    let holder = describe_holder(note.trim());
                    return Err(StateError::Busy { location: store.location.clone(), holder });
                }
                Err(TryLockError::Error(e)) => {
                    return Err(store.io(format!("lock {}", lock_path.display()), e));
                }
            }
        }
        // Who holds the lock, for the message of a run that finds it taken. Best effort: the lock
        // is what counts, not this text.
        let note = format!(
            "run {}, pid {} on {}, since {}\n",
            opts.run_id,
            std::process::id(),
            crate::sys::host_label(),
            crate::time::now_rfc3339()
        );
        let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(note.as_bytes()));
        store.lock = Some(Arc::new(file));
        store.remove_stale_temp_files();
        Ok(store)
    }

    /// The state file's directory (`.` for a bare file name).
    fn dir(&self) -> PathBuf {
        crate::fsutil::parent_dir(&self.path)
    }

    /// Temporary files are named `.<file name>.<random>.tmp` next to the state file.
    fn temp_prefix(&self) -> OsString {
        crate::fsutil::temp_prefix(&self.path)
    }

    /// Removes temporary files a killed run left behind. Only under the lock: no other writer
    /// can be half-way through one then.
    fn remove_stale_temp_files(&self) {
        let Ok(entries) = fs::read_dir(self.dir()) else { return };
        let prefix = self.temp_prefix();
        let prefix = prefix.to_string_lossy();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&*prefix) && name.ends_with(".tmp") {
                match fs::remove_file(entry.path()) {
                    Ok(()) => log::debug!("removed a temporary state file left by an interrupted run: {name}"),
                    Err(e) => log::debug!("cannot remove stale temporary state file {name}: {e}"),
                }
            }
        }
    }

    fn io(&self, action: String, source: io::Error) -> StateError {
        StateError::Io { location: self.location.clone(), action, source }
    }

    fn too_large(&self, size: u64) -> StateError {
        StateError::TooLarge { location: self.location.clone(), size, limit: MAX_FILE_BYTES }
    }
}

/// Who holds the lock, from its note (`run R, pid P on H, since T`): when that pid is gone from
/// this machine, the lock is held by processes its deployments left running (they inherit it,
/// SPEC §3).
fn describe_holder(note: &str) -> String {
    if note.is_empty() {
        return "holder unknown".to_string();
    }
    let here = crate::sys::host_label();
    let pid = note
        .split(", ")
        .find_map(|part| part.strip_prefix("pid "))
        .and_then(|p| p.split_once(" on "))
        .filter(|(_, host)| *host == here)
        .and_then(|(p, _)| p.trim().parse::<i32>().ok());
    match pid {
        Some(pid) if !crate::sys::process_exists(pid) => format!(
            "{note}; that sentry is gone, a process of its deployments still runs and holds the lock until it ends"
        ),
        _ => note.to_string(),
    }
}

/// `path` with symbolic links resolved, whether or not the final target exists yet: the link
/// stays, and its target is the state file. A path that is not a link is returned as it is.
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&current)?;
                current = if target.is_absolute() { target } else { crate::fsutil::parent_dir(&current).join(target) };
            }
            _ if current == path => return Ok(current),
            _ => {
                // A resolved target: its directory, links and all, made absolute once.
                let dir = fs::canonicalize(crate::fsutil::parent_dir(&current))?;
                let name = current.file_name().ok_or_else(|| io::Error::other("the link points to a directory"))?;
                return Ok(dir.join(name));
            }
        }
    }
    Err(io::Error::other(format!("more than {MAX_LINKS} symbolic links")))
}

/// `<file>.lock`, next to the state file.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

impl FileStore {
    /// Whether this store may replace the file: opened with a lock, and the file on disk known to
    /// parse (never replace one that does not: that is the operator's to repair).
    fn writable(&mut self) -> Result<(), StateError> {
        if self.read_only {
            return Err(StateError::ReadOnly { location: self.location.clone() });
        }
        if !self.verified {
            self.load()?;
        }
        Ok(())
    }
}

impl StateStore for FileStore {
    fn load(&mut self) -> Result<State, StateError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.verified = true;
                return Ok(State::default());
            }
            Err(e) => return Err(self.io("open".into(), e)),
        };
        let len = file.metadata().map_err(|e| self.io("read metadata".into(), e))?.len();
        if len > MAX_FILE_BYTES {
            return Err(self.too_large(len));
        }
        let mut bytes = Vec::new();
        // `take` as well: the file may grow between the size check and the read.
        file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| self.io("read".into(), e))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(self.too_large(bytes.len() as u64));
        }
        let state = from_json(&self.location, &bytes)?;
        self.verified = true;
        Ok(state)
    }

    fn save(&mut self, state: &State) -> Result<(), StateError> {
        self.writable()?;
        let text = super::encode_within(state, MAX_FILE_BYTES, |st| to_json(st).into_bytes())
            .map_err(|size| self.too_large(size))?;
        crate::fsutil::write_atomic(&self.path, &text).map_err(|e| self.io(e.action, e.source))?;
        Ok(())
    }

    fn save_changed(&mut self, state: &State, changed: &std::collections::BTreeSet<String>) -> Result<(), StateError> {
        self.writable()?;
        let text = self.cache.encode(state, changed);
        if text.len() as u64 > MAX_FILE_BYTES {
            // The size rules (validators dropped, else refused) are `save`'s.
            return self.save(state);
        }
        let written = crate::fsutil::write_atomic(&self.path, text.as_bytes());
        written.map_err(|e| self.io(e.action, e.source))
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn lock_handle(&self) -> Option<Arc<File>> {
        self.lock.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::LastRun;

    fn opts(run: &str) -> StoreOptions {
        StoreOptions { run_id: run.into(), lock_timeout: Duration::from_secs(5), http_timeout: Duration::from_secs(5) }
    }

    #[test]
    fn missing_file_is_empty_and_missing_directory_is_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/state.json");
        let mut ro = FileStore::open(&path, LockMode::None, &opts("r")).expect("opens");
        assert_eq!(ro.load().expect("loads"), State::default());
        assert!(!path.parent().expect("dir").exists(), "read-only open creates nothing");
        assert!(matches!(ro.save(&State::default()), Err(StateError::ReadOnly { .. })));

        let mut rw = FileStore::open(&path, LockMode::Try, &opts("r")).expect("opens");
        assert_eq!(rw.load().expect("loads"), State::default());
        let s = State { last_run: Some(LastRun { run_id: "r".into(), at: "t".into() }), ..Default::default() };
        rw.save(&s).expect("saves");
        assert_eq!(rw.load().expect("loads"), s);
        assert_eq!(fs::read_to_string(&path).expect("read"), to_json(&s));
        assert!(fs::read_to_string(lock_path(&path)).expect("lock").contains("run r,"));
    }

    #[test]
    fn lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let first = FileStore::open(&path, LockMode::Try, &opts("first")).expect("opens");
        let Err(StateError::Busy { holder, .. }) = FileStore::open(&path, LockMode::Try, &opts("second")) else {
            panic!("second open must be busy")
        };
        assert!(holder.contains("run first"), "{holder}");
        let started = Instant::now();
        let waited = FileStore::open(&path, LockMode::Wait(Duration::from_millis(300)), &opts("third"));
        assert!(matches!(waited, Err(StateError::Busy { .. })));
        assert!(started.elapsed() >= Duration::from_millis(300));
        // Reading never needs the lock.
        FileStore::open(&path, LockMode::None, &opts("reader")).expect("opens");
        drop(first);
        FileStore::open(&path, LockMode::Try, &opts("fourth")).expect("lock free after drop");
    }

    #[test]
    fn wait_gets_the_lock_when_it_is_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let first = FileStore::open(&path, LockMode::Try, &opts("first")).expect("opens");
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(first);
        });
        FileStore::open(&path, LockMode::Wait(Duration::from_secs(10)), &opts("second")).expect("gets it");
        releaser.join().expect("joins");
    }

    #[test]
    fn corrupt_file_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        fs::write(&path, "{ not json").expect("write");
        let mut store = FileStore::open(&path, LockMode::Try, &opts("r")).expect("opens");
        // Saving without a load first still checks what it would replace.
        assert!(matches!(store.save(&State::default()), Err(StateError::Corrupt { .. })));
        assert!(matches!(store.load(), Err(StateError::Corrupt { .. })));
        assert!(matches!(store.save(&State::default()), Err(StateError::Corrupt { .. })));
        assert_eq!(fs::read_to_string(&path).expect("read"), "{ not json");
    }

    #[test]
    fn oversized_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        File::create(&path).and_then(|f| f.set_len(MAX_FILE_BYTES + 1)).expect("sparse file");
        let mut store = FileStore::open(&path, LockMode::None, &opts("r")).expect("opens");
        let e = store.load().expect_err("too large");
        assert!(matches!(e, StateError::TooLarge { .. }), "{e:?}");
        assert!(e.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn stale_temp_files_are_removed_under_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let stale = dir.path().join(".state.json.abc123.tmp");
        let other = dir.path().join(".other.json.abc123.tmp");
        fs::write(&stale, "{").expect("write");
        fs::write(&other, "{").expect("write");
        FileStore::open(&path, LockMode::None, &opts("r")).expect("opens");
        assert!(stale.exists(), "not without the lock");
        FileStore::open(&path, LockMode::Try, &opts("r")).expect("opens");
        assert!(!stale.exists());
        assert!(other.exists(), "another state's files are not ours");
    }

    #[test]
    fn a_symlinked_state_keeps_its_link_and_shares_one_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("data")).expect("mkdir");
        let target = dir.path().join("data/state.json");
        let link = dir.path().join("state.json");
        // A relative link whose target does not exist yet: the first save creates the target.
        std::os::unix::fs::symlink("data/state.json", &link).expect("link");
        let mut store = FileStore::open(&link, LockMode::Try, &opts("first")).expect("opens");
        assert_eq!(store.load().expect("loads"), State::default());
        let s = State { last_run: Some(LastRun { run_id: "first".into(), at: "t".into() }), ..Default::default() };
        store.save(&s).expect("saves");
        assert!(fs::symlink_metadata(&link).expect("lstat").file_type().is_symlink(), "the link stays");
        assert_eq!(fs::read_to_string(&target).expect("target"), to_json(&s), "its target is replaced");
        // The other name of the same state finds the same lock taken.
        let other = FileStore::open(&target, LockMode::Try, &opts("second"));
        assert!(matches!(other, Err(StateError::Busy { .. })), "{other:?}");
        assert!(lock_path(&target).exists() && !lock_path(&link).exists(), "one lock, on the resolved path");
        drop(store);
        FileStore::open(&target, LockMode::Try, &opts("third")).expect("free again");
    }

    #[test]
    fn a_symlinked_lock_file_is_never_truncated_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let precious = dir.path().join("precious.txt");
        fs::write(&precious, "keep me").expect("write");
        let path = dir.path().join("state.json");
        std::os::unix::fs::symlink(&precious, lock_path(&path)).expect("link");
        let e = FileStore::open(&path, LockMode::Try, &opts("r")).expect_err("refused");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(fs::read_to_string(&precious).expect("read"), "keep me");
    }

    #[test]
    fn a_holder_that_is_gone_is_named_as_such() {
        assert_eq!(describe_holder(""), "holder unknown");
        let here = crate::sys::host_label();
        let alive = format!("run r, pid {} on {here}, since t", std::process::id());
        assert_eq!(describe_holder(&alive), alive);
        // Far above any pid_max: no such process.
        let gone = format!("run r, pid 2000000000 on {here}, since t");
        assert!(describe_holder(&gone).contains("still runs and holds the lock"));
        // Another machine's pid says nothing here.
        let elsewhere = "run r, pid 2000000000 on another-host-xyz, since t";
        assert_eq!(describe_holder(elsewhere), elsewhere);
    }
}

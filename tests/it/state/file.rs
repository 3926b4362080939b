//! The JSON-file store across processes: the lock, and crash safety under SIGKILL.

use super::{numbered_state, opts};
use sentry::state::file::{FileStore, lock_path};
use sentry::state::{LockMode, State, StateError, StateStore, from_json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set in a child process of this test binary to make [`child_entry`] play a role.
const CHILD_ROLE: &str = "SENTRY_IT_STATE_CHILD";
/// The state file the child works on.
const CHILD_STATE: &str = "SENTRY_IT_STATE_FILE";

/// Not a test on its own: the body of the child processes below. Without the variable it does nothing.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ROLE) else { return };
    let path = PathBuf::from(std::env::var(CHILD_STATE).expect("state file"));
    // Never outlive a parent that forgot us.
    let give_up = Instant::now() + Duration::from_secs(30);
    match role.as_str() {
        "hold-lock" => {
            let _store = FileStore::open(&path, LockMode::Try, &opts("child-holder")).expect("child takes the lock");
            std::fs::write(path.with_extension("locked"), "").expect("marker");
            while Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        "save-loop" => {
            let mut store = FileStore::open(&path, LockMode::Try, &opts("saver")).expect("child takes the lock");
            store.load().expect("loads what the last child left");
            let mut n = 0;
            while Instant::now() < give_up {
                // Whole saves and the per-job path (every repository named changed, as they all
                // are here) in turn: a kill during either leaves an old or a new state.
                let state = numbered_state(n);
                if n % 2 == 0 {
                    store.save(&state).expect("saves");
                } else {
                    store.save_changed(&state, &state.repos.keys().cloned().collect()).expect("saves");
                }
                n += 1;
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn_child(role: &str, path: &Path) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "state::file::child_entry", "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD_ROLE, role)
        .env(CHILD_STATE, path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child")
}

/// A pseudo-random number per call, without a dependency.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

#[test]
fn round_trip_across_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/dir/state.json");
    let state = numbered_state(6);
    {
        let mut store = FileStore::open(&path, LockMode::Try, &opts("one")).expect("opens");
        assert_eq!(store.load().expect("missing file is empty"), State::default());
        store.save(&state).expect("saves");
    }
    let mut store = sentry::state::open(
        &sentry::model::Location::File(path.clone()),
        LockMode::Wait(Duration::from_secs(1)),
        &opts("two"),
    )
    .expect("opens");
    assert_eq!(store.load().expect("loads"), state);
    assert_eq!(store.location(), path.display().to_string());
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.starts_with("{\n  \"last_run\""), "pretty and sorted: {text}");
}

#[test]
fn a_second_process_finds_the_lock_busy_until_the_holder_dies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    std::fs::write(&path, sentry::state::to_json(&numbered_state(4))).expect("seed");
    let before = std::fs::read(&path).expect("read");
    let mut child = spawn_child("hold-lock", &path);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.with_extension("locked").exists() {
        assert!(Instant::now() < deadline, "child never took the lock");
        assert!(child.try_wait().expect("child").is_none(), "child exited early");
        std::thread::sleep(Duration::from_millis(20));
    }

    let err = FileStore::open(&path, LockMode::Try, &opts("poll")).expect_err("busy");
    let StateError::Busy { holder, .. } = &err else { panic!("{err:?}") };
    assert!(holder.contains("child-holder"), "{holder}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    let started = Instant::now();
    let err = FileStore::open(&path, LockMode::Wait(Duration::from_millis(400)), &opts("deploy")).expect_err("busy");
    assert!(matches!(err, StateError::Busy { .. }));
    assert!(started.elapsed() >= Duration::from_millis(400));
    // Reading needs no lock.
    let mut reader = FileStore::open(&path, LockMode::None, &opts("status")).expect("opens");
    assert_eq!(reader.load().expect("loads"), numbered_state(4));
    assert_eq!(std::fs::read(&path).expect("read"), before, "nobody touched the state");

    child.kill().expect("kill");
    child.wait().expect("reap");
    FileStore::open(&path, LockMode::Try, &opts("next")).expect("a dead holder's lock is gone");
    assert!(lock_path(&path).exists());
}

#[test]
fn sigkill_during_saves_always_leaves_a_whole_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    let mut seen = 0;
    for round in 0..30 {
        let mut child = spawn_child("save-loop", &path);
        // Process start-up takes a few milliseconds: some kills land before the first save,
        // most in the middle of one.
        std::thread::sleep(Duration::from_millis(5 + random() % 60));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        if path.exists() {
            let bytes = std::fs::read(&path).expect("read");
            let state = from_json("state", &bytes).unwrap_or_else(|e| panic!("round {round}: {e}"));
            let n: u64 = state.last_run.as_ref().expect("run info").run_id.parse().expect("number");
            assert_eq!(state, numbered_state(n), "round {round}: a state that was written");
            seen += 1;
        }
        // The lock died with the child.
        drop(FileStore::open(&path, LockMode::Try, &opts("after")).expect("lock free after SIGKILL"));
    }
    assert!(seen > 0, "no child ever saved: the test proves nothing");
    let litter: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(litter.is_empty(), "temporary files are cleaned up under the lock: {litter:?}");
}

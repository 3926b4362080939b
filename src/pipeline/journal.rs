//! Group commit of state saves while jobs finish on several threads.

use crate::state::{State, StateStore};
use std::sync::Mutex;

/// The state and its store while jobs finish on several threads.
///
/// Saves are group commits: a finished job records its outcome, then returns once a save that
/// includes it is durable. Jobs that finish while a save is being written are all covered by
/// the next one, so five jobs ending together cost two fsync'd writes instead of five, and
/// their slots start the next jobs sooner (BENCHMARKS.md, P4).
pub(crate) struct Journal {
    shared: Mutex<Tally>,
    /// Held while writing; taken before `shared`, never the other way round.
    store: Mutex<Saved>,
}

/// What the job threads change: the state and what went wrong.
pub(crate) struct Tally {
    pub(crate) state: State,
    /// Count of changes recorded so far.
    recorded: u64,
    /// Repositories changed since the last save that succeeded (the store re-encodes only these).
    changed: std::collections::BTreeSet<String>,
    pub(crate) save_errors: Vec<String>,
    pub(crate) notify_errors: Vec<String>,
}

struct Saved {
    store: Box<dyn StateStore>,
    /// Changes `1..=saved` are durable.
    saved: u64,
}

impl Journal {
    pub(crate) fn new(store: Box<dyn StateStore>, state: State) -> Journal {
        Journal {
            shared: Mutex::new(Tally {
                state,
                recorded: 0,
                changed: std::collections::BTreeSet::new(),
                save_errors: Vec::new(),
                notify_errors: Vec::new(),
            }),
            store: Mutex::new(Saved { store, saved: 0 }),
        }
    }

    /// Applies `change` to the state outside `repos` (it sees no repository); returns its number
    /// for [`Journal::commit`].
    pub(crate) fn record(&self, change: impl FnOnce(&mut State)) -> Option<u64> {
        self.record_for(None, change)
    }

    /// Applies `change`, which may change repository `repo` too (the only one it sees), to the
    /// state.
    pub(crate) fn record_repo(&self, repo: &str, change: impl FnOnce(&mut State)) -> Option<u64> {
        self.record_for(Some(repo), change)
    }

    fn record_for(&self, repo: Option<&str>, change: impl FnOnce(&mut State)) -> Option<u64> {
        let mut sh = self.shared.lock().ok()?;
        // The change sees only the repository it may change (or none), so the store, which
        // re-encodes only the repositories named changed, can never keep a stale one: whatever
        // the change leaves in `repos` is put back and named changed. (Moving the map is O(1).)
        let mut others = std::mem::take(&mut sh.state.repos);
        if let Some((name, r)) = repo.and_then(|n| others.remove_entry(n)) {
            sh.state.repos.insert(name, r);
        }
        change(&mut sh.state);
        let seen = std::mem::replace(&mut sh.state.repos, others);
        for (name, r) in seen {
            sh.changed.insert(name.clone());
            sh.state.repos.insert(name, r);
        }
        if let Some(repo) = repo {
            sh.changed.insert(repo.to_string());
        }
        sh.recorded += 1;
        Some(sh.recorded)
    }

    /// Returns once change `generation` is saved (or saving failed: logged, remembered for exit
    /// 4, never fatal mid-batch; a later commit saves it again).
    pub(crate) fn commit(&self, generation: u64, when: &str) {
        let Ok(mut saved) = self.store.lock() else { return };
        if saved.saved >= generation {
            return;
        }
        // Saved while holding the state, not from a copy of it: a copy per save was the run's
        // largest transient (tens of MB at 10,000 repositories). Jobs that finish meanwhile wait
        // to record, then ride the next save, as they would have anyway.
        let Ok(mut sh) = self.shared.lock() else { return };
        let upto = sh.recorded;
        let result = saved.store.save_changed(&sh.state, &sh.changed);
        if result.is_ok() {
            // A failed save keeps them: the next one must write them again.
            sh.changed.clear();
        }
        drop(sh);
        match result {
            Ok(()) => saved.saved = upto,
            Err(e) => {
                let msg = crate::logging::redact(&format!("state could not be saved {when}: {e}"));
                log::error!("{msg}");
                if let Ok(mut sh) = self.shared.lock() {
                    sh.save_errors.push(msg);
                }
            }
        }
    }

    /// Removes a delivered notification from the outbox; one that failed stays there for the
    /// next run (the caller counts and eventually drops it), and its error is remembered.
    pub(crate) fn delivered(&self, id: &str, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                if let Some(generation) = self.record(|state| state.outbox.retain(|p| p.id != id)) {
                    self.commit(generation, "after a notification");
                }
            }
            Err(e) => {
                let msg = crate::logging::redact(&format!("notification failed: {e}"));
                log::warn!("{msg}");
                if let Ok(mut sh) = self.shared.lock() {
                    sh.notify_errors.push(msg);
                }
            }
        }
    }

    /// True once a save failed (the run will exit 4).
    pub(crate) fn save_failed(&self) -> bool {
        self.shared.lock().map_or(true, |sh| !sh.save_errors.is_empty())
    }

    pub(crate) fn into_shared(self) -> Tally {
        match self.shared.into_inner() {
            Ok(sh) => sh,
            // A panic while recording: the stored state is whatever the last good save wrote.
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateError;
    use std::sync::{Arc, Barrier};

    /// A store that keeps every state it is given, slowly (as an fsync'd write is).
    struct Recording(Arc<Mutex<Vec<State>>>);

    impl StateStore for Recording {
        fn load(&mut self) -> Result<State, StateError> {
            Ok(State::default())
        }
        fn save(&mut self, state: &State) -> Result<(), StateError> {
            std::thread::sleep(std::time::Duration::from_millis(10));
            self.0.lock().expect("saves").push(state.clone());
            Ok(())
        }
        fn location(&self) -> String {
            "memory".into()
        }
    }

    /// Eight jobs finish on eight threads; each records its repository and commits.
    fn finish_eight(together: bool) -> Vec<State> {
        let saves = Arc::new(Mutex::new(Vec::new()));
        let journal = Journal::new(Box::new(Recording(saves.clone())), State::default());
        let barrier = Barrier::new(8);
        std::thread::scope(|s| {
            for i in 0..8 {
                let (journal, saves, barrier) = (&journal, &saves, &barrier);
                s.spawn(move || {
                    let name = format!("r{i}");
                    let generation = journal
                        .record(|st| {
                            st.repos.entry(name.clone()).or_default();
                        })
                        .expect("recorded");
                    if together {
                        barrier.wait();
                    }
                    journal.commit(generation, "in a test");
                    // Durable when commit returns: states only grow, so the last save holds it.
                    let saved = saves.lock().expect("saves");
                    assert!(saved.last().is_some_and(|st| st.repos.contains_key(&name)), "{name} not saved");
                });
            }
        });
        let saved = saves.lock().expect("saves").clone();
        assert_eq!(saved.last().map(|st| st.repos.len()), Some(8), "every outcome in the final save");
        assert!(journal.into_shared().save_errors.is_empty());
        saved
    }

    #[test]
    fn journal_returns_only_once_a_change_is_saved() {
        let saved = finish_eight(false);
        assert!((1..=8).contains(&saved.len()), "{} saves", saved.len());
    }

    #[test]
    fn journal_covers_changes_recorded_together_with_one_save() {
        assert_eq!(finish_eight(true).len(), 1);
    }
}

#[cfg(test)]
mod file_tests {
    //! The journal over the real file store: incremental saves write what a full save would.
    use super::*;
    use crate::state::file::FileStore;
    use crate::state::{LockMode, RepoState, StoreOptions};
    use std::time::Duration;

    #[test]
    fn a_change_sees_only_its_repository_and_every_save_is_a_full_encoding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        let opts = StoreOptions {
            run_id: "t".into(),
            lock_timeout: Duration::from_secs(5),
            http_timeout: Duration::from_secs(5),
        };
        let mut store = FileStore::open(&path, LockMode::Try, &opts).expect("store");
        let mut state = State::default();
        for name in ["a", "b"] {
            state.repos.insert(name.into(), RepoState::default());
        }
        store.save(&state).expect("first save");
        let journal = Journal::new(Box::new(store), state);

        let g = journal
            .record_repo("a", |st| {
                assert_eq!(st.repos.keys().collect::<Vec<_>>(), ["a"], "only its own repository");
                st.repos.entry("a".into()).or_default().last_error = Some("boom".into());
            })
            .expect("recorded");
        journal.commit(g, "in a test");
        // A change that adds a repository where it should not is still saved, not left stale.
        let g = journal
            .record(|st| {
                assert!(st.repos.is_empty(), "no repository");
                st.repos.entry("c".into()).or_default().last_error = Some("new".into());
            })
            .expect("recorded");
        journal.commit(g, "in a test");

        let text = std::fs::read_to_string(&path).expect("saved");
        let tally = journal.into_shared();
        assert!(tally.save_errors.is_empty());
        assert_eq!(text, crate::state::to_json(&tally.state), "byte for byte a full encoding");
        assert_eq!(tally.state.repos.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    }
}

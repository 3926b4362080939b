//! State stores (SPEC §3) and `sentry status`.

mod configmap;
mod file;
mod status;
mod upgrade;

use sentry::model::Sha;
use sentry::state::{Failure, LastRun, RefState, RepoState, State, StoreOptions};
use std::time::Duration;

/// Store options for a test run.
pub fn opts(run_id: &str) -> StoreOptions {
    StoreOptions { run_id: run_id.into(), lock_timeout: Duration::from_secs(5), http_timeout: Duration::from_secs(10) }
}

/// A full commit id made of one repeated hex digit.
pub fn sha(c: char) -> Sha {
    Sha::parse(&c.to_string().repeat(40)).expect("sha")
}

/// A deterministic state that differs (in content and size) for every `n`; `last_run.run_id` is `n`.
pub fn numbered_state(n: u64) -> State {
    let mut s = State {
        last_run: Some(LastRun { run_id: n.to_string(), at: "2026-01-01T00:00:00Z".into() }),
        ..Default::default()
    };
    let hex = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'];
    for r in 0..(n % 7) {
        let mut repo =
            RepoState { last_checked: Some(format!("2026-01-01T00:00:{:02}Z", (n + r) % 60)), ..Default::default() };
        repo.branches.insert(
            "main".into(),
            Box::new(RefState {
                seen: Some(sha(hex[((n + r) % 16) as usize])),
                deployed: Some(sha(hex[(n % 16) as usize])),
                deployed_at: None,
                failure: n.is_multiple_of(3).then(|| Failure {
                    commit: sha('f'),
                    attempts: (n % 4) as u32,
                    error: "x".repeat(((n * 37) % 5000) as usize),
                    at: "t".into(),
                }),
                ..Default::default()
            }),
        );
        s.repos.insert(format!("repo-{r}"), repo);
    }
    s
}

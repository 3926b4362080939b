//! State size (issue 18, BENCHMARKS.md "State v2"): bytes per repository of the file (pretty
//! JSON), the compact JSON and the gzip-compressed ConfigMap copy, for typical shapes.
//!
//!     cargo bench --bench state_size

use sentry::model::{JobStatus, Reason, Sha, Validators};
use sentry::state::{HistoryEntry, RefState, RepoState, State, to_compact_json, to_json};
use std::io::Write;

const N: u64 = 10_000;

fn sha(i: u64, salt: u64) -> Sha {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt;
    let hex: String = (0..40)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x % 16) as u32, 16).unwrap_or('0')
        })
        .collect();
    Sha::parse(&hex).expect("sha")
}

/// 10,000 single-branch repositories, up to date, with `history` entries each and, optionally,
/// a GitHub-style ETag.
fn state(history: usize, etag: bool) -> State {
    let mut s = State::default();
    for i in 0..N {
        let commit = sha(i, 1);
        let mut repo = RepoState { last_checked: Some("2026-11-22T12:00:00Z".into()), ..Default::default() };
        if etag {
            repo.set_validators(Some(&Validators {
                fingerprint: format!("v1-{:016x}", i.wrapping_mul(31)),
                etags: vec![format!("W/\"{}{}\"", sha(i, 7), sha(i, 8))],
                ..Default::default()
            }));
        }
        let entries = (0..history)
            .map(|h| HistoryEntry {
                attempt: 1,
                commit: if h == 0 { commit.clone() } else { sha(i, 100 + h as u64) },
                duration_ms: 1000 + (i * 7 + h as u64) % 9000,
                exit_code: None,
                failed_command: None,
                reason: Reason::Changed,
                run_id: format!("6929{:04x}-1f-{:08x}", h, h * 977),
                started_at: format!("2026-11-{:02}T12:00:01Z", 1 + h % 28),
                status: JobStatus::Succeeded,
            })
            .collect();
        repo.branches.insert(
            "main".into(),
            Box::new(RefState {
                seen: Some(commit.clone()),
                deployed: Some(commit),
                deployed_at: Some("2026-11-22T12:00:03Z".into()),
                history: entries,
                ..Default::default()
            }),
        );
        s.repos.insert(format!("service-{i:05}"), repo);
    }
    s
}

fn gzip(bytes: &[u8]) -> usize {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("write");
    enc.finish().expect("finish").len()
}

fn main() {
    println!("{N} single-branch repositories; bytes per repository (whole document / {N})");
    println!("| shape | file (pretty) | compact JSON | ConfigMap (gzip) | ConfigMap total |");
    println!("|---|---|---|---|---|");
    for (name, history, etag) in [
        ("no history, no ETag", 0, false),
        ("no history, GitHub ETag", 0, true),
        ("1 history entry", 1, false),
        ("20 history entries (full default)", 20, false),
    ] {
        let s = state(history, etag);
        let pretty = to_json(&s).len();
        let compact = to_compact_json(&s);
        let gz = gzip(&compact);
        println!(
            "| {name} | {} | {} | {} | {:.2} MiB |",
            pretty as u64 / N,
            compact.len() as u64 / N,
            gz as u64 / N,
            gz as f64 / 1_048_576.0
        );
    }
}

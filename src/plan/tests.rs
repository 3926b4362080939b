use super::*;
use crate::model::{DeploymentRecord, JobStatus};
use crate::state::RepoState;

fn stamp(now: &str) -> Stamp<'_> {
    Stamp { now, started_at: now, run_id: "run-1", history: 20 }
}
use std::path::Path;

const NOW: &str = "2026-11-22T12:00:00Z";

fn sha(c: char) -> Sha {
    Sha::parse(&c.to_string().repeat(40)).expect("sha")
}

fn heads(pairs: &[(&str, char)]) -> Heads {
    pairs.iter().map(|(b, c)| (b.to_string(), sha(*c))).collect()
}

fn config(extra_global: &str, groups: &str, repos: &[(&str, Option<&str>, &str)]) -> Config {
    let mut y = format!("global:\n  max_attempts: 3\n{extra_global}\ngroups:\n{groups}\nrepositories:\n");
    if groups.trim().is_empty() {
        y = y.replace("groups:\n", "");
    }
    for (name, group, branches) in repos {
        y.push_str(&format!(
            "  - name: {name}\n{}    monitor:\n      repo_url: https://github.com/o/{name}\n      branches: {branches}\n    deploy:\n      qa_repo_url: https://github.com/o/qa\n      commands: [\"true\"]\n",
            group.map(|g| format!("    group: {g}\n")).unwrap_or_default()
        ));
    }
    crate::config::parse(Path::new("t.yaml"), &y, &|_| None).unwrap_or_else(|e| panic!("{e}\n{y}"))
}

fn simple() -> Config {
    config("", "", &[("a", None, "[main, \"dev.*\"]"), ("b", None, "[main]")])
}

fn checked(entries: &[(&str, Heads)]) -> BTreeMap<String, Heads> {
    entries.iter().map(|(n, h)| (n.to_string(), h.clone())).collect()
}

/// A state where `repo`'s branches were all deployed at the given heads.
fn deployed(state: &mut State, repo: &str, pairs: &[(&str, char)]) {
    let rs = state.repos.entry(repo.into()).or_default();
    rs.last_checked = Some("earlier".into());
    for (b, c) in pairs {
        rs.branches.insert(
            b.to_string(),
            Box::new(RefState { seen: Some(sha(*c)), deployed: Some(sha(*c)), ..Default::default() }),
        );
    }
}

fn summary(p: &Plan) -> Vec<(String, String, char, Reason, u32)> {
    p.jobs
        .iter()
        .map(|j| {
            (j.repo.clone(), j.branch.clone(), j.commit.as_str().chars().next().unwrap_or('?'), j.reason, j.attempt)
        })
        .collect()
}

fn job(repo: &str, branch: &str, c: char, reason: Reason, attempt: u32) -> (String, String, char, Reason, u32) {
    (repo.into(), branch.into(), c, reason, attempt)
}

/// The notes about decisions (`simple()`'s `dev.*` matching nothing is a note of its own).
fn decisions(p: &Plan) -> Vec<Note> {
    p.notes.iter().filter(|n| !matches!(n, Note::Unmatched { .. } | Note::UnmatchedTag { .. })).cloned().collect()
}

#[test]
fn a_pattern_that_matches_nothing_is_a_note_on_every_pass() {
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    deployed(&mut s, "b", &[("main", '1')]);
    let h = checked(&[("a", heads(&[("main", '1')])), ("b", heads(&[("main", '1')]))]);
    for _ in 0..2 {
        let p = plan(&c, &h, &s, NOW);
        assert_eq!(p.notes, [Note::Unmatched { repo: "a".into(), pattern: "dev.*".into() }]);
        s = p.state;
    }
}

#[test]
fn first_sight_records_a_baseline_and_deploys_nothing() {
    let c = simple();
    let p = plan(&c, &checked(&[("a", heads(&[("main", '1'), ("dev-x", '2')]))]), &State::default(), NOW);
    assert!(p.jobs.is_empty());
    let rs = &p.state.repos["a"];
    assert_eq!(rs.branches["main"].deployed, Some(sha('1')));
    assert_eq!(rs.branches["dev-x"].deployed, Some(sha('2')));
    assert_eq!(rs.last_checked.as_deref(), Some(NOW));
    assert_eq!(p.notes.len(), 2);
    assert!(!p.state.repos.contains_key("b"), "unchecked repositories are untouched");
}

#[test]
fn first_sight_with_deploy_plans_every_head() {
    let c = config("  on_first_seen: deploy", "", &[("a", None, "[main]")]);
    let p = plan(&c, &checked(&[("a", heads(&[("main", '1')]))]), &State::default(), NOW);
    assert_eq!(summary(&p), [job("a", "main", '1', Reason::FirstSeen, 1)]);
    assert_eq!(p.state.repos["a"].branches["main"].deployed, None, "deployed only when the job succeeds");
    assert_eq!(p.state.repos["a"].branches["main"].seen, Some(sha('1')));
}

#[test]
fn repository_with_empty_but_checked_state_is_not_first_sight() {
    let c = simple();
    let mut s = State::default();
    s.repos.insert("a".into(), RepoState { last_checked: Some("earlier".into()), ..Default::default() });
    let p = plan(&c, &checked(&[("a", heads(&[("main", '1')]))]), &s, NOW);
    assert_eq!(summary(&p), [job("a", "main", '1', Reason::NewBranch, 1)]);
}

#[test]
fn unchanged_heads_plan_nothing() {
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    let p = plan(&c, &checked(&[("a", heads(&[("main", '1')]))]), &s, NOW);
    assert!(p.jobs.is_empty());
    assert!(decisions(&p).is_empty());
}

#[test]
fn moved_head_is_a_change_with_previous_commit() {
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    let p = plan(&c, &checked(&[("a", heads(&[("main", '2')]))]), &s, NOW);
    assert_eq!(summary(&p), [job("a", "main", '2', Reason::Changed, 1)]);
    assert_eq!(p.jobs[0].previous, Some(sha('1')));
    assert_eq!(p.state.repos["a"].branches["main"].seen, Some(sha('2')));
    assert_eq!(p.state.repos["a"].branches["main"].deployed, Some(sha('1')));
}

#[test]
fn force_push_to_an_older_commit_is_a_change() {
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '9')]);
    let p = plan(&c, &checked(&[("a", heads(&[("main", '1')]))]), &s, NOW);
    assert_eq!(summary(&p), [job("a", "main", '1', Reason::Changed, 1)]);
}

#[test]
fn new_branch_in_known_repository_is_a_change() {
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    let p = plan(&c, &checked(&[("a", heads(&[("main", '1'), ("dev-2", '3')]))]), &s, NOW);
    assert_eq!(summary(&p), [job("a", "dev-2", '3', Reason::NewBranch, 1)]);
    assert_eq!(p.jobs[0].previous, None);
}

#[test]
fn vanished_branch_is_kept_for_30_days_then_dropped() {
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1'), ("dev-old", '2')]);
    let p = plan(&c, &checked(&[("a", heads(&[("main", '1')]))]), &s, NOW);
    assert!(p.jobs.is_empty());
    let kept = &p.state.repos["a"].branches["dev-old"];
    assert_eq!(kept.gone_since.as_deref(), Some(NOW), "kept, marked");
    assert_eq!(decisions(&p), [Note::Gone { repo: "a".into(), branch: "dev-old".into() }]);
    // 29 days later: still kept; 30 days later: dropped.
    let later = plan(&c, &checked(&[("a", heads(&[("main", '1')]))]), &p.state, "2026-12-21T12:00:00Z");
    assert!(later.state.repos["a"].branches.contains_key("dev-old"));
    assert!(decisions(&later).is_empty(), "{:?}", later.notes);
    let month = plan(&c, &checked(&[("a", heads(&[("main", '1')]))]), &p.state, "2026-12-22T12:00:00Z");
    assert!(!month.state.repos["a"].branches.contains_key("dev-old"));
    assert_eq!(decisions(&month), [Note::Dropped { repo: "a".into(), branch: "dev-old".into() }]);
}

#[test]
fn a_branch_that_returns_at_its_deployed_head_is_no_change() {
    // The pattern typo story: `branches: [mian]` lists nothing, the fix lists main again.
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    let typo = plan(&c, &checked(&[("a", heads(&[]))]), &s, NOW);
    assert!(typo.jobs.is_empty());
    assert!(typo.notes.contains(&Note::EmptyListing { repo: "a".into() }), "{:?}", typo.notes);
    assert!(typo.state.repos["a"].branches["main"].gone_since.is_some());
    let fixed = plan(&c, &checked(&[("a", heads(&[("main", '1')]))]), &typo.state, NOW);
    assert!(fixed.jobs.is_empty(), "no redeploy: {:?}", fixed.jobs);
    assert_eq!(fixed.state.repos["a"].branches["main"].gone_since, None);
    // Back with another head: an ordinary change, from the deployed commit.
    let moved = plan(&c, &checked(&[("a", heads(&[("main", '2')]))]), &typo.state, NOW);
    assert_eq!(summary(&moved), [job("a", "main", '2', Reason::Changed, 1)]);
}

#[test]
fn a_rollback_pins_the_branch_until_its_head_moves() {
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '2')]);
    let p = plan(&c, &checked(&[("a", heads(&[("main", '2')]))]), &s, NOW);
    let mut s = p.state;
    let back = Job {
        tag: false,
        repo: "a".into(),
        group: None,
        branch: "main".into(),
        commit: sha('1'),
        previous: Some(sha('2')),
        reason: Reason::Rollback,
        attempt: 1,
    };
    record(&mut s, &DeploymentRecord::planned(&back, JobStatus::Succeeded, None), &stamp(NOW));
    let bs = &s.repos["a"].branches["main"];
    assert_eq!((bs.deployed.clone(), bs.pinned_at.clone()), (Some(sha('1')), Some(sha('2'))));
    assert_eq!(bs.history[0].reason, Reason::Rollback);
    // Same head: pinned, no job.
    let p = plan(&c, &checked(&[("a", heads(&[("main", '2')]))]), &s, NOW);
    assert!(p.jobs.is_empty(), "{:?}", p.jobs);
    assert!(matches!(decisions(&p).as_slice(), [Note::Pinned { .. }]), "{:?}", p.notes);
    // The head moves: the pin is gone and the new head deploys.
    let p = plan(&c, &checked(&[("a", heads(&[("main", '3')]))]), &s, NOW);
    assert_eq!(summary(&p), [job("a", "main", '3', Reason::Changed, 1)]);
    assert_eq!(p.state.repos["a"].branches["main"].pinned_at, None);
}

#[test]
fn history_keeps_the_newest_entries_first() {
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    for (i, ch) in ['2', '3', '4'].into_iter().enumerate() {
        let p = plan(&c, &checked(&[("a", heads(&[("main", ch)]))]), &s, NOW);
        s = p.state;
        let status = if i == 1 { JobStatus::Failed } else { JobStatus::Succeeded };
        let stamp = Stamp { history: 2, ..stamp(NOW) };
        record(&mut s, &DeploymentRecord::planned(&p.jobs[0], status, None), &stamp);
    }
    let h = &s.repos["a"].branches["main"].history;
    assert_eq!(
        h.iter().map(|e| (e.commit.clone(), e.status)).collect::<Vec<_>>(),
        [(sha('4'), JobStatus::Succeeded), (sha('3'), JobStatus::Failed)]
    );
}

#[test]
fn failed_commit_is_retried_then_parked() {
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    let h = checked(&[("a", heads(&[("main", '2')]))]);
    for attempt in 1..=3 {
        let p = plan(&c, &h, &s, NOW);
        let reason = if attempt == 1 { Reason::Changed } else { Reason::Retry };
        assert_eq!(summary(&p), [job("a", "main", '2', reason, attempt)], "attempt {attempt}");
        s = p.state;
        record(&mut s, &DeploymentRecord::planned(&p.jobs[0], JobStatus::Failed, Some("exit 1".into())), &stamp(NOW));
        assert_eq!(s.repos["a"].branches["main"].failure.as_ref().map(|f| f.attempts), Some(attempt));
    }
    let p = plan(&c, &h, &s, NOW);
    assert!(p.jobs.is_empty(), "parked after max_attempts");
    assert!(matches!(&decisions(&p)[..], [Note::Parked { attempts: 3, .. }]));
    // The branch moves: deployed again from attempt 1.
    let p = plan(&c, &checked(&[("a", heads(&[("main", '3')]))]), &p.state, NOW);
    assert_eq!(summary(&p), [job("a", "main", '3', Reason::Changed, 1)]);
}

#[test]
fn success_clears_the_failure() {
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    let p = plan(&c, &checked(&[("a", heads(&[("main", '2')]))]), &s, NOW);
    let mut s = p.state;
    record(&mut s, &DeploymentRecord::planned(&p.jobs[0], JobStatus::Failed, Some("boom".into())), &stamp(NOW));
    let p = plan(&c, &checked(&[("a", heads(&[("main", '2')]))]), &s, NOW);
    let mut s = p.state;
    record(&mut s, &DeploymentRecord::planned(&p.jobs[0], JobStatus::Succeeded, None), &stamp("later"));
    let bs = &s.repos["a"].branches["main"];
    assert_eq!(bs.deployed, Some(sha('2')));
    assert_eq!(bs.deployed_at.as_deref(), Some("later"));
    assert_eq!(bs.failure, None);
    assert!(plan(&c, &checked(&[("a", heads(&[("main", '2')]))]), &s, NOW).jobs.is_empty());
}

#[test]
fn skipped_job_changes_nothing_and_is_planned_again() {
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    let p = plan(&c, &checked(&[("a", heads(&[("main", '2')]))]), &s, NOW);
    let mut after = p.state.clone();
    record(&mut after, &DeploymentRecord::planned(&p.jobs[0], JobStatus::Skipped, None), &stamp(NOW));
    assert_eq!(after, p.state);
    assert_eq!(plan(&c, &checked(&[("a", heads(&[("main", '2')]))]), &after, NOW).jobs.len(), 1);
}

#[test]
fn reverting_to_the_deployed_commit_clears_a_stale_failure() {
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    let p = plan(&c, &checked(&[("a", heads(&[("main", '2')]))]), &s, NOW);
    let mut s = p.state;
    record(&mut s, &DeploymentRecord::planned(&p.jobs[0], JobStatus::Failed, Some("boom".into())), &stamp(NOW));
    let p = plan(&c, &checked(&[("a", heads(&[("main", '1')]))]), &s, NOW);
    assert!(p.jobs.is_empty());
    assert_eq!(p.state.repos["a"].branches["main"].failure, None);
}

#[test]
fn unchecked_repository_keeps_its_state() {
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    deployed(&mut s, "b", &[("main", '5')]);
    let p = plan(&c, &checked(&[("a", heads(&[("main", '2')]))]), &s, NOW);
    assert_eq!(p.state.repos["b"], s.repos["b"]);
    assert_eq!(p.jobs.len(), 1);
}

#[test]
fn two_changed_branches_give_two_jobs_in_order() {
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1'), ("dev", '1')]);
    deployed(&mut s, "b", &[("main", '1')]);
    let h = checked(&[("a", heads(&[("main", '2'), ("dev", '3')])), ("b", heads(&[("main", '4')]))]);
    let p = plan(&c, &h, &s, NOW);
    assert_eq!(
        summary(&p),
        [
            job("a", "dev", '3', Reason::Changed, 1),
            job("a", "main", '2', Reason::Changed, 1),
            job("b", "main", '4', Reason::Changed, 1)
        ]
    );
}

fn grouped(trigger: &str) -> Config {
    let groups = format!("  g:\n    execution_strategy: sequential\n    trigger: {trigger}\n");
    config(
        "",
        &groups,
        &[("x", Some("g"), "[main]"), ("y", Some("g"), "[\"release/.*\", main]"), ("z", None, "[main]")],
    )
}

#[test]
fn trigger_all_deploys_every_member_once() {
    let c = grouped("all");
    let mut s = State::default();
    deployed(&mut s, "x", &[("main", '1')]);
    deployed(&mut s, "y", &[("main", '1'), ("release/1", '1'), ("release/2", '1')]);
    deployed(&mut s, "z", &[("main", '1')]);
    let h = checked(&[
        ("x", heads(&[("main", '1')])),
        ("y", heads(&[("main", '1'), ("release/1", '1'), ("release/2", '2')])),
        ("z", heads(&[("main", '1')])),
    ]);
    let p = plan(&c, &h, &s, NOW);
    // y changed; x joins with its first matching branch; y is not deployed twice; z is ungrouped.
    assert_eq!(
        summary(&p),
        [job("x", "main", '1', Reason::GroupTrigger, 1), job("y", "release/2", '2', Reason::Changed, 1)]
    );
    assert_eq!(p.jobs[0].previous, Some(sha('1')));
}

#[test]
fn trigger_all_member_uses_first_pattern_that_matches() {
    let c = grouped("all");
    let mut s = State::default();
    deployed(&mut s, "x", &[("main", '1')]);
    deployed(&mut s, "y", &[("main", '1'), ("release/1", '1')]);
    let h = checked(&[("x", heads(&[("main", '2')])), ("y", heads(&[("main", '1'), ("release/1", '1')]))]);
    let p = plan(&c, &h, &s, NOW);
    assert_eq!(
        summary(&p),
        [job("x", "main", '2', Reason::Changed, 1), job("y", "release/1", '1', Reason::GroupTrigger, 1)]
    );
}

#[test]
fn trigger_changed_deploys_only_the_changed_member() {
    let c = grouped("changed");
    let mut s = State::default();
    deployed(&mut s, "x", &[("main", '1')]);
    deployed(&mut s, "y", &[("main", '1')]);
    let h = checked(&[("x", heads(&[("main", '2')])), ("y", heads(&[("main", '1')]))]);
    assert_eq!(summary(&plan(&c, &h, &s, NOW)), [job("x", "main", '2', Reason::Changed, 1)]);
}

#[test]
fn trigger_all_skips_members_that_were_not_checked() {
    let c = grouped("all");
    let mut s = State::default();
    deployed(&mut s, "x", &[("main", '1')]);
    deployed(&mut s, "y", &[("main", '1')]);
    let h = checked(&[("x", heads(&[("main", '2')]))]);
    assert_eq!(summary(&plan(&c, &h, &s, NOW)), [job("x", "main", '2', Reason::Changed, 1)]);
}

#[test]
fn baseline_does_not_trigger_the_group() {
    let c = grouped("all");
    let h = checked(&[("x", heads(&[("main", '1')])), ("y", heads(&[("main", '1')]))]);
    assert!(plan(&c, &h, &State::default(), NOW).jobs.is_empty());
}

#[test]
fn manual_picks_first_existing_branch_and_counts_attempts() {
    let c = config("", "", &[("a", None, "[\"release/.*\", main]")]);
    let repo = &c.repositories[0];
    let h = heads(&[("main", '1'), ("release/2", '2')]);
    let mut s = State::default();
    let j = manual(repo, &h, None, None, &s).expect("job");
    assert_eq!((j.branch.as_str(), j.commit.clone(), j.reason, j.attempt), ("release/2", sha('2'), Reason::Manual, 1));
    let j = manual(repo, &h, Some("main"), Some(&sha('7')), &s).expect("job");
    assert_eq!((j.branch.as_str(), j.commit.clone()), ("main", sha('7')));
    record(&mut s, &DeploymentRecord::planned(&j, JobStatus::Failed, Some("x".into())), &stamp(NOW));
    assert_eq!(manual(repo, &h, Some("main"), Some(&sha('7')), &s).expect("job").attempt, 2);
    assert!(manual(repo, &h, Some("feature"), None, &s).unwrap_err().contains("not monitored"));
    assert!(manual(repo, &h, Some("release/9"), None, &s).unwrap_err().contains("does not exist"));
    assert!(manual(repo, &Heads::new(), None, None, &s).unwrap_err().contains("no branch"));
}

#[test]
fn manual_success_clears_a_parked_failure() {
    let c = simple();
    let repo = &c.repositories[0];
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    s.repos.get_mut("a").expect("a").branches.get_mut("main").expect("main").failure =
        Some(Failure { commit: sha('2'), attempts: 3, error: "x".into(), at: NOW.into() });
    let j = manual(repo, &heads(&[("main", '2')]), None, None, &s).expect("job");
    assert_eq!(j.attempt, 4);
    record(&mut s, &DeploymentRecord::planned(&j, JobStatus::Succeeded, None), &stamp(NOW));
    assert_eq!(s.repos["a"].branches["main"].failure, None);
    assert_eq!(s.repos["a"].branches["main"].deployed, Some(sha('2')));
}

fn filtered_config(paths: &str, ignore: &str) -> Config {
    let y = format!(
        "repositories:\n  - name: a\n    monitor:\n      repo_url: https://github.com/o/a\n      branches: [main]\n{paths}{ignore}    deploy:\n      qa_repo_url: https://github.com/o/qa\n      commands: [\"true\"]\n"
    );
    crate::config::parse(Path::new("t.yaml"), &y, &|_| None).unwrap_or_else(|e| panic!("{e}\n{y}"))
}

fn examined(files: Option<&[&str]>, message: &str) -> Examined {
    Examined {
        files: files.map(|f| f.iter().map(|s| s.to_string()).collect()),
        message: Some(message.into()),
        why_unknown: None,
    }
}

#[test]
fn paths_decide_whether_a_change_counts() {
    let c = filtered_config("      paths: [\"services/a/**\", \"lib/*.rs\"]\n", "      ignore_paths: [\"**/*.md\"]\n");
    let f = &c.repositories[0].monitor.filter;
    let markers = c.global.skip_markers.clone();
    let v = |files: &[&str]| verdict(f, &markers, &examined(Some(files), "change"));
    assert_eq!(v(&["services/a/main.go"]), None);
    assert_eq!(v(&["services/b/main.go"]), Some(Reason::Paths));
    // `*` stays within one segment; `**` crosses them.
    assert_eq!(v(&["lib/x.rs"]), None);
    assert_eq!(v(&["lib/deep/x.rs"]), Some(Reason::Paths));
    // Ignored files never count, even under a watched path.
    assert_eq!(v(&["services/a/README.md", "docs/x.md"]), Some(Reason::Paths));
    assert_eq!(v(&["services/a/README.md", "services/a/x.go"]), None);
    assert_eq!(v(&[]), Some(Reason::Paths));
    // Files that cannot be told are never filtered by paths.
    assert_eq!(verdict(f, &markers, &examined(None, "change")), None);
    // A skip marker filters whatever the files.
    assert_eq!(verdict(f, &markers, &examined(None, "docs [skip deploy]")), Some(Reason::SkipMarker));
    assert_eq!(
        verdict(f, &markers, &examined(Some(&["services/a/x"]), "x\n\n[deploy skip]")),
        Some(Reason::SkipMarker)
    );
    assert_eq!(verdict(f, &[], &examined(Some(&["services/a/x"]), "[skip deploy]")), None);
}

#[test]
fn ignore_paths_alone_count_everything_else() {
    let c = filtered_config("", "      ignore_paths: [\"**/*.md\", \"docs/**\"]\n");
    let f = &c.repositories[0].monitor.filter;
    assert!(f.is_active());
    assert!(!f.counts("README.md") && !f.counts("a/b/c.md") && !f.counts("docs/x.png"));
    assert!(f.counts("src/main.rs"));
    assert!(!filtered_config("", "").repositories[0].monitor.filter.is_active());
}

#[test]
fn a_filtered_head_is_the_next_base_and_not_a_change_again() {
    let c = filtered_config("      paths: [\"svc/**\"]\n", "");
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    let p = plan(&c, &checked(&[("a", heads(&[("main", '2')]))]), &s, NOW);
    assert_eq!(summary(&p), [job("a", "main", '2', Reason::Changed, 1)]);
    assert!(needs_examining(&c.repositories[0], &p.jobs[0], &[]));
    assert_eq!(compare_base(&s, &p.jobs[0]), Some(sha('1')));
    let mut next = p.state.clone();
    record_filtered(&mut next, &p.jobs[0], Reason::Paths);
    assert_eq!(next.repos["a"].filtered.get("paths"), Some(&1));
    // Filtered: the same head is no change; the next head compares from it, while the
    // previous commit of the job stays the last one deployed.
    let again = plan(&c, &checked(&[("a", heads(&[("main", '2')]))]), &next, NOW);
    assert!(again.jobs.is_empty());
    let moved = plan(&c, &checked(&[("a", heads(&[("main", '3')]))]), &next, NOW);
    assert_eq!(moved.jobs[0].previous, Some(sha('1')));
    assert_eq!(compare_base(&next, &moved.jobs[0]), Some(sha('2')));
    // A deployment clears the mark.
    let rec = DeploymentRecord::planned(&moved.jobs[0], JobStatus::Succeeded, None);
    let mut done = moved.state.clone();
    record(&mut done, &rec, &stamp(NOW));
    assert_eq!(done.repos["a"].branches["main"].filtered, None);
    // The state keeps it across a save.
    let text = serde_json::to_string(&next).expect("json");
    let back: State = serde_json::from_str(&text).expect("read back");
    assert_eq!(back.repos["a"].branches["main"].filtered, Some(sha('2')));
}

#[test]
fn a_moved_tag_is_compared_and_filtered_on_its_own_record_not_a_branch_of_its_name() {
    let c = filtered_config("      paths: [\"svc/**\"]\n", "");
    let mut s = State::default();
    deployed(&mut s, "a", &[("rel", '1')]);
    let rs = s.repos.entry("a".into()).or_default();
    rs.tags.insert(
        "rel".into(),
        Box::new(RefState { seen: Some(sha('4')), deployed: Some(sha('4')), ..Default::default() }),
    );
    let tag = Job {
        tag: true,
        repo: "a".into(),
        group: None,
        branch: "rel".into(),
        commit: sha('5'),
        previous: Some(sha('4')),
        reason: Reason::Changed,
        attempt: 1,
    };
    assert!(needs_examining(&c.repositories[0], &tag, &[]));
    assert_eq!(compare_base(&s, &tag), Some(sha('4')), "from the tag's last commit, not the branch's");
    record_filtered(&mut s, &tag, Reason::Paths);
    let rs = &s.repos["a"];
    assert_eq!(rs.tags["rel"].filtered, Some(sha('5')));
    assert_eq!(rs.branches["rel"].filtered, None, "the branch of the same name is untouched");
    assert_eq!(rs.branches["rel"].seen, Some(sha('1')));
}

#[test]
fn new_branches_retries_and_unfiltered_repositories_without_skip_markers_are_not_examined() {
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    let p = plan(&c, &checked(&[("a", heads(&[("main", '2')]))]), &s, NOW);
    assert!(!needs_examining(&c.repositories[0], &p.jobs[0], &[]));
    assert!(!needs_examining(&c.repositories[0], &p.jobs[0], &[String::new()]), "an empty marker is none");
    // Skip markers apply to every repository (SPEC §2): its moved heads are examined too.
    assert!(needs_examining(&c.repositories[0], &p.jobs[0], &["[skip deploy]".to_string()]));
    let f = filtered_config("      paths: [\"svc/**\"]\n", "");
    let new = plan(&f, &checked(&[("a", heads(&[("main", '1'), ("x", '2')]))]), &s, NOW);
    let markers = ["[skip deploy]".to_string()];
    assert!(new.jobs.iter().all(|j| !needs_examining(&f.repositories[0], j, &markers) || j.branch == "main"));
}

fn tag_config(semver: &str) -> Config {
    let y = format!(
        "repositories:\n  - name: a\n    monitor:\n      repo_url: https://github.com/o/a\n      branches: [main]\n      tags: [\"v.*\"]\n{semver}    deploy:\n      qa_repo_url: https://github.com/o/qa\n      commands: [\"true\"]\n"
    );
    crate::config::parse(Path::new("t.yaml"), &y, &|_| None).unwrap_or_else(|e| panic!("{e}\n{y}"))
}

fn tag_jobs(p: &Plan) -> Vec<(String, char, Reason)> {
    p.jobs
        .iter()
        .filter(|j| j.tag)
        .map(|j| (j.branch.clone(), j.commit.as_str().chars().next().unwrap_or('?'), j.reason))
        .collect()
}

#[test]
fn tags_first_listed_are_a_baseline_then_new_and_moved_tags_deploy() {
    let c = tag_config("");
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    let b = checked(&[("a", heads(&[("main", '1')]))]);
    let none = plan_with_tags(&c, &b, &checked(&[("a", Heads::new())]), s.clone(), NOW);
    assert_eq!(none.notes, [Note::UnmatchedTag { repo: "a".into(), pattern: "v.*".into() }]);
    let p = plan_with_tags(&c, &b, &checked(&[("a", heads(&[("v1.0.0", '1')]))]), s.clone(), NOW);
    assert!(p.jobs.is_empty(), "{:?}", p.jobs);
    assert!(!p.notes.iter().any(|n| matches!(n, Note::UnmatchedTag { .. })), "{:?}", p.notes);
    assert!(p.state.repos["a"].tags_checked);
    let p =
        plan_with_tags(&c, &b, &checked(&[("a", heads(&[("v1.0.0", '1'), ("v1.1.0", '2')]))]), p.state.clone(), NOW);
    assert_eq!(tag_jobs(&p), [("v1.1.0".to_string(), '2', Reason::NewTag)]);
    assert_eq!(p.jobs[0].full_ref(), "refs/tags/v1.1.0");
    // Recorded in the tag's own state, apart from the branches.
    let mut s = p.state.clone();
    record(&mut s, &DeploymentRecord::planned(&p.jobs[0], JobStatus::Succeeded, None), &stamp(NOW));
    assert_eq!(s.repos["a"].tags["v1.1.0"].deployed, Some(sha('2')));
    assert!(!s.repos["a"].branches.contains_key("v1.1.0"));
    // A moved tag is a change.
    let p = plan_with_tags(&c, &b, &checked(&[("a", heads(&[("v1.0.0", '1'), ("v1.1.0", '3')]))]), s.clone(), NOW);
    assert_eq!(tag_jobs(&p), [("v1.1.0".to_string(), '3', Reason::Changed)]);
}

#[test]
fn semver_deploys_only_the_highest_tag_in_range_once() {
    let c = tag_config("      semver: \">=1.0.0, <2.0.0\"\n");
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    let b = checked(&[("a", heads(&[("main", '1')]))]);
    let first = plan_with_tags(&c, &b, &checked(&[("a", heads(&[("v1.0.0", '1')]))]), s.clone(), NOW);
    assert!(first.jobs.is_empty());
    let t = heads(&[
        ("v1.0.0", '1'),
        ("v1.2.0", '2'),
        ("v1.10.0", '3'),
        ("v2.0.0", '4'),
        ("v1.11.0-rc.1", '5'),
        ("vjunk", '6'),
    ]);
    let p = plan_with_tags(&c, &b, &checked(&[("a", t.clone())]), first.state.clone(), NOW);
    assert_eq!(tag_jobs(&p), [("v1.10.0".to_string(), '3', Reason::NewTag)]);
    let mut s = p.state.clone();
    record(&mut s, &DeploymentRecord::planned(&p.jobs[0], JobStatus::Succeeded, None), &stamp(NOW));
    assert!(plan_with_tags(&c, &b, &checked(&[("a", t)]), s.clone(), NOW).jobs.is_empty());
    // A range that names a pre-release admits it.
    let pre = tag_config("      semver: \">=1.11.0-rc.0, <2.0.0\"\n");
    let picked = highest_in_range(&pre.repositories[0], &heads(&[("v1.10.0", '3'), ("v1.11.0-rc.1", '5')]));
    assert_eq!(picked.as_deref(), Some("v1.11.0-rc.1"));
    assert_eq!(highest_in_range(&c.repositories[0], &heads(&[("v1.11.0-rc.1", '5')])), None);
}

#[test]
fn semver_without_tags_is_refused() {
    let y = "repositories:\n  - name: a\n    monitor:\n      repo_url: https://github.com/o/a\n      branches: [main]\n      semver: \"^1\"\n    deploy:\n      qa_repo_url: https://github.com/o/qa\n      commands: [\"true\"]\n";
    let e = crate::config::parse(Path::new("t.yaml"), y, &|_| None).expect_err("refused").to_string();
    assert!(e.contains("monitor.semver") && e.contains("tags"), "{e}");
}

#[test]
fn counters_and_attempts_read_from_the_state_saturate() {
    // A state file may hold anything a type allows: adding to its numbers never overflows.
    let c = simple();
    let mut s = State::default();
    deployed(&mut s, "a", &[("main", '1')]);
    let rs = s.repos.get_mut("a").expect("a");
    rs.deployments.insert("failed".into(), u64::MAX);
    let failure = crate::state::Failure { at: NOW.into(), attempts: u32::MAX, commit: sha('2'), error: "x".into() };
    rs.branches.get_mut("main").expect("main").failure = Some(failure);
    // Parked (u32::MAX attempts is past any max_attempts), not retried with attempt + 1.
    let p = plan(&c, &checked(&[("a", heads(&[("main", '2')]))]), &s, NOW);
    assert!(p.jobs.is_empty() && matches!(&decisions(&p)[..], [Note::Parked { attempts: u32::MAX, .. }]));
    let job = Job {
        tag: false,
        repo: "a".into(),
        group: None,
        branch: "main".into(),
        commit: sha('2'),
        previous: Some(sha('1')),
        reason: Reason::Manual,
        attempt: 1,
    };
    record(&mut s, &DeploymentRecord::planned(&job, JobStatus::Failed, None), &stamp(NOW));
    assert_eq!(s.repos["a"].deployments["failed"], u64::MAX);
}

//! Planning: a pure function from configuration, heads and state to jobs and the next state.
//!
//! No I/O happens here, so every rule of SPEC §4 step 4 is unit-tested below: baselines,
//! new branches, changes (force-pushes included), retries, parking, deleted branches and
//! `trigger: all` groups. Recording a deployment's outcome in the state is here too.

use crate::config::{Config, OnFirstSeen, PathFilter, Repository, Trigger};
use crate::model::{DeploymentRecord, Examined, Heads, Job, JobStatus, Reason, Sha};
use crate::state::{Failure, HistoryEntry, RefState, State};
use std::collections::{BTreeMap, BTreeSet};

/// Something the plan decided that is not a job but deserves a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // The fields name a repository, a branch and a commit; nothing to add.
pub enum Note {
    /// A repository seen for the first time: its heads were recorded as deployed.
    Baseline { repo: String, branch: String, head: Sha },
    /// A branch stopped being listed (or matching): its record is kept for 30 days.
    Gone { repo: String, branch: String },
    /// A branch gone for 30 days was dropped from the state.
    Dropped { repo: String, branch: String },
    /// A repository that had branches listed none: a forge hiccup or a pattern typo.
    EmptyListing { repo: String },
    /// A branch name longer than the state keeps was ignored.
    NameTooLong { repo: String, bytes: usize },
    /// A commit that failed `max_attempts` times is not retried until the ref moves (`branch`
    /// names a tag when `tag` is set).
    Parked { repo: String, branch: String, tag: bool, commit: Sha, attempts: u32 },
    /// A rolled-back branch stays at its rollback until its head moves or `deploy` is run.
    Pinned { repo: String, branch: String, head: Sha },
    /// A `branches` pattern that matches no branch of a repository checked this pass: probably a
    /// typo, and silent otherwise (said on every pass while it lasts).
    Unmatched { repo: String, pattern: String },
    /// A `tags` pattern that matches no tag of a repository checked this pass.
    UnmatchedTag { repo: String, pattern: String },
}

/// The outcome of planning one pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Jobs, in configuration order (repository, then branch).
    pub jobs: Vec<Job>,
    /// The state after the check phase: heads seen, baselines recorded, vanished branches dropped.
    pub state: State,
    /// Decisions worth a log line.
    pub notes: Vec<Note>,
}

/// Plans a pass. `checked` holds the matching heads of every repository checked successfully;
/// repositories absent from it (not selected, or failed) are left exactly as they were.
#[cfg(test)]
pub fn plan(config: &Config, checked: &BTreeMap<String, Heads>, state: &State, now: &str) -> Plan {
    plan_with_tags(config, checked, &BTreeMap::new(), state.clone(), now)
}

/// [`plan`] with the matching tags of the repositories that monitor tags (SPEC §4 "tags"): a
/// new or moved tag is a change; with `semver`, only the highest tag in range is.
///
/// The state is taken, changed in place and returned in the plan: a copy of it would be tens
/// of MB at 10,000 repositories, the largest cost of a pass's memory (issue 21).
pub fn plan_with_tags(
    config: &Config,
    checked: &BTreeMap<String, Heads>,
    tags: &BTreeMap<String, Heads>,
    state: State,
    now: &str,
) -> Plan {
    let mut next = state;
    let mut jobs = Vec::new();
    let mut notes = Vec::new();
    let now_t = crate::time::parse_rfc3339(now);
    for repo in &config.repositories {
        let Some(heads) = checked.get(&repo.name) else { continue };
        // What the repository was before this pass changes it.
        let previous = next.repos.get(&repo.name);
        let has_baseline = previous.is_some_and(|r| r.last_checked.is_some() || !r.branches.is_empty());
        let tag_baseline = previous.is_some_and(|r| r.tags_checked);
        for (text, pattern) in repo.monitor.patterns.iter().zip(&repo.monitor.branches) {
            if !heads.keys().any(|b| pattern.is_match(b)) {
                notes.push(Note::Unmatched { repo: repo.name.clone(), pattern: text.clone() });
            }
        }
        let rs = next.repos.entry(repo.name.clone()).or_default();
        rs.last_checked = Some(now.to_string());
        rs.last_error = None;
        let listed_before = rs.branches.values().any(|b| b.gone_since.is_none());
        if heads.is_empty() && listed_before {
            notes.push(Note::EmptyListing { repo: repo.name.clone() });
        }

        let side = Refs { repo, tag: false, heads, has_baseline };
        plan_refs(config, side, &|_| true, &mut rs.branches, now, now_t, &mut jobs, &mut notes);
        if !repo.monitor.tags.is_empty()
            && let Some(tag_heads) = tags.get(&repo.name)
        {
            for (text, pattern) in repo.monitor.tag_patterns.iter().zip(&repo.monitor.tags) {
                if !tag_heads.keys().any(|t| pattern.is_match(t)) {
                    notes.push(Note::UnmatchedTag { repo: repo.name.clone(), pattern: text.clone() });
                }
            }
            let chosen = highest_in_range(repo, tag_heads);
            let eligible = |t: &str| repo.monitor.semver.is_none() || chosen.as_deref() == Some(t);
            let side = Refs { repo, tag: true, heads: tag_heads, has_baseline: tag_baseline };
            plan_refs(config, side, &eligible, &mut rs.tags, now, now_t, &mut jobs, &mut notes);
            rs.tags_checked = true;
        }
    }
    add_group_triggers(config, checked, &next, &mut jobs);
    Plan { jobs, state: next, notes }
}

/// What [`plan_refs`] works on: one repository's branches or tags.
struct Refs<'a> {
    repo: &'a Repository,
    /// Tags, not branches.
    tag: bool,
    /// Matching refs listed now, and their heads.
    heads: &'a Heads,
    /// The repository (for tags: its tags) was listed before; else the heads are a baseline.
    has_baseline: bool,
}

/// Plans one repository's branches or tags: gone refs kept 30 days, baselines, new refs,
/// changes, retries, parking and pins. Only refs `eligible` says yes to can have jobs.
#[allow(clippy::too_many_arguments)] // One private step of `plan`: a struct would only rename them.
fn plan_refs(
    config: &Config,
    side: Refs<'_>,
    eligible: &dyn Fn(&str) -> bool,
    refs: &mut crate::state::Refs,
    now: &str,
    now_t: Option<std::time::SystemTime>,
    jobs: &mut Vec<Job>,
    notes: &mut Vec<Note>,
) {
    let Refs { repo, tag, heads, has_baseline } = side;
    // Nothing is forgotten by accident (SPEC §3): a branch that is not listed keeps its
    // record, marked, for 30 days; if it comes back at its deployed head, nothing happens.
    let mut drop = Vec::new();
    for (branch, bs) in refs.iter_mut().filter(|(b, _)| !heads.contains_key(b)) {
        match &bs.gone_since {
            None => {
                bs.gone_since = Some(now.to_string());
                notes.push(Note::Gone { repo: repo.name.clone(), branch: branch.clone() });
            }
            Some(since) => {
                let expired = match (crate::time::parse_rfc3339(since), now_t) {
                    (Some(since), Some(now)) => now.duration_since(since).is_ok_and(|d| d >= crate::state::GONE_KEEP),
                    // An unreadable mark is restarted rather than trusted or dropped.
                    _ => {
                        bs.gone_since = Some(now.to_string());
                        false
                    }
                };
                if expired {
                    drop.push(branch.clone());
                }
            }
        }
    }
    for branch in drop {
        refs.remove(&branch);
        notes.push(Note::Dropped { repo: repo.name.clone(), branch });
    }

    for (branch, head) in heads {
        if branch.len() > crate::state::MAX_REF_BYTES {
            notes.push(Note::NameTooLong { repo: repo.name.clone(), bytes: branch.len() });
            continue;
        }
        let job = |reason, previous: Option<&Sha>, attempt| Job {
            repo: repo.name.clone(),
            group: repo.group.clone(),
            branch: branch.clone(),
            tag,
            commit: head.clone(),
            previous: previous.cloned(),
            reason,
            attempt,
        };
        let bs = refs.entry(branch.clone()).or_default();
        let existed = bs.seen.is_some() || bs.deployed.is_some() || bs.failure.is_some();
        bs.seen = Some(head.clone());
        bs.gone_since = None;
        if !eligible(branch) {
            // Listed and matching, but not a candidate (a tag below the highest in range):
            // seen, never deployed on its own.
            if !has_baseline {
                bs.deployed = Some(head.clone());
                bs.deployed_at = Some(now.to_string());
                bs.baseline = true;
            }
            continue;
        }
        if !has_baseline {
            match config.global.on_first_seen {
                OnFirstSeen::Record => {
                    bs.deployed = Some(head.clone());
                    bs.deployed_at = Some(now.to_string());
                    bs.baseline = true;
                    notes.push(Note::Baseline { repo: repo.name.clone(), branch: branch.clone(), head: head.clone() });
                }
                OnFirstSeen::Deploy => jobs.push(job(Reason::FirstSeen, None, 1)),
            }
            continue;
        }
        if !existed {
            jobs.push(job(if tag { Reason::NewTag } else { Reason::NewBranch }, None, 1));
            continue;
        }
        match &bs.pinned_at {
            Some(pin) if pin == head => {
                notes.push(Note::Pinned { repo: repo.name.clone(), branch: branch.clone(), head: head.clone() });
                continue;
            }
            // The head moved on from where the rollback pinned it: back to normal.
            Some(_) => bs.pinned_at = None,
            None => {}
        }
        if bs.deployed.as_ref() == Some(head) {
            // Back at the deployed commit (e.g. a revert force-push): an older failure is moot.
            bs.failure = None;
            continue;
        }
        if bs.filtered.as_ref() == Some(head) {
            // Filtered when it was new (SPEC §4 "filters"): seen, and not a change.
            continue;
        }
        match &bs.failure {
            Some(f) if &f.commit == head && f.attempts >= config.global.max_attempts => {
                notes.push(Note::Parked {
                    repo: repo.name.clone(),
                    branch: branch.clone(),
                    tag,
                    commit: head.clone(),
                    attempts: f.attempts,
                });
            }
            Some(f) if &f.commit == head => {
                jobs.push(job(Reason::Retry, bs.deployed.as_ref(), f.attempts.saturating_add(1)))
            }
            _ => jobs.push(job(Reason::Changed, bs.deployed.as_ref(), 1)),
        }
    }
}

/// With `monitor.semver`: the highest tag that parses as SemVer 2.0 (a leading `v` allowed)
/// and lies in the range; pre-releases only when the range names one (Cargo's and Flux's
/// rule). Without `semver`: `None`.
pub fn highest_in_range(repo: &Repository, tags: &Heads) -> Option<String> {
    let range = repo.monitor.semver.as_ref()?;
    tags.keys()
        .filter_map(|t| {
            let v = t.strip_prefix(['v', 'V']).unwrap_or(t);
            semver::Version::parse(v).ok().filter(|v| range.matches(v)).map(|v| (v, t))
        })
        .max_by(|(a, ta), (b, tb)| a.cmp(b).then_with(|| tb.cmp(ta)))
        .map(|(_, t)| t.clone())
}

/// `trigger: all`: when any member of such a group has a job, every other member deploys its
/// first matching branch once.
fn add_group_triggers(config: &Config, checked: &BTreeMap<String, Heads>, state: &State, jobs: &mut Vec<Job>) {
    let triggered: BTreeSet<&str> = jobs
        .iter()
        .filter_map(|j| j.group.as_deref())
        .filter(|g| config.groups.get(*g).is_some_and(|g| g.trigger == Trigger::All))
        .collect();
    if triggered.is_empty() {
        return;
    }
    let has_job: BTreeSet<String> = jobs.iter().map(|j| j.repo.clone()).collect();
    let mut extra = Vec::new();
    for repo in &config.repositories {
        let Some(group) = repo.group.as_deref() else { continue };
        if !triggered.contains(group) || has_job.contains(&repo.name) {
            continue;
        }
        let Some(heads) = checked.get(&repo.name) else { continue };
        let Some((branch, head)) = first_matching(repo, heads) else { continue };
        let bs = state.repos.get(&repo.name).and_then(|r| r.branches.get(branch));
        let attempt = next_attempt(bs.map(|b| &**b), head);
        extra.push(Job {
            repo: repo.name.clone(),
            group: repo.group.clone(),
            branch: branch.clone(),
            tag: false,
            commit: head.clone(),
            previous: bs.and_then(|b| b.deployed.clone()),
            reason: Reason::GroupTrigger,
            attempt,
        });
    }
    jobs.extend(extra);
    // Keep configuration order: sequential groups run their jobs in this order.
    let order: BTreeMap<&str, usize> =
        config.repositories.iter().enumerate().map(|(i, r)| (r.name.as_str(), i)).collect();
    jobs.sort_by_key(|j| order.get(j.repo.as_str()).copied().unwrap_or(usize::MAX));
}

/// The first existing branch in pattern order (names sorted within a pattern).
pub fn first_matching<'h>(repo: &Repository, heads: &'h Heads) -> Option<(&'h String, &'h Sha)> {
    repo.monitor.branches.iter().find_map(|p| heads.iter().find(|(b, _)| p.is_match(b)))
}

/// The attempt a deployment of `commit` would be: one more than the failures recorded for that
/// commit, else the first.
fn next_attempt(rs: Option<&RefState>, commit: &Sha) -> u32 {
    match rs.and_then(|r| r.failure.as_ref()) {
        Some(f) if &f.commit == commit => f.attempts.saturating_add(1),
        _ => 1,
    }
}

/// A rollback (`sentry rollback`): the given branch, or the first one in pattern order with a
/// history, back to `to` (a full id or an unambiguous prefix of at least 7 digits of a commit
/// in its history) or to the newest commit of its history that deployed successfully and is
/// not the one deployed now.
pub fn rollback(repo: &Repository, state: &State, branch: Option<&str>, to: Option<&str>) -> Result<Job, String> {
    let none = || format!("nothing to roll back to: {} has no recorded deployment", repo.name);
    let rs = state.repos.get(&repo.name).ok_or_else(none)?;
    let (branch, bs) = match branch {
        Some(b) => {
            if !repo.monitor.matches(b) {
                return Err(format!("branch {b:?} is not monitored for {}", repo.name));
            }
            let bs =
                rs.branches.get(b).ok_or_else(|| format!("nothing to roll back to: no record of {}/{b}", repo.name))?;
            (b.to_string(), bs)
        }
        None => repo
            .monitor
            .branches
            .iter()
            .find_map(|p| rs.branches.iter().find(|(b, r)| p.is_match(b) && !r.history.is_empty()))
            .map(|(b, r)| (b.clone(), r))
            .ok_or_else(none)?,
    };
    let good = |e: &&HistoryEntry| e.status == JobStatus::Succeeded;
    let target = match to {
        Some(prefix) => {
            let prefix = prefix.trim().to_ascii_lowercase();
            if prefix.len() < 7 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("--to {prefix:?}: give a commit id of at least 7 hex digits"));
            }
            let mut found: Vec<&Sha> =
                bs.history.iter().filter(good).map(|e| &e.commit).filter(|c| c.as_str().starts_with(&prefix)).collect();
            found.dedup();
            match found.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return Err(format!(
                        "nothing to roll back to: {prefix} is not a successful deployment in the history of {}/{branch}",
                        repo.name
                    ));
                }
                _ => return Err(format!("--to {prefix} matches several commits of the history: give more digits")),
            }
        }
        None => bs
            .history
            .iter()
            .filter(good)
            .map(|e| &e.commit)
            .find(|c| bs.deployed.as_ref() != Some(*c))
            .cloned()
            .ok_or_else(|| {
            format!("nothing to roll back to: no earlier successful deployment of {}/{branch}", repo.name)
        })?,
    };
    let attempt = next_attempt(Some(bs), &target);
    Ok(Job {
        repo: repo.name.clone(),
        group: repo.group.clone(),
        branch,
        tag: false,
        commit: target,
        previous: bs.deployed.clone(),
        reason: Reason::Rollback,
        attempt,
    })
}

/// A manual deployment (`sentry deploy`): the given or first existing branch, at the given or current head.
pub fn manual(
    repo: &Repository,
    heads: &Heads,
    branch: Option<&str>,
    commit: Option<&Sha>,
    state: &State,
) -> Result<Job, String> {
    let (branch, head) = match branch {
        Some(b) => {
            if !repo.monitor.matches(b) {
                return Err(format!(
                    "branch {b:?} is not monitored for {} (branches: {})",
                    repo.name,
                    repo.monitor.patterns.join(", ")
                ));
            }
            match heads.get(b) {
                Some(h) => (b.to_string(), h.clone()),
                None => return Err(format!("branch {b:?} does not exist in {}", repo.name)),
            }
        }
        None => match first_matching(repo, heads) {
            Some((b, h)) => (b.clone(), h.clone()),
            None => {
                return Err(format!(
                    "no branch of {} matches its patterns ({})",
                    repo.name,
                    repo.monitor.patterns.join(", ")
                ));
            }
        },
    };
    let commit = commit.cloned().unwrap_or(head);
    let bs = state.repos.get(&repo.name).and_then(|r| r.branches.get(&branch));
    let attempt = next_attempt(bs.map(|b| &**b), &commit);
    Ok(Job {
        repo: repo.name.clone(),
        group: repo.group.clone(),
        branch,
        tag: false,
        commit,
        previous: bs.and_then(|b| b.deployed.clone()),
        reason: Reason::Manual,
        attempt,
    })
}

/// A manual deployment of a tag (`sentry deploy --tag`): the tag must match `monitor.tags`
/// and be listed (unless the commit is given), at the given commit or the tag's.
pub fn manual_tag(
    repo: &Repository,
    tags: &Heads,
    tag: &str,
    commit: Option<&Sha>,
    state: &State,
) -> Result<Job, String> {
    if repo.monitor.tags.is_empty() {
        return Err(format!("{} monitors no tags (set monitor.tags)", repo.name));
    }
    if !repo.monitor.matches_tag(tag) {
        return Err(format!(
            "tag {tag:?} is not monitored for {} (tags: {})",
            repo.name,
            repo.monitor.tag_patterns.join(", ")
        ));
    }
    let commit = match (commit, tags.get(tag)) {
        (Some(c), _) => c.clone(),
        (None, Some(c)) => c.clone(),
        (None, None) => return Err(format!("tag {tag:?} does not exist in {}", repo.name)),
    };
    let ts = state.repos.get(&repo.name).and_then(|r| r.tags.get(tag));
    let attempt = next_attempt(ts.map(|t| &**t), &commit);
    Ok(Job {
        repo: repo.name.clone(),
        group: repo.group.clone(),
        branch: tag.to_string(),
        tag: true,
        commit,
        previous: ts.and_then(|t| t.deployed.clone()),
        reason: Reason::Manual,
        attempt,
    })
}

/// When and by whom a finished deployment is recorded.
#[derive(Clone, Copy, Debug)]
pub struct Stamp<'a> {
    /// Now (RFC 3339): `deployed_at`, the failure's time.
    pub now: &'a str,
    /// When the deployment started (RFC 3339), for the history.
    pub started_at: &'a str,
    /// The run that deployed.
    pub run_id: &'a str,
    /// History entries kept per ref (`global.history`).
    pub history: usize,
}

/// Records a finished deployment in the state: the branch's deployed commit or its pending
/// failure, its history, the rollback pin, and the repository's counters. An outcome that says
/// nothing about the commit (skipped, interrupted) changes nothing.
pub fn record(state: &mut State, done: &DeploymentRecord, stamp: &Stamp<'_>) {
    if !done.status.is_verdict() {
        return;
    }
    let rs = state.repos.entry(done.repo.clone()).or_default();
    let count = rs.deployments.entry(done.status.as_str().to_string()).or_default();
    *count = count.saturating_add(1); // a counter from the state file may be anything
    rs.last_deployment_ms = Some(done.duration_ms);
    let refs = rs.refs_mut(done.tag.is_some());
    let bs: &mut RefState = refs.entry(done.ref_name().to_string()).or_default();
    if stamp.history > 0 {
        bs.history.insert(0, HistoryEntry::of(done, stamp.run_id, stamp.started_at));
        bs.history.truncate(stamp.history);
    }
    if done.status == JobStatus::Succeeded {
        bs.deployed = Some(done.commit.clone());
        bs.deployed_at = Some(stamp.now.to_string());
        bs.baseline = false;
        bs.failure = None;
        bs.filtered = None;
        // A rollback holds the ref where it is until its head moves; any other deployment
        // (a manual one included) lets `poll` follow the head again.
        bs.pinned_at = if done.reason == Reason::Rollback { bs.seen.clone() } else { None };
    } else {
        // A job that never reached its commands says nothing about the commit: no attempt.
        let attempts =
            if done.status == JobStatus::FailedToStart { done.attempt.saturating_sub(1) } else { done.attempt };
        bs.failure = Some(Failure {
            at: stamp.now.to_string(),
            attempts,
            commit: done.commit.clone(),
            error: done.failure_text(),
        });
    }
}

/// The commit a change is compared from: the last one filtered, else the last one deployed
/// (SPEC §4 "filters"). `None`: nothing to compare with (the change is deployed).
pub fn compare_base(state: &State, job: &Job) -> Option<Sha> {
    let rs = state.repos.get(&job.repo)?;
    let bs = rs.refs(job.tag).get(&job.branch)?;
    bs.filtered.clone().or_else(|| bs.deployed.clone()).filter(|b| *b != job.commit)
}

/// True when `job` is a change to examine before it is deployed: a head that moved (not a new
/// branch, a retry, a manual or group-triggered deployment), of a repository with `paths` or
/// `ignore_paths`, or of any repository while skip markers are on (SPEC §2: a head commit
/// whose message holds one is recorded, not deployed). One compare per change, never per check.
pub fn needs_examining(repo: &Repository, job: &Job, skip_markers: &[String]) -> bool {
    job.reason == Reason::Changed && (repo.monitor.filter.is_active() || skip_markers.iter().any(|m| !m.is_empty()))
}

/// Decides whether an examined change is filtered, and why: a skip marker in the head commit's
/// message, or changed files none of which count. A change whose files cannot be told is never
/// filtered by paths (SPEC §4: a filter never hides what it could not examine).
pub fn verdict(filter: &PathFilter, skip_markers: &[String], examined: &Examined) -> Option<Reason> {
    if let Some(message) = &examined.message
        && skip_markers.iter().any(|m| !m.is_empty() && message.contains(m.as_str()))
    {
        return Some(Reason::SkipMarker);
    }
    if !filter.is_active() {
        return None;
    }
    let files = examined.files.as_ref()?;
    (!files.iter().any(|f| filter.counts(f))).then_some(Reason::Paths)
}

/// Records a filtered change: its head is seen and becomes the next comparison base, an older
/// failure is moot, and the repository's counter for `reason` goes up. Nothing is deployed.
pub fn record_filtered(state: &mut State, job: &Job, reason: Reason) {
    let rs = state.repos.entry(job.repo.clone()).or_default();
    let count = rs.filtered.entry(reason.key().to_string()).or_default();
    *count = count.saturating_add(1);
    let refs = rs.refs_mut(job.tag);
    let bs = refs.entry(job.branch.clone()).or_default();
    bs.seen = Some(job.commit.clone());
    bs.filtered = Some(job.commit.clone());
    bs.failure = None;
}

/// `trigger: all` jobs stand only for groups where a change is still deployed: when every
/// change of a group was filtered, its triggered jobs go too.
pub fn drop_orphan_triggers(jobs: &mut Vec<Job>) {
    let live: BTreeSet<Option<String>> =
        jobs.iter().filter(|j| j.reason != Reason::GroupTrigger).map(|j| j.group.clone()).collect();
    jobs.retain(|j| j.reason != Reason::GroupTrigger || live.contains(&j.group));
}

#[cfg(test)]
mod tests;

//! Deployment notifications: a JSON (or Slack, or Teams) document POSTed to each configured webhook.
//!
//! A finished deployment becomes a [`Pending`] entry in the state's outbox in the same save that
//! records its outcome; delivery removes it. A run interrupted in between leaves it for the next
//! run, so every (repository, branch, commit, attempt) is announced once.

use crate::config::{Config, Webhook, WebhookFormat};
use crate::http::{Http, HttpError, HttpErrorKind, Method, Request};
use crate::model::{DeploymentRecord, JobStatus, Notification};
use crate::state::Pending;
use serde_json::{Value, json};
use std::time::Instant;

mod teams;

/// Characters of output kept in a notification: enough to see the error, small enough for chat.
const TAIL_CHARS: usize = 2000;

/// The outbox entry for a finished deployment; `None` when the outcome says nothing about the
/// commit (skipped, interrupted).
pub fn pending(record: &DeploymentRecord, run_id: &str, host: &str, finished_at: &str) -> Option<Pending> {
    if !record.status.is_verdict() {
        return None;
    }
    let tail: String = {
        let chars: Vec<char> = record.output_tail.chars().collect();
        chars[chars.len().saturating_sub(TAIL_CHARS)..].iter().collect()
    };
    let payload = Notification {
        event: "deployment".into(),
        run_id: run_id.into(),
        host: host.into(),
        finished_at: finished_at.into(),
        record: DeploymentRecord { output_tail: tail, ..record.clone() },
    };
    Some(Pending { id: record.id(), repo: record.repo.clone(), payload, runs: 0 })
}

/// Where a repository's notifications go: its own webhook, then the global one.
pub fn targets<'c>(config: &'c Config, repo: &str) -> Vec<&'c Webhook> {
    let own = config.repository(repo).and_then(|r| r.webhook.as_ref());
    own.into_iter().chain(config.global.webhook.as_ref()).collect()
}

/// The body for `format`.
pub fn body(format: WebhookFormat, n: &Notification) -> Value {
    match format {
        WebhookFormat::Json => serde_json::to_value(n).unwrap_or(Value::Null),
        WebhookFormat::Slack => slack(n),
        WebhookFormat::Teams => teams::message(n),
    }
}

/// Text for Slack's `mrkdwn`: `&`, `<` and `>` escaped as Slack documents, so a branch name
/// such as ``feat/x`<!channel>` `` or an error message cannot ping a channel or make a link.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A Slack incoming-webhook message: `text` for notifications, blocks for the channel. Every
/// value that comes from outside (names, commands, errors, output) is escaped.
fn slack(n: &Notification) -> Value {
    let r = &n.record;
    let e = slack_escape;
    let icon = match r.status {
        JobStatus::Succeeded => ":white_check_mark:",
        JobStatus::TimedOut => ":hourglass:",
        _ => ":x:",
    };
    let status = r.status.as_str();
    let secs = r.duration_ms as f64 / 1000.0;
    let text = format!(
        "{icon} {} `{}` {} {} (attempt {}, {secs:.1}s)",
        e(&r.repo),
        e(r.ref_name()),
        r.commit.short(),
        status.replace('_', " "),
        r.attempt
    );
    let mut detail = format!(
        "*Repository:* {}\n*{}:* `{}`\n*Commit:* `{}` (was `{}`)\n*Status:* {status}",
        e(&r.repo),
        if r.tag.is_some() { "Tag" } else { "Branch" },
        e(r.ref_name()),
        r.commit.short(),
        r.previous_commit.as_ref().map_or("none", |c| c.short()),
    );
    if let Some(f) = &r.failed_command {
        let code = f.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "null".into());
        detail.push_str(&format!("\n*Failed command* {}: `{}` (exit {code})", f.index, e(&f.command)));
    } else if let Some(error) = &r.error {
        detail.push_str(&format!("\n*Error:* {}", e(error)));
    }
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": detail}}),
    ];
    let tail = &r.output_tail;
    if r.status != JobStatus::Succeeded && !tail.trim().is_empty() {
        let last: Vec<&str> = tail.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        // Slack section text is capped at 3000 characters.
        let code: String = last.join("\n").chars().rev().take(2900).collect::<Vec<_>>().into_iter().rev().collect();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("```{}```", e(&code))}}));
    }
    blocks.push(json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": format!("sentry run `{}` on {}", e(&n.run_id), e(&n.host))}
    ]}));
    json!({"text": text, "blocks": blocks})
}

/// Delivers notifications with the run's shared HTTP client (its retries: connection errors,
/// 5xx and 429, honouring `Retry-After`).
pub struct Sender {
    http: Http,
}

impl Sender {
    /// A sender on the run's HTTP client.
    pub fn new(http: Http) -> Sender {
        Sender { http }
    }

    /// POSTs `pending` to every target, retries included, by `deadline`; an error names each
    /// target that failed (never its URL's path or query, which may carry a secret).
    pub fn deliver(&self, config: &Config, pending: &Pending, deadline: Instant) -> Result<(), String> {
        let mut failures = Vec::new();
        for hook in targets(config, &pending.repo) {
            let body = body(hook.format, &pending.payload).to_string().into_bytes();
            let req = Request::new(Method::Post, hook.url.clone()).body("application/json", body).deadline(deadline);
            if let Err(e) = self.http.send(&req) {
                failures.push(format!("webhook {} for {}: {}", host_of(&hook.url), pending.id, describe(&e)));
            }
        }
        if failures.is_empty() { Ok(()) } else { Err(failures.join("; ")) }
    }
}

/// What failed, without the URL (a webhook's path is often its secret).
pub fn describe(e: &HttpError) -> String {
    let what = match (&e.kind, e.status) {
        (HttpErrorKind::Status, Some(s)) => format!("HTTP {s}"),
        (HttpErrorKind::RateLimited { .. }, _) => "rate limited".to_string(),
        (HttpErrorKind::Timeout, _) => "timed out".to_string(),
        (HttpErrorKind::Network, _) => "cannot connect".to_string(),
        (_, _) => "invalid response".to_string(),
    };
    format!("{what} after {} request{}", e.requests, if e.requests == 1 { "" } else { "s" })
}

/// `scheme://host[:port]` of a URL, for messages.
fn host_of(url: &str) -> String {
    crate::model::url::split(url).map(|p| p.origin_text()).unwrap_or_else(|_| "(invalid URL)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FailedCommand, Reason, Sha};

    fn record(status: JobStatus) -> DeploymentRecord {
        DeploymentRecord {
            repo: "rag".into(),
            group: Some("ai".into()),
            branch: "main".into(),
            tag: None,
            commit: Sha::parse(&"b".repeat(40)).expect("sha"),
            previous_commit: Sha::parse(&"a".repeat(40)),
            status,
            reason: Reason::Changed,
            attempt: 2,
            duration_ms: 1500,
            failed_command: (status == JobStatus::Failed).then(|| FailedCommand {
                index: 1,
                command: "kubectl apply -f .".into(),
                exit_code: Some(1),
            }),
            error: None,
            output_tail: "x".repeat(5000) + "\nerror: boom",
            on_failure: None,
        }
    }

    #[test]
    fn payload_has_every_field_and_a_short_tail() {
        let p = pending(&record(JobStatus::Failed), "run1", "host1", "2026-11-22T12:00:00Z").expect("pending");
        assert_eq!(p.id, format!("rag/main/{}/2", "b".repeat(40)));
        let json = body(WebhookFormat::Json, &p.payload);
        for k in [
            "event",
            "repo",
            "group",
            "branch",
            "commit",
            "previous_commit",
            "status",
            "reason",
            "attempt",
            "duration_ms",
            "failed_command",
            "output_tail",
            "run_id",
            "host",
            "finished_at",
        ] {
            assert!(json.get(k).is_some(), "missing {k}");
        }
        assert_eq!(json["failed_command"]["command"], "kubectl apply -f .");
        assert_eq!(json["status"], "failed");
        assert!(json["output_tail"].as_str().is_some_and(|t| t.chars().count() == TAIL_CHARS && t.ends_with("boom")));
        assert!(pending(&record(JobStatus::Skipped), "r", "h", "t").is_none());
        assert!(pending(&record(JobStatus::Interrupted), "r", "h", "t").is_none());
    }

    #[test]
    fn slack_message_is_readable() {
        let p = pending(&record(JobStatus::Failed), "run1", "host1", "t").expect("pending");
        let s = body(WebhookFormat::Slack, &p.payload);
        let text = s["text"].as_str().expect("text");
        assert_eq!(text, ":x: rag `main` bbbbbbbb failed (attempt 2, 1.5s)");
        let blocks = s["blocks"].as_array().expect("blocks");
        assert!(blocks.iter().any(|b| b["text"]["text"].as_str().is_some_and(|t| t.contains("kubectl apply"))));
        assert!(blocks.iter().any(|b| b["text"]["text"].as_str().is_some_and(|t| t.contains("error: boom"))));
    }

    #[test]
    fn slack_text_cannot_ping_a_channel_or_make_a_link() {
        let mut r = record(JobStatus::Failed);
        r.branch = "feat/x`<!channel>`".into();
        r.repo = "a&b".into();
        r.failed_command =
            Some(FailedCommand { index: 0, command: "echo <@U123> <https://evil|ok>".into(), exit_code: Some(1) });
        r.output_tail = "<!here> done".into();
        let p = pending(&r, "run<!everyone>", "host", "t").expect("pending");
        let text = body(WebhookFormat::Slack, &p.payload).to_string();
        for raw in ["<!channel>", "<!here>", "<!everyone>", "<@U123>", "<https://evil"] {
            assert!(!text.contains(raw), "{raw} reached Slack: {text}");
        }
        assert!(text.contains("feat/x`&lt;!channel&gt;`"), "{text}");
        assert!(text.contains("a&amp;b"), "{text}");
    }

    #[test]
    fn teams_card_has_the_slack_facts() {
        let mut r = record(JobStatus::Failed);
        r.branch = "feat/**bold**".into();
        let p = pending(&r, "run1", "host1", "t").expect("pending");
        let m = body(WebhookFormat::Teams, &p.payload);
        assert_eq!(m["type"], "message");
        assert_eq!(m["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive");
        let card = &m["attachments"][0]["content"];
        assert_eq!((card["type"].as_str(), card["version"].as_str()), (Some("AdaptiveCard"), Some("1.4")));
        let text = card.to_string();
        for fact in
            ["rag", "bbbbbbbb", "was aaaaaaaa", "attempt 2, 1.5s", "kubectl apply -f .", "exit 1", "error: boom"]
        {
            assert!(text.contains(fact), "{fact} missing: {text}");
        }
        assert!(text.contains("sentry run run1 on host1"), "{text}");
        assert!(text.contains(r"feat/\\*\\*bold\\*\\*") && !text.contains("**bold**"), "{text}");
    }

    #[test]
    fn host_of_hides_paths() {
        assert_eq!(host_of("https://hooks.slack.com/services/T0/B0/secret"), "https://hooks.slack.com");
    }
}

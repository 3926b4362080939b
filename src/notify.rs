//! Deployment notifications: a JSON (or Slack) document POSTed to each configured webhook.
//!
//! A finished deployment becomes a [`Pending`] entry in the state's outbox in the same save that
//! records its outcome; delivery removes it. A run interrupted in between leaves it for the next
//! run, so every (repository, branch, commit, attempt) is announced once.

use crate::config::{Config, Webhook, WebhookFormat};
use crate::deploy::{JobResult, JobStatus};
use crate::http::{Http, HttpError, HttpErrorKind, Method, Request};
use crate::state::Pending;
use serde_json::{Value, json};

/// Characters of output kept in a notification: enough to see the error, small enough for chat.
const TAIL_CHARS: usize = 2000;

/// The outbox entry for a finished deployment; `None` for a skipped or interrupted one.
pub fn pending(result: &JobResult, run_id: &str, host: &str, finished_at: &str) -> Option<Pending> {
    if result.status == JobStatus::Skipped || result.interrupted() {
        return None;
    }
    let j = &result.job;
    let tail: String = {
        let chars: Vec<char> = result.output_tail.chars().collect();
        chars[chars.len().saturating_sub(TAIL_CHARS)..].iter().collect()
    };
    let payload = json!({
        "event": "deployment",
        "run_id": run_id,
        "host": host,
        "repo": j.repo,
        "group": j.group,
        "branch": j.branch,
        "commit": j.commit.as_str(),
        "previous_commit": j.previous.as_ref().map(|s| s.as_str()),
        "status": result.status.as_str(),
        "reason": j.reason,
        "attempt": j.attempt,
        "duration_ms": result.duration.as_millis() as u64,
        "failed_command": result.failed_command,
        "error": result.error,
        "output_tail": tail,
        "finished_at": finished_at,
    });
    Some(Pending { id: format!("{}/{}/{}/{}", j.repo, j.branch, j.commit, j.attempt), repo: j.repo.clone(), payload })
}

/// Where a repository's notifications go: its own webhook, then the global one.
pub fn targets<'c>(config: &'c Config, repo: &str) -> Vec<&'c Webhook> {
    let own = config.repository(repo).and_then(|r| r.webhook.as_ref());
    own.into_iter().chain(config.global.webhook.as_ref()).collect()
}

/// The body for `format`.
pub fn body(format: WebhookFormat, payload: &Value) -> Value {
    match format {
        WebhookFormat::Json => payload.clone(),
        WebhookFormat::Slack => slack(payload),
    }
}

/// A Slack incoming-webhook message: `text` for notifications, blocks for the channel.
fn slack(p: &Value) -> Value {
    let s = |k: &str| p[k].as_str().unwrap_or("").to_string();
    let status = s("status");
    let icon = match status.as_str() {
        "succeeded" => ":white_check_mark:",
        "timed_out" => ":hourglass:",
        _ => ":x:",
    };
    let short = |c: String| c.chars().take(8).collect::<String>();
    let secs = p["duration_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
    let text = format!(
        "{icon} {} `{}` {} {} (attempt {}, {secs:.1}s)",
        s("repo"),
        s("branch"),
        short(s("commit")),
        status.replace('_', " "),
        p["attempt"].as_u64().unwrap_or(1)
    );
    let mut detail = format!(
        "*Repository:* {}\n*Branch:* `{}`\n*Commit:* `{}` (was `{}`)\n*Status:* {}",
        s("repo"),
        s("branch"),
        short(s("commit")),
        p["previous_commit"].as_str().map(|c| short(c.to_string())).unwrap_or_else(|| "none".into()),
        status
    );
    if let Some(f) = p["failed_command"].as_object() {
        detail.push_str(&format!(
            "\n*Failed command* {}: `{}` (exit {})",
            f.get("index").and_then(Value::as_u64).unwrap_or(0),
            f.get("command").and_then(Value::as_str).unwrap_or(""),
            f.get("exit_code").map(|c| c.to_string()).unwrap_or_default()
        ));
    } else if let Some(e) = p["error"].as_str() {
        detail.push_str(&format!("\n*Error:* {e}"));
    }
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": detail}}),
    ];
    let tail = s("output_tail");
    if status != "succeeded" && !tail.trim().is_empty() {
        let last: Vec<&str> = tail.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        // Slack section text is capped at 3000 characters.
        let code: String = last.join("\n").chars().rev().take(2900).collect::<Vec<_>>().into_iter().rev().collect();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("```{code}```")}}));
    }
    blocks.push(json!({"type": "context", "elements": [
        {"type": "mrkdwn", "text": format!("sentry run `{}` on {}", s("run_id"), s("host"))}
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

    /// POSTs `pending` to every target; an error names each target that failed (never its URL's
    /// path or query, which may carry a secret).
    pub fn deliver(&self, config: &Config, pending: &Pending) -> Result<(), String> {
        let mut failures = Vec::new();
        for hook in targets(config, &pending.repo) {
            let body = body(hook.format, &pending.payload).to_string().into_bytes();
            let req = Request::new(Method::Post, hook.url.clone()).body("application/json", body);
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
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or("")),
        None => "(invalid URL)".into(),
    }
}

/// This machine's name (the pod name in Kubernetes), for notifications and metrics.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if name.is_empty() { "unknown".into() } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::FailedCommand;
    use crate::model::{Job, Reason, Sha};
    use std::time::Duration;

    fn result(status: JobStatus) -> JobResult {
        JobResult {
            job: Job {
                repo: "rag".into(),
                group: Some("ai".into()),
                branch: "main".into(),
                commit: Sha::parse(&"b".repeat(40)).expect("sha"),
                previous: Sha::parse(&"a".repeat(40)),
                reason: Reason::Changed,
                attempt: 2,
            },
            status,
            failed_command: (status == JobStatus::Failed).then(|| FailedCommand {
                index: 1,
                command: "kubectl apply -f .".into(),
                exit_code: Some(1),
            }),
            error: None,
            duration: Duration::from_millis(1500),
            output_tail: "x".repeat(5000) + "\nerror: boom",
            kept_dir: None,
        }
    }

    #[test]
    fn payload_has_every_field_and_a_short_tail() {
        let p = pending(&result(JobStatus::Failed), "run1", "host1", "2026-11-22T12:00:00Z").expect("pending");
        assert_eq!(p.id, format!("rag/main/{}/2", "b".repeat(40)));
        for k in [
            "repo",
            "group",
            "branch",
            "commit",
            "previous_commit",
            "status",
            "attempt",
            "duration_ms",
            "failed_command",
            "output_tail",
            "run_id",
            "host",
        ] {
            assert!(p.payload.get(k).is_some(), "missing {k}");
        }
        assert_eq!(p.payload["failed_command"]["command"], "kubectl apply -f .");
        assert!(p.payload["output_tail"].as_str().is_some_and(|t| t.len() == TAIL_CHARS && t.ends_with("boom")));
        assert!(pending(&result(JobStatus::Skipped), "r", "h", "t").is_none());
    }

    #[test]
    fn slack_message_is_readable() {
        let p = pending(&result(JobStatus::Failed), "run1", "host1", "t").expect("pending");
        let s = body(WebhookFormat::Slack, &p.payload);
        let text = s["text"].as_str().expect("text");
        assert_eq!(text, ":x: rag `main` bbbbbbbb failed (attempt 2, 1.5s)");
        let blocks = s["blocks"].as_array().expect("blocks");
        assert!(blocks.iter().any(|b| b["text"]["text"].as_str().is_some_and(|t| t.contains("kubectl apply"))));
        assert!(blocks.iter().any(|b| b["text"]["text"].as_str().is_some_and(|t| t.contains("error: boom"))));
        assert_eq!(body(WebhookFormat::Json, &p.payload), p.payload);
    }

    #[test]
    fn host_of_hides_paths() {
        assert_eq!(host_of("https://hooks.slack.com/services/T0/B0/secret"), "https://hooks.slack.com");
        assert!(!hostname().is_empty());
    }
}

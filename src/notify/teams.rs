//! `webhook_format: teams`: one Adaptive Card in the envelope Microsoft Teams workflow webhooks
//! ("Post to a channel when a webhook request is received") accept, with the facts of the Slack
//! message. Adaptive Cards render a CommonMark subset in `TextBlock` and `Fact` text, so every
//! value that comes from outside (names, commands, errors, output) is escaped: a branch called
//! `**x**` or a command holding `[link](https://…)` shows as written, never as markup.

use crate::model::{JobStatus, Notification};
use serde_json::{Value, json};

/// The Adaptive Card schema version used: the newest Teams renders everywhere.
pub const CARD_VERSION: &str = "1.4";

/// Lines of output shown for a failed deployment (as in the Slack message).
const TAIL_LINES: usize = 15;

/// Characters of one output line shown.
const LINE_CHARS: usize = 300;

/// The message body: `{"type": "message", "attachments": [{adaptive card}]}`.
pub fn message(n: &Notification) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": card(n),
        }],
    })
}

fn card(n: &Notification) -> Value {
    let r = &n.record;
    let (icon, color) = match r.status {
        JobStatus::Succeeded => ("✅", "Good"),
        JobStatus::TimedOut => ("⌛", "Warning"),
        _ => ("❌", "Attention"),
    };
    let status = r.status.as_str().replace('_', " ");
    let secs = r.duration_ms as f64 / 1000.0;
    let headline = format!(
        "{icon} {} {} {} {status} (attempt {}, {secs:.1}s)",
        escape(&r.repo),
        escape(&r.branch),
        r.commit.short(),
        r.attempt
    );
    let mut facts = vec![
        fact("Repository", &escape(&r.repo)),
        fact("Branch", &escape(&r.branch)),
        fact(
            "Commit",
            &format!("{} (was {})", r.commit.short(), r.previous_commit.as_ref().map_or("none", |c| c.short())),
        ),
        fact("Status", &escape(r.status.as_str())),
    ];
    if let Some(f) = &r.failed_command {
        let code = f.exit_code.map_or_else(|| "by signal".to_string(), |c| format!("exit {c}"));
        facts.push(fact(
            "Failed command",
            &format!("{}: {} ({code})", f.index, escape(&crate::text::one_line(&f.command))),
        ));
    } else if let Some(e) = &r.error {
        facts.push(fact("Error", &escape(&crate::text::one_line(e))));
    }
    let mut body = vec![
        json!({"type": "TextBlock", "text": headline, "weight": "Bolder", "size": "Medium", "color": color, "wrap": true}),
        json!({"type": "FactSet", "facts": facts}),
    ];
    if r.status != JobStatus::Succeeded && !r.output_tail.trim().is_empty() {
        // One monospace block per line: a markdown line break would need blank lines between.
        let lines: Vec<&str> = r.output_tail.lines().collect();
        let items: Vec<Value> = lines[lines.len().saturating_sub(TAIL_LINES)..]
            .iter()
            .map(|l| {
                let l: String = l.chars().take(LINE_CHARS).collect();
                // An empty TextBlock is dropped by some renderers: keep blank lines visible.
                let text = if l.trim().is_empty() { "\u{a0}".to_string() } else { escape(&l) };
                json!({"type": "TextBlock", "text": text, "fontType": "Monospace", "size": "Small", "spacing": "None", "wrap": true})
            })
            .collect();
        body.push(json!({"type": "Container", "style": "emphasis", "items": items}));
    }
    body.push(json!({
        "type": "TextBlock",
        "text": format!("sentry run {} on {}", escape(&n.run_id), escape(&n.host)),
        "isSubtle": true,
        "size": "Small",
        "wrap": true,
    }));
    json!({
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "body": body,
    })
}

fn fact(title: &str, value: &str) -> Value {
    json!({"title": title, "value": value})
}

/// `s` as literal text in Adaptive Card markdown (a CommonMark subset): a backslash before
/// every character that can open markup (emphasis, code, links, autolinks, HTML, entities, the
/// `{{DATE()}}` functions), and before what starts a list, quote or heading at the start of a
/// line. CommonMark shows a backslash-escaped punctuation character as itself.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut line_start = true;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '~' | '{' | '}' | '#' | '|' | '&' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '-' | '+' | '=' if line_start => {
                out.push('\\');
                out.push(c);
            }
            '0'..='9' if line_start => {
                // "1. item" and "1) item" start ordered lists: escape the dot or parenthesis.
                out.push(c);
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    out.push(d);
                }
                if let Some(p) = chars.next_if(|p| matches!(p, '.' | ')')) {
                    out.push('\\');
                    out.push(p);
                }
            }
            _ => out.push(c),
        }
        line_start = c == '\n' || c == '\r' || (line_start && c == ' ');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_shows_as_written() {
        assert_eq!(escape("plain text 8.1s"), "plain text 8.1s");
        assert_eq!(escape("**x** _y_ `z`"), "\\*\\*x\\*\\* \\_y\\_ \\`z\\`");
        assert_eq!(escape("[a](https://evil)"), "\\[a\\](https://evil)");
        assert_eq!(escape("<b>&amp;"), "\\<b\\>\\&amp;");
        assert_eq!(escape("{{DATE(2017-02-14T06:00:00Z)}}"), "\\{\\{DATE(2017-02-14T06:00:00Z)\\}\\}");
        assert_eq!(escape("- item"), "\\- item");
        assert_eq!(escape("12. item"), "12\\. item");
        assert_eq!(escape("feature/a-b 1.2"), "feature/a-b 1.2");
        assert_eq!(escape("a\\b"), "a\\\\b");
        assert_eq!(escape("# title\n> quote"), "\\# title\n\\> quote");
    }
}

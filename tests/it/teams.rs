//! `webhook_format: teams`: the card a Teams workflow webhook receives, checked against the
//! Adaptive Card schema's required fields, from a real run to a loopback receiver.

use crate::support::webhook::Receiver;
use crate::support::world::{TOKEN, World};
use serde_json::Value;

/// Checks `v` against what the Adaptive Card schema (adaptive-card.json) requires of the parts
/// sentry uses: `AdaptiveCard` needs `type` and `version` (and sentry always sends `body`);
/// `TextBlock` needs `text`; `FactSet` needs `facts` of `{title, value}`; `Container` needs
/// `items`. Returns every problem, with where it is.
fn schema_problems(card: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(String::from);
    if s(card, "type").as_deref() != Some("AdaptiveCard") {
        problems.push(format!("card.type is {:?}", card.get("type")));
    }
    let version_ok = s(card, "version").is_some_and(|v| {
        let parts: Vec<&str> = v.split('.').collect();
        parts.len() == 2 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    if !version_ok {
        problems.push(format!("card.version is {:?}, not \"major.minor\"", card.get("version")));
    }
    match card.get("body").and_then(Value::as_array) {
        Some(body) if !body.is_empty() => elements(body, "body", &mut problems),
        _ => problems.push("card.body is missing or empty".into()),
    }
    problems
}

fn elements(items: &[Value], at: &str, problems: &mut Vec<String>) {
    for (i, e) in items.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let is_str = |k: &str| e.get(k).is_some_and(Value::is_string);
        match e.get("type").and_then(Value::as_str) {
            Some("TextBlock") if is_str("text") => {}
            Some("TextBlock") => problems.push(format!("{at}: TextBlock without text")),
            Some("FactSet") => match e.get("facts").and_then(Value::as_array) {
                Some(facts) if !facts.is_empty() => {
                    for (j, f) in facts.iter().enumerate() {
                        if !f.get("title").is_some_and(Value::is_string)
                            || !f.get("value").is_some_and(Value::is_string)
                        {
                            problems.push(format!("{at}.facts[{j}]: needs title and value"));
                        }
                    }
                }
                _ => problems.push(format!("{at}: FactSet without facts")),
            },
            Some("Container") => match e.get("items").and_then(Value::as_array) {
                Some(inner) => elements(inner, &format!("{at}.items"), problems),
                None => problems.push(format!("{at}: Container without items")),
            },
            other => problems.push(format!("{at}: unexpected element type {other:?}")),
        }
    }
}

/// The one card in a Teams message envelope.
fn card_of(message: &Value) -> &Value {
    assert_eq!(message["type"], "message", "{message}");
    let attachments = message["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 1, "{message}");
    assert_eq!(attachments[0]["contentType"], "application/vnd.microsoft.card.adaptive");
    &attachments[0]["content"]
}

#[test]
fn teams_cards_reach_the_receiver_and_follow_the_schema() {
    let rx = Receiver::start();
    let w = World::new();
    let app = w.create("app");
    app.commit("main", &[("v", "1")], "v1");
    // A branch name full of markdown: the card shows it as written.
    let branch = "fix_<b>&x#1";
    app.commit(branch, &[("v", "1")], "v1");
    let repo = w
        .repo("app")
        .branches(["main", "fix_.*"])
        .webhook(rx.url("/workflows/abc/triggers/manual"))
        .webhook_format("teams");
    w.conf().repo(repo).write(&w.sb);
    assert_eq!(w.poll().code, 0, "baseline");
    let v2 = app.commit("main", &[("v", "2")], "v2");
    assert_eq!(w.poll().code, 0);
    std::fs::write(w.ctrl().join("fail-app"), "").expect("ctrl");
    app.commit(branch, &[("v", "3")], "v3");
    assert_eq!(w.poll().code, 1);

    let got = rx.received();
    assert_eq!(got.len(), 2, "{got:?}");
    for r in &got {
        assert!(r.content_type.starts_with("application/json"), "{}", r.content_type);
        assert!(!r.body.contains(TOKEN), "token in a card");
        let message: Value = serde_json::from_str(&r.body).expect("JSON");
        let card = card_of(&message);
        assert_eq!(card["version"], "1.4");
        assert_eq!(card["$schema"], "http://adaptivecards.io/schemas/adaptive-card.json");
        let problems = schema_problems(card);
        assert!(problems.is_empty(), "{problems:?}\n{card:#}");
    }
    let ok: Value = serde_json::from_str(&got[0].body).expect("JSON");
    let ok = card_of(&ok).to_string();
    assert!(ok.contains("succeeded") && ok.contains(&v2[..8]), "{ok}");
    let failed: Value = serde_json::from_str(&got[1].body).expect("JSON");
    let card = card_of(&failed);
    let text = card.to_string();
    assert!(text.contains("failed") && text.contains("Failed command") && text.contains("exit 3"), "{text}");
    // The output tail is there, one monospace line per output line.
    assert!(text.contains("failing on purpose"), "{text}");
    // Markdown in the branch name is escaped (`\_ \< \> \& \#`), never sent raw.
    assert!(text.contains(r"fix\\_\\<b\\>\\&x\\#1"), "{text}");
    assert!(!text.contains(branch), "{text}");
}

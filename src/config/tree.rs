//! The second look at a document serde refused (SPEC §2 v2: every problem in one run).
//!
//! serde stops at the first unknown key, wrong type or missing field. When it does, the same
//! text is read again into a plain tree (every node with its line) and walked against
//! [`ROOT`], a table of the schema in [`super::raw`], collecting every structural problem and
//! every unset `${VAR}`. The happy path never builds the tree: it costs nothing there.
//!
//! The table must list exactly the fields of `raw.rs`; `tests.rs` checks both agree on a
//! document that sets every field. Adding a field means one line in each.

use super::{Problem, expand};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// One YAML node and the line it starts on.
pub(super) struct Node {
    line: u64,
    value: Value,
}

enum Value {
    Null,
    Bool(bool),
    /// A number as YAML typed it (the text is gone; only its kind and a rendering matter here).
    Number(String, NumberKind),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum NumberKind {
    Unsigned,
    Negative,
    Float,
}

struct Key {
    text: String,
    line: u64,
}

impl Value {
    fn describe(&self) -> &'static str {
        match self {
            Value::Null => "empty",
            Value::Bool(_) => "true/false",
            Value::Number(..) => "a number",
            Value::Str(_) => "text",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// A scalar as text, for messages and for text fields given a number or a boolean.
    fn scalar_text(&self) -> Option<String> {
        match self {
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n, _) => Some(n.clone()),
            Value::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

fn node(s: Spanned<Value>) -> Node {
    Node { line: s.referenced.line(), value: s.value }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        let kind = if n < 0 { NumberKind::Negative } else { NumberKind::Unsigned };
        Ok(Value::Number(n.to_string(), kind))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.to_string(), NumberKind::Unsigned))
    }
    fn visit_i128<E>(self, n: i128) -> Result<Value, E> {
        let kind = if n < 0 { NumberKind::Negative } else { NumberKind::Unsigned };
        Ok(Value::Number(n.to_string(), kind))
    }
    fn visit_u128<E>(self, n: u128) -> Result<Value, E> {
        Ok(Value::Number(n.to_string(), NumberKind::Unsigned))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        let kind = if n < 0.0 { NumberKind::Negative } else { NumberKind::Float };
        Ok(Value::Number(n.to_string(), kind))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = a.next_element::<Spanned<Value>>()? {
            items.push(node(item));
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = a.next_key::<Spanned<Value>>()? {
            let v = a.next_value::<Spanned<Value>>()?;
            let text = match &k.value {
                Value::Null => "~".to_string(),
                other => other.scalar_text().unwrap_or_else(|| format!("({})", other.describe())),
            };
            entries.push((Key { text, line: k.referenced.line() }, node(v)));
        }
        Ok(Value::Map(entries))
    }
}

/// Reads `text` into trees, one per YAML document; `None` when it is not even YAML (serde's own
/// message says why then).
pub(super) fn read(text: &str, options: serde_saphyr::Options) -> Option<Vec<Node>> {
    let docs: Vec<Spanned<Value>> = serde_saphyr::from_str_multiple_with_options(text, options).ok()?;
    Some(docs.into_iter().map(node).collect())
}

/// What a field holds.
#[derive(Clone, Copy)]
pub(super) enum Shape {
    /// Text; `${VAR}` is expanded.
    Text,
    /// Shell code: passed to `sh` verbatim, never expanded.
    Shell,
    /// A whole number of seconds.
    Seconds,
    /// A whole number.
    Count,
    /// true or false.
    Bool,
    /// A list of this.
    List(&'static Shape),
    /// A mapping with these fields.
    Struct(&'static Section),
    /// A mapping from names the user picks to this.
    Dict(&'static Shape),
}

/// A mapping with known fields.
pub(super) struct Section {
    /// How messages name it.
    pub name: &'static str,
    pub fields: &'static [Field],
}

/// One field of a section.
pub(super) struct Field {
    pub name: &'static str,
    pub shape: Shape,
    pub required: bool,
}

const fn opt(name: &'static str, shape: Shape) -> Field {
    Field { name, shape, required: false }
}

const fn req(name: &'static str, shape: Shape) -> Field {
    Field { name, shape, required: true }
}

pub(super) const AUTH: Section = Section {
    name: "auth (under monitor or deploy)",
    fields: &[opt("username", Shape::Text), opt("token", Shape::Text), opt("ssh_key_file", Shape::Text)],
};

pub(super) const MONITOR: Section = Section {
    name: "repositories[].monitor",
    fields: &[
        req("repo_url", Shape::Text),
        req("branches", Shape::List(&Shape::Text)),
        opt("repo_type", Shape::Text),
        opt("api_url", Shape::Text),
        opt("auth", Shape::Struct(&AUTH)),
        opt("paths", Shape::List(&Shape::Text)),
        opt("ignore_paths", Shape::List(&Shape::Text)),
        opt("tags", Shape::List(&Shape::Text)),
        opt("semver", Shape::Text),
    ],
};

pub(super) const DEPLOY: Section = Section {
    name: "repositories[].deploy",
    fields: &[
        req("qa_repo_url", Shape::Text),
        opt("qa_repo_branch", Shape::Text),
        opt("repo_type", Shape::Text),
        opt("project_name", Shape::Text),
        req("commands", Shape::List(&Shape::Shell)),
        opt("on_failure", Shape::List(&Shape::Shell)),
        opt("env", Shape::Dict(&Shape::Text)),
        opt("auth", Shape::Struct(&AUTH)),
        opt("report_status", Shape::Bool),
    ],
};

pub(super) const REPOSITORY: Section = Section {
    name: "repositories[]",
    fields: &[
        req("name", Shape::Text),
        opt("group", Shape::Text),
        req("monitor", Shape::Struct(&MONITOR)),
        req("deploy", Shape::Struct(&DEPLOY)),
        opt("webhook_url", Shape::Text),
        opt("webhook_format", Shape::Text),
    ],
};

pub(super) const GROUP: Section = Section {
    name: "groups.<name>",
    fields: &[
        opt("execution_strategy", Shape::Text),
        opt("max_parallel", Shape::Count),
        opt("continue_on_error", Shape::Bool),
        opt("global_timeout", Shape::Seconds),
        opt("trigger", Shape::Text),
    ],
};

pub(super) const GLOBAL: Section = Section {
    name: "global",
    fields: &[
        opt("tmp_dir", Shape::Text),
        opt("cleanup", Shape::Bool),
        opt("log_level", Shape::Text),
        opt("timeout", Shape::Seconds),
        opt("state", Shape::Text),
        opt("concurrency", Shape::Count),
        opt("http_timeout", Shape::Seconds),
        opt("on_first_seen", Shape::Text),
        opt("max_attempts", Shape::Count),
        opt("ca_file", Shape::Text),
        opt("webhook_url", Shape::Text),
        opt("webhook_format", Shape::Text),
        opt("metrics_file", Shape::Text),
        opt("pushgateway_url", Shape::Text),
        opt("notify_timeout", Shape::Seconds),
        opt("history", Shape::Count),
        opt("known_hosts", Shape::Text),
        opt("skip_markers", Shape::List(&Shape::Text)),
        opt("github_api", Shape::Text),
    ],
};

pub(super) const ROOT: Section = Section {
    name: "the top level",
    fields: &[
        opt("polling_interval", Shape::Seconds),
        opt("global", Shape::Struct(&GLOBAL)),
        opt("groups", Shape::Dict(&Shape::Struct(&GROUP))),
        req("repositories", Shape::List(&Shape::Struct(&REPOSITORY))),
    ],
};

/// Every section, for "this key belongs elsewhere".
const SECTIONS: [&Section; 7] = [&ROOT, &GLOBAL, &GROUP, &REPOSITORY, &MONITOR, &DEPLOY, &AUTH];

/// Walks the documents of a file serde refused and returns every problem found.
pub(super) fn problems(docs: &[Node], env: &dyn Fn(&str) -> Option<String>) -> Found {
    let mut w = Walker { env, problems: Vec::new(), stray: Vec::new() };
    if let Some(hint) = older_shape(docs) {
        return Found { problems: vec![hint], stray: Vec::new() };
    }
    match docs {
        [] => w.problems.push(Problem { path: String::new(), line: None, message: "the file is empty".into() }),
        [doc] => w.section("", doc, &ROOT),
        [first, second, ..] => {
            let n = docs.len();
            let message =
                format!("the file holds {n} YAML documents (separated by ---); a configuration is one document");
            w.problem("", second.line, message);
            w.section("", first, &ROOT);
        }
    }
    Found { problems: w.problems, stray: w.stray }
}

/// `text` with each stray key and its value blanked (lines kept, so every line number stays),
/// or `None` when a key cannot be found where the tree put it. A key's value is the lines
/// after it that are indented deeper (or, for a sequence, as deep with a dash); a key that
/// opens a sequence item keeps its dash.
pub(super) fn without_keys(text: &str, stray: &[(u64, String)]) -> Option<String> {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for (line, key) in stray {
        let i = usize::try_from(*line).ok()?.checked_sub(1)?;
        let l = lines.get(i)?.clone();
        let col =
            [format!("{key}:"), format!("\"{key}\":"), format!("'{key}':")].iter().find_map(|k| l.find(k.as_str()))?;
        let head = &l[..col];
        if !head.chars().all(|c| c == ' ' || c == '-') {
            return None; // a flow mapping or something else the blanking cannot keep valid
        }
        lines[i] = head.to_string();
        let mut j = i + 1;
        while let Some(next) = lines.get(j) {
            let indent = next.len() - next.trim_start_matches(' ').len();
            let blank = next.trim().is_empty() || next.trim_start().starts_with('#');
            if !(blank || indent > col || (indent == col && next.trim_start().starts_with('-'))) {
                break;
            }
            lines[j] = String::new();
            j += 1;
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Some(out)
}

/// A file in a shape sentry never read: a Kubernetes manifest that holds the configuration, or
/// the first schema of the Go sentry (top-level `monitor:` with repo_a/repo_b). One problem that
/// says what the file looks like and where the configuration starts.
fn older_shape(docs: &[Node]) -> Option<Problem> {
    let fields = |n: &Node| match &n.value {
        Value::Map(entries) => entries.iter().map(|(k, _)| k.text.clone()).collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    let manifests: Vec<&Node> = docs
        .iter()
        .filter(|d| fields(d).iter().any(|f| f == "apiVersion") && fields(d).iter().any(|f| f == "kind"))
        .collect();
    if !manifests.is_empty() {
        // The configuration is the text of a ConfigMap's data key that holds `repositories:`.
        let mut found = None;
        for m in &manifests {
            let Value::Map(entries) = &m.value else { continue };
            let name = entries
                .iter()
                .find(|(k, _)| k.text == "metadata")
                .and_then(|(_, v)| match &v.value {
                    Value::Map(meta) => {
                        meta.iter().find(|(k, _)| k.text == "name").and_then(|(_, v)| v.value.scalar_text())
                    }
                    _ => None,
                })
                .unwrap_or_default();
            let Some((_, data)) = entries.iter().find(|(k, _)| k.text == "data") else { continue };
            let Value::Map(keys) = &data.value else { continue };
            if let Some((k, v)) =
                keys.iter().find(|(_, v)| matches!(&v.value, Value::Str(s) if s.contains("repositories:")))
            {
                found = Some((name, k.text.clone(), v.line));
                break;
            }
        }
        let found_line = found.as_ref().map(|f| f.2);
        let message = match found {
            Some((name, key, line)) => format!(
                "this is a Kubernetes manifest (apiVersion/kind), not a sentry configuration: the configuration is \
                 the text of ConfigMap {name:?} under data.{key} (it starts on line {line}); save that text to its own \
                 file (kubectl get configmap {name} -o jsonpath='{{.data.{}}}' > sentry.yaml) and pass it with -c",
                key.replace('.', "\\.")
            ),
            None => "this is a Kubernetes manifest (apiVersion/kind), not a sentry configuration: pass the \
                     configuration itself (the YAML with `repositories:`) with -c"
                .to_string(),
        };
        let line = found_line.or_else(|| manifests.first().map(|m| m.line));
        return Some(Problem { path: String::new(), line, message });
    }
    let [doc] = docs else { return None };
    let Value::Map(entries) = &doc.value else { return None };
    let has = |name: &str| entries.iter().find(|(k, _)| k.text == name);
    if let Some((k, _)) = has("monitor")
        && has("repositories").is_none()
    {
        return Some(Problem {
            path: "monitor".into(),
            line: Some(k.line),
            message: "this looks like the Go sentry's first configuration (top-level monitor: with repo_a/repo_b, \
                      deploy: with namespace); sentry reads `repositories:`, a list with one entry (name, monitor, \
                      deploy) per watched repository: see README \"Migrating from the Go Sentry\""
                .into(),
        });
    }
    None
}

struct Walker<'e> {
    env: &'e dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
    /// Keys that are only in the way (unknown, misplaced, repeated): line and text.
    stray: Vec<(u64, String)>,
}

/// What the structural pass found: every problem, and the keys among them that could simply be
/// left out (each of those problems is one such key).
pub(super) struct Found {
    /// Every structural problem, in document order.
    pub problems: Vec<Problem>,
    /// The unknown, misplaced or repeated keys: line and text.
    pub stray: Vec<(u64, String)>,
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

impl Walker<'_> {
    fn problem(&mut self, path: &str, line: u64, message: String) {
        self.problems.push(Problem { path: path.to_string(), line: Some(line), message });
    }

    fn section(&mut self, path: &str, n: &Node, section: &Section) {
        let entries = match &n.value {
            Value::Map(entries) => entries,
            Value::Null if path.is_empty() => {
                self.problem(path, n.line, "the file is empty".into());
                return;
            }
            other => {
                let what = if path.is_empty() { "the document".to_string() } else { path.to_string() };
                self.problem(
                    path,
                    n.line,
                    format!("{what} must be a mapping (`key: value` lines), not {}", other.describe()),
                );
                return;
            }
        };
        let mut seen: Vec<(&str, u64)> = Vec::new();
        for (key, value) in entries {
            let kpath = join(path, &key.text);
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key.text) {
                self.problem(&kpath, key.line, format!("{:?} appears twice (first on line {first})", key.text));
                self.stray.push((key.line, key.text.clone()));
                continue;
            }
            seen.push((&key.text, key.line));
            match section.fields.iter().find(|f| f.name == key.text) {
                Some(field) => self.value(&kpath, &key.text, value, field.shape, field.required),
                None => {
                    let message = unknown_key(&key.text, section);
                    self.problem(&kpath, key.line, message);
                    self.stray.push((key.line, key.text.clone()));
                }
            }
        }
        for f in section.fields.iter().filter(|f| f.required) {
            if !entries.iter().any(|(k, _)| k.text == f.name) {
                let what = if path.is_empty() { "the file".to_string() } else { path.to_string() };
                self.problem(&join(path, f.name), n.line, format!("missing: {what} needs `{}:`", f.name));
            }
        }
    }

    fn value(&mut self, path: &str, key: &str, n: &Node, shape: Shape, required: bool) {
        if let Value::Null = n.value {
            // An empty optional value means "not set"; an empty required one is missing.
            if required {
                // Only text can be given as empty; a list or mapping needs its entries.
                let hint = if matches!(shape, Shape::Text) { " (\"\" for empty text)" } else { "" };
                self.problem(path, n.line, format!("`{key}` has no value: give it one{hint}"));
            }
            return;
        }
        match shape {
            Shape::Text => match n.value.scalar_text() {
                Some(text) => {
                    if let Err(m) = expand(&text, self.env) {
                        self.problem(path, n.line, m);
                    }
                }
                None => self.problem(
                    path,
                    n.line,
                    format!("must be text, not {} (quote a value that should be text)", n.value.describe()),
                ),
            },
            Shape::Shell => {
                if n.value.scalar_text().is_none() {
                    self.problem(path, n.line, format!("a command must be text, not {}", n.value.describe()));
                }
            }
            Shape::Seconds | Shape::Count => {
                // serde takes a quoted "300" too: so does this pass, or it would invent a problem.
                let ok = match &n.value {
                    Value::Number(text, NumberKind::Unsigned) => !text.contains('.'),
                    Value::Str(text) => text.parse::<u64>().is_ok(),
                    _ => false,
                };
                if !ok {
                    let got = n
                        .value
                        .scalar_text()
                        .map(|t| format!(" (got {t:?})"))
                        .unwrap_or_else(|| format!(" (got {})", n.value.describe()));
                    let want = match shape {
                        Shape::Seconds => "a whole number of seconds, e.g. 300",
                        _ => "a whole number, e.g. 3",
                    };
                    self.problem(path, n.line, format!("must be {want}{got}"));
                }
            }
            Shape::Bool => {
                let quoted_bool = matches!(&n.value, Value::Str(t) if t == "true" || t == "false");
                if !matches!(n.value, Value::Bool(_)) && !quoted_bool {
                    let got = n.value.scalar_text().unwrap_or_else(|| n.value.describe().to_string());
                    self.problem(path, n.line, format!("must be true or false (got {got:?})"));
                }
            }
            Shape::List(item) => match &n.value {
                Value::Seq(items) => {
                    for (i, it) in items.iter().enumerate() {
                        self.value(&format!("{path}[{i}]"), key, it, *item, true);
                    }
                }
                other => {
                    let message = match other.scalar_text() {
                        Some(t) => format!("must be a list: {key}: [{t}]"),
                        None => format!("must be a list (`- item` lines or [a, b]), not {}", other.describe()),
                    };
                    self.problem(path, n.line, message);
                }
            },
            Shape::Struct(section) => self.section(path, n, section),
            Shape::Dict(item) => match &n.value {
                Value::Map(entries) => {
                    for (k, v) in entries {
                        self.value(&join(path, &k.text), &k.text, v, *item, true);
                    }
                }
                other => self.problem(
                    path,
                    n.line,
                    format!("must be a mapping (`name: value` lines), not {}", other.describe()),
                ),
            },
        }
    }
}

/// "unknown field", with where it belongs when it is a field of another section, or the field it
/// is probably a misspelling of.
fn unknown_key(key: &str, section: &Section) -> String {
    let homes: Vec<&str> = SECTIONS
        .iter()
        .filter(|s| !std::ptr::eq(**s, section) && s.fields.iter().any(|f| f.name == key))
        .map(|s| s.name)
        .collect();
    if !homes.is_empty() {
        return format!("`{key}` is not a field of {}: it belongs in {}", section.name, homes.join(" or "));
    }
    let close =
        section.fields.iter().map(|f| f.name).filter(|f| distance(f, key) <= 2).min_by_key(|f| distance(f, key));
    match close {
        Some(c) => format!("unknown field `{key}`: did you mean `{c}`?"),
        None => {
            let names: Vec<&str> = section.fields.iter().map(|f| f.name).collect();
            format!("unknown field `{key}` (the fields of {} are {})", section.name, names.join(", "))
        }
    }
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let v = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            cur.push(v);
        }
        prev = cur;
    }
    prev[b.len()]
}

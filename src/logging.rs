//! Log lines on stderr: `[2026-11-22T12:00:00Z] INFO: message key=value`, secrets redacted.

use crate::secret::Redactor;
use std::io::Write;
use std::sync::{OnceLock, RwLock};

static REDACTOR: OnceLock<RwLock<Redactor>> = OnceLock::new();

/// The current run's id, put on every JSON log line (SPEC §5).
static RUN_ID: RwLock<String> = RwLock::new(String::new());

/// The log target of a deployment's own output lines (see [`init`]).
pub const OUTPUT: &str = "output";

/// Installs the logger. Everything is let through here; [`set_level`] sets the real filter once
/// the configuration (which may name a level) is known.
pub fn init(level: log::LevelFilter, json: bool) {
    let _ = env_logger::Builder::new()
        .filter_level(log::LevelFilter::Trace)
        // ureq's TRACE is a hex dump of the wire, Authorization headers included, split across
        // lines where no redactor can find them, and its DEBUG dumps requests: our own HTTP
        // layer logs each request (without secrets) at debug instead.
        .filter_module("ureq", log::LevelFilter::Info)
        .filter_module("ureq_proto", log::LevelFilter::Info)
        .target(env_logger::Target::Stderr)
        .format(move |buf, record| {
            let output = record.target() == OUTPUT;
            if json {
                let mut fields = serde_json::Map::new();
                fields.insert("timestamp".into(), crate::time::now_rfc3339().into());
                fields.insert("level".into(), record.level().as_str().into());
                fields.insert("message".into(), redact(&record.args().to_string()).into());
                if output {
                    fields.insert("output".into(), true.into());
                }
                if let Ok(id) = RUN_ID.read()
                    && !id.is_empty()
                {
                    fields.insert("run_id".into(), id.as_str().into());
                }
                let _ = record.key_values().visit(&mut JsonKv(&mut fields));
                return writeln!(buf, "{}", serde_json::Value::Object(fields));
            }
            // A deployment's output reads as output: `| line`.
            let bar = if output { "| " } else { "" };
            let mut line = format!("[{}] {}: {bar}{}", crate::time::now_rfc3339(), record.level(), record.args());
            let mut kv = KvWriter(&mut line);
            let _ = record.key_values().visit(&mut kv);
            let line = redact(&line);
            // Names from forges reach log fields: no escape sequence goes to the terminal.
            writeln!(buf, "{}", crate::text::terminal_safe_keeping(&line, &['\n', '\t']))
        })
        .try_init();
    log::set_max_level(level);
}

/// Sets the level filter.
pub fn set_level(level: log::LevelFilter) {
    log::set_max_level(level);
}

/// Sets the run id every JSON log line carries from now on.
pub fn set_run_id(id: &str) {
    if let Ok(mut g) = RUN_ID.write() {
        id.clone_into(&mut g);
    }
}

/// Teaches the logger the secrets it must never print.
pub fn set_redactor(r: Redactor) {
    let lock = REDACTOR.get_or_init(|| RwLock::new(Redactor::default()));
    if let Ok(mut g) = lock.write() {
        *g = r;
    }
}

/// Redacts text with the installed redactor.
pub fn redact(text: &str) -> String {
    match REDACTOR.get().and_then(|l| l.read().ok()) {
        Some(r) if !r.is_empty() => r.redact(text),
        _ => text.to_string(),
    }
}

struct KvWriter<'a>(&'a mut String);

impl<'kvs> log::kv::VisitSource<'kvs> for KvWriter<'_> {
    fn visit_pair(&mut self, key: log::kv::Key<'kvs>, value: log::kv::Value<'kvs>) -> Result<(), log::kv::Error> {
        let v = value.to_string();
        if v.is_empty() || v.contains(char::is_whitespace) || v.contains('"') || v.contains('=') {
            self.0.push_str(&format!(" {key}={v:?}"));
        } else {
            self.0.push_str(&format!(" {key}={v}"));
        }
        Ok(())
    }
}

struct JsonKv<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for JsonKv<'_> {
    fn visit_pair(&mut self, key: log::kv::Key<'kvs>, value: log::kv::Value<'kvs>) -> Result<(), log::kv::Error> {
        let v = match (value.to_u64(), value.to_i64(), value.to_bool()) {
            (Some(n), _, _) => n.into(),
            (None, Some(n), _) => n.into(),
            (None, None, Some(b)) => b.into(),
            _ => redact(&value.to_string()).into(),
        };
        // Fields never overwrite the envelope.
        self.0.entry(key.as_str().to_string()).or_insert(v);
        Ok(())
    }
}

/// Parses a log level name (`--log-level`, `SENTRY_LOG_LEVEL`, `global.log_level`).
pub fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Ok(log::LevelFilter::Error),
        "warn" | "warning" => Ok(log::LevelFilter::Warn),
        "info" => Ok(log::LevelFilter::Info),
        "debug" => Ok(log::LevelFilter::Debug),
        "trace" => Ok(log::LevelFilter::Trace),
        "off" => Ok(log::LevelFilter::Off),
        _ => Err(format!("invalid log level {s:?}: expected error, warn, info, debug or trace")),
    }
}

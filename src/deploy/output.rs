//! The bounded, redacted tail of a job's output.
//!
//! Output is redacted line by line *before* it is kept, so the tail can be cut anywhere without
//! ever leaving half a token behind. An endless line is cut at its front, and the cut side loses
//! [`CARRY`] more bytes after redaction, which removes the remains of a token cut in two.

use crate::secret::Redactor;

/// Most text kept (SPEC: the last 64 KiB).
pub(crate) const TAIL_MAX: usize = 64 * 1024;

/// Longer than any token or its Basic-auth form: what is dropped at the front of a cut line.
const CARRY: usize = 16 * 1024;

/// Marks a line whose beginning was dropped.
const CUT_MARK: &str = "[...]";

/// Collects output; yields the last [`TAIL_MAX`] bytes of it, redacted.
pub(crate) struct Tail {
    redactor: Redactor,
    /// The current line, not yet redacted; at most `TAIL_MAX + CARRY` bytes after a cut.
    line: Vec<u8>,
    line_cut: bool,
    /// Redacted complete lines; trimmed to `TAIL_MAX` (lazily, at twice that).
    text: String,
    /// The job, for the log lines each output line becomes: (repository, branch).
    job: (String, String),
    /// The last complete line, for the heartbeat.
    last: String,
}

impl Tail {
    /// An empty tail that redacts with `redactor`; `job` (repository, branch) names the job in
    /// the log lines its output becomes.
    pub(crate) fn new(redactor: Redactor, job: (String, String)) -> Self {
        Tail { redactor, line: Vec::new(), line_cut: false, text: String::new(), job, last: String::new() }
    }

    /// The job's (repository, branch).
    pub(crate) fn job(&self) -> (&str, &str) {
        (&self.job.0, &self.job.1)
    }

    /// The last complete line of output, redacted ("" before the first).
    pub(crate) fn last_line(&self) -> &str {
        &self.last
    }

    /// Appends raw output.
    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&bytes[..pos]);
            self.end_line(true);
            bytes = &bytes[pos + 1..];
        }
        self.line.extend_from_slice(bytes);
        if self.line.len() > 2 * (TAIL_MAX + CARRY) {
            let excess = self.line.len() - (TAIL_MAX + CARRY);
            self.line.drain(..excess);
            self.line_cut = true;
        }
    }

    /// Appends a line of sentry's own (e.g. "timed out"), so the tail tells the whole story.
    pub(crate) fn note(&mut self, text: &str) {
        if !self.line.is_empty() {
            self.end_line(true);
        }
        self.line.extend_from_slice(format!("[sentry] {text}").as_bytes());
        self.end_line(true);
    }

    /// The redacted tail: at most [`TAIL_MAX`] bytes, starting at a line where possible.
    pub(crate) fn finish(mut self) -> String {
        if !self.line.is_empty() {
            self.end_line(false);
        }
        trim_front(&mut self.text, TAIL_MAX);
        self.text
    }

    /// The last `n` lines kept so far (for log lines about a failure).
    pub(crate) fn last_lines(&self, n: usize) -> Vec<String> {
        let mut lines: Vec<String> = self.text.lines().rev().take(n).map(str::to_string).collect();
        if !self.line.is_empty() && lines.len() == n {
            lines.pop();
        }
        lines.reverse();
        if !self.line.is_empty() {
            lines.push(self.redacted_line());
        }
        lines
    }

    fn redacted_line(&self) -> String {
        let mut line = self.redactor.redact(&String::from_utf8_lossy(&self.line));
        if self.line_cut {
            // What stays of a token cut at the front lies within the first CARRY bytes.
            let mut at = CARRY.min(line.len());
            while !line.is_char_boundary(at) {
                at += 1;
            }
            line.replace_range(..at, CUT_MARK);
        }
        line
    }

    fn end_line(&mut self, newline: bool) {
        let line = self.redacted_line();
        // Live, at info: a CI log shows a long deployment's progress while it runs (SPEC §5).
        log::info!(target: crate::logging::OUTPUT, repo = self.job.0.as_str(), branch = self.job.1.as_str(); "{line}");
        self.last.clone_from(&line);
        self.text.push_str(&line);
        if newline {
            self.text.push('\n');
        }
        self.line.clear();
        self.line_cut = false;
        if self.text.len() > 2 * TAIL_MAX {
            trim_front(&mut self.text, TAIL_MAX);
        }
    }
}

/// Keeps the last `max` bytes of `text`, from the next line start if one is near.
fn trim_front(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut at = text.len() - max;
    while !text.is_char_boundary(at) {
        at += 1;
    }
    // Starting at a line is easier to read; a line start within 1 KiB is worth the bytes.
    if let Some(nl) = text[at..].find('\n').filter(|&p| p < 1024) {
        at += nl + 1;
    }
    text.replace_range(..at, "");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn redactor(token: &str) -> Redactor {
        let secret = Secret::new(token);
        Redactor::new([(Some("bob"), &secret)])
    }

    #[test]
    fn redacts_tokens_split_across_reads() {
        let mut t = Tail::new(redactor("tok-SECRET-123"), ("r".into(), "main".into()));
        t.push(b"before tok-SEC");
        t.push(b"RET-123 after\nnext");
        let out = t.finish();
        assert_eq!(out, "before *** after\nnext");
    }

    #[test]
    fn keeps_only_the_last_64k() {
        let mut t = Tail::new(Redactor::default(), Default::default());
        for i in 0..20_000 {
            t.push(format!("line {i:06}\n").as_bytes());
        }
        let out = t.finish();
        assert!(out.len() <= TAIL_MAX, "{}", out.len());
        assert!(out.starts_with("line "), "starts at a line: {:?}", &out[..20]);
        assert!(out.ends_with("line 019999\n"));
    }

    #[test]
    fn an_endless_line_is_bounded_and_leaks_no_half_token() {
        let token = "tok-ABCDEFGHIJKLMNOP";
        let mut t = Tail::new(redactor(token), Default::default());
        // Aim the front cut at the middle of the token: 10 of its 20 bytes stay in the line.
        let before = 90_000;
        t.push(&vec![b'x'; before]);
        t.push(token.as_bytes());
        t.push(&vec![b'y'; TAIL_MAX + CARRY - 10]);
        assert!(t.line_cut && t.line.starts_with(b"GHIJKLMNOP"), "the cut lands inside the token");
        t.push(format!(" {token} end").as_bytes());
        let out = t.finish();
        assert!(out.len() <= TAIL_MAX);
        assert!(out.ends_with(" *** end"));
        assert!(!out.contains("KLMNOP"));
    }

    #[test]
    fn last_lines_include_the_partial_line() {
        let mut t = Tail::new(Redactor::default(), Default::default());
        t.push(b"a\nb\nc\npartial");
        assert_eq!(t.last_lines(2), vec!["c".to_string(), "partial".to_string()]);
        t.note("timed out");
        assert_eq!(t.last_lines(2), vec!["partial".to_string(), "[sentry] timed out".to_string()]);
    }

    #[test]
    fn invalid_utf8_is_kept_lossily() {
        let mut t = Tail::new(Redactor::default(), Default::default());
        t.push(b"caf\xc3");
        t.push(b"\xa9 \xff\n");
        assert_eq!(t.finish(), "caf\u{e9} \u{fffd}\n");
    }
}

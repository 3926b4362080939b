//! Text shaping shared by messages and tables: one place for "make it one line, cap it".

/// Collapses all whitespace (newlines included) to single spaces.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max` characters, with `…` when something was cut.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The first non-blank line, capped at `max` characters; ` …` marks that more followed, so one
/// long error cannot flood a table.
pub fn first_line(s: &str, max: usize) -> String {
    let first = s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    let mut line: String = first.chars().take(max).collect();
    if first.chars().count() > max || s.trim().lines().count() > 1 {
        line.push_str(" …");
    }
    line
}

/// Characters that reorder or hide text on a terminal without being control characters:
/// bidirectional overrides and isolates ("Trojan Source").
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` safe to print on a terminal: control characters (C0 such as ESC, newline and tab, DEL,
/// C1 such as the one-byte CSI) and bidirectional overrides are shown as escapes (`\x1b`,
/// `\u{202e}`), so a name from a forge or a state file can neither drive the terminal nor fake
/// a line or a column. Everything else is kept.
pub fn terminal_safe(s: &str) -> std::borrow::Cow<'_, str> {
    terminal_safe_keeping(s, &[])
}

/// Like [`terminal_safe`], leaving the characters of `keep` (e.g. newline in a log message) as
/// they are.
pub fn terminal_safe_keeping<'a>(s: &'a str, keep: &[char]) -> std::borrow::Cow<'a, str> {
    let unsafe_char = |c: char| (c.is_control() || is_bidi_control(c)) && !keep.contains(&c);
    if !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !unsafe_char(c) {
            out.push(c);
        } else if u32::from(c) < 0x100 {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// [`terminal_safe`], owned (the name `history` uses).
pub fn printable(s: &str) -> String {
    terminal_safe(s).into_owned()
}

/// The message of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(one_line(" a\n b\t c "), "a b c");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(first_line("\n exit 1\nmore", 200), "exit 1 …");
        assert_eq!(first_line("no space", 200), "no space");
        assert_eq!(first_line(&"x".repeat(300), 200), format!("{} …", "x".repeat(200)));
    }

    #[test]
    fn terminal_escapes_are_shown_not_sent() {
        assert_eq!(terminal_safe("feat/x"), "feat/x");
        assert_eq!(terminal_safe("a\x1b[31mred\x07"), "a\\x1b[31mred\\x07");
        assert_eq!(terminal_safe("a\nb\tc\u{7f}"), "a\\x0ab\\x09c\\x7f");
        assert_eq!(terminal_safe("csi\u{9b}2J"), "csi\\x9b2J");
        assert_eq!(terminal_safe("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(terminal_safe("grüße ✓"), "grüße ✓");
        assert_eq!(terminal_safe_keeping("l1\nl2\x1b", &['\n']), "l1\nl2\\x1b");
    }
}

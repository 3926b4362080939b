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

/// `s` safe for a terminal: control characters (ESC sequences from a branch name a forge
/// returned, say) shown as `\u{..}` escapes instead of acting on the screen.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
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
}

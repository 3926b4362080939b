//! `${VAR}` / `${VAR:-default}` / `$$` expansion of string values (SPEC §2).

/// Expands `input` with `lookup`. A bare `$` not followed by `{` or `$` is kept, so shell text
/// such as `$HOME` or `$(pwd)` reaches the shell untouched. Errors name what is wrong.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in {:?}", crate::text::truncate(input, 60)))?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if !is_var_name(name) {
                return Err(format!("invalid variable name {name:?} in `${{{inner}}}`"));
            }
            match (lookup(name), default) {
                // `:-` means "unset or empty", as in the shell.
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The names written `$NAME` (without braces) in the literal text of `input` (defaults of
/// `${VAR:-default}` included): after expansion they would still be there, a `$` followed by a
/// letter, as the seed's `token: "$GITHUB_TOKEN"` was. Values of variables are not looked at.
pub fn unbraced(input: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else { break };
            if let Some((_, default)) = body[..end].split_once(":-") {
                names.extend(unbraced(default));
            }
            rest = &body[end + 1..];
        } else {
            let end = after.find(|c: char| !(c == '_' || c.is_ascii_alphanumeric())).unwrap_or(after.len());
            let name = &after[..end];
            if name.starts_with(|c: char| c == '_' || c.is_ascii_alphabetic()) {
                names.push(name.to_string());
            }
            rest = &after[end..];
        }
    }
    names
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "USER_NAME" => Some("alice".into()),
            "EMPTY" => Some(String::new()),
            "WEIRD" => Some("a: b\n- c".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_forms() {
        let cases = [
            ("plain", "plain"),
            ("${USER_NAME}", "alice"),
            ("x-${USER_NAME}-y", "x-alice-y"),
            ("${MISSING:-fallback}", "fallback"),
            ("${EMPTY:-fallback}", "fallback"),
            ("${EMPTY}", ""),
            ("${USER_NAME:-fallback}", "alice"),
            ("${MISSING:-}", ""),
            ("$$", "$"),
            ("$${USER_NAME}", "${USER_NAME}"),
            ("cost $5", "cost $5"),
            ("echo $HOME $(pwd) $", "echo $HOME $(pwd) $"),
            ("${WEIRD}", "a: b\n- c"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, env).as_deref(), Ok(want), "input {input:?}");
        }
    }

    #[test]
    fn unbraced_names_in_literal_text_only() {
        assert_eq!(unbraced("$GITHUB_TOKEN"), ["GITHUB_TOKEN"]);
        assert_eq!(unbraced("x-$A-${B}-$$C-${D:-$E}"), ["A", "E"]);
        assert!(unbraced("${TOKEN} cost $5 $").is_empty());
    }

    #[test]
    fn errors_are_specific() {
        assert!(expand("${MISSING}", env).unwrap_err().contains("MISSING is not set"));
        assert!(expand("${OPEN", env).unwrap_err().contains("unterminated"));
        assert!(expand("${1BAD}", env).unwrap_err().contains("invalid variable name"));
    }
}

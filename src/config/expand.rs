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
            let end = body.find('}').ok_or_else(|| format!("unterminated `${{` in {:?}", truncate(input)))?;
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

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
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
    fn errors_are_specific() {
        assert!(expand("${MISSING}", env).unwrap_err().contains("MISSING is not set"));
        assert!(expand("${OPEN", env).unwrap_err().contains("unterminated"));
        assert!(expand("${1BAD}", env).unwrap_err().contains("invalid variable name"));
    }
}

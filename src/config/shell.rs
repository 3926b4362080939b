//! What `validate` can tell about the variables deployment commands use (SPEC §2 v2).
//!
//! Commands are shell code that sentry passes to `sh` verbatim; the shell expands them. These
//! are heuristics for warnings, never errors: a reference outside single quotes (`$NAME`,
//! `${NAME}`, `${NAME:-default}`) and the names a command assigns itself (`NAME=`, `export`,
//! `for NAME in`, `read NAME`).

use regex::Regex;
use std::sync::OnceLock;

/// One `$NAME` or `${NAME...}` a command refers to.
#[derive(Debug, PartialEq, Eq)]
pub struct Reference {
    /// The variable.
    pub name: String,
    /// `${NAME:-x}`, `${NAME-x}`, `${NAME:=x}`, `${NAME:+x}` and the like: fine when unset.
    pub guarded: bool,
}

/// The variables `cmd` refers to, in order, outside single quotes.
pub fn references(cmd: &str) -> Vec<Reference> {
    let b = cmd.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut single, mut double) = (0, false, false);
    while i < b.len() {
        let c = b[i];
        if single {
            single = c != b'\'';
            i += 1;
            continue;
        }
        match c {
            b'\\' => i += 2,
            b'\'' if !double => {
                single = true;
                i += 1;
            }
            b'"' => {
                double = !double;
                i += 1;
            }
            b'$' => {
                let rest = &cmd[i + 1..];
                if let Some(body) = rest.strip_prefix('{') {
                    let inner = body.split('}').next().unwrap_or("");
                    let inner_len = inner.len();
                    let inner = inner.strip_prefix('#').unwrap_or(inner);
                    let name = ident(inner);
                    if !name.is_empty() {
                        let after = &inner[name.len()..];
                        let guarded = [":-", "-", ":=", "=", ":+", "+"].iter().any(|op| after.starts_with(op));
                        out.push(Reference { name: name.to_string(), guarded });
                    }
                    i += 2 + inner_len;
                } else {
                    let name = ident(rest);
                    if !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) {
                        out.push(Reference { name: name.to_string(), guarded: false });
                    }
                    // `$$`, `$?`, `$1`, `$(`: not a variable of the environment.
                    i += 1 + name.len().max(usize::from(rest.starts_with('$')));
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// The longest `[A-Za-z_][A-Za-z0-9_]*` at the start of `s` (digits first give a positional
/// parameter, which callers skip).
fn ident(s: &str) -> &str {
    let end = s.bytes().position(|c| !(c == b'_' || c.is_ascii_alphanumeric())).unwrap_or(s.len());
    &s[..end]
}

/// The names `cmd` assigns: `NAME=value`, `export NAME`, `for NAME in`, `read NAME...`.
pub fn assigned(cmd: &str) -> Vec<String> {
    static PATTERNS: OnceLock<Vec<Regex>> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        [
            r"(?:^|[\s;&|(])([A-Za-z_][A-Za-z0-9_]*)=",
            r"\bfor\s+([A-Za-z_][A-Za-z0-9_]*)\s+in\b",
            r"\b(?:export|local|readonly|declare|typeset|unset)\s+(?:-\w+\s+)*((?:[A-Za-z_][A-Za-z0-9_]*\s*)+)",
            r"\bread\s+(?:-\w+\s+)*((?:[A-Za-z_][A-Za-z0-9_]*\s*)+)",
            r"\bgetopts\s+\S+\s+([A-Za-z_][A-Za-z0-9_]*)",
        ]
        .iter()
        .filter_map(|p| Regex::new(p).ok())
        .collect()
    });
    let mut names = Vec::new();
    for re in patterns {
        for caps in re.captures_iter(cmd) {
            if let Some(m) = caps.get(1) {
                names.extend(m.as_str().split_whitespace().map(String::from));
            }
        }
    }
    names
}

/// Variables the shell itself sets, whatever the environment holds.
pub const SHELL_SET: &[&str] = &[
    "PWD",
    "OLDPWD",
    "IFS",
    "PPID",
    "OPTIND",
    "OPTARG",
    "LINENO",
    "RANDOM",
    "SECONDS",
    "HOSTNAME",
    "UID",
    "EUID",
    "REPLY",
    "PS1",
    "PS2",
    "PS4",
    "SHELLOPTS",
    "BASHPID",
    "BASH",
    "BASH_VERSION",
];

/// Variables sentry sets in every job (SPEC §4), `on_failure` ones included.
pub const SENTRY_SET: &[&str] = &[
    "SENTRY_REPO",
    "SENTRY_GROUP",
    "SENTRY_BRANCH",
    "SENTRY_TAG",
    "SENTRY_REF",
    "SENTRY_COMMIT",
    "SENTRY_PREVIOUS_COMMIT",
    "SENTRY_PROJECT",
    "SENTRY_REPO_URL",
    "SENTRY_QA_DIR",
    "SENTRY_RUN_ID",
    "SENTRY_FAILED_COMMAND",
    "SENTRY_LAST_GOOD_COMMIT",
    "TMPDIR",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn names(cmd: &str) -> Vec<(String, bool)> {
        references(cmd).into_iter().map(|r| (r.name, r.guarded)).collect()
    }

    #[test]
    fn references_outside_single_quotes() {
        let n = |s: &str| (s.to_string(), false);
        assert_eq!(names("echo $A ${B} \"$C\" '$D' \\$E"), [n("A"), n("B"), n("C")]);
        assert_eq!(
            names("echo ${A:-x} ${B-y} ${C:+z} ${#D} ${E:?no}"),
            [("A".into(), true), ("B".into(), true), ("C".into(), true), n("D"), n("E")]
        );
        assert_eq!(names("echo $$ $? $1 $# $(pwd) $((1+2)) $@"), Vec::<(String, bool)>::new());
        assert_eq!(names("echo \"it's $HOME\""), [n("HOME")]);
        assert_eq!(names("echo $$HOME"), Vec::<(String, bool)>::new(), "$$ is the PID, then the text HOME");
    }

    #[test]
    fn assignments_are_found() {
        let a = assigned("export A=1; B=2 cmd; for f in *.yaml; do read -r x y; done; export C D");
        for name in ["A", "B", "f", "x", "y", "C", "D"] {
            assert!(a.iter().any(|n| n == name), "{name} in {a:?}");
        }
    }
}

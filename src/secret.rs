//! Secrets that cannot leak by accident: `Secret` redacts itself, `Redactor` scrubs known tokens from text.

use std::fmt;

/// A credential. `Debug` and `Display` print `***`; the value is reachable only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for the one place that must send it (a header, an askpass answer).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no credential was configured (an empty string counts as none).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replaces every known secret (and the Basic-auth encodings built from it) with `***`.
#[derive(Clone, Default)]
pub struct Redactor {
    // Longest first, so a token that contains another is replaced whole.
    needles: Vec<String>,
}

// By hand: a derived Debug would print every secret it knows.
impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.needles.len())
    }
}

/// The user names git sends with a token when none is configured (GitHub, GitLab, others; see
/// `gitcmd::default_username`). Every token's Basic form with each of them is redacted, so a
/// trace of what git sent (`GIT_TRACE_CURL`) cannot carry `base64(user:token)` past the redactor.
pub const DEFAULT_BASIC_USERS: [&str; 3] = ["x-access-token", "oauth2", "sentry"];

/// Shortest value worth redacting: shorter ones would mangle ordinary text ("a", "ci").
const MIN_SECRET_LEN: usize = 4;

impl Redactor {
    /// Builds a redactor for the given secrets, with the usernames they are paired with for Basic
    /// auth; the Basic forms with the default user names ([`DEFAULT_BASIC_USERS`]) are always
    /// redacted too, whether a user name is configured or not.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (Option<&'a str>, &'a Secret)>) -> Self {
        // One token usually serves thousands of repositories: each pair is encoded once.
        let pairs: std::collections::BTreeSet<(Option<&str>, &str)> =
            pairs.into_iter().map(|(user, secret)| (user, secret.expose())).collect();
        let mut needles = Vec::new();
        for (user, token) in pairs {
            if token.len() < MIN_SECRET_LEN {
                continue;
            }
            needles.push(token.to_string());
            // The Basic header that git and HTTP send is base64("user:token"); redact that form too.
            for user in user.into_iter().chain(DEFAULT_BASIC_USERS) {
                needles.push(base64(format!("{user}:{token}").as_bytes()));
            }
        }
        Redactor::from_needles(needles)
    }

    /// Longest first (a secret inside another is replaced after it), each value once: a token
    /// shared by 10,000 repositories is one needle, not 50,000 (every request merges them).
    fn from_needles(mut needles: Vec<String>) -> Redactor {
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        needles.shrink_to_fit();
        Redactor { needles }
    }

    /// Returns `text` with every known secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), "***");
            }
        }
        out
    }

    /// True when there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// A redactor that knows the secrets of both.
    pub fn merged(&self, other: &Redactor) -> Redactor {
        Redactor::from_needles(self.needles.iter().chain(&other.needles).cloned().collect())
    }
}

/// Standard base64 with padding (RFC 4648), for Basic auth headers.
pub fn base64(input: &[u8]) -> String {
    use ::base64::Engine;
    ::base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("ghp_supersecret");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "input {input:?}");
        }
    }

    #[test]
    fn redactor_scrubs_tokens_and_basic_forms() {
        let t1 = Secret::new("tok-abcdef");
        let t2 = Secret::new("tok-abcdef-longer");
        let r = Redactor::new([(Some("bob"), &t1), (None, &t2)]);
        let basic = base64(b"bob:tok-abcdef");
        let text = format!("a tok-abcdef-longer b tok-abcdef c Basic {basic}");
        assert_eq!(r.redact(&text), "a *** b *** c Basic ***");
        let other = Secret::new("tok-abcdef-longer-still");
        let both = Redactor::new([(None, &other)]).merged(&r);
        assert_eq!(both.redact("tok-abcdef-longer-still tok-abcdef"), "*** ***");
    }

    #[test]
    fn redactor_debug_prints_no_secret() {
        let r = Redactor::new([(Some("bob"), &Secret::new("tok-abcdef"))]);
        assert_eq!(format!("{r:?}"), "Redactor(5 secrets)");
    }

    #[test]
    fn redactor_scrubs_the_basic_form_with_every_default_user() {
        // No user name configured: git sends one of the defaults (issue 16, item 8).
        let t = Secret::new("tok-abcdef");
        let r = Redactor::new([(None, &t)]);
        for user in DEFAULT_BASIC_USERS {
            let basic = base64(format!("{user}:tok-abcdef").as_bytes());
            assert_eq!(r.redact(&format!("Authorization: Basic {basic}")), "Authorization: Basic ***", "{user}");
        }
    }

    #[test]
    fn redactor_ignores_tiny_values() {
        let r = Redactor::new([(None, &Secret::new("ab"))]);
        assert!(r.is_empty());
        assert_eq!(r.redact("abc"), "abc");
    }

    #[test]
    fn a_shared_token_is_one_set_of_needles_however_many_repositories_use_it() {
        let t = Secret::new("tok-shared-123456");
        let one = Redactor::new([(None, &t)]);
        let many = Redactor::new(std::iter::repeat_n((None, &t), 10_000));
        assert_eq!(many.needles, one.needles);
        assert_eq!(many.merged(&one).needles, one.needles);
        assert_eq!(many.redact("Bearer tok-shared-123456"), "Bearer ***");
    }
}

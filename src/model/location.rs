//! Where the state lives (`--state`, SPEC §1): parsed once, by the command line and the config.

use std::fmt;
use std::path::PathBuf;

/// A state location: a JSON file or a ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A JSON file.
    File(PathBuf),
    /// A ConfigMap; `namespace` None means the pod's own.
    ConfigMap {
        /// Namespace, if given.
        namespace: Option<String>,
        /// ConfigMap name.
        name: String,
    },
}

/// Where the state lives when neither `--state`, `SENTRY_STATE` nor `global.state` says.
pub const DEFAULT_LOCATION: &str = "./sentry-state.json";

impl Location {
    /// Parses `PATH`, `configmap:NAME` or `configmap:NAMESPACE/NAME`.
    pub fn parse(s: &str) -> Result<Location, String> {
        let Some(rest) = s.strip_prefix("configmap:") else {
            if s.is_empty() {
                return Err("state location is empty".into());
            }
            return Ok(Location::File(s.into()));
        };
        let (namespace, name) = match rest.split_once('/') {
            Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
            None => (None, rest.to_string()),
        };
        if let Some(ns) = &namespace
            && !is_dns_label(ns)
        {
            return Err(format!("invalid ConfigMap namespace {ns:?} in state location {s:?}"));
        }
        if !is_dns_subdomain(&name.replace("{shard}", "0")) {
            return Err(format!("invalid ConfigMap name {name:?} in state location {s:?}"));
        }
        Ok(Location::ConfigMap { namespace, name })
    }
}

impl Location {
    /// True when the location holds `{shard}` (SPEC §1: required with `--shard`).
    pub fn is_sharded(&self) -> bool {
        self.to_string().contains("{shard}")
    }

    /// The location of shard `index`: `{shard}` replaced by the number.
    pub fn for_shard(&self, index: u32) -> Location {
        let n = index.to_string();
        match self {
            Location::File(p) => Location::File(p.to_string_lossy().replace("{shard}", &n).into()),
            Location::ConfigMap { namespace, name } => {
                Location::ConfigMap { namespace: namespace.clone(), name: name.replace("{shard}", &n) }
            }
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::ConfigMap { namespace: Some(ns), name } => write!(f, "configmap:{ns}/{name}"),
            Location::ConfigMap { namespace: None, name } => write!(f, "configmap:{name}"),
        }
    }
}

/// A Kubernetes DNS label (RFC 1123): `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, at most 63 bytes.
/// The one copy of the rule: namespaces, `project_name`, and Helm-ish names use it.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A Kubernetes DNS subdomain (object names): dot-separated labels, at most 253 bytes.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        assert_eq!(Location::parse("./s.json"), Ok(Location::File("./s.json".into())));
        assert_eq!(
            Location::parse("configmap:sentry-state"),
            Ok(Location::ConfigMap { namespace: None, name: "sentry-state".into() })
        );
        assert_eq!(
            Location::parse("configmap:ops/sentry.state"),
            Ok(Location::ConfigMap { namespace: Some("ops".into()), name: "sentry.state".into() })
        );
        assert!(Location::parse("configmap:").is_err());
        assert!(Location::parse("configmap:Bad_Name").is_err());
        assert!(Location::parse("configmap:a..b").is_err());
        assert!(Location::parse("configmap:o.ps/x").is_err());
        assert!(Location::parse("").is_err());
    }

    #[test]
    fn dns_labels() {
        for ok in ["a", "rag", "a-b", "0a9", &"x".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }
}

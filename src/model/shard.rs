//! Shards (SPEC §1 v2): which repositories one process of a Kubernetes Indexed Job handles.

use std::fmt;

/// `--shard I/N`: this process handles shard `index` of `count`; `all/N` (status, history)
/// reads every shard's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 0-based; `None` for `all/N`.
    pub index: Option<u32>,
    /// How many shards there are (at least 1).
    pub count: u32,
}

/// Most shards: an Indexed Job of more pods than this is a mistake, not a plan.
pub const MAX_SHARDS: u32 = 1000;

impl Shard {
    /// Parses `I/N`, `all/N`, or `auto/N` with I from `JOB_COMPLETION_INDEX` (`index_env`).
    pub fn parse(s: &str, index_env: Option<&str>) -> Result<Shard, String> {
        let (i, n) =
            s.split_once('/').ok_or_else(|| format!("--shard {s:?}: expected I/N, auto/N or all/N (e.g. 0/4)"))?;
        let count: u32 = n
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=MAX_SHARDS).contains(n))
            .ok_or_else(|| format!("--shard {s:?}: N must be a whole number from 1 to {MAX_SHARDS}"))?;
        let index = match i.trim() {
            "all" => None,
            "auto" => {
                let raw = index_env.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                    format!(
                        "--shard {s:?}: JOB_COMPLETION_INDEX is not set (auto/N is for the pods of a Kubernetes Indexed Job; elsewhere give I/N)"
                    )
                })?;
                Some(raw.trim().parse().map_err(|_| format!("JOB_COMPLETION_INDEX {raw:?} is not a shard number"))?)
            }
            i => Some(i.parse().map_err(|_| format!("--shard {s:?}: I must be a whole number, auto or all"))?),
        };
        if let Some(i) = index
            && i >= count
        {
            return Err(format!("--shard {s:?}: shard {i} does not exist (0 to {})", count - 1));
        }
        Ok(Shard { index, count })
    }

    /// The shard a repository belongs to: FNV-1a 64 of its group name (a group is never
    /// split) or else its own name, modulo N.
    pub fn of(key: &str, count: u32) -> u32 {
        (fnv1a64(key.as_bytes()) % u64::from(count.max(1))) as u32
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "{i}/{}", self.count),
            None => write!(f, "all/{}", self.count),
        }
    }
}

/// 64-bit FNV-1a: stable across Rust versions and machines, unlike `DefaultHasher`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(Shard::parse("1/4", None), Ok(Shard { index: Some(1), count: 4 }));
        assert_eq!(Shard::parse("all/3", None), Ok(Shard { index: None, count: 3 }));
        assert_eq!(Shard::parse("auto/3", Some("2")), Ok(Shard { index: Some(2), count: 3 }));
        assert!(Shard::parse("auto/3", None).is_err_and(|e| e.contains("JOB_COMPLETION_INDEX")));
        assert!(Shard::parse("auto/3", Some("3")).is_err());
        for bad in ["4/4", "x/2", "1/0", "1", "1/1001", "-1/2"] {
            assert!(Shard::parse(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        // From the FNV reference (draft-eastlake-fnv): "" and "a".
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}

//! Sharding: `--shard K/N` splits an organization's accounts between N
//! workers that run at the same time, each with its own progress store,
//! all sharing the archive and its findings ledger.
//!
//! An account belongs to shard `fnv1a64(account id) mod N`, where
//! `fnv1a64` is the 64-bit FNV-1a hash of the account id's ASCII bytes
//! (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`). The function
//! is part of the contract: it never changes between versions, so a shard's
//! store keeps covering the same accounts. Chains never cross accounts, so
//! each shard validates whole chains. An organization trail's member
//! folders split the same way (by the member account, not the reader).

use std::fmt;

/// The FNV-1a 64-bit offset basis.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// The FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// The most shards a run may be split into.
pub const MAX_SHARDS: u32 = 10_000;

/// 64-bit FNV-1a of `bytes`. Pinned by tests: never change it.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
    })
}

/// The shard (0-based) of `account_id` among `count` shards.
pub fn shard_of(account_id: &str, count: u32) -> u32 {
    // `count` ≥ 1 for every `Shard`; the remainder fits in a u32.
    (fnv1a64(account_id.as_bytes()) % u64::from(count.max(1))) as u32
}

/// One shard of N: this process covers the accounts whose [`shard_of`] is
/// `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// Shard `index` of `count`: `count` ≥ 1 (at most [`MAX_SHARDS`]) and
    /// `index` < `count`.
    pub fn new(index: u32, count: u32) -> Result<Shard, String> {
        if count == 0 {
            return Err("the shard count N must be at least 1".to_string());
        }
        if count > MAX_SHARDS {
            return Err(format!(
                "the shard count N is {count}; at most {MAX_SHARDS} shards"
            ));
        }
        if index >= count {
            return Err(format!(
                "shard index {index} is not below the shard count {count} (shards are numbered 0 to {})",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether this shard covers `account_id`.
    pub fn owns(&self, account_id: &str) -> bool {
        shard_of(account_id, self.count) == self.index
    }

    /// `shard-K-of-N`: names the shard's store and its ledger objects.
    pub fn label(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl serde::Serialize for Shard {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Shard {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Shard, D::Error> {
        let text = String::deserialize(deserializer)?;
        // Recorded shards are always `K/N`: never read from the environment.
        parse(&text, &|_| None).map_err(serde::de::Error::custom)
    }
}

/// Whether `shard` (none: every account) covers `account_id`.
pub fn covers(shard: Option<&Shard>, account_id: &str) -> bool {
    shard.is_none_or(|shard| shard.owns(account_id))
}

/// Where the shard index comes from when the command line says `env/N`:
/// an AWS Batch array job's child index, else a Kubernetes Indexed Job's
/// completion index.
pub const INDEX_VARIABLES: [&str; 2] = ["AWS_BATCH_JOB_ARRAY_INDEX", "JOB_COMPLETION_INDEX"];

/// Parses `K/N`, or `env/N` with K read through `lookup` from the first of
/// [`INDEX_VARIABLES`] that is set. The error names what is wrong.
pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Shard, String> {
    let Some((index, count)) = text.trim().split_once('/') else {
        return Err(format!(
            "`{text}` is not a shard: write K/N (e.g. 0/3) or env/N"
        ));
    };
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("`{text}`: the shard count N must be a whole number"))?;
    let index = index.trim();
    let index: u32 = if index.eq_ignore_ascii_case("env") {
        let (variable, value) = INDEX_VARIABLES
            .iter()
            .find_map(|name| lookup(name).map(|value| (*name, value)))
            .ok_or_else(|| {
                format!(
                    "`{text}`: the shard index comes from {} but neither is set",
                    INDEX_VARIABLES.join(" or ")
                )
            })?;
        value
            .trim()
            .parse()
            .map_err(|_| format!("`{text}`: {variable}=`{value}` is not a whole number"))?
    } else {
        index
            .parse()
            .map_err(|_| format!("`{text}`: the shard index K must be a whole number or `env`"))?
    };
    Shard::new(index, count).map_err(|error| format!("`{text}`: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_hash_is_fnv1a_64_and_never_changes() {
        // Reference vectors of FNV-1a 64.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
        // Pinned account values: a change here moves accounts between
        // shards, which strands their stores' progress.
        assert_eq!(fnv1a64(b"111111111111"), 0x10ac5f195b28dea1);
        assert_eq!(shard_of("111111111111", 3), 0);
        assert_eq!(shard_of("222222222222", 3), 0);
        assert_eq!(shard_of("333333333333", 3), 1);
        assert_eq!(shard_of("123456789012", 3), 2);
        assert_eq!(shard_of("123456789012", 1), 0);
    }

    #[test]
    fn every_account_is_in_exactly_one_shard() {
        for count in [1u32, 2, 3, 7, 16] {
            let shards: Vec<Shard> = (0..count).map(|k| Shard::new(k, count).unwrap()).collect();
            let mut sizes = BTreeMap::new();
            for n in 0..3000u64 {
                let account = format!("{:012}", 100_000_000_000 + n * 7919);
                let owners: Vec<&Shard> = shards.iter().filter(|s| s.owns(&account)).collect();
                assert_eq!(owners.len(), 1, "{account} in {count} shards");
                *sizes.entry(owners[0].index()).or_insert(0u32) += 1;
            }
            // Roughly even: no shard is empty or holds more than twice its share.
            assert_eq!(sizes.len() as u32, count);
            let share = 3000 / count;
            assert!(
                sizes.values().all(|&n| n > share / 2 && n < share * 2),
                "{sizes:?}"
            );
        }
    }

    #[test]
    fn shards_parse_and_refuse_clearly() {
        let none = |_: &str| None;
        assert_eq!(parse("2/3", &none).unwrap(), Shard::new(2, 3).unwrap());
        assert_eq!(parse("0/1", &none).unwrap().label(), "shard-0-of-1");
        assert_eq!(parse("1/4", &none).unwrap().to_string(), "1/4");
        let error = parse("3/3", &none).unwrap_err();
        assert!(error.contains("not below the shard count 3"), "{error}");
        assert!(parse("0/0", &none).unwrap_err().contains("at least 1"));
        assert!(parse("-1/3", &none).unwrap_err().contains("whole number"));
        assert!(parse("3", &none).unwrap_err().contains("K/N"));
        assert!(parse("1/x", &none).unwrap_err().contains("shard count"));
        assert!(parse("0/10001", &none).unwrap_err().contains("at most"));
        let error = parse("env/3", &none).unwrap_err();
        assert!(error.contains("AWS_BATCH_JOB_ARRAY_INDEX"), "{error}");

        let batch = |name: &str| (name == "AWS_BATCH_JOB_ARRAY_INDEX").then(|| "1".to_string());
        assert_eq!(parse("env/3", &batch).unwrap(), Shard::new(1, 3).unwrap());
        let k8s = |name: &str| (name == "JOB_COMPLETION_INDEX").then(|| "2".to_string());
        assert_eq!(parse("ENV/3", &k8s).unwrap(), Shard::new(2, 3).unwrap());
        let both = |name: &str| {
            Some(
                if name == "AWS_BATCH_JOB_ARRAY_INDEX" {
                    "0"
                } else {
                    "2"
                }
                .to_string(),
            )
        };
        assert_eq!(parse("env/3", &both).unwrap().index(), 0);
        let wrong = |_: &str| Some("5".to_string());
        assert!(parse("env/3", &wrong).unwrap_err().contains("not below"));
        let junk = |_: &str| Some("x".to_string());
        assert!(parse("env/3", &junk)
            .unwrap_err()
            .contains("is not a whole number"));
    }

    #[test]
    fn no_shard_covers_everything() {
        assert!(covers(None, "111111111111"));
        let shard = Shard::new(1, 3).unwrap();
        assert!(!covers(Some(&shard), "111111111111"));
        assert!(covers(Some(&shard), "333333333333"));
    }
}

//! The public keys validation uses: a file shaped like `aws cloudtrail
//! list-public-keys` output, or CloudTrail `ListPublicKeys` cached in the
//! store (`progress::pubkey`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use tokio::sync::Mutex;
use tracing::warn;

use crate::cloudtrail::public_keys::{parse_list_public_keys_json, KeyRing, PublicKey};
use crate::model::error::SeamError;
use crate::progress::pubkey;
use crate::seams::{KeyProvider, ProgressStore, PublicKeyDirectory};
use crate::verify::StaticKeys;

/// Keys from a file shaped like `aws cloudtrail list-public-keys` output
/// (PKCS#1 or SPKI values); they apply to every region. The error is the
/// message to show.
pub fn keys_from_file(path: &Path) -> Result<StaticKeys, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read public keys file {}: {e}", path.display()))?;
    let keys = parse_list_public_keys_json(&bytes)
        .map_err(|e| format!("public keys file {}: {e}", path.display()))?;
    let mut ring = KeyRing::new();
    for key in keys {
        ring.insert_for_all_regions(key)
            .map_err(|e| format!("public keys file {}: {e}", path.display()))?;
    }
    Ok(StaticKeys(ring))
}

/// Time windows already asked of `ListPublicKeys`, per region.
type AskedWindows = BTreeMap<String, Vec<(DateTime<Utc>, DateTime<Utc>)>>;

/// CloudTrail `ListPublicKeys` called by the audit identity in the delivering
/// region, cached in the store so later runs and offline validation need no
/// call.
pub struct CloudTrailKeys {
    directory: Arc<dyn PublicKeyDirectory>,
    store: Arc<dyn ProgressStore>,
    /// Windows already answered in this run, per region: a miss is not
    /// repeated for every digest of an unknown fingerprint.
    asked: Mutex<AskedWindows>,
    /// Regions whose `ListPublicKeys` failed in this run, with the error:
    /// not called again for every digest (validation keeps the digests
    /// pending, `verify::KeyFailure`).
    failed: Mutex<BTreeMap<String, SeamError>>,
}

impl CloudTrailKeys {
    pub fn new(
        directory: Arc<dyn PublicKeyDirectory>,
        store: Arc<dyn ProgressStore>,
    ) -> CloudTrailKeys {
        CloudTrailKeys {
            directory,
            store,
            asked: Mutex::new(BTreeMap::new()),
            failed: Mutex::new(BTreeMap::new()),
        }
    }
}

#[async_trait]
impl KeyProvider for CloudTrailKeys {
    async fn find(
        &self,
        region: &str,
        fingerprint: &str,
        around: DateTime<Utc>,
    ) -> Result<Option<PublicKey>, SeamError> {
        if let Some(key) = pubkey::get(self.store.as_ref(), region, fingerprint)
            .ok()
            .flatten()
        {
            return Ok(Some(key));
        }
        let (start, end) = (around - Duration::hours(1), around + Duration::hours(2));
        if let Some(error) = self.failed.lock().await.get(region) {
            return Err(error.clone());
        }
        {
            let asked = self.asked.lock().await;
            let windows = asked.get(region).map(Vec::as_slice).unwrap_or_default();
            if windows.iter().any(|(s, e)| *s <= start && end <= *e) {
                return Ok(None);
            }
        }
        // A window counts as asked only once it was answered: a failed call
        // is not a "no such key".
        let keys = match self.directory.list_public_keys(region, (start, end)).await {
            Ok(keys) => keys,
            Err(error) => {
                self.failed
                    .lock()
                    .await
                    .insert(region.to_string(), error.clone());
                return Err(error);
            }
        };
        self.asked
            .lock()
            .await
            .entry(region.to_string())
            .or_default()
            .push((start, end));
        let mut found = None;
        for api_key in keys {
            let key = match PublicKey::from_der(&api_key.der) {
                Ok(key) => key.with_validity(api_key.validity_start, api_key.validity_end),
                Err(error) => {
                    warn!(region, %error, "ignoring a public key CloudTrail returned that does not parse");
                    continue;
                }
            };
            // The API's fingerprint must be the MD5 of the DER it returned.
            if api_key
                .fingerprint
                .as_deref()
                .is_some_and(|listed| !listed.eq_ignore_ascii_case(key.fingerprint()))
            {
                warn!(region, listed = ?api_key.fingerprint, computed = key.fingerprint(), "ignoring a public key whose fingerprint does not match its bytes");
                continue;
            }
            pubkey::put(self.store.as_ref(), region, &key)?;
            if key.fingerprint().eq_ignore_ascii_case(fingerprint) {
                found = Some(key);
            }
        }
        Ok(found)
    }
}

/// The keys of one validation: the file when one is given (`--public-keys`
/// first, then the configuration), otherwise `ListPublicKeys` cached in the
/// store.
pub fn key_provider(
    file: Option<&Path>,
    directory: &Arc<dyn PublicKeyDirectory>,
    store: &Arc<dyn ProgressStore>,
) -> Result<Box<dyn KeyProvider>, String> {
    Ok(match file {
        Some(path) => Box::new(keys_from_file(path)?),
        None => Box::new(CloudTrailKeys::new(directory.clone(), store.clone())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seams::ListedPublicKey;
    use crate::testsuite::memory::{MemoryPublicKeys, MemoryStore};
    use std::sync::atomic::Ordering;

    #[tokio::test]
    async fn listed_keys_are_cached_in_the_store_and_misses_not_repeated() {
        let der = sample_der();
        let key = PublicKey::from_der(&der).unwrap();
        let directory = Arc::new(MemoryPublicKeys::default());
        directory.keys.lock().unwrap().push((
            "eu-west-1".to_string(),
            ListedPublicKey {
                der: der.clone(),
                fingerprint: Some(key.fingerprint().to_ascii_uppercase()),
                validity_start: None,
                validity_end: None,
            },
        ));
        let store = Arc::new(MemoryStore::default());
        let keys = CloudTrailKeys::new(directory.clone(), store.clone());
        let around = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        let found = keys
            .find("eu-west-1", key.fingerprint(), around)
            .await
            .unwrap();
        assert_eq!(found.map(|k| k.der().to_vec()), Some(der.clone()));
        assert!(store
            .get_state(&format!("pubkey/eu-west-1/{}", key.fingerprint()))
            .unwrap()
            .is_some());
        // Cached: no second call; an unknown key in the same window: no call either.
        let again = CloudTrailKeys::new(directory.clone(), store.clone());
        assert!(again
            .find("eu-west-1", key.fingerprint(), around)
            .await
            .unwrap()
            .is_some());
        assert_eq!(directory.calls.load(Ordering::Relaxed), 1);
        assert!(keys
            .find("eu-west-1", "00", around)
            .await
            .unwrap()
            .is_none());
        assert_eq!(directory.calls.load(Ordering::Relaxed), 1);
    }

    /// Fails every call while `failing` is set, then lists `keys`.
    struct FlakyDirectory {
        keys: MemoryPublicKeys,
        failing: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl PublicKeyDirectory for FlakyDirectory {
        async fn list_public_keys(
            &self,
            region: &str,
            window: (DateTime<Utc>, DateTime<Utc>),
        ) -> Result<Vec<ListedPublicKey>, SeamError> {
            if self.failing.load(Ordering::Relaxed) {
                self.keys.calls.fetch_add(1, Ordering::Relaxed);
                return Err(SeamError::Transient("ThrottlingException".into()));
            }
            self.keys.list_public_keys(region, window).await
        }
    }

    #[tokio::test]
    async fn a_failed_call_is_an_error_not_a_missing_key() {
        let der = sample_der();
        let key = PublicKey::from_der(&der).unwrap();
        let directory = Arc::new(FlakyDirectory {
            keys: MemoryPublicKeys::default(),
            failing: true.into(),
        });
        directory.keys.keys.lock().unwrap().push((
            "eu-west-1".to_string(),
            ListedPublicKey {
                der,
                fingerprint: None,
                validity_start: None,
                validity_end: None,
            },
        ));
        let store = Arc::new(MemoryStore::default());
        let keys = CloudTrailKeys::new(directory.clone(), store.clone());
        let around = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        for _ in 0..3 {
            assert!(keys
                .find("eu-west-1", key.fingerprint(), around)
                .await
                .is_err());
        }
        assert_eq!(
            directory.keys.calls.load(Ordering::Relaxed),
            1,
            "a failing region is not called again in the run"
        );
        // The next run asks again, and the window is not taken for answered.
        directory.failing.store(false, Ordering::Relaxed);
        let next_run = CloudTrailKeys::new(directory.clone(), store);
        assert!(next_run
            .find("eu-west-1", key.fingerprint(), around)
            .await
            .unwrap()
            .is_some());
    }

    /// The DER of the first key of the AWS CLI's `list-public-keys` example.
    fn sample_der() -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/aws-cli-list-public-keys-example.json");
        let keys = parse_list_public_keys_json(&std::fs::read(path).unwrap()).unwrap();
        keys[0].der().to_vec()
    }
}

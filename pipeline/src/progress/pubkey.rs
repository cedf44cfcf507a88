//! `pubkey/<region>/<fingerprint>` — a CloudTrail public key that
//! `ListPublicKeys` returned for a delivering region, cached so later runs and
//! offline validation need no call. The value is the key's DER, base64.

use base64::Engine as _;

use crate::cloudtrail::public_keys::PublicKey;
use crate::model::error::SeamError;
use crate::seams::ProgressStore;

fn name(region: &str, fingerprint: &str) -> String {
    format!("pubkey/{region}/{}", fingerprint.to_ascii_lowercase())
}

/// The cached key with `fingerprint` for `region`; `None` when none is
/// cached or the cached bytes do not decode.
pub fn get(
    store: &dyn ProgressStore,
    region: &str,
    fingerprint: &str,
) -> Result<Option<PublicKey>, SeamError> {
    let Some(bytes) = store.get_state(&name(region, fingerprint))? else {
        return Ok(None);
    };
    Ok(base64::engine::general_purpose::STANDARD
        .decode(bytes)
        .ok()
        .and_then(|der| PublicKey::from_der(&der).ok()))
}

/// Caches `key` for `region` under its fingerprint.
pub fn put(store: &dyn ProgressStore, region: &str, key: &PublicKey) -> Result<(), SeamError> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(key.der());
    store.put_state(&name(region, key.fingerprint()), encoded.as_bytes())
}

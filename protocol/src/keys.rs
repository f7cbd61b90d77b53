//! Signing keys and public keys (ed25519).
//!
//! A node's libp2p ed25519 identity key is its signing key: the 32-byte seed of a libp2p
//! `ed25519::SecretKey` is exactly the seed [`Keypair::from_seed`] takes, and [`PublicKey`]
//! holds the same 32 bytes libp2p puts in the peer id.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{LazyLock, Mutex, PoisonError};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::error::ProtocolError;

/// An ed25519 public key, the identity of a signer. Displayed as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The raw 32 bytes (the compressed Edwards point).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as an ed25519-dalek verifying key; fails for bytes that are not a curve point or
    /// that are a weak (small-order) key, which pvl never accepts as a signer.
    ///
    /// Decoded keys are kept in a small process-wide cache (see [`KeyCache`]): decompressing
    /// the point is about a fifth of the cost of a verification, and a node verifies the same
    /// few signers over and over.
    pub fn verifying_key(&self) -> Result<VerifyingKey, ProtocolError> {
        if let Some(key) = KEY_CACHE.get(&self.0) {
            return Ok(key);
        }
        let key = self.decode()?;
        KEY_CACHE.insert(self.0, key);
        Ok(key)
    }

    /// Decodes and checks the point, without the cache.
    fn decode(&self) -> Result<VerifyingKey, ProtocolError> {
        let key = VerifyingKey::from_bytes(&self.0)
            .map_err(|_| ProtocolError::field("signer", "not a valid ed25519 public key"))?;
        if key.is_weak() {
            return Err(ProtocolError::field(
                "signer",
                "weak (small-order) ed25519 key",
            ));
        }
        Ok(key)
    }

    /// The first 8 hex digits, for logs and human-readable output.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

/// Verifying keys already decoded, shared by the process. Only valid keys get in (a key that
/// fails to decode is an error every time). Bounded by two generations of at most
/// [`KeyCache::GENERATION`] keys each: when the current one is full it becomes the old one and
/// the oldest is dropped, and a key found in the old generation moves back into the current
/// one. So the signers a node hears from all the time stay decoded, and a flood of new signers
/// costs at most two generations of memory (about 2 × 4,096 × 200 bytes).
struct KeyCache {
    /// The current generation, then the old one.
    generations: Mutex<(KeyMap, KeyMap)>,
}

/// Decoded keys by their bytes.
type KeyMap = HashMap<[u8; 32], VerifyingKey>;

impl KeyCache {
    /// Most keys in one generation.
    const GENERATION: usize = 4096;

    fn get(&self, bytes: &[u8; 32]) -> Option<VerifyingKey> {
        let mut guard = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (current, old) = &mut *guard;
        if let Some(key) = current.get(bytes) {
            return Some(*key);
        }
        let key = old.remove(bytes)?;
        Self::add(current, old, *bytes, key);
        Some(key)
    }

    fn insert(&self, bytes: [u8; 32], key: VerifyingKey) {
        let mut guard = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (current, old) = &mut *guard;
        Self::add(current, old, bytes, key);
    }

    fn add(current: &mut KeyMap, old: &mut KeyMap, bytes: [u8; 32], key: VerifyingKey) {
        if current.len() >= Self::GENERATION {
            *old = std::mem::take(current);
        }
        current.insert(bytes, key);
    }
}

static KEY_CACHE: LazyLock<KeyCache> = LazyLock::new(|| KeyCache {
    generations: Mutex::new((HashMap::new(), HashMap::new())),
});

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| ProtocolError::field("public_key", format!("not 64 hex digits: {e}")))?;
        Ok(PublicKey(out))
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// From the same 64 hex digits it serializes to (JSON views and the control API; the wire
/// format is CBOR bytes, not this).
impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An ed25519 signing key. Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// The keypair whose secret seed is `seed` (RFC 8032 private key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Keypair {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// A new random keypair from the operating system's random source.
    pub fn generate() -> Result<Self, ProtocolError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| ProtocolError::Encode(format!("no system randomness: {e}")))?;
        Ok(Self::from_seed(seed))
    }

    /// The secret seed. Handle with care: whoever has it can sign as this node.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// A raw ed25519 signature over `message`.
    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        crate::counters::count_signature();
        self.signing.sign(message).to_bytes()
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Keypair {{ public: {}, secret: <redacted> }}",
            self.public()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_secret() {
        let key = Keypair::from_seed([7; 32]);
        let shown = format!("{key:?}");
        assert!(shown.contains("redacted"));
        assert!(!shown.contains(&hex::encode(key.seed())));
    }

    #[test]
    fn seed_round_trip_and_public_key_parse() {
        let key = Keypair::generate().unwrap();
        assert_eq!(Keypair::from_seed(key.seed()).public(), key.public());
        let text = key.public().to_string();
        assert_eq!(text.parse::<PublicKey>().unwrap(), key.public());
    }

    #[test]
    fn weak_and_invalid_keys_are_refused() {
        // The identity point (small order) is a weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(PublicKey(identity).verifying_key().is_err());
        assert!(Keypair::from_seed([1; 32]).public().verifying_key().is_ok());
        // Refused again: a refused key is never cached.
        assert!(PublicKey(identity).verifying_key().is_err());
    }

    #[test]
    fn the_key_cache_keeps_hot_keys_and_stays_bounded() {
        let cache = KeyCache {
            generations: Mutex::new((HashMap::new(), HashMap::new())),
        };
        let hot = Keypair::from_seed([9; 32]).public();
        let hot_key = hot.decode().unwrap();
        cache.insert(hot.0, hot_key);
        let one = Keypair::from_seed([3; 32]).public().decode().unwrap();
        // Three generations of other keys, the hot one asked for all along.
        for i in 0..3 * KeyCache::GENERATION {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
            cache.insert(bytes, one);
            if i % 1000 == 0 {
                assert_eq!(cache.get(&hot.0), Some(hot_key), "after {i} other keys");
            }
            let (current, old) = &*cache.generations.lock().unwrap();
            assert!(current.len() <= KeyCache::GENERATION);
            assert!(old.len() <= KeyCache::GENERATION);
        }
        // A key not asked for since two generations ago is gone.
        let mut first = [0u8; 32];
        first[..8].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(cache.get(&first), None);
        // The cached key verifies what the decoded one verifies.
        let signer = Keypair::from_seed([9; 32]);
        let signature = signer.sign_raw(b"message");
        let cached = hot.verifying_key().unwrap();
        assert!(
            cached
                .verify_strict(
                    b"message",
                    &ed25519_dalek::Signature::from_bytes(&signature)
                )
                .is_ok()
        );
    }
}

//! Signing keys and public keys (ed25519).
//!
//! A node's libp2p ed25519 identity key is its signing key: the 32-byte seed of a libp2p
//! `ed25519::SecretKey` is exactly the seed [`Keypair::from_seed`] takes, and [`PublicKey`]
//! holds the same 32 bytes libp2p puts in the peer id.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{LazyLock, Mutex, PoisonError};

use curve25519_dalek::constants::EIGHT_TORSION;
use ed25519_dalek::ed25519::signature::{MultipartSigner, MultipartVerifier};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};

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
#[derive(Default)]
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

static KEY_CACHE: LazyLock<KeyCache> = LazyLock::new(KeyCache::default);

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
    #[cfg(test)]
    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.sign_parts(&[message])
    }

    /// A raw ed25519 signature over the concatenation of `parts` (the signing input without
    /// copying it into one buffer).
    pub(crate) fn sign_parts(&self, parts: &[&[u8]]) -> [u8; 64] {
        crate::counters::count_signature();
        self.signing.multipart_sign(parts).to_bytes()
    }
}

/// The canonical encodings of the eight points of small order (the 8-torsion subgroup).
static SMALL_ORDER_ENCODINGS: LazyLock<[[u8; 32]; 8]> =
    LazyLock::new(|| EIGHT_TORSION.map(|point| point.compress().to_bytes()));

/// Strict verification of `signature` by `key` over the concatenation of `parts`: exactly
/// ed25519-dalek's `verify_strict` rule (SPEC.md §3), at the cost of a plain verification.
///
/// `verify_strict` decompresses `R` to refuse a small-order one, which costs about as much as
/// a fifth of the verification. It is not needed: the plain check computes
/// `R' = [s]B - [k]A` and accepts only if `R`'s bytes are `R'`'s canonical encoding, so `R`
/// then decodes (to `R'`), and it is of small order exactly when its bytes are one of the
/// eight canonical encodings of the small-order points. The other rules are the same in both:
/// `S` must be canonical (`S < L`), and the key must not be of small order (checked here too,
/// though [`PublicKey::verifying_key`] already refuses such keys). The test
/// `strict_rule_matches_verify_strict` holds both functions to the same answers, on forged
/// signatures with a small-order `R` included.
pub(crate) fn verify_strict(key: &VerifyingKey, parts: &[&[u8]], signature: &[u8; 64]) -> bool {
    let signature = Signature::from_bytes(signature);
    !key.is_weak()
        && !SMALL_ORDER_ENCODINGS.contains(signature.r_bytes())
        && key.multipart_verify(parts, &signature).is_ok()
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
        let cache = KeyCache::default();
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

#[cfg(test)]
mod strict_tests {
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::scalar::Scalar;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    use sha2::{Digest, Sha512};

    use super::{Keypair, SMALL_ORDER_ENCODINGS, verify_strict};

    /// What ed25519-dalek's own `verify_strict` says.
    fn dalek_strict(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> bool {
        key.verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }

    fn plain(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> bool {
        key.verify(message, &Signature::from_bytes(signature))
            .is_ok()
    }

    /// A signature `(R, s)` made with secret scalar `a` for public point `a_point`, with `R`
    /// chosen by the forger and `s = k·a` (so `[s]B - [k]A` is `-[k]` times A's torsion part).
    fn forged(r: [u8; 32], a: &Scalar, a_point: &EdwardsPoint, message: &[u8]) -> [u8; 64] {
        let mut h = Sha512::new();
        h.update(r);
        h.update(a_point.compress().as_bytes());
        h.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s = k * a;
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&r);
        signature[32..].copy_from_slice(s.as_bytes());
        signature
    }

    #[test]
    fn the_small_order_encodings_are_eight_distinct_small_order_points() {
        let mut seen = std::collections::HashSet::new();
        for bytes in SMALL_ORDER_ENCODINGS.iter() {
            let point = CompressedEdwardsY(*bytes).decompress().unwrap();
            assert!(point.is_small_order());
            assert_eq!(point.compress().to_bytes(), *bytes, "canonical");
            seen.insert(*bytes);
        }
        assert_eq!(seen.len(), 8);
    }

    #[test]
    fn strict_rule_matches_verify_strict() {
        let mut cases = 0;
        // Honest signatures, and the same with the message, R or S changed.
        for i in 0..32u8 {
            let signer = Keypair::from_seed([i; 32]);
            let key = signer.public().verifying_key().unwrap();
            let message = [i; 40];
            let good = signer.sign_raw(&message);
            let mut bad_r = good;
            bad_r[3] ^= 1;
            let mut big_s = good;
            big_s[63] |= 0xf0;
            for (signature, message, expected) in [
                (good, &message[..], true),
                (good, &message[..39], false),
                (bad_r, &message[..], false),
                (big_s, &message[..], false),
            ] {
                assert_eq!(verify_strict(&key, &[message], &signature), expected);
                assert_eq!(dalek_strict(&key, message, &signature), expected);
                cases += 1;
            }
        }
        // The key holder can make R the identity: a plain check accepts that, strict ones do not.
        let a = Scalar::from_bytes_mod_order([7; 32]);
        let a_point = EdwardsPoint::mul_base(&a);
        let key = VerifyingKey::from_bytes(a_point.compress().as_bytes()).unwrap();
        let identity = EdwardsPoint::default().compress().to_bytes();
        let signature = forged(identity, &a, &a_point, b"identity R");
        assert!(plain(&key, b"identity R", &signature));
        assert!(!dalek_strict(&key, b"identity R", &signature));
        assert!(!verify_strict(&key, &[b"identity R"], &signature));
        // With a key that has a torsion part (not itself of small order), R can be any
        // small-order point: find a message for each that a plain check accepts.
        let mixed = a_point + EIGHT_TORSION[1];
        let key = VerifyingKey::from_bytes(mixed.compress().as_bytes()).unwrap();
        assert!(!key.is_weak());
        let mut hit = std::collections::HashSet::new();
        for n in 0..400u32 {
            let message = n.to_be_bytes();
            for r in SMALL_ORDER_ENCODINGS.iter() {
                let signature = forged(*r, &a, &mixed, &message);
                let plain_ok = plain(&key, &message, &signature);
                assert!(!dalek_strict(&key, &message, &signature));
                assert!(!verify_strict(&key, &[&message], &signature));
                if plain_ok {
                    hit.insert(*r);
                }
                cases += 1;
            }
        }
        assert_eq!(
            hit.len(),
            8,
            "every small-order R passed a plain check for some message"
        );
        assert!(cases > 3000);
    }
}

//! Per-process counters of the cryptographic work done: signatures made and signatures
//! checked. They are plain relaxed atomics, incremented where the work happens, so reading them
//! costs nothing and they can be compared before and after a benchmark phase to learn what one
//! coordination round costs.
//!
//! The counters are process-wide: every [`crate::Keypair`] and every decode in the process adds
//! to the same numbers. They only ever grow (wrapping after 2^64).

use std::sync::atomic::{AtomicU64, Ordering};

static SIGNATURES: AtomicU64 = AtomicU64::new(0);
static VERIFICATIONS: AtomicU64 = AtomicU64::new(0);

/// A snapshot of this process's signature counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CryptoCounters {
    /// ed25519 signatures made (object signatures and receipt countersignatures).
    pub signatures: u64,
    /// ed25519 signatures checked (one per signature, batch checks included; a batch that
    /// fails and is re-checked one by one counts the re-checks too).
    pub verifications: u64,
}

impl CryptoCounters {
    /// The counters now.
    pub fn snapshot() -> Self {
        CryptoCounters {
            signatures: SIGNATURES.load(Ordering::Relaxed),
            verifications: VERIFICATIONS.load(Ordering::Relaxed),
        }
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &CryptoCounters) -> CryptoCounters {
        CryptoCounters {
            signatures: self.signatures.wrapping_sub(earlier.signatures),
            verifications: self.verifications.wrapping_sub(earlier.verifications),
        }
    }
}

pub(crate) fn count_signature() {
    SIGNATURES.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn count_verifications(n: usize) {
    VERIFICATIONS.fetch_add(n as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SignedObject, fixtures};

    #[test]
    fn signing_and_decoding_are_counted() {
        let intent = fixtures::intent().unwrap();
        let before = CryptoCounters::snapshot();
        SignedObject::decode(intent.bytes()).unwrap();
        SignedObject::decode_trusted(intent.bytes()).unwrap();
        let after = CryptoCounters::snapshot().since(&before);
        // Other tests run in parallel in this process: at least our own work is counted.
        assert!(after.verifications >= 1);
        let before = CryptoCounters::snapshot();
        fixtures::intent().unwrap();
        assert!(CryptoCounters::snapshot().since(&before).signatures >= 1);
    }
}

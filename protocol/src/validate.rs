//! Contextual validation: rules that depend on the clock, on what was already received, or on
//! other objects.
//!
//! [`SignedObject::decode`] establishes that bytes are a well-formed, correctly signed object.
//! Whether a node should *act* on it right now is a separate question answered here:
//! - [`check_fresh`]: not expired, not dated too far in the future;
//! - [`ReplayGuard`]: not received before (bounded memory: an id is remembered only until the
//!   object would be refused as expired anyway);
//! - [`check_parent`] and [`check_signer`]: links and roles that need a second object.
//!
//! [`LiveValidator`] chains decoding, freshness and replay for the network path. Stored
//! evidence is re-verified with [`SignedObject::decode`] alone, since expiry does not make a
//! receipt less true.

use std::collections::{BTreeSet, HashMap};

use crate::envelope::SignedObject;
use crate::error::ProtocolError;
use crate::ids::ObjectId;
use crate::keys::PublicKey;
use crate::{MAX_CLOCK_SKEW_MS, MAX_MESSAGE_AGE_MS};

/// The moment after which `object` is refused on the live path: its declared expiry, or, for
/// kinds without one, its timestamp plus [`MAX_MESSAGE_AGE_MS`].
pub fn expiry_of(object: &SignedObject) -> u64 {
    object
        .body()
        .expires_at_ms()
        .unwrap_or_else(|| object.timestamp_ms().saturating_add(MAX_MESSAGE_AGE_MS))
}

/// Refuses an object that is expired at `now_ms` or dated more than [`MAX_CLOCK_SKEW_MS`]
/// after it.
pub fn check_fresh(object: &SignedObject, now_ms: u64) -> Result<(), ProtocolError> {
    if object.timestamp_ms() > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err(ProtocolError::FromTheFuture {
            id: object.id(),
            timestamp_ms: object.timestamp_ms(),
            now_ms,
        });
    }
    let expires = expiry_of(object);
    if now_ms > expires {
        return Err(ProtocolError::Expired {
            id: object.id(),
            expired_at_ms: expires,
            now_ms,
        });
    }
    Ok(())
}

/// Refuses `child` if `parent` (one of its parents) belongs to another trace.
pub fn check_parent(child: &SignedObject, parent: &SignedObject) -> Result<(), ProtocolError> {
    if parent.trace_id() != child.trace_id() {
        return Err(ProtocolError::ParentOutsideTrace {
            id: child.id(),
            parent: parent.id(),
        });
    }
    Ok(())
}

/// Refuses `object` unless `expected` signed it (e.g. a `TaskDone` must come from the provider
/// named in the `TaskStart`).
pub fn check_signer(object: &SignedObject, expected: &PublicKey) -> Result<(), ProtocolError> {
    if object.signer() != *expected {
        return Err(ProtocolError::SignerMismatch {
            id: object.id(),
            expected: *expected,
            actual: object.signer(),
        });
    }
    Ok(())
}

/// Remembers which objects were accepted, to refuse replays, in bounded memory.
///
/// Each id is kept until its object's expiry (see [`expiry_of`]); after that the freshness
/// check refuses the object anyway. When `capacity` ids are held, the one expiring soonest is
/// forgotten first, and [`ReplayGuard::evicted`] counts how often that happened (a guard that
/// evicts is too small for its traffic).
#[derive(Debug)]
pub struct ReplayGuard {
    capacity: usize,
    expiry_by_id: HashMap<ObjectId, u64>,
    by_expiry: BTreeSet<(u64, ObjectId)>,
    evicted: u64,
}

impl ReplayGuard {
    /// A guard remembering at most `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        ReplayGuard {
            capacity: capacity.max(1),
            expiry_by_id: HashMap::new(),
            by_expiry: BTreeSet::new(),
            evicted: 0,
        }
    }

    /// Records `object` as seen, or refuses it as a replay.
    pub fn check_and_record(
        &mut self,
        object: &SignedObject,
        now_ms: u64,
    ) -> Result<(), ProtocolError> {
        self.forget_expired(now_ms);
        let id = object.id();
        if self.expiry_by_id.contains_key(&id) {
            return Err(ProtocolError::Replayed(id));
        }
        if self.expiry_by_id.len() >= self.capacity
            && let Some(oldest) = self.by_expiry.pop_first()
        {
            self.expiry_by_id.remove(&oldest.1);
            self.evicted += 1;
        }
        let expires = expiry_of(object);
        self.expiry_by_id.insert(id, expires);
        self.by_expiry.insert((expires, id));
        Ok(())
    }

    /// How many ids are remembered now.
    pub fn len(&self) -> usize {
        self.expiry_by_id.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.expiry_by_id.is_empty()
    }

    /// How many ids were forgotten early because the guard was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn forget_expired(&mut self, now_ms: u64) {
        while let Some(&(expires, id)) = self.by_expiry.first() {
            if expires >= now_ms {
                break;
            }
            self.by_expiry.pop_first();
            self.expiry_by_id.remove(&id);
        }
    }
}

/// The live-path gate: decode and verify, then refuse stale, future-dated and replayed objects.
#[derive(Debug)]
pub struct LiveValidator {
    replay: ReplayGuard,
}

impl LiveValidator {
    /// A validator whose replay memory holds at most `replay_capacity` ids.
    pub fn new(replay_capacity: usize) -> Self {
        LiveValidator {
            replay: ReplayGuard::new(replay_capacity),
        }
    }

    /// Accepts `bytes` received at `now_ms`, or says why not.
    pub fn accept(&mut self, bytes: &[u8], now_ms: u64) -> Result<SignedObject, ProtocolError> {
        let object = SignedObject::decode(bytes)?;
        check_fresh(&object, now_ms)?;
        self.replay.check_and_record(&object, now_ms)?;
        Ok(object)
    }

    /// The replay memory, for metrics.
    pub fn replay_guard(&self) -> &ReplayGuard {
        &self.replay
    }
}

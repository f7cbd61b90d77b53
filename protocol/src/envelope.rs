//! The signed envelope shared by every object kind.
//!
//! A [`SignedObject`] owns the exact wire bytes it was decoded from (or produced when signing)
//! together with the parsed [`Envelope`]. Ids and signatures are always computed over those
//! bytes, never over a re-encoding.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;

use ciborium::value::Value;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::body::{Body, Kind};
use crate::cbor::{self, Result};
use crate::error::ProtocolError;
use crate::ids::{ObjectId, TraceId};
use crate::keys::{Keypair, PublicKey, verify_strict};
use crate::{MAX_LIFETIME_MS, MAX_OBJECT_SIZE, MAX_PARENTS, PROTOCOL_VERSION};

/// The tag that starts every signing input.
const SIGNATURE_DOMAIN: &[u8] = b"pervasive.link/pvl/signature";
/// The tag that starts every countersigning input.
const COUNTERSIGNATURE_DOMAIN: &[u8] = b"pervasive.link/pvl/countersignature";

/// The exact bytes the signer signs: `"pervasive.link/pvl/signature" 0x00 version kind content`.
pub fn signing_input(kind: Kind, content: &[u8]) -> Vec<u8> {
    domain_input(SIGNATURE_DOMAIN, kind, content)
}

/// The exact bytes a receipt's requester countersigns:
/// `"pervasive.link/pvl/countersignature" 0x00 version kind content`.
pub fn countersigning_input(kind: Kind, content: &[u8]) -> Vec<u8> {
    domain_input(COUNTERSIGNATURE_DOMAIN, kind, content)
}

fn domain_input(domain: &[u8], kind: Kind, content: &[u8]) -> Vec<u8> {
    with_input(domain, kind, content, |parts| parts.concat())
}

/// Calls `f` with the parts of a (counter)signing input, `domain 0x00 version kind content`:
/// signing and verifying take the parts as they are, without copying them into one buffer.
fn with_input<T>(domain: &[u8], kind: Kind, content: &[u8], f: impl FnOnce(&[&[u8]]) -> T) -> T {
    let header = [0, PROTOCOL_VERSION, kind.code()];
    f(&[domain, &header, content])
}

/// The unsigned part of an object: who says what, when, and in which trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The trace this object belongs to; `None` only for a root (an intent or capability ad
    /// that starts its own trace, whose trace id is then its own id).
    pub trace: Option<TraceId>,
    /// Causal predecessors (the trace is a DAG). Empty exactly for roots.
    pub parents: Vec<ObjectId>,
    /// Who signs.
    pub signer: PublicKey,
    /// When it was signed, unix ms.
    pub timestamp_ms: u64,
    /// The object itself.
    pub body: Body,
}

impl Envelope {
    /// The kind of the body.
    pub fn kind(&self) -> Kind {
        self.body.kind()
    }

    /// Signs the envelope with `key`, which must be the stated signer.
    pub fn sign(self, key: &Keypair) -> Result<SignedObject> {
        SignedObject::sign(self, key)
    }

    fn to_value(&self) -> Value {
        Value::Array(vec![
            cbor::uint(PROTOCOL_VERSION.into()),
            cbor::uint(self.kind().code().into()),
            cbor::opt(self.trace.as_ref(), cbor::id),
            Value::Array(self.parents.iter().map(cbor::id).collect()),
            cbor::key(&self.signer),
            cbor::uint(self.timestamp_ms),
            self.body.to_value(),
        ])
    }

    fn from_value(value: Value, depth: u8) -> Result<Self> {
        let items = cbor::array(value, "envelope", 7)?;
        // Version and kind come first so that an object from a newer protocol is reported as
        // such rather than as a shape error.
        let mut items = items.into_iter();
        let version = cbor::as_u64(next(&mut items)?, "envelope.version")?;
        if version != u64::from(PROTOCOL_VERSION) {
            return Err(ProtocolError::UnknownVersion(version));
        }
        let kind = Kind::from_code(cbor::as_u64(next(&mut items)?, "envelope.kind")?)?;
        let trace = cbor::as_opt(next(&mut items)?, |v| cbor::as_id(v, "envelope.trace"))?;
        let parents = cbor::array(next(&mut items)?, "envelope.parents", MAX_PARENTS)?
            .into_iter()
            .map(|v| cbor::as_id(v, "envelope.parents"))
            .collect::<Result<Vec<_>>>()?;
        let signer = cbor::as_key(next(&mut items)?, "envelope.signer")?;
        let timestamp_ms = cbor::as_u64(next(&mut items)?, "envelope.timestamp_ms")?;
        let body = Body::from_value(kind, next(&mut items)?, depth)?;
        Ok(Envelope {
            trace,
            parents,
            signer,
            timestamp_ms,
            body,
        })
    }

    /// Structural rules of the envelope (see SPEC.md, "Validation").
    fn check(&self) -> Result<()> {
        let kind = self.kind();
        match self.trace {
            None if !kind.may_be_root() => {
                return Err(ProtocolError::field(
                    "envelope.trace",
                    format!("a {kind} must belong to a trace"),
                ));
            }
            None if !self.parents.is_empty() => {
                return Err(ProtocolError::field(
                    "envelope.parents",
                    "a root has no parents",
                ));
            }
            Some(_) if self.parents.is_empty() => {
                return Err(ProtocolError::field(
                    "envelope.parents",
                    "an object inside a trace names at least one parent",
                ));
            }
            _ => {}
        }
        if self.parents.len() > MAX_PARENTS {
            return Err(ProtocolError::field("envelope.parents", "too many parents"));
        }
        let unique: HashSet<_> = self.parents.iter().collect();
        if unique.len() != self.parents.len() {
            return Err(ProtocolError::field(
                "envelope.parents",
                "a parent is listed twice",
            ));
        }
        if let Some(expires) = self.body.expires_at_ms() {
            if expires < self.timestamp_ms {
                return Err(ProtocolError::field(
                    "expires_at_ms",
                    "expires before it was signed",
                ));
            }
            if expires - self.timestamp_ms > MAX_LIFETIME_MS {
                return Err(ProtocolError::field(
                    "expires_at_ms",
                    format!("lifetime above the limit of {MAX_LIFETIME_MS} ms"),
                ));
            }
        }
        let embedded_trace = match &self.body {
            Body::TaskStart(start) => start.quorum.as_ref().map(|q| q.trace_id()),
            Body::QuorumCert(cert) => Some(cert.proposal.trace_id()),
            _ => None,
        };
        if let Some(embedded) = embedded_trace
            && self.trace != Some(embedded)
        {
            return Err(ProtocolError::field(
                "quorum",
                "the embedded proposal belongs to another trace",
            ));
        }
        self.body.check()
    }
}

fn next(items: &mut std::vec::IntoIter<Value>) -> Result<Value> {
    items
        .next()
        .ok_or_else(|| ProtocolError::field("envelope", "expected 7 items"))
}

/// A decoded, verified object together with its exact wire bytes.
///
/// Obtained by [`SignedObject::decode`] (bytes from the network or the store) or by
/// [`Envelope::sign`]. Both guarantee: the encoding is canonical, every structural rule holds,
/// the signature (and countersignature, if any) verifies.
#[derive(Clone)]
pub struct SignedObject {
    bytes: Vec<u8>,
    content: Range<usize>,
    id: ObjectId,
    envelope: Envelope,
    signature: [u8; 64],
    countersignature: Option<[u8; 64]>,
}

/// Parsed but not yet signature-checked object (internal stage of decoding).
struct Parsed {
    object: SignedObject,
    key: VerifyingKey,
}

impl SignedObject {
    /// Signs `envelope` with `key`; fails if `key` is not the envelope's signer or the
    /// envelope breaks a rule.
    pub fn sign(envelope: Envelope, key: &Keypair) -> Result<SignedObject> {
        envelope.check()?;
        let content = cbor::encode(&envelope.to_value())?;
        // Every limit a decoder applies (text lengths, list sizes, ...) applies here too: what
        // we sign, every receiver accepts.
        Envelope::from_value(cbor::decode(&content)?, 0)?;
        let id = ObjectId::of_content(&content);
        if key.public() != envelope.signer {
            return Err(ProtocolError::SignerMismatch {
                id,
                expected: envelope.signer,
                actual: key.public(),
            });
        }
        if content.len() + 140 > MAX_OBJECT_SIZE {
            return Err(ProtocolError::Oversize {
                size: content.len(),
                limit: MAX_OBJECT_SIZE,
            });
        }
        let signature = with_input(SIGNATURE_DOMAIN, envelope.kind(), &content, |input| {
            key.sign_parts(input)
        });
        Self::assemble(content, envelope, signature, None)
    }

    /// Builds the wire bytes from their parts.
    fn assemble(
        content: Vec<u8>,
        envelope: Envelope,
        signature: [u8; 64],
        countersignature: Option<[u8; 64]>,
    ) -> Result<SignedObject> {
        let bytes = encode_wire(&content, &signature, countersignature.as_ref())?;
        let start = 1 + head_len(content.len());
        Ok(SignedObject {
            id: ObjectId::of_content(&content),
            content: start..start + content.len(),
            bytes,
            envelope,
            signature,
            countersignature,
        })
    }

    /// Decodes and fully verifies one object. Total: any input yields an object or an error.
    pub fn decode(bytes: &[u8]) -> Result<SignedObject> {
        Self::decode_at_depth(bytes, 0)
    }

    /// Decodes an object from bytes this process verified before, such as its own trace
    /// store's: every check of [`SignedObject::decode`] (size, canonical CBOR, structure,
    /// embedded objects) except the signature and countersignature checks, which are nearly
    /// all of its cost. Never use it for bytes from the network, a file or another process.
    pub fn decode_trusted(bytes: &[u8]) -> Result<SignedObject> {
        Ok(Self::parse(bytes, 0)?.object)
    }

    pub(crate) fn decode_at_depth(bytes: &[u8], depth: u8) -> Result<SignedObject> {
        let parsed = Self::parse(bytes, depth)?;
        parsed.verify_signature()?;
        parsed.object.verify_countersignature()?;
        Ok(parsed.object)
    }

    /// Decodes many objects, checking their signatures with ed25519 batch verification (which
    /// is faster per object than one by one). Each input gets its own result; when the batch
    /// fails, the objects are checked one by one to tell which signature is bad.
    pub fn decode_batch(inputs: &[&[u8]]) -> Vec<Result<SignedObject>> {
        let parsed: Vec<Result<Parsed>> = inputs.iter().map(|b| Self::parse(b, 0)).collect();
        let ok: Vec<&Parsed> = parsed.iter().filter_map(|p| p.as_ref().ok()).collect();
        let messages: Vec<Vec<u8>> = ok
            .iter()
            .map(|p| signing_input(p.object.kind(), p.object.content()))
            .collect();
        let message_refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let signatures: Vec<Signature> = ok
            .iter()
            .map(|p| Signature::from_bytes(&p.object.signature))
            .collect();
        let keys: Vec<VerifyingKey> = ok.iter().map(|p| p.key).collect();
        crate::counters::count_verifications(signatures.len());
        let batch_ok = ed25519_dalek::verify_batch(&message_refs, &signatures, &keys).is_ok();
        parsed
            .into_iter()
            .map(|p| {
                let p = p?;
                if !batch_ok {
                    p.verify_signature()?;
                }
                p.object.verify_countersignature()?;
                Ok(p.object)
            })
            .collect()
    }

    /// Everything but the signature checks: size, CBOR, canonical form, structure.
    fn parse(bytes: &[u8], depth: u8) -> Result<Parsed> {
        if bytes.len() > MAX_OBJECT_SIZE {
            return Err(ProtocolError::Oversize {
                size: bytes.len(),
                limit: MAX_OBJECT_SIZE,
            });
        }
        let items = cbor::array(cbor::decode(bytes)?, "wire", 3)?;
        if items.len() < 2 {
            return Err(ProtocolError::field(
                "wire",
                "expected [content, signature, ?countersignature]",
            ));
        }
        let mut items = items.into_iter();
        let content = cbor::as_bytes(next(&mut items)?, "wire.content", MAX_OBJECT_SIZE)?;
        let signature = sig64(next(&mut items)?, "wire.signature")?;
        let countersignature = items
            .next()
            .map(|v| sig64(v, "wire.countersignature"))
            .transpose()?;
        if encode_wire(&content, &signature, countersignature.as_ref())? != bytes {
            return Err(ProtocolError::NonCanonical("wire array"));
        }
        let envelope = Envelope::from_value(cbor::decode(&content)?, depth)?;
        if cbor::encode(&envelope.to_value())? != content {
            return Err(ProtocolError::NonCanonical("content"));
        }
        envelope.check()?;
        if countersignature.is_some() && envelope.kind() != Kind::Receipt {
            return Err(ProtocolError::field(
                "wire.countersignature",
                "only a receipt carries a countersignature",
            ));
        }
        let key = envelope.signer.verifying_key()?;
        let start = 1 + head_len(content.len());
        let object = SignedObject {
            id: ObjectId::of_content(&content),
            content: start..start + content.len(),
            bytes: bytes.to_vec(),
            envelope,
            signature,
            countersignature,
        };
        Ok(Parsed { object, key })
    }

    /// Adds the requester's countersignature to a receipt. `key` must be the requester named
    /// in the receipt. The id does not change.
    pub fn countersign(&self, key: &Keypair) -> Result<SignedObject> {
        let Body::Receipt(receipt) = &self.envelope.body else {
            return Err(ProtocolError::WrongKind {
                expected: "receipt",
                actual: self.kind().name(),
            });
        };
        if key.public() != receipt.requester {
            return Err(ProtocolError::SignerMismatch {
                id: self.id,
                expected: receipt.requester,
                actual: key.public(),
            });
        }
        let cosig = with_input(
            COUNTERSIGNATURE_DOMAIN,
            self.kind(),
            self.content(),
            |input| key.sign_parts(input),
        );
        Self::assemble(
            self.content().to_vec(),
            self.envelope.clone(),
            self.signature,
            Some(cosig),
        )
    }

    fn verify_countersignature(&self) -> Result<()> {
        let (Some(cosig), Body::Receipt(receipt)) = (&self.countersignature, &self.envelope.body)
        else {
            return Ok(());
        };
        let key = receipt.requester.verifying_key()?;
        crate::counters::count_verifications(1);
        let valid = with_input(
            COUNTERSIGNATURE_DOMAIN,
            self.kind(),
            self.content(),
            |input| verify_strict(&key, input, cosig),
        );
        if valid {
            Ok(())
        } else {
            Err(ProtocolError::BadSignature {
                which: "countersignature",
                id: self.id,
            })
        }
    }

    /// The exact wire bytes: what is sent and stored.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Consumes the object, returning its wire bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The signed content bytes (the id is their SHA-256).
    pub fn content(&self) -> &[u8] {
        &self.bytes[self.content.clone()]
    }

    /// The object id.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// The trace id: the stated trace, or the object's own id for a root.
    pub fn trace_id(&self) -> TraceId {
        self.envelope.trace.unwrap_or(self.id)
    }

    /// Whether this object starts its own trace.
    pub fn is_root(&self) -> bool {
        self.envelope.trace.is_none()
    }

    /// The object kind.
    pub fn kind(&self) -> Kind {
        self.envelope.kind()
    }

    /// The parsed envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The body.
    pub fn body(&self) -> &Body {
        &self.envelope.body
    }

    /// Who signed it.
    pub fn signer(&self) -> PublicKey {
        self.envelope.signer
    }

    /// When it was signed, unix ms.
    pub fn timestamp_ms(&self) -> u64 {
        self.envelope.timestamp_ms
    }

    /// Its parents.
    pub fn parents(&self) -> &[ObjectId] {
        &self.envelope.parents
    }

    /// The signer's signature.
    pub fn signature(&self) -> [u8; 64] {
        self.signature
    }

    /// The requester's countersignature, for a countersigned receipt.
    pub fn countersignature(&self) -> Option<[u8; 64]> {
        self.countersignature
    }

    /// Whether this is a receipt countersigned by its requester.
    pub fn is_countersigned(&self) -> bool {
        self.countersignature.is_some()
    }
}

impl Parsed {
    fn verify_signature(&self) -> Result<()> {
        crate::counters::count_verifications(1);
        let valid = with_input(
            SIGNATURE_DOMAIN,
            self.object.kind(),
            self.object.content(),
            |input| verify_strict(&self.key, input, &self.object.signature),
        );
        if valid {
            Ok(())
        } else {
            Err(ProtocolError::BadSignature {
                which: "signature",
                id: self.object.id,
            })
        }
    }
}

fn sig64(value: Value, field: &'static str) -> Result<[u8; 64]> {
    let bytes = cbor::as_bytes(value, field, 64)?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| ProtocolError::field(field, format!("{len} bytes, expected 64")))
}

fn encode_wire(content: &[u8], signature: &[u8; 64], cosig: Option<&[u8; 64]>) -> Result<Vec<u8>> {
    let mut items = vec![cbor::bytes(content), cbor::bytes(signature)];
    if let Some(cosig) = cosig {
        items.push(cbor::bytes(cosig));
    }
    cbor::encode(&Value::Array(items))
}

/// Length of the CBOR head of a byte string of `len` bytes.
fn head_len(len: usize) -> usize {
    match len {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

impl PartialEq for SignedObject {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for SignedObject {}

impl fmt::Debug for SignedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedObject")
            .field("id", &self.id)
            .field("kind", &self.kind())
            .field("envelope", &self.envelope)
            .field("countersigned", &self.is_countersigned())
            .finish()
    }
}

impl Serialize for SignedObject {
    /// The JSON view used by exports and the CLI (not the wire format).
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(10))?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("kind", &self.kind())?;
        map.serialize_entry("version", &PROTOCOL_VERSION)?;
        map.serialize_entry("trace_id", &self.trace_id())?;
        map.serialize_entry("parents", &self.envelope.parents)?;
        map.serialize_entry("signer", &self.envelope.signer)?;
        map.serialize_entry("timestamp_ms", &self.envelope.timestamp_ms)?;
        map.serialize_entry("body", &self.envelope.body)?;
        map.serialize_entry("signature", &hex::encode(self.signature))?;
        map.serialize_entry("countersignature", &self.countersignature.map(hex::encode))?;
        map.end()
    }
}

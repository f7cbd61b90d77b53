//! The header reader: the envelope fields of stored wire bytes, without signature checks.
//!
//! Full decoding ([`crate::SignedObject::decode`]) verifies the ed25519 signature, which costs
//! tens of microseconds per object. Walking a stored trace as a graph needs only the envelope
//! (kind, trace, parents, signer, time), and stored bytes were fully verified when they were
//! stored. [`read_header`] parses just those fields from the canonical CBOR
//! (`wire = [content, signature, countersignature?]`,
//! `content = [version, kind, trace / null, [parents..], signer, timestamp_ms, body]`) and
//! recomputes the id (SHA-256 of the content bytes), so that a value that no longer matches
//! the key it is stored under is detected.
//!
//! The rule (SPEC.md §12): a header is **not** evidence. It may be used only for bytes the
//! reader itself verified earlier (its own store), or to turn bytes from anyone else away
//! before paying for their signature check (flood control, SPEC.md §20); bytes from anyone
//! else are never accepted on a header alone but go through the full decoder. The reader never allocates more than the parent list and is total: truncated or
//! malformed input is a [`ProtocolError`], never a panic. It does not decode the body.

use crate::body::Kind;
use crate::error::ProtocolError;
use crate::ids::{ObjectId, TraceId, sha256};
use crate::keys::PublicKey;
use crate::{MAX_PARENTS, PROTOCOL_VERSION};

/// The envelope fields of a stored object, read by [`read_header`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// SHA-256 of the content bytes, recomputed.
    pub id: ObjectId,
    /// The object kind.
    pub kind: Kind,
    /// The stated trace (`None` for a root).
    pub trace: Option<TraceId>,
    /// The parent ids.
    pub parents: Vec<ObjectId>,
    /// The signer's public key (not checked for validity).
    pub signer: PublicKey,
    /// When it was signed, unix ms.
    pub timestamp_ms: u64,
    /// Whether a countersignature is present.
    pub countersigned: bool,
}

impl Header {
    /// The trace id: the stated trace or, for a root, the object's own id.
    pub fn trace_id(&self) -> TraceId {
        self.trace.unwrap_or(self.id)
    }
}

fn malformed(problem: impl Into<String>) -> ProtocolError {
    ProtocolError::MalformedCbor(problem.into())
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, ProtocolError> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or_else(|| malformed("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| malformed("length overflow"))?;
        let slice = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| malformed("truncated"))?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        self.take(N)?
            .try_into()
            .map_err(|_| malformed("bad length"))
    }

    /// Reads one CBOR head: (major type, argument).
    fn head(&mut self) -> Result<(u8, u64), ProtocolError> {
        let b = self.byte()?;
        let major = b >> 5;
        let info = b & 0x1f;
        let arg = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.byte()?),
            25 => u64::from(u16::from_be_bytes(self.array()?)),
            26 => u64::from(u32::from_be_bytes(self.array()?)),
            27 => u64::from_be_bytes(self.array()?),
            _ => return Err(malformed(format!("unsupported CBOR head 0x{b:02x}"))),
        };
        Ok((major, arg))
    }

    fn expect(&mut self, major: u8, what: &str) -> Result<u64, ProtocolError> {
        let (m, arg) = self.head()?;
        if m != major {
            return Err(malformed(format!(
                "{what}: expected major type {major}, got {m}"
            )));
        }
        Ok(arg)
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8], ProtocolError> {
        let len = self.expect(2, what)?;
        let len = usize::try_from(len).map_err(|_| malformed(format!("{what}: too long")))?;
        self.take(len)
    }

    fn id(&mut self, what: &str) -> Result<[u8; 32], ProtocolError> {
        let b = self.bytes(what)?;
        b.try_into()
            .map_err(|_| malformed(format!("{what}: expected 32 bytes, got {}", b.len())))
    }
}

/// Reads the envelope fields of `wire` bytes without checking signatures (see the module
/// docs for when that is allowed).
pub fn read_header(wire: &[u8]) -> Result<Header, ProtocolError> {
    let mut r = Reader { data: wire, pos: 0 };
    let items = r.expect(4, "wire")?;
    if !(2..=3).contains(&items) {
        return Err(malformed(format!(
            "wire: expected 2 or 3 items, got {items}"
        )));
    }
    let content = r.bytes("content")?;
    if r.bytes("signature")?.len() != 64 {
        return Err(malformed("signature: expected 64 bytes"));
    }
    if items == 3 && r.bytes("countersignature")?.len() != 64 {
        return Err(malformed("countersignature: expected 64 bytes"));
    }
    if r.pos != wire.len() {
        return Err(malformed("trailing bytes after the object"));
    }
    let id = ObjectId(sha256(content));
    let mut c = Reader {
        data: content,
        pos: 0,
    };
    if c.expect(4, "content")? != 7 {
        return Err(malformed("content: expected 7 items"));
    }
    let version = c.expect(0, "version")?;
    if version != u64::from(PROTOCOL_VERSION) {
        return Err(ProtocolError::UnknownVersion(version));
    }
    let kind = Kind::from_code(c.expect(0, "kind")?)?;
    let trace = if c.data.get(c.pos) == Some(&0xf6) {
        c.pos += 1;
        None
    } else {
        Some(ObjectId(c.id("trace")?))
    };
    let n = c.expect(4, "parents")?;
    if n > MAX_PARENTS as u64 {
        return Err(malformed("too many parents"));
    }
    let mut parents = Vec::with_capacity(n as usize);
    for _ in 0..n {
        parents.push(ObjectId(c.id("parent")?));
    }
    let signer = PublicKey(c.id("signer")?);
    let timestamp_ms = c.expect(0, "timestamp")?;
    Ok(Header {
        id,
        kind,
        trace,
        parents,
        signer,
        timestamp_ms,
        countersigned: items == 3,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_header_agrees_with_full_decode() {
        for o in crate::fixtures::sample_objects().unwrap() {
            let h = read_header(o.bytes()).unwrap();
            assert_eq!(h.id, o.id());
            assert_eq!(h.kind, o.kind());
            assert_eq!(h.trace_id(), o.trace_id());
            assert_eq!(h.parents, o.parents());
            assert_eq!(h.signer, o.signer());
            assert_eq!(h.timestamp_ms, o.timestamp_ms());
            assert_eq!(h.countersigned, o.is_countersigned());
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let o = crate::fixtures::intent().unwrap();
        let bytes = o.bytes();
        for cut in 0..bytes.len() {
            assert!(read_header(&bytes[..cut]).is_err());
        }
        assert!(read_header(&[0xff; 40]).is_err());
        assert!(read_header(&[]).is_err());
    }
}

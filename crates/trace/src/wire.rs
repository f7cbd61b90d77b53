//! A minimal, allocation-light reader of the envelope fields of stored wire bytes.
//!
//! Full decoding ([`pvl_protocol::SignedObject::decode`]) verifies the ed25519 signature, which
//! costs tens of microseconds per object. Reading a trace back as a graph needs only the
//! envelope (kind, trace, parents, signer, time), and the bytes were verified when they were
//! stored. This reader parses just those fields from the canonical CBOR (see the protocol's
//! SPEC.md: `wire = [content, signature, countersignature?]`,
//! `content = [version, kind, trace / null, [parents..], signer, timestamp_ms, body]`) and
//! recomputes the id (SHA-256 of the content) so that a value that no longer matches its key
//! is detected. Signatures are re-checked by the verify operation.

use pvl_protocol::{Kind, ObjectId, PROTOCOL_VERSION, PublicKey, sha256};

/// The envelope fields of a stored object.
#[derive(Debug, Clone)]
pub(crate) struct Light {
    pub id: ObjectId,
    pub kind: Kind,
    pub trace: Option<ObjectId>,
    pub parents: Vec<ObjectId>,
    pub signer: PublicKey,
    pub timestamp_ms: u64,
    pub countersigned: bool,
}

impl Light {
    /// The trace id: the stated trace or, for a root, the object's own id.
    pub fn trace_id(&self) -> ObjectId {
        self.trace.unwrap_or(self.id)
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.data.get(self.pos).ok_or("truncated")?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let slice = self.data.get(self.pos..end).ok_or("truncated")?;
        self.pos = end;
        Ok(slice)
    }

    /// Reads one CBOR head: (major type, argument). `None` argument for the simple value null.
    fn head(&mut self) -> Result<(u8, u64), String> {
        let b = self.byte()?;
        let major = b >> 5;
        let info = b & 0x1f;
        let arg = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.byte()?),
            25 => u64::from(u16::from_be_bytes(to_array(self.take(2)?)?)),
            26 => u64::from(u32::from_be_bytes(to_array(self.take(4)?)?)),
            27 => u64::from_be_bytes(to_array(self.take(8)?)?),
            _ => return Err(format!("unsupported CBOR head 0x{b:02x}")),
        };
        Ok((major, arg))
    }

    fn expect(&mut self, major: u8, what: &str) -> Result<u64, String> {
        let (m, arg) = self.head()?;
        if m != major {
            return Err(format!("{what}: expected major type {major}, got {m}"));
        }
        Ok(arg)
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = self.expect(2, what)?;
        let len = usize::try_from(len).map_err(|_| format!("{what}: length too large"))?;
        self.take(len)
    }

    fn id(&mut self, what: &str) -> Result<[u8; 32], String> {
        let b = self.bytes(what)?;
        to_array(b).map_err(|_| format!("{what}: expected 32 bytes, got {}", b.len()))
    }
}

fn to_array<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into().map_err(|_| "bad length".to_string())
}

/// Parses the envelope fields of `wire` bytes, without checking signatures.
pub(crate) fn parse(wire: &[u8]) -> Result<Light, String> {
    let mut r = Reader { data: wire, pos: 0 };
    let items = r.expect(4, "wire")?;
    if !(2..=3).contains(&items) {
        return Err(format!("wire: expected 2 or 3 items, got {items}"));
    }
    let content = r.bytes("content")?;
    let sig = r.bytes("signature")?;
    if sig.len() != 64 {
        return Err("signature: expected 64 bytes".into());
    }
    if items == 3 && r.bytes("countersignature")?.len() != 64 {
        return Err("countersignature: expected 64 bytes".into());
    }
    if r.pos != wire.len() {
        return Err("trailing bytes after the object".into());
    }
    let id = ObjectId(sha256(content));
    let mut c = Reader {
        data: content,
        pos: 0,
    };
    if c.expect(4, "content")? != 7 {
        return Err("content: expected 7 items".into());
    }
    let version = c.expect(0, "version")?;
    if version != u64::from(PROTOCOL_VERSION) {
        return Err(format!("unknown protocol version {version}"));
    }
    let kind = Kind::from_code(c.expect(0, "kind")?).map_err(|e| e.to_string())?;
    let trace = if c.data.get(c.pos) == Some(&0xf6) {
        c.pos += 1;
        None
    } else {
        Some(ObjectId(c.id("trace")?))
    };
    let n = c.expect(4, "parents")?;
    if n > pvl_protocol::MAX_PARENTS as u64 {
        return Err("too many parents".into());
    }
    let mut parents = Vec::with_capacity(n as usize);
    for _ in 0..n {
        parents.push(ObjectId(c.id("parent")?));
    }
    let signer = PublicKey(c.id("signer")?);
    let timestamp_ms = c.expect(0, "timestamp")?;
    Ok(Light {
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
    use super::*;

    #[test]
    fn light_parse_agrees_with_full_decode() {
        for o in pvl_protocol::fixtures::sample_objects().unwrap() {
            let l = parse(o.bytes()).unwrap();
            assert_eq!(l.id, o.id());
            assert_eq!(l.kind, o.kind());
            assert_eq!(l.trace_id(), o.trace_id());
            assert_eq!(l.parents, o.parents());
            assert_eq!(l.signer, o.signer());
            assert_eq!(l.timestamp_ms, o.timestamp_ms());
            assert_eq!(l.countersigned, o.is_countersigned());
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let o = pvl_protocol::fixtures::intent().unwrap();
        let bytes = o.bytes();
        for cut in 0..bytes.len() {
            assert!(parse(&bytes[..cut]).is_err());
        }
        assert!(parse(&[0xff; 40]).is_err());
        assert!(parse(&[]).is_err());
    }
}

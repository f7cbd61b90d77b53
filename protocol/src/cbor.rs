//! Deterministic CBOR helpers over `ciborium::Value`.
//!
//! pvl encodes every structure as a CBOR array with fixed positions; optional fields are `null`.
//! Only unsigned integers, byte strings, text strings, arrays, booleans and null occur. The
//! helpers here build such values and take them apart with a typed error naming the field.

use ciborium::value::Value;

use crate::MAX_CBOR_DEPTH;
use crate::error::ProtocolError;
use crate::ids::ObjectId;
use crate::keys::PublicKey;

pub(crate) type Result<T> = std::result::Result<T, ProtocolError>;

/// Encodes a value with ciborium (shortest-form heads, definite lengths).
pub(crate) fn encode(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    ciborium::ser::into_writer(value, &mut out)
        .map_err(|e| ProtocolError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes exactly one CBOR item from `bytes`, with a nesting limit; trailing bytes are an error.
pub(crate) fn decode(bytes: &[u8]) -> Result<Value> {
    let mut reader = bytes;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut reader, MAX_CBOR_DEPTH)
        .map_err(|e| ProtocolError::MalformedCbor(e.to_string()))?;
    if !reader.is_empty() {
        return Err(ProtocolError::MalformedCbor(format!(
            "{} trailing bytes after the item",
            reader.len()
        )));
    }
    Ok(value)
}

pub(crate) fn uint(v: u64) -> Value {
    Value::Integer(v.into())
}

pub(crate) fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}

pub(crate) fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

pub(crate) fn id(id: &ObjectId) -> Value {
    bytes(&id.0)
}

pub(crate) fn key(key: &PublicKey) -> Value {
    bytes(&key.0)
}

pub(crate) fn opt<T>(value: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    value.map_or(Value::Null, f)
}

/// Takes an array of exactly `N` items apart.
pub(crate) fn tuple<const N: usize>(value: Value, field: &'static str) -> Result<[Value; N]> {
    let items = array(value, field, N)?;
    let len = items.len();
    items
        .try_into()
        .map_err(|_| ProtocolError::field(field, format!("expected {N} items, found {len}")))
}

/// An array of `N` items followed by one optional item: the optional one is `None` when the
/// array has only `N`. (An optional trailing field is left out when absent, so that objects
/// without it encode exactly as before it existed.)
pub(crate) fn optional_last<const N: usize>(
    value: Value,
    field: &'static str,
) -> Result<([Value; N], Option<Value>)> {
    let mut items = array(value, field, N + 1)?;
    let last = if items.len() == N + 1 {
        items.pop()
    } else {
        None
    };
    let len = items.len();
    let required = items.try_into().map_err(|_| {
        ProtocolError::field(
            field,
            format!("expected {N} or {} items, found {len}", N + 1),
        )
    })?;
    Ok((required, last))
}

/// An array of at most `max` items.
pub(crate) fn array(value: Value, field: &'static str, max: usize) -> Result<Vec<Value>> {
    match value {
        Value::Array(items) if items.len() <= max => Ok(items),
        Value::Array(items) => Err(ProtocolError::field(
            field,
            format!("{} items, at most {max} allowed", items.len()),
        )),
        other => Err(type_error(field, "array", &other)),
    }
}

/// An enum-like array whose first item is a small unsigned tag; returns the tag and the rest.
pub(crate) fn tagged(value: Value, field: &'static str, max: usize) -> Result<(u64, Vec<Value>)> {
    let mut items = array(value, field, max)?;
    if items.is_empty() {
        return Err(ProtocolError::field(
            field,
            "empty array, expected a tag first",
        ));
    }
    let tag = as_u64(items.remove(0), field)?;
    Ok((tag, items))
}

/// Like [`tuple`] for the items following a tag.
pub(crate) fn rest<const N: usize>(items: Vec<Value>, field: &'static str) -> Result<[Value; N]> {
    let len = items.len();
    items.try_into().map_err(|_| {
        ProtocolError::field(
            field,
            format!("expected {N} items after the tag, found {len}"),
        )
    })
}

pub(crate) fn as_u64(value: Value, field: &'static str) -> Result<u64> {
    match value {
        Value::Integer(i) => u64::try_from(i)
            .map_err(|_| ProtocolError::field(field, "negative or too large integer")),
        other => Err(type_error(field, "unsigned integer", &other)),
    }
}

pub(crate) fn as_u32(value: Value, field: &'static str) -> Result<u32> {
    let v = as_u64(value, field)?;
    u32::try_from(v)
        .map_err(|_| ProtocolError::field(field, format!("{v} does not fit in 32 bits")))
}

/// A basis-point value: 0 to 10,000.
pub(crate) fn as_bps(value: Value, field: &'static str) -> Result<u16> {
    let v = as_u64(value, field)?;
    if v > u64::from(crate::BASIS_POINTS) {
        return Err(ProtocolError::field(
            field,
            format!("{v} is above 10000 basis points"),
        ));
    }
    Ok(v as u16)
}

pub(crate) fn as_bool(value: Value, field: &'static str) -> Result<bool> {
    match value {
        Value::Bool(b) => Ok(b),
        other => Err(type_error(field, "boolean", &other)),
    }
}

pub(crate) fn as_bytes(value: Value, field: &'static str, max: usize) -> Result<Vec<u8>> {
    match value {
        Value::Bytes(b) if b.len() <= max => Ok(b),
        Value::Bytes(b) => Err(ProtocolError::field(
            field,
            format!("{} bytes, at most {max} allowed", b.len()),
        )),
        other => Err(type_error(field, "byte string", &other)),
    }
}

pub(crate) fn as_bytes32(value: Value, field: &'static str) -> Result<[u8; 32]> {
    match value {
        Value::Bytes(b) => {
            let len = b.len();
            b.try_into()
                .map_err(|_| ProtocolError::field(field, format!("{len} bytes, expected 32")))
        }
        other => Err(type_error(field, "32-byte string", &other)),
    }
}

pub(crate) fn as_id(value: Value, field: &'static str) -> Result<ObjectId> {
    as_bytes32(value, field).map(ObjectId)
}

pub(crate) fn as_key(value: Value, field: &'static str) -> Result<PublicKey> {
    as_bytes32(value, field).map(PublicKey)
}

pub(crate) fn as_text(value: Value, field: &'static str, max: usize) -> Result<String> {
    match value {
        Value::Text(s) if s.len() <= max => Ok(s),
        Value::Text(s) => Err(ProtocolError::field(
            field,
            format!("{} bytes of text, at most {max} allowed", s.len()),
        )),
        other => Err(type_error(field, "text string", &other)),
    }
}

/// `None` for CBOR null, otherwise the decoded value.
pub(crate) fn as_opt<T>(value: Value, f: impl FnOnce(Value) -> Result<T>) -> Result<Option<T>> {
    match value {
        Value::Null => Ok(None),
        other => f(other).map(Some),
    }
}

fn type_error(field: &'static str, expected: &str, found: &Value) -> ProtocolError {
    let found = match found {
        Value::Integer(_) => "integer",
        Value::Bytes(_) => "byte string",
        Value::Float(_) => "float",
        Value::Text(_) => "text string",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
        Value::Tag(..) => "tag",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        _ => "unknown item",
    };
    ProtocolError::field(field, format!("expected {expected}, found {found}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_use_the_shortest_head() {
        assert_eq!(encode(&uint(23)).unwrap(), vec![0x17]);
        assert_eq!(encode(&uint(24)).unwrap(), vec![0x18, 24]);
        assert_eq!(encode(&uint(256)).unwrap(), vec![0x19, 1, 0]);
        assert_eq!(encode(&uint(65_536)).unwrap(), vec![0x1a, 0, 1, 0, 0]);
        assert_eq!(
            encode(&uint(1 << 32)).unwrap(),
            vec![0x1b, 0, 0, 0, 1, 0, 0, 0, 0]
        );
    }

    #[test]
    fn trailing_bytes_and_garbage_are_errors() {
        assert!(matches!(
            decode(&[0x01, 0x02]),
            Err(ProtocolError::MalformedCbor(_))
        ));
        assert!(matches!(
            decode(&[0x5f]),
            Err(ProtocolError::MalformedCbor(_))
        ));
        assert!(matches!(decode(&[]), Err(ProtocolError::MalformedCbor(_))));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = vec![0x81u8; 100_000];
        assert!(matches!(
            decode(&deep),
            Err(ProtocolError::MalformedCbor(_))
        ));
    }
}

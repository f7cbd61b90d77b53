#!/usr/bin/env python3
"""Checks the golden vectors using only SPEC.md's rules: an independent implementation.

For every vector it decodes the wire bytes with a small CBOR reader written from the spec,
checks the encoding is canonical, takes kind and signer from the content (not from the JSON
fields), recomputes the id and verifies the signature (and countersignature) with the
`cryptography` package's Ed25519. For the optional trailing fields (SPEC.md 4.1 and 4.2) it
also checks their shape, and recomputes every audience draw of an intent with an audience
(the provider self-selection rule). Exit status 0 when every vector checks out.

Usage: python3 check_vectors.py [VECTOR_DIR]
"""
import hashlib
import json
import pathlib
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def read_item(data, pos):
    """Decodes one CBOR item of pvl's subset at data[pos:]; returns (value, next_pos)."""
    initial = data[pos]
    major, info = initial >> 5, initial & 0x1F
    pos += 1
    if major == 7:
        simple = {20: False, 21: True, 22: None}
        if info not in simple:
            raise ValueError(f"simple/float value {info} is not allowed")
        return simple[info], pos
    if info < 24:
        arg = info
    elif info in (24, 25, 26, 27):
        size = 1 << (info - 24)
        arg = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    else:
        raise ValueError("indefinite lengths are not allowed")
    if major == 0:
        return arg, pos
    if major == 2:
        return bytes(data[pos : pos + arg]), pos + arg
    if major == 3:
        return data[pos : pos + arg].decode("utf-8"), pos + arg
    if major == 4:
        items = []
        for _ in range(arg):
            item, pos = read_item(data, pos)
            items.append(item)
        return items, pos
    raise ValueError(f"major type {major} is not allowed")


def head(major, arg):
    if arg < 24:
        return bytes([major << 5 | arg])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if arg < 1 << (8 * size):
            return bytes([major << 5 | info]) + arg.to_bytes(size, "big")
    raise ValueError("integer too large")


def encode(value):
    """The deterministic encoding of SPEC.md section 1."""
    if value is False:
        return b"\xf4"
    if value is True:
        return b"\xf5"
    if value is None:
        return b"\xf6"
    if isinstance(value, int):
        return head(0, value)
    if isinstance(value, bytes):
        return head(2, len(value)) + value
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return head(3, len(raw)) + raw
    if isinstance(value, list):
        return head(4, len(value)) + b"".join(encode(v) for v in value)
    raise TypeError(type(value))


def decode_exact(data):
    value, end = read_item(data, 0)
    if end != len(data):
        raise ValueError("trailing bytes")
    if encode(value) != data:
        raise ValueError("not canonical")
    return value


def domain_input(tag, kind, content):
    return tag + b"\x00" + bytes([1, kind]) + content


AUDIENCE_TAG = b"pervasive.link/pvl/audience"


def audience_draw(intent_id, provider_key):
    """SPEC.md 4.1: the first 8 bytes, big-endian, of SHA-256(tag || 0x00 || id || key)."""
    digest = hashlib.sha256(AUDIENCE_TAG + b"\x00" + intent_id + provider_key).digest()
    return int.from_bytes(digest[:8], "big")


def check_intent(vector, body, intent_id):
    assert len(body) in (8, 9), "an intent has 8 fields and an optional audience"
    draws = vector.get("audience_draws")
    if len(body) == 8:
        assert draws is None, "audience draws listed for an intent without an audience"
        return
    wanted, of = body[8]
    assert isinstance(wanted, int) and isinstance(of, int), "audience = [wanted, of]"
    assert 1 <= wanted < of <= 0xFFFFFFFF, "1 <= wanted < of"
    assert draws, "an intent with an audience lists its draws"
    for entry in draws:
        draw = audience_draw(intent_id, bytes.fromhex(entry["public_key"]))
        assert f"{draw:016x}" == entry["draw"], "audience draw"
        assert (draw * of < wanted << 64) == entry["included"], "audience inclusion"


def check_reject(body):
    assert len(body) in (3, 4), "a reject has 3 fields and an optional list"
    offers = [body[0]]
    if len(body) == 4:
        more = body[3]
        assert isinstance(more, list) and more, "reject.more is a non-empty list"
        for offer, code, detail in more:
            assert isinstance(offer, bytes) and len(offer) == 32, "reject.more offer id"
            assert isinstance(code, int) and code <= 7, "reject.more code"
            assert isinstance(detail, str), "reject.more detail"
            offers.append(offer)
    assert len(offers) <= 32, "at most 32 offers per reject"
    assert len(set(offers)) == len(offers), "no offer named twice"


def check(path):
    vector = json.loads(path.read_text())
    wire = decode_exact(bytes.fromhex(vector["wire_hex"]))
    content, signature = wire[0], wire[1]
    version, kind, _trace, _parents, signer, _timestamp, body = decode_exact(content)
    assert version == 1, "version"
    intent_id = hashlib.sha256(content).digest()
    assert intent_id.hex() == vector["id"], "id"
    if kind == 1:
        check_intent(vector, body, intent_id)
    if kind == 12:
        check_reject(body)
    message = domain_input(b"pervasive.link/pvl/signature", kind, content)
    Ed25519PublicKey.from_public_bytes(signer).verify(signature, message)
    if len(wire) == 3:
        assert kind == 6, "only receipts are countersigned"
        requester = body[2]
        cosig_input = domain_input(b"pervasive.link/pvl/countersignature", kind, content)
        Ed25519PublicKey.from_public_bytes(requester).verify(wire[2], cosig_input)
    return vector["name"]


def main():
    folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent)
    names = [check(p) for p in sorted(folder.glob("*.json"))]
    if len(names) < 12:
        sys.exit(f"only {len(names)} vectors found in {folder}")
    print(f"{len(names)} vectors verified from SPEC.md rules alone")


if __name__ == "__main__":
    main()

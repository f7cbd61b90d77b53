#!/usr/bin/env python3
"""Checks the golden vectors using only SPEC.md's rules: an independent implementation.

For every vector it decodes the wire bytes with a small CBOR reader written from the spec,
checks the encoding is canonical, takes kind and signer from the content (not from the JSON
fields), recomputes the id and verifies the signature (and countersignature) with the
`cryptography` package's Ed25519. For the optional trailing fields (SPEC.md 4.1 and 4.2) it
also checks their shape, and recomputes every audience draw of an intent with an audience
(the provider self-selection rule).

The vectors of Part II (`vocab/`) are checked the same way against SPEC.md sections 8 to 12:
every event type with its signer and attribute set (the table of section 8.1, copied below),
the ballot terms grammar (section 9), the receipt / done / offer rule (section 10), the trace
bundle (section 11) and the header reader (section 12).

The vectors of Part III (`net/`) are checked against SPEC.md sections 13 to 15: the
direct-message acknowledgement bytes (14.3), the gossip message id (13.2) and the peer id of a
signing key (15.2). Exit status 0 when every vector checks out.

Usage: python3 check_vectors.py [VECTOR_DIR]
"""
import hashlib
import struct
import json
import pathlib
import re
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


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


# ---- Part II: the vocabulary above the envelope (SPEC.md sections 8 to 12) ----------------

# Section 8.1: type -> (signer, required attributes, optional attributes, attribute prefixes).
EVENTS = {
    "selection": ("R", ["strategy", "valid-offers", "page"],
                  ["winner", "winner-provider", "winner-score", "score", "avoided-offers"],
                  ["rejected:", "offer:"]),
    "ranked-last": ("R", ["count"], [], []),
    "pattern-chosen": ("R", ["pattern", "reasons"], ["avoid"], []),
    "award-refused": ("P", ["reason"], [], []),
    "reassigned": ("R", ["from-task", "from-provider", "reason"],
                   ["to-offer", "to-provider", "to-score", "to", "round"], []),
    "receipt-missing": ("R", ["provider"], [], []),
    "intent-failed": ("R", ["reason"], ["offers-received", "awards"], []),
    "consensus-rejected": ("R", ["round", "offer", "threshold"], [], ["member:"]),
    "equivocation": ("R", ["member", "round", "first-vote", "second-vote"], [], []),
    "round-timeout": ("R", ["round", "approvals", "threshold", "silent"], [], []),
    "stage-started": ("R", ["stage", "capability", "provider", "task", "award"], [], []),
    "stage-done": ("R", ["stage", "capability", "provider", "task", "cost", "output-sha256",
                         "receipt"], [], []),
    "stage-failed": ("R", ["stage", "capability", "provider", "task", "reason"], [], []),
    "workflow-done": ("R", ["stages", "cost", "final-stage", "output-sha256"], [], []),
    "workflow-failed": ("R", ["stage", "reason"], [], []),
    "shard-started": ("R", ["shard", "provider", "task", "award"], [], []),
    "shard-done": ("R", ["shard", "provider", "task", "cost", "output-sha256"], [], []),
    "shard-failed": ("R", ["shard", "reason", "attempt", "restart"], [], []),
    "reduce-started": ("R", ["shard", "provider", "task", "award"], [], []),
    "reduce-failed": ("R", ["shard", "reason", "attempt", "restart"], [], []),
    "parallel-done": ("R", ["how", "shards", "cost", "output-sha256"], [], []),
    "parallel-failed": ("R", ["reason"], [], []),
    "audience-widened": ("R", ["wanted", "of", "round"], [], []),
    "run-spec": ("R", ["window_ms", "min_offers", "grace_ms", "receipt_wait_ms", "max_offers",
                       "max_republish", "vote_round_ms", "max_vote_rounds", "label"],
                 ["silence_ms", "avoid", "asked"], []),
}
NAME = re.compile(r"[A-Za-z0-9._:/-]{1,64}")
DECIMAL = re.compile(r"0|[1-9][0-9]*")
HEX64 = re.compile(r"[0-9a-f]{64}")
RUN_SPEC_NUMBERS = ["window_ms", "min_offers", "grace_ms", "silence_ms", "receipt_wait_ms",
                    "max_offers", "max_republish", "vote_round_ms", "max_vote_rounds"]


def public_of(seed_hex):
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex)).public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def verified_object(wire_hex):
    """Decodes and verifies one wire object (sections 2 and 3); returns (id, content fields)."""
    wire = decode_exact(bytes.fromhex(wire_hex))
    assert len(wire) in (2, 3), "wire items"
    content, signature = wire[0], wire[1]
    fields = decode_exact(content)
    version, kind, _trace, _parents, signer, _timestamp, body = fields
    assert version == 1, "version"
    message = domain_input(b"pervasive.link/pvl/signature", kind, content)
    Ed25519PublicKey.from_public_bytes(signer).verify(signature, message)
    if len(wire) == 3:
        assert kind == 6, "only receipts are countersigned"
        cosig_input = domain_input(b"pervasive.link/pvl/countersignature", kind, content)
        Ed25519PublicKey.from_public_bytes(body[2]).verify(wire[2], cosig_input)
    return hashlib.sha256(content).hexdigest(), fields


def check_events(vector):
    """Section 8: every type once, signed by its role, with exactly its attribute set."""
    signers = {"R": public_of(vector["requester_seed"]), "P": public_of(vector["provider_seed"])}
    seen = []
    for v in vector["events"]:
        object_id, (_, kind, trace, _, signer, _, body) = verified_object(v["wire_hex"])
        assert object_id == v["id"], "event id"
        assert kind == 7, "an event"
        assert trace.hex() == vector["trace_id"], "event trace"
        event_type, _about, _message, attrs = body
        assert event_type in EVENTS, f"unknown type {event_type}"
        role, required, optional, prefixes = EVENTS[event_type]
        assert signer == signers[role], f"{event_type}: signer"
        keys = [k for k, _ in attrs]
        for k in keys:
            assert NAME.fullmatch(k), f"{event_type}: attribute name {k!r}"
            assert k in required or k in optional or any(k.startswith(p) for p in prefixes), \
                f"{event_type}: unexpected attribute {k}"
        for k in required:
            assert k in keys, f"{event_type}: missing attribute {k}"
        values = dict(attrs)
        if event_type == "run-spec":
            for k in RUN_SPEC_NUMBERS:
                if k in values:
                    assert DECIMAL.fullmatch(values[k]), f"run-spec {k} = {values[k]!r}"
            for key in filter(None, values.get("avoid", "").split(",")):
                assert HEX64.fullmatch(key), "run-spec avoid"
            for key in filter(None, values.get("asked", "").split(",")):
                assert HEX64.fullmatch(key), "run-spec asked"
        seen.append(event_type)
    assert sorted(seen) == sorted(EVENTS), "one vector per event type"
    return len(seen)


TERMS = re.compile(
    r"award capability=([A-Za-z0-9._:/-]{1,64}) provider=([0-9a-f]{64}) offer=([0-9a-f]{64})"
    r" cost=(0|[1-9][0-9]*) eta_ms=(0|[1-9][0-9]*) input_sha256=([0-9a-f]{64})"
)


def parse_terms(action):
    """Section 9: the one canonical text of an award, or None."""
    m = TERMS.fullmatch(action)
    if not m or int(m.group(4)) >= 1 << 64 or int(m.group(5)) >= 1 << 64:
        return None
    return {"capability": m.group(1), "provider": m.group(2), "offer": m.group(3),
            "cost": int(m.group(4)), "eta_ms": int(m.group(5)), "input_sha256": m.group(6)}


def check_terms(vector):
    for v in vector["valid"]:
        assert parse_terms(v["action"]) == v["terms"], v["action"]
    for v in vector["invalid"]:
        assert parse_terms(v["action"]) is None, v["why"]
    object_id, (_, kind, _, _, _, _, body) = verified_object(vector["proposal"]["wire_hex"])
    assert object_id == vector["proposal"]["id"] and kind == 9, "a proposal"
    subject, _round, _committee, action, _deadline = body
    terms = parse_terms(action)
    assert terms is not None and terms["offer"] == subject.hex(), "subject is the offer"
    return len(vector["valid"]) + len(vector["invalid"]) + 1


def output_hash(payload):
    """SHA-256 and size of a `payload` (section 4), or (None, 0)."""
    if payload is None:
        return None, 0
    if payload[0] == 0:
        return hashlib.sha256(payload[1]).digest(), len(payload[1])
    return payload[1], payload[2]


def check_settlement(vector):
    """Section 10 applied to an offer, a task_done and maybe a receipt."""
    for case in vector["cases"]:
        _, (_, _, _, _, _, _, offer) = verified_object(case["offer_wire_hex"])
        _, (_, _, _, _, _, _, done) = verified_object(case["done_wire_hex"])
        d_task, d_status, d_output, d_started, d_finished = done
        receipt = None
        if case["receipt_wire_hex"]:
            _, (_, _, _, _, _, _, receipt) = verified_object(case["receipt_wire_hex"])
        if receipt:
            r_task, _, _, r_status, r_sha, r_size, r_cost, r_started, r_finished = receipt
            agrees = (r_task == d_task and r_status == d_status
                      and (r_started, r_finished) == (d_started, d_finished)
                      and (r_sha, r_size) == output_hash(d_output) and r_cost <= offer[1])
            status, started, finished = r_status, r_started, r_finished
            cost, source = r_cost, "receipt"
        else:
            agrees = True
            status, started, finished = d_status, d_started, d_finished
            cost, source = offer[1], "offer"
        output = output_hash(d_output)[0] if agrees and d_output is not None else None
        got = {"agrees": agrees, "status": "ok" if status == [0] else "failed",
               "started_at_ms": started, "finished_at_ms": finished, "cost": cost,
               "cost_source": source, "output_sha256": output.hex() if output else None}
        assert got == case["expected"], f"{case['name']}: {got} != {case['expected']}"
    return len(vector["cases"])


def parse_bundle(data):
    """Section 11: the trace id and the objects' wire bytes, or an exception."""
    bundle = decode_exact(data)
    assert isinstance(bundle, list) and len(bundle) == 4, "bundle array"
    magic, version, trace, objects = bundle
    assert magic == "pvl-trace-bundle", "magic"
    assert version == 1, "version"
    assert isinstance(trace, bytes) and len(trace) == 32, "trace"
    assert isinstance(objects, list) and len(objects) <= 1_000_000, "objects"
    assert all(isinstance(o, bytes) and len(o) <= 1_048_576 for o in objects), "object bytes"
    return trace, objects


def check_bundle(vector):
    trace, objects = parse_bundle(bytes.fromhex(vector["bundle_hex"]))
    assert trace.hex() == vector["trace"], "bundle trace"
    ids = []
    for wire in objects:
        object_id, (_, _, object_trace, parents, *_rest) = verified_object(wire.hex())
        assert (object_trace or bytes.fromhex(object_id)) == trace, "object outside the trace"
        ids.append(object_id)
    assert ids == vector["object_ids"], "object ids"
    for parent in (p for wire in objects for p in decode_exact(decode_exact(wire)[0])[3]):
        assert parent.hex() in ids, "a parent outside the bundle"
    for bad in vector["invalid"]:
        try:
            parse_bundle(bytes.fromhex(bad["bundle_hex"]))
        except (AssertionError, ValueError, IndexError, UnicodeDecodeError):
            continue
        raise AssertionError(f"accepted an invalid bundle: {bad['why']}")
    return len(objects) + len(vector["invalid"])


KINDS = {1: "intent", 2: "offer", 3: "task_start", 4: "task_progress", 5: "task_done",
         6: "receipt", 7: "event", 8: "capability_ad", 9: "proposal", 10: "vote",
         11: "quorum_cert", 12: "reject"}


def read_header(data):
    """Section 12: the envelope of wire bytes, without reading the body or any signature."""
    wire = decode_exact(data)
    assert isinstance(wire, list) and len(wire) in (2, 3), "wire"
    assert all(isinstance(w, bytes) for w in wire) and all(len(w) == 64 for w in wire[1:])
    content = wire[0]
    fields = decode_exact(content)
    assert isinstance(fields, list) and len(fields) == 7, "content"
    version, kind, trace, parents, signer, timestamp, _body = fields
    assert version == 1 and kind in KINDS, "version and kind"
    assert trace is None or (isinstance(trace, bytes) and len(trace) == 32), "trace"
    assert len(parents) <= 32 and all(len(p) == 32 for p in parents), "parents"
    assert isinstance(signer, bytes) and len(signer) == 32 and isinstance(timestamp, int)
    object_id = hashlib.sha256(content).hexdigest()
    return {"id": object_id, "kind": KINDS[kind], "kind_code": kind,
            "trace": trace.hex() if trace else None, "trace_id": (trace.hex() if trace else object_id),
            "parents": [p.hex() for p in parents], "signer": signer.hex(),
            "timestamp_ms": timestamp, "countersigned": len(wire) == 3}


def check_headers(vector):
    for v in vector["headers"]:
        assert read_header(bytes.fromhex(v["wire_hex"])) == v["header"], v["header"]["kind"]
    for bad in vector["invalid"]:
        try:
            read_header(bytes.fromhex(bad["wire_hex"]))
        except (AssertionError, ValueError, IndexError, TypeError):
            continue
        raise AssertionError(f"read an invalid header: {bad['why']}")
    return len(vector["headers"]) + len(vector["invalid"])


# ---- Part III: the network (SPEC.md sections 13 to 15) ---------------------------------------

MAX_ACK_REASON = 1024  # SPEC.md 14.3
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def encode_ack(status, reason=None):
    """Section 14.3: one status byte; a refusal adds its reason's UTF-8 bytes, cut to at most
    1024 bytes at the last character boundary."""
    if status in (0, 1):
        return bytes([status])
    data = reason.encode("utf-8")[:MAX_ACK_REASON]
    # Drop a partial character at the end (continuation bytes are 0b10xxxxxx).
    while data:
        try:
            data.decode("utf-8")
            break
        except UnicodeDecodeError:
            data = data[:-1]
    return bytes([2]) + data


def decode_ack(data):
    """Section 14.3: (status, reason) or ValueError for anything else."""
    if data in (b"\x00", b"\x01"):
        return data[0], None
    if len(data) >= 1 and data[0] == 2 and len(data) <= 1 + MAX_ACK_REASON:
        return 2, data[1:].decode("utf-8", errors="replace")
    raise ValueError("malformed acknowledgement")


def refused_all(reader, hexes, wrongly):
    """Each of `hexes` must make `reader` raise ValueError; returns how many did."""
    for bad in hexes:
        try:
            reader(bytes.fromhex(bad))
        except ValueError:
            continue
        raise AssertionError(f"{bad} {wrongly}")
    return len(hexes)


def check_acks(vector):
    assert vector["max_reason_bytes"] == MAX_ACK_REASON
    n = 0
    for case in vector["cases"]:
        status = case["status"]
        reason = case.get("reason")
        if reason is not None:
            assert bytes.fromhex(case["reason_hex"]) == reason.encode("utf-8"), case["name"]
        wire = encode_ack(status, reason)
        assert wire.hex() == case["ack_hex"], case["name"]
        got_status, got_reason = decode_ack(wire)
        assert got_status == status, case["name"]
        if status == 2:
            assert got_reason == case["sent_reason"], case["name"]
            assert len(wire) - 1 <= MAX_ACK_REASON and reason.startswith(got_reason)
        n += 1
    n += refused_all(decode_ack, vector["malformed_hex"], "decoded as an acknowledgement")
    for case in vector["lossy"]:
        assert decode_ack(bytes.fromhex(case["ack_hex"])) == (2, case["reason"])
        n += 1
    return n


MAX_OBJECT_SIZE = 1_048_576


def message_frame(msg_id, obj):
    """Section 14.6: id (u32 BE) || length (u32 BE) || object bytes."""
    return struct.pack(">II", msg_id, len(obj)) + obj


def read_message_header(header):
    """Section 14.6: (id, length) of a message frame, or ValueError over the size limit."""
    msg_id, length = struct.unpack(">II", header[:8])
    if length > MAX_OBJECT_SIZE:
        raise ValueError("message over the size limit")
    return msg_id, length


def read_ack_header(header):
    """Section 14.6: (id, length) of an acknowledgement frame, or ValueError."""
    msg_id, length = struct.unpack(">IH", header[:6])
    if not 1 <= length <= 1 + MAX_ACK_REASON:
        raise ValueError("acknowledgement of a length outside 1 to 1025")
    return msg_id, length


def check_session(vector):
    assert vector["protocol"] == "/pvl/direct/2"
    assert vector["max_object_bytes"] == MAX_OBJECT_SIZE
    n = 0
    for case in vector["messages"]:
        obj = bytes.fromhex(case["object_hex"])
        frame = message_frame(case["id"], obj)
        assert frame.hex() == case["frame_hex"], case["name"]
        assert read_message_header(frame) == (case["id"], len(obj)), case["name"]
        assert frame[8:] == obj
        n += 1
    for case in vector["acks"]:
        ack = bytes.fromhex(case["ack_hex"])
        decode_ack(ack)
        frame = struct.pack(">IH", case["id"], len(ack)) + ack
        assert frame.hex() == case["frame_hex"], case["name"]
        assert read_ack_header(frame) == (case["id"], len(ack)), case["name"]
        n += 1
    for reader, key in ((read_message_header, "malformed_message_headers_hex"),
                        (read_ack_header, "malformed_ack_headers_hex")):
        n += refused_all(reader, vector[key], "read as a frame header")
    return n


def message_id(topic, data):
    """Section 13.2: SHA-256(topic UTF-8 || 0x00 || data) as 64 lowercase hex digits."""
    return hashlib.sha256(topic.encode("utf-8") + b"\x00" + data).hexdigest()


def check_message_ids(vector):
    ids = set()
    for case in vector["cases"]:
        data = bytes.fromhex(case["data_hex"])
        hashed = case["topic"].encode("utf-8") + b"\x00" + data
        assert hashed.hex() == case["hashed_hex"]
        mid = message_id(case["topic"], data)
        assert mid == case["message_id"], case["topic"]
        assert mid.encode("ascii").hex() == case["message_id_wire_hex"]
        if case["kind"] is not None:
            # Only intents and capability ads are gossiped, on the catch-all topic and on
            # their capability's topic (section 13.1).
            _, fields = verified_object(case["data_hex"])
            kind, body = fields[1], fields[6]
            assert kind in (1, 8), "a gossiped kind"
            assert case["topic"] in ("pvl/1/all", "pvl/1/cap/" + body[0])
        ids.add(mid)
    assert len(ids) == len(vector["cases"]), "the same object on two topics has two ids"
    return len(vector["cases"])


def base58(data):
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, digit = divmod(number, 58)
        out = B58[digit] + out
    zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * zeros + out


def peer_id_of(public_key):
    """Section 15.2: the protobuf PublicKey {Type: Ed25519 (1), Data: key}, in an identity
    multihash (code 0x00, length), in base58btc."""
    protobuf = bytes([0x08, 0x01, 0x12, 0x20]) + public_key
    multihash = bytes([0x00, len(protobuf)]) + protobuf
    return protobuf, multihash, base58(multihash)


def check_peer_ids(vector):
    for case in vector["cases"]:
        public = public_of(case["seed"])
        assert public.hex() == case["public_key"], case["name"]
        protobuf, multihash, text = peer_id_of(public)
        assert protobuf.hex() == case["public_key_protobuf_hex"], case["name"]
        assert multihash.hex() == case["peer_id_bytes_hex"], case["name"]
        assert text == case["peer_id"], case["name"]
        assert text.startswith("12D3KooW"), case["name"]
    return len(vector["cases"])


NET = {
    "acks": check_acks,
    "session": check_session,
    "message-ids": check_message_ids,
    "peer-ids": check_peer_ids,
}

VOCAB = {
    "events": check_events,
    "ballot-terms": check_terms,
    "settlement": check_settlement,
    "bundle": check_bundle,
    "headers": check_headers,
}


def main():
    folder = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent)
    names = [check(p) for p in sorted(folder.glob("*.json"))]
    if len(names) < 12:
        sys.exit(f"only {len(names)} vectors found in {folder}")
    print(f"{len(names)} vectors verified from SPEC.md rules alone")
    vocab = folder / "vocab"
    for name, checker in VOCAB.items():
        vector = json.loads((vocab / f"{name}.json").read_text())
        print(f"vocab/{name}: {checker(vector)} cases checked from SPEC.md part II")
    net = folder / "net"
    for name, checker in NET.items():
        vector = json.loads((net / f"{name}.json").read_text())
        print(f"net/{name}: {checker(vector)} cases checked from SPEC.md part III")


if __name__ == "__main__":
    main()

"""Offline verifier of AgentMessage Consent proof packets.

This module stands alone on purpose: it imports only the standard library,
``cryptography`` (Ed25519) and ``rfc8785`` (canonical JSON), never the rest of
AgentMessage Consent, so it can be copied out, read in one sitting and run
years later without our server, database or settings:

    python verify.py PACKET.json [--public-key KEY] [--checkpoint SAVED.txt]

It prints one line per check and exits 0 only when every check passes.

What it checks (the packet format is ``agentmessage.proof/2``, see the README):

- the checkpoint: a C2SP tlog-checkpoint in a C2SP signed note, signed with
  Ed25519 by the key given with ``--public-key`` (pinned) or else by the key the
  packet carries (then the output says the key was not pinned);
- every event: its leaf hash is SHA-256(0x00 || RFC 8785 canonical JSON of the
  event), and its RFC 6962 inclusion proof leads to the checkpoint's root;
- the story is whole: each event (format ``agentmessage.event/2``) names its
  place in the record's history and the leaf hash of the event before it, and
  the record head, a note signed with the same key, says how many events the
  record had at the checkpoint and which was the last; a packet with an event
  left out, at the end or in the middle, fails;
- nothing is unchecked: every other field is signed (the manifest, through the
  record head) or derived from signed data and compared (the record's state,
  the sender, the contact, the tree size and root, the key's other forms), and
  a field the format does not have fails;
- with ``--checkpoint``: the saved checkpoint is signed by the same key and the
  log only grew since (RFC 6962 consistency proof carried by the packet).

Events written before format 2 (``agentmessage.event/1``) keep verifying as
they were written: the log is never rewritten, and the record head still
counts them.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

PACKET_FORMAT = "agentmessage.proof/2"
EVENT_FORMAT = "agentmessage.event/2"  # what the log appends now
EVENT_FORMATS = ("agentmessage.event/1", EVENT_FORMAT)  # what a packet may hold, in order
RECORD_HEAD_FORMAT = "agentmessage.record-head/1"
ED25519 = 0x01  # the signed-note signature type of Ed25519

# Every field a packet has; anything else fails (a field nobody checks could say anything).
PACKET_FIELDS = frozenset(
    {
        "manifest",
        "record",
        "events",
        "tree_size",
        "root_hash",
        "checkpoint",
        "record_head",
        "public_key",
        "consistency",
    }
)
ENTRY_FIELDS = frozenset({"leaf_index", "event", "leaf_hash", "inclusion_proof"})
RECORD_FIELDS = (
    "id",
    "org_id",
    "phone_number_id",
    "contact_number",
    "opted_in",
    "opted_in_at",
    "opted_out_at",
    "source",
    "consent_method",
    "created_at",
    "updated_at",
)
KEY_FIELDS = frozenset({"key_id", "name", "algorithm", "public_key", "vkey", "pem"})


# RFC 6962 / RFC 9162 hashing.


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def event_leaf_hash(event: dict[str, Any]) -> bytes:
    return leaf_hash(rfc8785.dumps(event))


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes | None:
    """The root that ``path`` proves ``leaf`` at ``index`` into, or None (RFC 9162 2.1.3.2)."""
    if index < 0 or index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def consistent(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether the tree of size ``second`` extends the one of size ``first`` (RFC 9162 2.1.4.2)."""
    if first < 0 or first > second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof  # every log extends the empty one
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two: its root is the first node
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# C2SP signed notes and checkpoints.


@dataclass(frozen=True)
class PublicKey:
    name: str
    key: Ed25519PublicKey

    @property
    def raw(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self.key.public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_hash(self) -> bytes:
        """The 4-byte key id of signed notes: SHA-256(name || "\\n" || 0x01 || key)[:4]."""
        return hashlib.sha256(self.name.encode() + b"\n" + bytes([ED25519]) + self.raw).digest()[:4]

    @property
    def key_id(self) -> str:
        return self.key_hash.hex()

    @property
    def vkey(self) -> str:
        """The note verifier key: ``name+hash+base64(0x01 || key)``."""
        encoded = base64.b64encode(bytes([ED25519]) + self.raw).decode()
        return f"{self.name}+{self.key_id}+{encoded}"


def parse_vkey(text: str) -> PublicKey:
    """A signed-note verifier key ``name+hash+base64``."""
    # The name has no "+" (C2SP), base64 may: split from the left.
    name, key_id, encoded = text.strip().split("+", 2)
    raw = base64.b64decode(encoded, validate=True)
    if len(raw) != 33 or raw[0] != ED25519:
        raise ValueError("not an Ed25519 verifier key")
    key = PublicKey(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
    if key.key_id != key_id:
        raise ValueError("the verifier key's hash does not match its name and key")
    return key


def load_public_key(text: str, name: str | None = None) -> PublicKey:
    """A key from a verifier-key line, or from PEM (then ``name`` is the signer's name)."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        if name is None:
            raise ValueError("a PEM key needs the signer's name")
        return PublicKey(name, key)
    return parse_vkey(text)


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    note: str  # the whole signed note, as published


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """(signed text, [(signer name, key hash + signature)]) of a signed note."""
    text, sep, signatures = note.rpartition("\n\n")
    if not sep:
        raise ValueError("not a signed note: no blank line before the signatures")
    lines = []
    for line in signatures.split("\n"):
        if not line:
            continue
        if not line.startswith("\u2014 "):
            raise ValueError("not a signed note: a signature line must start with an em dash")
        name, _, encoded = line[2:].rpartition(" ")
        lines.append((name, base64.b64decode(encoded, validate=True)))
    return text + "\n", lines


def verify_note(note: str, key: PublicKey) -> str:
    """The signed text when ``key`` signed the note; raises ValueError otherwise."""
    text, signatures = split_note(note)
    for name, blob in signatures:
        if name == key.name and blob[:4] == key.key_hash:
            try:
                key.key.verify(blob[4:], text.encode())
            except InvalidSignature:
                raise ValueError(f"the signature by {key.name} ({key.key_id}) is invalid") from None
            return text
    ids = ", ".join(f"{name} ({blob[:4].hex()})" for name, blob in signatures) or "none"
    raise ValueError(f"not signed by {key.name} ({key.key_id}); signed by: {ids}")


def parse_checkpoint(note: str) -> Checkpoint:
    """The origin, size and root of a tlog-checkpoint note (signature not checked)."""
    text, _ = split_note(note)
    lines = text.split("\n")
    if len(lines) < 4:
        raise ValueError("a checkpoint has an origin, a size and a root hash")
    origin, size, root = lines[0], lines[1], lines[2]
    if not size.isdigit() or (size != "0" and size.startswith("0")):
        raise ValueError("a checkpoint's tree size must be a decimal number")
    try:
        root_bytes = base64.b64decode(root, validate=True)
    except binascii.Error:
        raise ValueError("a checkpoint's root hash must be base64") from None
    if len(root_bytes) != 32:
        raise ValueError("a checkpoint's root hash must be 32 bytes")
    return Checkpoint(origin, int(size), root_bytes, note)


# The record head: how the story ends, signed.


@dataclass(frozen=True)
class RecordHead:
    origin: str
    size: int
    root: bytes
    consent_id: str
    events: int
    last_leaf_index: int
    last_leaf_hash: bytes
    manifest_hash: bytes


def manifest_hash(manifest: Any) -> bytes:
    return hashlib.sha256(rfc8785.dumps(manifest)).digest()


def record_head_text(head: RecordHead) -> str:
    """The signed body of a record head: "in the tree of ``size`` leaves with this
    root, record R has K events, the last is leaf L with hash H, and the packet's
    manifest is the one with this hash"."""
    return "\n".join(
        [
            RECORD_HEAD_FORMAT,
            head.origin,
            str(head.size),
            base64.b64encode(head.root).decode(),
            head.consent_id,
            str(head.events),
            str(head.last_leaf_index),
            base64.b64encode(head.last_leaf_hash).decode(),
            base64.b64encode(head.manifest_hash).decode(),
            "",
        ]
    )


def parse_record_head(note: str) -> RecordHead:
    """The statement of a record-head note (signature not checked)."""
    text, _ = split_note(note)
    lines = text.split("\n")
    if len(lines) != 10 or lines[0] != RECORD_HEAD_FORMAT:
        raise ValueError(f"not a {RECORD_HEAD_FORMAT} note")
    origin, size, root, consent_id, events, last_index, last_hash, digest = lines[1:9]
    for name, number in (("tree size", size), ("event count", events), ("leaf index", last_index)):
        if not number.isdigit() or (number != "0" and number.startswith("0")):
            raise ValueError(f"a record head's {name} must be a decimal number")
    hashes = []
    for name, encoded in (("root", root), ("last leaf hash", last_hash), ("manifest hash", digest)):
        try:
            value = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ValueError(f"a record head's {name} must be base64") from None
        if len(value) != 32:
            raise ValueError(f"a record head's {name} must be 32 bytes")
        hashes.append(value)
    return RecordHead(
        origin, int(size), hashes[0], consent_id, int(events), int(last_index), hashes[1], hashes[2]
    )


# The packet.


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


def _object(value: Any) -> dict[str, Any]:
    """A JSON object of the packet, or an empty one where it is something else."""
    return value if isinstance(value, dict) else {}


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    return base64.b64decode(value, validate=True)


def verify_packet(
    packet: dict[str, Any],
    public_key: PublicKey | None = None,
    saved_checkpoint: str | None = None,
) -> list[Check]:
    """Every check of the packet, in order; the packet verifies when all are ``ok``."""
    checks: list[Check] = []
    manifest = _object(packet.get("manifest")) if isinstance(packet, dict) else {}
    fmt = manifest.get("format")
    if fmt != PACKET_FORMAT:
        detail = f"expected {PACKET_FORMAT}, got {fmt!r}"
        if fmt == "agentmessage.proof/1":
            detail += ": that format cannot show an event left out; download the packet again"
        return [Check("format", False, detail)]
    unexpected = sorted(set(packet) - PACKET_FIELDS)
    if unexpected:
        checks.append(
            Check("format", False, f"fields the format does not have: {', '.join(unexpected)}")
        )
        return checks
    checks.append(Check("format", True, PACKET_FORMAT))

    # The key: pinned by the verifier, or the packet's own; its other forms must agree.
    packet_key = _object(packet.get("public_key"))
    key = public_key
    if key is None:
        try:
            key = parse_vkey(str(packet_key.get("vkey", "")))
        except (ValueError, binascii.Error) as exc:
            checks.append(Check("key", False, f"the packet's public key is unusable: {exc}"))
            return checks
        checks.append(
            Check(
                "key",
                True,
                f"{key.name} ({key.key_id}) taken from the packet itself: NOT PINNED; "
                "pass --public-key with the key you trust",
            )
        )
    else:
        checks.append(Check("key", True, f"{key.name} ({key.key_id}) pinned by the verifier"))
    checks.append(_check_key_fields(packet_key, key))

    # The checkpoint and its signature.
    try:
        checkpoint = parse_checkpoint(str(packet.get("checkpoint", "")))
        verify_note(checkpoint.note, key)
    except (ValueError, binascii.Error) as exc:
        checks.append(Check("checkpoint signature", False, str(exc)))
        return checks
    checks.append(
        Check(
            "checkpoint signature",
            True,
            f"{checkpoint.origin}, tree size {checkpoint.size}, signed by {key.key_id}",
        )
    )
    copies = []
    if packet.get("tree_size") != checkpoint.size:
        copies.append(f"tree_size {packet.get('tree_size')!r} is not the checkpoint's")
    if packet.get("root_hash") != base64.b64encode(checkpoint.root).decode():
        copies.append(f"root_hash {packet.get('root_hash')!r} is not the checkpoint's")
    if copies:
        checks.append(Check("checkpoint fields", False, "; ".join(copies)))
    organization = manifest.get("organization")
    org = str(organization.get("id", "")) if isinstance(organization, dict) else ""
    if not checkpoint.origin.endswith("/" + org):
        checks.append(
            Check("checkpoint origin", False, f"{checkpoint.origin} is not organization {org}'s")
        )

    record = _object(packet.get("record"))
    entries = packet.get("events")
    if not isinstance(entries, list) or not entries:
        checks.append(Check("events", False, "the packet holds no events"))
        return checks

    # Each event: its leaf hash, its inclusion proof, and its place in the story.
    previous_index = -1
    previous_hash: bytes | None = None
    formats_seen = 0
    events: list[dict[str, Any]] = []
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            checks.append(Check(f"event {position}", False, "is not an object"))
            continue
        event = entry.get("event")
        index = entry.get("leaf_index")
        label = f"event {position}"
        if event is None:
            checks.append(
                Check(label, False, f"leaf {index} of this record has no event: it was deleted")
            )
            previous_hash = UNKNOWN
            continue
        if not isinstance(event, dict):
            checks.append(Check(label, False, "is not an object"))
            continue
        label = f"event {position} ({event.get('type')}, {event.get('id')})"
        if not isinstance(index, int) or isinstance(index, bool):
            checks.append(Check(label, False, "is in no leaf of the log: it was added outside it"))
            previous_hash = UNKNOWN
            continue
        try:
            leaf = event_leaf_hash(event)
            path = [_b64(h) for h in entry.get("inclusion_proof", [])]
            root = root_from_inclusion(index, checkpoint.size, leaf, path)
        except (ValueError, TypeError, binascii.Error, rfc8785.CanonicalizationError) as exc:
            checks.append(Check(label, False, f"unreadable inclusion proof: {exc}"))
            previous_hash = UNKNOWN
            continue
        if root != checkpoint.root:
            checks.append(
                Check(
                    label,
                    False,
                    f"leaf {index} is not in the checkpoint's tree: the event differs from "
                    "what the log recorded",
                )
            )
        else:
            checks.append(Check(label, True, f"leaf {index} is included in tree {checkpoint.size}"))
        problems = []
        if set(entry) - ENTRY_FIELDS:
            problems.append(f"fields the format does not have: {sorted(set(entry) - ENTRY_FIELDS)}")
        if root == checkpoint.root and entry.get("leaf_hash") != base64.b64encode(leaf).decode():
            # (An edited event fails its inclusion above: that says it already.)
            problems.append("leaf_hash is not the event's")
        version = event.get("format")
        if version not in EVENT_FORMATS:
            problems.append(f"format {version!r} is none of {', '.join(EVENT_FORMATS)}")
        elif EVENT_FORMATS.index(version) < formats_seen:
            problems.append(f"format {version} after a later format: the log never goes back")
        else:
            formats_seen = EVENT_FORMATS.index(version)
        if version == EVENT_FORMAT:
            problems += _chain_problems(event, position, previous_hash, manifest)
        # The next event names this one's leaf hash; an event that failed its
        # inclusion was reported there, so the next is not blamed for it.
        included = root == checkpoint.root
        if event.get("consent_id") != record.get("id"):
            problems.append("belongs to another record")
        if event.get("org_id") != org:
            problems.append("belongs to another organization")
        if event.get("contact_number") != record.get("contact_number"):
            problems.append("names another contact")
        if index <= previous_index:
            problems.append(f"leaf {index} does not follow leaf {previous_index}")
        previous_index, previous_hash = index, (leaf if included else UNKNOWN)
        events.append(event)
        if problems:
            checks.append(Check(f"{label} order", False, "; ".join(problems)))

    checks.append(_check_record_head(packet, key, checkpoint, manifest, record, entries))
    checks.append(_check_record(record, events, len(events) == len(entries)))
    checks.append(_check_manifest(manifest, record, events))

    if saved_checkpoint is not None:
        checks.append(_check_saved(saved_checkpoint, checkpoint, key, packet))
    elif "consistency" in packet:
        proof = packet.get("consistency")
        second = proof.get("second") if isinstance(proof, dict) else None
        if second != checkpoint.size:
            checks.append(
                Check("consistency", False, f"its proof ends at {second!r}, not at the checkpoint")
            )
    return checks


def _check_key_fields(fields: dict[str, Any], key: PublicKey) -> Check:
    """The packet's ``public_key`` is the key checked against, in every form it takes."""
    name = "public key fields"
    problems = []
    if set(fields) - KEY_FIELDS:
        problems.append(f"fields the format does not have: {sorted(set(fields) - KEY_FIELDS)}")
    expected = {
        "key_id": key.key_id,
        "name": key.name,
        "algorithm": "Ed25519",
        "public_key": base64.b64encode(key.raw).decode(),
        "vkey": key.vkey,
    }
    problems += [
        f"{field} is not the key's" for field, v in expected.items() if fields.get(field) != v
    ]
    if "pem" in fields:
        try:
            pem = load_public_key(str(fields["pem"]), name=key.name)
            if pem.raw != key.raw:
                problems.append("pem is another key")
        except (ValueError, TypeError):
            problems.append("pem is not an Ed25519 public key")
    if problems:
        return Check(name, False, "; ".join(problems))
    return Check(name, True, f"every form names {key.key_id}")


UNKNOWN = b"unknown"  # an event whose own leaf hash could not be trusted


def _chain_problems(
    event: dict[str, Any], position: int, previous: bytes | None, manifest: dict[str, Any]
) -> list[str]:
    """What breaks the chain: a format-2 event names its place and its predecessor."""
    problems = []
    sequence = event.get("sequence")
    if sequence != position:
        problems.append(
            f"it is event {sequence!r} of its record, but number {position} here: "
            "an event before it is missing"
        )
    named = event.get("previous")
    if position == 1 and named is not None:
        problems.append("it names a previous event, but none is here: the first is missing")
    elif previous is not UNKNOWN and named != (
        base64.b64encode(previous).decode() if previous is not None else None
    ):
        problems.append("the previous event it names is not the one before it here")
    sender = manifest.get("sender")
    if not isinstance(sender, dict) or event.get("sender_number") != sender.get("phone_number"):
        problems.append("its sender number is not the manifest's")
    return problems


def _check_record_head(
    packet: dict[str, Any],
    key: PublicKey,
    checkpoint: Checkpoint,
    manifest: dict[str, Any],
    record: dict[str, Any],
    entries: list[Any],
) -> Check:
    """The end of the story, signed: no event left out after the last one shown."""
    name = "record head"
    try:
        note = str(packet.get("record_head", ""))
        head = parse_record_head(note)
        verify_note(note, key)
    except (ValueError, binascii.Error) as exc:
        return Check(name, False, str(exc))
    last = entries[-1] if isinstance(entries[-1], dict) else {}
    problems = []
    if (head.origin, head.size, head.root) != (checkpoint.origin, checkpoint.size, checkpoint.root):
        problems.append("it is about another tree than the checkpoint")
    if head.consent_id != record.get("id") or head.consent_id != manifest.get("consent_id"):
        problems.append(f"it is about record {head.consent_id}")
    if head.events != len(entries):
        problems.append(
            f"the record had {head.events} events at tree size {head.size}, "
            f"the packet shows {len(entries)}"
        )
    if head.last_leaf_index != last.get("leaf_index"):
        problems.append(
            f"the record's last event is leaf {head.last_leaf_index}, the packet's last is "
            f"leaf {last.get('leaf_index')}"
        )
    elif base64.b64encode(head.last_leaf_hash).decode() != last.get("leaf_hash"):
        problems.append("the record's last event is another than the packet's last")
    try:
        signed = head.manifest_hash == manifest_hash(manifest)
    except rfc8785.CanonicalizationError as exc:  # a value JSON cannot carry exactly
        signed = False
        problems.append(f"the manifest has no canonical form ({exc})")
    if not signed:
        problems.append("the manifest is not the one signed")
    if problems:
        return Check(name, False, "; ".join(problems))
    return Check(
        name,
        True,
        f"{head.events} events at tree size {head.size}, the last leaf {head.last_leaf_index}; "
        "the manifest as signed",
    )


def derive_record(events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A record's state as its events leave it, applied in order as the server does."""
    state: dict[str, Any] = {}
    for event in events:
        opted_in = event.get("type") == "opt_in"
        if not state:
            state = {
                "id": event.get("consent_id"),
                "org_id": event.get("org_id"),
                "phone_number_id": event.get("phone_number_id"),
                "contact_number": event.get("contact_number"),
                "opted_in_at": None,
                "opted_out_at": None,
                "consent_method": None,
                "created_at": event.get("created_at"),
            }
        state["opted_in"] = opted_in
        if opted_in:
            state["opted_in_at"], state["opted_out_at"] = event.get("occurred_at"), None
        else:
            state["opted_out_at"] = event.get("occurred_at")
        state["source"] = event.get("source")
        state["consent_method"] = event.get("consent_method") or state["consent_method"]
        state["updated_at"] = event.get("created_at")
    return state


def _check_record(record: dict[str, Any], events: list[dict[str, Any]], whole: bool) -> Check:
    """Every field of the record is what its events made it."""
    name = "record state"
    if not whole:
        return Check(name, False, "cannot be derived: an event above is missing")
    derived = derive_record(events)
    problems = [
        f"{field} is not a field of a record" for field in sorted(set(record) - set(RECORD_FIELDS))
    ]
    problems += [
        f"{field} is {record.get(field)!r} but its events make it {derived.get(field)!r}"
        for field in RECORD_FIELDS
        if record.get(field) != derived.get(field)
    ]
    if problems:
        return Check(name, False, "; ".join(problems))
    return Check(
        name,
        True,
        f"opted_in={derived['opted_in']} and every other field as its {len(events)} events left it",
    )


def _check_manifest(
    manifest: dict[str, Any], record: dict[str, Any], events: list[dict[str, Any]]
) -> Check:
    """What the manifest says of the record, its contact and its sender, the events say."""
    name = "manifest"
    sender = _object(manifest.get("sender"))
    problems = []
    if manifest.get("consent_id") != record.get("id"):
        problems.append("consent_id is not the record's")
    if manifest.get("contact_number") != record.get("contact_number"):
        problems.append("contact_number is not the record's")
    if any(e.get("phone_number_id") != sender.get("phone_number_id") for e in events):
        problems.append("sender.phone_number_id is not the events'")
    if problems:
        return Check(name, False, "; ".join(problems))
    return Check(name, True, "the record, the contact and the sender of its events")


def _check_saved(
    saved_note: str, current: Checkpoint, key: PublicKey, packet: dict[str, Any]
) -> Check:
    name = "consistency with the saved checkpoint"
    try:
        saved = parse_checkpoint(saved_note)
        verify_note(saved.note, key)
    except (ValueError, binascii.Error) as exc:
        return Check(name, False, f"the saved checkpoint does not verify: {exc}")
    if saved.origin != current.origin:
        return Check(name, False, f"the saved checkpoint is of another log ({saved.origin})")
    if saved.size > current.size:
        return Check(
            name,
            False,
            f"the saved checkpoint has {saved.size} leaves but the packet's only {current.size}: "
            "the log was rolled back (or fetch a newer packet)",
        )
    if saved.size == current.size:
        ok = saved.root == current.root
        detail = "same tree" if ok else "same size, different root: the log was rewritten"
        return Check(name, ok, detail)
    proof = packet.get("consistency") or {}
    if proof.get("first") != saved.size or proof.get("second") != current.size:
        return Check(
            name,
            False,
            f"the packet carries no consistency proof from size {saved.size}; "
            f"download it with ?since={saved.size}",
        )
    try:
        hashes = [_b64(h) for h in proof.get("proof", [])]
    except (ValueError, binascii.Error):
        return Check(name, False, "unreadable consistency proof")
    if consistent(saved.size, current.size, saved.root, current.root, hashes):
        return Check(name, True, f"tree {current.size} extends the saved tree {saved.size}")
    return Check(
        name,
        False,
        f"tree {current.size} does not extend the saved tree {saved.size}: the log was rewritten",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="agentmessage proof verify",
        description="Verify a consent proof packet offline.",
    )
    parser.add_argument("packet", type=Path)
    parser.add_argument(
        "--public-key",
        type=Path,
        help="the log's public key you trust: a verifier-key line (name+id+key) as "
        "published at /.well-known/agentmessage/log-keys, or a PEM file",
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="a checkpoint saved earlier from /v1/proof/checkpoint"
    )
    args = parser.parse_args(argv)
    try:
        packet = json.loads(args.packet.read_text(encoding="utf-8"))
        saved = args.checkpoint.read_text(encoding="utf-8") if args.checkpoint else None
        key_text = args.public_key.read_text(encoding="utf-8") if args.public_key else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        print(f"cannot read input: {exc}", file=sys.stderr)
        return 2
    if not isinstance(packet, dict):
        print("cannot read input: a packet is a JSON object", file=sys.stderr)
        return 2
    key = None
    if key_text is not None:
        try:
            signer = str((packet.get("public_key") or {}).get("name", ""))
            key = load_public_key(key_text, name=signer or None)
        except (ValueError, binascii.Error) as exc:
            print(f"cannot read --public-key: {exc}", file=sys.stderr)
            return 2
    checks = verify_packet(packet, key, saved)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if not c.ok]
    print(f"{'VERIFIED' if not failed else 'NOT VERIFIED'}: {len(checks) - len(failed)} of "
          f"{len(checks)} checks passed")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Offline verifier of AgentMessage Consent proof packets.

This module stands alone on purpose: it imports only the standard library,
``cryptography`` (Ed25519) and ``rfc8785`` (canonical JSON), never the rest of
AgentMessage Consent, so it can be copied out, read in one sitting and run
years later without our server, database or settings:

    python verify.py PACKET.json [--public-key KEY] [--checkpoint SAVED.txt]

It prints one line per check and exits 0 only when every check passes.

What it checks (the packet format is ``agentmessage.proof/1``, see the README):

- the checkpoint: a C2SP tlog-checkpoint in a C2SP signed note, signed with
  Ed25519 by the key given with ``--public-key`` (pinned) or else by the key the
  packet carries (then the output says the key was not pinned);
- every event: its leaf hash is SHA-256(0x00 || RFC 8785 canonical JSON of the
  event), and its RFC 6962 inclusion proof leads to the checkpoint's root;
- the events are one contact's, in log order, each with its leaf, and the
  record's current state is its latest event's;
- with ``--checkpoint``: the saved checkpoint is signed by the same key and the
  log only grew since (RFC 6962 consistency proof carried by the packet).
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

PACKET_FORMAT = "agentmessage.proof/1"
EVENT_FORMAT = "agentmessage.event/1"
ED25519 = 0x01  # the signed-note signature type of Ed25519


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


# The packet.


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.detail}"


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
    fmt = packet.get("manifest", {}).get("format") if isinstance(packet, dict) else None
    if fmt != PACKET_FORMAT:
        return [Check("format", False, f"expected {PACKET_FORMAT}, got {fmt!r}")]
    checks.append(Check("format", True, PACKET_FORMAT))

    # The key: pinned by the verifier, or the packet's own.
    packet_key = packet.get("public_key") or {}
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
    manifest = packet["manifest"]
    org = str(manifest.get("organization", {}).get("id", ""))
    if not checkpoint.origin.endswith("/" + org):
        checks.append(
            Check("checkpoint origin", False, f"{checkpoint.origin} is not organization {org}'s")
        )

    record = packet.get("record") or {}
    entries = packet.get("events") or []
    if not isinstance(entries, list) or not entries:
        checks.append(Check("events", False, "the packet holds no events"))
        return checks

    # Each event: its leaf hash and its inclusion proof.
    previous = -1
    for position, entry in enumerate(entries, start=1):
        event = entry.get("event")
        index = entry.get("leaf_index")
        label = f"event {position}"
        if event is None:
            checks.append(
                Check(label, False, f"leaf {index} of this record has no event: it was deleted")
            )
            continue
        label = f"event {position} ({event.get('type')}, {event.get('id')})"
        if not isinstance(index, int):
            checks.append(Check(label, False, "is in no leaf of the log: it was added outside it"))
            continue
        try:
            path = [_b64(h) for h in entry.get("inclusion_proof", [])]
            root = root_from_inclusion(index, checkpoint.size, event_leaf_hash(event), path)
        except (ValueError, binascii.Error, rfc8785.CanonicalizationError) as exc:
            checks.append(Check(label, False, f"unreadable inclusion proof: {exc}"))
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
        if event.get("format") != EVENT_FORMAT:
            problems.append(f"format is not {EVENT_FORMAT}")
        if event.get("consent_id") != record.get("id"):
            problems.append("belongs to another record")
        if event.get("org_id") != org:
            problems.append("belongs to another organization")
        if event.get("contact_number") != record.get("contact_number"):
            problems.append("names another contact")
        if index <= previous:
            problems.append(f"leaf {index} does not follow leaf {previous}")
        previous = index
        if problems:
            checks.append(Check(f"{label} order", False, "; ".join(problems)))

    # The record's state is the one its latest event left.
    last = entries[-1].get("event") or {}
    expected = last.get("type") == "opt_in"
    if record.get("opted_in") is not expected:
        checks.append(
            Check(
                "record state",
                False,
                f"the record says opted_in={record.get('opted_in')} but its latest event "
                f"is {last.get('type')}",
            )
        )
    else:
        checks.append(
            Check("record state", True, f"opted_in={expected}, as its latest event left it")
        )

    if saved_checkpoint is not None:
        checks.append(_check_saved(saved_checkpoint, checkpoint, key, packet))
    return checks


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

"""Proof packets, consistency proofs and the checkpointer, over the log's tables."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.service import OrgScope
from agentmessage.consent.repository import ConsentRepository
from agentmessage.consent.schemas import ConsentRecordOut
from agentmessage.db.engine import Database
from agentmessage.db.models import LogKey, LogLeaf, Organization
from agentmessage.kit.clock import utcnow
from agentmessage.kit.errors import NotFound, ValidationFailed
from agentmessage.kit.timefmt import format_rfc3339
from agentmessage.proof import log
from agentmessage.proof.keys import Signer
from agentmessage.proof.verify import (
    PACKET_FORMAT,
    PublicKey,
    RecordHead,
    manifest_hash,
    parse_checkpoint,
    record_head_text,
    verify_note,
)

logger = logging.getLogger(__name__)


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def origin_prefix(public_base_url: str) -> str:
    """``127.0.0.1:8000``: checkpoints name their log ``<this>/log/<org id>``."""
    parts = urlsplit(public_base_url)
    return (parts.netloc + parts.path).rstrip("/") or "agentmessage"


def key_json(key: PublicKey, pem: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key_id": key.key_id,
        "name": key.name,
        "algorithm": "Ed25519",
        "public_key": b64(key.raw),
        "vkey": key.vkey,
    }
    if pem is not None:
        out["pem"] = pem
    return out


def checkpoint_json(checkpoint: Any) -> dict[str, Any]:
    return {
        "tree_size": checkpoint.tree_size,
        "root_hash": b64(checkpoint.root_hash),
        "key_id": checkpoint.key_id,
        "created_at": format_rfc3339(checkpoint.created_at),
        "checkpoint": checkpoint.note,
    }


async def consistency(
    session: AsyncSession, org: OrgScope, first: int, second: int
) -> dict[str, Any]:
    """RFC 6962 proof that the log of size ``second`` extends the one of size ``first``."""
    size = (await log.head(session, org)).size
    problems = {}
    if second > size:
        problems["second"] = f"must be at most the log's size ({size})"
    if first > second:
        problems["first"] = "must be at most second"
    if problems:
        raise ValidationFailed(details=problems)
    _, proof = await log.prove(session, org, second, [], since=first)
    return {
        "first": first,
        "second": second,
        "first_root": b64(await log.subtree_root(session, org, first)),
        "second_root": b64(await log.subtree_root(session, org, second)),
        "proof": [b64(h) for h in proof],
    }


async def published_keys(session: AsyncSession) -> list[PublicKey]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    rows = (await session.scalars(select(LogKey).order_by(LogKey.created_at))).all()
    return [PublicKey(row.name, Ed25519PublicKey.from_public_bytes(row.public_key)) for row in rows]


async def packet(
    session: AsyncSession,
    org: OrgScope,
    consent_id: uuid.UUID,
    signer: Signer,
    prefix: str,
    *,
    since: int | None = None,
) -> dict[str, Any]:
    """The proof packet of one consent record (format ``agentmessage.proof/2``):
    its events with their inclusion proofs, the checkpoint, and the record head,
    signed now, that says how many events the record has at that checkpoint."""
    repo = ConsentRepository(session)
    record = await repo.get(org, consent_id)
    if record is None:
        raise NotFound("consent record not found")
    for _attempt in range(5):
        checkpoint = await log.checkpoint(session, org, signer, prefix)
        statement = (
            select(
                LogLeaf.leaf_index,
                LogLeaf.event_id,
                # A leaf's own hash leads its stored hashes: not the whole blob.
                func.substr(LogLeaf.hashes, 1, 32).label("leaf_hash"),
            )
            .where(LogLeaf.org_id == org, LogLeaf.consent_id == consent_id)
            .order_by(LogLeaf.leaf_index)
        )
        leaves = (await session.execute(statement)).all()
        events = list(await repo.events(org, consent_id))
        again = await repo.get(org, consent_id)
        # A change committed while we read: start over on a newer checkpoint.
        settled = again is not None and again.updated_at == record.updated_at
        if settled and all(leaf.leaf_index < checkpoint.tree_size for leaf in leaves):
            break
        record = again or record
    if since is not None and since > checkpoint.tree_size:
        raise ValidationFailed(
            details={"since": f"must be at most the log's size ({checkpoint.tree_size})"}
        )
    size = checkpoint.tree_size
    paths, proof = await log.prove(
        session, org, size, [leaf.leaf_index for leaf in leaves], since=since
    )
    organization = await session.get(Organization, org)
    sender = await repo.phone_number(org, record.phone_number_id)
    sender_number = sender.number if sender else None
    by_id = {event.id: event for event in events}
    entries: list[dict[str, Any]] = []
    for leaf in leaves:
        event = by_id.pop(leaf.event_id, None)
        document = (
            log.document_of(event, record.phone_number_id, record.contact_number, sender_number)
            if event is not None
            else None
        )
        entries.append(
            {
                "leaf_index": leaf.leaf_index,
                "event": document,
                "leaf_hash": b64(log.leaf_of(document)) if document else None,
                "inclusion_proof": [b64(h) for h in paths[leaf.leaf_index]],
            }
        )
    # An event the log never saw (inserted behind its back) is shown, without a leaf.
    for event in by_id.values():
        document = log.document_of(
            event, record.phone_number_id, record.contact_number, sender_number
        )
        entries.append(
            {"leaf_index": None, "event": document, "leaf_hash": None, "inclusion_proof": []}
        )
    manifest = {
        "format": PACKET_FORMAT,
        "generated_at": format_rfc3339(utcnow()),
        "organization": {"id": str(org), "name": organization.name if organization else None},
        "sender": {
            "phone_number_id": str(record.phone_number_id),
            "phone_number": sender_number,
        },
        "contact_number": record.contact_number,
        "consent_id": str(record.id),
        "verify_with": "agentmessage proof verify PACKET.json --public-key KEY",
    }
    # The tree's name as its checkpoint was signed: the public URL it is named by
    # may have changed since (a stored note that does not parse fails the verifier).
    try:
        origin = parse_checkpoint(checkpoint.note).origin
    except ValueError:
        origin = log.origin_of(prefix, org)
    # Packets are signed by the current key. After a rotation with no event since,
    # the stored checkpoint is the former key's: the same tree is signed again here.
    note = checkpoint.note
    if checkpoint.key_id != signer.key_id and await _signed_by_former_key(session, note):
        note = signer.sign_note(log.checkpoint_text(origin, size, checkpoint.root_hash))
    # What the log holds of the record up to the checkpoint, signed: a packet
    # with an event left out, at the end included, no longer matches it.
    proven = [leaf for leaf in leaves if leaf.leaf_index < size]
    head = RecordHead(
        origin=origin,
        size=size,
        root=checkpoint.root_hash,
        consent_id=str(record.id),
        events=len(proven),
        last_leaf_index=proven[-1].leaf_index if proven else 0,
        last_leaf_hash=proven[-1].leaf_hash if proven else bytes(32),
        manifest_hash=manifest_hash(manifest),
    )
    out: dict[str, Any] = {
        "manifest": manifest,
        "record": ConsentRecordOut.model_validate(record).model_dump(mode="json"),
        "events": entries,
        "tree_size": size,
        "root_hash": b64(checkpoint.root_hash),
        "checkpoint": note,
        "record_head": signer.sign_note(record_head_text(head)),
        "public_key": key_json(signer.public, signer.public_pem()),
    }
    if since is not None:
        out["consistency"] = {
            "first": since,
            "second": size,
            "proof": [b64(h) for h in proof],
        }
    return out


async def _signed_by_former_key(session: AsyncSession, note: str) -> bool:
    """Whether a stored checkpoint is signed by one of this server's published
    keys: only such a tree is signed again with the current key."""
    for key in await published_keys(session):
        try:
            verify_note(note, key)
        except ValueError:
            continue
        return True
    return False


class Checkpointer:
    """Signs a checkpoint of every organization whose log grew, at least every
    ``interval`` seconds while events arrive. Runs in ``serve`` (with the inline
    dispatcher) and in ``agentmessage worker``; any number may run at once."""

    def __init__(self, database: Database, signer: Signer, prefix: str, interval: float) -> None:
        self.database = database
        self.signer = signer
        self.prefix = prefix
        self.interval = interval
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """Sign what is due; the number of checkpoints made."""
        async with self.database.session(writes=False) as session:
            due = await log.orgs_needing_checkpoint(session)
        for org in due:
            async with self.database.session(writes=True) as session:
                await log.checkpoint(session, OrgScope(org), self.signer, self.prefix)
                await session.commit()
        return len(due)

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:
                logger.error("checkpointer pass failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._stop.wait()

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self.run(), name="agentmessage-checkpointer")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

"""/v1/proof, the consent proof packet and certificate, and the published log keys."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from agentmessage.auth.dependencies import ConsentRead
from agentmessage.kit.openapi import error_responses
from agentmessage.kit.routing import WritingRoute, get_session
from agentmessage.proof import certificate, log, service
from agentmessage.proof.keys import Signer

# GET /v1/proof/checkpoint and the packet sign a checkpoint when the log grew.
router = APIRouter(tags=["Proof"], route_class=WritingRoute)
Session = Annotated[AsyncSession, Depends(get_session)]


async def get_signer(request: Request) -> Signer:
    signer: Signer = request.app.state.signer
    return signer


async def get_prefix(request: Request) -> str:
    return service.origin_prefix(request.app.state.settings.public_base_url)


SignerDep = Annotated[Signer, Depends(get_signer)]
Prefix = Annotated[str, Depends(get_prefix)]


@router.get(
    "/v1/proof/checkpoint",
    summary="The latest signed checkpoint of your organization's log",
    description=(
        "A C2SP tlog-checkpoint (origin, tree size, root hash) signed with the server's "
        "Ed25519 key as a C2SP signed note; signed now if the log grew since the last "
        "one. Save it: `agentmessage proof verify --checkpoint` later proves the log only "
        "grew since. `?format=text` returns the note alone. Requires consent:read."
    ),
    responses={
        200: {
            "description": "The checkpoint (JSON), or with `?format=text` the signed note",
            "content": {"application/json": {}, "text/plain": {"schema": {"type": "string"}}},
        },
        **error_responses(401, 403, 429),
    },
)
async def get_checkpoint(
    caller: ConsentRead,
    session: Session,
    signer: SignerDep,
    prefix: Prefix,
    format: Annotated[Literal["json", "text"], Query()] = "json",
) -> Response:
    checkpoint = await log.checkpoint(session, caller.org_id, signer, prefix)
    if format == "text":
        return PlainTextResponse(checkpoint.note)
    return JSONResponse(service.checkpoint_json(checkpoint))


@router.get(
    "/v1/proof/consistency",
    summary="Proof that the log only grew between two sizes",
    description=(
        "The RFC 6962 consistency proof between the trees of sizes `first` and "
        "`second` (both at most the log's size), with both roots. Requires consent:read."
    ),
    responses=error_responses(401, 403, 422, 429),
)
async def get_consistency(
    caller: ConsentRead,
    session: Session,
    first: Annotated[int, Query(ge=0)],
    second: Annotated[int, Query(ge=0)],
) -> dict[str, Any]:
    return await service.consistency(session, caller.org_id, first, second)


@router.get(
    "/v1/consent/{consent_id}/proof",
    summary="The consent record's proof packet (or printable certificate)",
    description=(
        "A self-contained JSON file (format agentmessage.proof/2): the record, every "
        "event of it in canonical form with its leaf index and RFC 6962 inclusion "
        "proof, the signed checkpoint they prove against, the signed record head (how "
        "many events the record has at that checkpoint, and its last) and the public "
        "key. Verify "
        "it offline with `agentmessage proof verify`. `?since=N` adds the consistency "
        "proof from a checkpoint of size N you saved. `?format=html` is a printable "
        "one-page consent certificate. Requires consent:read."
    ),
    responses={
        200: {
            "description": "The proof packet (JSON), or with `?format=html` the certificate",
            "content": {"application/json": {}, "text/html": {"schema": {"type": "string"}}},
        },
        **error_responses(400, 401, 403, 404, 422, 429),
    },
)
async def get_proof(
    consent_id: uuid.UUID,
    caller: ConsentRead,
    session: Session,
    signer: SignerDep,
    prefix: Prefix,
    format: Annotated[Literal["json", "html"], Query()] = "json",
    since: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    packet = await service.packet(session, caller.org_id, consent_id, signer, prefix, since=since)
    if format == "html":
        # "Verified" against a key this server published, never the packet's word.
        trusted = {key.key_id: key for key in await service.published_keys(session)}
        trusted.setdefault(signer.key_id, signer.public)
        key = trusted.get(packet["public_key"]["key_id"], signer.public)
        return HTMLResponse(certificate.render(packet, key))
    filename = f"consent-{consent_id}-proof.json"
    return JSONResponse(packet, headers={"Content-Disposition": f'inline; filename="{filename}"'})


@router.get(
    "/.well-known/agentmessage/log-keys",
    summary="Every public key that signs checkpoints (no auth)",
    description=(
        "Current and former Ed25519 log keys, each with its signed-note key id and "
        "verifier key (`vkey`): pass one to `agentmessage proof verify --public-key`."
    ),
)
async def get_log_keys(session: Session, signer: SignerDep) -> dict[str, Any]:
    keys = await service.published_keys(session)
    if signer.key_id not in {key.key_id for key in keys}:
        keys.append(signer.public)
    return {
        "keys": [{**service.key_json(key), "current": key.key_id == signer.key_id} for key in keys]
    }

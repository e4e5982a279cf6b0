"""The printable consent certificate: the proof packet as one page a person reads,
with the verdict of the same verifier that ``agentmessage proof verify`` runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from agentmessage.proof.verify import PublicKey, parse_checkpoint, verify_packet

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

EVENT_LABELS: Final = {"opt_in": "Opted in", "opt_out": "Opted out"}


def render(packet: dict[str, Any], key: PublicKey) -> str:
    checks = verify_packet(packet, key)
    checkpoint = parse_checkpoint(packet["checkpoint"])
    return _env.get_template("certificate.html").render(
        packet=packet,
        manifest=packet["manifest"],
        record=packet["record"],
        events=packet["events"],
        labels=EVENT_LABELS,
        checkpoint=checkpoint,
        root_hash=packet["root_hash"],
        key=key,
        checks=checks,
        verified=all(check.ok for check in checks),
    )

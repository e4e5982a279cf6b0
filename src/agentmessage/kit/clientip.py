"""The client's IP address, reading X-Forwarded-For only from trusted proxies.

Anyone can send X-Forwarded-For, so its entries are believed only as far as a
chain of trusted proxies vouches for them: starting from the direct peer and
walking the header right to left, the first address that is not a trusted proxy
is the client. An entry that is not an IP address ends the walk (nobody trusted
wrote it), and the last trusted hop is the answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> IPAddress | None:
    """An address from an X-Forwarded-For entry (``[v6]:port`` and ``v4:port`` included)."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in proxies)


def client_ip(
    peer: str | None, forwarded_for: Iterable[str], proxies: Sequence[IPNetwork]
) -> str | None:
    """The client's address as text, or None when the peer is unknown.

    ``forwarded_for``: every X-Forwarded-For header value, in the order received.
    """
    if peer is None:
        return None
    current = _address(peer)
    if current is None or not _trusted(current, proxies):
        return peer
    hops = [entry for value in forwarded_for for entry in value.split(",") if entry.strip()]
    for entry in reversed(hops):
        address = _address(entry)
        if address is None:
            break
        current = address
        if not _trusted(address, proxies):
            break
    return str(current)

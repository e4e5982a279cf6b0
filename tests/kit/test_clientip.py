"""The client's address: X-Forwarded-For believed only as far as trusted proxies vouch."""

from __future__ import annotations

import pytest

from agentmessage.kit.clientip import client_ip
from agentmessage.settings import parse_networks

PROXIES = parse_networks("10.0.0.0/8, 192.0.2.10, fd00::/8")


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        (None, ["203.0.113.9"], None),
        # An untrusted peer: its X-Forwarded-For is ignored whatever it says.
        ("198.51.100.7", ["203.0.113.9"], "198.51.100.7"),
        ("198.51.100.7", [], "198.51.100.7"),
        # A trusted peer: the right-most address that is not a trusted proxy.
        ("10.0.0.5", ["203.0.113.9"], "203.0.113.9"),
        ("10.0.0.5", ["6.6.6.6, 203.0.113.9"], "203.0.113.9"),
        ("10.0.0.5", ["6.6.6.6, 203.0.113.9, 192.0.2.10, 10.9.9.9"], "203.0.113.9"),
        ("10.0.0.5", ["6.6.6.6", "203.0.113.9, 10.1.1.1"], "203.0.113.9"),  # several headers
        # Every hop trusted: the left-most one is the best we know.
        ("10.0.0.5", ["10.1.1.1, 10.2.2.2"], "10.1.1.1"),
        ("10.0.0.5", [], "10.0.0.5"),
        ("10.0.0.5", [" , "], "10.0.0.5"),
        # Garbage ends the walk at the last trusted hop.
        ("10.0.0.5", ["203.0.113.9, unknown"], "10.0.0.5"),
        ("10.0.0.5", ["203.0.113.9, unknown, 10.1.1.1"], "10.1.1.1"),
        # Ports and IPv6.
        ("10.0.0.5", ["203.0.113.9:4711"], "203.0.113.9"),
        ("10.0.0.5", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("fd00::1", ["2001:db8::1"], "2001:db8::1"),
        ("::ffff:10.0.0.5", ["203.0.113.9"], "203.0.113.9"),
        ("unix-socket", ["203.0.113.9"], "unix-socket"),
    ],
)
def test_client_ip(peer, headers, expected):
    assert client_ip(peer, headers, PROXIES) == expected


def test_no_trusted_proxies_means_the_peer():
    assert client_ip("127.0.0.1", ["203.0.113.9"], ()) == "127.0.0.1"
